"""PyMeasure instrument drivers of the labpgt bench (imports as ``labpgt.instruments``).

:class:`SignalGenerator` and :class:`SpectrumAnalyzer` extend PyMeasure's stock Agilent 8257D
and E4408B drivers, :class:`AnritsuGenerator` and :class:`RohdeSchwarzAnalyzer` its Anritsu MG3692C
and R&S FSL drivers; :class:`RingController` drives the lab's ring box. The simulated
instruments behind them live in :mod:`labpgt.instruments.simulated`.
"""

from .drivers import (
    AnritsuGenerator,
    RingController,
    RohdeSchwarzAnalyzer,
    SignalGenerator,
    SpectrumAnalyzer,
    read_ieee_float32_block,
)

__all__ = [
    "SignalGenerator",
    "AnritsuGenerator",
    "SpectrumAnalyzer",
    "RohdeSchwarzAnalyzer",
    "RingController",
    "read_ieee_float32_block",
]
