"""The bench config: reading and validating a bench TOML, writing one, and the built-in simulated bench.

A bench config (see ``data/bench-sim.toml`` and ``data/bench-lab-example.toml``)::

    [bench]
    name = "..."
    timeout_ms = 5000                     # also max_attempts, backoff_s, max_backoff_s (retries)

    [instruments.gen1]                    # one table per instrument; names are free
    driver = "signal-generator"           # signal-generator (Keysight PSG/MXG/EXG) | anritsu-signal-generator
                                          # | spectrum-analyzer (Keysight ESA/X-series) | rs-spectrum-analyzer
                                          # (R&S FSx) | ring-controller
    resource = "TCPIP::192.168.1.21::5025::SOCKET"
    frequency_hz = 3.72e9                 # fixed settings applied at connect (optional)
    power_dbm = -20.0
    max_power_dbm = 5.0                   # safety: this generator never exceeds it

    [instruments.ring]
    driver = "ring-controller"
    resource = "TCPIP::192.168.1.30::5025::SOCKET"
    loop_gain_db = 1.5                    # fixed settings (optional)
    field_mt = 70.99
    output = true                         # the loop amplifier at connect (default true)

    [instruments.analyzer]                # exactly one
    driver = "spectrum-analyzer"
    resource = "GPIB0::18::INSTR"
    center_hz = 3.76e9                    # the measurement setup (optional)
    span_hz = 200e6
    rbw_hz = 1e6
    points = 401

    [safety]
    max_total_power_dbm = 8.0             # the sum over all generators, in dBm

    [[encoding]]                          # u_i ↦ min + u_i·(max - min), in this order
    instrument = "gen1"
    setting = "power_dbm"                 # power_dbm | frequency_hz | loop_gain_db | field_mt
    min = -30.0
    max = 0.0

    [features]                            # see labpgt.bench.features
    bins = 32
    floor_dbm = -100.0
    ceiling_dbm = 0.0

A setting a table leaves out is kept as the instrument holds it. Generator outputs are off at
connect whatever a table says (``output`` is accepted there and ignored): RF goes on with the first
query. Reading a config checks it against the safety limits (:mod:`labpgt.bench.safety`); any
problem is one line of :class:`~labpgt.errors.UserError`.

A resource ``sim::NAME`` means the instrument NAME of an embedded simulated bench (in-process,
through the same SCPI handlers that ``labpgt sim`` serves); the table ``[simulator]`` gives its
``seed``, ``noise`` and ``generators``, optionally the simulated models ``analyzer`` (``esa``,
``x-series``, ``fsx``) and ``generator_models`` (one name, or one per generator: ``psg``, ``e8267c``,
``mxg``, ``exg``, ``mg369x``), its physics — ``preset = "real"`` (default: every behaviour of a
real ring, drift included) or ``"ideal"`` (the kind ring), then ``three_magnon``, ``four_magnon``,
``nonlinear_shift``, ``memory``, ``mode_partition``, ``locking``, ``sidebands``, ``dispersion``,
``drift`` = true/false each — ``device = N`` (which simulated ring: 0 the nominal one, N ≥ 1 drawn
from the documented device-to-device spread; docs/ring-physics.md §11) and ``realtime = true``
(queries take their simulated duration in the wall clock).

``[bench] ring_temperature = true`` reads the ring controller's temperature sensor (``:TEMPerature?``)
after every query and records it in the session (the simulated benches do).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import tomli_w

from labpgt.bench.kinds import (
    ANRITSU_GENERATOR,
    COIL_SUPPLY,
    GAUSSMETER_421,
    GAUSSMETER_425,
    KINDS,
    MINICIRCUITS_ATTENUATOR,
    RING_CONTROLLER,
    RS_ANALYZER,
    SIGNAL_GENERATOR,
    SPECTRUM_ANALYZER,
    STEP_ATTENUATOR,
    TABOR_GENERATOR,
    TEMPERATURE_CONTROLLER,
    VCA_ATTENUATOR,
    WEINSCHEL_ATTENUATOR,
    DriverKind,
    Role,
    State,
    kinds_for,
)
from labpgt.bench.safety import check_config_safe
from labpgt.bench.suspenders import Suspender, parse_suspenders
from labpgt.errors import UserError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

SIMULATED_PREFIX = "sim::"
SWITCH_KEY = "output"  # what a config calls a kind's on/off switch
TABLES = ("bench", "instruments", "safety", "encoding", "features", "simulator", "suspend")
BENCH_KEYS = ("name", "timeout_ms", "max_attempts", "backoff_s", "max_backoff_s", "ring_temperature")
SIMULATOR_KEYS = ("seed", "noise", "generators", "preset", "realtime", "device", "ring", "attenuator", "gaussmeter")
SIMULATED_RINGS = ("controller", "parts")
SIMULATOR_PRESETS = ("real", "ideal")


@dataclass(frozen=True)
class InstrumentConfig:
    """One ``[instruments.NAME]`` table."""

    name: str
    kind: DriverKind
    resource: str
    settings: dict = field(default_factory=dict)  # as the TOML gives them
    max_power_dbm: float | None = None  # generators only
    options: dict = field(default_factory=dict)  # the kind's other keys (limits, calibrations, names), defaults filled

    @property
    def simulated_name(self) -> str | None:
        """NAME for a resource ``sim::NAME`` (an embedded simulated instrument), else None."""
        return self.resource[len(SIMULATED_PREFIX) :] if self.resource.startswith(SIMULATED_PREFIX) else None

    @property
    def leaves_settings_to_instrument(self) -> bool:
        return any(setting not in self.settings for setting in self.kind.fixed_settings)

    def starting_state(self, current: State | None = None) -> State:
        """The state this table asks for: its fixed settings, the others as ``current`` (what the
        instrument holds), the switch on unless ``output = false``."""
        given = {s: self.settings[s] for s in self.kind.fixed_settings if s in self.settings}
        if self.kind.switch is not None:
            given[self.kind.switch] = self.settings.get(SWITCH_KEY, True)
        return self.kind.state_type(**given) if current is None else replace(current, **given)


@dataclass(frozen=True)
class EncodingInput:
    """One ``[[encoding]]`` entry: input u_i ↦ ``low + u_i·(high - low)`` on one setting."""

    instrument: str
    setting: str
    low: float
    high: float

    def value(self, u: np.ndarray) -> np.ndarray:
        return self.low + u * (self.high - self.low)


@dataclass(frozen=True)
class BenchConfig:
    """A parsed, validated bench config; see the module docstring for the TOML it comes from."""

    name: str
    instruments: dict[str, InstrumentConfig]
    encoding: tuple[EncodingInput, ...]
    max_total_power_dbm: float
    bins: int = 32
    floor_dbm: float = -100.0
    ceiling_dbm: float = 0.0
    timeout_ms: int = 5000
    max_attempts: int = 10
    backoff_s: float = 0.05
    max_backoff_s: float = 1.0
    simulator: dict = field(default_factory=dict)
    source: str = "<built-in>"
    ring_temperature: bool = False
    suspenders: tuple[Suspender, ...] = ()

    def named(self, role: Role) -> list[str]:
        """The names of the instruments with ``role``, in config order."""
        return [name for name, inst in self.instruments.items() if inst.kind.role is role]

    @property
    def generators(self) -> list[str]:
        return self.named(Role.GENERATOR)

    @property
    def analyzer(self) -> str:
        return self.named(Role.ANALYZER)[0]

    @property
    def ring(self) -> str | None:
        return next(iter(self.named(Role.RING)), None)

    @property
    def magnets(self) -> list[str]:
        return self.named(Role.MAGNET)

    @property
    def gaussmeter(self) -> str | None:
        """The gaussmeter that closes the field's loop (read after every query), if the bench has one."""
        return next(iter(self.named(Role.GAUSSMETER)), None)

    @property
    def thermometer(self) -> str | None:
        """The temperature controller whose input reads the ring (after every query), if the bench has one."""
        return next(iter(self.named(Role.THERMOMETER)), None)

    @property
    def ring_controls(self) -> list[str]:
        """The instruments that set the ring (controller, attenuators, coil supplies), in config order."""
        return [
            name
            for name, inst in self.instruments.items()
            if inst.kind.role in (Role.RING, Role.ATTENUATOR, Role.MAGNET)
        ]

    @property
    def widths(self) -> tuple[int, int]:
        """``(input_width, feature_width)``: one input per encoded setting, one feature per spectrum bin."""
        return len(self.encoding), int(self.bins)

    def with_resources(self, resources: dict[str, str]) -> BenchConfig:
        """The same bench with each named instrument reached at another VISA resource."""
        instruments = {n: replace(c, resource=resources.get(n, c.resource)) for n, c in self.instruments.items()}
        return replace(self, instruments=instruments)

    def wait_after(self, attempt: int) -> float:
        """How long to wait after failed attempt number ``attempt`` (1-based): doubling, capped."""
        return min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)

    def to_dict(self) -> dict:
        """A JSON-able description, enough to rebuild the config (stored in session files)."""
        return {
            "bench": {
                "name": self.name,
                "timeout_ms": self.timeout_ms,
                "max_attempts": self.max_attempts,
                "backoff_s": self.backoff_s,
                "max_backoff_s": self.max_backoff_s,
                **({"ring_temperature": True} if self.ring_temperature else {}),
            },
            "instruments": {
                n: {
                    "driver": c.kind.name,
                    "resource": c.resource,
                    **c.settings,
                    **c.options,
                    **({"max_power_dbm": c.max_power_dbm} if c.max_power_dbm is not None else {}),
                }
                for n, c in self.instruments.items()
            },
            "safety": {"max_total_power_dbm": self.max_total_power_dbm},
            "encoding": [
                {"instrument": e.instrument, "setting": e.setting, "min": e.low, "max": e.high} for e in self.encoding
            ],
            "features": {"bins": self.bins, "floor_dbm": self.floor_dbm, "ceiling_dbm": self.ceiling_dbm},
            **({"simulator": dict(self.simulator)} if self.simulator else {}),
            **({"suspend": [s.to_dict() for s in self.suspenders]} if self.suspenders else {}),
        }


