"""Tables of a benchmark's JSON (``labpgt benchmark --json``): per method over seeds, and comparisons.

    python benchmarks/summarise.py RESULT.json [MORE.json ...] [--reach METHOD] [--budget QUERIES] [--tolerance 0.01]
                                   [--levels 0.5,0.6,...] [--runs reported|tuning|all] [--ratios METHOD|all]
    python benchmarks/summarise.py SMALL.json MEDIUM.json LARGE.json --scaling 0.8

* per method: the mean and standard deviation over seeds of the final held-out accuracy (and, for
  a validation benchmark, of the test accuracy each run measured once at its end), the training
  queries spent, and the queries each seed first reached the target (the mean final accuracy of
  the benchmark's target variant, pgt unless it was run with ``--target``);
* ``--reach METHOD``: for every other method, the training queries at which each seed's accuracy
  first came within ``tolerance`` of METHOD's mean final accuracy (``never`` if it did not), and
  the factor METHOD's queries / that, per seed: its mean ± standard deviation and range over seeds,
  the same from the crossing linearly interpolated between the two evaluations around it, and the
  resolution of the histories it was read from (the largest gap between evaluations, as a fraction
  of the run's training queries);
* ``--accuracy A`` (``--base METHOD``): per seed, every query a run made, its evaluations' included, until
  its accuracy on the whole held-out split first reached A; the mean over seeds, the factor over
  METHOD's mean (the first method's unless named) and the prior pairs (``--twin-from``) it reused;
* ``--budget Q``: each method's held-out accuracy at its last evaluation within Q training queries
  (mean over seeds): who is ahead at an equal number of queries;
* always: the queries-to-level tables of :mod:`labpgt.levels` (training queries and every query recorded to
  each of ``--levels``, medians with bootstrap 95 % CIs over the ``--runs``, reported ones by default if any)
  and their like-for-like ratios (``--ratios METHOD``, or ``all`` pairs; the target variant by default).
  Runs are told apart by method, seed and device.
* ``--scaling LEVEL``: the JSONs are one benchmark per network size; per method, every query recorded to LEVEL
  at each size (trainable parameters) and the fitted slope of log queries on log parameters, with CIs
  (:mod:`labpgt.scaling`), instead of the tables above.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from labpgt.levels import COUNTS, DEFAULT_LEVELS, levels_table, parse_levels, ratios_table, row_device
from labpgt.references import references_table
from labpgt.scaling import scaling_table


def pooled(paths) -> dict:
    """One benchmark of the runs of several JSON files (benchmarks that shared a sessions directory
    share runs: each (method, seed, device) is kept once; so are the digital references of each seed);
    they must agree on task, model, reservoir and holdout. The target is the first file's, its mean final
    accuracy over the pooled runs of that variant (none if they hold no run of it)."""
    results = []
    for path in paths:
        with open(path) as handle:
            results.append(json.load(handle))
        results[-1].setdefault("target_method", "pgt")  # written before --target existed
    first = results[0]
    what = ("task", "model", "reservoir", "holdout")
    if any(tuple(r[k] for k in what) != tuple(first[k] for k in what) for r in results):
        raise SystemExit("summarise: the files are of different benchmarks (task, model, reservoir or holdout)")
    if len(results) == 1:
        return first
    runs, references = {}, {}
    for result in results:
        for row in result["results"]:
            runs.setdefault((row["method"], row["seed"], row_device(row)), row)
        for row in result.get("references", []):
            references.setdefault((row["reference"], row["seed"]), row)
    rows, key = list(runs.values()), f"{first['holdout']}_accuracy"
    finals = [r[f"final_{key}"] for r in rows if r["method"] == first["target_method"]]
    target = float(np.mean(finals)) if finals else None  # over the pooled seeds
    rows = [
        {**r, "queries_to_target": None if target is None else first_reaching(r["history"], key, target)} for r in rows
    ]
    return {**first, "target_accuracy": target, "results": rows, "references": list(references.values())}


def by_method(result: dict) -> dict:
    methods: dict[str, list] = {}
    for row in result["results"]:
        methods.setdefault(row["method"], []).append(row)
    return methods


def accuracy_key(result: dict) -> str:
    return f"{result['holdout']}_accuracy"


def first_reaching(history: list, key: str, level: float) -> int | None:
    for entry in history:
        if entry[key] >= level - 1e-12:
            return int(entry["training_queries"])
    return None


def crossing(history: list, key: str, level: float) -> float | None:
    """Where the held-out accuracy first reaches ``level``, linearly interpolated in training queries
    between that evaluation and the one before it: the grid's quantisation (an evaluation every 1 %
    of a run is ±17 % of a crossing near 6 % of it) without pretending to know more than the two
    neighbouring evaluations say."""
    for before, entry in zip([None] + history[:-1], history):
        if entry[key] >= level - 1e-12:
            if before is None or entry[key] == before[key]:
                return float(entry["training_queries"])
            t = (level - before[key]) / (entry[key] - before[key])
            return float(before["training_queries"] + t * (entry["training_queries"] - before["training_queries"]))
    return None


def accuracy_within(history: list, key: str, budget: float) -> float:
    within = [e[key] for e in history if e["training_queries"] <= budget]
    return float(within[-1]) if within else float("nan")


def _mean_sd(values) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else 0:.3f}"


def summary_table(result: dict) -> list[str]:
    """Per method over seeds: final held-out accuracy, and for a validation benchmark the test accuracy
    each run measured once after its last step, apart; training queries; queries to the target."""
    final = f"final_{result['holdout']}_accuracy"
    with_test = result["holdout"] != "test" and all(r.get("final_test_accuracy") is not None for r in result["results"])
    width = max([34, *(len(method) + 2 for method in by_method(result))])
    lines = [
        f"{'method':<{width}}{'runs':>6}{result['holdout'] + ' acc.':>17}"
        + (f"{'test acc.':>17}" if with_test else "")
        + f"{'queries':>11}{'to target':>22}"
    ]
    for method, rows in by_method(result).items():
        queries = np.mean([r["queries"] for r in rows])
        reached = [r["queries_to_target"] for r in rows if r["queries_to_target"] is not None]
        to_target = (f"{np.mean(reached):,.0f}" if reached else "never") + f" ({len(reached)}/{len(rows)})"
        test = f"{_mean_sd([r['final_test_accuracy'] for r in rows]):>17}" if with_test else ""
        accuracy = _mean_sd([r[final] for r in rows])
        lines.append(f"{method:<{width}}{len(rows):>6}{accuracy:>17}{test}{queries:>11,.0f}{to_target:>22}")
    return lines


def reach_table(result: dict, reference: str, tolerance: float) -> list[str]:
    """Per seed, the training queries to come within ``tolerance`` of ``reference``'s mean final
    accuracy (the first evaluation there), and the factor ``reference``'s mean spent queries / that:
    its mean and standard deviation over seeds and its range; the same factor from the interpolated
    crossing (:func:`crossing`); and the coarsest resolution any of the seeds' histories had."""
    key, final = accuracy_key(result), f"final_{result['holdout']}_accuracy"
    methods = by_method(result)
    ref_rows = methods[reference]
    level = float(np.mean([r[final] for r in ref_rows])) - tolerance
    ref_queries = float(np.mean([r["queries"] for r in ref_rows]))
    lines = [
        f"queries to come within {tolerance:.3f} of {reference}'s mean final accuracy "
        f"({level + tolerance:.4f}; {reference} spent {ref_queries:,.0f})",
        f"{'method':<34}{'per seed':>44}{'factor (mean ± sd)':>21}{'range':>15}{'interpolated':>18}{'resolution':>12}",
    ]
    for method, rows in methods.items():
        reached = [first_reaching(r["history"], key, level) for r in rows]
        shown = ", ".join("never" if q is None else f"{q:,}" for q in reached)
        gaps = [r.get("resolution") for r in rows]
        worst = "-" if None in gaps else f"{max(gaps):.1%}"  # recorded before the column existed
        if all(q is not None for q in reached):
            factors = ref_queries / np.array(reached, dtype=float)
            between = ref_queries / np.array([crossing(r["history"], key, level) for r in rows])
            lines.append(
                f"{method:<34}{shown:>44}{_factor(factors):>21}"
                f"{f'{factors.min():.1f}-{factors.max():.1f}x':>15}{_factor(between):>18}{worst:>12}"
            )
        else:
            lines.append(f"{method:<34}{shown:>44}{'-':>21}{'-':>15}{'-':>18}{worst:>12}")
    return lines


