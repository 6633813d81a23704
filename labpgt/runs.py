"""What a run needs from its session file, and the plain functions that run one.

The run engine (:mod:`labpgt.engine`) starts, resumes, stops and ends every run; this module is what it
asks of the session package and of the trainer, and the outcome it reports:

* :class:`RunResult` — the outcome of a training as plain data (also read back from a complete session);
* :func:`new_training_session`, :func:`reopen_for_resume`, :func:`new_sweep_session` — the session a run
  writes, its root config made here (the session package knows no trainer and no bench);
* :func:`resumable_config`, :func:`recorded_training_queries`, :func:`recorded_prior`, :func:`prior_pairs`
  — what a resumed (or warm-started) run reads back;
* :func:`start_training`, :func:`resume_training`, :func:`record_sweep` — a run on an engine of its own,
  for a library caller (a benchmark worker, a notebook) who watches nothing and stops nothing;
* :func:`default_session_path` — where a run is written when nobody says where.

Resume is bit-identical on the machine that recorded the session (:func:`machine_change` says when it is
not that machine, which the session then records in ``versions["resumed"]``): the checkpoint holds every
RNG state (the batches', the method's and the reservoir's — the digital reservoir's noise, the simulated
ring's through :meth:`labpgt.bench.Bench.get_rng_state`); a method that learns from the run's own queries
(declared ``learns_from_queries``, e.g. the twin) is first shown the recorded queries of the complete steps
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
from labpgt.session import SessionReader, SessionWriter, params_sha256, session_config
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
    final_train_accuracy: float | None
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
    prior_queries: int = 0

    @property
    def queries_incl_evaluation(self) -> int:
        """Every query the run measured: training, evaluation and the final test."""
        return self.training_queries + self.eval_queries + self.test_queries

    @classmethod
    def of(cls, trainer: Trainer, session=None) -> RunResult:
        result = cls._from(
            trainer.config.to_dict(),
            trainer.history,
            trainer.queries,
            trainer.run_seconds,
            trainer.measure_seconds,
            session,
            params_sha256(trainer.params),
        )
        result.prior_queries = trainer.prior_rows
        return result

    @classmethod
    def from_session(cls, path) -> RunResult | None:
        """The result a complete training session records (None while it is incomplete)."""
        with SessionReader(path) as reader:
            if reader.kind != "training" or not reader.completed:
                return None
            last = reader.last_checkpoint()
            state = last.trainer_state
            config = TrainConfig.from_dict(reader.config["train"])
            prior = reader.prior()
            result = cls._from(
                config.to_dict(),
                state["history"],
                state["queries"],
                float(state.get("run_seconds", 0.0)),
                float(state.get("measure_seconds", 0.0)),
                path,
                params_sha256(last.params),
            )
            result.prior_queries = 0 if prior is None else len(prior[0])
            return result

    @classmethod
    def _from(cls, config: dict, history, queries, run_seconds, measure_seconds, session, sha) -> RunResult:
        holdout = config.get("holdout", "test")
        last = history[-1]
        queries = {k: int(v) for k, v in queries.items()}
        return cls(
            config=config,
            holdout=holdout,
            final_accuracy=last[f"{holdout}_accuracy"],
            final_train_accuracy=last.get("train_accuracy"),
            queries=queries,
            training_queries=sum(queries[r] for r in TRAINING_ROLES),
            eval_queries=queries["eval"],
            history=[dict(h) for h in history],
            wall_seconds=run_seconds,
            measure_seconds=measure_seconds,
            session=None if session is None else str(session),
            final_params_sha256=sha,
            final_test_accuracy=last.get("test_accuracy"),
            test_queries=queries.get("test", 0),
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def start_training(config: TrainConfig, session=None, *, reservoir=None) -> RunResult:
    """Train ``config`` on an engine of its own, recording it in a new session at ``session`` (None: keep no
    record); see :meth:`labpgt.engine.RunEngine.train`."""
    from labpgt.engine import RunEngine

    return RunEngine().train(config, session, reservoir=reservoir).result_or_raise()


def resume_training(session, *, reservoir=None) -> RunResult:
    """Continue the interrupted training recorded at ``session``; see :meth:`labpgt.engine.RunEngine.resume`."""
    from labpgt.engine import RunEngine

    return RunEngine().resume(session, reservoir=reservoir).result_or_raise()


def record_sweep(spec, bench_config, path):
    """Measure the sweep ``spec`` on the bench of ``bench_config`` in a new session at ``path``; see
    :meth:`labpgt.engine.RunEngine.sweep`."""
    from labpgt.engine import RunEngine

    return RunEngine().sweep(spec, bench_config, path).result


def describe(config: TrainConfig) -> str:
    """A run in a few words: task, model, method, reservoir."""
    return f"{config.task} {config.model.architecture} {config.method.name} {config.reservoir.name}"


def new_training_session(path, trainer: Trainer, reservoir, prior=None) -> SessionWriter:
    """The session of ``trainer``'s run (not yet started) at ``path``: its config, the reservoir's instruments
    and any prior pairs it learns from."""
    from labpgt.network import ENGINE

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = session_config(trainer.config.to_dict(), trainer.reservoir, model=trainer.network.spec, engine=ENGINE)
    return SessionWriter.create(
        path,
        config,
        trainer.checkpoint(),
        prior=prior,
        frequencies=getattr(reservoir, "frequencies", None),
        instruments=reservoir.identities(),
        resolution_db=getattr(reservoir, "trace_resolution_db", None),
    )


#: what the query rows of a session compress to on the disk (gzip after a byte shuffle: 1,015 of 2,141 bytes a
#: query on the default run, benchmarks/RESULTS.md section 13); a run's expected size uses it
COMPRESSED_FRACTION = 0.5


def expected_bytes(trainer: Trainer, reservoir) -> tuple[int, int]:
    """``(one step, the whole run)``: the bytes a run's queries take, a step's uncompressed (what must fit before it
    is written), the run's as compressed (what it is expected to leave on the disk), evaluation included."""
    config, network = trainer.config, trainer.network
    frequencies = getattr(reservoir, "frequencies", None)
    points = len(frequencies) if frequencies is not None else 0
    per_query = 8 * (reservoir.input_width + reservoir.feature_width + len(getattr(reservoir, "setting_names", ())))
    per_query += 4 * points + 80  # the spectrum, and the labels, times and attempts
    rows = len(network.layers) * max(1, int(network.spec.get("tokens") or 1))
    method = method_class(config.method.name)
    if method.closed_form:
        step = len(trainer.task.y_train) * rows
        run: float = step + len(trainer.task.y_test) * rows
    else:
        step = trainer.stepped_settings.batch_size * rows * method.queries_per_row(config.method)
        evaluation = config.evaluation
        assert evaluation.eval_train_samples is not None and evaluation.eval_every is not None, "a resolved config"
        whole_split = (len(trainer.task.y_test) + evaluation.eval_train_samples) * rows
        run = (
            config.steps * step
            + (
                evaluation.eval_fraction * config.steps * step
                if evaluation.eval_fraction
                else config.steps // evaluation.eval_every * whole_split
            )
            + whole_split
        )
    return int(step * per_query), int(run * per_query * COMPRESSED_FRACTION)


