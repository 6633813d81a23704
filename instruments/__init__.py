"""PyMeasure instrument drivers of the labpgt bench (imports as ``labpgt.instruments``).

:class:`SignalGenerator` and :class:`SpectrumAnalyzer` extend PyMeasure's stock Agilent 8257D
and E4408B drivers; :class:`RingController` drives the lab's ring box. The simulated
instruments behind them live in :mod:`labpgt.instruments.simulated`.
"""

from .drivers import RingController, SignalGenerator, SpectrumAnalyzer, read_ieee_float32_block

__all__ = ["SignalGenerator", "SpectrumAnalyzer", "RingController", "read_ieee_float32_block"]
