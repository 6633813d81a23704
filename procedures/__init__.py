"""PyMeasure procedures and the ManagedWindow GUI (imports as ``labpgt.procedures``).

* :class:`~labpgt.procedures.training.PGTTraining` — one training run, recorded in a session file;
* :class:`~labpgt.procedures.sweep.RingSweep` — characterisation sweeps and the threshold estimate;
* :mod:`labpgt.procedures.window` — ``labpgt gui`` (:func:`~labpgt.procedures.window.main`).

Importing this package does not import Qt; only :mod:`labpgt.procedures.window` does.
"""

from labpgt.procedures.sweep import RingSweep
from labpgt.procedures.training import PGTTraining, SpectrumFeed
from labpgt.sweeps import estimate_threshold, line_margin

__all__ = ["PGTTraining", "RingSweep", "SpectrumFeed", "estimate_threshold", "line_margin"]