def reopen_for_resume(session):
    """``(writer, last complete checkpoint or None)`` of an interrupted training (see
    :meth:`SessionWriter.open_for_resume`)."""
    return SessionWriter.open_for_resume(session)


def learns_from_queries(config: TrainConfig) -> bool:
    return method_class(config.method.name).learns_from_queries


def new_sweep_session(path, spec, bench):
    """The session of the sweep ``spec`` on ``bench`` at ``path`` (a :class:`~labpgt.session.SweepWriter`)."""
    from labpgt.session import SweepWriter, sweep_session_config

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = sweep_session_config(spec.description(bench.config), bench.config.to_dict(), bench.config.bins)
    return SweepWriter.create(
        path,
        config,
        frequencies=bench.frequencies,
        instruments=bench.identities(),
        resolution_db=bench.trace_resolution_db,
    )


def machine_change(session) -> str | None:
    """One line when ``session`` was recorded (or last resumed) on a machine with another numerical
    fingerprint than this one: its continuation here is correct but not bit-identical. None otherwise."""
    from labpgt.numerics import fingerprint_differences
    from labpgt.session.writer import recording_fingerprint

    with SessionReader(session) as reader:
        differences = fingerprint_differences(recording_fingerprint(reader.versions))
    if not differences:
        return None
    return (
        f"resuming on another machine than the one that recorded {Path(session).name} "
        f"({'; '.join(differences[:2])}): the run continues correctly, but not bit-identically to an "
        f"uninterrupted run there (labpgt replay checks it step by step)"
    )


