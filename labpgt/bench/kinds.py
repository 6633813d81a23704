"""The driver kinds: one table entry for each ``driver`` a bench config may name.

An entry (:class:`DriverKind`) is all the bench knows about one kind of instrument: its role on the
bench, its PyMeasure driver class, its whole state as a named type, how that state is sent (one
program message ending in ``*OPC?``, confirmed later with
:func:`~labpgt.instruments.drivers.read_confirmation`) and read back (one query), and the settings
an encoding may drive. Nothing else in :mod:`labpgt.bench` looks at a driver's name.

The range of each encodable setting is the one its driver class declares as ``MIN_<SETTING>`` and
``MAX_<SETTING>`` (``SignalGenerator.MIN_POWER_DBM``, ``RingController.MAX_FIELD_MT``, …), read
whenever a limit is checked: the drivers' validators and the bench's safety limits are the same
numbers.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import asdict, astuple, dataclass, fields
from typing import Any, Callable

from labpgt.instruments.drivers import (AnritsuGenerator, RingController, RohdeSchwarzAnalyzer, SignalGenerator,
                                        SpectrumAnalyzer)


@dataclass(frozen=True)
class GeneratorState:
    """A signal generator's whole state."""

    power_dbm: float
    frequency_hz: float
    output_on: bool


@dataclass(frozen=True)
class RingState:
    """The ring controller's whole state."""

    loop_gain_db: float
    field_mt: float
    amplifier_on: bool


@dataclass(frozen=True)
class AnalyzerState:
    """The spectrum analyzer's measurement setup."""

    center_hz: float
    span_hz: float
    rbw_hz: float
    points: int


State = GeneratorState | RingState | AnalyzerState


class Role(enum.Enum):
    """What an instrument does on the bench, whichever driver it has."""

    GENERATOR = "generator"  # an RF source: power-limited, and its output is off unless measuring
    RING = "ring"
    ANALYZER = "analyzer"    # exactly one per bench: it takes the traces


@dataclass(frozen=True)
class DriverKind:
    """One ``driver = "..."`` of a bench config and what it means."""

    name: str
    role: Role
    driver_class: type
    state_type: type
    send: Callable[[Any, Any], None]   # (driver, state): one message ending in *OPC?
    read: Callable[[Any], Any]         # (driver) -> state, in one query
    encodable: tuple[str, ...] = ()    # the settings an [[encoding]] may drive
    switch: str | None = None          # the state's on/off field, which a config calls ``output``
    models: str = ""                   # regex of the *IDN? model field the driver is written for ("": any)
    family: str = ""                   # those models in words, for the one line that refuses another

    def accepts_identity(self, identity: str) -> bool:
        """Whether ``*IDN?``'s answer (``maker,model,serial,firmware``) names a model of this kind."""
        parts = identity.split(",")
        return not self.models or (len(parts) >= 2 and re.fullmatch(self.models, parts[1].strip()) is not None)

    @property
    def fixed_settings(self) -> tuple[str, ...]:
        """The numeric settings of the state, which a config may fix."""
        return tuple(f.name for f in fields(self.state_type) if f.name != self.switch)

    def limits(self) -> dict[str, tuple[float, float]]:
        """The allowed range of each encodable setting, as the driver class declares it now."""
        return {setting: (getattr(self.driver_class, f"MIN_{setting.upper()}"),
                          getattr(self.driver_class, f"MAX_{setting.upper()}"))
                for setting in self.encodable}


def generator_kind(name: str, driver_class: type, models: str, family: str) -> DriverKind:
    """A signal generator's kind: any driver with ``send_state``/``read_state`` and MIN_/MAX_ limits."""
    return DriverKind(
        name=name, role=Role.GENERATOR, driver_class=driver_class, state_type=GeneratorState,
        send=lambda generator, state: generator.send_state(**asdict(state)),
        read=lambda generator: GeneratorState(*generator.read_state()),
        encodable=("power_dbm", "frequency_hz"), switch="output_on", models=models, family=family,
    )


def analyzer_kind(name: str, driver_class: type, models: str, family: str) -> DriverKind:
    """An analyzer's kind: any driver with ``send_setup``/``read_setup``/``sweep_and_read``."""
    return DriverKind(
        name=name, role=Role.ANALYZER, driver_class=driver_class, state_type=AnalyzerState,
        send=lambda analyzer, state: analyzer.send_setup(**asdict(state)),
        read=lambda analyzer: AnalyzerState(*analyzer.read_setup()),
        models=models, family=family,
    )


SIGNAL_GENERATOR = generator_kind(
    "signal-generator", SignalGenerator, r"E82[56]7[CD]|E8663D|N51[78][1-3][AB]",
    "a Keysight/Agilent PSG (E8257C/D, E8267C/D, E8663D), MXG (N5181/2/3A/B) or EXG (N5171/2/3B) signal generator")
ANRITSU_GENERATOR = generator_kind(
    "anritsu-signal-generator", AnritsuGenerator, r"MG369\d[ABC]?", "an Anritsu MG369x signal generator")
SPECTRUM_ANALYZER = analyzer_kind(
    "spectrum-analyzer", SpectrumAnalyzer, r"E44\d\dB|N90\d\d[AB]",
    "a Keysight/Agilent ESA (E44xxB) or X-series (N90xxA/B) spectrum analyzer")
RS_ANALYZER = analyzer_kind(
    "rs-spectrum-analyzer", RohdeSchwarzAnalyzer, r"FS[LVW](-?\d+)?",
    "a Rohde & Schwarz FSL, FSV or FSW spectrum analyzer")

RING_CONTROLLER = DriverKind(
    name="ring-controller", role=Role.RING, driver_class=RingController, state_type=RingState,
    send=lambda ring, state: ring.send_state(**asdict(state)),
    read=lambda ring: RingState(*ring.read_state()),
    encodable=("loop_gain_db", "field_mt"), switch="amplifier_on",
    models="RingController", family="the ring controller (model RingController)",
)

KINDS: dict[str, DriverKind] = {kind.name: kind for kind in (SIGNAL_GENERATOR, ANRITSU_GENERATOR, SPECTRUM_ANALYZER,
                                                              RS_ANALYZER, RING_CONTROLLER)}


def kinds_for(role: Role) -> list[DriverKind]:
    return [kind for kind in KINDS.values() if kind.role is role]


def states_agree(got: State, wanted: State) -> bool:
    """Whether a state read back is the one sent, to within what the instruments resolve."""
    return type(got) is type(wanted) and all(
        math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-3) for a, b in zip(astuple(got), astuple(wanted)))