# --------------------------------------------------------------------------- reading
def load_bench_config(path: str | Path) -> BenchConfig:
    """Read and validate a bench TOML; any problem is a one-line :class:`UserError`."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"bench config {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read bench config {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"bench config {path} is not valid TOML: {exc}") from None
    return parse_bench_config(raw, source=str(path))


def parse_bench_config(raw: dict, source: str = "<dict>") -> BenchConfig:
    """Validate a bench description (the TOML as a dict) and check it against the safety limits."""
    where = f"bench config {source}"
    unknown = set(raw) - set(TABLES)
    if unknown:
        raise UserError(f"{where}: unknown table(s) {', '.join(sorted(unknown))}; expected {', '.join(sorted(TABLES))}")
    bench = _table(raw, "bench", where, required=False)
    instruments = {name: _instrument(name, spec, where) for name, spec in _table(raw, "instruments", where).items()}
    _check_roles(instruments, where)
    safety = _table(raw, "safety", where)
    max_total = _number(safety, "max_total_power_dbm", f"{where} [safety]")
    encoding = tuple(_encoding(i, e, instruments, where) for i, e in enumerate(_list(raw, "encoding", where)))
    if not encoding:
        raise UserError(f"{where}: [[encoding]] must map at least one input")
    features = _table(raw, "features", where, required=False)
    config = BenchConfig(
        name=str(bench.get("name", "bench")),
        instruments=instruments,
        encoding=encoding,
        max_total_power_dbm=max_total,
        bins=int(_number(features, "bins", f"{where} [features]", default=32)),
        floor_dbm=_number(features, "floor_dbm", f"{where} [features]", default=-100.0),
        ceiling_dbm=_number(features, "ceiling_dbm", f"{where} [features]", default=0.0),
        timeout_ms=int(_number(bench, "timeout_ms", f"{where} [bench]", default=5000)),
        max_attempts=int(_number(bench, "max_attempts", f"{where} [bench]", default=10)),
        backoff_s=_number(bench, "backoff_s", f"{where} [bench]", default=0.05),
        max_backoff_s=_number(bench, "max_backoff_s", f"{where} [bench]", default=1.0),
        simulator=_simulator(_table(raw, "simulator", where, required=False), f"{where} [simulator]"),
        source=source,
        ring_temperature=_flag(bench, "ring_temperature", f"{where} [bench]"),
        suspenders=parse_suspenders(raw.get("suspend", []), where),
    )
    if (
        any(s.condition == "temperature" for s in config.suspenders)
        and not config.ring_temperature
        and config.thermometer is None
    ):
        raise UserError(
            f"{where}: a temperature suspender needs a temperature controller or [bench] "
            f"ring_temperature = true (the sensor read with every query)"
        )
    if config.ring_temperature and config.ring is None:
        raise UserError(
            f"{where}: [bench] ring_temperature needs a ring-controller instrument (a temperature "
            f"controller's input is read after every query without it)"
        )
    if config.timeout_ms < 1 or config.max_attempts < 1 or config.backoff_s < 0 or config.max_backoff_s < 0:
        raise UserError(f"{where}: [bench] needs timeout_ms >= 1, max_attempts >= 1 and backoffs >= 0")
    unknown_bench = set(bench) - set(BENCH_KEYS)
    if unknown_bench:
        raise UserError(f"{where}: unknown [bench] key(s) {', '.join(sorted(unknown_bench))}")
    if config.bins < 1 or config.ceiling_dbm <= config.floor_dbm:
        raise UserError(f"{where}: [features] needs bins >= 1 and ceiling_dbm > floor_dbm")
    check_config_safe(config)
    return config


def _table(raw, key, where, required=True) -> dict:
    value = raw.get(key)
    if value is None:
        if required:
            raise UserError(f"{where}: missing table [{key}]")
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{where}: [{key}] must be a table")
    return value


def _flag(table, key, where, default=False) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise UserError(f"{where}: {key} must be true or false, not {value!r}")
    return value


def _simulator(table: dict, where: str) -> dict:
    """The ``[simulator]`` table: seed, noise, generators, ``preset`` (real | ideal), ``realtime``,
    and a true/false switch per behaviour of the simulated ring (ring.py's ``Behaviours``)."""
    from labpgt.instruments.simulated.controls import ATTENUATOR_MODELS, GAUSSMETER_MODELS
    from labpgt.instruments.simulated.ring import Behaviours
    from labpgt.instruments.simulated.timing import BenchTiming

    allowed = SIMULATOR_KEYS + Behaviours.names() + BenchTiming.names()
    for key, choices in (
        ("ring", SIMULATED_RINGS),
        ("attenuator", tuple(ATTENUATOR_MODELS)),
        ("gaussmeter", tuple(GAUSSMETER_MODELS)),
    ):
        if key in table and table[key] not in choices:
            raise UserError(f"{where}: {key} must be one of {', '.join(choices)}, not {table[key]!r}")
    for key in BenchTiming.names():
        if key in table and (_number(table, key, where) < 0 or (key == "transfer_bytes_per_s" and table[key] == 0)):
            rate = " (a rate: > 0)" if key == "transfer_bytes_per_s" else ""
            raise UserError(f"{where}: {key} must be >= 0{rate}")
    unknown = set(table) - set(allowed)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; expected {', '.join(allowed)}")
    if table.get("preset", "real") not in SIMULATOR_PRESETS:
        raise UserError(f"{where}: preset must be one of {', '.join(SIMULATOR_PRESETS)}, not {table['preset']!r}")
    for key in ("realtime", *Behaviours.names()):
        _flag(table, key, where)
    device = table.get("device", 0)
    if isinstance(device, bool) or not isinstance(device, int) or device < 0:
        raise UserError(f"{where}: device must be a whole number >= 0 (a simulated ring device), not {device!r}")
    return dict(table)


def _list(raw, key, where) -> list:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise UserError(f"{where}: {key} must be an array of tables ([[{key}]])")
    return value


def _number(table, key, where, default=None) -> float:
    value = table.get(key, default)
    if value is None:
        raise UserError(f"{where}: missing {key}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{where}: {key} must be a finite number, not {value!r}")
    return float(value)


def _instrument(name, spec, where) -> InstrumentConfig:
    here = f"{where} [instruments.{name}]"
    if not isinstance(spec, dict):
        raise UserError(f"{here} must be a table")
    driver = spec.get("driver")
    kind = KINDS.get(driver) if isinstance(driver, str) else None
    if kind is None:
        raise UserError(f"{here}: unknown driver {driver!r}; expected one of {', '.join(KINDS)}")
    resource = spec.get("resource")
    if not isinstance(resource, str) or not resource:
        raise UserError(f"{here}: missing resource (a VISA resource string, or {SIMULATED_PREFIX}NAME)")
    power_limited = kind.role is Role.GENERATOR
    not_settings = {"driver", "resource"} | ({"max_power_dbm"} if power_limited else set())
    options = _options(kind, spec, here)
    settings = {k: v for k, v in spec.items() if k not in not_settings and k not in options}
    allowed = [*kind.fixed_settings, *([SWITCH_KEY] if kind.switch is not None else [])]
    for key, value in settings.items():
        if key not in allowed:
            raise UserError(f"{here}: unknown setting {key!r} for a {kind.name}; expected {', '.join(sorted(allowed))}")
        if key != SWITCH_KEY:
            _number(settings, key, here)
        elif not isinstance(value, bool):
            raise UserError(f"{here}: {SWITCH_KEY} must be true or false, not {value!r}")
    max_power = _number(spec, "max_power_dbm", here) if power_limited else None
    return InstrumentConfig(name, kind, resource, settings, max_power, options)


def _options(kind: DriverKind, spec: dict, here: str) -> dict:
    """The kind's option keys of a table (limits, calibrations, names), checked, with their defaults."""
    options = {}
    for option in kind.options:
        if option.name not in spec:
            if option.required:
                raise UserError(f"{here}: a {kind.name} needs {option.name}")
            options[option.name] = option.default
            continue
        value = spec[option.name]
        if option.kind == "number":
            value = _number(spec, option.name, here)
        elif option.kind == "text" and not isinstance(value, str):
            raise UserError(f"{here}: {option.name} must be a string, not {value!r}")
        elif option.kind == "pairs":
            value = _pairs(value, f"{here} {option.name}")
        options[option.name] = value
    return options


def _pairs(value, where: str) -> list[list[float]]:
    ok = (
        isinstance(value, list)
        and len(value) >= 2
        and all(
            isinstance(p, list)
            and len(p) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in p)
            for p in value
        )
    )
    if not ok:
        raise UserError(f"{where} must be an array of at least two [x, y] number pairs, e.g. [[0.0, 2.0], [5.0, 31.0]]")
    pairs = [[float(x), float(y)] for x, y in value]
    for column in (0, 1):
        diffs = np.diff([p[column] for p in pairs])
        if not (np.all(diffs > 0) or np.all(diffs < 0)):
            raise UserError(f"{where} must be strictly monotonic in both columns")
    return pairs


