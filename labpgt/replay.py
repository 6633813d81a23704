"""Replay and offline re-analysis of a session file: no instrument needed.

This module owns three things:

* :class:`ReplayReservoir` — a :class:`~labpgt.reservoir.Reservoir` that serves the recorded
  measurements in recorded order and checks that every requested input row equals the recorded
  one (training is deterministic given the measurements, so any difference is a bug, a changed
  code path or an altered file);
* :func:`replay_session` — rerun the training from the stored config with the replay reservoir in
  place of the bench and check every checkpoint; first check that every recorded spectrum still
  gives its recorded features (:func:`check_spectra`), so an altered spectrum is named by its query
  index;
* :func:`refit_readout` — refit a readout on the recorded features of the last evaluation.

Exact, or within tolerance. A session records the numerical fingerprint of the machine that ran it
(:func:`labpgt.numerics.fingerprint`: CPU, architecture, numpy/jax versions). Where the replaying
machine has the same one, the rerun must be bit-identical: any difference at all is a divergence.
On another CPU (other BLAS or XLA kernels, other rounding of a sum) the digital stages may differ in
the last bits; inputs, losses and checkpoints are then accepted within :data:`REPLAY_TOLERANCE`
relative (1e-9: a million times the float64 rounding such a difference makes, and far below what a
changed code path causes), and the report says so and gives the largest relative difference.

Earlier engines. A session records the engine that ran it (``config["engine"]``;
:data:`labpgt.network.ENGINE`). One from an earlier engine (schema ``labpgt-session/1``: the numpy
engine with hand-written gradients and another query order) cannot be rerun; replay says so in one
line and checks what needs no engine: every recorded spectrum still gives its recorded features.

The session file is only ever opened read-only (:class:`labpgt.session.SessionReader`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labpgt.errors import UserError
from labpgt.reservoir import Measurement
from labpgt.session import SessionReader

FEATURE_TOLERANCE = 1e-9   # recomputed vs recorded features (features are O(1))
REPLAY_TOLERANCE = 1e-9    # relative, max(1, |recorded|): what another CPU's rounding may change (see above)
EARLIER_ENGINE = "labpgt-engine/1"   # what a session without an "engine" entry was run by


class ReplayDivergence(Exception):
    """The rerun left the recorded trajectory; the message names where."""


class RecordingExhausted(Exception):
    """The rerun asked for more queries than the file holds."""


@dataclass
class ReplayReport:
    """The outcome of :func:`replay_session`: ``ok`` or the ``first_divergence`` in one line."""

    ok: bool
    first_divergence: str | None
    queries_replayed: int = 0
    checkpoints_checked: int = 0
    spectra_checked: int = 0
    recording_complete: bool = True
    largest_difference: float = 0.0     # relative, over inputs, losses and checkpoints; 0.0: bit-identical
    earlier_engine: str | None = None    # set when the session's engine cannot be rerun
    tolerance: float = 0.0               # 0: the recording machine's fingerprint, bits must match

    def summary(self) -> str:
        if not self.ok:
            return f"replay diverged: {self.first_divergence}"
        if self.earlier_engine is not None:
            return (f"recorded by an earlier engine ({self.earlier_engine}), which this labpgt cannot rerun; "
                    f"checked what needs no engine: {self.spectra_checked} spectra consistent with their features")
        scope = "complete run" if self.recording_complete else "interrupted run, up to its last complete step"
        same = ("identical" if self.largest_difference == 0.0 else
                f"reproduced within {self.tolerance:g} on another CPU (largest relative difference "
                f"{self.largest_difference:.2g})")
        spectra = f", {self.spectra_checked} spectra consistent with their features" if self.spectra_checked else ""
        return (f"replay ok ({scope}): {self.queries_replayed} queries, {self.checkpoints_checked} checkpoints "
                f"{same}{spectra}")


def _where(reader: SessionReader, index: int, steps: np.ndarray, roles: np.ndarray, offset: int) -> str:
    return f"query {index} (step {int(steps[index - offset])}, role {reader.role_name(roles[index - offset])})"


def relative_difference(mine, recorded) -> np.ndarray:
    """|mine − recorded| / max(1, |recorded|), elementwise (0 where both are equal, NaN included)."""
    mine, recorded = np.asarray(mine, dtype=np.float64), np.asarray(recorded, dtype=np.float64)
    same = (mine == recorded) | (np.isnan(mine) & np.isnan(recorded))
    return np.where(same, 0.0, np.abs(mine - recorded) / np.maximum(1.0, np.abs(recorded)))


# --------------------------------------------------------------------------- the replay reservoir
class ReplayReservoir:
    """Serves the recorded measurements of ``session`` in order; raises :class:`ReplayDivergence` when
    a requested input row differs from the recorded one and :class:`RecordingExhausted` at the end."""

    BLOCK_ROWS = 1 << 14

    def __init__(self, session: SessionReader, tolerance: float = 0.0):
        self.session = session
        self.tolerance = float(tolerance)
        u_shape = session.dataset("queries/u").shape
        self.input_width = int(u_shape[1])
        self.feature_width = int(session.dataset("queries/features").shape[1])
        self.setting_names = tuple(session.setting_names)
        self.frequencies = session.frequencies if session.has_spectra else None
        self.position = 0
        self.largest_difference = 0.0
        self._block_start, self._block = 0, None
        self.differentiable = False
        config = session.config["train"]
        if "engine" in session.config and _recorded_reservoir_differentiable(config):
            from labpgt.reservoirs import make_reservoir
            from labpgt.trainer import TrainConfig

            self._model = make_reservoir(TrainConfig.from_dict(config))   # backprop: the exact vjp of its map
            self.differentiable = True
            self.vjp = self._model.vjp

    def _rows(self, start: int, n: int) -> dict:
        block = self._block
        if block is None or start < self._block_start or start + n > self._block_start + len(block["u"]):
            self._block_start = start
            self._block = block = self.session.queries(start, start + max(n, self.BLOCK_ROWS))
        offset = start - self._block_start
        return {k: v[offset:offset + n] for k, v in block.items()}

    def measure(self, U: np.ndarray) -> Measurement:
        U = np.atleast_2d(np.asarray(U, dtype=np.float64))
        n, start = U.shape[0], self.position
        if start + n > self.session.n_queries:
            raise RecordingExhausted(start)
        rows = self._rows(start, n)
        difference = relative_difference(U, rows["u"]).max(axis=1, initial=0.0)
        if np.any(difference > self.tolerance):
            i = int(np.argmax(difference > self.tolerance))
            delta = float(np.max(np.abs(U[i] - rows["u"][i])))
            raise ReplayDivergence(f"{_where(self.session, start + i, rows['step'], rows['role'], start)}: "
                                   f"recorded input differs from requested by {delta:.2g}")
        self.largest_difference = max(self.largest_difference, float(difference.max(initial=0.0)))
        self.position += n
        return Measurement(features=rows["features"], spectra=rows["spectrum"] if self.frequencies is not None else None,
                           frequencies=self.frequencies, settings=rows["settings"], started=rows["timestamp"],
                           attempts=rows["attempts"])

    def identities(self) -> dict[str, str]:
        return dict(self.session.instruments)

    def get_rng_state(self) -> dict:
        return {}                    # the recording is the randomness

    def set_rng_state(self, state: dict) -> None:
        pass

    def close(self) -> None:
        self._block = None


def _recorded_reservoir_differentiable(train: dict) -> bool:
    from labpgt.reservoirs import reservoir_kind

    try:
        return reservoir_kind(str(train.get("reservoir"))).differentiable
    except UserError:
        return False


# --------------------------------------------------------------------------- the checking recorder
class _ReplayRecorder:
    """Compares what the rerun reports with the recording: query labels, step losses, checkpoints."""

    def __init__(self, session: SessionReader, tolerance: float = 0.0):
        self.session = session
        self.tolerance = float(tolerance)
        self.position = 0
        self.checkpoints = 0
        self.largest_difference = 0.0
        self._steps = session.steps()
        self._codes = {name: code for code, name in enumerate(session.role_names)}

    def record_queries(self, labels, U, measurement) -> None:
        n, start = len(U), self.position
        rec = self.session.queries(start, start + n, ("step", "role", "direction", "sample", "layer", "token"))
        asked = {"step": np.full(n, labels.step), "role": np.array([self._codes.get(r, -1) for r in labels.role]),
                 "direction": labels.direction, "sample": labels.sample, "layer": labels.layer, "token": labels.token}
        for name, values in asked.items():
            bad = values != rec[name]
            if bad.any():
                i = int(np.argmax(bad))
                raise ReplayDivergence(f"{_where(self.session, start + i, rec['step'], rec['role'], start)}: "
                                       f"recorded {name} {rec[name][i]}, the rerun has {values[i]}")
        self.position += n

    def record_step(self, step, values) -> None:
        if step >= self.session.n_steps:
            return
        for name in ("loss", "grad_norm", "train_accuracy", "test_accuracy"):
            recorded = self._steps[name][step]
            if name not in values or np.isnan(recorded):
                continue
            difference = float(relative_difference(values[name], recorded))
            if difference > self.tolerance:
                raise ReplayDivergence(f"step {step}: {name} {values[name]!r} differs from the recorded {recorded!r}")
            self.largest_difference = max(self.largest_difference, difference)

    def checkpoint(self, checkpoint) -> None:
        step = checkpoint.step
        j = self.checkpoints
        if j >= self.session.n_checkpoints:
            raise RecordingExhausted(j)
        recorded = self.session.checkpoint(j)
        if recorded.step != step:
            raise ReplayDivergence(f"step {step}: the recording's checkpoint {j} is of step {recorded.step}")
        for label, mine, theirs in (("parameters", checkpoint.params, recorded.params),
                                    ("optimizer state", checkpoint.optimizer_state, recorded.optimizer_state),
                                    ("method state", checkpoint.method_state, recorded.method_state)):
            for name in sorted(set(mine) | set(theirs)):
                a, b = mine.get(name), theirs.get(name)
                if a is None or b is None or np.shape(a) != np.shape(b):
                    raise ReplayDivergence(f"step {step}: {label} differ from checkpoint ({name})")
                difference = float(relative_difference(a, b).max(initial=0.0))
                if difference > self.tolerance:
                    detail = f" (max |Δ| {float(np.max(np.abs(np.asarray(a, float) - np.asarray(b, float)))):.2g} in {name})"
                    raise ReplayDivergence(f"step {step}: {label} differ from checkpoint{detail}")
                self.largest_difference = max(self.largest_difference, difference)
        self.checkpoints += 1


# --------------------------------------------------------------------------- spectra vs features
def check_spectra(session: SessionReader) -> tuple[int, str | None]:
    """Recompute features from every recorded spectrum; ``(rows checked, first inconsistency or None)``.

    Needs spectra and the bench config's ``[features]`` (sessions of the digital reservoir have
    neither; then nothing is checked).
    """
    from labpgt.bench.features import trace_features

    bench = session.config.get("bench")
    if not session.has_spectra or not bench or "features" not in bench:
        return 0, None
    features = bench["features"]
    checked = 0
    for start, rows in session.iter_queries(("step", "role", "spectrum", "features")):
        recomputed = trace_features(rows["spectrum"], int(features["bins"]), float(features["floor_dbm"]),
                                    float(features["ceiling_dbm"]))
        error = np.max(np.abs(recomputed - rows["features"]), axis=1)
        bad = ~(error <= FEATURE_TOLERANCE)
        if bad.any():
            i = int(np.argmax(bad))
            return checked + i, (f"{_where(session, start + i, rows['step'], rows['role'], start)}: the recorded "
                                 f"spectrum does not give the recorded features (max |Δ| {error[i]:.2g}); "
                                 f"the spectrum or the features were altered")
        checked += len(error)
    return checked, None


# --------------------------------------------------------------------------- replay
def replay_session(path) -> ReplayReport:
    """Rerun the recorded training offline and check it against the file (see the module docstring)."""
    from labpgt.network import ENGINE
    from labpgt.numerics import fingerprint
    from labpgt.trainer import TrainConfig, Trainer

    with SessionReader(path) as session:
        if session.kind != "training":
            raise UserError(f"{session.path.name} records a {session.kind}; replay reruns trainings")
        complete = session.completed
        checked, problem = check_spectra(session)
        if problem:
            return ReplayReport(False, problem, spectra_checked=checked, recording_complete=complete)
        engine = session.config.get("engine", EARLIER_ENGINE)
        if engine != ENGINE:
            return ReplayReport(True, None, spectra_checked=checked, recording_complete=complete,
                                earlier_engine=engine)
        config = TrainConfig.from_dict(session.config["train"])
        tolerance = 0.0 if session.versions.get("numerics") == fingerprint() else REPLAY_TOLERANCE
        reservoir, recorder = ReplayReservoir(session, tolerance), _ReplayRecorder(session, tolerance)

        def report(ok, divergence=None):
            return ReplayReport(ok, divergence, reservoir.position, recorder.checkpoints, checked, complete,
                                max(reservoir.largest_difference, recorder.largest_difference), tolerance=tolerance)

        prior = session.prior()
        try:
            Trainer(config, reservoir, recorder=recorder, prior=None if prior is None else prior[:2]).run()
        except ReplayDivergence as exc:
            return report(False, str(exc))
        except RecordingExhausted:
            if complete:
                return report(False, f"query {reservoir.position}: the rerun asks for more queries than the "
                                     f"{session.n_queries} recorded")
            return report(True)
        if reservoir.position != session.n_queries:
            return report(False, f"query {reservoir.position}: the rerun finished but the recording has "
                                 f"{session.n_queries} queries")
        if recorder.checkpoints != session.n_checkpoints:
            return report(False, f"the rerun made {recorder.checkpoints} checkpoints, the recording has "
                                 f"{session.n_checkpoints}")
        return report(True)


# --------------------------------------------------------------------------- offline re-analysis
def refit_readout(path, kind: str = "ridge") -> dict:
    """Refit a readout on the recorded features of the last evaluation and report its accuracies.

    Training rows: the eval queries of the training subset at the last evaluated step (the
    baseline queries of that step when there are none, e.g. the readout method); test rows: the
    eval queries of the test split. Features are standardised on the training rows; the ridge
    penalty is chosen by cross-validation (``RidgeClassifierCV``). Returns ``{"kind", "step",
    "source", "n_train", "n_test", "alpha", "train_accuracy", "test_accuracy"}``.
    """
    if kind != "ridge":
        raise UserError(f"unknown readout kind {kind!r}; valid kinds: ridge")
    from sklearn.linear_model import RidgeClassifierCV

    from labpgt.tasks import load_task

    with SessionReader(path) as session:
        if session.kind != "training":
            raise UserError(f"{session.path.name} records a {session.kind}; a readout is refitted on a training")
        train = session.config["train"]
        task = load_task(train["task"], int(train.get("seed", 0)), holdout=train.get("holdout", "test"))
        n_train = len(task.y_train)
        q = session.queries(fields=("step", "role", "sample"))
        codes = {name: session.role_names.index(name) for name in ("eval", "baseline")}
        at_eval = q["role"] == codes["eval"]
        if not at_eval.any():
            raise UserError(f"{session.path.name}: no evaluation queries recorded; nothing to refit")
        step = int(q["step"][at_eval].max())
        at_step = q["step"] == step
        train_rows = np.flatnonzero(at_step & at_eval & (q["sample"] < n_train))
        source = "eval"
        if train_rows.size == 0:
            train_rows = np.flatnonzero(at_step & (q["role"] == codes["baseline"]))
            source = "baseline"
        test_rows = np.flatnonzero(at_step & at_eval & (q["sample"] >= n_train))
        if train_rows.size == 0 or test_rows.size == 0:
            raise UserError(f"{session.path.name}: step {step} lacks training or test features to refit on")
        features = session.dataset("queries/features")
        F_train, F_test = features[train_rows], features[test_rows]
        y_train = task.y_train[q["sample"][train_rows]]
        y_test = task.y_test[q["sample"][test_rows] - n_train]
    mean, scale = F_train.mean(axis=0), F_train.std(axis=0)
    scale[scale < 1e-12] = 1.0
    ridge = RidgeClassifierCV(alphas=np.logspace(-3, 3, 13)).fit((F_train - mean) / scale, y_train)
    return {"kind": kind, "step": step, "source": source, "n_train": int(train_rows.size),
            "n_test": int(test_rows.size), "alpha": float(ridge.alpha_),
            "train_accuracy": float(ridge.score((F_train - mean) / scale, y_train)),
            "test_accuracy": float(ridge.score((F_test - mean) / scale, y_test))}
