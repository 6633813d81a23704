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
from collections.abc import Callable, Mapping
from dataclasses import asdict, astuple, dataclass, fields
from typing import Any, TypeVar

from labpgt.instruments.controls import (
    CoilSupply,
    Gaussmeter421,
    Gaussmeter425,
    MiniCircuitsAttenuator,
    StepAttenuatorDriver,
    TaborGenerator,
    TemperatureController,
    VcaSource,
    WeinschelAttenuator,
)
from labpgt.instruments.drivers import (
    AnritsuGenerator,
    RingController,
    RohdeSchwarzAnalyzer,
    SignalGenerator,
    SpectrumAnalyzer,
)


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


@dataclass(frozen=True)
class AttenuatorState:
    """A loop attenuator's attenuation (in the attenuator's steps): it takes the loop gain down."""

    attenuation_db: float


@dataclass(frozen=True)
class MagnetState:
    """The bias field the coil supply is to give, as the gaussmeter reads it (reached by the closed loop of
    :mod:`labpgt.bench.field`), or — when ``current_a`` is not None — a coil current set open loop (a
    calibration sweep); ``output_on``: the supply's output."""

    field_mt: float
    output_on: bool
    current_a: float | None = None


@dataclass(frozen=True)
class SensorState:
    """A sensor's (gaussmeter's, thermometer's) state: nothing the bench sets."""


State = GeneratorState | RingState | AnalyzerState | AttenuatorState | MagnetState | SensorState
StateT = TypeVar("StateT", bound=State)


def state_of(states: Mapping[str, State], name: str, state_type: type[StateT]) -> StateT:
    """``states[name]``, the state of an instrument whose role makes it a ``state_type`` (an analyzer's is an
    :class:`AnalyzerState`, …); a TypeError if it is not."""
    state = states[name]
    if not isinstance(state, state_type):
        raise TypeError(f"the state of {name} is {type(state).__name__}, not {state_type.__name__}")
    return state


@dataclass(frozen=True)
class Option:
    """A key of an ``[instruments.NAME]`` table that is not a setting: a limit, a calibration, a name.

    ``kind``: ``number``, ``text`` or ``pairs`` (an array of [x, y] number pairs); ``required`` or ``default``."""

    name: str
    kind: str = "number"
    required: bool = False
    default: Any = None


class Role(enum.Enum):
    """What an instrument does on the bench, whichever driver it has."""

    GENERATOR = "generator"  # an RF source: power-limited, and its output is off unless measuring
    RING = "ring"  # the ring controller: loop gain, field, amplifier in one box
    ANALYZER = "analyzer"  # exactly one per bench: it takes the traces
    ATTENUATOR = "attenuator"  # a loop attenuator: the loop gain
    MAGNET = "magnet"  # the coil's current supply: the field, through a gaussmeter's closed loop
    GAUSSMETER = "gaussmeter"  # the Hall probe beside the film: read, never set
    THERMOMETER = "thermometer"  # a temperature controller's sensor input on the ring: read after each query


@dataclass(frozen=True)
class DriverKind:
    """One ``driver = "..."`` of a bench config and what it means."""

    name: str
    role: Role
    driver_class: type
    state_type: type
    send: Callable[[Any, Any], None]  # (driver, state): one message ending in *OPC?
    read: Callable[[Any], Any]  # (driver) -> state, in one query
    encodable: tuple[str, ...] = ()  # the settings an [[encoding]] may drive
    switch: str | None = None  # the state's on/off field, which a config calls ``output``
    models: str = ""  # regex of the *IDN? model field the driver is written for ("": any)
    family: str = ""  # those models in words, for the one line that refuses another
    options: tuple[Option, ...] = ()  # the table's keys besides the settings (limits, calibrations, names)
    identify: Callable[[Any], str] = lambda driver: idn(driver)  # the *IDN?-style identity
    prepare: Callable[[Any, Any], None] | None = None  # (driver, InstrumentConfig) once connected: one message
    settable: bool = True  # False: a sensor, nothing to send
    steps: Callable[[Any], dict] = lambda driver_class: {}  # setting -> the step its values are rounded to

    def accepts_identity(self, identity: str) -> bool:
        """Whether ``*IDN?``'s answer (``maker,model,serial,firmware``) names a model of this kind."""
        parts = identity.split(",")
        return not self.models or (len(parts) >= 2 and re.fullmatch(self.models, parts[1].strip()) is not None)

    @property
    def fixed_settings(self) -> tuple[str, ...]:
        """The numeric settings of the state, which a config may fix."""
        return tuple(f.name for f in fields(self.state_type) if f.name != self.switch)

    def limits(self, inst=None) -> dict[str, tuple[float, float]]:
        """The allowed range of each encodable setting, as the driver class declares it now, narrowed by the
        instrument's table ``inst`` where it sets limits of its own (a coil's ``max_current_a``, a VCA's
        calibration; see :func:`table_limits`)."""
        declared = {
            setting: (
                getattr(self.driver_class, f"MIN_{setting.upper()}"),
                getattr(self.driver_class, f"MAX_{setting.upper()}"),
            )
            for setting in self.encodable
        }
        if inst is not None:
            for setting, (low, high) in table_limits(self, inst).items():
                old_low, old_high = declared.get(setting, (low, high))
                declared[setting] = (max(low, old_low), min(high, old_high))
        return declared

    def quantised(self, setting: str, value: float) -> float:
        """``value`` rounded to the step the instrument sets ``setting`` in (as it is, for most)."""
        step = self.steps(self.driver_class).get(setting)
        return value if step is None else float(round(round(value / step) * step, 9))