def _check_roles(instruments: dict[str, InstrumentConfig], where: str) -> None:
    def drivers(role):
        return " or ".join(f'"{kind.name}"' for kind in kinds_for(role))

    roles = [inst.kind.role for inst in instruments.values()]
    if roles.count(Role.ANALYZER) != 1:
        raise UserError(f"{where}: needs exactly one instrument with driver = {drivers(Role.ANALYZER)}")
    if Role.GENERATOR not in roles:
        raise UserError(f"{where}: needs at least one instrument with driver = {drivers(Role.GENERATOR)}")
    for role in (Role.GAUSSMETER, Role.THERMOMETER):
        if roles.count(role) > 1:
            raise UserError(f"{where}: at most one instrument with driver = {drivers(role)}")
    for name, inst in instruments.items():
        if inst.kind.role is Role.MAGNET:
            meter = inst.options["gaussmeter"]
            if meter not in instruments or instruments[meter].kind.role is not Role.GAUSSMETER:
                raise UserError(
                    f"{where} [instruments.{name}]: gaussmeter = {meter!r} must name an instrument "
                    f"with driver = {drivers(Role.GAUSSMETER)}"
                )


def _encoding(index, spec, instruments, where) -> EncodingInput:
    here = f"{where} encoding[{index}]"
    name = spec.get("instrument")
    if not isinstance(name, str) or name not in instruments:
        raise UserError(f"{here}: instrument {name!r} is not in [instruments]")
    kind = instruments[name].kind
    setting = spec.get("setting")
    if setting not in kind.encodable:
        raise UserError(
            f"{here}: a {kind.name} has no encodable setting {setting!r}; expected one of {', '.join(kind.encodable)}"
        )
    return EncodingInput(name, setting, _number(spec, "min", here), _number(spec, "max", here))


