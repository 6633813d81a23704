"""``PGTTraining``: one training run as a PyMeasure Procedure, recorded in a labpgt session file.

The run is :func:`labpgt.runs.start_training`, the same routine as ``labpgt train``; the HDF5
session it writes is *the* record of the run. The rows this procedure emits on the ``results`` topic
(one per completed step, exactly one for every method: Step, Loss, Train accuracy, Held-out
accuracy, Queries) only feed PyMeasure's plots; the CSV PyMeasure writes from them is a derived
summary, ``<session>.csv`` beside the session.

Stopping: the reservoir is wrapped in :class:`StoppableReservoir`, which measures one query at a
time and raises :class:`StopRequested` as soon as ``should_stop()`` is true — between queries,
not only between steps. The trainer unwinds, the session writer closes (the rows of the
unfinished step stay in the file but are ignored on resume), and the session is resumable with
``labpgt train --resume FILE.h5`` (:func:`labpgt.runs.resume_training`).

Safety: every generator's RF output is turned off in a ``finally`` of :meth:`execute` and again
in :meth:`shutdown` (finish, abort or error).

Live spectra: every measured trace is pushed into :attr:`PGTTraining.feed`, a thread-safe
:class:`SpectrumFeed` the window polls from the GUI thread (see :mod:`labpgt.procedures.window`).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from pathlib import Path

import numpy as np
from pymeasure.experiment import (BooleanParameter, FloatParameter, IntegerParameter, ListParameter, Parameter,
                                  Procedure)

from labpgt.architectures import ARCHITECTURES
from labpgt.methods import METHODS
from labpgt.reservoir import Measurement
from labpgt.runs import DEFAULT_RUNS_DIR, default_session_path

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

__all__ = ["DEFAULT_RUNS_DIR", "PGTTraining", "SpectrumFeed", "StopRequested", "StoppableReservoir",
           "default_session_path", "summary_csv_path"]


class StopRequested(Exception):
    """Raised between two queries when the procedure was asked to stop."""


class SpectrumFeed:
    """The traces measured so far, for a GUI thread to poll (thread-safe, bounded memory).

    ``latest()`` is the last trace; ``rows_since(n)`` the traces after the ``n``-th, for a
    waterfall; at most ``max_rows`` traces are kept (the oldest are dropped; indices stay global).
    """

    def __init__(self, max_rows: int = 3000):
        self._lock = threading.Lock()
        self._rows: deque = deque(maxlen=max_rows)
        self.frequencies: np.ndarray | None = None
        self.count = 0          # traces pushed in total (the global index of the next one)

    def set_frequencies(self, frequencies) -> None:
        with self._lock:
            self.frequencies = None if frequencies is None else np.asarray(frequencies, dtype=np.float64)

    def push(self, trace: np.ndarray) -> None:
        with self._lock:
            self._rows.append(np.asarray(trace, dtype=np.float32))
            self.count += 1

    def latest(self):
        """``(index, trace)`` of the last trace, or ``(-1, None)``."""
        with self._lock:
            return (self.count - 1, self._rows[-1]) if self._rows else (-1, None)

    def rows_since(self, start: int):
        """``(first_index, array (k, P))`` of the kept traces with global index >= start."""
        with self._lock:
            first = self.count - len(self._rows)
            begin = max(start, first)
            rows = list(self._rows)[begin - first:]
        return begin, (np.stack(rows) if rows else None)


class StoppableReservoir:
    """A reservoir measured one query at a time, checking ``should_stop`` before each query.

    Everything but :meth:`measure` is delegated to the wrapped reservoir (widths, setting names,
    ``config``, ``frequencies``, RNG state, ``vjp`` …), so the trainer and the session writer see
    the same reservoir. Each trace measured is pushed into ``feed`` (if given).
    """

    def __init__(self, inner, should_stop, feed: SpectrumFeed | None = None):
        self._inner = inner
        self._should_stop = should_stop
        self._feed = feed
        if feed is not None:
            feed.set_frequencies(getattr(inner, "frequencies", None))

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def measure(self, U) -> Measurement:
        U = np.atleast_2d(np.asarray(U, dtype=np.float64))
        parts = []
        for row in range(U.shape[0]):
            if self._should_stop():
                raise StopRequested(f"stopped before query {row + 1} of {U.shape[0]}")
            m = self._inner.measure(U[row:row + 1])
            if self._feed is not None and m.spectra is not None:
                self._feed.push(m.spectra[-1])
            parts.append(m)
        return concatenate_measurements(parts)

    def close(self) -> None:
        self._inner.close()


def concatenate_measurements(parts: list[Measurement]) -> Measurement:
    first = parts[0]

    def cat(name):
        values = [getattr(p, name) for p in parts]
        return None if any(v is None for v in values) else np.concatenate(values)

    return Measurement(features=np.concatenate([p.features for p in parts]), spectra=cat("spectra"),
                       frequencies=first.frequencies, settings=cat("settings"), started=cat("started"),
                       attempts=cat("attempts"), extra=dict(first.extra))


class EmittingRecorder:
    """The session writer as the trainer's recorder, plus one ``results`` row per step after it is flushed."""

    def __init__(self, writer, emit, steps: int, holdout: str = "test"):
        self.writer = writer
        self.emit = emit
        self.steps = max(int(steps), 1)
        self.holdout = holdout

    def record_queries(self, labels, U, measurement) -> None:
        self.writer.record_queries(labels, U, measurement)

    def record_step(self, step, values) -> None:
        self.writer.record_step(step, values)

        def get(name):
            value = values.get(name)
            return float("nan") if value is None else float(value)

        self.emit("results", {"Step": int(step) + 1, "Loss": get("loss"), "Train accuracy": get("train_accuracy"),
                              "Held-out accuracy": get(f"{self.holdout}_accuracy"),
                              "Queries": int(values.get("training_queries", 0))})
        self.emit("progress", min(100.0, 100.0 * (int(step) + 1) / self.steps))

    def checkpoint(self, checkpoint) -> None:
        self.writer.checkpoint(checkpoint)


