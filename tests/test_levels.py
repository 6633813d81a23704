"""Queries to fixed accuracy levels (labpgt.levels): per run, medians with bootstrap CIs, ratios, all queries
counted."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from labpgt.benchmark import check_fresh_seeds, plan_benchmark, run_benchmark, run_one
from labpgt.errors import UserError
from labpgt.levels import (
    all_queries,
    first_reaching,
    levels_report,
    levels_table,
    median_ci,
    parse_levels,
    parse_seeds,
    ratio_ci,
    ratios_table,
    run_levels,
)
from labpgt.session import SessionReader
from labpgt.trainer import TrainConfig

SMALL = dict(batch_size=8, eval_every=2, eval_train_samples=20)


def test_the_queries_to_a_level_are_interpolated_between_evaluations_or_read_at_the_grid_and_never_is_infinite():
    queries, accuracies = [10, 20, 30, 40], [0.2, 0.4, 0.8, 0.7]
    assert first_reaching(queries, accuracies, 0.6, interpolate=True) == pytest.approx(25.0)
    assert first_reaching(queries, accuracies, 0.6, interpolate=False) == 30.0
    assert first_reaching(queries, accuracies, 0.2, interpolate=True) == 10.0  # the first evaluation
    assert first_reaching(queries, accuracies, 0.81, interpolate=True) == math.inf
    assert first_reaching([10, 20], [0.5, 0.5], 0.5, interpolate=True) == 10.0


def test_every_query_recorded_by_an_evaluation_counts_eval_test_and_the_checks_and_discards_of_steps_done():
    history = [
        {"step": 0, "training_queries": 8, "eval_queries": 30},
        {"step": 2, "training_queries": 40, "eval_queries": 60},
        {"step": 4, "training_queries": 72, "eval_queries": 90, "test_queries": 38},
    ]
    other = [(0, 1), (1, 16), (3, 1)]  # a check in step 0, 16 discarded in step 1, a check in step 3
    assert all_queries(history) == [38, 100, 200]
    assert all_queries(history, other) == [38, 100 + 17, 200 + 18]


def test_a_median_counts_never_as_infinite_and_its_bootstrap_interval_is_seeded():
    rng = np.random.default_rng(0)
    median, low, high = median_ci([100, 200, 300, math.inf], rng)
    assert median == 250 and low == 100 and high == math.inf
    assert median_ci([100, math.inf, math.inf], rng)[0] == math.inf  # reached by fewer than half
    assert median_ci([5.0], rng) == (5.0, 5.0, 5.0)
    again = [median_ci([1, 2, 3, 4, 9], np.random.default_rng(7)) for _ in range(2)]
    assert again[0] == again[1] and again[0][1] <= 3 <= again[0][2]


def test_ratios_are_paired_by_seed_and_device_where_both_methods_ran_them():
    rng = np.random.default_rng(0)
    a = {(0, 1): 100.0, (1, 1): 200.0, (0, 2): 400.0}
    b = {unit: 10 * q for unit, q in a.items()}
    ratio, low, high, paired = ratio_ci(a, b, rng)
    assert paired and ratio == pytest.approx(10.0) and low == pytest.approx(10.0) and high == pytest.approx(10.0)
    ratio, low, high, paired = ratio_ci(a, {(5, 1): 1000.0, (6, 1): 3000.0}, rng)
    assert not paired and ratio == pytest.approx(2000 / 200) and low < ratio < high
    ratio, low, high, _ = ratio_ci({0: math.inf, 1: math.inf}, {0: 5.0, 1: math.inf}, rng)
    assert math.isnan(ratio) and (low, high) == (0.0, math.inf)  # both medians never: no ratio, no bound


def _row(method, seed, device, accuracies, purpose="reported"):
    history = [
        {"step": 2 * i, "training_queries": 100 * i, "eval_queries": 10 * i, "validation_accuracy": a}
        for i, a in enumerate(accuracies)
    ]
    return {"method": method, "seed": seed, "device": device, "purpose": purpose, "history": history}


BENCHMARK = {
    "holdout": "validation",
    "target_method": "slow",
    "results": [
        _row("slow", 0, 1, [0.1, 0.3, 0.5, 0.7]),
        _row("slow", 1, 1, [0.1, 0.2, 0.4, 0.6]),
        _row("fast", 0, 1, [0.1, 0.7, 0.8, 0.9]),
        _row("fast", 1, 1, [0.1, 0.5, 0.9, 0.9]),
        _row("fast", 9, 1, [0.9, 0.9, 0.9, 0.9], purpose="tuning"),
    ],
}


def test_the_levels_tables_say_how_many_runs_reached_a_level_and_use_the_reported_runs():
    table = "\n".join(levels_table(BENCHMARK, (0.5, 0.7), count="training"))
    assert "over reported runs" in table
    lines = {tuple(line.split()[:3]): line for line in table.splitlines()[2:]}
    assert ("0.7", "slow", "1/2") in lines and ("0.7", "fast", "2/2") in lines
    assert "never [300–never]" in lines[("0.7", "slow", "1/2")]  # the median of one run and one never
    cells = lines[("0.5", "fast", "2/2")].split()
    assert cells[3] == "83" and cells[5] == "100"  # interpolated 67 and 100; at the evaluation grid 100 and 100
    everything = "\n".join(levels_table(BENCHMARK, (0.5,), purpose="all", count="all"))
    assert "3/3" in everything
    ratios = ratios_table(BENCHMARK, (0.5, 0.7), against="slow")[2:]
    assert ratios[0].split()[:3] == ["0.5", "fast", "/"] and ratios[0].endswith("paired")
    assert ratios[0].split()[4] == f"{(100 * 2 / 3 + 100) / 2 / 225:.3g}x"  # medians 83.3 over (200 + 250) / 2
    assert "A never" in ratios[1]  # slow's median never reached 0.7: one of its two runs did
    slow_50 = run_levels(BENCHMARK["results"][0], "validation_accuracy", (0.5,))
    assert slow_50["training"]["grid"] == [200] and slow_50["all"]["grid"] == [220]
    report = levels_report(BENCHMARK, (0.5,))
    assert report.count("fast / slow") == 2 and "queries including evaluation" in report


def test_bad_levels_and_seeds_are_refused_and_reported_seeds_must_be_fresh():
    assert parse_levels("0.5,0.9") == (0.5, 0.9) and parse_seeds("0-2,7") == (0, 1, 2, 7)
    for bad in ("0.9,0.5", "1.5", "", "0.5,0.5"):
        with pytest.raises(ValueError):
            parse_levels(bad)
    for bad in ("a", "0,0", "-1", "3-x"):
        with pytest.raises(ValueError):
            parse_seeds(bad)
    with pytest.raises(UserError, match="seeds 2 were tuning seeds"):
        check_fresh_seeds((2, 3), (0, 1, 2))
    check_fresh_seeds((3, 4), (0, 1, 2))


def test_ring_devices_are_units_of_a_benchmark_not_variants_and_each_run_names_its_device(tmp_path):
    plan = plan_benchmark(
        "iris",
        "ring-sim",
        ["readout"],
        seeds=[3, 4],
        sessions_dir=tmp_path,
        grid=["ring_device=0,2"],
        tuning_seeds=(0, 1, 2),
        steps_by_method={"pgt": 2},
    )
    assert plan.devices == (0, 2) and plan.purpose == "reported"
    runs = [(v.label, seed, c.reservoir.ring_device, s.name) for v, seed, c, s in plan.runs]
    assert [r[:3] for r in runs] == [(m, s, d) for m in ("pgt", "readout") for d in (0, 2) for s in (3, 4)]
    assert runs[-1][3] == "iris-dense-readout-device2-seed4.h5"
    with pytest.raises(UserError, match="ring_device"):
        plan_benchmark("iris", "digital", ["readout"], sessions_dir=tmp_path, grid=["ring_device=0,2"])


@pytest.mark.slow
def test_the_queries_including_evaluation_count_every_query_the_run_recorded(tmp_path):
    """At each evaluation the figure is the number of query rows the session holds up to the end of that
    evaluation's queries; at the last one (with the final look at the test split) every row the session holds,
    and every query the trainer counted by role."""
    config = TrainConfig.of(
        task="iris", reservoir="digital", method="node", steps=7, holdout="validation", **SMALL
    ).resolved()
    row = run_one(config.to_dict(), str(tmp_path / "run.h5"))
    figures = all_queries(row["history"], row["other_queries"])
    with SessionReader(tmp_path / "run.h5") as session:
        roles = [session.role_name(code) for code in session.queries(fields=("role",))["role"]]
        n_queries = session.n_queries
    ends = [i + 1 for i in range(len(roles) - 1) if roles[i] == "eval" and roles[i + 1] != "eval"]
    assert len(ends) == len(row["history"]) and roles[-1] == "test"
    assert figures[:-1] == ends[:-1]
    assert figures[-1] == n_queries == len(roles) == sum(row["queries"].values())
    assert row["queries"]["test"] > 0 and row["queries"]["eval"] > 0 and row["other_queries"] == []
    key = "validation_accuracy"
    reached = run_levels(row, key, (0.0,))["all"]["grid"][0]
    assert reached == figures[0]  # level 0 is reached at the first evaluation, with its queries


@pytest.mark.slow
def test_a_benchmark_over_ring_devices_records_each_run_s_device_and_purpose_in_its_json(tmp_path):
    b = run_benchmark(
        "iris",
        "ring-sim",
        ["readout"],
        seeds=[5],
        sessions_dir=tmp_path / "runs",
        grid=["ring_device=0,3"],
        tuning_seeds=[0],
        steps_by_method={"pgt": 2},
        **SMALL,
    )
    assert b["seeds"] == [5] and b["devices"] == [0, 3] and b["tuning_seeds"] == [0]
    assert [(r["method"], r["device"], r["purpose"]) for r in b["results"]] == [
        ("pgt", 0, "reported"),
        ("pgt", 3, "reported"),
        ("readout", 0, "reported"),
        ("readout", 3, "reported"),
    ]
    for row in b["results"]:
        with SessionReader(row["session"]) as s:
            assert s.config["bench"]["simulator"].get("device", 0) == row["device"] == row["config"]["ring_device"]
    readouts = [r["final_params_sha256"] for r in b["results"] if r["method"] == "readout"]
    assert readouts[0] != readouts[1]  # another ring, another reservoir: another fit (23 validation samples can tie)
    json.dumps(b)
    assert "readout" in levels_report(b) and Path(b["results"][0]["session"]).exists()


@pytest.mark.slow
def test_the_digital_only_reference_is_chosen_on_validation_and_looks_at_test_once():
    from labpgt.references import LOGISTIC, LOGISTIC_C, digital_references, references_table

    rows = digital_references("iris", [0, 1], ceiling_steps=0)
    assert [r["seed"] for r in rows] == [0, 1] and all(r["C"] in LOGISTIC_C for r in rows)
    assert all(0.8 < r["validation_accuracy"] <= 1 and 0.8 < r["test_accuracy"] <= 1 for r in rows)
    table = "\n".join(references_table(rows))
    assert LOGISTIC in table and f"{np.median([r['test_accuracy'] for r in rows]):.4f}" in table
    assert "digital-only references" in levels_report({**BENCHMARK, "references": rows}, (0.5,))


@pytest.mark.slow
def test_the_digital_ceiling_trains_its_layer_chooses_on_validation_and_looks_at_test_once():
    from labpgt.architectures import ModelSpec
    from labpgt.digital import DigitalReservoir
    from labpgt.references import CEILING, CEILING_LR, LOGISTIC, _trained_with_layer, digital_references
    from labpgt.tasks import load_task

    rows = digital_references("iris", [1], ModelSpec(hidden=8), ceiling_steps=120)
    assert [r["reference"] for r in rows] == [LOGISTIC, CEILING]
    ceiling = rows[1]
    assert ceiling["tuning_fits"] == len(CEILING_LR) == len(ceiling["validation_by_lr"])
    best = int(np.argmax(ceiling["validation_by_lr"]))
    assert ceiling["lr"] == CEILING_LR[best] and ceiling["validation_accuracy"] == max(ceiling["validation_by_lr"])
    assert 0.8 < ceiling["validation_accuracy"] <= 1 and 0.8 < ceiling["test_accuracy"] <= 1
    # the layer itself is trained (it starts as the digital reservoir's fixed map of the same seed)
    fixed = DigitalReservoir(seed=1)
    trained = _trained_with_layer(load_task("iris", 1, holdout="validation"), 1, ModelSpec(hidden=8), 0.01, 50).layer
    assert trained["W"].shape == fixed.W.shape and not np.allclose(trained["W"], fixed.W, atol=1e-3)
    assert not np.allclose(trained["b"], fixed.b, atol=1e-3)
