"""PNG figures people would rather look at than read (matplotlib, Agg, no screen needed).

Each figure is a :class:`matplotlib.figure.Figure` of its own, never pyplot's: no global state to share
with a GUI thread, nothing to close, and pyplot's import is not paid at the end of every run.

Spectra, a training's loss and accuracy against the reservoir queries it spent, and a benchmark's
accuracy-against-queries curves per method (mean over seeds, with the spread of the seeds).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np


def _figure(**kwargs):
    from matplotlib.figure import Figure

    return Figure(**kwargs)  # savefig draws it on an Agg canvas: no backend, no screen


def plot_spectrum(
    frequencies_hz: np.ndarray,
    trace_dbm: np.ndarray,
    path: str | Path,
    title: str = "",
    peaks=(),
    threshold_dbm: float | None = None,
) -> Path:
    """Save one analyzer trace as a PNG (frequency in GHz, power in dBm), with the listed ``peaks`` (indices)
    marked and the level they were found above (``threshold_dbm``) dashed."""
    fig = _figure(figsize=(8, 4))
    ax = fig.subplots()
    ghz = np.asarray(frequencies_hz) / 1e9
    ax.plot(ghz, trace_dbm, lw=1.0)
    if len(peaks):
        ax.plot(
            ghz[list(peaks)],
            np.asarray(trace_dbm)[list(peaks)],
            "v",
            color="C3",
            ms=5,
            label=f"{len(peaks)} lines listed",
        )
    if threshold_dbm is not None:
        ax.axhline(threshold_dbm, color="C3", ls="--", lw=0.8, label=f"threshold {threshold_dbm:.1f} dBm")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("frequency (GHz)")
    ax.set_ylabel("power (dBm)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _thousands(value, _position=None) -> str:
    """An axis tick in thousands (``25k``): six-digit query counts would run into each other."""
    return f"{value / 1000:g}k" if value else "0"


def plot_history(result, path) -> Path:
    """A training's loss and accuracy against training queries (``result``: a :class:`labpgt.runs.RunResult`)."""
    h, held = result.history, result.holdout
    q = [e["training_queries"] for e in h]
    fig = _figure(figsize=(10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for ax, what, label in ((ax_loss, "loss", "cross-entropy loss"), (ax_acc, "accuracy", "accuracy")):
        trained = [(n, e[f"train_{what}"]) for n, e in zip(q, h) if f"train_{what}" in e]
        if trained:  # an evaluation toward a target measures no training sample
            ax.plot(*zip(*trained), marker=".", label="train")
        ax.plot(q, [e[f"{held}_{what}"] for e in h], marker=".", label=_held_label(h, held))
        ax.set_xlabel("training queries")
        ax.xaxis.set_major_formatter(_thousands)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_acc.set_ylim(0.0, 1.0)
    c = result.config
    fig.suptitle(f"{c['task']} — {c.get('model', 'dense')} — {c['method']} — {c['reservoir']} reservoir")
    return _save(fig, path)


def _held_label(history, held: str) -> str:
    """``held``, saying so when the evaluation budget measured a fixed subset before the last point
    (an entry without ``{held}_samples`` measured the whole split)."""
    sizes = [e.get(f"{held}_samples") for e in history]
    subset = [n for n in sizes[:-1] if n is not None]
    if not subset or (sizes[-1] is not None and set(sizes) == {sizes[-1]}):
        return held
    low, high = min(subset), max(subset)  # evaluations toward a target stop after as many as they need
    return f"{held} ({low if low == high else f'{low}-{high}'} samples; last: all)"


def plot_benchmark(benchmark: dict, path, title: str = "") -> Path:
    """Held-out accuracy against training queries, one curve per method: the mean over its runs (seeds, devices)
    at each evaluation, their range shaded (``benchmark`` as :func:`labpgt.benchmark.run_benchmark` returns it)."""
    held = benchmark["holdout"]
    fig = _figure(figsize=(11, 5))
    ax = fig.subplots()
    methods = list(dict.fromkeys(row["method"] for row in benchmark["results"]))
    for method in methods:
        rows = [r for r in benchmark["results"] if r["method"] == method]
        n = min(len(r["history"]) for r in rows)
        q = np.mean([[e["training_queries"] for e in r["history"][:n]] for r in rows], axis=0)
        acc = np.array([[e[f"{held}_accuracy"] for e in r["history"][:n]] for r in rows])
        (line,) = ax.plot(
            q,
            acc.mean(axis=0),
            marker="." if n > 1 else "o",
            label=f"{method} ({len(rows)} run{'s' if len(rows) > 1 else ''})",
        )
        if len(rows) > 1:
            ax.fill_between(q, acc.min(axis=0), acc.max(axis=0), color=line.get_color(), alpha=0.15)
    ax.axhline(
        benchmark["target_accuracy"],
        color="grey",
        lw=0.8,
        ls="--",
        label=f"target (mean {benchmark.get('target_method', 'pgt')})",
    )
    _digital_references(ax, benchmark.get("references", []), held)
    ax.set_xscale("log")
    ax.set_xlabel("training queries (log scale)")
    ax.set_ylabel(f"{held} accuracy")
    ax.set_ylim(0.0, 1.0)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the curves, never over them
    ax.set_title(title or f"{benchmark['task']} — {benchmark['model']} — {benchmark['reservoir']}")
    return _save(fig, path)


def _digital_references(ax, references: list[dict], held: str) -> None:
    """The digital-only models of the same split (no reservoir query) as dotted lines at their median held-out
    accuracy over seeds: what the runs through the reservoir stand beside."""
    styles = itertools.cycle([":", "-.", (0, (3, 1, 1, 1, 1, 1))])
    for name, style in zip(dict.fromkeys(r["reference"] for r in references), styles):
        values = [r[f"{held}_accuracy"] for r in references if r["reference"] == name]
        ax.axhline(np.median(values), color="black", lw=0.8, ls=style, label=f"digital only: {name}")


def plot_sweep_result(result, traces, path: str | Path, title: str = "") -> Path:
    """:func:`plot_sweep` of a :class:`labpgt.sweeps.SweepResult` and its traces (one per point measured)."""
    from labpgt.sweeps import THRESHOLD_SETTING

    spec = result.spec
    return plot_sweep(
        result.columns(),
        result.frequencies,
        np.stack(traces),
        path,
        value_label=spec.label,
        margin_level_db=spec.margin_db if spec.setting == THRESHOLD_SETTING else None,
        threshold=result.threshold_db,
        title=title,
    )


def plot_sweep(
    points: dict,
    frequencies_hz: np.ndarray,
    spectra_dbm: np.ndarray,
    path: str | Path,
    *,
    value_label: str,
    margin_level_db: float | None = None,
    threshold: float = float("nan"),
    title: str = "",
) -> Path:
    """Save a characterisation sweep as a PNG: peak power and margin against the swept value, and a
    waterfall of the spectra (colour dBm, swept value against frequency), the threshold marked on each.

    ``points``: the columns ``value``, ``peak_power_dbm`` and ``margin_db`` (as a session's ``points``
    holds them); ``spectra_dbm``: one trace per point (k, P) on ``frequencies_hz``; ``threshold``:
    the swept value to mark (NaN: none); ``margin_level_db``: the margin that defines it (None: no line).
    """
    values = np.asarray(points["value"], dtype=np.float64)
    fig = _figure(figsize=(11, 8))
    grid = fig.add_gridspec(2, 2, height_ratios=(1.0, 1.3))
    power_ax, margin_ax = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    for ax, column, ylabel in (
        (power_ax, "peak_power_dbm", "peak power (dBm)"),
        (margin_ax, "margin_db", "margin over the median (dB)"),
    ):
        ax.plot(values, points[column], marker="o", ms=3, lw=1.2)
        ax.set_xlabel(value_label)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    if margin_level_db is not None:
        margin_ax.axhline(margin_level_db, color="grey", ls=":", lw=1, label=f"threshold margin {margin_level_db:g} dB")
    waterfall_ax = fig.add_subplot(grid[1, :])
    _waterfall(fig, waterfall_ax, values, np.asarray(frequencies_hz), np.asarray(spectra_dbm), value_label)
    if np.isfinite(threshold):
        for ax in (power_ax, margin_ax):
            ax.axvline(threshold, color="tab:orange", ls="--", lw=1.2, label=f"threshold {threshold:.3f}")
        waterfall_ax.axhline(threshold, color="tab:orange", ls="--", lw=1.2)
    if margin_ax.get_legend_handles_labels()[0]:
        margin_ax.legend(loc="best", fontsize="small")
    fig.suptitle(title)
    return _save(fig, path)


def _waterfall(fig, ax, values: np.ndarray, frequencies_hz: np.ndarray, spectra_dbm: np.ndarray, value_label: str):
    """The spectra as an image: one row per swept value (ascending upwards), frequency across, colour dBm."""
    order = np.argsort(values)
    values, spectra = values[order], spectra_dbm[order]
    half_row = (values[-1] - values[0]) / (2 * (len(values) - 1)) if len(values) > 1 else 0.5
    extent = (frequencies_hz[0] / 1e9, frequencies_hz[-1] / 1e9, values[0] - half_row, values[-1] + half_row)
    image = ax.imshow(spectra, aspect="auto", origin="lower", extent=extent, interpolation="nearest", cmap="viridis")
    fig.colorbar(image, ax=ax, label="power (dBm)")
    ax.set_xlabel("frequency (GHz)")
    ax.set_ylabel(value_label)


def plot_twin_fit(fit, path) -> Path:
    """A twin against the measurements it was not fitted on (``fit``: a :class:`labpgt.twin.TwinFit`):
    predicted against measured features, a few held-out feature vectors, and the error per feature."""
    fig = _figure(figsize=(15, 4.5))
    ax_scatter, ax_rows, ax_error = fig.subplots(1, 3)
    ax_scatter.plot(fit.measured.ravel(), fit.predicted.ravel(), ".", ms=2, alpha=0.4)
    low, high = float(min(fit.measured.min(), fit.predicted.min())), float(max(fit.measured.max(), fit.predicted.max()))
    ax_scatter.plot([low, high], [low, high], color="grey", lw=0.8)
    ax_scatter.set_xlabel("measured feature")
    ax_scatter.set_ylabel("twin's prediction")
    ax_scatter.set_title(f"held-out pairs ({fit.rows_held_out})")
    for row in np.linspace(0, len(fit.measured) - 1, min(3, len(fit.measured))).astype(int):
        (line,) = ax_rows.plot(fit.measured[row], lw=1.5, label=f"measured #{row}")
        ax_rows.plot(fit.predicted[row], ls="--", color=line.get_color(), label=f"twin #{row}")
    ax_rows.set_xlabel("feature (frequency bin)")
    ax_rows.set_ylabel("feature value")
    ax_rows.legend(fontsize=7)
    ax_error.bar(np.arange(len(fit.heldout_error_per_feature)), fit.heldout_error_per_feature)
    ax_error.set_xlabel("feature")
    ax_error.set_ylabel("held-out error (standardised RMS)")
    ax_error.set_title(f"overall {fit.heldout_error:.3f}")
    for ax in (ax_scatter, ax_rows, ax_error):
        ax.grid(alpha=0.3)
    return _save(fig, path)
