"""The bench: a TOML bench config turned into connected instruments, and a reservoir built on them.

This module owns four things and nothing else:

* **the bench config** — which instruments, which drivers, which VISA resources
  (:func:`load_bench_config`, :func:`simulated_bench_config`);
* **the encoding** — each reservoir input u_i ∈ [0, 1] maps linearly onto one instrument setting
  (a generator's power or frequency, the ring's loop gain or bias field);
* **the safety limits** — per-generator and total RF power, loop-gain and field ranges, checked
  when the config is read *and* before every setting is sent, so nothing unsafe ever leaves
  the computer;
* **the features** — a trace in dBm is normalised, ``(dBm - floor) / (ceiling - floor)``, and
  mean-pooled into ``bins`` contiguous frequency bins (the last ones one point wider when the
  points do not divide evenly).

:class:`Bench` implements the :class:`labpgt.reservoir.Reservoir` protocol: one row of ``U`` is one
query — bring every instrument whose state changed to its new state (one ``*OPC?``-confirmed
message each), take one sweep and read the trace in binary, retried whole on faults. It knows
nothing about training or storage.

A bench config (see ``data/bench-sim.toml`` and ``data/bench-lab-example.toml``)::

    [bench]
    name = "..."
    timeout_ms = 5000

    [instruments.gen1]                    # one table per instrument; names are free
    driver = "signal-generator"           # signal-generator | spectrum-analyzer | ring-controller
    resource = "TCPIP::192.168.1.21::5025::SOCKET"
    frequency_hz = 2.99e9                 # fixed settings applied at connect (optional)
    power_dbm = -20.0
    max_power_dbm = 5.0                   # safety: this generator never exceeds it

    [safety]
    max_total_power_dbm = 8.0             # the sum over all generators, in dBm

    [[encoding]]                          # u_i ↦ min + u_i·(max - min), in this order
    instrument = "gen1"
    setting = "power_dbm"                 # power_dbm | frequency_hz | loop_gain_db | field_mt
    min = -30.0
    max = 0.0

    [features]
    bins = 32
    floor_dbm = -100.0
    ceiling_dbm = 0.0

A resource ``sim::NAME`` means the instrument NAME of an embedded simulated bench (in-process,
through the same SCPI handlers that ``labpgt sim`` serves); the table ``[simulator]`` gives its
``seed``, ``noise`` and ``generators``.
"""

from __future__ import annotations

import logging
import math
import time
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from labpgt.errors import UserError
from labpgt.instruments.drivers import read_confirmation
from labpgt.reservoir import Measurement

log = logging.getLogger(__name__)

DRIVERS = ("signal-generator", "spectrum-analyzer", "ring-controller")
SETTINGS_BY_DRIVER = {
    "signal-generator": ("power_dbm", "frequency_hz"),
    "ring-controller": ("loop_gain_db", "field_mt"),
}
RING_LIMITS = {"loop_gain_db": (-20.0, 10.0), "field_mt": (0.0, 300.0)}
GENERATOR_FREQUENCY_LIMITS_HZ = (250e3, 20e9)
ANALYZER_SETTINGS = ("center_hz", "span_hz", "rbw_hz", "points")


class InstrumentUnreachable(UserError):
    """An instrument did not answer when (re)connecting."""


class SafetyError(UserError):
    """A setting would exceed a safety limit of the bench; nothing was sent."""


@dataclass(frozen=True)
class InstrumentConfig:
    name: str
    driver: str
    resource: str
    settings: dict = field(default_factory=dict)
    max_power_dbm: float | None = None


