"""The run engine: the one place a run is started, resumed, stopped and ended.

A *run* is a training (:meth:`RunEngine.train`, :meth:`RunEngine.resume`) or a characterisation sweep
(:meth:`RunEngine.sweep`), recorded in a session file. The engine owns, for both alike:

* **starting and resuming**: it makes the reservoir (or connects the bench), the trainer or the sweep,
  and the session's writer (:mod:`labpgt.runs` holds what a run needs from its session);
* **stopping between two measurements**: :meth:`RunEngine.request_stop` (a signal handler, a button, an
  error elsewhere) or a condition given to :meth:`RunEngine.stop_when` (polled) is acted on before the
  next query — between any two queries of a bench, which measures each apart — by raising
  :class:`StopRequested` inside the run, which the engine catches;
* **the end, however the run ends** (finished, stopped, an error): RF off at every generator first,
  then the session flushed and closed, then the reservoir released;
* **pauses**: the suspenders a bench config declares (:mod:`labpgt.bench.suspenders`) are watched between
  measurements (the ring's temperature, the free-running ring's oscillation margin from a check query every
  few steps, every instrument answering, the free space on the session's disk); when one is out of range the
  run pauses — RF off (or held), the step it was in dropped unrecorded — and goes on by itself once every
  condition has held its range for its time: the instruments' whole state sent again, the trainer rewound to
  its last complete step, the step measured again. Each pause is recorded in the session;
* **events** to its subscribers (:class:`Connected`, :class:`Measured`, :class:`StepEnded`,
  :class:`PointEnded`, :class:`Notice`, :class:`Suspended`, :class:`Resumed`): the command line draws its
  progress bar from them, the GUI its rows, live spectrum, waterfall and log. Subscribers only watch; they
  change nothing in the run.

Nothing else wraps a reservoir to stop it, and nothing else turns RF off at the end of a run. Process
signals are turned into stop requests in one place, :mod:`labpgt.signals`. A stopped run returns a
:class:`RunOutcome` whose ``stopped`` says why; its session holds every complete step (or point) and
continues with ``labpgt train --resume``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labpgt.errors import UserError
from labpgt.reservoir import Measurement, measures_each_query_apart

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- stopping
@dataclass(frozen=True)
class StopReason:
    """Why a run was stopped: ``why`` in words ("SIGTERM", "stopped from the window"), the ``signal`` number
    when a signal asked, and the process's ``exit_status`` for it (128 + the signal, the shell's convention)."""

    why: str
    signal: int | None = None

    @property
    def exit_status(self) -> int:
        return 128 + self.signal if self.signal is not None else 1


class StopRequested(Exception):
    """Raised inside a run before its next measurement once a stop was requested; the engine catches it."""

    def __init__(self, reason: StopReason):
        super().__init__(reason.why)
        self.reason = reason


class Suspend(Exception):
    """Raised inside a run when a suspender's condition is out of range (``rows``: the queries just measured that
    will not be recorded); the engine pauses the run."""

    def __init__(self, suspender, value: float, rows: int = 0):
        super().__init__(suspender.describe(value if suspender.condition != "instrument" else None))
        self.suspender, self.value, self.rows = suspender, value, rows


POLL_S = 0.5  # how often a paused run looks at its conditions again


# --------------------------------------------------------------------------- events
@dataclass(frozen=True)
class Connected:
    """The reservoir (or bench) of a run is made and answers; ``total`` steps or points, ``done`` already, with
    ``queries`` measured for them (a resumed run's)."""

    reservoir: Any
    label: str
    total: int
    done: int = 0
    queries: int = 0


@dataclass(frozen=True)
class Measured:
    """One measurement (one query of a bench, one call of a computed reservoir) is in."""

    measurement: Measurement


@dataclass(frozen=True)
class StepEnded:
    """Step ``step`` (0-based) of ``steps`` is recorded and flushed; ``values`` as recorded."""

    step: int
    steps: int
    values: dict


@dataclass(frozen=True)
class Suspended:
    """The run paused at step ``step``: ``why`` in words (the condition out of range, and its value)."""

    step: int
    why: str


@dataclass(frozen=True)
class Resumed:
    """The run goes on after a pause of ``seconds``; ``discarded`` queries of the interrupted step are measured
    again."""

    step: int
    seconds: float
    discarded: int


@dataclass(frozen=True)
class Notice:
    """Something a person should know before or while a run measures (e.g. the disk may not hold it all)."""

    text: str


@dataclass(frozen=True)
class PointEnded:
    """A sweep's point is recorded and flushed."""

    point: Any
    points: int


@dataclass
class RunOutcome:
    """How a run ended: its ``result`` (None when it was stopped), why it was ``stopped`` (None when it ran to
    its end) and its ``session`` file (None when it kept no record)."""

    result: Any
    stopped: StopReason | None
    session: Path | None

    def result_or_raise(self):
        if self.stopped is not None:
            raise StopRequested(self.stopped)
        return self.result


# --------------------------------------------------------------------------- the engine
class RunEngine:
    """Runs one training or sweep at a time, stops it on request between two measurements, and always ends it
    safely (see the module's docstring). Make one per run, or reuse one after :meth:`reset`."""

    def __init__(self) -> None:
        self._subscribers: list[Callable[[object], None]] = []
        self._conditions: list[tuple[Callable[[], bool], StopReason]] = []
        self._stop: StopReason | None = None

    # ---- who watches, and who may stop
    def subscribe(self, callback: Callable[[object], None]) -> RunEngine:
        """Give every event of the runs to ``callback``."""
        self._subscribers.append(callback)
        return self

    def emit(self, event) -> None:
        for callback in self._subscribers:
            callback(event)

    def request_stop(self, reason: StopReason) -> None:
        """Ask the run to stop before its next measurement (safe from a signal handler or another thread; the
        first reason is kept)."""
        if self._stop is None:
            self._stop = reason

    def stop_when(self, condition: Callable[[], bool], reason: StopReason) -> None:
        """Stop for ``reason`` once ``condition()`` is true (asked before every measurement)."""
        self._conditions.append((condition, reason))

    @property
    def stop_reason(self) -> StopReason | None:
        return self._stop

    def reset(self) -> None:
        """Forget a stop request, for the next run."""
        self._stop = None

    def check(self) -> None:
        """Raise :class:`StopRequested` when a stop was requested: called before every measurement."""
        if self._stop is None:
            for condition, reason in self._conditions:
                if condition():
                    self.request_stop(reason)
                    break
        if self._stop is not None:
            raise StopRequested(self._stop)

    # ---- trainings
    def train(self, config, session=None, *, reservoir=None) -> RunOutcome:
        """Train ``config`` (a :class:`~labpgt.trainer.TrainConfig`), recording it in a new session at
        ``session`` (None: keep no record); ``reservoir``: one already made (default: the config's)."""
        from labpgt import runs
        from labpgt.reservoirs import make_reservoir
        from labpgt.trainer import Trainer

        session = None if session is None else Path(session)
        if session is not None and session.exists():
            raise UserError(
                f"{session} exists; a session is a record and is never overwritten "
                f"(continue it with labpgt train --resume {session})"
            )
        reservoir = reservoir if reservoir is not None else make_reservoir(config)
        with self._operating(reservoir) as metered:
            trainer = Trainer(config, metered)
            prior = runs.prior_pairs(trainer)
            if prior is not None:
                trainer.add_prior(*prior[:2])
            self.emit(Connected(reservoir, runs.describe(trainer.config), trainer.config.steps))
            if self._stop is not None:  # asked while connecting: nothing measured, no file made
                return RunOutcome(None, self._stop, None)
            if session is not None:
                self._check_room(session, trainer, reservoir)
            writer = None if session is None else runs.new_training_session(session, trainer, reservoir, prior)
            return self._run_training(trainer, writer, session)

    def resume(self, session, *, reservoir=None) -> RunOutcome:
        """Continue the interrupted training recorded at ``session`` after its last complete step (the
        queries of a half-done step are dropped from the file and measured again)."""
        from labpgt import runs
        from labpgt.reservoirs import make_reservoir
        from labpgt.trainer import Trainer

        session = Path(session)
        config = runs.resumable_config(session)
        observed = runs.recorded_training_queries(session) if runs.learns_from_queries(config) else None
        recalled = runs.recorded_perturbations(session) if runs.recalls_its_steps(config) else None
        prior = runs.recorded_prior(session)
        writer, checkpoint = runs.reopen_for_resume(session)
        try:
            reservoir = reservoir if reservoir is not None else make_reservoir(config)
        except BaseException:
            writer.close()
            raise
        with self._operating(reservoir) as metered:
            trainer = (
                Trainer(config, metered, prior=prior)
                if checkpoint is None
                else Trainer.restore(config, metered, checkpoint, observed=observed, prior=prior, recalled=recalled)
            )
            done = sum(trainer.queries.values())
            self.emit(Connected(reservoir, f"resume {session.name}", trainer.config.steps, trainer.step, done))
            self._check_room(session, trainer, reservoir)
            return self._run_training(trainer, writer, session, resumed_from=checkpoint)

    def _check_room(self, session: Path, trainer, reservoir) -> None:
        """Refuse a run whose disk cannot hold one step; warn when it cannot hold the rest of the run."""
        from labpgt import runs
        from labpgt.session.storage import room_for

        step, run = runs.expected_bytes(trainer, reservoir)
        left = 1.0 - trainer.step / max(1, trainer.config.steps)
        warning = room_for(session, step, int(run * left))
        if warning:
            self.emit(Notice(warning))

    def _run_training(self, trainer, writer, session, resumed_from=None) -> RunOutcome:
        """``resumed_from``: the checkpoint a resumed trainer was restored from (a pause before this process's first
        complete step rewinds to it)."""
        from labpgt.runs import RunResult

        announcing = _Announcing(writer, self)
        announcing.last_checkpoint = resumed_from
        trainer.recorder = announcing
        watch = _Watch.of(trainer, session, announcing)
        trainer.reservoir.watch = watch
        announcing.watch = watch
        try:
            while True:
                try:
                    if watch is not None and not trainer.started:
                        watch.before_run()  # nothing is measured while a condition is out of range
                    trainer.run(progress=announcing.step_done)
                    break
                except Suspend as pause:
                    assert watch is not None, "only a run's suspenders pause it"
                    self._pause(pause, trainer, announcing, watch)
        except StopRequested as stop:
            return RunOutcome(None, stop.reason, session)
        finally:
            rf_off(trainer.reservoir)  # the hardware first,
            announcing.close()  # then the record
        return RunOutcome(RunResult.of(trainer, session), None, session)

    def _pause(self, pause: Suspend, trainer, announcing: _Announcing, watch: _Watch) -> None:
        """Pause the run (see the module) until every suspender's condition has held its range for its time,
        then rewind the trainer to its last complete step; a stop request ends the pause and the run."""
        bench, step, started = trainer.reservoir, trainer.step, time.time()
        self.emit(Suspended(step, str(pause)))
        if pause.suspender.rf == "off":
            rf_off(bench)
        discarded = pause.rows + (
            announcing.writer.discard_pending() if hasattr(announcing.writer, "discard_pending") else 0
        )
        give_up = None if pause.suspender.max_s is None else time.monotonic() + pause.suspender.max_s
        held_since = None
        while True:
            self.check()
            if watch.all_in_range(step):
                held_since = held_since if held_since is not None else time.monotonic()
                if time.monotonic() - held_since >= watch.hold_s:
                    break
            else:
                held_since = None
                if give_up is not None and time.monotonic() > give_up:
                    raise UserError(
                        f"the run paused at step {step} because {pause} and it did not come back within "
                        f"{pause.suspender.max_s:g} s; RF is off and the session holds every complete "
                        f"step: continue with labpgt train --resume"
                    )
            time.sleep(POLL_S)
        bench.reapply()
        seconds = time.time() - started
        announcing.record_suspension(
            {
                "step": step,
                "started": started,
                "ended": started + seconds,
                "condition": pause.suspender.condition,
                "value": pause.value,
                "why": str(pause),
                "discarded_queries": discarded,
            }
        )
        trainer.rewind(announcing.last_checkpoint)
        self.emit(Resumed(trainer.step, seconds, discarded))

    # ---- sweeps
    def sweep(self, spec, bench_config, session) -> RunOutcome:
        """Measure the sweep ``spec`` (:class:`labpgt.sweeps.SweepSpec`) on the bench of ``bench_config``,
        recorded in a new session of kind ``sweep``; every value passes the bench's safety checks before the
        file is made. The result (:class:`labpgt.sweeps.SweepResult`) holds the points measured, also when
        the sweep was stopped (its ``completed`` says so)."""
        from labpgt.bench import Bench
        from labpgt.runs import new_sweep_session
        from labpgt.sweeps import SweepResult, check_sweep_safe, sweep_points

        session = Path(session)
        if session.exists():
            raise UserError(f"{session} exists: a session is never overwritten; choose another --out")
        bench = Bench(bench_config)
        with self._operating(bench):
            self.emit(Connected(bench, f"sweep of {spec.label}", spec.points))
            check_sweep_safe(spec, bench)
            result = SweepResult(spec, frequencies=bench.frequencies)
            stopped = None
            writer = new_sweep_session(session, spec, bench)
            try:
                for point, measurement in sweep_points(spec, bench, writer, before_query=self.check):
                    result.points.append(point)
                    self.emit(Measured(measurement))
                    self.emit(PointEnded(point, spec.points))
            except StopRequested as stop:
                stopped = stop.reason
            finally:
                rf_off(bench)  # the hardware first,
                writer.close()  # then the record
            return RunOutcome(result, stopped, session)

    # ---- the reservoir, measured under the engine's eye
    @contextlib.contextmanager
    def _operating(self, reservoir):
        """``reservoir`` measured through the engine (stop checks, events); on leaving, however: RF off first,
        then the reservoir released (the caller's ``with`` of the session closes inside this one)."""
        try:
            yield _Metered(reservoir, self)
        finally:
            try:
                rf_off(reservoir)
            finally:
                reservoir.close()


def rf_off(reservoir) -> None:
    """The hardware's safe state, if ``reservoir`` has instruments: every generator's RF off and every coil current
    ramped to its safe value (a bench's ``safe_state_best_effort``), in bounded time and never raising over the
    run's own outcome (what it could not confirm, the reservoir's close says)."""
    if hasattr(reservoir, "safe_state_best_effort"):
        reservoir.safe_state_best_effort()
    elif hasattr(reservoir, "rf_off_best_effort"):
        reservoir.rf_off_best_effort()


class _Metered:
    """A reservoir measured through the engine: a stop is checked before every query it measures apart (or
    before every call of one that measures a call at once), every measurement is announced, and the run's
    suspenders (``watch``) look at it. Everything else is the reservoir's own."""

    def __init__(self, inner, engine: RunEngine):
        self._inner, self._engine = inner, engine
        self._apart = measures_each_query_apart(inner)
        self.watch: _Watch | None = None

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def measure(self, U) -> Measurement:
        engine = self._engine
        if not self._apart:
            engine.check()
            measurement = self._measure(U)
            engine.emit(Measured(measurement))
            return measurement
        U = np.atleast_2d(np.asarray(U, dtype=np.float64))
        parts = []
        for row in range(U.shape[0]):
            engine.check()
            parts.append(self._measure(U[row : row + 1]))
            engine.emit(Measured(parts[-1]))
        return Measurement.concatenate(parts)

    def _measure(self, U) -> Measurement:
        if self.watch is None:
            return self._inner.measure(U)
        return self.watch.measured(lambda: self._inner.measure(U))


class _Watch:
    """The suspenders of a run's bench (:mod:`labpgt.bench.suspenders`), looked at between measurements."""

    def __init__(self, suspenders, bench, session, announcing):
        self.suspenders, self.bench, self.session, self.announcing = suspenders, bench, session, announcing
        self.hold_s = max((s.hold_s for s in suspenders), default=0.0)

    @classmethod
    def of(cls, trainer, session, announcing) -> _Watch | None:
        suspenders = getattr(getattr(trainer.reservoir, "config", None), "suspenders", ())
        if not suspenders:
            return None
        if trainer.config.checkpoint_every != 1:
            raise UserError(
                "a bench with suspenders goes back to the last complete step after a pause: checkpoint_every must be 1"
            )
        return cls(suspenders, trainer.reservoir, session, announcing)

    def _of(self, condition: str):
        return next((s for s in self.suspenders if s.condition == condition), None)

    def measured(self, measure) -> Measurement:
        """``measure()`` under the suspenders: a query that ran out of its retries pauses the run (with an
        instrument suspender), and the temperature it read and the free space are looked at after it."""
        from labpgt.bench import BenchFault

        try:
            measurement = measure()
        except BenchFault:
            instrument = self._of("instrument")
            if instrument is None:
                raise
            raise Suspend(instrument, 0.0) from None
        temperature = self._of("temperature")
        if temperature is not None and measurement.temperature_c is not None:
            value = (
                float(np.nanmax(measurement.temperature_c))
                if np.all(np.isfinite(measurement.temperature_c))
                else math.nan
            )
            if math.isfinite(value) and not temperature.in_range(value):
                raise Suspend(temperature, value, len(measurement))
        space = self._of("free_space")
        if space is not None:
            value = self._read(space, step=None)
            if not space.in_range(value):
                raise Suspend(space, value, len(measurement))
        return measurement

    def before_run(self) -> None:
        """Before the first query: every condition (the oscillation's check query included)."""
        for suspender in self.suspenders:
            if suspender.condition != "instrument":
                value = self._read(suspender, 0)
                if not suspender.in_range(value):
                    raise Suspend(suspender, value)

    def before_writing(self, step: int) -> None:
        """Once a step is measured, before it is written: the oscillation's check query, every ``every_steps`` steps.
        Out of range, the step is not written but measured again: the ring may have stopped oscillating while it
        was measured (a step written first would have been kept as training). What the check cannot see: a stop
        that began and ended within the measurements since the last check (a step's time at ``every_steps`` 1)."""
        oscillation = self._of("oscillation")
        if oscillation is not None and (step + 1) % oscillation.every_steps == 0:
            value = self._read(oscillation, step)
            if not oscillation.in_range(value):
                raise Suspend(oscillation, value)

    def all_in_range(self, step: int) -> bool:
        """Whether every suspender's condition is in its range now (a paused run's look); an instrument that does
        not answer (asked first, every connection afresh) leaves every condition unknown: not in range."""
        if not self.bench.answering():
            return False
        return all(s.in_range(self._read(s, step)) for s in self.suspenders)

    def _read(self, suspender, step) -> float:
        from labpgt.bench import BenchFault
        from labpgt.bench.suspenders import read_condition

        try:
            value, check = read_condition(suspender, self.bench, self.session)
        except BenchFault:
            return math.nan  # no reading: not in range
        if check is not None:
            assert check.spectra is not None, "a check query is the bench's: it measures a spectrum"
            self.announcing.record_check(
                {"step": step, "time": time.time(), "condition": suspender.condition, "value": value}, check.spectra[0]
            )
        return value


class _Announcing:
    """The session writer as the trainer's recorder (or nothing, for a run without a record), announcing each
    step once the writer has all of it (its row and, when it has one, its checkpoint)."""

    def __init__(self, writer, engine: RunEngine):
        from labpgt.recording import NullRecorder

        self.writer = writer if writer is not None else NullRecorder()
        self.engine = engine
        self._values: dict = {}
        self.last_checkpoint = None  # what a pause rewinds the trainer to
        self.watch: _Watch | None = None

    def record_queries(self, labels, U, measurement) -> None:
        self.writer.record_queries(labels, U, measurement)

    def record_step(self, step, values) -> None:
        if self.watch is not None:
            self.watch.before_writing(step)
        self.writer.record_step(step, values)
        self._values = values

    def step_done(self, done: int, steps: int) -> None:
        """The trainer's ``progress``: called once a step is reported whole."""
        self.engine.emit(StepEnded(done - 1, steps, self._values))

    def checkpoint(self, checkpoint) -> None:
        self.writer.checkpoint(checkpoint)
        self.last_checkpoint = checkpoint

    def record_suspension(self, record: dict) -> None:
        if hasattr(self.writer, "record_suspension"):
            self.writer.record_suspension(record)

    def record_check(self, record: dict, spectrum) -> None:
        if hasattr(self.writer, "record_check"):
            self.writer.record_check(record, spectrum)

    def close(self) -> None:
        if hasattr(self.writer, "close"):
            self.writer.close()
