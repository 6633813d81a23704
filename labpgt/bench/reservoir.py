"""The bench as a reservoir: connected instruments that measure one query per row of ``U``.

:class:`Bench` implements the :class:`labpgt.reservoir.Reservoir` protocol: one row of ``U`` is one
query — bring every instrument whose state changed to its new state (one ``*OPC?``-confirmed
message each), take one sweep and read the trace in binary, retried whole on faults. It knows
nothing about training or storage. :func:`embedded_bench` is the default reservoir of
``labpgt train`` (the simulated bench in-process); :func:`load_bench` connects a bench TOML.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from labpgt.bench.config import BenchConfig, load_bench_config, simulated_bench_config
from labpgt.bench.connect import (TRANSIENT_ERRORS, close_quietly, connect_instruments, embedded_simulator,
                                  reconnect, uses_embedded_simulator)
from labpgt.bench.features import TRACE_RESOLUTION_DB, quantise_trace, trace_features
from labpgt.bench.kinds import State, states_agree
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

    each_query_apart = True      # every row is its own sweep: a run may stop between two (labpgt.reservoir)
    trace_resolution_db = TRACE_RESOLUTION_DB     # the grid of every trace it returns

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
        self._wanted = self._initial_state()
        check_state_safe(self.config, self._wanted)
        self._retrying(self._settle, "setting up the bench")
        setup = self._wanted[config.analyzer]
        self.points = int(setup.points)
        self.frequencies = np.linspace(setup.center_hz - setup.span_hz / 2, setup.center_hz + setup.span_hz / 2,
                                       self.points)

    # ---- the wanted state
    def _initial_state(self) -> dict[str, State]:
        """Every instrument's state at the start: its config's fixed settings, the others as the
        instrument holds them, every generator's output off."""
        wanted = {}
        for name, inst in self.config.instruments.items():
            current = self._current(name) if inst.leaves_settings_to_instrument else None
            wanted[name] = inst.starting_state(current)
        return self._with_rf(wanted, False)

    def _current(self, name) -> State:
        """What an instrument holds now (for settings the config leaves to the instrument)."""
        return self._retrying(lambda: self._read_state(name), f"reading {name}")[0]

    def _with_settings(self, settings: dict[tuple[str, str], float], rf: bool) -> dict[str, State]:
        """The wanted state with ``settings`` applied and every generator's output ``rf``."""
        wanted = dict(self._wanted)
        for (name, setting), value in settings.items():
            if setting not in self.config.instruments[name].kind.encodable:
                raise ValueError(f"{name} has no setting {setting!r} to change")
            wanted[name] = replace(wanted[name], **{setting: value})
        return self._with_rf(wanted, rf)

    def _with_rf(self, wanted: dict[str, State], rf: bool) -> dict[str, State]:
        return {**wanted, **{name: replace(wanted[name], output_on=rf) for name in self.config.generators}}

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
        self.instruments[name] = reconnect(self.config.instruments[name], self.instruments[name], self.config)
        self._known[name] = None
        self._verify.add(name)
        self._broken.discard(name)

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
        raise BenchFault(f"the bench stopped answering while {what}, after {self.config.max_attempts} attempts "
                         f"over {time.monotonic() - started:.1f} s (last: {reason}); {rf}")

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
        return quantise_trace(trace)          # the trace the features and the session get (bench.features)

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
        wall, sim_time, temperature = np.empty(batch), np.full(batch, np.nan), np.full(batch, np.nan)
        for row in range(batch):
            sent = self.settings_for(U[row])
            started[row] = time.time()
            spectra[row], attempts[row] = self.query(sent)
            wall[row] = time.time() - started[row]
            settings[row] = list(sent.values())
            sim_time[row] = self.simulator.clock_s if self.simulator is not None else np.nan
            temperature[row] = self.temperature_c() if self.config.ring_temperature else np.nan
        features = trace_features(spectra, self.config.bins, self.config.floor_dbm, self.config.ceiling_dbm)
        return Measurement(features=features, spectra=spectra, frequencies=self.frequencies, settings=settings,
                           started=started, attempts=attempts, wall_seconds=wall, sim_time=sim_time,
                           temperature_c=temperature)

    # ---- what a run's suspenders ask (labpgt.bench.suspenders)
    def oscillation_margin(self):
        """``(margin_db, measurement)`` of the free-running ring (every generator off): how far its strongest line
        stands above the trace's median, from one check query."""
        from labpgt.sweeps import line_margin

        started = time.time()
        trace, attempts = self.query({}, rf=False)
        margin = line_margin(trace, self.frequencies)[2]
        measurement = Measurement(features=trace_features(trace[None, :], self.config.bins, self.config.floor_dbm,
                                                          self.config.ceiling_dbm),
                                  spectra=trace[None, :], frequencies=self.frequencies,
                                  started=np.array([started]), attempts=np.array([attempts], dtype=np.int32))
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
        """The ring's temperature sensor (``:TEMPerature?``, °C), retried like any query."""
        return self._retrying(self._read_temperature, "reading the ring's temperature")[0]

    def _read_temperature(self) -> float:
        try:
            return float(self.instruments[self.config.ring].temperature)
        except TRANSIENT_ERRORS:
            self._broken.add(self.config.ring)
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
        elif "simulator" in state:       # a session from before the clock: the noise RNG only
            self.simulator.model.rng.bit_generator.state = state["simulator"]

    def identities(self) -> dict[str, str]:
        """Each instrument's ``*IDN?`` answer (recorded in the session file)."""
        return {name: self._retrying(lambda n=name: str(self.instruments[n].id), f"identifying {name}")[0]
                for name in self.instruments}

    # ---- ending
    def rf_off_best_effort(self) -> str:
        """Every generator's RF off, on a bench that misbehaves too, in bounded time: says what happened and
        never raises (the end of a run, however it ended)."""
        return self._best_effort_rf_off()

    def _best_effort_rf_off(self) -> str:
        """Turn RF off even on a bench that misbehaves; says what happened (never raises)."""
        if not hasattr(self, "_wanted"):  # failed while starting: outputs were never switched on by us
            return self._disable_all_directly()
        self._wanted = self._with_settings({}, rf=False)
        for _ in range(2):
            for name in sorted(self._broken):        # each on its own: one that is gone keeps no other's RF on
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
            if self._best_effort_rf_off() == RF_UNCONFIRMED and not self._rf_reported:
                log.error("labpgt: %s", RF_UNCONFIRMED)
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