def _factor(factors) -> str:
    sd = factors.std(ddof=1) if len(factors) > 1 else 0.0
    return f"{factors.mean():.1f}x ± {sd:.1f}"


def first_whole_reaching(history: list, key: str, level: float) -> int | None:
    """Every query (training and evaluation) up to the first evaluation of the whole held-out split at
    ``level`` or above (a partial evaluation, ``<holdout>_samples``, reaches nothing)."""
    samples = key.replace("_accuracy", "_samples")
    for entry in history:
        if samples not in entry and entry[key] >= level - 1e-12:
            return int(entry["training_queries"]) + int(entry["eval_queries"])
    return None


def incl_evaluation_table(result: dict, level: float, base: str | None) -> list[str]:
    """Per seed, every query a run made (evaluation included) until its held-out accuracy reached ``level``
    on the whole split; the mean over seeds that reached it, and the factor of each method's mean over
    ``base``'s (the first method unless named)."""
    key = accuracy_key(result)
    methods = by_method(result)
    base = base or next(iter(methods))
    reached = {m: [first_whole_reaching(r["history"], key, level) for r in rows] for m, rows in methods.items()}
    base_mean = np.mean(reached[base]) if None not in reached[base] else None
    lines = [
        f"queries incl. evaluation to {result['holdout']} accuracy {level:.2f} (factor: over {base}'s mean)",
        f"{'method':<34}{'per seed':>34}{'mean':>10}{'factor':>9}{'prior pairs':>13}",
    ]
    for method, values in reached.items():
        shown = ", ".join("never" if q is None else f"{q:,}" for q in values)
        complete = None not in values
        mean = f"{np.mean(values):,.0f}" if complete else f"({sum(q is not None for q in values)}/{len(values)})"
        factor = f"{np.mean(values) / base_mean:.1f}x" if complete and base_mean else "-"
        prior = max(r.get("prior_queries", 0) for r in methods[method])
        lines.append(f"{method:<34}{shown:>34}{mean:>10}{factor:>9}{prior:>13,}")
    return lines


