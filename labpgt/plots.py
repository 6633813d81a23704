"""PNG figures people would rather look at than read: spectra (matplotlib, Agg, no screen needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_spectrum(frequencies_hz: np.ndarray, trace_dbm: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Save one analyzer trace as a PNG (frequency in GHz, power in dBm)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(np.asarray(frequencies_hz) / 1e9, trace_dbm, lw=1.0)
    ax.set_xlabel("frequency (GHz)")
    ax.set_ylabel("power (dBm)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