@dataclass(frozen=True)
class EncodingInput:
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

    @property
    def generators(self) -> list[str]:
        return [n for n, c in self.instruments.items() if c.driver == "signal-generator"]

    @property
    def analyzer(self) -> str:
        return next(n for n, c in self.instruments.items() if c.driver == "spectrum-analyzer")

    @property
    def ring(self) -> str | None:
        return next((n for n, c in self.instruments.items() if c.driver == "ring-controller"), None)

    def with_resources(self, resources: dict[str, str]) -> "BenchConfig":
        """The same bench with each named instrument reached at another VISA resource."""
        instruments = {n: replace(c, resource=resources.get(n, c.resource)) for n, c in self.instruments.items()}
        return replace(self, instruments=instruments)

    def wait_after(self, attempt: int) -> float:
        """How long to wait after failed attempt number ``attempt`` (1-based): doubling, capped."""
        return min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)

    def to_dict(self) -> dict:
        """A JSON-able description, enough to rebuild the config (stored in session files)."""
        return {
            "bench": {"name": self.name, "timeout_ms": self.timeout_ms, "max_attempts": self.max_attempts,
                      "backoff_s": self.backoff_s, "max_backoff_s": self.max_backoff_s},
            "instruments": {n: {"driver": c.driver, "resource": c.resource, **c.settings,
                                **({"max_power_dbm": c.max_power_dbm} if c.max_power_dbm is not None else {})}
                            for n, c in self.instruments.items()},
            "safety": {"max_total_power_dbm": self.max_total_power_dbm},
            "encoding": [{"instrument": e.instrument, "setting": e.setting, "min": e.low, "max": e.high}
                         for e in self.encoding],
            "features": {"bins": self.bins, "floor_dbm": self.floor_dbm, "ceiling_dbm": self.ceiling_dbm},
            **({"simulator": dict(self.simulator)} if self.simulator else {}),
        }


# --------------------------------------------------------------------------- reading configs
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
    """Validate a bench description (the TOML as a dict) and check its encoding against the limits."""
    where = f"bench config {source}"
    known = {"bench", "instruments", "safety", "encoding", "features", "simulator"}
    unknown = set(raw) - known
    if unknown:
        raise UserError(f"{where}: unknown table(s) {', '.join(sorted(unknown))}; expected {', '.join(sorted(known))}")
    bench = _table(raw, "bench", where, required=False)
    instruments = {name: _instrument(name, spec, where)
                   for name, spec in _table(raw, "instruments", where).items()}
    drivers = [c.driver for c in instruments.values()]
    if drivers.count("spectrum-analyzer") != 1:
        raise UserError(f"{where}: needs exactly one instrument with driver = \"spectrum-analyzer\"")
    if "signal-generator" not in drivers:
        raise UserError(f"{where}: needs at least one instrument with driver = \"signal-generator\"")
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
        simulator=dict(_table(raw, "simulator", where, required=False)),
        source=source,
    )
    if config.timeout_ms < 1 or config.max_attempts < 1 or config.backoff_s < 0 or config.max_backoff_s < 0:
        raise UserError(f"{where}: [bench] needs timeout_ms >= 1, max_attempts >= 1 and backoffs >= 0")
    unknown_bench = set(bench) - {"name", "timeout_ms", "max_attempts", "backoff_s", "max_backoff_s"}
    if unknown_bench:
        raise UserError(f"{where}: unknown [bench] key(s) {', '.join(sorted(unknown_bench))}")
    if config.bins < 1 or config.ceiling_dbm <= config.floor_dbm:
        raise UserError(f"{where}: [features] needs bins >= 1 and ceiling_dbm > floor_dbm")
    check_encoding_safe(config)
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
    if driver not in DRIVERS:
        raise UserError(f"{here}: unknown driver {driver!r}; expected one of {', '.join(DRIVERS)}")
    resource = spec.get("resource")
    if not isinstance(resource, str) or not resource:
        raise UserError(f"{here}: missing resource (a VISA resource string, or sim::NAME)")
    allowed = set(SETTINGS_BY_DRIVER.get(driver, ANALYZER_SETTINGS)) | {"output"}
    settings = {k: v for k, v in spec.items() if k not in ("driver", "resource", "max_power_dbm")}
    for key, value in settings.items():
        if key not in allowed:
            raise UserError(f"{here}: unknown setting {key!r} for a {driver}; expected {', '.join(sorted(allowed))}")
        if key != "output":
            _number(settings, key, here)
    max_power = None
    if driver == "signal-generator":
        max_power = _number(spec, "max_power_dbm", here)
    return InstrumentConfig(name, driver, resource, settings, max_power)


