"""The benchmark (labpgt.benchmark): variants, the table, dask fan-out, and runs read back or resumed from their
sessions."""

import json
from pathlib import Path

import numpy as np
import pytest
from sessionfiles import train_until

from labpgt.benchmark import (
    GridAxis,
    Variant,
    expand_grid,
    format_table,
    queries_to_target,
    resolution,
    run_benchmark,
    run_one,
)
from labpgt.errors import UserError
from labpgt.plots import plot_benchmark, plot_history
from labpgt.references import CEILING
from labpgt.runs import RunResult, start_training
from labpgt.session import SessionReader
from labpgt.trainer import TrainConfig

SMALL = dict(batch_size=8, eval_every=5, eval_train_samples=20)


def test_queries_to_target():
    history = [
        {"test_accuracy": 0.2, "training_queries": 10},
        {"test_accuracy": 0.8, "training_queries": 50},
        {"test_accuracy": 0.9, "training_queries": 90},
    ]
    assert queries_to_target(history, 0.8) == 50
    assert queries_to_target(history, 0.95) is None
    assert queries_to_target([{"validation_accuracy": 0.9, "training_queries": 7}], 0.8, "validation") == 7


def test_queries_to_target_counts_the_evaluations_and_only_a_whole_split_reaches_it():
    history = [
        {"validation_accuracy": 0.9, "validation_samples": 30, "training_queries": 40, "eval_queries": 30},
        {"validation_accuracy": 0.7, "training_queries": 60, "eval_queries": 300},
        {"validation_accuracy": 0.86, "training_queries": 80, "eval_queries": 570},
    ]
    assert queries_to_target(history, 0.85, "validation") == 80
    assert queries_to_target(history, 0.85, "validation", incl_evaluation=True) == 80 + 570


def test_variants_parse_typed_overrides_and_refuse_bad_ones():
    v = Variant.parse("pgt-enc:optimizer=adam:lr=0.01:directions=2")
    assert v.method == "pgt-enc" and dict(v.overrides) == {"optimizer": "adam", "lr": 0.01, "directions": 2}
    assert v.label == "pgt-enc[optimizer=adam,lr=0.01,directions=2]"
    assert Variant.parse("node").label == "node"
    for bad in ("sgd", "pgt:lr", "pgt:lr=fast", "pgt:seed=3", "pgt:colour=red"):
        with pytest.raises(UserError):
            Variant.parse(bad)


def test_a_grid_runs_each_method_with_every_combination_of_its_settings():
    variants = [Variant.parse("pgt"), Variant.parse("node:lr=0.1"), Variant.parse("readout")]
    axes = [
        GridAxis.parse("pgt.lr=0.002,0.004"),
        GridAxis.parse("node.optimizer=sgd,adam"),
        GridAxis.parse("node.lr=0.01,0.02"),
    ]
    labels = [v.label for v in expand_grid(variants, axes)]
    assert labels == [
        "pgt[lr=0.002]",
        "pgt[lr=0.004]",
        "node[optimizer=sgd,lr=0.01]",
        "node[optimizer=sgd,lr=0.02]",  # the axis replaces lr=0.1
        "node[optimizer=adam,lr=0.01]",
        "node[optimizer=adam,lr=0.02]",
        "readout",
    ]
    everyone = expand_grid(variants, [GridAxis.parse("digital_noise=0,0.05")])
    assert [v.label for v in everyone][:2] == ["pgt[digital_noise=0.0]", "pgt[digital_noise=0.05]"]
    assert len(everyone) == 6


