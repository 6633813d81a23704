"""Orchestration the CLI calls: build a reservoir, run one training, run a benchmark, plot and tabulate.

This module owns no training logic (that is :mod:`labpgt.trainer`); it turns names into objects,
collects results into plain data (:class:`TrainResult`, the benchmark dict) and renders them.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from labpgt.errors import UserError
from labpgt.methods import METHODS
from labpgt.reservoirs import make_reservoir
from labpgt.trainer import TrainConfig, Trainer


def reservoir_factory_for(config: TrainConfig):
    """The factory ``run_training`` uses by default: the reservoir named by ``config``, seeded by ``config.seed``."""
    return lambda: make_reservoir(config)


@dataclass
class TrainResult:
    """The outcome of one training run (plain data; ``history`` is one dict per evaluation)."""

    config: dict
    final_test_accuracy: float
    final_train_accuracy: float
    queries: dict
    training_queries: int
    eval_queries: int
    history: list = field(default_factory=list)
    wall_seconds: float = 0.0
    measure_seconds: float = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def result_from_trainer(trainer: Trainer, wall_seconds: float) -> TrainResult:
    last = trainer.history[-1]
    return TrainResult(
        config=dataclasses.asdict(trainer.config), final_test_accuracy=last["test_accuracy"],
        final_train_accuracy=last["train_accuracy"], queries=dict(trainer.queries),
        training_queries=trainer.training_queries, eval_queries=trainer.queries["eval"],
        history=[dict(h) for h in trainer.history], wall_seconds=wall_seconds,
        measure_seconds=trainer.measure_seconds)


def run_training(config: TrainConfig, reservoir_factory=None, progress=None, recorder=None) -> TrainResult:
    """Train ``config`` on a fresh reservoir from ``reservoir_factory()`` (default: the one the config names)."""
    factory = reservoir_factory if reservoir_factory is not None else reservoir_factory_for(config)
    reservoir = factory()
    try:
        t0 = time.perf_counter()
        trainer = Trainer(config, reservoir, recorder=recorder).run(progress=progress)
        return result_from_trainer(trainer, time.perf_counter() - t0)
    finally:
        reservoir.close()


def queries_to_target(history: list[dict], target: float) -> int | None:
    """Training queries at the first evaluation whose test accuracy reaches ``target`` (None if never)."""
    for entry in history:
        if entry["test_accuracy"] >= target - 1e-12:
            return int(entry["training_queries"])
    return None


def run_benchmark(task: str, reservoir_name: str, methods=("pgt", "node", "readout"), seeds=(0,),
                  steps_by_method: dict | None = None, bench_path: str | None = None, progress=None,
                  **config_overrides) -> dict:
    """Train each method with each seed; the target is the mean final test accuracy of ``pgt`` in this run.

    Returns ``{"task", "reservoir", "target_accuracy", "results": [{"method", "seed",
    "final_test_accuracy", "queries", "queries_to_target"}, …]}``; ``queries`` are training queries.
    ``pgt`` is always run (added if missing) because it defines the target.
    """
    methods = list(methods)
    for m in methods:
        if m not in METHODS:
            raise UserError(f"unknown method {m!r}; valid methods: {', '.join(METHODS)}")
    if "pgt" not in methods:
        methods.insert(0, "pgt")
    steps_by_method = steps_by_method or {}
    runs = []
    for method in methods:
        for seed in seeds:
            config = TrainConfig(task=task, method=method, reservoir=reservoir_name, seed=int(seed),
                                 steps=steps_by_method.get(method), bench=bench_path, **config_overrides)
            result = run_training(config)
            runs.append((method, int(seed), result))
            if progress is not None:
                progress(method, int(seed), result)
    pgt_finals = [r.final_test_accuracy for m, _, r in runs if m == "pgt"]
    target = float(np.mean(pgt_finals))
    return {
        "task": task,
        "reservoir": reservoir_name,
        "target_accuracy": target,
        "results": [{"method": m, "seed": s, "final_test_accuracy": r.final_test_accuracy,
                     "queries": r.training_queries, "queries_to_target": queries_to_target(r.history, target)}
                    for m, s, r in runs],
    }


def format_table(benchmark: dict) -> str:
    """A fixed-width text table of a :func:`run_benchmark` result."""
    lines = [f"task {benchmark['task']}, reservoir {benchmark['reservoir']}, "
             f"target (mean pgt final test accuracy) {benchmark['target_accuracy']:.4f}",
             f"{'method':<10}{'seed':>6}{'test acc':>10}{'queries':>12}{'to target':>12}"]
    for row in benchmark["results"]:
        to_target = "never" if row["queries_to_target"] is None else str(row["queries_to_target"])
        lines.append(f"{row['method']:<10}{row['seed']:>6}{row['final_test_accuracy']:>10.4f}"
                     f"{row['queries']:>12}{to_target:>12}")
    return "\n".join(lines)


def plot_history(result: TrainResult, path_png: str) -> None:
    """Loss and accuracy versus training queries, as a PNG (matplotlib's Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = result.history
    q = [e["training_queries"] for e in h]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(q, [e["train_loss"] for e in h], marker=".", label="train")
    ax_loss.plot(q, [e["test_loss"] for e in h], marker=".", label="test")
    ax_loss.set_xlabel("training queries")
    ax_loss.set_ylabel("cross-entropy loss")
    ax_loss.legend()
    ax_acc.plot(q, [e["train_accuracy"] for e in h], marker=".", label="train")
    ax_acc.plot(q, [e["test_accuracy"] for e in h], marker=".", label="test")
    ax_acc.set_xlabel("training queries")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0.0, 1.0)
    ax_acc.legend()
    c = result.config
    fig.suptitle(f"{c['task']} — {c['method']} — {c['reservoir']} reservoir")
    fig.tight_layout()
    fig.savefig(path_png, dpi=100)
    plt.close(fig)
