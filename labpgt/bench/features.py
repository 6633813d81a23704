"""The features of a trace: what the model sees of one analyzer sweep.

A trace in dBm is normalised, ``(dBm - floor) / (ceiling - floor)``, and mean-pooled into ``bins``
contiguous frequency bins (the last ones one point wider when the points do not divide evenly).
The bench config's ``[features]`` table gives ``bins``, ``floor_dbm`` and ``ceiling_dbm``.

Every trace is first put on a grid of :data:`TRACE_RESOLUTION_DB` (2⁻⁷ dB ≈ 0.0078 dB) by
:func:`quantise_trace`; the features are computed from that trace, and the session stores exactly it.
2⁻⁷ dB is finer than any analyzer's amplitude display resolution (0.01 dB) and far below its
trace noise and amplitude accuracy (tenths of a dB), so nothing the instrument resolves is lost; a
binary fraction of a dB is exact in float32 (every value up to 2¹⁶ dB in magnitude), so the
stored trace is the one the features came from, bit for bit, and its low mantissa bits are
zero, which the session's compression filter removes (see :mod:`labpgt.session.schema`).

This module needs numpy only: replay and the sweep procedure recompute features from recorded
spectra without loading any instrument library.
"""

from __future__ import annotations

import numpy as np

TRACE_RESOLUTION_DB = 2.0**-7  # the grid of every trace in dBm (see above); recorded in each session


def quantise_trace(traces_dbm: np.ndarray) -> np.ndarray:
    """Traces (dBm) rounded to the nearest multiple of :data:`TRACE_RESOLUTION_DB`, as float32 (exact)."""
    traces = np.asarray(traces_dbm, dtype=np.float64)
    return (np.round(traces / TRACE_RESOLUTION_DB) * TRACE_RESOLUTION_DB).astype(np.float32)


def trace_features(traces_dbm: np.ndarray, bins: int, floor_dbm: float, ceiling_dbm: float) -> np.ndarray:
    """Normalise traces (B, P) in dBm to (dBm - floor)/(ceiling - floor) and mean-pool into ``bins``."""
    traces = np.atleast_2d(np.asarray(traces_dbm, dtype=np.float64))
    normalised = (traces - floor_dbm) / (ceiling_dbm - floor_dbm)
    edges = np.linspace(0, traces.shape[1], bins + 1).round().astype(int)
    sums = np.add.reduceat(normalised, edges[:-1], axis=1)
    return sums / np.diff(edges)[None, :]
