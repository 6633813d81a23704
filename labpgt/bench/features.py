"""The features of a trace: what the model sees of one analyzer sweep.

A trace in dBm is normalised, ``(dBm - floor) / (ceiling - floor)``, and mean-pooled into ``bins``
contiguous frequency bins (the last ones one point wider when the points do not divide evenly).
The bench config's ``[features]`` table gives ``bins``, ``floor_dbm`` and ``ceiling_dbm``.

This module needs numpy only: replay and the sweep procedure recompute features from recorded
spectra without loading any instrument library.
"""

from __future__ import annotations

import numpy as np


def trace_features(traces_dbm: np.ndarray, bins: int, floor_dbm: float, ceiling_dbm: float) -> np.ndarray:
    """Normalise traces (B, P) in dBm to (dBm - floor)/(ceiling - floor) and mean-pool into ``bins``."""
    traces = np.atleast_2d(np.asarray(traces_dbm, dtype=np.float64))
    normalised = (traces - floor_dbm) / (ceiling_dbm - floor_dbm)
    edges = np.linspace(0, traces.shape[1], bins + 1).round().astype(int)
    sums = np.add.reduceat(normalised, edges[:-1], axis=1)
    return sums / np.diff(edges)[None, :]
