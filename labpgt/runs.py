"""Runs recorded in session files: the one routine that starts, resumes and records a run.

The command line (``labpgt train``, ``labpgt sweep``), the benchmark and both PyMeasure procedures
come here; nothing else puts a :class:`~labpgt.trainer.Trainer` and a
:class:`~labpgt.session.SessionWriter` together, or a sweep and a :class:`~labpgt.session.SweepWriter`.

* :func:`start_training` — train a config, recording every query, step and checkpoint in a new
  session (or nothing, without one);
* :func:`resume_training` — continue an interrupted session after its last complete step;
* :func:`record_sweep` — a characterisation sweep (:mod:`labpgt.sweeps`) in a session of kind ``sweep``;
* :func:`default_session_path` — where a run is written when nobody says where.

Both take the same hooks, so a caller adds what it needs without a copy of the loop:
``reservoir`` (default: the one the config names; closed at the end either way), ``progress(step,
steps)``, ``wrap_reservoir(reservoir)`` (e.g. the GUI's stoppable, spectrum-feeding wrapper) and
``wrap_recorder(writer)`` (e.g. the GUI's result rows, emitted after the writer has the step).

Resume is bit-identical on the machine that recorded the session (:func:`machine_change` says when
it is not that machine, which the session then records in ``versions["resumed"]``): the checkpoint holds every RNG state (the batches', the method's and the
reservoir's — the digital reservoir's noise, the simulated ring's through
:meth:`labpgt.bench.Bench.get_rng_state`); a method that learns from the run's own queries (declared
``learns_from_queries``, e.g. the twin) is first shown the recorded queries of the complete steps
again, in their order, so it holds exactly what it held.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labpgt.errors import UserError
from labpgt.methods import method_class
from labpgt.recording import QueryLabels
from labpgt.reservoirs import make_reservoir
from labpgt.session import SessionReader, SessionWriter, params_sha256
from labpgt.trainer import TRAINING_ROLES, TrainConfig, Trainer

DEFAULT_RUNS_DIR = Path("data") / "runs"


def default_session_path(*labels: str, runs_dir=DEFAULT_RUNS_DIR, taken=()) -> Path:
    """``<runs_dir>/<YYYYmmdd-HHMMSS>-<label>-….h5``, made unique against existing files and ``taken``."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(runs_dir) / "-".join([stamp, *(str(label).replace(" ", "-") for label in labels)])
    path, n = base.with_suffix(".h5"), 1
    taken = {str(Path(t)) for t in taken}
    while path.exists() or str(path) in taken:
        n += 1
        path = Path(f"{base}-{n}.h5")
    return path