def prior_pairs(trainer: Trainer):
    """``(U, features, sources)`` from the config's ``twin_from`` sessions, checked against this run's layout."""
    from labpgt.network import ENGINE
    from labpgt.twin import layout_of_config, session_pairs

    config = trainer.config
    sources = getattr(config.method, "twin_from", ())
    if not sources:
        return None
    mine = layout_of_config(session_config(config.to_dict(), trainer.reservoir, engine=ENGINE))
    pairs = session_pairs(sources, layout=mine, roles=TRAINING_ROLES)
    return pairs.U, pairs.F, pairs.sources


def recalls_its_steps(config: TrainConfig) -> bool:
    return method_class(config.method.name).recalls_its_steps


def recorded_perturbations(session) -> list:
    """Each step's recorded perturbation, by step from step 0 (None for a step that carried none; a step measured
    again after a pause counts as measured last)."""
    with SessionReader(session) as reader:
        steps = reader.steps()["step"]
        by_step = {int(step): _perturbation(reader, row) for row, step in enumerate(steps)}
    return [by_step.get(step) for step in range(max(by_step, default=-1) + 1)]


def _perturbation(reader, row: int):
    stored = reader.perturbation(row)  # small integers, as stored
    return stored if stored is not None else reader.step_extra(row).get("perturbation")  # any other, as JSON


def recorded_prior(session):
    """The prior pairs a session keeps, as ``(U, features)``, or None."""
    with SessionReader(session) as reader:
        prior = reader.prior()
    return None if prior is None else prior[:2]


def resumable_config(session) -> TrainConfig:
    """The session's training config, or one line saying why it cannot be continued."""
    from labpgt.network import ENGINE
    from labpgt.session.liveness import being_written

    with SessionReader(session) as reader:
        if reader.kind != "training":
            raise UserError(f"{Path(session).name} is a {reader.kind} session; only a training can be resumed")
        if being_written(session, reader.steps()["wall_time"]):
            raise UserError(
                f"{Path(session).name} is in progress: another run is writing it now; stop that run "
                f"first (labpgt inspect says when it is interrupted)"
            )
        if reader.config.get("engine") != ENGINE:
            raise UserError(
                f"{Path(session).name} was recorded by an earlier engine "
                f"({reader.config.get('engine', 'labpgt-engine/1')}); this labpgt cannot continue it"
            )
        return TrainConfig.from_dict(reader.config["train"])


def recorded_training_queries(session, block_rows: int = 1 << 14):
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
                    out.append(
                        (
                            QueryLabels(
                                int(step),
                                names[q["role"][rows]],
                                q["direction"][rows],
                                q["sample"][rows],
                                q["layer"][rows].astype(np.int64),
                                q["token"][rows].astype(np.int64),
                            ),
                            q["u"][rows],
                            q["features"][rows],
                        )
                    )
        return out
