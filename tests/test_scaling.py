"""The scaling curve: queries to a level against trainable parameters, per method, and the fitted slope."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from labpgt.levels import BOOTSTRAP_SEED
from labpgt.scaling import curve, fitted_slope, scaling_table

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name: str):
    """The module of ``benchmarks/NAME.py`` (scripts import each other from beside them)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def _benchmark(queries_by_method: dict) -> dict:
    """A validation benchmark whose runs reach 0.8 at the given queries, rounded (None: never), each with a history
    of two evaluations: 0.0 at no query, then 0.8 once it has recorded that many (training and evaluation)."""
    rows = []
    for method, runs in queries_by_method.items():
        for seed, given in enumerate(runs):
            reached, queries = given is not None, None if given is None else round(given)
            history = [
                {"step": 0, "training_queries": 0, "eval_queries": 0, "validation_accuracy": 0.0},
                {
                    "step": 10,
                    "training_queries": (queries or 1000) - 10,
                    "eval_queries": 10,
                    "validation_accuracy": 0.8 if reached else 0.5,
                },
            ]
            rows.append({"method": method, "seed": seed, "device": 0, "purpose": "reported", "history": history})
    return {"holdout": "validation", "results": rows}


SIZES = (850, 3400, 13600)


def test_a_method_whose_queries_grow_as_a_power_of_the_parameters_has_that_slope():
    spread = (0.9, 1.0, 1.1)  # the runs of each size scatter by the same factors: the slope is exact, the CI not 0
    benchmarks = [
        (p, _benchmark({"node": [2.0 * p**1.5 * f for f in spread], "pgt": [50.0 * p * f for f in spread]}))
        for p in SIZES
    ]
    points = curve(list(reversed(benchmarks)), 0.8)  # sizes sorted whatever the order given
    assert [p for p, _ in points["node"]] == list(SIZES)
    assert points["node"][0][1] == [round(2.0 * 850**1.5 * f) for f in spread]
    slope, low, high = fitted_slope(points["node"], np.random.default_rng(BOOTSTRAP_SEED))
    assert slope == pytest.approx(1.5, abs=1e-4) and low < 1.5 < high and high - low < 0.3
    assert fitted_slope(points["pgt"], np.random.default_rng(0))[0] == pytest.approx(1.0, abs=1e-4)
    table = scaling_table(benchmarks, 0.8)
    assert "1.50 [" in table and "1.00 [" in table and "(3/3)" in table and "13,600" in table


def test_runs_that_never_reach_the_level_are_counted_not_fitted_and_one_size_gives_no_slope():
    benchmarks = [
        (850, _benchmark({"twin": [1000.0, 1100.0, None], "spsa": [None, None, None]})),
        (3400, _benchmark({"twin": [4000.0, None, 4400.0], "spsa": [9000.0, None, None]})),
    ]
    points = curve(benchmarks, 0.8)
    assert points["twin"][1][1][1] == math.inf
    slope, *_ = fitted_slope(points["twin"], np.random.default_rng(0))
    assert slope == pytest.approx(
        np.polyfit(np.log10([850, 850, 3400, 3400]), np.log10([1000, 1100, 4000, 4400]), 1)[0]
    )
    assert all(math.isnan(v) for v in fitted_slope(points["spsa"], np.random.default_rng(0)))  # reached at one size
    table = scaling_table(benchmarks, 0.8)
    spsa = next(line for line in table.splitlines() if line.startswith("spsa"))
    assert "never" in spsa and "(0/3)" in spsa and "(1/3)" in spsa and spsa.rstrip().endswith("-")


def test_summarise_prints_the_scaling_table_of_one_benchmark_json_per_network_size(tmp_path, capsys):
    from labpgt.trainer import TrainConfig, trainable_parameters

    summarise = _script("summarise")
    paths, sizes = [], []
    for hidden in (0, 16, 64):
        config = TrainConfig.of(task="iris", hidden=hidden)
        sizes.append(trainable_parameters(config))
        benchmark = _benchmark({"node": [10.0 * sizes[-1] ** 1.25, 11.0 * sizes[-1] ** 1.25]})
        for row in benchmark["results"]:
            row["config"] = config.to_dict()
        paths.append(tmp_path / f"hidden{hidden}.json")
        paths[-1].write_text(json.dumps(benchmark))
    assert summarise.main([*map(str, paths), "--scaling", "0.8"]) == 0
    printed = capsys.readouterr().out
    assert all(f"{p:,}" in printed for p in sizes) and len(set(sizes)) == 3
    assert "1.25 [" in next(line for line in printed.splitlines() if line.startswith("node"))


def test_summarise_pools_one_json_per_method_each_run_and_each_seeds_reference_once(tmp_path, capsys):
    summarise = _script("summarise")
    reference = {"reference": "logistic regression (raw inputs)", "seed": 0}
    reference.update(validation_accuracy=0.96, test_accuracy=0.95)
    paths = []
    for method, queries in [("node", [2000, 3000]), ("twin", [500, None])]:
        benchmark = _benchmark({method: queries})  # each file its own target, as a chunk of one method is run
        benchmark.update(task="digits", model="dense", reservoir="ring-sim", target_method=method)
        benchmark["references"] = [reference]
        for row in benchmark["results"]:
            row.update(final_validation_accuracy=row["history"][-1]["validation_accuracy"], queries=1000)
        paths.append(tmp_path / f"{method}.json")
        paths[-1].write_text(json.dumps(benchmark))
    paths.append(paths[0])  # a file given twice adds no run
    pool = summarise.pooled(paths)
    assert sorted((r["method"], r["seed"]) for r in pool["results"]) == [
        ("node", 0),
        ("node", 1),
        ("twin", 0),
        ("twin", 1),
    ]
    assert pool["references"] == [reference] and pool["target_method"] == "node" and pool["target_accuracy"] == 0.8
    assert [r["queries_to_target"] for r in pool["results"] if r["method"] == "twin"] == [490, None]
    assert summarise.main([*map(str, paths), "--ratios", "all"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert any(line.split()[:4] == ["0.5", "twin", "/", "node"] for line in printed)  # ratios across the files
    references = [line.split() for line in printed if line.startswith("logistic regression")]
    assert len(references) == 1 and references[0][4] == "1"  # one seed, once
    other = json.loads(paths[1].read_text())
    paths[1].write_text(json.dumps({**other, "model": "transformer"}))
    with pytest.raises(SystemExit, match="different benchmarks"):
        summarise.pooled(paths)


def test_queries_to_accuracy_names_each_variant_by_the_settings_its_runs_differ_in():
    script = _script("queries_to_accuracy")

    def run(method, seed, **settings):
        return {"method": method, "config": {"method": method, "seed": seed, "ring_device": seed, **settings}}

    runs = [
        run("dyna", 0, twin_noise=1.0, lr=0.01),
        run("dyna", 1, twin_noise=1.0, lr=0.01),
        run("dyna", 0, twin_noise=0.0, lr=0.01),
        run("dyna", 1, lr=0.01),  # recorded before the setting existed
        run("node", 0, lr=0.01),
        run("node", 1, lr=0.01),
    ]
    script.label_variants(runs)
    assert [r["method"] for r in runs] == [
        "dyna[twin_noise=1.0]",
        "dyna[twin_noise=1.0]",
        "dyna[twin_noise=0.0]",
        "dyna[twin_noise=None]",
        "node",  # seeds and devices tell runs of one variant apart, not variants
        "node",
    ]
