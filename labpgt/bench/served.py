"""The simulated bench served over loopback TCP, as ``labpgt sim`` runs it: each instrument a LAN instrument.

:func:`serve_simulated_bench` makes the simulated bench (:mod:`labpgt.instruments.simulated`), serves each
instrument on its own port (:func:`~labpgt.bench.config.simulated_ports`, or free ports), writes the bench
config of what it serves when asked, and says what it injects; it stops when its ``stopped`` event is set
(:meth:`ServedBench.request_stop`, what a process signal asks through :mod:`labpgt.signals`).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from labpgt.bench.config import bench_config_toml, simulated_bench_config, simulated_ports
from labpgt.bench.connect import simulator_behaviours
from labpgt.errors import UserError


@dataclass
class ServedBench:
    """A bench being served: its instruments' VISA ``resources``, and the event that ends the serving."""

    resources: dict
    stopped: threading.Event = field(default_factory=threading.Event)

    def request_stop(self, reason=None) -> None:
        self.stopped.set()


@contextlib.contextmanager
def serve_simulated_bench(
    *,
    generators: int,
    host: str,
    port: int,
    seed: int,
    noise: bool,
    analyzer: str,
    models: list[str],
    faults=None,
    behaviours: dict,
    realtime: bool = False,
    device: int = 0,
    bench_file: Path | None = None,
    ring_parts: tuple[str, str] | None = None,
):
    """Serve the simulated bench until the context ends (``port`` 0: free ports); yields a :class:`ServedBench`.
    ``ring_parts``: None for the ring controller, or (attenuator, gaussmeter) models for the ring a lab builds."""
    from labpgt.instruments.simulated import SimulatedBench, serve

    bench = SimulatedBench(
        n_generators=generators,
        seed=seed,
        noise=noise,
        analyzer_model=analyzer,
        generator_models=models,
        behaviours=simulator_behaviours(behaviours),
        realtime=realtime,
        device=device,
        ring_parts=ring_parts,
    )
    try:
        server = serve(bench, host=host, ports=simulated_ports(port, generators) if port else None, faults=faults)
    except OSError as exc:
        raise UserError(f"cannot serve on {host} port {port}: {exc.strerror or exc}") from None
    with server:
        if bench_file is not None:
            config = simulated_bench_config(
                embedded=False,
                generators=generators,
                analyzer_model=analyzer,
                generator_models=models,
                physics={"device": device},
                ring_parts=ring_parts,
            ).with_resources(server.resources)
            Path(bench_file).write_text(bench_config_toml(config))
        if server.faults is not None:
            print(f"labpgt sim: injecting faults {server.faults.spec}", file=sys.stderr, flush=True)
        yield ServedBench(dict(server.resources))
    if server.faults is not None:
        print(f"labpgt sim: faults injected: {server.faults.summary()}", file=sys.stderr, flush=True)