# --------------------------------------------------------------------------- writing
def bench_config_toml(config: BenchConfig) -> str:
    """The TOML text of a bench config (what :func:`load_bench_config` reads back to the same config)."""
    tables = config.to_dict()
    encoding = tables.pop("encoding")
    suspend = tables.pop("suspend", [])
    # tomli_w would write the encoding as one inline array; [[encoding]] tables read like data/*.toml
    return "\n".join(
        [
            tomli_w.dumps(tables),
            *("[[encoding]]\n" + tomli_w.dumps(entry) for entry in encoding),
            *("[[suspend]]\n" + tomli_w.dumps(entry) for entry in suspend),
        ]
    )


# --------------------------------------------------------------------------- the built-in simulated bench
def simulated_device(device: int = 0):
    """The ring parameters of simulated device ``device`` (its operating point and the analyzer's view)."""
    from labpgt.instruments.simulated.spread import device_parameters

    return device_parameters(device)


#: the driver kind that drives each simulated model (``labpgt sim --analyzer/--generator`` names)
SIMULATED_MODEL_KINDS: dict[str, DriverKind] = {
    "esa": SPECTRUM_ANALYZER,
    "x-series": SPECTRUM_ANALYZER,
    "fsx": RS_ANALYZER,
    "psg": SIGNAL_GENERATOR,
    "e8267c": SIGNAL_GENERATOR,
    "mxg": SIGNAL_GENERATOR,
    "exg": SIGNAL_GENERATOR,
    "mg369x": ANRITSU_GENERATOR,
    "tabor": TABOR_GENERATOR,
    "tabor-x": TABOR_GENERATOR,
}
#: the driver kind of each simulated ring part (``labpgt sim --ring parts --attenuator/--gaussmeter`` names)
SIMULATED_PART_KINDS: dict[str, DriverKind] = {
    "hp11713": STEP_ATTENUATOR,
    "weinschel": WEINSCHEL_ATTENUATOR,
    "rcdat": MINICIRCUITS_ATTENUATOR,
    "vca": VCA_ATTENUATOR,
    "ls421": GAUSSMETER_421,
    "ls425": GAUSSMETER_425,
}
PARTS_SAFETY = {"min_attenuation_db": 4.0, "max_current_a": 5.0, "max_slew_a_per_s": 2.0, "safe_current_a": 0.0}


