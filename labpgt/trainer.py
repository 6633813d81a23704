"""The training loop: the only place that measures, counts every query, steps the optimizer and writes the record.

This module owns :class:`TrainConfig` (everything needed to rerun, JSON-serialisable, validated when
built), the resumable step loop in :class:`Trainer`, the query accounting by role, and the recorder
hook through which the session record is written.

Query roles: ``calibration`` (the one batch that fixes the feature standardisation, plus SPSA's
calibration), ``baseline`` (features at the unperturbed inputs), ``plus``/``minus`` (perturbed), all
of which are *training queries* (the figure of merit), and ``eval`` (accuracy checks, counted apart).

Recorder: the trainer reports every measurement, every step and every checkpoint through the
protocol of :mod:`labpgt.recording` (:class:`~labpgt.recording.NullRecorder` by default). Eval
queries of the test split carry ``sample = n_train + i``. :meth:`Trainer.restore` with a checkpoint
continues with step ``checkpoint.step + 1`` bit-identically.

``step`` is the 0-based index of the training step; calibration and the initial evaluation are
recorded under step 0.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass

import numpy as np

from labpgt.errors import UserError
from labpgt.estimators import PGT, SPSA, NodePerturbation
from labpgt.model import ACTIVATIONS, Model
from labpgt.optimizers import OPTIMIZERS, clip_by_norm, make_optimizer
from labpgt.recording import Checkpoint, NullRecorder, QueryLabels
from labpgt.reservoir import Measurement
from labpgt.tasks import TASKS, Task, load_task

METHODS = ("pgt", "spsa", "node", "backprop", "readout")
RESERVOIRS = ("digital", "ring-sim")
LR_SCHEDULES = ("constant", "cosine")
TRAINING_ROLES = ("calibration", "baseline", "plus", "minus")

# Per-method defaults, filled in by TrainConfig.resolved() where a field is None. Tuned on digits
# through the digital reservoir (d = 8, m = 32), with feature noise 0.05 standing in for the ring's
# measurement noise (numbers in the engineering notes / report):
# * pgt: paper-faithful plain SGD, r = 1, p = 0.5 (best of p ∈ {0, 0.5}, r ∈ {1, 2}); δ = 0.1 because
#   δ = 0.01 drowns in measurement noise (43 % vs 83 % on noisy digital) and on the ring-sim δ = 0.1
#   beats 0.05 (52 % vs 44 % after 1500 steps); lr = 0.002 (0.001 too slow, 0.004 unstable).
# * spsa: c = δ = 0.05, a_0 = lr = 0.005 (0.004–0.006 best; 0.01 unstable), A = 10 % of the steps.
# * node: k = 4 = d/2 orthogonal (Hadamard) directions, δ = 0.05, Adam lr 0.01 (scale-free in the
#   unknown ring Jacobian), cosine decay (as backprop); 600 steps matches backprop's final accuracy
#   on the digital reservoir, 300 (the default, ~2 min on the embedded ring-sim) is within ~1 point.
METHOD_DEFAULTS = {
    "pgt": dict(steps=3000, batch_size=32, lr=0.002, delta=0.1, p=0.5, directions=1,
                optimizer="sgd", lr_schedule="constant"),
    "spsa": dict(steps=3000, batch_size=32, lr=0.005, delta=0.05, p=0.0, directions=1,
                 optimizer="sgd", lr_schedule="constant"),
    "node": dict(steps=300, batch_size=32, lr=0.01, delta=0.05, p=0.0, directions=4,
                 optimizer="adam", lr_schedule="cosine"),
    "backprop": dict(steps=600, batch_size=32, lr=0.01, delta=0.01, p=0.0, directions=1,
                     optimizer="adam", lr_schedule="cosine"),
    "readout": dict(steps=1, batch_size=32, lr=0.01, delta=0.01, p=0.0, directions=1,
                    optimizer="sgd", lr_schedule="constant"),
}


@dataclass
class TrainConfig:
    """Everything needed to rerun a training; ``None`` fields take the method's default (see ``resolved``)."""

    task: str = "digits"
    method: str = "node"
    reservoir: str = "digital"
    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    delta: float | None = None
    r: int = 1
    p: float | None = None
    directions: int | None = None
    distribution: str = "hadamard"
    optimizer: str | None = None
    seed: int = 0
    eval_every: int | None = None
    eval_train_samples: int = 200
    hidden: int = 0
    activation: str = "tanh"
    clip: float = 0.0
    lr_schedule: str | None = None
    spsa_A: float | None = None
    spsa_calibrate: bool = False
    spsa_initial_step: float = 0.02
    checkpoint_every: int = 1
    digital_input_width: int = 8
    digital_feature_width: int = 32
    digital_noise: float = 0.0
    bench: str | None = None

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        def bad(msg):
            raise UserError(msg)

        if self.task not in TASKS:
            bad(f"unknown task {self.task!r}; valid tasks: {', '.join(TASKS)}")
        if self.method not in METHODS:
            bad(f"unknown method {self.method!r}; valid methods: {', '.join(METHODS)}")
        if self.reservoir not in RESERVOIRS:
            bad(f"unknown reservoir {self.reservoir!r}; valid reservoirs: {', '.join(RESERVOIRS)}")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            bad(f"unknown optimizer {self.optimizer!r}; valid optimizers: {', '.join(OPTIMIZERS)}")
        if self.activation not in ACTIVATIONS:
            bad(f"unknown activation {self.activation!r}; valid activations: {', '.join(ACTIVATIONS)}")
        if self.distribution not in NodePerturbation.DISTRIBUTIONS:
            bad(f"unknown distribution {self.distribution!r}; valid: {', '.join(NodePerturbation.DISTRIBUTIONS)}")
        for name in ("steps", "batch_size", "eval_every", "directions"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
                bad(f"{name} must be a positive integer, got {value!r}")
        if self.lr is not None and self.lr <= 0 and self.method != "readout":
            bad(f"lr must be > 0, got {self.lr}")
        if self.delta is not None and self.delta <= 0 and self.method not in ("backprop", "readout"):
            bad(f"delta must be > 0, got {self.delta}")
        if self.method == "node" and self.delta is not None and self.delta > 0.5:
            bad(f"delta must be <= 0.5 for node perturbation (inputs live in [0, 1]), got {self.delta}")
        if self.r < 1:
            bad(f"r must be >= 1, got {self.r}")
        if self.p is not None and not 0.0 <= self.p < 1.0:
            bad(f"p must be in [0, 1), got {self.p}")
        if self.hidden < 0:
            bad(f"hidden must be >= 0, got {self.hidden}")
        if self.method == "readout" and self.hidden:
            bad("the readout baseline has no hidden layer; use hidden=0")
        if self.lr_schedule is not None and self.lr_schedule not in LR_SCHEDULES:
            bad(f"unknown lr_schedule {self.lr_schedule!r}; valid: {', '.join(LR_SCHEDULES)}")
        if self.clip < 0:
            bad(f"clip must be >= 0 (0 disables it), got {self.clip}")
        if self.checkpoint_every < 1 or self.eval_train_samples < 1:
            bad("checkpoint_every and eval_train_samples must be >= 1")
        if self.digital_noise < 0:
            bad(f"digital_noise must be >= 0, got {self.digital_noise}")

    def resolved(self) -> "TrainConfig":
        """A copy with every ``None`` replaced by the method's default (eval_every: steps // 20)."""
        values = dataclasses.asdict(self)
        for key, default in METHOD_DEFAULTS[self.method].items():
            if values[key] is None:
                values[key] = default
        if values["eval_every"] is None:
            values["eval_every"] = max(1, values["steps"] // 20)
        if values["spsa_A"] is None:
            values["spsa_A"] = 0.1 * values["steps"]
        return TrainConfig(**values)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        values = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**values)


def make_estimator(config: TrainConfig):
    c = config
    if c.method == "pgt":
        return PGT(r=c.r, p=c.p, delta=c.delta, directions=c.directions, seed=c.seed)
    if c.method == "spsa":
        return SPSA(delta=c.delta, A=c.spsa_A, directions=c.directions, seed=c.seed)
    if c.method == "node":
        return NodePerturbation(delta=c.delta, directions=c.directions, distribution=c.distribution, seed=c.seed)
    return None


class Trainer:
    """Trains ``config.method`` on ``task`` through ``reservoir``; ``run()`` completes the remaining steps."""

    def __init__(self, config: TrainConfig, reservoir, task: Task | None = None, recorder=None):
        self.config = config.resolved()
        c = self.config
        self.reservoir = reservoir
        self.task = task if task is not None else load_task(c.task, c.seed)
        self.recorder = recorder if recorder is not None else NullRecorder()
        if c.batch_size > len(self.task.y_train):
            raise UserError(f"batch_size {c.batch_size} exceeds the {len(self.task.y_train)} "
                            f"training samples of {c.task}")
        if c.method == "backprop" and not (getattr(reservoir, "differentiable", False) and hasattr(reservoir, "vjp")):
            raise UserError("backprop needs a differentiable reservoir (digital); "
                            "the ring is measured, not differentiated")
        if c.method == "node" and c.distribution == "hadamard":
            order = 1 << max(0, int(reservoir.input_width) - 1).bit_length()
            if c.directions > order:
                raise UserError(f"node with hadamard directions allows at most {order} directions for "
                                f"input width {reservoir.input_width}, got {c.directions}")
        self.model = Model(self.task.n_inputs, reservoir.input_width, reservoir.feature_width,
                           self.task.n_classes, hidden=c.hidden, activation=c.activation, seed=c.seed)
        self.estimator = make_estimator(c)
        self.optimizer = make_optimizer(c.optimizer, self.model.n_params)
        self.batch_rng = np.random.default_rng([c.seed, 3])
        n_train = len(self.task.y_train)
        self.eval_train_index = np.sort(np.random.default_rng([c.seed, 5]).permutation(n_train)[:c.eval_train_samples])
        self.lr = float(c.lr)
        self.step = 0                      # number of completed steps
        self.queries = {role: 0 for role in TRAINING_ROLES + ("eval",)}
        self.history: list[dict] = []
        self.measure_seconds = 0.0
        self.started = False

    # ---- accounting -----------------------------------------------------------------------------
    @property
    def training_queries(self) -> int:
        return sum(self.queries[r] for r in TRAINING_ROLES)

    def _measure(self, step: int, role: str, U: np.ndarray, sample_index: np.ndarray,
                 direction_index: np.ndarray | None = None) -> Measurement:
        t0 = time.perf_counter()
        measurement = self.reservoir.measure(U)
        self.measure_seconds += time.perf_counter() - t0
        if len(measurement) != len(U):
            raise RuntimeError(f"reservoir returned {len(measurement)} rows for {len(U)} queries")
        self.queries[role] += len(U)
        labels = QueryLabels.of(step, role, len(U), sample=sample_index,
                                direction=-1 if direction_index is None else direction_index)
        self.recorder.record_queries(labels, U, measurement)
        return measurement

    # ---- the loop -------------------------------------------------------------------------------
    def run(self, progress=None) -> "Trainer":
        """Run until ``config.steps`` steps are done; ``progress(steps_done, steps)`` after each step."""
        c = self.config
        if not self.started:
            self._start()
        if c.method == "readout":
            return self
        while self.step < c.steps:
            s = self.step
            values = self._train_step(s)
            self.step = s + 1
            if self.step % c.eval_every == 0 or self.step == c.steps:
                values.update(self.evaluate(s))
            values.update(training_queries=self.training_queries, eval_queries=self.queries["eval"],
                          measure_seconds=self.measure_seconds)
            self.recorder.record_step(s, values)
            if self.step % c.checkpoint_every == 0 or self.step == c.steps:
                self.recorder.checkpoint(self.checkpoint())
            if progress is not None:
                progress(self.step, c.steps)
        return self

    def _start(self) -> None:
        """Step 0's preliminaries: fix the feature standardisation (and SPSA's gains), evaluate once."""
        c = self.config
        self.started = True
        if c.method == "readout":
            self._fit_readout()
            return
        index = self.batch_rng.choice(len(self.task.y_train), size=c.batch_size, replace=False)
        X = self.task.x_train[index]
        m = self._measure(0, "calibration", self.model.encode(X), index)
        self.model.calibrate(m.features)
        if c.method == "spsa" and c.spsa_calibrate:
            self._calibrate_spsa(index)
        self.evaluate(-1)

    def _calibrate_spsa(self, index: np.ndarray) -> None:
        """Spall's guidelines from 4 repeated losses at θ0 (noise) and 4 gradient estimates (magnitude)."""
        X, y = self.task.x_train[index], self.task.y_train[index]
        losses = [self.model.loss(self._measure(0, "calibration", self.model.encode(X), index).features, y)
                  for _ in range(4)]
        theta = self.model.get_vector()
        magnitudes = []
        for _ in range(4):
            asked = self.estimator.ask(theta)
            measured = [self._loss_at(0, "calibration", v, X, y, index, d)
                        for v, d in zip(asked.values, asked.directions)]
            magnitudes.append(np.mean(np.abs(self.estimator.tell(np.array(measured)))))
        self.estimator.k = 0
        self.lr = self.estimator.calibrate(np.std(losses, ddof=1), float(np.mean(magnitudes)),
                                         self.config.spsa_initial_step)

    def _loss_at(self, step, role, vector, X, y, index, direction) -> float:
        params = self.model.unflatten(vector)
        U = self.model.encode(X, params)
        m = self._measure(step, role, U, index, np.full(len(index), direction))
        return self.model.loss(m.features, y, params)

    def _train_step(self, s: int) -> dict:
        c = self.config
        index = self.batch_rng.choice(len(self.task.y_train), size=c.batch_size, replace=False)
        X, y = self.task.x_train[index], self.task.y_train[index]
        theta = self.model.get_vector()
        values: dict = {}
        if self.estimator is not None and self.estimator.kind == "parameter":
            asked = self.estimator.ask(theta)
            losses = np.array([self._loss_at(s, role, v, X, y, index, d)
                               for v, role, d in zip(asked.values, asked.roles, asked.directions)])
            lr = self.lr * self._schedule(s)
            if hasattr(self.estimator, "lr_scale"):
                lr *= self.estimator.lr_scale()
            grad = self.estimator.tell(losses)
            values.update(loss=float(losses.mean()), loss_plus=float(losses[0]), loss_minus=float(losses[1]))
        else:
            U = self.model.encode(X)
            F = self._measure(s, "baseline", U, index).features
            loss, grads, grad_F = self.model.head_backward(F, y)
            if c.method == "backprop":
                grad_U = self.reservoir.vjp(U, grad_F)
            else:
                grad_U = self._node_grad_U(s, U, grad_F, index)
            grads.update(self.model.encoder_backward(X, U, grad_U))
            grad = self.model.flatten(grads)
            lr = self.lr * self._schedule(s)
            values["loss"] = loss
        grad = clip_by_norm(grad, c.clip)
        self.model.set_vector(self.optimizer.step(theta, grad, lr))
        values.update(grad_norm=float(np.linalg.norm(grad)), lr=float(lr))
        if self.estimator is not None:
            values["perturbation"] = self.estimator.last_perturbation
        return values

    def _schedule(self, s: int) -> float:
        """The learning-rate factor of step ``s``: 1, or cosine decay from 1 to 0 over the run."""
        if self.config.lr_schedule == "cosine":
            return 0.5 * (1.0 + np.cos(np.pi * s / self.config.steps))
        return 1.0

    def _node_grad_U(self, s: int, U: np.ndarray, grad_F: np.ndarray, index: np.ndarray) -> np.ndarray:
        asked = self.estimator.ask(U)                     # (2k, B, d): plus_0, minus_0, plus_1, ...
        k, (B, d) = self.estimator.directions, U.shape
        directions = np.repeat(np.arange(k), B)
        sample = np.tile(index, k)
        F_plus = self._measure(s, "plus", asked.values[0::2].reshape(k * B, d), sample, directions).features
        F_minus = self._measure(s, "minus", asked.values[1::2].reshape(k * B, d), sample, directions).features
        m = F_plus.shape[1]
        return self.estimator.tell(F_plus.reshape(k, B, m), F_minus.reshape(k, B, m), grad_F)

    def _fit_readout(self) -> None:
        """Classic reservoir computing: measure every training sample once, fit a ridge readout in closed form."""
        from sklearn.linear_model import RidgeClassifierCV

        t = self.task
        index = np.arange(len(t.y_train))
        F = self._measure(0, "baseline", self.model.encode(t.x_train), index).features
        self.model.calibrate(F)
        Fn = (F - self.model.feature_mean) / self.model.feature_scale
        ridge = RidgeClassifierCV(alphas=np.logspace(-3, 3, 13)).fit(Fn, t.y_train)
        self.model.params["out_W"][:] = ridge.coef_.T
        self.model.params["out_b"][:] = ridge.intercept_
        self.step = 1
        values = {"loss": self.model.loss(F, t.y_train), "alpha": float(ridge.alpha_)}
        values.update(self.evaluate(0, train_features=(index, F)))
        values.update(training_queries=self.training_queries, eval_queries=self.queries["eval"],
                      measure_seconds=self.measure_seconds)
        self.recorder.record_step(0, values)
        self.recorder.checkpoint(self.checkpoint())

    # ---- evaluation -----------------------------------------------------------------------------
    def evaluate(self, s: int, train_features=None) -> dict:
        """Measure the eval subset of the training split and the whole test split (role ``eval``)."""
        t = self.task
        step = max(s, 0)
        if train_features is None:
            idx = self.eval_train_index
            F_train = self._measure(step, "eval", self.model.encode(t.x_train[idx]), idx).features
            y_train = t.y_train[idx]
        else:
            idx, F_train = train_features
            y_train = t.y_train[idx]
        n_train = len(t.y_train)
        F_test = self._measure(step, "eval", self.model.encode(t.x_test), n_train + np.arange(len(t.y_test))).features
        entry = {
            "step": self.step,
            "training_queries": self.training_queries,
            "eval_queries": self.queries["eval"],
            "train_loss": self.model.loss(F_train, y_train),
            "test_loss": self.model.loss(F_test, t.y_test),
            "train_accuracy": float(np.mean(self.model.predict(F_train) == y_train)),
            "test_accuracy": float(np.mean(self.model.predict(F_test) == t.y_test)),
        }
        self.history.append(entry)
        return {k: entry[k] for k in ("train_loss", "test_loss", "train_accuracy", "test_accuracy")}

    # ---- checkpoints ----------------------------------------------------------------------------
    def checkpoint(self) -> Checkpoint:
        """The state after the last completed step (``step`` = its 0-based index)."""
        rng_states = {"batches": self.batch_rng.bit_generator.state}
        if self.estimator is not None:
            rng_states["estimator"] = self.estimator.get_state()
        if hasattr(self.reservoir, "get_rng_state"):
            rng_states["reservoir"] = self.reservoir.get_rng_state()
        trainer_state = {"queries": dict(self.queries), "history": [dict(h) for h in self.history],
                         "lr": self.lr, "measure_seconds": self.measure_seconds, "steps_done": self.step}
        return Checkpoint(step=self.step - 1, params=self.model.state_dict(),
                          optimizer_state=self.optimizer.state_dict(), rng_states=rng_states,
                          trainer_state=json.loads(json.dumps(trainer_state)))

    @classmethod
    def restore(cls, config: TrainConfig, reservoir, checkpoint: Checkpoint, task: Task | None = None,
                recorder=None) -> "Trainer":
        """A trainer that continues after ``checkpoint.step`` exactly as the original run would have."""
        trainer = cls(config, reservoir, task=task, recorder=recorder)
        trainer.model.load_state_dict(checkpoint.params)
        trainer.optimizer.load_state_dict(checkpoint.optimizer_state)
        trainer.batch_rng.bit_generator.state = checkpoint.rng_states["batches"]
        if trainer.estimator is not None:
            trainer.estimator.set_state(checkpoint.rng_states["estimator"])
        if "reservoir" in checkpoint.rng_states and hasattr(reservoir, "set_rng_state"):
            reservoir.set_rng_state(checkpoint.rng_states["reservoir"])
        state = checkpoint.trainer_state
        trainer.queries.update({k: int(v) for k, v in state["queries"].items()})
        trainer.history = [dict(h) for h in state["history"]]
        trainer.lr = float(state["lr"])
        trainer.measure_seconds = float(state.get("measure_seconds", 0.0))
        trainer.step = int(checkpoint.step) + 1
        trainer.started = True
        return trainer