@dataclass
class RunResult:
    """The outcome of one training (plain data; ``history`` is one dict per evaluation).

    ``final_accuracy`` is measured on the held-out split named by ``holdout`` ("test" or "validation");
    ``final_test_accuracy`` on the test split (a validation run's final look at it; None if it had none);
    ``wall_seconds`` is the time spent training, over every resume.
    """

    config: dict
    holdout: str
    final_accuracy: float
    final_train_accuracy: float
    queries: dict
    training_queries: int
    eval_queries: int
    history: list = field(default_factory=list)
    wall_seconds: float = 0.0
    measure_seconds: float = 0.0
    session: str | None = None
    final_params_sha256: str = ""
    final_test_accuracy: float | None = None
    test_queries: int = 0

    @classmethod
    def of(cls, trainer: Trainer, session=None) -> "RunResult":
        return cls._from(dataclasses.asdict(trainer.config), trainer.history, trainer.queries,
                         trainer.run_seconds, trainer.measure_seconds, session, params_sha256(trainer.params))

    @classmethod
    def from_session(cls, path) -> "RunResult | None":
        """The result a complete training session records (None while it is incomplete)."""
        with SessionReader(path) as reader:
            if reader.kind != "training" or not reader.completed:
                return None
            last = reader.last_checkpoint()
            state = last.trainer_state
            config = TrainConfig.from_dict(reader.config["train"])
            return cls._from(dataclasses.asdict(config), state["history"], state["queries"],
                             float(state.get("run_seconds", 0.0)), float(state.get("measure_seconds", 0.0)),
                             path, params_sha256(last.params))

    @classmethod
    def _from(cls, config: dict, history, queries, run_seconds, measure_seconds, session, sha) -> "RunResult":
        holdout = config.get("holdout", "test")
        last = history[-1]
        queries = {k: int(v) for k, v in queries.items()}
        return cls(config=config, holdout=holdout, final_accuracy=last[f"{holdout}_accuracy"],
                   final_train_accuracy=last["train_accuracy"], queries=queries,
                   training_queries=sum(queries[r] for r in TRAINING_ROLES), eval_queries=queries["eval"],
                   history=[dict(h) for h in history], wall_seconds=run_seconds, measure_seconds=measure_seconds,
                   session=None if session is None else str(session), final_params_sha256=sha,
                   final_test_accuracy=last.get("test_accuracy"), test_queries=queries.get("test", 0))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def start_training(config: TrainConfig, session=None, *, reservoir=None, progress=None, wrap_reservoir=None,
                   wrap_recorder=None) -> RunResult:
    """Train ``config``, recording it in a new session at ``session`` (None: keep no record)."""
    if session is not None and Path(session).exists():
        raise UserError(f"{session} exists; a session is a record and is never overwritten "
                        f"(continue it with labpgt train --resume {session})")
    reservoir = reservoir if reservoir is not None else make_reservoir(config)
    try:
        trainer = Trainer(config, _wrapped(reservoir, wrap_reservoir))
        prior = _prior_pairs(trainer)
        if prior is not None:
            trainer.method.add_prior(*prior[:2])
        if session is None:
            return _run(trainer, progress, wrap_recorder, None)
        Path(session).parent.mkdir(parents=True, exist_ok=True)
        with SessionWriter.for_trainer(session, trainer, instruments=reservoir.identities(), prior=prior) as writer:
            return _run(trainer, progress, wrap_recorder, writer, session)
    finally:
        reservoir.close()


def resume_training(session, *, reservoir=None, progress=None, wrap_reservoir=None, wrap_recorder=None) -> RunResult:
    """Continue the interrupted training recorded at ``session`` after its last complete step.

    The queries of the half-done step are dropped from the file and measured again (see
    :meth:`SessionWriter.open_for_resume`).
    """
    config = _resumable_config(session)
    observed = _recorded_training_queries(session) if method_class(config.method).learns_from_queries else None
    prior = recorded_prior(session)
    writer, checkpoint = SessionWriter.open_for_resume(session)
    with writer:
        reservoir = reservoir if reservoir is not None else make_reservoir(config)
        try:
            used = _wrapped(reservoir, wrap_reservoir)
            trainer = (Trainer(config, used, prior=prior) if checkpoint is None else
                       Trainer.restore(config, used, checkpoint, observed=observed, prior=prior))
            return _run(trainer, progress, wrap_recorder, writer, session)
        finally:
            reservoir.close()


def machine_change(session) -> str | None:
    """One line when ``session`` was recorded (or last resumed) on a machine with another numerical
    fingerprint than this one: its continuation here is correct but not bit-identical. None otherwise."""
    from labpgt.numerics import fingerprint_differences
    from labpgt.session.writer import recording_fingerprint

    with SessionReader(session) as reader:
        differences = fingerprint_differences(recording_fingerprint(reader.versions))
    if not differences:
        return None
    return (f"resuming on another machine than the one that recorded {Path(session).name} "
            f"({'; '.join(differences[:2])}): the run continues correctly, but not bit-identically to an "
            f"uninterrupted run there (labpgt replay checks it step by step)")


def _wrapped(reservoir, wrap):
    return reservoir if wrap is None else wrap(reservoir)


def _run(trainer: Trainer, progress, wrap_recorder, writer, session=None) -> RunResult:
    if writer is not None:
        trainer.recorder = writer if wrap_recorder is None else wrap_recorder(writer)
    trainer.run(progress=progress)
    return RunResult.of(trainer, session)