def budget_table(result: dict, budget: float) -> list[str]:
    key = accuracy_key(result)
    lines = [
        f"{result['holdout']} accuracy at the last evaluation within {budget:,.0f} training queries",
        f"{'method':<34}{'per seed':>24}{'mean':>9}",
    ]
    for method, rows in by_method(result).items():
        values = [accuracy_within(r["history"], key, budget) for r in rows]
        lines.append(f"{method:<34}{', '.join(f'{v:.4f}' for v in values):>24}{np.nanmean(values):>9.4f}")
    return lines


def sized(paths) -> list[tuple[int, dict]]:
    """Each benchmark JSON with its network's trainable parameters (from its first run's config)."""
    from labpgt.trainer import TrainConfig, trainable_parameters

    benchmarks = [json.loads(Path(path).read_text()) for path in paths]
    return [(trainable_parameters(TrainConfig.from_dict(b["results"][0]["config"])), b) for b in benchmarks]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "result",
        nargs="+",
        help="one benchmark's JSON, or several of one task, model and reservoir (their runs are pooled, each run once)",
    )
    parser.add_argument("--reach", action="append", default=[], metavar="METHOD")
    parser.add_argument("--budget", type=float, action="append", default=[])
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument(
        "--accuracy",
        type=float,
        action="append",
        default=[],
        help="every query (evaluation included) until the held-out accuracy reached this",
    )
    parser.add_argument("--base", help="the method --accuracy's factors divide by (the first)")
    parser.add_argument(
        "--levels",
        type=parse_levels,
        default=None,
        metavar="A1,A2,...",
        help="accuracy levels of the queries-to-level tables (0.5,0.6,0.7,0.8,0.85,0.9)",
    )
    parser.add_argument(
        "--runs",
        choices=("reported", "tuning", "all"),
        default=None,
        help="the runs the levels tables are of (the reported ones if there are any, else all)",
    )
    parser.add_argument(
        "--ratios",
        metavar="METHOD|all",
        default=None,
        help="ratios of every method to METHOD at each level, or of every pair (all); the target variant by default",
    )
    parser.add_argument(
        "--scaling",
        type=float,
        metavar="LEVEL",
        help="the JSONs are one benchmark per network size: the queries to LEVEL against trainable parameters, "
        "per method, and the fitted slope (labpgt.scaling), instead of the tables above",
    )
    args = parser.parse_args(argv)
    if args.scaling is not None:
        print(scaling_table(sized(args.result), args.scaling))
        return 0
    result = pooled(args.result)
    print(
        f"task {result['task']}, model {result['model']}, reservoir {result['reservoir']}, "
        f"held out: {result['holdout']}, target (mean {result['target_method']} final) "
        + ("none: no run of it" if result["target_accuracy"] is None else f"{result['target_accuracy']:.4f}")
    )
    print("\n".join(summary_table(result)))
    for reference in args.reach:
        print()
        print("\n".join(reach_table(result, reference, args.tolerance)))
    for level in args.accuracy:
        print()
        print("\n".join(incl_evaluation_table(result, level, args.base)))
    for budget in args.budget:
        print()
        print("\n".join(budget_table(result, budget)))
    print()
    print("\n".join(levels_lines(result, args.levels, args.runs, args.ratios)))
    return 0


def levels_lines(result: dict, levels, runs: str | None, ratios: str | None) -> list[str]:
    """The queries-to-level tables (training, every query) and their like-for-like ratios (labpgt.levels)."""
    levels = levels or DEFAULT_LEVELS
    purpose = runs
    against = None if ratios == "all" else (ratios or result.get("target_method"))
    lines = []
    for count in COUNTS:
        lines += levels_table(result, levels, purpose, count) + [""]
    for count in COUNTS:
        lines += ratios_table(result, levels, purpose, against, count) + [""]
    if result.get("references"):
        lines += references_table(result["references"]) + [""]
    return lines[:-1]


if __name__ == "__main__":
    raise SystemExit(main())
