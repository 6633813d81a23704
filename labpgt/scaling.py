"""Queries to a fixed accuracy level against the network's size: the scaling curve and its fitted slope.

Given benchmarks of the same task and methods at several network sizes (one benchmark JSON per size), this
module owns, per method:

* **The curve.** At each size (the network's trainable parameters, :func:`labpgt.trainer.trainable_parameters`
  of the runs' config), the queries each run needed to first reach ``level`` — every query it recorded,
  evaluation included, interpolated between evaluations (:mod:`labpgt.levels`' ``all``/``interp``) — and
  their median with its bootstrap 95 % CI.
* **The slope.** The least-squares fit of ``log10(queries)`` on ``log10(parameters)`` over every run that
  reached the level, so that ``queries ∝ parameters ** slope``; its 95 % CI is a seeded percentile bootstrap
  that resamples each size's runs with replacement, independently of the other sizes
  (:data:`labpgt.levels.RESAMPLES` resamples, numpy's ``default_rng(`` :data:`labpgt.levels.BOOTSTRAP_SEED` ``)``).
  A run that never reached the level is left out of the fit and counted in ``k/n reached``; a method that
  reached the level at fewer than two sizes has no slope.
"""

from __future__ import annotations

import math

import numpy as np

from labpgt.levels import BOOTSTRAP_SEED, RESAMPLES, benchmark_runs, by_method, median_ci, percentile_bounds


def curve(benchmarks: list[tuple[int, dict]], level: float) -> dict[str, list[tuple[int, list[float]]]]:
    """``{method: [(parameters, [queries of each run to level, +inf: never]) per size]}`` of ``benchmarks``, each
    given as ``(trainable parameters, benchmark)``; sizes in increasing order."""
    methods: dict[str, list[tuple[int, list[float]]]] = {}
    for parameters, benchmark in sorted(benchmarks, key=lambda pair: pair[0]):
        for method, runs in by_method(benchmark_runs(benchmark, (level,))).items():
            methods.setdefault(method, []).append((int(parameters), [run.levels["all"]["interp"][0] for run in runs]))
    return methods


def fitted_slope(points: list[tuple[int, list[float]]], rng: np.random.Generator) -> tuple[float, float, float]:
    """``(slope, low, high)`` of one method's curve (NaN where it has none; see the module docstring)."""
    sizes = [(math.log10(p), np.log10([q for q in queries if math.isfinite(q)])) for p, queries in points]
    sizes = [(x, y) for x, y in sizes if y.size]
    if len(sizes) < 2:
        return math.nan, math.nan, math.nan
    x = np.concatenate([np.full(y.size, log_p) for log_p, y in sizes])
    weights = (x - x.mean()) / np.sum((x - x.mean()) ** 2)  # least squares: slope = weights · y
    resampled = np.concatenate([y[rng.integers(0, y.size, (RESAMPLES, y.size))] for _, y in sizes], axis=1)
    return (float(weights @ np.concatenate([y for _, y in sizes])), *percentile_bounds(resampled @ weights))


def scaling_table(benchmarks: list[tuple[int, dict]], level: float) -> str:
    """Per method and size: median queries to ``level`` [95 % CI] and k/n reached; then the fitted slope."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    methods = curve(benchmarks, level)
    sizes = sorted({p for points in methods.values() for p, _ in points})
    lines = [
        f"queries (every query recorded) to held-out accuracy {level:g} against trainable parameters; "
        "median [95 % CI] (k/n reached); slope of log queries on log parameters [95 % CI]",
        f"{'method':<16}" + "".join(f"{p:>30,}" for p in sizes) + f"{'slope':>24}",
    ]
    for method, points in methods.items():
        cells = dict.fromkeys(sizes, "-")
        for parameters, queries in points:
            median, low, high = median_ci(queries, rng)
            reached = sum(math.isfinite(q) for q in queries)
            cells[parameters] = f"{_count(median)} [{_count(low)}–{_count(high)}] ({reached}/{len(queries)})"
        slope, low, high = fitted_slope(points, rng)
        fitted = "-" if math.isnan(slope) else f"{slope:.2f} [{low:.2f}–{high:.2f}]"
        lines.append(f"{method:<16}" + "".join(f"{cells[p]:>30}" for p in sizes) + f"{fitted:>24}")
    return "\n".join(lines)


def _count(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:,.0f}"


__all__ = ["curve", "fitted_slope", "scaling_table"]