def summary_csv_path(session_path) -> Path:
    """The derived CSV summary PyMeasure writes beside a session: ``<session>.csv``."""
    session_path = Path(session_path)
    return session_path.with_name(session_path.name + ".csv") if session_path.suffix != ".h5" \
        else session_path.with_suffix(".csv")


class BenchSafety:
    """RF off at the end of a procedure however it ends (finish, abort, error), then release the bench.

    A procedure keeps its bench in ``self.bench``; ``_rf_off`` is also called from its ``finally``.
    """

    bench = None

    def _rf_off(self) -> None:
        bench = self.bench
        if bench is not None and hasattr(bench, "rf_off"):
            try:
                bench.rf_off()
            except Exception:  # noqa: BLE001 - already off / connection gone: log, never mask the cause
                log.exception("could not turn the generators' RF off")

    def _close_record_and_rf_off(self, writer) -> None:
        """The end of ``execute`` however it ends: the session closed (flushed), then RF off."""
        try:
            if writer is not None:
                writer.close()
        finally:
            self._rf_off()

    def shutdown(self):
        self._rf_off()
        if self.bench is not None:
            try:
                self.bench.close()          # RF off again, then release the connections
            except Exception:  # noqa: BLE001
                log.exception("closing the bench failed")


def _config_default(name: str):
    """A TrainConfig field's default: the window starts where ``labpgt train`` does."""
    from labpgt.trainer import TrainConfig

    return TrainConfig.__dataclass_fields__[name].default


