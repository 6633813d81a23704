"""Queries to fixed accuracy levels: per run, per method (medians with bootstrap CIs) and between methods (ratios).

This module owns the like-for-like comparison of a benchmark (:mod:`labpgt.benchmark`) and its tables, which
``labpgt benchmark`` prints after its runs and ``benchmarks/summarise.py`` reprints from the JSON:

* **Levels.** Fixed held-out (validation) accuracy levels, :data:`DEFAULT_LEVELS` unless given. Every
  method is measured to the same levels, never to a level one method happened to reach at a budget.
* **Two counts.** The *training* queries (calibration, baseline, ±: :data:`labpgt.trainer.TRAINING_ROLES`)
  and *every query the run recorded* by the time it knew it had reached the level: training, evaluation
  (the evaluation that showed the level included), the final test on the evaluation that carries it, and
  the queries a suspender's checks measured and a pause discarded (:func:`all_queries`).
* **Two readings.** ``interp``: linearly interpolated in queries between the evaluation that first reaches
  the level and the one before it (as ``crossing`` in ``benchmarks/summarise.py``); ``grid``: the queries at
  that evaluation, what the run could have known.
* **Never is an entry.** A run that does not reach a level within its budget counts as +inf: a median is
  finite only if more than half of the runs reached the level, and ``k/n reached`` is always printed.
* **Statistics.** Runs are the units (seeds × devices, resampled flat, not by device first). A median's 95 %
  CI is a seeded percentile bootstrap (:data:`RESAMPLES` resamples of the runs with replacement, numpy's
  ``default_rng(`` :data:`BOOTSTRAP_SEED` ``)``; the lower bound the 2.5 % order statistic below, the upper the
  97.5 % one above, so +inf resamples never turn into NaN). With few runs the interval is as coarse as the
  runs are few: 2 runs give the range of their medians.
* **Ratios.** ``B / A`` at a level is median(B) / median(A), both over the same runs when A and B ran the
  same (seed, device) units (then the bootstrap resamples units jointly: *paired*), else over each one's
  own runs resampled independently (*unpaired*). A resample where both medians are +inf has no ratio: it
  widens the interval to [0, +inf] on its side rather than being dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9)
RESAMPLES = 10_000
BOOTSTRAP_SEED = 20261207
CONFIDENCE = 0.95
COUNTS = ("training", "all")  # training queries; every query the run recorded
READINGS = ("interp", "grid")


# --------------------------------------------------------------------------- one run
def all_queries(history: list[dict], other: list | None = None) -> list[int]:
    """Every query a run had recorded when each evaluation of ``history`` was done: its training and eval queries
    (the evaluation's own included), the final test's on the entry that carries it (``test_queries``), and
    ``other`` — ``(step, queries)`` pairs of what a suspender's checks measured and a pause discarded during the
    0-based training step ``step`` — of the steps completed by then (an entry's ``step`` counts them)."""
    other = [(int(s), int(n)) for s, n in (other or ())]
    return [
        int(e["training_queries"])
        + int(e["eval_queries"])
        + int(e.get("test_queries", 0))
        + sum(n for s, n in other if s < int(e["step"]))
        for e in history
    ]


def first_reaching(queries, accuracies, level: float, interpolate: bool) -> float:
    """The queries at which ``accuracies`` (one per evaluation, at ``queries``) first reach ``level``: at that
    evaluation, or (``interpolate``) linearly interpolated between it and the one before; +inf if never."""
    for i, (q, a) in enumerate(zip(queries, accuracies)):
        if a >= level - 1e-12:
            if not interpolate or i == 0 or a == accuracies[i - 1]:
                return float(q)
            t = (level - accuracies[i - 1]) / (a - accuracies[i - 1])
            return float(queries[i - 1] + t * (q - queries[i - 1]))
    return math.inf


def run_levels(row: dict, key: str, levels) -> dict:
    """``{count: {reading: [queries to each level]}}`` of one benchmark row (its ``history``, ``key`` the held-out
    accuracy's name, e.g. ``validation_accuracy``)."""
    history = row["history"]
    accuracies = [float(e[key]) for e in history]
    counted = {
        "training": [int(e["training_queries"]) for e in history],
        "all": all_queries(history, row.get("other_queries")),
    }
    return {
        count: {
            reading: [first_reaching(q, accuracies, level, reading == "interp") for level in levels]
            for reading in READINGS
        }
        for count, q in counted.items()
    }


# --------------------------------------------------------------------------- statistics
def percentile_bounds(resampled: np.ndarray) -> tuple[float, float]:
    """The percentile interval of bootstrap statistics (+inf allowed; NaN: unknown, widening either side)."""
    alpha = (1 - CONFIDENCE) / 2
    low = np.quantile(np.where(np.isnan(resampled), 0.0, resampled), alpha, method="lower")
    high = np.quantile(np.where(np.isnan(resampled), np.inf, resampled), 1 - alpha, method="higher")
    return float(low), float(high)


def _medians(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Medians of ``values`` resampled by rows of ``index``; +inf where more than half are +inf."""
    with np.errstate(invalid="ignore"):
        return np.median(values[index], axis=-1)


def median_ci(values, rng: np.random.Generator) -> tuple[float, float, float]:
    """``(median, low, high)``: the median of ``values`` (+inf: never reached) and its bootstrap 95 % CI."""
    values = np.asarray(values, dtype=float)
    index = rng.integers(0, len(values), size=(RESAMPLES, len(values)))
    return (float(np.median(values)), *percentile_bounds(_medians(values, index)))


def _ratio(b: np.ndarray, a: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.isinf(a) & np.isinf(b), np.nan, b / a)


def ratio_ci(a: dict, b: dict, rng: np.random.Generator) -> tuple[float, float, float, bool]:
    """``(ratio, low, high, paired)`` of median(b) / median(a); ``a``, ``b``: queries by unit (seed, device)."""
    paired = set(a) == set(b)
    if paired:
        units = sorted(a)
        va, vb = (np.array([d[u] for u in units], dtype=float) for d in (a, b))
        index = rng.integers(0, len(units), size=(RESAMPLES, len(units)))
        ia = ib = index
    else:
        va, vb = np.array(list(a.values()), dtype=float), np.array(list(b.values()), dtype=float)
        ia = rng.integers(0, len(va), size=(RESAMPLES, len(va)))
        ib = rng.integers(0, len(vb), size=(RESAMPLES, len(vb)))
    point = float(_ratio(np.median(vb), np.median(va)))
    return (point, *percentile_bounds(_ratio(_medians(vb, ib), _medians(va, ia))), paired)


# --------------------------------------------------------------------------- a benchmark
@dataclass(frozen=True)
class Run:
    """One run of a benchmark as the levels see it."""

    method: str
    seed: int
    device: int | None
    purpose: str
    levels: dict  # run_levels()

    @property
    def unit(self) -> tuple:
        return (self.seed, self.device)


def row_device(row: dict) -> int | None:
    """The simulated ring device a benchmark row ran on (None: not the embedded simulated ring)."""
    if "device" in row:
        return row["device"]
    config = row.get("config", {})
    return (
        int(config.get("ring_device", 0)) if config.get("reservoir") == "ring-sim" and not config.get("bench") else None
    )


def benchmark_runs(benchmark: dict, levels, purpose: str = "all") -> list[Run]:
    """The runs of a benchmark of ``purpose``: "reported", "tuning" or "all"."""
    key = f"{benchmark['holdout']}_accuracy"
    return [
        Run(r["method"], int(r["seed"]), row_device(r), r.get("purpose", "unrecorded"), run_levels(r, key, levels))
        for r in benchmark["results"]
        if purpose == "all" or r.get("purpose", "unrecorded") == purpose
    ]


def default_purpose(benchmark: dict) -> str:
    """The runs a table is of by default: the reported ones if there are any, else all."""
    return "reported" if any(r.get("purpose") == "reported" for r in benchmark["results"]) else "all"


def by_method(runs: list[Run]) -> dict[str, list[Run]]:
    methods: dict[str, list[Run]] = {}
    for run in runs:
        methods.setdefault(run.method, []).append(run)
    return methods


def _queries(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:,.0f}"


def _interval(median: float, low: float, high: float) -> str:
    return f"{_queries(median)} [{_queries(low)}–{_queries(high)}]"


def levels_table(
    benchmark: dict, levels=DEFAULT_LEVELS, purpose: str | None = None, count: str = "training"
) -> list[str]:
    """Per level and method: runs that reached it, and the median queries (``count``: "training" or "all")
    to reach it with its 95 % CI, interpolated and at the evaluation grid."""
    purpose = purpose or default_purpose(benchmark)
    runs = by_method(benchmark_runs(benchmark, levels, purpose))
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    what = "training queries" if count == "training" else "queries including evaluation (every query recorded)"
    width = max([8] + [len(m) + 2 for m in runs])
    lines = [
        f"{what} to first reach each {benchmark['holdout']} accuracy level, median [95 % bootstrap CI] over "
        f"{purpose} runs (seeds × devices); never: not within the run",
        f"{'level':<7}{'method':<{width}}{'reached':>9}{'interpolated':>34}{'at the evaluation grid':>34}",
    ]
    for i, level in enumerate(levels):
        for method, rows in runs.items():
            reached = sum(not math.isinf(r.levels[count]["grid"][i]) for r in rows)
            cells = [_interval(*median_ci([r.levels[count][reading][i] for r in rows], rng)) for reading in READINGS]
            lines.append(f"{level:<7.3g}{method:<{width}}{f'{reached}/{len(rows)}':>9}{cells[0]:>34}{cells[1]:>34}")
    return lines


def _factor(value: float) -> str:
    return "-" if math.isnan(value) else ("inf" if math.isinf(value) else f"{value:.3g}x")


def _ratio_text(ratio: float, a: dict, b: dict) -> str:
    """The ratio, or which median was never reached (A never, B reached: 0; B never: inf; both: none)."""
    never_a, never_b = (math.isinf(float(np.median(list(d.values())))) for d in (a, b))
    if never_a or never_b:
        return "both never" if never_a and never_b else ("A never" if never_a else "B never")
    return _factor(ratio)


def ratios_table(
    benchmark: dict,
    levels=DEFAULT_LEVELS,
    purpose: str | None = None,
    against: str | None = None,
    count: str = "training",
    reading: str = "interp",
) -> list[str]:
    """Per level, ``B / A`` of the median queries to reach it with its 95 % CI, for every pair of methods (A
    before B in the benchmark's order), or every method B against ``against``."""
    purpose = purpose or default_purpose(benchmark)
    runs = by_method(benchmark_runs(benchmark, levels, purpose))
    methods = list(runs)
    pairs = (
        [(against, b) for b in methods if b != against]
        if against
        else [(a, b) for i, a in enumerate(methods) for b in methods[i + 1 :]]
    )
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    what = "training queries" if count == "training" else "queries including evaluation"
    width = max([12] + [len(a) + len(b) + 5 for a, b in pairs])
    lines = [
        f"like-for-like ratios of the median {what} to each level ({reading}): B / A [95 % bootstrap CI]; "
        "paired: the same (seed, device) runs; A/B never: its median never reached",
        f"{'level':<7}{'B / A':<{width}}{'ratio':>11}{'95 % CI':>22}{'runs':>10}",
    ]
    for i, level in enumerate(levels):
        for a, b in pairs:
            if a not in runs:
                continue
            qa, qb = ({r.unit: r.levels[count][reading][i] for r in runs[m]} for m in (a, b))
            ratio, low, high, paired = ratio_ci(qa, qb, rng)
            interval = f"[{_factor(low)}–{_factor(high)}]"
            lines.append(
                f"{level:<7.3g}{f'{b} / {a}':<{width}}{_ratio_text(ratio, qa, qb):>11}{interval:>22}"
                f"{'paired' if paired else 'unpaired':>10}"
            )
    return lines


def parse_levels(text: str) -> tuple[float, ...]:
    """``"0.5,0.6,0.9"`` as levels, each in (0, 1], increasing; ValueError otherwise."""
    levels = tuple(float(v) for v in text.split(",") if v.strip())
    if not levels or any(not 0 < v <= 1 for v in levels) or list(levels) != sorted(set(levels)):
        raise ValueError(f"levels must be increasing accuracies in (0, 1], not {text!r}")
    return levels


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` or ``"0-2"`` (or both, ``"0-2,7"``) as distinct non-negative seeds; ValueError otherwise."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        first, dash, last = part.partition("-")
        try:
            seeds += list(range(int(first), int(last) + 1)) if dash else [int(part)]
        except ValueError:
            raise ValueError(f"seeds are N, N,M or A-B, not {text!r}") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and non-negative, not {text!r}")
    return tuple(seeds)


def levels_report(benchmark: dict, levels=None, against: str | None = None) -> str:
    """The levels tables ``labpgt benchmark`` prints: training queries and every query to each level, the
    ratios of every method to ``against`` (the benchmark's target variant unless given) at each level, and the
    digital-only references beside them."""
    levels = tuple(levels or DEFAULT_LEVELS)
    against = against or benchmark.get("target_method")
    blocks = [levels_table(benchmark, levels, count=count) for count in COUNTS]
    blocks += [ratios_table(benchmark, levels, against=against, count=count) for count in COUNTS]
    if benchmark.get("references"):
        from labpgt.references import references_table

        blocks.append(references_table(benchmark["references"]))
    return "\n\n".join(["\n".join(block) for block in blocks])