def _prior_pairs(trainer: Trainer):
    """``(U, features, sources)`` from the config's ``twin_from`` sessions, checked against this run's layout."""
    from labpgt.network import ENGINE
    from labpgt.session import session_config
    from labpgt.twin import layout_of_config, session_pairs

    config = trainer.config
    if not config.twin_from:
        return None
    if not trainer.method.learns_from_queries:
        raise UserError(f"--twin-from gives measurements to learn from; {config.method} learns from none (use twin)")
    mine = layout_of_config(session_config(config, trainer.reservoir, engine=ENGINE))
    pairs = session_pairs(config.twin_from, layout=mine, roles=TRAINING_ROLES)
    return pairs.U, pairs.F, pairs.sources


def recorded_prior(session):
    """The prior pairs a session keeps, as ``(U, features)``, or None."""
    with SessionReader(session) as reader:
        prior = reader.prior()
    return None if prior is None else prior[:2]


def _resumable_config(session) -> TrainConfig:
    """The session's training config, or one line saying why it cannot be continued."""
    from labpgt.network import ENGINE

    from labpgt.session.liveness import being_written

    with SessionReader(session) as reader:
        if reader.kind != "training":
            raise UserError(f"{Path(session).name} is a {reader.kind} session; only a training can be resumed")
        if being_written(session, reader.steps()["wall_time"]):
            raise UserError(f"{Path(session).name} is in progress: another run is writing it now; stop that run "
                            f"first (labpgt inspect says when it is interrupted)")
        if reader.config.get("engine") != ENGINE:
            raise UserError(f"{Path(session).name} was recorded by an earlier engine "
                            f"({reader.config.get('engine', 'labpgt-engine/1')}); this labpgt cannot continue it")
        return TrainConfig.from_dict(reader.config["train"])


def _recorded_training_queries(session, block_rows: int = 1 << 14):
    """The training queries of the complete steps, as the trainer measured them: ``(labels, U, features)``."""
    fields = ("step", "role", "direction", "sample", "layer", "token", "u", "features")
    with SessionReader(session) as reader:
        keep = reader.valid_lengths()["queries"]
        names = np.array(reader.role_names)
        training = np.isin(names, TRAINING_ROLES)
        out = []
        for start in range(0, keep, block_rows):
            q = reader.queries(start, min(keep, start + block_rows), fields)
            for step in np.unique(q["step"]):
                rows = (q["step"] == step) & training[q["role"]]
                if rows.any():
                    out.append((QueryLabels(int(step), names[q["role"][rows]], q["direction"][rows], q["sample"][rows],
                                            q["layer"][rows].astype(np.int64), q["token"][rows].astype(np.int64)),
                                q["u"][rows], q["features"][rows]))
        return out


# --------------------------------------------------------------------------- a characterisation sweep
def record_sweep(spec, bench, path, progress=None, should_stop=None, on_trace=None):
    """Measure the sweep ``spec`` (a :class:`labpgt.sweeps.SweepSpec`) on ``bench`` and record it in a new
    session of kind ``sweep`` at ``path``; returns the :class:`~labpgt.sweeps.SweepResult`.

    Every value passes the bench's safety checks before the file is made: a value out of limits
    leaves nothing written. The record is closed however the sweep ends (a stopped one is a valid,
    incomplete session) and RF is off when this returns or raises. ``progress``, ``should_stop``
    and ``on_trace`` are those of :func:`labpgt.sweeps.run_sweep`. The bench stays open for its owner.
    """
    from labpgt.session import SweepWriter, sweep_session_config
    from labpgt.sweeps import check_sweep_safe, run_sweep

    check_sweep_safe(spec, bench)
    identities = bench.identities()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = sweep_session_config(spec.description(bench.config), bench.config)
    with SweepWriter.create(path, config, frequencies=bench.frequencies, instruments=identities) as writer:
        return run_sweep(spec, bench, writer, progress=progress, should_stop=should_stop, on_trace=on_trace)