class PGTTraining(BenchSafety, Procedure):
    """Train a network through the reservoir (perturbative gradient training), recording a session file."""

    task = ListParameter("Task", choices=["digits", "iris", "wine", "waveforms"], default="digits")
    model = ListParameter("Model", choices=list(ARCHITECTURES), default="dense")
    method = ListParameter("Method", choices=list(METHODS), default="node")
    reservoir = ListParameter("Reservoir", choices=["ring-sim", "digital"], default="ring-sim")
    bench_config = Parameter("Bench config (.toml, empty = embedded simulated bench)", default="")
    steps = IntegerParameter("Steps (0 = method default)", minimum=0, maximum=1_000_000, default=0)
    batch_size = IntegerParameter("Batch size (0 = method default)", minimum=0, maximum=10_000, default=0)
    lr = FloatParameter("Learning rate (0 = method default)", minimum=0.0, maximum=10.0, default=0.0,
                        decimals=5)
    delta = FloatParameter("δ perturbation (0 = method default)", minimum=0.0, maximum=10.0, default=0.0,
                           decimals=4)
    r = IntegerParameter("r (PGT entries in ±r)", minimum=1, maximum=100, default=_config_default("r"))
    p = FloatParameter("p dropout (−1 = method default)", minimum=-1.0, maximum=0.99, default=-1.0, decimals=3)
    directions = IntegerParameter("Directions (0 = method default)", minimum=0, maximum=1024, default=0)
    width = IntegerParameter("Transformer width", minimum=1, maximum=4096, default=_config_default("width"))
    heads = IntegerParameter("Transformer heads", minimum=1, maximum=64, default=_config_default("heads"))
    blocks = IntegerParameter("Transformer blocks", minimum=1, maximum=64, default=_config_default("blocks"))
    ring_drift = BooleanParameter("Simulated ring drifts (embedded ring-sim; off = temperature and field held)",
                                  default=_config_default("ring_drift"))
    follow_ring = IntegerParameter("Follow the ring's drift every N steps (0 = off)", minimum=0, maximum=1_000_000,
                                   default=_config_default("follow_ring"))
    holdout = ListParameter("Evaluate on", choices=["test", "validation"], default="test")
    eval_every = IntegerParameter("Evaluate every (steps; 0 = default)", minimum=0, maximum=1_000_000, default=0)
    eval_samples = IntegerParameter("Eval training samples", minimum=1, maximum=100_000,
                                    default=_config_default("eval_train_samples"))
    seed = IntegerParameter("Seed", minimum=0, maximum=2**31 - 1, default=_config_default("seed"))
    output = Parameter("Session file (.h5, empty = data/runs/<time>-<task>-<model>-<method>.h5)", default="")
    keep_feed = BooleanParameter("Live spectra", default=True)

    DATA_COLUMNS = ["Step", "Loss", "Train accuracy", "Held-out accuracy", "Queries"]

    def __init__(self, *args, **kwargs):
        self.feed = SpectrumFeed()
        self.bench = None          # the reservoir (a Bench for ring-sim): kept for inspection after the run
        self.session_path = None
        self.result = None
        self.steps_done = 0        # complete steps of the run in progress
        super().__init__(*args, **kwargs)

    # ---- building
    def train_config(self):
        from labpgt.reservoirs import reservoir_kind
        from labpgt.trainer import TrainConfig

        values = dict(task=self.task, model=self.model, method=self.method, reservoir=self.reservoir, r=int(self.r),
                      seed=int(self.seed), width=int(self.width), heads=int(self.heads), blocks=int(self.blocks),
                      holdout=self.holdout, eval_train_samples=int(self.eval_samples),
                      ring_drift=bool(self.ring_drift), follow_ring=int(self.follow_ring),
                      bench=(self.bench_config or None) if reservoir_kind(self.reservoir).takes_bench else None)
        for name in ("steps", "batch_size", "eval_every"):      # 0: the method's default, as the CLI leaves it
            if getattr(self, name) > 0:
                values[name] = int(getattr(self, name))
        if self.lr > 0:
            values["lr"] = float(self.lr)
        if self.delta > 0:
            values["delta"] = float(self.delta)
        if self.p >= 0:
            values["p"] = float(self.p)
        if self.directions > 0:
            values["directions"] = int(self.directions)
        return TrainConfig(**values).resolved()

    def startup(self):
        config = self.train_config()
        self.config = config
        path = Path(self.output) if self.output else default_session_path(config.task, config.model, config.method)
        self.session_path = path
        log.info("PGTTraining: %s on %s (%s), session %s", config.method, config.task, config.reservoir, path)

    # ---- running
    def execute(self):
        from labpgt.reservoirs import make_reservoir
        from labpgt.runs import start_training

        config = self.config
        try:
            self.bench = make_reservoir(config)
            self.result = start_training(
                config, self.session_path, reservoir=self.bench,
                progress=lambda step, steps: setattr(self, "steps_done", step),
                wrap_reservoir=lambda r: StoppableReservoir(r, self.should_stop, self.feed if self.keep_feed else None),
                wrap_recorder=lambda w: EmittingRecorder(w, self.emit, config.steps, config.holdout))
            log.info("PGTTraining finished: %s accuracy %.4f after %d training queries; session %s",
                     self.result.holdout, self.result.final_accuracy, self.result.training_queries, self.session_path)
        except StopRequested as exc:
            log.warning("PGTTraining stopped (%s); resume with `labpgt train --resume %s`", exc, self.session_path)
        finally:
            self._rf_off()
