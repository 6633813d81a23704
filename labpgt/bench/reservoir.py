"""The bench as a reservoir: connected instruments that measure one query per row of ``U``.

:class:`Bench` implements the :class:`labpgt.reservoir.Reservoir` protocol: one row of ``U`` is one
query — bring every instrument whose state changed to its new state (one ``*OPC?``-confirmed
message each), take one sweep and read the trace in binary, retried whole on faults. It knows
nothing about training or storage. :func:`embedded_bench` is the default reservoir of
``labpgt train`` (the simulated bench in-process); :func:`load_bench` connects a bench TOML.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from labpgt.bench.config import BenchConfig, load_bench_config, simulated_bench_config
from labpgt.bench.connect import (
    TRANSIENT_ERRORS,
    close_quietly,
    connect_instruments,
    embedded_simulator,
    identity_at_connection,
    reconnect,
    uses_embedded_simulator,
)
from labpgt.bench.features import TRACE_RESOLUTION_DB, quantise_trace, trace_features
from labpgt.bench.field import FieldLoop, FieldReading
from labpgt.bench.kinds import AnalyzerState, GeneratorState, MagnetState, Role, State, state_of, states_agree
from labpgt.bench.safety import SafetyError, check_state_safe
from labpgt.errors import UserError
from labpgt.instruments.drivers import read_confirmation
from labpgt.reservoir import Measurement

log = logging.getLogger(__name__)

RF_UNCONFIRMED = "RF could NOT be confirmed off: check the generators by hand"


class BenchFault(UserError):
    """The bench did not answer within its retry budget; RF was turned off (or could not be reached)."""


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

    each_query_apart = True  # every row is its own sweep: a run may stop between two (labpgt.reservoir)
    trace_resolution_db = TRACE_RESOLUTION_DB  # the grid of every trace it returns

    def __init__(self, config: BenchConfig, instruments: dict | None = None):
        self.config = config
        self.simulator = embedded_simulator(config) if instruments is None and uses_embedded_simulator(config) else None
        self.instruments = instruments if instruments is not None else connect_instruments(config, self.simulator)
        self.input_width, self.feature_width = config.widths
        self.setting_names = tuple(f"{e.instrument}.{e.setting}" for e in config.encoding)
        self._known: dict[str, State | None] = dict.fromkeys(config.instruments)
        self._broken: set[str] = set()
        self._verify: set[str] = set()
        self._rf_reported = False
        self.field_loops = {
            name: FieldLoop(name, config.instruments[name].options, self._waiter(name)) for name in config.magnets
        }
        self.field_readings: dict[str, FieldReading] = {}
        self.attenuator_holds = self._attenuator_holds()
        self._hold_pending = set(self.attenuator_holds)
        # read once, at connection, whoever asks later: on a clock that charges every message (issue 27) a run
        # must send the same messages whether or not it keeps a session or prints its instruments. Read after
        # the field loops and holds exist: a failed read reconnects the instrument, which resets them.
        self._identities = self._read_identities()
        self.notes = [
            f"{name}: step attenuator held at {db:g} dB (the encoded powers fit its ALC range: no "
            f"attenuator moves while measuring)"
            for name, db in self.attenuator_holds.items()
        ]
        for line in self.notes:
            log.info("labpgt: %s", line)
        self._wanted = self._initial_state()
        check_state_safe(self.config, self._wanted)
        self._retrying(self._settle, "setting up the bench")
        setup = state_of(self._wanted, config.analyzer, AnalyzerState)
        self.points = int(setup.points)
        self.frequencies = np.linspace(
            setup.center_hz - setup.span_hz / 2, setup.center_hz + setup.span_hz / 2, self.points
        )

    # ---- the wanted state
    def _initial_state(self) -> dict[str, State]:
        """Every instrument's state at the start: its config's fixed settings, the others as the
        instrument holds them, every generator's output off (a sensor's: nothing, known from the start)."""
        wanted = {}
        for name, inst in self.config.instruments.items():
            if not inst.kind.settable:
                wanted[name] = self._known[name] = inst.starting_state()
                continue
            if inst.kind.role is Role.MAGNET:
                wanted[name] = self._starting_field(name)
                continue
            current = self._current(name) if inst.leaves_settings_to_instrument else None
            wanted[name] = inst.starting_state(current)
        return self._with_rf(wanted, False)

    def _starting_field(self, name: str) -> State:
        """A coil supply's start: its table's field (or current), else the field its gaussmeter reads now."""
        inst = self.config.instruments[name]
        settings = inst.settings
        if "field_mt" not in settings and "current_a" not in settings:
            meter = self.instruments[inst.options["gaussmeter"]]
            return inst.kind.state_type(field_mt=float(meter.field_mt), output_on=True)
        return inst.kind.state_type(
            field_mt=float(settings.get("field_mt", math.nan)), output_on=True, current_a=settings.get("current_a")
        )

    def _attenuator_holds(self) -> dict[str, float]:
        """The attenuation at which each generator with a mechanical step attenuator is held: where the powers
        its encoding (or fixed power) asks for all fit the ALC's range."""
        holds = {}
        for name in self.config.generators:
            inst = self.config.instruments[name]
            fixed = inst.settings.get("power_dbm")
            powers = [
                v
                for e in self.config.encoding
                if (e.instrument, e.setting) == (name, "power_dbm")
                for v in (e.low, e.high)
            ] or ([] if fixed is None else [fixed])
            hold_for = getattr(inst.kind.driver_class, "attenuator_hold_for", None)
            if hold_for is None or not powers:
                continue
            held = hold_for(min(powers), max(powers))
            if held is not None:
                holds[name] = held
        return holds

    def _waiter(self, name: str):
        """How the bench waits on instrument ``name``: on an embedded simulator's clock, else the wall clock."""
        simulated = self.config.instruments[name].simulated_name
        if self.simulator is not None and simulated is not None:
            return lambda seconds: self.simulator.idle(simulated, seconds)
        return time.sleep

    def _current(self, name) -> State:
        """What an instrument holds now (for settings the config leaves to the instrument)."""
        return self._retrying(lambda: self._read_state(name), f"reading {name}")[0]

    def _with_settings(self, settings: dict[tuple[str, str], float], rf: bool) -> dict[str, State]:
        """The wanted state with ``settings`` applied and every generator's output ``rf``."""
        wanted = dict(self._wanted)
        for (name, setting), value in settings.items():
            kind = self.config.instruments[name].kind
            if setting not in kind.encodable:
                raise ValueError(f"{name} has no setting {setting!r} to change")
            change: dict[str, float | None] = {setting: kind.quantised(setting, value)}
            if setting == "field_mt" and kind.role is Role.MAGNET:
                change["current_a"] = None  # a field set point: the closed loop again
            wanted[name] = replace(wanted[name], **change)  # type: ignore[arg-type]  # names checked against encodable
        return self._with_rf(wanted, rf)

    def _with_rf(self, wanted: dict[str, State], rf: bool) -> dict[str, State]:
        return {
            **wanted,
            **{name: replace(state_of(wanted, name, GeneratorState), output_on=rf) for name in self.config.generators},
        }

    def settings_for(self, u: np.ndarray) -> dict[tuple[str, str], float]:
        """The instrument settings that encode one input row u ∈ [0, 1]^d."""
        if u.shape != (self.input_width,) or not np.all(np.isfinite(u)):
            raise ValueError(f"expected {self.input_width} finite inputs, got {u!r}")
        u = np.clip(u, 0.0, 1.0)
        kinds = {name: inst.kind for name, inst in self.config.instruments.items()}
        return {
            (e.instrument, e.setting): kinds[e.instrument].quantised(e.setting, float(e.value(x)))
            for e, x in zip(self.config.encoding, u)
        }

    # ---- talking to the instruments
    def _settle(self) -> None:
        """Bring every instrument to its wanted state (one message each, confirmed in parallel);
        read back those that were reconnected. Failing instruments are marked broken and the
        first failure is raised."""
        self._hold_attenuators()
        pending = [name for name, state in self._wanted.items() if self._known[name] != state]
        for name in [n for n in pending if n in self.field_loops]:  # the field first: it takes the longest
            try:
                self._set_field(name)
            except TRANSIENT_ERRORS:
                self._broken.add(name)
                raise
        pending = [name for name in pending if name not in self.field_loops]
        sent = []
        for name in pending:
            try:
                self._send_state(name, self._wanted[name])
                sent.append(name)
            except TRANSIENT_ERRORS:
                self._broken.add(name)
        failure = None
        for name in sent:
            try:
                read_confirmation(self.instruments[name])
                self._known[name] = self._wanted[name]
            except TRANSIENT_ERRORS as exc:
                self._broken.add(name)
                failure = failure or exc
        for name in sorted(self._verify - self._broken):
            try:
                self._read_back(name)
                self._verify.discard(name)
            except TRANSIENT_ERRORS as exc:
                self._broken.add(name)
                failure = failure or exc
        if self._broken:
            raise failure or ConnectionError(f"{', '.join(sorted(self._broken))} failed while being set")

    def _hold_attenuators(self) -> None:
        for name in sorted(self._hold_pending):
            try:
                self.instruments[name].hold_attenuator(self.attenuator_holds[name])
                read_confirmation(self.instruments[name])
                self._hold_pending.discard(name)
            except TRANSIENT_ERRORS:
                self._broken.add(name)
                raise

    def _set_field(self, name: str) -> None:
        """A coil supply to its wanted field (closed loop) or current (open loop), within its limits."""
        state, loop = state_of(self._wanted, name, MagnetState), self.field_loops[name]
        supply = self.instruments[name]
        self._known[name] = None
        if state.current_a is not None:
            loop.ramp_to(supply, state.current_a, state.output_on)
        else:
            meter = self.instruments[self.config.instruments[name].options["gaussmeter"]]
            self.field_readings[name] = loop.reach(supply, meter, state.field_mt)
        self._known[name] = state

    def _send_state(self, name: str, state: State) -> None:
        self.config.instruments[name].kind.send(self.instruments[name], state)

    def _read_state(self, name: str) -> State:
        return self.config.instruments[name].kind.read(self.instruments[name])

    def _read_back(self, name: str) -> None:
        """Read an instrument's state back; a difference is a fault (ValueError)."""
        self._known[name] = None  # until it reads back right
        got = self._read_state(name)
        if not states_agree(got, self._wanted[name]):
            raise ValueError(f"{name} reads back {got}, not {self._wanted[name]}")
        self._known[name] = self._wanted[name]

    def _reconnect_broken(self) -> None:
        """Reopen the connections of failed instruments; their state is unknown until re-sent and read back."""
        for name in sorted(self._broken):
            self._reconnect_broken_one(name)

    def _reconnect_broken_one(self, name: str) -> None:
        inst = self.config.instruments[name]
        self.instruments[name] = reconnect(inst, self.instruments[name], self.config)
        self._broken.discard(name)
        if not inst.kind.settable:
            return
        self._known[name] = None
        if name in self.field_loops:  # its current is read again, then the field reached again
            self.field_loops[name].current_a = None
        else:
            self._verify.add(name)
        if name in self.attenuator_holds:
            self._hold_pending.add(name)

    def _retrying(self, operation, what: str):
        """Run ``operation()`` until it succeeds, reconnecting failed instruments in between.

        Returns (result, attempts). A SafetyError is never retried; when ``max_attempts`` are spent,
        RF goes off (as far as the bench answers) and BenchFault says what failed.
        """
        started = time.monotonic()
        for attempt in range(1, self.config.max_attempts + 1):
            try:
                self._reconnect_broken()
                return operation(), attempt
            except SafetyError:
                raise
            except TRANSIENT_ERRORS as exc:
                failure = exc
                if not self._broken:  # a failure no instrument owned up to: start every connection afresh
                    self._broken.update(self.config.instruments)
                if attempt < self.config.max_attempts:
                    time.sleep(self.config.wait_after(attempt))
        rf = self._best_effort_rf_off()
        self._rf_reported = True
        reason = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
        raise BenchFault(
            f"the bench stopped answering while {what}, after {self.config.max_attempts} attempts "
            f"over {time.monotonic() - started:.1f} s (last: {reason}); {rf}"
        )

    # ---- the public operations
    def check(self, settings: dict[tuple[str, str], float], rf: bool = True) -> dict[str, State]:
        """The complete state ``settings`` would bring the bench to, checked against the limits; nothing is sent."""
        wanted = self._with_settings(settings, rf)
        check_state_safe(self.config, wanted)
        return wanted

    def setting(self, name: str, setting: str) -> float:
        """One setting of instrument ``name`` as the bench holds it (after a query: as it was measured)."""
        return getattr(self._wanted[name], setting)

    def apply(self, settings: dict[tuple[str, str], float], rf: bool = True) -> None:
        """Check the complete resulting state against the limits, then set the instruments."""
        self._wanted = self.check(settings, rf)
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
        except TRANSIENT_ERRORS:
            self._broken.add(self.config.analyzer)
            raise
        return quantise_trace(trace)  # the trace the features and the session get (bench.features)

    def measure_trace(self, settings: dict[tuple[str, str], float], rf: bool = True) -> np.ndarray:
        """One query's trace (dBm, float32); see :meth:`query`."""
        return self.query(settings, rf)[0]

    def query(self, settings: dict[tuple[str, str], float], rf: bool = True) -> tuple[np.ndarray, int]:
        """One query — set, sweep, read and check the trace — retried whole on faults.

        ``rf=False`` measures with every generator off (e.g. to see the free-running ring).
        Returns the trace (dBm, float32, on the grid of :data:`~labpgt.bench.features.TRACE_RESOLUTION_DB`)
        and the number of attempts it took.
        """
        self._wanted = self.check(settings, rf)
        return self._retrying(self._sweep, "measuring")

    def measure(self, U: np.ndarray) -> Measurement:
        U = np.atleast_2d(np.asarray(U, dtype=np.float64))
        batch = U.shape[0]
        spectra = np.empty((batch, self.points), dtype=np.float32)
        settings = np.empty((batch, self.input_width))
        started = np.empty(batch)
        attempts = np.empty(batch, dtype=np.int32)
        wall, sim_time = np.empty(batch), np.full(batch, np.nan)
        temperature, field = np.full(batch, np.nan), np.full(batch, np.nan)
        for row in range(batch):
            sent = self.settings_for(U[row])
            started[row] = time.time()
            spectra[row], attempts[row] = self.query(sent)
            wall[row] = time.time() - started[row]
            settings[row] = list(sent.values())
            sim_time[row], temperature[row], field[row] = self.readings()
        features = trace_features(spectra, self.config.bins, self.config.floor_dbm, self.config.ceiling_dbm)
        return Measurement(
            features=features,
            spectra=spectra,
            frequencies=self.frequencies,
            settings=settings,
            started=started,
            attempts=attempts,
            wall_seconds=wall,
            sim_time=sim_time,
            temperature_c=temperature,
            field_mt=field,
        )

    def readings(self) -> tuple[float, float, float]:
        """What the bench records after each query besides its trace (NaN where it has none): an embedded
        simulator's clock (s), the ring's temperature (°C: a temperature controller's input, or the ring
        controller's sensor with ``ring_temperature``) and the field the gaussmeter reads (mT)."""
        clock = self.simulator.clock_s if self.simulator is not None else np.nan
        return clock, self.temperature_c(), self.field_mt()

    # ---- what a run's suspenders ask (labpgt.bench.suspenders)
    def oscillation_margin(self):
        """``(margin_db, measurement)`` of the free-running ring (every generator off): how far its strongest line
        stands above the trace's median, from one check query."""
        from labpgt.sweeps import line_margin

        started = time.time()
        trace, attempts = self.query({}, rf=False)
        margin = line_margin(trace, self.frequencies)[2]
        measurement = Measurement(
            features=trace_features(trace[None, :], self.config.bins, self.config.floor_dbm, self.config.ceiling_dbm),
            spectra=trace[None, :],
            frequencies=self.frequencies,
            started=np.array([started]),
            attempts=np.array([attempts], dtype=np.int32),
        )
        return margin, measurement

    def answering(self) -> bool:
        """Whether every instrument answers ``*IDN?`` now, each connection opened afresh; never raises."""
        try:
            self._broken.update(self.config.instruments)
            self._reconnect_broken()
            for name in self.instruments:
                str(self.instruments[name].id)
        except Exception:  # noqa: BLE001 - any failure to answer is the answer
            self._broken.update(self.config.instruments)
            return False
        return True

    def reapply(self) -> None:
        """After a pause: every connection opened afresh and every instrument's whole state sent again and read
        back with the next query (an instrument that went away came back in its reset state)."""
        self._broken.update(self.config.instruments)

    def temperature_c(self) -> float:
        """The ring's temperature (°C), retried like any query; NaN if the bench reads none."""
        name = self.config.thermometer or (self.config.ring if self.config.ring_temperature else None)
        if name is None:
            return np.nan
        return self._retrying(lambda: self._read_sensor(name, "temperature"), "reading the ring's temperature")[0]

    def field_mt(self) -> float:
        """The field the gaussmeter reads now (mT), retried like any query; NaN without a gaussmeter."""
        name = self.config.gaussmeter
        if name is None:
            return np.nan
        return self._retrying(lambda: self._read_sensor(name, "field_mt"), "reading the field")[0]

    def _read_sensor(self, name: str, quantity: str) -> float:
        try:
            return float(getattr(self.instruments[name], quantity))
        except TRANSIENT_ERRORS:
            self._broken.add(name)
            raise

    # ---- the embedded simulator's noise, clock, drift and memory, for bit-identical resume
    def get_rng_state(self) -> dict:
        """The embedded simulator's state: its noise RNG, clock, drifts and the ring's oscillating
        state ({} for a real bench, whose noise is physics)."""
        if self.simulator is None:
            return {}
        state = self.simulator.get_state()
        return {"simulator": state["model"]["rng"], "simulated_bench": state}

    def set_rng_state(self, state: dict) -> None:
        if self.simulator is None:
            return
        if "simulated_bench" in state:
            self.simulator.set_state(state["simulated_bench"])
        elif "simulator" in state:  # a session from before the clock: the noise RNG only
            self.simulator.model.rng.bit_generator.state = state["simulator"]

    def identities(self) -> dict[str, str]:
        """Each instrument's ``*IDN?`` answer (recorded in the session file), as read at connection."""
        return dict(self._identities)

    def _read_identities(self) -> dict[str, str]:
        """Each instrument's identity: as it answered at connection, else (a driver opened elsewhere) asked now."""
        kinds = {name: inst.kind for name, inst in self.config.instruments.items()}
        return {
            name: identity_at_connection(self.instruments[name])
            or self._retrying(lambda n=name: kinds[n].identify(self.instruments[n]).strip(), f"identifying {name}")[0]
            for name in self.instruments
        }

    # ---- ending
    def rf_off_best_effort(self) -> str:
        """Every generator's RF off, on a bench that misbehaves too, in bounded time: says what happened and
        never raises (the end of a run, however it ended)."""
        return self._best_effort_rf_off()

    def safe_state_best_effort(self) -> str:
        """The bench's safe state, however a run ended: RF off at every generator first, then every coil current
        ramped (within its slew limit) to its ``safe_current_a``. Bounded in time, never raises; says what
        happened."""
        said = [self._best_effort_rf_off()]
        for name, loop in self.field_loops.items():
            safe = self.config.instruments[name].options["safe_current_a"]
            try:
                if loop.current_a is None:
                    self._reconnect_broken()
                loop.ramp_to(self.instruments[name], safe, True)
                self._wanted[name] = replace(self._wanted[name], current_a=safe)
                self._known[name] = self._wanted[name]
                said.append(f"{name} ramped to {safe:g} A")
            except Exception as exc:  # noqa: BLE001 - a bench that misbehaves: say so, never raise here
                said.append(f"{name} could NOT be ramped to {safe:g} A ({type(exc).__name__}): check the magnet")
        return "; ".join(said)

    def _best_effort_rf_off(self) -> str:
        """Turn RF off even on a bench that misbehaves; says what happened (never raises)."""
        if not hasattr(self, "_wanted"):  # failed while starting: outputs were never switched on by us
            return self._disable_all_directly()
        self._wanted = self._with_settings({}, rf=False)
        for _ in range(2):
            for name in sorted(self._broken):  # each on its own: one that is gone keeps no other's RF on
                try:
                    self._reconnect_broken_one(name)
                except Exception:  # noqa: BLE001 - it stays broken; the others are still turned off
                    pass
            try:
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
            said = self.safe_state_best_effort() if hasattr(self, "field_loops") else self._best_effort_rf_off()
            if (RF_UNCONFIRMED in said and not self._rf_reported) or "NOT be ramped" in said:
                log.error("labpgt: %s", said)
        finally:
            for driver in self.instruments.values():
                close_quietly(driver)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def embedded_bench(seed: int = 0, noise: bool = True, generators: int = 4, physics: dict | None = None) -> Bench:
    """The default reservoir of ``labpgt train``: the simulated bench in-process, through its drivers
    (``physics``: ``[simulator]`` keys such as ``{"preset": "ideal"}`` or ``{"device": 2}``; default the
    real nominal ring)."""
    return Bench(simulated_bench_config(embedded=True, seed=seed, noise=noise, generators=generators, physics=physics))


def load_bench(path: str | Path) -> Bench:
    """Connect the bench a TOML file describes."""
    return Bench(load_bench_config(path))
