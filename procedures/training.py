"""``PGTTraining``: one training run as a PyMeasure Procedure, its inputs derived from the settings' declarations.

The run is the run engine's (:meth:`labpgt.engine.RunEngine.train`), as for ``labpgt train``; the HDF5
session it writes is *the* record of the run. This procedure only subscribes to the engine: each
recorded step becomes a row on the ``results`` topic (Step, Loss, Train accuracy, Held-out accuracy,
Queries) that feeds PyMeasure's plots (the CSV PyMeasure writes from them is a derived summary,
``<session>.csv`` beside the session), and every measured trace goes into :attr:`PGTTraining.feed`, a
thread-safe :class:`SpectrumFeed` the window polls from the GUI thread (see :mod:`labpgt.procedures.window`).

Inputs: one PyMeasure Parameter per declared setting (:mod:`labpgt.settings`): the run's own, the network's,
the evaluation policy's, and those of every training method and reservoir kind, each shown only while its
method (or kind, or architecture) is the one chosen (PyMeasure's ``group_by``). A derived setting (a
forward-only method's steps, the evaluation cadence) has a tick box "automatic" beside its value.

Stopping: PyMeasure's abort is a stop condition of the engine, which stops the run between two queries,
turns RF off, flushes the session (resumable with ``labpgt train --resume FILE.h5``) and releases the bench.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymeasure.experiment import BooleanParameter, FloatParameter, IntegerParameter, ListParameter, Parameter, Procedure

from labpgt.architectures import ModelSpec
from labpgt.engine import Connected, Measured, Notice, Resumed, RunEngine, StepEnded, StopReason, Suspended
from labpgt.errors import UserError
from labpgt.evaluation import Evaluation
from labpgt.methods import METHODS
from labpgt.reservoirs import RESERVOIRS
from labpgt.runs import DEFAULT_RUNS_DIR, default_session_path
from labpgt.settings import Declared, described_default, fields_of
from labpgt.trainer import DEFAULT_METHOD, TrainConfig

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

__all__ = ["DEFAULT_RUNS_DIR", "PGTTraining", "SpectrumFeed", "default_session_path", "summary_csv_path"]

STOPPED_FROM_THE_WINDOW = StopReason("stopped from the window")


class SpectrumFeed:
    """The traces measured so far, for a GUI thread to poll (thread-safe, bounded memory).

    ``latest()`` is the last trace; ``rows_since(n)`` the traces after the ``n``-th, for a
    waterfall; at most ``max_rows`` traces are kept (the oldest are dropped; indices stay global).
    """

    def __init__(self, max_rows: int = 3000):
        self._lock = threading.Lock()
        self._rows: deque = deque(maxlen=max_rows)
        self.frequencies: np.ndarray | None = None
        self.count = 0  # traces pushed in total (the global index of the next one)

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
            rows = list(self._rows)[begin - first :]
        return begin, (np.stack(rows) if rows else None)


def summary_csv_path(session_path) -> Path:
    """The derived CSV summary PyMeasure writes beside a session: ``<session>.csv``."""
    session_path = Path(session_path)
    return (
        session_path.with_name(session_path.name + ".csv")
        if session_path.suffix != ".h5"
        else session_path.with_suffix(".csv")
    )


# --------------------------------------------------------------------------- inputs from the declarations
@dataclass(frozen=True)
class Input:
    """One input of the window: the setting it gives (``declared``; None for the choice of a method or a
    reservoir kind, and for a tick box), the kind it belongs to (``owner``: a method or a reservoir kind, None for
    everyone's) and the tick box that leaves it derived (``automatic``)."""

    declared: Declared | None
    owner: str | None = None
    automatic: str | None = None


def _label(text: str) -> str:
    return text.replace(": ", " — ")  # PyMeasure reserves ": " in a parameter's name


def _parameter(d: Declared, group_by: dict) -> Parameter:
    """The PyMeasure Parameter of a declared setting, with its default, bounds, choices and help."""
    spec = d.spec
    label = _label(d.label + (f" ({spec.unit})" if spec.unit else ""))
    default = spec.typical if d.default is None else d.default
    common = dict(group_by=group_by or None, description=d.help)
    if spec.choices is not None:
        return ListParameter(label, choices=list(spec.choices), default=default, **common)
    if d.kind is bool:
        return BooleanParameter(label, default=bool(default), **common)
    low = spec.minimum if spec.minimum is not None else spec.above
    high = spec.maximum if spec.maximum is not None else spec.below
    if d.kind is int:
        return IntegerParameter(
            label,
            minimum=int(low) if low is not None else -(10**9),
            maximum=int(high) if high is not None else 10**9,
            default=default,
            **common,
        )
    if d.kind is float:
        return FloatParameter(
            label,
            minimum=low if low is not None else -1e9,
            maximum=high if high is not None else 1e9,
            default=default,
            decimals=6,
            **common,
        )
    return Parameter(_label(f"{d.label}, empty = {described_default(d)}"), default=default or "", **common)


def _declare_inputs(procedure: type) -> dict[str, Input]:
    """Every setting as a Parameter of ``procedure`` (set on the class), in the window's order."""
    inputs: dict[str, Input] = {}

    def add(name: str, d: Declared, group_by: dict, owner: str | None = None) -> None:
        if not d.spec.gui:
            return
        automatic = None
        if d.default is None and d.kind in (int, float):  # derived unless its value is asked for
            automatic = f"{name}_automatic"
            setattr(
                procedure,
                automatic,
                BooleanParameter(
                    f"{d.label} automatic",
                    default=True,
                    group_by=group_by or None,
                    description=f"automatic: {d.spec.derived}",
                ),
            )
            inputs[automatic] = Input(None, owner)
            group_by = {**group_by, automatic: False}
        setattr(procedure, name, _parameter(d, group_by))
        inputs[name] = Input(d, owner, automatic)

    run = {d.key: d for d in fields_of(TrainConfig)}
    add("task", run["task"], {})
    for d in fields_of(ModelSpec):
        add(d.key, d, {"model": d.spec.only} if d.spec.only else {})
    procedure.method = ListParameter("Method", choices=list(METHODS), default=DEFAULT_METHOD)
    inputs["method"] = Input(None)
    for method in METHODS.values():
        for d in fields_of(method.Settings):
            prefix = method.name.replace("-", "_") + "_"
            add(d.key if d.key.startswith(prefix) else prefix + d.key, d, {"method": method.name}, method.name)
    kinds = [name for name in RESERVOIRS if not name.endswith(":")]  # a twin file is given by name
    procedure.reservoir = ListParameter("Reservoir", choices=kinds, default="ring-sim")
    inputs["reservoir"] = Input(None)
    for name in kinds:
        for d in fields_of(RESERVOIRS[name].Settings):
            add(d.key, d, {"reservoir": name}, name)
    for d in fields_of(Evaluation):
        add(d.key, d, {})
    for key in ("seed", "follow_ring", "checkpoint_every"):
        add(key, run[key], {})
    return inputs


class PGTTraining(Procedure):
    """Train a network through the reservoir (perturbative gradient training), recording a session file."""

    output = Parameter("Session file (.h5, empty = data/runs/<time>-<task>-<model>-<method>.h5)", default="")
    keep_feed = BooleanParameter("Live spectra", default=True)

    DATA_COLUMNS = ["Step", "Loss", "Train accuracy", "Held-out accuracy", "Queries"]
    INPUTS: dict[str, Input] = {}

    def __init__(self, *args, **kwargs):
        self.feed = SpectrumFeed()
        self.connected = None  # the reservoir the run measured (a Bench for ring-sim), kept after the run
        self.session_path = None
        self.result = None
        self.stopped = None  # why the run was stopped, if it was
        self.steps_done = 0  # complete steps of the run in progress
        super().__init__(*args, **kwargs)

    @classmethod
    def input_names(cls) -> tuple[str, ...]:
        """The window's inputs, in order: the task, the network, the method and its settings, the reservoir and
        its, the evaluation, the run's own, then where the session goes."""
        return (*cls.INPUTS, "output", "keep_feed")

    @classmethod
    def input_name(cls, key: str, method: str, reservoir: str) -> str | None:
        """The input that gives the setting ``key`` of a run of ``method`` on ``reservoir`` (None: no input does)."""
        return next(
            (
                name
                for name, entry in cls.INPUTS.items()
                if entry.declared is not None and entry.declared.key == key and entry.owner in (None, method, reservoir)
            ),
            None,
        )

    # ---- building
    def assign(self, **settings) -> PGTTraining:
        """Set the inputs that give these flat settings (``method`` and ``reservoir`` first; a derived setting given
        a value is no longer automatic), as a script or a test fills the window."""
        for kind in ("method", "reservoir"):
            if kind in settings:
                setattr(self, kind, settings.pop(kind))
        for key, value in settings.items():
            name = self.input_name(key, self.method, self.reservoir)
            if name is None:
                setattr(self, key, value)  # the procedure's own (output, keep_feed), or refused below
                if key not in self._parameters:
                    raise UserError(f"the window has no input {key!r} for {self.method} on {self.reservoir}")
                continue
            setattr(self, name, value)
            if self.INPUTS[name].automatic:
                setattr(self, self.INPUTS[name].automatic, False)
        return self

    def settings(self) -> dict:
        """The flat settings these inputs give: the chosen kinds' only, a derived one left out while automatic."""
        values = {"method": self.method, "reservoir": self.reservoir}
        for name, entry in self.INPUTS.items():
            if entry.declared is None or entry.owner not in (None, self.method, self.reservoir):
                continue
            if entry.automatic and getattr(self, entry.automatic):
                continue
            value = getattr(self, name)
            if entry.declared.kind is str and entry.declared.default is None and not value:
                continue  # an empty path: the derived default (the embedded bench)
            values[entry.declared.key] = value
        return values

    def train_config(self):
        return TrainConfig.of(**self.settings()).resolved()

    def startup(self):
        config = self.train_config()
        self.config = config
        path = (
            Path(self.output)
            if self.output
            else default_session_path(config.task, config.model.architecture, config.method.name)
        )
        self.session_path = path
        log.info("PGTTraining: %s on %s (%s), session %s", config.method.name, config.task, config.reservoir.name, path)

    # ---- running: the engine's, watched
    def execute(self):
        engine = RunEngine().subscribe(self._watch)
        engine.stop_when(self.should_stop, STOPPED_FROM_THE_WINDOW)
        outcome = engine.train(self.config, self.session_path)
        self.result, self.stopped = outcome.result, outcome.stopped
        if outcome.stopped is not None:
            log.warning(
                "PGTTraining stopped (%s); RF is off; resume with `labpgt train --resume %s`",
                outcome.stopped.why,
                self.session_path,
            )
        else:
            log.info(
                "PGTTraining finished: %s accuracy %.4f after %d training queries; session %s",
                self.result.holdout,
                self.result.final_accuracy,
                self.result.training_queries,
                self.session_path,
            )

    def _watch(self, event) -> None:
        if isinstance(event, Connected):
            self.connected = event.reservoir
            self.feed.set_frequencies(getattr(event.reservoir, "frequencies", None))
        elif isinstance(event, Measured) and self.keep_feed and event.measurement.spectra is not None:
            for trace in event.measurement.spectra:
                self.feed.push(trace)
        elif isinstance(event, StepEnded):
            self._emit_step(event)
        elif isinstance(event, Notice):
            log.warning("PGTTraining: %s", event.text)
        elif isinstance(event, Suspended):
            log.warning("PGTTraining paused at step %d: %s", event.step + 1, event.why)
        elif isinstance(event, Resumed):
            log.info("PGTTraining goes on after %.0f s: step %d measured again", event.seconds, event.step + 1)

    def _emit_step(self, event: StepEnded) -> None:
        values, holdout = event.values, self.config.evaluation.holdout

        def get(name):
            value = values.get(name)
            return float("nan") if value is None else float(value)

        self.emit(
            "results",
            {
                "Step": event.step + 1,
                "Loss": get("loss"),
                "Train accuracy": get("train_accuracy"),
                "Held-out accuracy": get(f"{holdout}_accuracy"),
                "Queries": int(values.get("training_queries", 0)),
            },
        )
        self.emit("progress", min(100.0, 100.0 * (event.step + 1) / max(event.steps, 1)))
        self.steps_done = event.step + 1


PGTTraining.INPUTS = _declare_inputs(PGTTraining)