@pytest.mark.slow
def test_benchmark_structure_table_and_plots(tmp_path):
    b = run_benchmark(
        "iris",
        "digital",
        ["node", "readout", "pgt:optimizer=adam"],
        seeds=[0, 1],
        sessions_dir=tmp_path / "runs",
        steps_by_method={"pgt": 20, "node": 10, "pgt[optimizer=adam]": 15},
        **SMALL,
    )
    assert set(b) == {
        "task",
        "reservoir",
        "model",
        "holdout",
        "target_method",
        "target_accuracy",
        "results",
        "seeds",
        "devices",
        "tuning_seeds",
    }
    assert b["seeds"] == [0, 1] and b["devices"] == [] and b["tuning_seeds"] is None
    assert b["model"] == "dense" and b["holdout"] == "validation" and b["target_method"] == "pgt"
    assert [r["method"] for r in b["results"][::2]] == ["pgt", "node", "readout", "pgt[optimizer=adam]"]
    pgt = [r for r in b["results"] if r["method"] == "pgt"]
    assert b["target_accuracy"] == pytest.approx(np.mean([r["final_validation_accuracy"] for r in pgt]))
    assert pgt[0]["queries"] == 8 + 20 * 16
    adam = [r for r in b["results"] if r["method"] == "pgt[optimizer=adam]"][0]
    assert adam["queries"] == 8 + 15 * 16
    for row in b["results"]:
        assert row["device"] is None and row["purpose"] == "tuning"
        assert {
            "method",
            "seed",
            "config",
            "final_validation_accuracy",
            "final_test_accuracy",
            "queries",
            "queries_to_target",
            "resolution",
        } <= set(row)
        assert row["final_test_accuracy"] == row["history"][-1]["test_accuracy"]  # looked at once, at the end
        assert all("test_accuracy" not in entry for entry in row["history"][:-1])
        assert TrainConfig.from_dict(row["config"]).resolved() == TrainConfig.from_dict(
            row["config"]
        )  # the full config
        with SessionReader(row["session"]) as session:  # every run is its own complete session
            assert session.completed and session.config["train"]["seed"] == row["seed"]
    json.dumps(b)
    table = format_table(b)
    assert "pgt[optimizer=adam]" in table and f"{b['target_accuracy']:.4f}" in table
    assert all(row["bench_hours"] is None for row in b["results"])  # a digital reservoir has no clock
    png = plot_benchmark(b, tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = start_training(TrainConfig.of(task="iris", method="node", steps=10, **SMALL))
    png = plot_history(result, tmp_path / "history.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_a_complete_session_is_read_back_and_an_interrupted_one_resumed(tmp_path):
    config = TrainConfig.of(task="iris", method="node", steps=6, **SMALL).resolved()
    reference = start_training(config, tmp_path / "reference.h5")

    train_until(2, config, tmp_path / "lost.h5")
    assert RunResult.from_session(tmp_path / "lost.h5") is None
    resumed = run_one(config.to_dict(), str(tmp_path / "lost.h5"))
    assert resumed["final_params_sha256"] == reference.final_params_sha256
    assert resumed["queries"] == reference.queries and resumed["history"] == reference.history
    again = run_one(config.to_dict(), str(tmp_path / "lost.h5"))  # complete now: read back, not rerun
    assert again["final_params_sha256"] == reference.final_params_sha256
    assert again["wall_seconds"] == resumed["wall_seconds"]


@pytest.mark.slow
def test_a_session_recorded_with_other_settings_is_refused_not_reported_nor_continued(tmp_path):
    kw = dict(sessions_dir=tmp_path, steps_by_method={"pgt": 4, "node": 3}, **SMALL)
    first = run_benchmark("iris", "digital", ["node"], seeds=[0], **kw)
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(
        UserError,
        match=r"iris-dense-node-seed0\.h5 was recorded with other settings "
        r"\(steps 3, not 5\); choose another --out-dir",
    ):
        run_benchmark("iris", "digital", ["node"], seeds=[0], **{**kw, "steps_by_method": {"pgt": 4, "node": 5}})
    with pytest.raises(UserError, match=r"recorded with other settings \(holdout validation, not test"):
        run_benchmark("iris", "digital", ["node"], seeds=[0], holdout="test", **kw)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files  # nothing touched
    again = run_benchmark("iris", "digital", ["node"], seeds=[0], **kw)  # the same plan: read back
    assert [r["final_params_sha256"] for r in again["results"]] == [r["final_params_sha256"] for r in first["results"]]


@pytest.mark.slow
def test_the_target_can_be_a_variant_of_the_benchmark_and_then_no_pgt_run_is_paid_for(tmp_path):
    """``--target node`` for node against backprop: the target is node's mean, nothing else is run;
    a target not among the methods is run too, once per seed, and a target that is no variant is refused."""
    kw = dict(sessions_dir=tmp_path / "runs", steps_by_method={"node": 4, "pgt": 3, "backprop": 4}, **SMALL)
    b = run_benchmark("iris", "digital", ["backprop", "node"], seeds=[0, 1], target="node", **kw)
    assert [r["method"] for r in b["results"]] == ["backprop", "backprop", "node", "node"]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted(
        Path(r["session"]).name for r in b["results"]
    )
    node = [r["final_validation_accuracy"] for r in b["results"] if r["method"] == "node"]
    assert b["target_method"] == "node" and b["target_accuracy"] == pytest.approx(np.mean(node))
    assert "target (mean node final validation accuracy)" in format_table(b)
    added = run_benchmark("iris", "digital", ["node"], seeds=[0], target="pgt:lr=0.004", **kw)
    assert [r["method"] for r in added["results"]] == ["pgt[lr=0.004]", "node"]
    assert added["target_accuracy"] == added["results"][0]["final_validation_accuracy"]
    with pytest.raises(UserError, match="unknown method 'fastest'"):
        run_benchmark("iris", "digital", ["node"], seeds=[0], target="fastest", **kw)


def test_a_run_whose_workers_kept_dying_ends_the_benchmark_in_one_line_to_run_again(labpgt, tmp_path, monkeypatch):
    """dask gives a task up when its worker process has died more often than allowed (seen on issue 30's runner:
    paused by SIGSTOP, its workers declared dead four times); the command line says which run, that its
    session keeps every whole step and that the same command resumes it, and exits 75 (EX_TEMPFAIL), no traceback."""
    from types import SimpleNamespace

    from distributed.scheduler import KilledWorker

    import labpgt.benchmark as benchmark

    class GivenUp:
        key = "labpgt-iris-dense-node-seed0"

        def result(self):
            raise KilledWorker(self.key, SimpleNamespace(address="tcp://127.0.0.1:40000"), 3)

    def fan_out(jobs, workers, scheduler, progress, labels):  # the cluster, down to the future that failed
        return [benchmark._outcome(GivenUp(), session) for _, session in jobs]

    monkeypatch.setattr(benchmark, "_fan_out", fan_out)
    out = tmp_path / "out.json"
    ran = labpgt(
        "benchmark", "--task", "iris", "--reservoir", "digital", "--methods", "node", "--target", "node",
        "--workers", "2", "--out-dir", str(tmp_path / "runs"), "--json", str(out),
    )  # fmt: skip
    assert ran.returncode == 75
    lines = ran.stderr.strip().splitlines()
    assert "Traceback" not in ran.stderr
    assert lines[-1].startswith("labpgt: the worker process running iris-dense-node-seed0 died 4 times")
    assert (
        str(tmp_path / "runs" / "iris-dense-node-seed0.h5") in lines[-1] and "run the same command again" in lines[-1]
    )
    assert not out.exists()


@pytest.mark.slow
def test_runs_fan_out_over_dask_worker_processes(tmp_path):
    kw = dict(sessions_dir=tmp_path / "runs", steps_by_method={"pgt": 6, "node": 4}, **SMALL)
    local = run_benchmark("iris", "digital", ["node"], seeds=[0, 1], **kw)
    distributed = run_benchmark(
        "iris", "digital", ["node"], seeds=[0, 1], workers=2, **{**kw, "sessions_dir": tmp_path / "dask"}
    )
    strip = [
        {k: v for k, v in r.items() if k not in ("session", "wall_seconds", "measure_seconds")}
        for r in local["results"]
    ]
    assert strip == [
        {k: v for k, v in r.items() if k not in ("session", "wall_seconds", "measure_seconds")}
        for r in distributed["results"]
    ]  # same bits in worker processes


@pytest.mark.slow
def test_the_command_line_runs_a_grid_with_one_session_per_run_and_every_config_in_the_json(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "grid"
    args = [
        "benchmark",
        "--task",
        "iris",
        "--reservoir",
        "digital",
        "--methods",
        "pgt,node",
        "--set",
        "node.lr=0.01,0.02",
        "--set",
        "digital_noise=0,0.01",
        "--steps",
        "pgt=4",
        "--steps",
        "node=3",
        "--batch-size",
        "8",
        "--eval-every",
        "2",
        "--workers",
        "0",
        "--ceiling-steps",
        "20",
        "--out-dir",
        str(out),
        "--json",
        str(tmp_path / "grid.json"),
    ]
    done = subprocess.run([sys.executable, "-m", "labpgt", *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    benchmark = json.loads((tmp_path / "grid.json").read_text())
    runs = benchmark["results"]
    ceiling = [r for r in benchmark["references"] if r["reference"] == CEILING]  # beside the runs, and in the table
    assert [(r["seed"], r["steps"]) for r in ceiling] == [(0, 20)] and CEILING in done.stdout
    assert [r["method"] for r in runs] == [
        "pgt",
        "pgt[digital_noise=0.0]",
        "pgt[digital_noise=0.01]",
        "node[lr=0.01,digital_noise=0.0]",
        "node[lr=0.01,digital_noise=0.01]",
        "node[lr=0.02,digital_noise=0.0]",
        "node[lr=0.02,digital_noise=0.01]",
    ]
    assert [(r["config"]["lr"], r["config"]["digital_noise"]) for r in runs[3:7]] == [
        (0.01, 0.0),
        (0.01, 0.01),
        (0.02, 0.0),
        (0.02, 0.01),
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(r["session"]).name for r in runs)
    assert "7/7" in done.stderr  # the bar counted every finished run


@pytest.mark.slow
def test_by_default_a_run_is_evaluated_every_one_percent_of_its_training_queries(tmp_path):
    b = run_benchmark(
        "iris",
        "digital",
        ["pgt"],
        sessions_dir=tmp_path,
        steps_by_method={"pgt": 200},
        batch_size=8,
        eval_train_samples=20,
    )
    row = b["results"][0]
    assert row["config"]["eval_every"] == 2 and len(row["history"]) == 1 + 100
    assert 0.009 < row["resolution"] <= 0.01
    assert resolution([{"training_queries": q} for q in (0, 10, 40, 100)]) == 0.6


@pytest.mark.slow
def test_drift_is_a_benchmark_axis_of_the_embedded_ring(tmp_path):
    """``--set ring_drift=true,false``: the same seed drifts in one run and is held still in the other;
    the setting is refused where there is no embedded ring to hold still."""
    (axis,) = [GridAxis.parse("ring_drift=true,false")]
    assert axis.values == (True, False)
    b = run_benchmark(
        "iris",
        "ring-sim",
        ["readout"],
        seeds=[0],
        sessions_dir=tmp_path,
        grid=[axis],
        steps_by_method={"pgt": 4},
        **SMALL,
    )
    spans = {}
    for row in (r for r in b["results"] if r["method"].startswith("readout")):
        with SessionReader(row["session"]) as s:
            temperature = s.queries(fields=["temperature_c"])["temperature_c"]
        spans[row["config"]["ring_drift"]] = float(np.ptp(temperature))
    assert [r["method"] for r in b["results"]] == ["pgt", "readout[ring_drift=True]", "readout[ring_drift=False]"]
    assert spans[False] == 0.0 and spans[True] > 0.0
    for elsewhere in (dict(reservoir="digital"), dict(reservoir="ring-sim", bench="bench.toml")):
        with pytest.raises(UserError, match="ring_drift"):
            TrainConfig.of(method="pgt", ring_drift=False, **elsewhere)


def test_the_history_plot_says_when_it_measured_a_subset():
    from labpgt.plots import _held_label

    budgeted = [{"test_samples": 100}, {"test_samples": 100}, {}]  # the last point: the whole split
    assert _held_label(budgeted, "test") == "test (100 samples; last: all)"
    toward_a_target = [{"validation_samples": 30}, {"validation_samples": 180}, {}, {}]  # as many as each needed
    assert _held_label(toward_a_target, "validation") == "validation (30-180 samples; last: all)"
    assert _held_label([{"test_samples": 360}] * 3, "test") == "test"
    assert _held_label([{}] * 3, "validation") == "validation"  # whole split each time, or recorded before


def test_the_benchmark_plot_draws_each_digital_reference_at_its_median_over_seeds():
    from matplotlib.figure import Figure

    from labpgt.plots import _digital_references

    references = [
        {"reference": "logistic regression (raw inputs)", "seed": s, "validation_accuracy": v, "test_accuracy": 0.5}
        for s, v in enumerate([0.97, 0.90, 0.95])
    ] + [
        {"reference": "digital ceiling (layer trained)", "seed": 0, "validation_accuracy": 0.8, "test_accuracy": 0.6},
        {"reference": "a third model", "seed": 0, "validation_accuracy": 0.7, "test_accuracy": 0.7},
    ]
    ax = Figure().subplots()
    _digital_references(ax, references, "validation")
    drawn = {line.get_label(): line.get_ydata()[0] for line in ax.get_lines()}
    assert drawn == {
        "digital only: logistic regression (raw inputs)": 0.95,
        "digital only: digital ceiling (layer trained)": 0.8,
        "digital only: a third model": 0.7,
    }
    assert len({str(line.get_linestyle()) for line in ax.get_lines()}) == 3  # each told apart
    _digital_references(ax := Figure().subplots(), references, "test")
    assert [line.get_ydata()[0] for line in ax.get_lines()] == [0.5, 0.6, 0.7]
    _digital_references(ax := Figure().subplots(), [], "validation")  # a benchmark without references
    assert len(ax.get_lines()) == 0


@pytest.mark.slow
def test_a_benchmark_on_the_simulated_ring_reports_the_bench_hours_its_sessions_record(tmp_path):
    from labpgt.inspection import inspect_session

    b = run_benchmark(
        "iris", "ring-sim", ["pgt"], seeds=[0], sessions_dir=tmp_path / "runs", steps_by_method={"pgt": 2}, **SMALL
    )
    row = b["results"][0]
    time = inspect_session(row["session"])["time"]
    assert row["bench_hours"] == time["bench_hours"] > 0
    assert time["bench_ms_per_query"] > 40  # messages, the analyzer's processing, transfers: more than 12 ms
    assert f"{row['bench_hours']:.3f}" in format_table(b).splitlines()[-1]


@pytest.mark.slow
def test_reported_runs_take_the_settings_that_did_best_on_validation_in_a_tuning_benchmark_frozen(tmp_path, labpgt):
    import hashlib

    def sha256(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()

    fixed = ["--task", "iris", "--reservoir", "digital", "--batch-size", "8", "--eval-every", "2", "--workers", "0"]
    fixed += ["--ceiling-steps", "0", "--steps", "pgt=4", "--steps", "node=6"]
    tuned = labpgt(
        "benchmark", *fixed, "--methods", "pgt,node", "--set", "node.lr=0.003,0.05", "--seeds", "2",
        "--out-dir", str(tmp_path / "tuning"), "--json", str(tmp_path / "tuning.json"),
    )  # fmt: skip
    assert tuned.returncode == 0, tuned.stderr
    tuning = json.loads((tmp_path / "tuning.json").read_text())
    scores = {}
    for row in tuning["results"]:
        scores.setdefault(row["method"], []).append((row["final_validation_accuracy"], row["queries_incl_evaluation"]))
    node = [label for label in scores if label.startswith("node")]
    best = min(
        node, key=lambda label: (-np.mean([a for a, _ in scores[label]]), np.mean([q for _, q in scores[label]]))
    )

    reported = ["benchmark", *fixed, "--methods", "node", "--tuned", str(tmp_path / "tuning.json"), "--seeds", "1"]
    ran = labpgt(
        *reported, "--first-seed", "2", "--out-dir", str(tmp_path / "reported"), "--json", str(tmp_path / "r.json")
    )
    assert ran.returncode == 0, ran.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert sorted(r["method"] for r in result["results"]) == sorted([best, "pgt"])  # the target, pgt, tuned too
    assert {r["purpose"] for r in result["results"]} == {"reported"} and result["tuning_seeds"] == [0, 1]
    frozen = result["tuned_from"]
    assert frozen["files"] == [{"file": "tuning.json", "sha256": sha256(tmp_path / "tuning.json")}]
    assert frozen["chosen"]["node"] == {
        "variant": best,
        "validation_accuracy": pytest.approx(np.mean([a for a, _ in scores[best]])),
        "runs": 2,
        "variants_tried": 2,
    }

    # the same tuning as one JSON per method, pooled: the same choice, each file's sha256 recorded
    for method in ("pgt", "node"):
        rows = [row for row in tuning["results"] if row["config"]["method"] == method]
        (tmp_path / f"tune-{method}.json").write_text(json.dumps({**tuning, "results": rows}))
    split = [str(tmp_path / "tune-pgt.json"), str(tmp_path / "tune-node.json")]
    ran = labpgt(*reported[:-4], "--tuned", *split, "--seeds", "1", "--first-seed", "2", "--out-dir",
                 str(tmp_path / "pooled"), "--json", str(tmp_path / "split.json"))  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    pooled = json.loads((tmp_path / "split.json").read_text())
    assert pooled["tuned_from"]["chosen"] == frozen["chosen"] and pooled["tuning_seeds"] == [0, 1]
    assert pooled["tuned_from"]["files"] == [
        {"file": f"tune-{m}.json", "sha256": sha256(tmp_path / f"tune-{m}.json")} for m in ("pgt", "node")
    ]
    assert [r["final_params_sha256"] for r in pooled["results"]] == [
        r["final_params_sha256"] for r in result["results"]
    ]
    for refused, line in [
        (["--first-seed", "1"], "seeds 1 were tuning seeds"),  # reported runs on fresh seeds only
        (["--first-seed", "2", "--set", "node.lr=0.05"], "--tuned freezes the settings"),  # no tuning again
        (["--first-seed", "2", "--batch-size", "16"], "would not be the tuned ones: batch_size 8, not 16"),
        (["--first-seed", "2", "--task", "wine"], "is not a benchmark of task wine"),
    ]:
        ran = labpgt(*reported, *refused, "--out-dir", str(tmp_path / "refused"))
        assert ran.returncode == 2 and line in ran.stderr and len(ran.stderr.strip().splitlines()) == 1, ran.stderr
    assert not (tmp_path / "refused").exists()  # refused before anything ran


def test_tuning_benchmarks_pooled_by_tuned_must_be_of_one_task_and_reservoir(tmp_path):
    from labpgt.benchmark import Tuning
    from labpgt.errors import UserError

    for name, task in [("iris.json", "iris"), ("wine.json", "wine"), ("iris2.json", "iris")]:
        (tmp_path / name).write_text(json.dumps({"holdout": "validation", "task": task, "reservoir": "digital"}))
    with pytest.raises(UserError, match="--tuned wine.json is not of the task and reservoir of iris.json"):
        Tuning.read(tmp_path / "iris.json", tmp_path / "wine.json")
    assert Tuning.read(tmp_path / "iris.json", tmp_path / "iris2.json").where == "--tuned iris.json iris2.json"
    run = {"method": "pgt", "seed": 0, "device": None, "config": {"method": "pgt"}, "purpose": "tuning"}
    run.update(final_validation_accuracy=0.5, queries_incl_evaluation=10)
    (tmp_path / "runs.json").write_text(json.dumps({"holdout": "validation", "task": "iris", "results": [run]}))
    twice = Tuning.read(tmp_path / "runs.json", tmp_path / "runs.json")
    assert twice.benchmark["results"] == [run] and twice._best("pgt")["runs"] == 1  # a file given twice: each run once
