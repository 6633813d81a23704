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

Step by step, within a tolerance scaled to the step. Rounding differs between machines (another
BLAS kernel, other SIMD code, another order of a sum), so a rerun from the first step would let
last-bit differences grow over a run and fail it on any other CPU. Replay therefore checks each
step on its own: before step k+1 the trainer takes the recorded checkpoint k (parameters,
optimizer and method state, RNG states), recomputes step k+1 from it and the recorded responses,
and compares the result with the recorded checkpoint k+1 — so a deviation never carries into the
next step. An array A (parameters, optimizer or method state) of step k+1 passes when

    max|A_rerun − A_k+1|  <=  τ · max|A_k+1 − A_k|  +  u · ε · max|A_k+1|

with ε = 2⁻⁵² (float64 rounding), τ = :data:`STEP_TOLERANCE` = 1e-8 and u = :data:`ROUNDING_ULPS` = 4.
Why these: a step is a short chain of D float64 operations (forward, loss, backward, optimizer;
D <= 10 here), each at worst a sum of N <= 10⁴ products (the largest contraction of these
networks), and a sum's rounding error is at most γ_N = Nε/(1 − Nε) ≈ 2.2e-12 of the sum of its
terms' magnitudes (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1). Over the
chain that is D·γ_N ≈ 2.2e-11 of the update; cancellation (terms up to 100 times the result), the
ridge solve of the readout and Adam's division keep that below 1e-8 with room to spare, so τ =
1e-8 of the step covers any machine's rounding. The second term is the rounding of adding the
update to the array itself (half an ulp per operation, u = 4 of them), which matters only where a
step changes an array by less than ~1e-7 of its size. What τ does not cover: a changed code path,
another batch or perturbation, an altered number — each moves a step by about the step itself,
10⁸ times τ. Between checkpoints (``checkpoint_every`` > 1) the rerun continues on its own
state, and A_k is the last checkpoint. The *deviation* reported is the largest
``max|A_rerun − A_k+1| / (max|A_k+1 − A_k| + (u·ε/τ)·max|A_k+1|)`` (0: bit-identical), which passes
below τ. The requested inputs are compared with the recorded ones, and the step's loss, gradient
norm and accuracies with the recorded ones, relative to max(1, |recorded|) (inputs lie in [0, 1]);
each is recomputed from the recorded checkpoint of its step, so neither accumulates either.

Measured on an AMD EPYC (AVX-512; OpenBLAS chooses its Haswell kernel): replayed under
``OPENBLAS_CORETYPE=Prescott``, the ridge readout's fit differs in the last bits (deviation 1e-13
of the step; tests/test_replay.py replays it so in a subprocess), while node, pgt and transformer
runs, on the digital reservoir and on the simulated ring, stay bit-identical even with XLA's code
generation capped at SSE4.2 or AVX2 (``--xla_cpu_max_isa``): the JAX engine's CPU code rounds
alike on these instruction sets, and where another XLA build or CPU does not, τ covers it.

``exact=True`` (``labpgt replay --exact``) demands bit-identical results everywhere (τ = u = 0):
what a rerun on the recording machine gives. Recorded-data integrity is never a matter of
tolerance: every recorded spectrum must give its recorded features (:func:`check_spectra`).

Earlier engines. A session records the engine that ran it (``config["engine"]``;
:data:`labpgt.network.ENGINE`). One from an earlier engine (schema ``labpgt-session/1``: the numpy
engine with hand-written gradients and another query order) cannot be rerun; replay says so in one
line and checks what needs no engine: every recorded spectrum still gives its recorded features.

