"""The reservoirs a run can name, and making one from a training config.

=============  ==================================================================================
name           reservoir
=============  ==================================================================================
``digital``    :class:`~labpgt.digital.DigitalReservoir`, a differentiable stand-in (the backprop
               reference); widths and noise from the config's ``digital_*`` settings
``ring-sim``   the embedded simulated ring bench — simulated device ``ring_device`` (0: the nominal
               ring), its drift held still if ``ring_drift`` is off — or the instruments of the
               config's ``bench`` TOML
``twin:FILE``  a twin of a ring fitted from recorded sessions (``labpgt twin fit``): its prediction
               plus noise of its measured size (:class:`labpgt.twin.TwinReservoir`); differentiable
=============  ==================================================================================

The registry maps each name (or, for ``twin:``, each prefix) to its factory; nothing else branches
on reservoir names. Factories import what they need when called, so naming a reservoir costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from labpgt.errors import UserError


def _digital(config):
    from labpgt.digital import DigitalReservoir

    return DigitalReservoir(input_width=config.digital_input_width, feature_width=config.digital_feature_width,
                            noise=config.digital_noise, seed=config.seed)


def _digital_widths(config) -> tuple[int, int]:
    return int(config.digital_input_width), int(config.digital_feature_width)


def _ring(config):
    from labpgt import bench

    if config.bench:
        return bench.load_bench(config.bench)
    physics = {**({} if config.ring_drift else {"drift": False}), **({"device": config.ring_device} if config.ring_device else {})}
    return bench.embedded_bench(seed=config.seed, physics=physics or None)


def _ring_widths(config) -> tuple[int, int]:
    from labpgt.bench.config import load_bench_config, simulated_bench_config

    return (load_bench_config(config.bench) if config.bench else simulated_bench_config(embedded=True)).widths


@dataclass(frozen=True)
class ReservoirKind:
    """A reservoir a run can name: how to make it, its ``(input_width, feature_width)`` without making
    it, whether it can be differentiated (backprop), and whether a bench TOML says which instruments it is."""

    make: Callable
    widths: Callable
    differentiable: bool
    takes_bench: bool = False


def _twin(config):
    from labpgt.twin import TwinReservoir

    return TwinReservoir(config.reservoir.split(":", 1)[1], seed=config.seed)


def _twin_widths(config) -> tuple[int, int]:
    from labpgt.twin import read_twin

    spec = read_twin(config.reservoir.split(":", 1)[1]).model.spec
    return int(spec.input_width), int(spec.feature_width)


RESERVOIRS = {"digital": ReservoirKind(_digital, _digital_widths, differentiable=True),
              "ring-sim": ReservoirKind(_ring, _ring_widths, differentiable=False, takes_bench=True),
              "twin:": ReservoirKind(_twin, _twin_widths, differentiable=True)}


def reservoir_kind(name: str) -> ReservoirKind:
    prefix = name.split(":", 1)[0] + ":" if ":" in name else None
    if prefix in RESERVOIRS and name[len(prefix):]:
        return RESERVOIRS[prefix]
    if name in RESERVOIRS and not name.endswith(":"):
        return RESERVOIRS[name]
    raise UserError(f"unknown reservoir {name!r}; valid reservoirs: digital, ring-sim, twin:FILE.h5")


def resolved_reservoir_name(name: str) -> str:
    """``name`` as a run records it: a ``twin:`` file's path made absolute (and checked), so that resume
    and replay find it from any directory."""
    reservoir_kind(name)
    if name.startswith("twin:"):
        path = Path(name[len("twin:"):])
        if not path.is_file():
            raise UserError(f"twin file {path} does not exist")
        return f"twin:{path.resolve()}"
    return name


def make_reservoir(config):
    """The reservoir ``config`` (a TrainConfig) names, seeded by ``config.seed``."""
    return reservoir_kind(config.reservoir).make(config)
