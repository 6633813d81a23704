"""Simulated instruments that speak real SCPI, backed by one physical ring model.

* :mod:`.ring` — the physics (:class:`RingModel`, :class:`RingParameters`), the real ring's behaviours
  (:class:`Behaviours`; ``Behaviours.ideal()`` for the kind ring) and the bench's clock and drift.
* :mod:`.scpi` — the instrument-side SCPI parser and error queue.
* :mod:`.devices` — :class:`SimulatedBench` and its generators, ring controller and analyzer.
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

from .devices import (SimulatedBench, SimulatedRingController, SimulatedSignalGenerator,
                      SimulatedSpectrumAnalyzer)
from .transport import SimulatedAdapter, Server, serve

__all__ = ["SimulatedBench", "SimulatedSignalGenerator", "SimulatedRingController",
           "SimulatedSpectrumAnalyzer", "SimulatedAdapter", "Server", "serve"]
