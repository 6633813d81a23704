"""The default evaluation budget: evaluations between the first and the last step stay within a tenth of the
training queries, the last step is evaluated on the whole held-out split, and recorded sessions keep theirs."""

from __future__ import annotations

import pytest

from labpgt.evaluation import DEFAULT_EVAL_FRACTION
from labpgt.runs import start_training
from labpgt.tasks import load_task
from labpgt.trainer import TrainConfig, Trainer


def final_evaluation_cost(config: TrainConfig, queries_per_sample: float) -> float:
    task = load_task(config.task, config.seed, holdout=config.evaluation.holdout)
    return (min(config.evaluation.eval_train_samples, len(task.y_train)) + len(task.y_test)) * queries_per_sample


@pytest.mark.slow
@pytest.mark.parametrize(
    "task, model, steps, batch",
    [
        ("digits", "dense", 1, 32),
        ("digits", "dense", 5, 32),
        ("digits", "dense", 20, 32),
        ("digits", "dense", 80, 32),
        ("iris", "dense", 30, 8),
    ],
)
def test_default_evaluation_stays_within_a_tenth_of_the_training_queries(task, model, steps, batch):
    config = TrainConfig.of(
        task=task,
        method="node",
        reservoir="digital",
        model=model,
        steps=steps,
        directions=2,
        blocks=1,
        batch_size=batch,
    ).resolved()
    assert config.evaluation.eval_fraction == DEFAULT_EVAL_FRACTION == 0.1
    result = start_training(config)
    queries_per_sample = result.queries["calibration"] / config.method.batch_size  # a transformer: one per token
    final = final_evaluation_cost(config, queries_per_sample)
    before_last = result.eval_queries - final
    assert 0 <= before_last <= 0.1 * result.training_queries
    last = result.history[-1]
    assert last["step"] == steps and "test_samples" not in last  # the last: the whole held-out split
    assert all(entry["test_samples"] == 100 for entry in result.history[:-1])  # the others: the fixed subset
    if steps >= 80:
        assert len(result.history) >= 5  # a curve, not only an end point


def test_without_budget_every_evaluation_is_of_the_whole_split_as_recorded_sessions_were():
    recorded = TrainConfig.from_dict(
        dict(
            task="iris", method="node", reservoir="digital", steps=6, eval_every=2, batch_size=8, eval_train_samples=20
        )
    )  # as sessions before the budget
    assert recorded.resolved().evaluation.eval_fraction == 0.0
    trainer = Trainer(recorded, _digital(recorded)).run()
    assert [entry["step"] for entry in trainer.history] == [0, 2, 4, 6]
    assert all("test_samples" not in entry for entry in trainer.history)


def test_eval_fraction_is_checked():
    from labpgt.errors import UserError

    with pytest.raises(UserError, match="eval_fraction must be in"):
        TrainConfig.of(eval_fraction=1.5)


def _digital(config):
    from labpgt.reservoirs import make_reservoir

    return make_reservoir(config.resolved())


@pytest.mark.slow
def test_a_benchmark_evaluates_the_whole_split_every_time_by_default(tmp_path):
    import json

    from labpgt.cli import main

    out = tmp_path / "b.json"
    assert (
        main(
            [
                "benchmark",
                "--task",
                "iris",
                "--reservoir",
                "digital",
                "--methods",
                "pgt",
                "--workers",
                "0",
                "--steps",
                "pgt=20",
                "--batch-size",
                "8",
                "--ceiling-steps",
                "0",
                "--sessions",
                str(tmp_path / "runs"),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    (result,) = json.loads(out.read_text())["results"]
    assert [entry["step"] for entry in result["history"]] == list(range(0, 21))  # every steps/20 = 1 step
    assert all("test_samples" not in entry for entry in result["history"])
