"""Simulated instruments that speak real SCPI, backed by one physical ring model.

* :mod:`.ring` — the physics (:class:`RingModel`, :class:`RingParameters`) and the real ring's behaviours
  (:class:`Behaviours`; ``Behaviours.ideal()`` for the kind ring); docs/ring-physics.md has the equations.
* :mod:`.laboratory` — the bench's clock and the laboratory's drifts (temperatures, magnet, supply, gain).
* :mod:`.spread` — simulated ring devices drawn from the documented device-to-device spread.
* :mod:`.scpi` — the instrument-side SCPI parser and error queue.
* :mod:`.devices` — :class:`SimulatedBench` and its generators (Keysight PSG/MXG/EXG, Anritsu
  MG369x), ring controller and analyzers.
* :mod:`.analyzer` — the analyzers' front end and dialects (Keysight ESA and X-series, R&S FSx).
* :mod:`.detector` — the analyzer's resolution filter, own floor, detector and video-filter statistics.
* :mod:`.transport` — :class:`SimulatedAdapter` (in-process PyMeasure adapter) and
  :func:`serve` (raw-socket SCPI over loopback TCP).

.. code-block:: python

    from labpgt.instruments import SignalGenerator
    from labpgt.instruments.simulated import SimulatedBench, SimulatedAdapter, serve

    bench = SimulatedBench(n_generators=4, seed=0)                 # a real ring: drift, memory, ...
    gen1 = SignalGenerator(SimulatedAdapter(bench["gen1"]))        # in-process
    with serve(bench) as server:                                   # or over TCP
        print(server.resources["analyzer"])   # TCPIP::127.0.0.1::PORT::SOCKET
"""

from .devices import (
    ANALYZER_MODELS,
    GENERATOR_MODELS,
    SimulatedBench,
    SimulatedFsxAnalyzer,
    SimulatedRingController,
    SimulatedSignalGenerator,
    SimulatedSpectrumAnalyzer,
    SimulatedXSeriesAnalyzer,
)
from .transport import Server, SimulatedAdapter, serve

__all__ = [
    "SimulatedBench",
    "SimulatedSignalGenerator",
    "SimulatedRingController",
    "SimulatedSpectrumAnalyzer",
    "SimulatedXSeriesAnalyzer",
    "SimulatedFsxAnalyzer",
    "ANALYZER_MODELS",
    "GENERATOR_MODELS",
    "SimulatedAdapter",
    "Server",
    "serve",
]