def simulated_ports(base_port: int, generators: int) -> dict[str, int]:
    """Where ``labpgt sim`` serves each simulated instrument: the analyzer at ``base_port``, the ring controller at
    ``base_port + 1`` (or the ring's parts: attenuator, magnet, gaussmeter, thermometer at ``base_port + 2 … 5``),
    generator i at ``base_port + 10 + i``."""
    return {
        "analyzer": base_port,
        "ring": base_port + 1,
        "attenuator": base_port + 2,
        "magnet": base_port + 3,
        "gaussmeter": base_port + 4,
        "thermometer": base_port + 5,
        **{f"gen{i}": base_port + 10 + i for i in range(1, generators + 1)},
    }


def simulated_bench_config(
    embedded: bool = True,
    seed: int = 0,
    noise: bool = True,
    generators: int = 4,
    host: str = "127.0.0.1",
    base_port: int = 15025,
    analyzer_model: str = "esa",
    generator_models: str | list[str] = "psg",
    physics: dict | None = None,
    ring_parts: tuple[str, str] | None = None,
) -> BenchConfig:
    """The simulated bench: ``labpgt sim``'s defaults (``embedded=False``) or the in-process twin.

    ``physics``: more ``[simulator]`` keys of the embedded bench (``preset``, behaviour switches,
    ``device``). The ring's field is the one that puts the device's f_FMR at the design frequency, as a
    lab sets up a new ring; the generators' bands and the analyzer's view are the design's, whatever the
    device (docs/ring-physics.md §12). The ring controller's temperature is read with every query.

    Ports: :func:`simulated_ports`. ``analyzer_model`` and ``generator_models`` (one name, or one per generator)
    choose the simulated
    models and so each instrument's driver kind (:data:`SIMULATED_MODEL_KINDS`). ``ring_parts``: None for the
    ring controller, or (attenuator, gaussmeter) models for the ring a lab builds (:func:`ring_parts_tables`).
    """
    ports = simulated_ports(base_port, generators)

    def resource(name):
        return f"{SIMULATED_PREFIX}{name}" if embedded else f"TCPIP::{host}::{ports[name]}::SOCKET"

    models = [generator_models] * generators if isinstance(generator_models, str) else list(generator_models)
    unknown = [m for m in [analyzer_model, *models] if m not in SIMULATED_MODEL_KINDS]
    if unknown or len(models) != generators:
        raise UserError(
            f"simulated bench: {generators} generator model(s) and one analyzer model from "
            f"{', '.join(SIMULATED_MODEL_KINDS)} expected, not {analyzer_model!r} and {generator_models!r}"
        )
    analyzer_kind = SIMULATED_MODEL_KINDS[analyzer_model]
    ring = simulated_device(int((physics or {}).get("device", 0)))
    instruments = {
        "analyzer": InstrumentConfig(
            "analyzer",
            analyzer_kind,
            resource("analyzer"),
            {
                "center_hz": ring.default_center_hz,
                "span_hz": ring.default_span_hz,
                "rbw_hz": ring.default_rbw_hz,
                "points": ring.default_points,
            },
        ),
        **(
            ring_parts_tables(ring, ring_parts, resource)
            if ring_parts is not None
            else {
                "ring": InstrumentConfig(
                    "ring",
                    RING_CONTROLLER,
                    resource("ring"),
                    {"loop_gain_db": ring.default_loop_gain_db, "field_mt": ring.default_field_mt},
                )
            }
        ),
    }
    bands_low = [ring.operating_fmr_hz + 10e6 + i * 20e6 for i in range(generators)]
    for i, band_low in enumerate(bands_low, start=1):
        kind = SIMULATED_MODEL_KINDS[models[i - 1]]
        instruments[f"gen{i}"] = InstrumentConfig(
            f"gen{i}", kind, resource(f"gen{i}"), {"frequency_hz": band_low + 10e6, "power_dbm": -30.0}, 5.0
        )
    encoding = [EncodingInput(f"gen{i}", "power_dbm", -30.0, 0.0) for i in range(1, generators + 1)]
    encoding += [
        EncodingInput(f"gen{i}", "frequency_hz", band_low, band_low + 20e6)
        for i, band_low in enumerate(bands_low, start=1)
    ]
    config = BenchConfig(
        name="simulated magnonic ring" + (" (embedded)" if embedded else ""),
        timeout_ms=1000,
        instruments=instruments,
        encoding=tuple(encoding),
        max_total_power_dbm=round(10 * math.log10(generators) + 2.0, 2),
        simulator=(
            {
                "seed": seed,
                "noise": noise,
                "generators": generators,
                **({"analyzer": analyzer_model} if analyzer_model != "esa" else {}),
                **({"generator_models": models} if set(models) != {"psg"} else {}),
                **(
                    {"ring": "parts", "attenuator": ring_parts[0], "gaussmeter": ring_parts[1]}
                    if ring_parts is not None
                    else {}
                ),
                **(physics or {}),
            }
            if embedded
            else {}
        ),
        ring_temperature=ring_parts is None,
    )
    check_config_safe(config)
    return config