The session file is only ever opened read-only (:class:`labpgt.session.SessionReader`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from labpgt.errors import UserError
from labpgt.reservoir import Measurement
from labpgt.session import SessionReader

FEATURE_TOLERANCE = 1e-9  # recomputed vs recorded features (features are O(1))
STEP_TOLERANCE = 1e-8  # τ: of a step's change of each array, and of max(1, |x|) for inputs and losses
ROUNDING_ULPS = 4  # u: the rounding of applying the update, in ulps of the array (see above)
FLOAT64_ROUNDING = float(np.finfo(np.float64).eps)
EARLIER_ENGINE = "labpgt-engine/1"  # what a session without an "engine" entry was run by


class ReplayDivergence(Exception):
    """The rerun left the recorded trajectory; the message names where."""


class RecordingExhausted(Exception):
    """The rerun asked for more queries than the file holds."""


@dataclass
class ReplayReport:
    """The outcome of :func:`replay_session`: ``ok`` or the ``first_divergence`` in one line.

    ``largest_deviation`` is the largest of the ratios described in the module docstring (0.0:
    bit-identical), ``largest_at`` where it occurred; ``tolerance`` what it was held to (τ, or 0 with
    ``exact``). ``other_machine`` lists how the recording machine's fingerprint differs from this one's.
    """

    ok: bool
    first_divergence: str | None
    queries_replayed: int = 0
    checkpoints_checked: int = 0
    spectra_checked: int = 0
    recording_complete: bool = True
    largest_deviation: float = 0.0
    earlier_engine: str | None = None  # set when the session's engine cannot be rerun
    tolerance: float = STEP_TOLERANCE
    largest_at: str | None = None
    exact: bool = False
    other_machine: tuple = ()

    def summary(self) -> str:
        if not self.ok:
            hint = (
                "; it was recorded on another machine: without --exact, replay allows each step the rounding "
                "of this one"
                if self.exact and self.other_machine
                else ""
            )
            return f"replay diverged: {self.first_divergence}{hint}"
        if self.earlier_engine is not None:
            return (
                f"recorded by an earlier engine ({self.earlier_engine}), which this labpgt cannot rerun; "
                f"checked what needs no engine: {self.spectra_checked} spectra consistent with their features"
            )
        scope = "complete run" if self.recording_complete else "interrupted run, up to its last complete step"
        where = "on another machine" if self.other_machine else "on the recording machine"
        same = (
            "bit-identical"
            if self.largest_deviation == 0.0
            else f"within {self.tolerance:g} of each step, largest deviation {self.largest_deviation:.2g} "
            f"({self.largest_at})"
        )
        spectra = f", {self.spectra_checked} spectra consistent with their features" if self.spectra_checked else ""
        return (
            f"replay ok ({scope}, {where}): {self.queries_replayed} queries, {self.checkpoints_checked} "
            f"checkpoints {same}{spectra}"
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _where(reader: SessionReader, index: int, steps: np.ndarray, roles: np.ndarray, offset: int) -> str:
    return f"query {index} (step {int(steps[index - offset])}, role {reader.role_name(roles[index - offset])})"


def relative_difference(mine, recorded) -> np.ndarray:
    """|mine − recorded| / max(1, |recorded|), elementwise (0 where both are equal, NaN included)."""
    mine, recorded = np.asarray(mine, dtype=np.float64), np.asarray(recorded, dtype=np.float64)
    same = (mine == recorded) | (np.isnan(mine) & np.isnan(recorded))
    return np.where(same, 0.0, np.abs(mine - recorded) / np.maximum(1.0, np.abs(recorded)))


def step_deviation(mine, recorded, before, tolerance: float = STEP_TOLERANCE) -> float:
    """``max|mine − recorded|`` as a fraction of the recorded step ``max|recorded − before|`` plus the
    rounding floor ``(u·ε/τ)·max|recorded|`` (see the module docstring); 0.0 where all bits agree."""
    mine, recorded = np.asarray(mine, dtype=np.float64), np.asarray(recorded, dtype=np.float64)
    same = (mine == recorded) | (np.isnan(mine) & np.isnan(recorded))
    if same.all():
        return 0.0
    deviation = float(np.max(np.where(same, 0.0, np.abs(mine - recorded))))
    before = (
        np.asarray(before, dtype=np.float64)
        if before is not None and np.shape(before) == recorded.shape
        else np.zeros_like(recorded)
    )
    step = float(np.nanmax(np.abs(recorded - before), initial=0.0))
    floor = (
        ROUNDING_ULPS * FLOAT64_ROUNDING / tolerance * float(np.nanmax(np.abs(recorded), initial=0.0))
        if tolerance > 0
        else 0.0
    )
    scale = step + floor
    return deviation / scale if scale > 0 and np.isfinite(deviation) else float("inf")


# --------------------------------------------------------------------------- the replay reservoir
class _Deviations:
    """Keeps the largest deviation seen and where; one past the tolerance is a :class:`ReplayDivergence`."""

    tolerance = STEP_TOLERANCE
    largest_deviation, largest_at = 0.0, None

    def note(self, deviation: float, where: str) -> bool:
        """Record ``deviation`` at ``where``; False when it exceeds the tolerance."""
        if deviation > self.largest_deviation:
            self.largest_deviation, self.largest_at = deviation, where
        return deviation <= self.tolerance


class ReplayReservoir(_Deviations):
    """Serves the recorded measurements of ``session`` in order; raises :class:`ReplayDivergence` when
    a requested input row differs from the recorded one by more than ``tolerance`` (relative to
    max(1, |u|)) and :class:`RecordingExhausted` at the end."""

    BLOCK_ROWS = 1 << 14

    def __init__(self, session: SessionReader, tolerance: float = STEP_TOLERANCE):
        self.session = session
        self.tolerance = float(tolerance)
        u_shape = session.dataset("queries/u").shape
        self.input_width = int(u_shape[1])
        self.feature_width = int(session.dataset("queries/features").shape[1])
        self.setting_names = tuple(session.setting_names)
        self.frequencies = session.frequencies if session.has_spectra else None
        self.position = 0
        self._block_start, self._block = 0, None
        self.differentiable = False
        config = session.config["train"]
        if "engine" in session.config and _recorded_reservoir_differentiable(config):
            from labpgt.reservoirs import make_reservoir
            from labpgt.trainer import TrainConfig

            self._model = make_reservoir(TrainConfig.from_dict(config))  # backprop: the exact vjp of its map
            self.differentiable = True
            self.vjp = self._model.vjp

    def _rows(self, start: int, n: int) -> dict:
        block = self._block
        if block is None or start < self._block_start or start + n > self._block_start + len(block["u"]):
            self._block_start = start
            self._block = block = self.session.queries(start, start + max(n, self.BLOCK_ROWS))
        offset = start - self._block_start
        return {k: v[offset : offset + n] for k, v in block.items()}

    def measure(self, U: np.ndarray) -> Measurement:
        U = np.atleast_2d(np.asarray(U, dtype=np.float64))
        n, start = U.shape[0], self.position
        if start + n > self.session.n_queries:
            raise RecordingExhausted(start)
        rows = self._rows(start, n)
        difference = relative_difference(U, rows["u"]).max(axis=1, initial=0.0)
        i = int(np.argmax(difference)) if n else 0
        if n and not self.note(float(difference[i]), f"query {start + i}, input"):
            delta = float(np.max(np.abs(U[i] - rows["u"][i])))
            raise ReplayDivergence(
                f"{_where(self.session, start + i, rows['step'], rows['role'], start)}: "
                f"recorded input differs from requested by {delta:.2g}"
            )
        self.position += n
        return Measurement(
            features=rows["features"],
            spectra=rows["spectrum"] if self.frequencies is not None else None,
            frequencies=self.frequencies,
            settings=rows["settings"],
            started=rows["timestamp"],
            attempts=rows["attempts"],
        )

    def identities(self) -> dict[str, str]:
        return dict(self.session.instruments)

    def get_rng_state(self) -> dict:
        return {}  # the recording is the randomness

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
class _ReplayRecorder(_Deviations):
    """Compares what the rerun reports with the recording — query labels, step values, checkpoints —
    and after each checkpoint sets the trainer to the recorded one (:meth:`follow`), so that every
    step is recomputed from the recorded state before it."""

    def __init__(self, session: SessionReader, tolerance: float = STEP_TOLERANCE):
        self.session = session
        self.tolerance = float(tolerance)
        self.position = 0
        self.checkpoints = 0
        self.trainer = self.before = None
        self._steps = session.steps()
        self._codes = {name: code for code, name in enumerate(session.role_names)}

    def follow(self, trainer) -> None:
        """Set ``trainer`` to each recorded checkpoint once it is checked; its state now is the first step's start."""
        self.trainer, self.before = trainer, trainer.checkpoint()

    def record_queries(self, labels, U, measurement) -> None:
        n, start = len(U), self.position
        rec = self.session.queries(start, start + n, ("step", "role", "direction", "sample", "layer", "token"))
        asked = {
            "step": np.full(n, labels.step),
            "role": np.array([self._codes.get(r, -1) for r in labels.role]),
            "direction": labels.direction,
            "sample": labels.sample,
            "layer": labels.layer,
            "token": labels.token,
        }
        for name, values in asked.items():
            bad = values != rec[name]
            if bad.any():
                i = int(np.argmax(bad))
                raise ReplayDivergence(
                    f"{_where(self.session, start + i, rec['step'], rec['role'], start)}: "
                    f"recorded {name} {rec[name][i]}, the rerun has {values[i]}"
                )
        self.position += n

    def record_step(self, step, values) -> None:
        if step >= self.session.n_steps:
            return
        for name in ("loss", "grad_norm", "train_accuracy", "test_accuracy"):
            recorded = self._steps[name][step]
            if name not in values or np.isnan(recorded):
                continue
            if not self.note(float(relative_difference(values[name], recorded)), f"step {step}, {name}"):
                raise ReplayDivergence(f"step {step}: {name} {values[name]!r} differs from the recorded {recorded!r}")

    def checkpoint(self, checkpoint) -> None:
        step = checkpoint.step
        j = self.checkpoints
        if j >= self.session.n_checkpoints:
            raise RecordingExhausted(j)
        recorded = self.session.checkpoint(j)
        if recorded.step != step:
            raise ReplayDivergence(f"step {step}: the recording's checkpoint {j} is of step {recorded.step}")
        before = self.before
        for label, attribute in (
            ("parameters", "params"),
            ("optimizer state", "optimizer_state"),
            ("method state", "method_state"),
        ):
            mine, theirs = getattr(checkpoint, attribute), getattr(recorded, attribute)
            previous: dict = getattr(before, attribute) if before is not None else {}
            for name in sorted(set(mine) | set(theirs)):
                a, b = mine.get(name), theirs.get(name)
                if a is None or b is None or np.shape(a) != np.shape(b):
                    raise ReplayDivergence(f"step {step}: {label} differ from checkpoint ({name})")
                deviation = step_deviation(a, b, previous.get(name), self.tolerance)
                if not self.note(deviation, f"step {step}, {label} {name}"):
                    delta = float(np.nanmax(np.abs(np.asarray(a, float) - np.asarray(b, float))))
                    raise ReplayDivergence(
                        f"step {step}: {label} differ from checkpoint (max |Δ| {delta:.2g} in "
                        f"{name}, {deviation:.2g} of the step; tolerance {self.tolerance:g})"
                    )
        self.checkpoints += 1
        if self.trainer is not None:
            self.trainer.load_state(recorded)
            self.before = recorded


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
        recomputed = trace_features(
            rows["spectrum"], int(features["bins"]), float(features["floor_dbm"]), float(features["ceiling_dbm"])
        )
        error = np.max(np.abs(recomputed - rows["features"]), axis=1)
        bad = ~(error <= FEATURE_TOLERANCE)
        if bad.any():
            i = int(np.argmax(bad))
            return checked + i, (
                f"{_where(session, start + i, rows['step'], rows['role'], start)}: the recorded "
                f"spectrum does not give the recorded features (max |Δ| {error[i]:.2g}); "
                f"the spectrum or the features were altered"
            )
        checked += len(error)
    return checked, None


# --------------------------------------------------------------------------- replay
def replay_session(path, exact: bool = False) -> ReplayReport:
    """Rerun the recorded training offline, step by step, and check it against the file (see the module
    docstring); ``exact``: every bit must agree."""
    from labpgt.network import ENGINE
    from labpgt.numerics import fingerprint_differences
    from labpgt.trainer import TrainConfig, Trainer

    with SessionReader(path) as session:
        if session.kind != "training":
            raise UserError(f"{session.path.name} records a {session.kind}; replay reruns trainings")
        complete = session.completed
        tolerance = 0.0 if exact else STEP_TOLERANCE
        other = tuple(fingerprint_differences(session.versions.get("numerics")))
        checked, problem = check_spectra(session)
        if problem:
            return ReplayReport(
                False,
                problem,
                spectra_checked=checked,
                recording_complete=complete,
                tolerance=tolerance,
                exact=exact,
                other_machine=other,
            )
        engine = session.config.get("engine", EARLIER_ENGINE)
        if engine != ENGINE:
            return ReplayReport(
                True,
                None,
                spectra_checked=checked,
                recording_complete=complete,
                earlier_engine=engine,
                tolerance=tolerance,
                exact=exact,
                other_machine=other,
            )
        config = TrainConfig.from_dict(session.config["train"])
        reservoir, recorder = ReplayReservoir(session, tolerance), _ReplayRecorder(session, tolerance)

        def report(ok, divergence=None):
            largest = max((reservoir, recorder), key=lambda checked: checked.largest_deviation)
            return ReplayReport(
                ok,
                divergence,
                reservoir.position,
                recorder.checkpoints,
                checked,
                complete,
                largest.largest_deviation,
                tolerance=tolerance,
                largest_at=largest.largest_at,
                exact=exact,
                other_machine=other,
            )

        prior = session.prior()
        try:
            trainer = Trainer(config, reservoir, recorder=recorder, prior=None if prior is None else prior[:2])
            recorder.follow(trainer)
            trainer.run()
        except ReplayDivergence as exc:
            return report(False, str(exc))
        except RecordingExhausted:
            if complete:
                return report(
                    False,
                    f"query {reservoir.position}: the rerun asks for more queries than the "
                    f"{session.n_queries} recorded",
                )
            return report(True)
        if reservoir.position != session.n_queries:
            return report(
                False,
                f"query {reservoir.position}: the rerun finished but the recording has {session.n_queries} queries",
            )
        if recorder.checkpoints != session.n_checkpoints:
            return report(
                False, f"the rerun made {recorder.checkpoints} checkpoints, the recording has {session.n_checkpoints}"
            )
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
    return {
        "kind": kind,
        "step": step,
        "source": source,
        "n_train": int(train_rows.size),
        "n_test": int(test_rows.size),
        "alpha": float(ridge.alpha_),
        "train_accuracy": float(ridge.score((F_train - mean) / scale, y_train)),
        "test_accuracy": float(ridge.score((F_test - mean) / scale, y_test)),
    }
