"""Characterisation sweeps of the ring: what a swept trace says, in plain numpy.

* :func:`line_margin` — a trace's strongest line (injected tones excluded) and how far it stands
  above the trace's median (the noise floor);
* :func:`estimate_threshold` — the swept value where that margin first rises through a level: the
  auto-oscillation threshold when the loop gain is swept;
* :func:`fixed_settings` — what a sweep of one setting holds fixed, for its session's config.

No PyMeasure and no Qt here, so inspection can use it; the sweep loop itself is
:class:`labpgt.procedures.sweep.RingSweep`.
"""

from __future__ import annotations

import math

import numpy as np


def line_margin(trace_dbm, frequencies_hz, excluded_hz=(), exclude_width_hz=0.0):
    """``(peak_frequency_hz, peak_dbm, margin_db)``: the strongest point outside ±width of every
    excluded frequency, and how far it stands above the trace's median."""
    trace = np.asarray(trace_dbm, dtype=np.float64)
    f = np.asarray(frequencies_hz, dtype=np.float64)
    keep = np.ones(trace.shape, dtype=bool)
    for tone in excluded_hz:
        keep &= np.abs(f - tone) > exclude_width_hz
    if not keep.any():
        keep[:] = True
    i = int(np.flatnonzero(keep)[np.argmax(trace[keep])])
    return float(f[i]), float(trace[i]), float(trace[i] - np.median(trace))


def estimate_threshold(values, margins, margin_db: float = 30.0) -> float:
    """The swept value where ``margins`` first rises through ``margin_db`` (linear interpolation); NaN if never.

    ``values`` must be monotonic (either direction); the first point already above gives that point.
    """
    v = np.asarray(values, dtype=np.float64)
    m = np.asarray(margins, dtype=np.float64)
    order = np.argsort(v)
    v, m = v[order], m[order]
    above = np.flatnonzero(m >= margin_db)
    if above.size == 0:
        return math.nan
    i = int(above[0])
    if i == 0:
        return float(v[0])
    return float(v[i - 1] + (margin_db - m[i - 1]) / (m[i] - m[i - 1]) * (v[i] - v[i - 1]))


def fixed_settings(bench_config, instrument: str, setting: str) -> dict:
    """``{"<instrument>.<setting>": value}`` of every ring and generator setting of the bench but the swept one."""
    held = [name for name in (bench_config.ring, *bench_config.generators) if name is not None]
    return {f"{name}.{key}": value for name in held
            for key, value in bench_config.instruments[name].settings.items() if (name, key) != (instrument, setting)}