def idn(driver) -> str:
    """``*IDN?``'s answer, also through a stock driver that is not SCPI but whose instrument answers it."""
    try:
        return str(driver.id)
    except NotImplementedError:
        return str(driver.ask("*IDN?"))


def generator_kind(name: str, driver_class: type, models: str, family: str) -> DriverKind:
    """A signal generator's kind: any driver with ``send_state``/``read_state`` and MIN_/MAX_ limits."""
    return DriverKind(
        name=name,
        role=Role.GENERATOR,
        driver_class=driver_class,
        state_type=GeneratorState,
        send=lambda generator, state: generator.send_state(**asdict(state)),
        read=lambda generator: GeneratorState(*generator.read_state()),
        encodable=("power_dbm", "frequency_hz"),
        switch="output_on",
        models=models,
        family=family,
    )


def analyzer_kind(name: str, driver_class: type, models: str, family: str) -> DriverKind:
    """An analyzer's kind: any driver with ``send_setup``/``read_setup``/``sweep_and_read``."""
    return DriverKind(
        name=name,
        role=Role.ANALYZER,
        driver_class=driver_class,
        state_type=AnalyzerState,
        send=lambda analyzer, state: analyzer.send_setup(**asdict(state)),
        read=lambda analyzer: AnalyzerState(*analyzer.read_setup()),
        models=models,
        family=family,
    )


SIGNAL_GENERATOR = generator_kind(
    "signal-generator",
    SignalGenerator,
    r"E82[56]7[CD]|E8663D|N51[78][1-3][AB]",
    "a Keysight/Agilent PSG (E8257C/D, E8267C/D, E8663D), MXG (N5181/2/3A/B) or EXG (N5171/2/3B) signal generator",
)
ANRITSU_GENERATOR = generator_kind(
    "anritsu-signal-generator", AnritsuGenerator, r"MG369\d[ABC]?", "an Anritsu MG369x signal generator"
)
SPECTRUM_ANALYZER = analyzer_kind(
    "spectrum-analyzer",
    SpectrumAnalyzer,
    r"E44\d\dB|N90\d\d[AB]",
    "a Keysight/Agilent ESA (E44xxB) or X-series (N90xxA/B) spectrum analyzer",
)
RS_ANALYZER = analyzer_kind(
    "rs-spectrum-analyzer",
    RohdeSchwarzAnalyzer,
    r"FS[LVW](-?\d+)?",
    "a Rohde & Schwarz FSL, FSV or FSW spectrum analyzer",
)

TABOR_GENERATOR = generator_kind(
    "tabor-signal-generator",
    TaborGenerator,
    r"LSX?\d{4}[A-Z]?",
    "a Tabor Electronics Lucid (LS) or Lucid X (LSX) RF signal generator",
)

RING_CONTROLLER = DriverKind(
    name="ring-controller",
    role=Role.RING,
    driver_class=RingController,
    state_type=RingState,
    send=lambda ring, state: ring.send_state(**asdict(state)),
    read=lambda ring: RingState(*ring.read_state()),
    encodable=("loop_gain_db", "field_mt"),
    switch="amplifier_on",
    models="RingController",
    family="the ring controller (model RingController)",
)


def attenuator_kind(name: str, driver_class: type, models: str, family: str, **more) -> DriverKind:
    """A loop attenuator's kind: any driver with ``send_state(attenuation_db)``/``read_state()`` and its limits;
    its table must give ``min_attenuation_db`` (the loop's safety: amplifier saturation, the ring's rating)."""
    return DriverKind(
        name=name,
        role=Role.ATTENUATOR,
        driver_class=driver_class,
        state_type=AttenuatorState,
        send=lambda attenuator, state: attenuator.send_state(state.attenuation_db),
        read=lambda attenuator: AttenuatorState(*attenuator.read_state()),
        encodable=("attenuation_db",),
        models=models,
        family=family,
        steps=lambda cls: {"attenuation_db": cls.ATTENUATION_STEP_DB},
        options=(Option("min_attenuation_db", required=True), *more.pop("options", ())),
        **more,
    )