def ring_parts_tables(ring, parts: tuple[str, str], resource) -> dict[str, InstrumentConfig]:
    """The ring's parts as a lab's bench config has them: the loop attenuator at the operating point's loop gain,
    the coil supply reaching the operating field through the gaussmeter (calibration: the design's mT per A), the
    temperature controller's input A on the film; limits :data:`PARTS_SAFETY`."""
    attenuator, gaussmeter = parts
    kind = SIMULATED_PART_KINDS[attenuator]
    attenuation = kind.quantised("attenuation_db", ring.unattenuated_loop_gain_db - ring.default_loop_gain_db)
    calibration = {"calibration": [list(p) for p in ring.vca_curve]} if kind is VCA_ATTENUATOR else {}
    safety = PARTS_SAFETY
    return {
        "attenuator": InstrumentConfig(
            "attenuator",
            kind,
            resource("attenuator"),
            {"attenuation_db": attenuation},
            options={"min_attenuation_db": safety["min_attenuation_db"], **calibration},
        ),
        "magnet": InstrumentConfig(
            "magnet",
            COIL_SUPPLY,
            resource("magnet"),
            {"field_mt": round(ring.field_for_fmr_mt(ring.operating_fmr_hz), 2)},
            options={
                **{o.name: o.default for o in COIL_SUPPLY.options},
                "gaussmeter": "gaussmeter",
                "mt_per_a": ring.coil_mt_per_a,
                **{k: safety[k] for k in ("max_current_a", "max_slew_a_per_s", "safe_current_a")},
            },
        ),
        "gaussmeter": InstrumentConfig("gaussmeter", SIMULATED_PART_KINDS[gaussmeter], resource("gaussmeter")),
        "thermometer": InstrumentConfig(
            "thermometer", TEMPERATURE_CONTROLLER, resource("thermometer"), options={"input": "A"}
        ),
    }
