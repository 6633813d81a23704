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

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from labpgt.errors import UserError
from labpgt.settings import check, existing_file, setting


@dataclass(frozen=True)
class ReservoirSettings:
    """A reservoir kind's own settings (each kind declares its class); ``name`` is what a run records."""

    kind: ClassVar[str] = ""

    def __post_init__(self):
        check(self)

    @property
    def name(self) -> str:
        return self.kind


@dataclass(frozen=True)
class DigitalSettings(ReservoirSettings):
    kind: ClassVar[str] = "digital"
    digital_input_width: int = setting(8, "the digital reservoir's input width d", minimum=1)
    digital_feature_width: int = setting(32, "the digital reservoir's feature width m", minimum=1)
    digital_noise: float = setting(0.0, "the digital reservoir's measurement noise (standard deviation)", minimum=0)


@dataclass(frozen=True)
class RingSettings(ReservoirSettings):
    kind: ClassVar[str] = "ring-sim"
    bench: str | None = setting(
        None,
        "bench TOML: train through these instruments (real or served)",
        derived="the embedded simulated bench",
        parse=existing_file("bench config"),
        label="Bench config (.toml)",
    )
    ring_drift: bool = setting(
        True,
        "the embedded simulated ring's temperature and field drift (off: held still)",
        flag="--no-drift",
        label="Simulated ring drifts",
    )
    ring_device: int = setting(
        0,
        "the embedded simulated ring's device: 0 the nominal ring, N >= 1 one drawn from "
        "the documented device-to-device spread (docs/ring-physics.md)",
        minimum=0,
        label="Simulated ring device",
    )

    def __post_init__(self):
        super().__post_init__()
        if not self.ring_drift and self.bench:
            raise UserError(
                "ring_drift off holds the embedded simulated ring's temperature and field still; "
                f"it cannot apply to the instruments of {self.bench}"
            )
        if self.ring_device and self.bench:
            raise UserError(
                "ring_device picks a simulated ring device of the embedded bench; "
                f"it cannot apply to the instruments of {self.bench}"
            )


@dataclass(frozen=True)
class TwinFileSettings(ReservoirSettings):
    kind: ClassVar[str] = "twin:"
    twin_file: str = ""  # named in the reservoir's name, twin:FILE.h5, not a setting of its own

    @property
    def name(self) -> str:
        return f"twin:{self.twin_file}"


def _digital(config):
    from labpgt.digital import DigitalReservoir

    r = config.reservoir
    return DigitalReservoir(
        input_width=r.digital_input_width,
        feature_width=r.digital_feature_width,
        noise=r.digital_noise,
        seed=config.seed,
    )


def _digital_widths(config) -> tuple[int, int]:
    return int(config.reservoir.digital_input_width), int(config.reservoir.digital_feature_width)


def _ring(config):
    from labpgt import bench

    r = config.reservoir
    if r.bench:
        return bench.load_bench(r.bench)
    physics = {**({} if r.ring_drift else {"drift": False}), **({"device": r.ring_device} if r.ring_device else {})}
    return bench.embedded_bench(seed=config.seed, physics=physics or None)


def _ring_widths(config) -> tuple[int, int]:
    from labpgt.bench.config import load_bench_config, simulated_bench_config

    bench = config.reservoir.bench
    return (load_bench_config(bench) if bench else simulated_bench_config(embedded=True)).widths


@dataclass(frozen=True)
class ReservoirKind:
    """A reservoir a run can name: its settings, how to make it, its ``(input_width, feature_width)``
    without making it, whether it can be differentiated (backprop), and whether a bench TOML says which
    instruments it is."""

    Settings: type[ReservoirSettings]
    make: Callable
    widths: Callable
    differentiable: bool
    takes_bench: bool = False


def _twin(config):
    from labpgt.twin import TwinReservoir

    return TwinReservoir(config.reservoir.twin_file, seed=config.seed)


def _twin_widths(config) -> tuple[int, int]:
    from labpgt.twin import read_twin

    spec = read_twin(config.reservoir.twin_file).model.spec
    return int(spec.input_width), int(spec.feature_width)


RESERVOIRS = {
    "digital": ReservoirKind(DigitalSettings, _digital, _digital_widths, differentiable=True),
    "ring-sim": ReservoirKind(RingSettings, _ring, _ring_widths, differentiable=False, takes_bench=True),
    "twin:": ReservoirKind(TwinFileSettings, _twin, _twin_widths, differentiable=True),
}
NAMES = "digital, ring-sim, twin:FILE.h5"


def reservoir_kind(name: str) -> ReservoirKind:
    prefix = name.split(":", 1)[0] + ":" if ":" in name else None
    if prefix in RESERVOIRS and name[len(prefix) :]:
        return RESERVOIRS[prefix]
    if name in RESERVOIRS and not name.endswith(":"):
        return RESERVOIRS[name]
    raise UserError(f"unknown reservoir {name!r}; valid reservoirs: {NAMES}")


def resolved_reservoir_name(name: str) -> str:
    """``name`` as a run records it: a ``twin:`` file's path made absolute (and checked), so that resume
    and replay find it from any directory."""
    reservoir_kind(name)
    if name.startswith("twin:"):
        path = Path(name[len("twin:") :])
        if not path.is_file():
            raise UserError(f"twin file {path} does not exist")
        return f"twin:{path.resolve()}"
    return name


def reservoir_settings(name: str, values: dict) -> ReservoirSettings:
    """The settings of the reservoir named ``name`` (``twin:FILE`` carries its file in the name)."""
    kind = reservoir_kind(name)
    if kind.Settings is TwinFileSettings:
        return TwinFileSettings(twin_file=name[len("twin:") :], **values)
    return kind.Settings(**values)


def make_reservoir(config):
    """The reservoir ``config`` (a TrainConfig) names, seeded by ``config.seed``."""
    return reservoir_kind(config.reservoir.name).make(config)