def _encoding(index, spec, instruments, where) -> EncodingInput:
    here = f"{where} encoding[{index}]"
    name = spec.get("instrument")
    if name not in instruments:
        raise UserError(f"{here}: instrument {name!r} is not in [instruments]")
    driver = instruments[name].driver
    setting = spec.get("setting")
    if setting not in SETTINGS_BY_DRIVER.get(driver, ()):
        raise UserError(f"{here}: a {driver} has no encodable setting {setting!r}; "
                        f"expected one of {', '.join(SETTINGS_BY_DRIVER.get(driver, ()))}")
    return EncodingInput(name, setting, _number(spec, "min", here), _number(spec, "max", here))


def bench_config_toml(config: BenchConfig) -> str:
    """The TOML text of a bench config (what :func:`load_bench_config` reads back to the same config)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return repr(float(v)) if isinstance(v, float) else str(v)

    raw = config.to_dict()
    lines = [f"# bench: {config.name}", ""]
    for table in ("bench", "safety", "features", "simulator"):
        if raw.get(table):
            lines += [f"[{table}]"] + [f"{k} = {value(v)}" for k, v in raw[table].items()] + [""]
    for name, spec in raw["instruments"].items():
        lines += [f"[instruments.{name}]"] + [f"{k} = {value(v)}" for k, v in spec.items()] + [""]
    for entry in raw["encoding"]:
        lines += ["[[encoding]]"] + [f"{k} = {value(v)}" for k, v in entry.items()] + [""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- safety
def check_encoding_safe(config: BenchConfig) -> None:
    """Refuse a config whose encoding or fixed settings could ever exceed a limit."""
    worst = {}
    for name in config.generators:
        inst = config.instruments[name]
        powers = [e.high for e in config.encoding if e.instrument == name and e.setting == "power_dbm"]
        powers += [e.low for e in config.encoding if e.instrument == name and e.setting == "power_dbm"]
        if "power_dbm" in inst.settings:
            powers.append(float(inst.settings["power_dbm"]))
        worst[name] = max(powers) if powers else None
        if worst[name] is not None and worst[name] > inst.max_power_dbm:
            raise SafetyError(f"bench config {config.source}: {name} could be set to {worst[name]:g} dBm, "
                              f"above its max_power_dbm {inst.max_power_dbm:g}")
    total = _total_dbm([w for w in worst.values() if w is not None])
    if total > config.max_total_power_dbm + 1e-9:
        raise SafetyError(f"bench config {config.source}: the generators could together reach {total:.2f} dBm, "
                          f"above max_total_power_dbm {config.max_total_power_dbm:g}")
    for e in config.encoding:
        if e.setting in RING_LIMITS:
            low, high = RING_LIMITS[e.setting]
            if min(e.low, e.high) < low or max(e.low, e.high) > high:
                raise SafetyError(f"bench config {config.source}: {e.instrument}.{e.setting} range "
                                  f"[{e.low:g}, {e.high:g}] leaves the allowed [{low:g}, {high:g}]")
        if e.setting == "frequency_hz":
            low, high = GENERATOR_FREQUENCY_LIMITS_HZ
            if min(e.low, e.high) < low or max(e.low, e.high) > high:
                raise SafetyError(f"bench config {config.source}: {e.instrument} frequency range leaves "
                                  f"{low:g}..{high:g} Hz")


def _total_dbm(powers_dbm) -> float:
    return 10 * math.log10(sum(10 ** (p / 10) for p in powers_dbm)) if len(powers_dbm) else -math.inf


def check_settings_safe(config: BenchConfig, settings: dict[tuple[str, str], float]) -> None:
    """Check one complete set of settings before anything of it is sent; raise SafetyError if unsafe."""
    powers = []
    for name in config.generators:
        power = settings.get((name, "power_dbm"))
        if power is None:
            continue
        if not math.isfinite(power) or power > config.instruments[name].max_power_dbm:
            raise SafetyError(f"{name}: {power:g} dBm exceeds max_power_dbm "
                              f"{config.instruments[name].max_power_dbm:g}; nothing was sent")
        powers.append(power)
    total = _total_dbm(powers)
    if total > config.max_total_power_dbm + 1e-9:
        raise SafetyError(f"total generator power {total:.2f} dBm exceeds max_total_power_dbm "
                          f"{config.max_total_power_dbm:g}; nothing was sent")
    for (name, setting), value in settings.items():
        if setting in RING_LIMITS:
            low, high = RING_LIMITS[setting]
            if not low <= value <= high:
                raise SafetyError(f"{name}.{setting} = {value:g} outside [{low:g}, {high:g}]; nothing was sent")


# --------------------------------------------------------------------------- features
def trace_features(traces_dbm: np.ndarray, bins: int, floor_dbm: float, ceiling_dbm: float) -> np.ndarray:
    """Normalise traces (B, P) in dBm to (dBm - floor)/(ceiling - floor) and mean-pool into ``bins``."""
    traces = np.atleast_2d(np.asarray(traces_dbm, dtype=np.float64))
    normalised = (traces - floor_dbm) / (ceiling_dbm - floor_dbm)
    edges = np.linspace(0, traces.shape[1], bins + 1).round().astype(int)
    sums = np.add.reduceat(normalised, edges[:-1], axis=1)
    return sums / np.diff(edges)[None, :]


# --------------------------------------------------------------------------- the built-in benches
def simulated_bench_config(embedded: bool = True, seed: int = 0, noise: bool = True, generators: int = 4,
                           host: str = "127.0.0.1", base_port: int = 15025) -> BenchConfig:
    """The simulated bench: ``labpgt sim``'s defaults (``embedded=False``) or the in-process twin.

    Ports: analyzer ``base_port``, ring ``base_port + 1``, generator i at ``base_port + 10 + i``.
    """
    def resource(name, port):
        return f"sim::{name}" if embedded else f"TCPIP::{host}::{port}::SOCKET"

    instruments = {"analyzer": InstrumentConfig("analyzer", "spectrum-analyzer", resource("analyzer", base_port),
                                                {"center_hz": 3.03e9, "span_hz": 200e6, "rbw_hz": 1e6, "points": 401}),
                   "ring": InstrumentConfig("ring", "ring-controller", resource("ring", base_port + 1),
                                            {"loop_gain_db": 2.0, "field_mt": 50.0})}
    encoding = []
    for i in range(1, generators + 1):
        name = f"gen{i}"
        band_low = 2.980e9 + (i - 1) * 20e6
        instruments[name] = InstrumentConfig(name, "signal-generator", resource(name, base_port + 10 + i),
                                             {"frequency_hz": band_low + 10e6, "power_dbm": -30.0}, 5.0)
        encoding.append(EncodingInput(name, "power_dbm", -30.0, 0.0))
    for i in range(1, generators + 1):
        band_low = 2.980e9 + (i - 1) * 20e6
        encoding.append(EncodingInput(f"gen{i}", "frequency_hz", band_low, band_low + 20e6))
    config = BenchConfig(
        name="simulated magnonic ring" + (" (embedded)" if embedded else ""), timeout_ms=1000,
        instruments=instruments, encoding=tuple(encoding),
        max_total_power_dbm=round(10 * math.log10(generators) + 2.0, 2),
        simulator={"seed": seed, "noise": noise, "generators": generators} if embedded else {},
    )
    check_encoding_safe(config)
    return config


# --------------------------------------------------------------------------- connecting
def _driver_class(driver: str):
    from labpgt.instruments import RingController, SignalGenerator, SpectrumAnalyzer

    return {"signal-generator": SignalGenerator, "spectrum-analyzer": SpectrumAnalyzer,
            "ring-controller": RingController}[driver]


def uses_embedded_simulator(config: BenchConfig) -> bool:
    return any(inst.resource.startswith("sim::") for inst in config.instruments.values())


def connect_instruments(config: BenchConfig, simulator=None) -> dict:
    """Open every instrument of the config with its driver; unreachable → one-line UserError.

    ``sim::NAME`` resources are served by ``simulator`` (an embedded ``SimulatedBench``; one is
    made from the config's ``[simulator]`` table when none is given).
    """
    if simulator is None and uses_embedded_simulator(config):
        simulator = embedded_simulator(config)
    connected = {}
    try:
        for name, inst in config.instruments.items():
            cls = _driver_class(inst.driver)
            if inst.resource.startswith("sim::"):
                connected[name] = cls(_simulated_adapter(simulator, inst.resource[5:], config))
            else:
                connected[name] = _open_visa_retrying(cls, name, inst.resource, config)
    except BaseException:
        for driver in connected.values():
            _close_quietly(driver)
        raise
    return connected


def embedded_simulator(config: BenchConfig):
    from labpgt.instruments.simulated import SimulatedBench

    sim = config.simulator
    return SimulatedBench(n_generators=int(sim.get("generators", len(config.generators))),
                          seed=int(sim.get("seed", 0)), noise=bool(sim.get("noise", True)))


def _simulated_adapter(simulated, name, config):
    from labpgt.instruments.simulated import SimulatedAdapter

    try:
        device = simulated[name]
    except KeyError:
        raise UserError(f"bench config {config.source}: the embedded simulator has no instrument {name!r}; "
                        f"it has {', '.join(simulated.instruments)}") from None
    return SimulatedAdapter(device)


def _open_visa_retrying(cls, name, resource, config: BenchConfig):
    """Open an instrument, retrying a refused or dropped first contact within the bench's budget."""
    for attempt in range(1, config.max_attempts + 1):
        try:
            return _open_visa(cls, name, resource, config.timeout_ms)
        except InstrumentUnreachable:
            if attempt == config.max_attempts:
                raise
            time.sleep(config.wait_after(attempt))


def _open_visa(cls, name, resource, timeout_ms):
    try:
        instrument = cls(resource, visa_library="@py", read_termination="\n", write_termination="\n",
                         timeout=timeout_ms)
        if resource.upper().endswith("::SOCKET"):
            _disable_nagle(instrument)
        instrument.id  # noqa: B018 - a first round trip proves the instrument answers
        return instrument
    except Exception as exc:  # pyvisa raises many types for "not there"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InstrumentUnreachable(f"cannot reach {name} at {resource}: {reason}") from None


def _disable_nagle(instrument):
    """Turn TCP_NODELAY on for a raw-socket VISA session.

    NI-VISA's default for sockets is NODELAY on; pyvisa-py 0.8 leaves it off, and Nagle's algorithm
    against the peer's delayed ACK then holds a small write that follows another for ~40 ms.
    pyvisa-py also refuses to set VI_ATTR_TCPIP_NODELAY (its setter is not wired), so set the
    option on its socket; with another VISA library the attribute is tried instead.
    """
    import socket

    from pyvisa import constants

    connection = instrument.adapter.connection
    session = getattr(connection.visalib, "sessions", {}).get(connection.session)
    sock = getattr(session, "interface", None)
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return
    try:
        connection.set_visa_attribute(constants.VI_ATTR_TCPIP_NODELAY, constants.VI_TRUE)
    except Exception:  # a VISA without the attribute: correct, only slower
        pass


def _close_quietly(driver):
    try:
        driver.adapter.close()
    except Exception:
        pass


# --------------------------------------------------------------------------- the reservoir
RF_UNCONFIRMED = "RF could NOT be confirmed off: check the generators by hand"


class BenchFault(UserError):
    """The bench did not answer within its retry budget; RF was turned off (or could not be reached)."""


def _transient_errors() -> tuple:
    """What a query survives by retrying: transport failures, timeouts, garbled or bad answers."""
    import pyvisa

    return (OSError, TimeoutError, ValueError, pyvisa.errors.Error, InstrumentUnreachable)


class Bench:
    """Connected instruments as a reservoir: ``measure(U)`` sets, sweeps and reads, one row at a time.

    The bench keeps the complete state it wants each instrument in (generator power, frequency and
    RF output; ring loop gain, field and amplifier; analyzer setup) and sends an instrument its
    whole state, in one program message ending in ``*OPC?``, whenever it differs from what the
    instrument is known to hold. Instruments on separate connections are set in parallel (all
    messages written, then all confirmations read), so the sweep never races a setting.

    Safety: the complete wanted state is checked against the limits before anything of it is sent
    (also when it is sent again after a reconnect or a reboot); generator outputs stay off until the
    first query, and :meth:`rf_off` (called by :meth:`close`, so on leaving a ``with`` block however
    it is left) turns every one off.

    Faults: one query is *set → sweep → read* and is retried whole, up to ``max_attempts`` times with
    exponential backoff, on a timeout, a dropped connection, a garbled answer, or a trace of the
    wrong length, non-numeric or with NaN (never accepted as data). An instrument that failed is
    reconnected (which discards late answers still in flight), its whole state is sent again — a
    rebooted instrument gets everything back, RF and limits included — and read back before the
    query is measured. The measurement records how many attempts each query took. When the budget
    is spent, RF is turned off and :class:`BenchFault` says what failed.
    """

    def __init__(self, config: BenchConfig, instruments: dict | None = None):
        self.config = config
        self.simulator = embedded_simulator(config) if instruments is None and uses_embedded_simulator(config) else None
        self.instruments = instruments if instruments is not None else connect_instruments(config, self.simulator)
        self.input_width = len(config.encoding)
        self.feature_width = config.bins
        self.setting_names = tuple(f"{e.instrument}.{e.setting}" for e in config.encoding)
        self._known: dict[str, tuple | None] = {name: None for name in config.instruments}
        self._broken: set[str] = set()
        self._verify: set[str] = set()
        self._rf_reported = False
        self._wanted = self._initial_state()
        check_settings_safe(self.config, self._settings_of(self._wanted))
        self._retrying(self._settle, "setting up the bench")
        center, span, _, points = self._wanted[config.analyzer]
        self.points = int(points)
        self.frequencies = np.linspace(center - span / 2, center + span / 2, self.points)

    # ---- the wanted state
    def _initial_state(self) -> dict[str, tuple]:
        """Every instrument's state at the start: fixed settings from the config, RF off."""
        wanted = {}
        for name, inst in self.config.instruments.items():
            s = inst.settings
            keys = {**SETTINGS_BY_DRIVER, "spectrum-analyzer": ANALYZER_SETTINGS}[inst.driver]
            current = self._current(name) if any(k not in s for k in keys) else None
            state = [float(s[k]) if k in s else float(current[i]) for i, k in enumerate(keys)]
            if inst.driver == "signal-generator":
                wanted[name] = (*state, False)
            elif inst.driver == "ring-controller":
                wanted[name] = (*state, bool(s.get("output", True)))
            else:
                wanted[name] = (*state[:3], int(state[3]))
        return wanted

    def _current(self, name) -> tuple:
        """What an instrument holds now (for settings the config leaves to the instrument)."""
        return self._retrying(lambda: self._current_once(name), f"reading {name}")[0]

    def _settings_of(self, wanted: dict) -> dict[tuple[str, str], float]:
        settings = {}
        for name in self.config.generators:
            settings[(name, "power_dbm")], settings[(name, "frequency_hz")] = wanted[name][:2]
        if self.config.ring is not None:
            settings[(self.config.ring, "loop_gain_db")], settings[(self.config.ring, "field_mt")] = \
                wanted[self.config.ring][:2]
        return settings

    def _with_settings(self, settings: dict[tuple[str, str], float], rf: bool) -> dict[str, tuple]:
        """The wanted state with ``settings`` applied and every generator's output ``rf``."""
        wanted = dict(self._wanted)
        for (name, setting), value in settings.items():
            state = list(wanted[name])
            state[SETTINGS_BY_DRIVER[self.config.instruments[name].driver].index(setting)] = value
            wanted[name] = tuple(state)
        for name in self.config.generators:
            wanted[name] = wanted[name][:2] + (rf,)
        return wanted

    def settings_for(self, u: np.ndarray) -> dict[tuple[str, str], float]:
        """The instrument settings that encode one input row u ∈ [0, 1]^d."""
        if u.shape != (self.input_width,) or not np.all(np.isfinite(u)):
            raise ValueError(f"expected {self.input_width} finite inputs, got {u!r}")
        u = np.clip(u, 0.0, 1.0)
        return {(e.instrument, e.setting): float(e.value(x)) for e, x in zip(self.config.encoding, u)}

    # ---- talking to the instruments
    def _settle(self) -> None:
        """Bring every instrument to its wanted state (one message each, confirmed in parallel);
        read back those that were reconnected. Failing instruments are marked broken and the
        first failure is raised."""
        pending = [name for name, state in self._wanted.items() if self._known[name] != state]
        sent = []
        for name in pending:
            try:
                self._send_state(name, self._wanted[name])
                sent.append(name)
            except _transient_errors():
                self._broken.add(name)
        failure = None
        for name in sent:
            try:
                read_confirmation(self.instruments[name])
                self._known[name] = self._wanted[name]
            except _transient_errors() as exc:
                self._broken.add(name)
                failure = failure or exc
        for name in sorted(self._verify - self._broken):
            try:
                self._read_back(name)
                self._verify.discard(name)
            except _transient_errors() as exc:
                self._broken.add(name)
                failure = failure or exc
        if self._broken:
            raise failure or ConnectionError(f"{', '.join(sorted(self._broken))} failed while being set")

    def _send_state(self, name: str, state: tuple) -> None:
        driver = self.instruments[name]
        if self.config.instruments[name].driver == "spectrum-analyzer":
            driver.send_setup(*state)
        else:
            driver.send_state(*state)

    def _read_back(self, name: str) -> None:
        """Read an instrument's state back; a difference is a fault (ValueError)."""
        self._known[name] = None  # until it reads back right
        got = self._current_once(name)
        for value, wanted in zip(got, self._wanted[name]):
            if not math.isclose(float(value), float(wanted), rel_tol=1e-9, abs_tol=1e-3):
                raise ValueError(f"{name} reads back {got}, not {self._wanted[name]}")
        self._known[name] = self._wanted[name]

    def _current_once(self, name) -> tuple:
        driver = self.instruments[name]
        return driver.read_setup() if self.config.instruments[name].driver == "spectrum-analyzer" else driver.read_state()

    def _reconnect_broken(self) -> None:
        """Reopen the connections of failed instruments; their state is unknown until re-sent and read back."""
        for name in sorted(self._broken):
            inst = self.config.instruments[name]
            if not inst.resource.startswith("sim::"):
                _close_quietly(self.instruments[name])
                self.instruments[name] = _open_visa(_driver_class(inst.driver), name, inst.resource,
                                                    self.config.timeout_ms)
            self._known[name] = None
            self._verify.add(name)
            self._broken.discard(name)

    def _retrying(self, operation, what: str):
        """Run ``operation()`` until it succeeds, reconnecting failed instruments in between.

        Returns (result, attempts). A SafetyError is never retried; when ``max_attempts`` are spent,
        RF goes off (as far as the bench answers) and BenchFault says what failed.
        """
        transient = _transient_errors()
        started = time.monotonic()
        for attempt in range(1, self.config.max_attempts + 1):
            try:
                self._reconnect_broken()
                return operation(), attempt
            except SafetyError:
                raise
            except transient as exc:
                failure = exc
                if not self._broken:  # a failure no instrument owned up to: start every connection afresh
                    self._broken.update(self.config.instruments)
                if attempt < self.config.max_attempts:
                    time.sleep(self.config.wait_after(attempt))
        rf = self._best_effort_rf_off()
        self._rf_reported = True
        reason = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
        raise BenchFault(f"the bench stopped answering while {what}, after {self.config.max_attempts} attempts "
                         f"over {time.monotonic() - started:.1f} s (last: {reason}); {rf}")

    # ---- the public operations
    def apply(self, settings: dict[tuple[str, str], float], rf: bool = True) -> None:
        """Check the complete resulting state against the limits, then set the instruments."""
        wanted = self._with_settings(settings, rf)
        check_settings_safe(self.config, self._settings_of(wanted))
        self._wanted = wanted
        self._retrying(self._settle, "setting the instruments")

    def rf_off(self) -> None:
        """Turn every generator's RF output off and wait for each to confirm it."""
        self._wanted = self._with_settings({}, rf=False)
        self._retrying(self._settle, "turning RF off")

    def _sweep(self) -> np.ndarray:
        self._settle()
        try:
            trace = self.instruments[self.config.analyzer].sweep_and_read()
            if trace.shape != (self.points,):
                raise ValueError(f"analyzer returned {trace.shape[0]} points, expected {self.points}")
            if not np.all(np.isfinite(trace)):
                raise ValueError("analyzer returned a trace with NaN or infinite values")
        except _transient_errors():
            self._broken.add(self.config.analyzer)
            raise
        return trace

    def measure_trace(self, settings: dict[tuple[str, str], float], rf: bool = True) -> np.ndarray:
        """One query's trace (dBm, float32); see :meth:`query`."""
        return self.query(settings, rf)[0]

    def query(self, settings: dict[tuple[str, str], float], rf: bool = True) -> tuple[np.ndarray, int]:
        """One query — set, sweep, read and check the trace — retried whole on faults.

        ``rf=False`` measures with every generator off (e.g. to see the free-running ring).
        Returns the trace (dBm, float32) and the number of attempts it took.
        """
        wanted = self._with_settings(settings, rf)
        check_settings_safe(self.config, self._settings_of(wanted))
        self._wanted = wanted
        return self._retrying(self._sweep, "measuring")

    def measure(self, U: np.ndarray) -> Measurement:
        U = np.atleast_2d(np.asarray(U, dtype=np.float64))
        batch = U.shape[0]
        spectra = np.empty((batch, self.points), dtype=np.float32)
        settings = np.empty((batch, self.input_width))
        started = np.empty(batch)
        attempts = np.empty(batch, dtype=np.int32)
        for row in range(batch):
            sent = self.settings_for(U[row])
            started[row] = time.time()
            spectra[row], attempts[row] = self.query(sent)
            settings[row] = list(sent.values())
        features = trace_features(spectra, self.config.bins, self.config.floor_dbm, self.config.ceiling_dbm)
        return Measurement(features=features, spectra=spectra, frequencies=self.frequencies, settings=settings,
                           started=started, attempts=attempts)

    # ---- the embedded simulator's noise, for bit-identical resume
    def get_rng_state(self) -> dict:
        """The embedded simulator's noise RNG state ({} for a real bench, whose noise is physics)."""
        if self.simulator is None:
            return {}
        return {"simulator": self.simulator.model.rng.bit_generator.state}

    def set_rng_state(self, state: dict) -> None:
        if self.simulator is not None and "simulator" in state:
            self.simulator.model.rng.bit_generator.state = state["simulator"]

    def identities(self) -> dict[str, str]:
        """Each instrument's ``*IDN?`` answer (recorded in the session file)."""
        return {name: self._retrying(lambda n=name: str(self.instruments[n].id), f"identifying {name}")[0]
                for name in self.instruments}

    # ---- ending
    def _best_effort_rf_off(self) -> str:
        """Turn RF off even on a bench that misbehaves; says what happened (never raises)."""
        if not hasattr(self, "_wanted"):  # failed while starting: outputs were never switched on by us
            return self._disable_all_directly()
        self._wanted = self._with_settings({}, rf=False)
        for _ in range(2):
            try:
                self._reconnect_broken()
                self._settle()
                return "RF is off on every generator"
            except Exception:  # noqa: BLE001 - a broken connection: reconnect once more, then report
                self._broken.update(n for n in self.config.generators if self._known[n] != self._wanted[n])
        return RF_UNCONFIRMED

    def _disable_all_directly(self) -> str:
        try:
            for name in self.config.generators:
                self.instruments[name].disable()
            for name in self.config.generators:
                self.instruments[name].write("*OPC?")
            for name in self.config.generators:
                read_confirmation(self.instruments[name])
            return "RF is off on every generator"
        except Exception:  # noqa: BLE001
            return RF_UNCONFIRMED

    def close(self) -> None:
        try:
            if self._best_effort_rf_off() == RF_UNCONFIRMED and not self._rf_reported:
                log.error("labpgt: %s", RF_UNCONFIRMED)
        finally:
            for driver in self.instruments.values():
                _close_quietly(driver)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def embedded_bench(seed: int = 0, noise: bool = True, generators: int = 4) -> Bench:
    """The default reservoir of ``labpgt train``: the simulated bench in-process, through its drivers."""
    return Bench(simulated_bench_config(embedded=True, seed=seed, noise=noise, generators=generators))


def load_bench(path: str | Path) -> Bench:
    """Connect the bench a TOML file describes."""
    return Bench(load_bench_config(path))
