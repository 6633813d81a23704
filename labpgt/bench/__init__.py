"""The bench: a TOML bench config turned into connected instruments, and a reservoir built on them.

* :mod:`.config` — the bench config: reading and validating a bench TOML (the format is in its
  docstring), writing one, and the built-in simulated bench;
* :mod:`.kinds` — one table entry per driver kind: role, driver class, state type, send and read;
* :mod:`.safety` — the limits, checked when a config is read and before anything is sent;
* :mod:`.features` — a trace in dBm turned into the features the model sees;
* :mod:`.connect` — opening the instruments over VISA or on the embedded simulator;
* :mod:`.reservoir` — :class:`Bench`, the connected instruments as a reservoir.

The public names below import from here (``from labpgt.bench import Bench``), each loaded from its
module on first use: ``import labpgt.bench.features`` loads no instrument library.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "BenchConfig": "config",
    "EncodingInput": "config",
    "InstrumentConfig": "config",
    "bench_config_toml": "config",
    "load_bench_config": "config",
    "parse_bench_config": "config",
    "simulated_bench_config": "config",
    "KINDS": "kinds",
    "DriverKind": "kinds",
    "Role": "kinds",
    "AnalyzerState": "kinds",
    "GeneratorState": "kinds",
    "RingState": "kinds",
    "SafetyError": "safety",
    "check_config_safe": "safety",
    "check_state_safe": "safety",
    "trace_features": "features",
    "InstrumentUnreachable": "connect",
    "connect_instruments": "connect",
    "embedded_simulator": "connect",
    "WrongInstrument": "connect",
    "Bench": "reservoir",
    "BenchFault": "reservoir",
    "embedded_bench": "reservoir",
    "load_bench": "reservoir",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