STEP_ATTENUATOR = attenuator_kind(
    "step-attenuator", StepAttenuatorDriver, r"11713[ABC]?", "an HP/Agilent/Keysight 11713 attenuator/switch driver"
)
WEINSCHEL_ATTENUATOR = attenuator_kind(
    "weinschel-attenuator", WeinschelAttenuator, r"83\d\d\w*", "a Weinschel/API 83xx programmable attenuator"
)
MINICIRCUITS_ATTENUATOR = attenuator_kind(
    "minicircuits-attenuator",
    MiniCircuitsAttenuator,
    r"RC[DU]?DAT-\S+",
    "a Mini-Circuits RCDAT/RUDAT attenuator",
    identify=lambda driver: driver.identify(),
)
VCA_ATTENUATOR = attenuator_kind(
    "vca-attenuator",
    VcaSource,
    r"E363\d[AB]?",
    "a Keysight/Agilent E363x DC supply driving a VCA",
    options=(Option("calibration", kind="pairs", required=True),),
    prepare=lambda driver, inst: driver.calibrate(inst.options["calibration"]),
)

COIL_SUPPLY = DriverKind(
    name="coil-supply",
    role=Role.MAGNET,
    driver_class=CoilSupply,
    state_type=MagnetState,
    send=lambda supply, state: None,  # the closed loop sets it (labpgt.bench.field)
    read=lambda supply: None,
    encodable=("field_mt", "current_a"),
    switch="output_on",
    models=r"BOP\s?\d+-\d+\w*|BIT\s?4886.*",
    family="a Kepco BOP bipolar supply (BIT 4886 interface)",
    options=(
        Option("gaussmeter", kind="text", required=True),
        Option("mt_per_a", required=True),
        Option("offset_mt", default=0.0),
        Option("max_current_a", required=True),
        Option("max_slew_a_per_s", required=True),
        Option("safe_current_a", default=0.0),
        Option("field_tolerance_mt", default=0.02),
        Option("settle_readings", default=2),
        Option("settle_s", default=0.05),
    ),
    prepare=lambda supply, inst: supply.prepare(),
)


def sensor_kind(name: str, role: Role, driver_class: type, models: str, family: str, **more) -> DriverKind:
    """A sensor's kind: read by the bench, never set."""
    return DriverKind(
        name=name,
        role=role,
        driver_class=driver_class,
        state_type=SensorState,
        send=lambda driver, state: None,
        read=lambda driver: SensorState(),
        models=models,
        family=family,
        settable=False,
        **more,
    )


GAUSSMETER_421 = sensor_kind(
    "gaussmeter-421",
    Role.GAUSSMETER,
    Gaussmeter421,
    r"MODEL421",
    "a Lake Shore 421 gaussmeter",
    prepare=lambda meter, inst: meter.prepare(),
)
GAUSSMETER_425 = sensor_kind(
    "gaussmeter-425",
    Role.GAUSSMETER,
    Gaussmeter425,
    r"MODEL425",
    "a Lake Shore 425 gaussmeter",
    prepare=lambda meter, inst: meter.prepare(),
)
TEMPERATURE_CONTROLLER = sensor_kind(
    "temperature-controller",
    Role.THERMOMETER,
    TemperatureController,
    r"MODEL3\d\d",
    "a Lake Shore 3xx temperature controller (331, 335, 336, 340, 350)",
    options=(Option("input", kind="text", default="A"),),
    prepare=lambda controller, inst: setattr(controller, "input", inst.options.get("input", "A")),
)

KINDS: dict[str, DriverKind] = {
    kind.name: kind
    for kind in (
        SIGNAL_GENERATOR,
        ANRITSU_GENERATOR,
        TABOR_GENERATOR,
        SPECTRUM_ANALYZER,
        RS_ANALYZER,
        RING_CONTROLLER,
        STEP_ATTENUATOR,
        WEINSCHEL_ATTENUATOR,
        MINICIRCUITS_ATTENUATOR,
        VCA_ATTENUATOR,
        COIL_SUPPLY,
        GAUSSMETER_421,
        GAUSSMETER_425,
        TEMPERATURE_CONTROLLER,
    )
}


def table_limits(kind: DriverKind, inst) -> dict[str, tuple[float, float]]:
    """Limits an instrument's own table sets: a coil supply's current (±``max_current_a``) and the field that
    current reaches through its calibration; a VCA's attenuation (its calibration's range)."""
    options = inst.options
    if kind.role is Role.MAGNET:
        top = float(options["max_current_a"])
        ends = [float(options["offset_mt"]) + float(options["mt_per_a"]) * i for i in (-top, top)]
        return {"current_a": (-top, top), "field_mt": (min(ends), max(ends))}
    if kind is VCA_ATTENUATOR:
        db = [float(pair[1]) for pair in options["calibration"]]
        return {"attenuation_db": (min(db), max(db))}
    return {}


def kinds_for(role: Role) -> list[DriverKind]:
    return [kind for kind in KINDS.values() if kind.role is role]


def states_agree(got: State, wanted: State) -> bool:
    """Whether a state read back is the one sent, to within what the instruments resolve."""
    return type(got) is type(wanted) and all(
        (a is None and b is None)
        or (a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-3))
        for a, b in zip(astuple(got), astuple(wanted))
    )
