"""The training loop: the only place that measures, counts every query, steps the optimizer and reports the record.

This module owns :class:`TrainConfig` (everything needed to rerun, JSON-serialisable, validated when
built), the resumable step loop in :class:`Trainer` and the query accounting by role. What a step
measures and how it turns measurements into a gradient belongs to the training method
(:mod:`labpgt.methods`); the network and its gradients to :mod:`labpgt.network`; the optimizer to
optax (:mod:`labpgt.optimizers`).

Query roles: ``calibration`` (the batch that fixes each physical layer's feature standardisation,
plus SPSA's calibration), ``baseline`` (the unperturbed forward pass), ``plus``/``minus``
(perturbed), all of which are *training queries* (the figure of merit), and ``eval`` (accuracy
checks, counted apart).

Recorder: the trainer reports every measurement, every step and every checkpoint through the
protocol of :mod:`labpgt.recording` (:class:`~labpgt.recording.NullRecorder` by default). Eval
queries of the held-out split carry ``sample = n_train + i``. :meth:`Trainer.restore` with a
checkpoint continues with step ``checkpoint.step + 1`` bit-identically.

``step`` is the 0-based index of the training step; calibration and the initial evaluation are
recorded under step 0.

A drifting ring moves its features away from the standardisation the calibration froze. With
``follow_ring = N`` the trainer keeps running moments of every physical layer's training features
and every N steps moves the standardisation to them, compensating the linear map that reads it
(:meth:`labpgt.network.Network.follow`): the loss of the present parameters does not change, only
the conditioning of what follows. ``ring_drift = False`` holds the embedded simulated ring's
temperature and field still (every other behaviour of the real ring stays on): drift on and off are
one benchmark axis (``--set ring_drift=true,false``). ``ring_device = N`` trains on simulated ring
device N (0: the nominal ring; docs/ring-physics.md §11), so devices are one too (``--set ring_device=0,1,2``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass

import numpy as np

from labpgt.architectures import ModelSpec, build_network
from labpgt.errors import UserError
from labpgt.estimators import NodePerturbation
from labpgt.methods import METHODS, method_class
from labpgt.optimizers import OPTIMIZERS, Optimizer
from labpgt.recording import Checkpoint, NullRecorder, QueryLabels
from labpgt.reservoirs import reservoir_kind
from labpgt.tasks import HOLDOUTS, TASKS, Task, load_final_test, load_task, task_dimensions

LR_SCHEDULES = ("constant", "cosine")
DEFAULT_EVAL_FRACTION = 0.1
TRAINING_ROLES = ("calibration", "baseline", "plus", "minus")
EVALUATION_ROLES = ("eval", "test")          # during the run; the final test of a validation run
FOLLOW_RATE = 0.05   # weight of each measurement in the running feature moments of ``follow_ring``
MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(ModelSpec))


def trainable_parameters(config: "TrainConfig") -> int:
    """How many trainable parameters the network of ``config`` has, from its task, model and reservoir's
    widths (nothing measured, nothing connected)."""
    n_inputs, n_classes = task_dimensions(config.task)
    input_width, feature_width = reservoir_kind(config.reservoir).widths(config)
    return build_network(config.model_spec(), n_inputs, n_classes, input_width, feature_width, 0).n_params


@dataclass
class TrainConfig:
    """Everything needed to rerun a training; ``None`` fields take the method's default (see ``resolved``).

    ``holdout`` is what evaluations during the run measure: ``test`` (the test split), or
    ``validation`` (a split carved from the training data — tune there). A validation run ends, after
    its last step, with one evaluation of the test split (``final_test``; its queries have the role
    ``test`` and are counted apart): nothing before it has seen a test sample. Sessions recorded
    before ``final_test`` existed never measured the test split, and read back so (:meth:`from_dict`).

    Evaluation budget: with ``eval_fraction`` F > 0 (the default, 0.1, when ``eval_every`` is not
    given), an evaluation every ``eval_every`` steps (steps // 20) measures a fixed subset of
    ``eval_subset`` held-out and ``eval_subset`` training samples, and is made only while evaluation
    has spent at most F of the training queries so far (counting its own cost); the last step is
    always evaluated on the whole held-out split and ``eval_train_samples`` training samples. With
    F = 0 (the default when ``eval_every`` is given, and for sessions recorded before the budget)
    every evaluation, from the one before the first step on, is of the whole held-out split.
    """

    task: str = "digits"
    method: str = "node"
    reservoir: str = "digital"
    model: str = "dense"
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
    holdout: str = "test"
    final_test: bool = True
    eval_every: int | None = None
    eval_train_samples: int = 200
    eval_fraction: float | None = None
    eval_subset: int = 100
    hidden: int = 0
    activation: str = "tanh"
    width: int = 16
    heads: int = 2
    blocks: int = 2
    tokens: int = 0
    clip: float = 0.0
    lr_schedule: str | None = None
    spsa_A: float | None = None
    spsa_calibrate: bool = False
    spsa_initial_step: float = 0.02
    twin_width: int = 64
    twin_tolerance: float = 1.0
    twin_fit_iterations: int = 30
    twin_check_every: int = 25
    twin_from: tuple = ()
    checkpoint_every: int = 1
    digital_input_width: int = 8
    digital_feature_width: int = 32
    digital_noise: float = 0.0
    bench: str | None = None
    follow_ring: int = 0
    ring_drift: bool = True
    ring_device: int = 0

    def __post_init__(self):
        self.twin_from = tuple(str(p) for p in self.twin_from)     # JSON gives a list
        self.validate()

    def validate(self) -> None:
        def bad(msg):
            raise UserError(msg)

        if self.task not in TASKS:
            bad(f"unknown task {self.task!r}; valid tasks: {', '.join(TASKS)}")
        method = method_class(self.method)
        reservoir_kind(self.reservoir)
        if self.holdout not in HOLDOUTS:
            bad(f"unknown holdout {self.holdout!r}; valid: {', '.join(HOLDOUTS)}")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            bad(f"unknown optimizer {self.optimizer!r}; valid optimizers: {', '.join(OPTIMIZERS)}")
        if self.distribution not in NodePerturbation.DISTRIBUTIONS:
            bad(f"unknown distribution {self.distribution!r}; valid: {', '.join(NodePerturbation.DISTRIBUTIONS)}")
        self.model_spec().validate()
        for name in ("steps", "batch_size", "eval_every", "directions"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
                bad(f"{name} must be a positive integer, got {value!r}")
        if self.lr is not None and self.lr <= 0:
            bad(f"lr must be > 0, got {self.lr}")
        if not isinstance(self.follow_ring, (int, np.integer)) or self.follow_ring < 0:
            bad(f"follow_ring must be a whole number of steps >= 0 (0: off), got {self.follow_ring!r}")
        if not self.ring_drift and (self.reservoir != "ring-sim" or self.bench):
            bad("ring_drift off holds the embedded simulated ring's temperature and field still; "
                f"it cannot apply to {'the instruments of ' + self.bench if self.bench else self.reservoir}")
        if isinstance(self.ring_device, bool) or not isinstance(self.ring_device, (int, np.integer)) or self.ring_device < 0:
            bad(f"ring_device must be a whole number >= 0 (a simulated ring device), got {self.ring_device!r}")
        if self.ring_device and (self.reservoir != "ring-sim" or self.bench):
            bad("ring_device picks a simulated ring device of the embedded bench; "
                f"it cannot apply to {'the instruments of ' + self.bench if self.bench else self.reservoir}")
        if self.delta is not None and self.delta <= 0:
            bad(f"delta must be > 0, got {self.delta}")
        if self.r < 1:
            bad(f"r must be >= 1, got {self.r}")
        if self.p is not None and not 0.0 <= self.p < 1.0:
            bad(f"p must be in [0, 1), got {self.p}")
        if self.lr_schedule is not None and self.lr_schedule not in LR_SCHEDULES:
            bad(f"unknown lr_schedule {self.lr_schedule!r}; valid: {', '.join(LR_SCHEDULES)}")
        if self.clip < 0:
            bad(f"clip must be >= 0 (0 disables it), got {self.clip}")
        if self.checkpoint_every < 1 or self.eval_train_samples < 1 or self.eval_subset < 1:
            bad("checkpoint_every, eval_train_samples and eval_subset must be >= 1")
        if self.eval_fraction is not None and not 0.0 <= self.eval_fraction <= 1.0:
            bad(f"eval_fraction must be in [0, 1] (0: no budget), got {self.eval_fraction}")
        if self.digital_noise < 0:
            bad(f"digital_noise must be >= 0, got {self.digital_noise}")
        if self.twin_width < 1 or self.twin_fit_iterations < 1 or self.twin_check_every < 1 or self.twin_tolerance <= 0:
            bad("twin_width, twin_fit_iterations and twin_check_every must be >= 1, twin_tolerance > 0")
        method.check_config(self)

    def model_spec(self) -> ModelSpec:
        return ModelSpec(**{name: getattr(self, name) for name in MODEL_FIELDS})

    def resolved(self) -> "TrainConfig":
        """A copy with every ``None`` replaced by the method's default (eval_every: steps // 20); a method
        fitted in closed form makes one step, a forward-only one by default steps that grow with the
        network's trainable parameters (:meth:`~labpgt.methods.Method.default_steps`)."""
        values = dataclasses.asdict(self)
        method = METHODS[self.method]
        for key, default in method.defaults.items():
            if values[key] is None:
                values[key] = default
        if self.steps is None and method.steps_grow_with_parameters:
            values["steps"] = method.default_steps(trainable_parameters(self))
        if method.closed_form:
            values["steps"] = 1                       # fitted in one step, whatever was asked
        if values["eval_fraction"] is None:           # a cadence given (or recorded) means the whole split each time
            values["eval_fraction"] = DEFAULT_EVAL_FRACTION if values["eval_every"] is None else 0.0
        if values["eval_every"] is None:
            values["eval_every"] = max(1, values["steps"] // 20)
        if values["spsa_A"] is None:
            values["spsa_A"] = 0.1 * values["steps"]
        return TrainConfig(**values)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**{"final_test": False, **values})       # recorded before it existed: never measured

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        return cls.from_dict(json.loads(text))


class Trainer:
    """Trains ``config.method`` on ``task`` through ``reservoir``; ``run()`` completes the remaining steps."""

    def __init__(self, config: TrainConfig, reservoir, task: Task | None = None, recorder=None, prior=None):
        """``prior``: ``(U, features)`` measured before the run, for a method that learns from queries."""
        self.config = c = config.resolved()
        self.reservoir = reservoir
        self.task = task if task is not None else load_task(c.task, c.seed, holdout=c.holdout)
        self.recorder = recorder if recorder is not None else NullRecorder()
        if c.batch_size > len(self.task.y_train):
            raise UserError(f"batch_size {c.batch_size} exceeds the {len(self.task.y_train)} "
                            f"training samples of {c.task}")
        method = method_class(c.method)
        method.check(c, reservoir)
        self.network = build_network(c.model_spec(), self.task.n_inputs, self.task.n_classes,
                                     reservoir.input_width, reservoir.feature_width, c.seed)
        self.params = dict(self.network.initial_params)
        self.method = method(c, reservoir)
        if prior is not None:
            self.method.add_prior(*prior)
        self.optimizer = Optimizer(c.optimizer, self._trainable(), c.clip)
        self.batch_rng = np.random.default_rng([c.seed, 3])
        n_train, n_held = len(self.task.y_train), len(self.task.y_test)
        drawn = np.random.default_rng([c.seed, 5]).permutation(n_train)
        self.eval_train_index = np.sort(drawn[:c.eval_train_samples])
        self.subset_train_index = np.sort(drawn[:min(c.eval_subset, c.eval_train_samples)])
        self.subset_held_index = np.sort(np.random.default_rng([c.seed, 6]).permutation(n_held)[:c.eval_subset])
        self.queries_per_sample = 0.0      # queries one sample costs a forward pass (known after calibration)
        self.lr = float(c.lr)
        self.step = 0                      # number of completed steps
        self.queries = {role: 0 for role in TRAINING_ROLES + EVALUATION_ROLES}
        self.history: list[dict] = []
        self.measure_seconds = 0.0
        self.run_seconds = 0.0             # wall time inside run(), over every resume
        self.feature_moments: dict = {}    # layer -> running (mean, mean square) of its features (follow_ring)
        self.started = False

    def _trainable(self) -> dict:
        return {n: self.params[n] for n in self.network.trainable_names}

    # ---- accounting -----------------------------------------------------------------------------
    @property
    def training_queries(self) -> int:
        return sum(self.queries[r] for r in TRAINING_ROLES)

    def _measure(self, labels: QueryLabels, U: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        measurement = self.reservoir.measure(U)
        self.measure_seconds += time.perf_counter() - t0
        if len(measurement) != len(U):
            raise RuntimeError(f"reservoir returned {len(measurement)} rows for {len(U)} queries")
        roles, counts = np.unique(labels.role, return_counts=True)
        for role, count in zip(roles, counts):
            self.queries[str(role)] += int(count)
        self.recorder.record_queries(labels, U, measurement)
        self.method.observe(labels, U, measurement.features)
        if self.config.follow_ring:
            self._track_features(labels, measurement.features)
        return measurement.features

    def _track_features(self, labels: QueryLabels, features: np.ndarray) -> None:
        """Running mean and mean square of each physical layer's training features (``follow_ring``)."""
        training = np.isin(labels.role, TRAINING_ROLES)
        for layer in np.unique(labels.layer[training]):
            F = features[training & (labels.layer == layer)]
            batch = (F.mean(axis=0), (F**2).mean(axis=0))
            old = self.feature_moments.get(int(layer))
            self.feature_moments[int(layer)] = batch if old is None else \
                tuple((1 - FOLLOW_RATE) * o + FOLLOW_RATE * b for o, b in zip(old, batch))

    def _measurer(self, step: int, samples: np.ndarray):
        """``measure(layer, U, rows)`` for the engine: rows' batch positions become sample indices."""
        samples = np.asarray(samples)

        def measure(layer: int, U: np.ndarray, rows) -> np.ndarray:
            labels = QueryLabels(step, rows.role, rows.direction, samples[rows.position],
                                 np.full(len(rows), layer, dtype=np.int64), rows.token)
            return self._measure(labels, U)
        return measure

    # ---- the loop -------------------------------------------------------------------------------
    def run(self, progress=None) -> "Trainer":
        """Run until ``config.steps`` steps are done; ``progress(steps_done, steps)`` after each step."""
        c = self.config
        self._run_started, self._run_seconds_before = time.perf_counter(), self.run_seconds
        if not self.started:
            self._start()
        if self.method.closed_form:
            return self
        while self.step < c.steps:
            s = self.step
            values = self._train_step(s)
            self.step = s + 1
            if c.follow_ring and self.step % c.follow_ring == 0:
                self.params = self.network.follow(self.params, self.feature_moments)
            if self.step == c.steps:
                values.update(self.evaluate(s))
                values.update(self.evaluate_final_test(s))
            elif self.step % c.eval_every == 0 and self._evaluation_affordable():
                values.update(self.evaluate(s, subset=bool(c.eval_fraction)))
            self._report(s, values, checkpoint=self.step % c.checkpoint_every == 0 or self.step == c.steps)
            if progress is not None:
                progress(self.step, c.steps)
        return self

    def _report(self, s: int, values: dict, checkpoint: bool) -> None:
        self.run_seconds = self._run_seconds_before + time.perf_counter() - self._run_started
        values.update(training_queries=self.training_queries, eval_queries=self.queries["eval"],
                      measure_seconds=self.measure_seconds)
        self.recorder.record_step(s, values)
        if checkpoint:
            self.recorder.checkpoint(self.checkpoint())

    def _start(self) -> None:
        """Step 0's preliminaries: fix the feature standardisation (and a method's own start), evaluate once."""
        c = self.config
        self.started = True
        if self.method.closed_form:
            self._fit_closed_form()
            return
        index = self.batch_rng.choice(len(self.task.y_train), size=c.batch_size, replace=False)
        X, y = self.task.x_train[index], self.task.y_train[index]
        measure = self._measurer(0, index)
        self.params, _ = self.network.calibrate(self.params, X, measure)
        self.queries_per_sample = self.queries["calibration"] / c.batch_size
        self.lr = self.method.start(self.network, self.params, X, y, measure, self.lr)
        if self._evaluation_affordable():
            self.evaluate(-1, subset=bool(c.eval_fraction))

    def _evaluation_affordable(self) -> bool:
        """Whether an intermediate evaluation keeps evaluation within ``eval_fraction`` of the training queries."""
        c = self.config
        if not c.eval_fraction:
            return True
        cost = (len(self.subset_train_index) + len(self.subset_held_index)) * self.queries_per_sample
        return self.queries["eval"] + cost <= c.eval_fraction * self.training_queries

    def _train_step(self, s: int) -> dict:
        c = self.config
        index = self.batch_rng.choice(len(self.task.y_train), size=c.batch_size, replace=False)
        X, y = self.task.x_train[index], self.task.y_train[index]
        result = self.method.step(self.network, self.params, X, y, self._measurer(s, index))
        lr = self.lr * self._schedule(s) * result.lr_scale
        new, grad_norm = self.optimizer.step(self._trainable(), result.grads, lr)
        self.params.update(new)
        values = {"loss": result.loss, **result.values, "grad_norm": grad_norm, "lr": float(lr)}
        if result.perturbation is not None:
            values["perturbation"] = result.perturbation
        return values

    def _schedule(self, s: int) -> float:
        """The learning-rate factor of step ``s``: 1, or cosine decay from 1 to 0 over the run."""
        if self.config.lr_schedule == "cosine":
            return 0.5 * (1.0 + np.cos(np.pi * s / self.config.steps))
        return 1.0

    def _fit_closed_form(self) -> None:
        """A method fitted in one pass (the readout): its one 'step', evaluated and checkpointed."""
        t = self.task
        index = np.arange(len(t.y_train))
        self.params, values, logits = self.method.fit(self.network, self.params, t.x_train, t.y_train,
                                                      self._measurer(0, index))
        self.step = 1
        values.update(self.evaluate(0, train_logits=(index, logits)))
        values.update(self.evaluate_final_test(0))
        self._report(0, values, checkpoint=True)

    # ---- evaluation -----------------------------------------------------------------------------
    def _logits(self, X: np.ndarray, samples: np.ndarray, step: int, role: str = "eval") -> np.ndarray:
        return self.network.forward(self.params, X, self._measurer(step, samples), role=role).logits

    @property
    def measures_final_test(self) -> bool:
        return self.config.holdout == "validation" and self.config.final_test

    def evaluate(self, s: int, train_logits=None, subset: bool = False) -> dict:
        """Measure the eval samples of the training split and the whole held-out split (role ``eval``); with
        ``subset``, the budget's fixed subsets of both instead."""
        t = self.task
        step = max(s, 0)
        if train_logits is None:
            idx = self.subset_train_index if subset else self.eval_train_index
            train_logits = (idx, self._logits(t.x_train[idx], idx, step))
        idx, logits_train = train_logits
        n_train = len(t.y_train)
        held_idx = self.subset_held_index if subset else np.arange(len(t.y_test))
        logits_held = self._logits(t.x_test[held_idx], n_train + held_idx, step)
        held, y_held = t.holdout, t.y_test[held_idx]
        entry = {
            "step": self.step,
            "training_queries": self.training_queries,
            "eval_queries": self.queries["eval"],
            "train_loss": self.network.loss(logits_train, t.y_train[idx]),
            f"{held}_loss": self.network.loss(logits_held, y_held),
            "train_accuracy": float(np.mean(np.argmax(logits_train, axis=-1) == t.y_train[idx])),
            f"{held}_accuracy": float(np.mean(np.argmax(logits_held, axis=-1) == y_held)),
        }
        if subset:
            entry[f"{held}_samples"] = int(len(held_idx))
        self.history.append(entry)
        return {k: v for k, v in entry.items() if k.endswith(("_loss", "_accuracy"))}

    def evaluate_final_test(self, s: int) -> dict:
        """A validation run's one look at the test split, after its last step (role ``test``; sample
        indices follow the training and validation splits'); added to the last evaluation. Nothing
        for a run that evaluates on test, or one told not to."""
        if not self.measures_final_test:
            return {}
        t = self.task
        x_test, y_test = load_final_test(self.config.task, self.config.seed)
        logits = self._logits(x_test, len(t.y_train) + len(t.y_test) + np.arange(len(y_test)), s, role="test")
        values = {"test_loss": self.network.loss(logits, y_test),
                  "test_accuracy": float(np.mean(np.argmax(logits, axis=-1) == y_test))}
        self.history[-1].update(values, test_queries=self.queries["test"])
        return values

    # ---- checkpoints ----------------------------------------------------------------------------
    def checkpoint(self) -> Checkpoint:
        """The state after the last completed step (``step`` = its 0-based index)."""
        rng_states = {"batches": self.batch_rng.bit_generator.state, "method": self.method.get_state(),
                      "reservoir": self.reservoir.get_rng_state()}
        trainer_state = {"queries": dict(self.queries), "history": [dict(h) for h in self.history],
                         "lr": self.lr, "measure_seconds": self.measure_seconds, "run_seconds": self.run_seconds,
                         "steps_done": self.step, "queries_per_sample": self.queries_per_sample,
                         "feature_moments": {str(k): [np.asarray(a).tolist() for a in v]
                                             for k, v in self.feature_moments.items()}}
        return Checkpoint(step=self.step - 1, params={k: np.array(v) for k, v in self.params.items()},
                          optimizer_state=self.optimizer.state_arrays(), rng_states=rng_states,
                          trainer_state=json.loads(json.dumps(trainer_state)),
                          method_state=self.method.state_arrays())

    @classmethod
    def restore(cls, config: TrainConfig, reservoir, checkpoint: Checkpoint, task: Task | None = None,
                recorder=None, observed=None, prior=None) -> "Trainer":
        """A trainer that continues after ``checkpoint.step`` exactly as the original run would have.

        ``prior`` and ``observed`` (the ``(labels, U, features)`` of the training queries up to the
        checkpoint, in order) are shown to a method that learns from queries first, as the original
        run showed them (see :mod:`labpgt.runs`).
        """
        trainer = cls(config, reservoir, task=task, recorder=recorder, prior=prior)
        for labels, U, features in observed or ():
            trainer.method.observe(labels, U, features)
        trainer.load_state(checkpoint)
        state = checkpoint.trainer_state
        trainer.queries.update({k: int(v) for k, v in state["queries"].items()})
        trainer.history = [dict(h) for h in state["history"]]
        trainer.measure_seconds = float(state.get("measure_seconds", 0.0))
        trainer.run_seconds = float(state.get("run_seconds", 0.0))
        trainer.queries_per_sample = float(state.get("queries_per_sample", 0.0))
        trainer.step = int(checkpoint.step) + 1
        trainer.started = True
        return trainer

    def load_state(self, checkpoint: Checkpoint) -> None:
        """Take the numerical state of ``checkpoint``: parameters, optimizer and method state, every RNG
        state and the learning rate (the counters and the history stay this trainer's)."""
        self.params = {k: np.array(v, dtype=np.float64) for k, v in checkpoint.params.items()}
        self.optimizer.load_state_arrays(checkpoint.optimizer_state)
        self.batch_rng.bit_generator.state = checkpoint.rng_states["batches"]
        self.method.set_state(checkpoint.rng_states["method"])
        self.method.load_state_arrays(checkpoint.method_state)
        self.reservoir.set_rng_state(checkpoint.rng_states.get("reservoir", {}))
        self.lr = float(checkpoint.trainer_state["lr"])
        self.feature_moments = {int(k): tuple(np.asarray(a, dtype=np.float64) for a in v)
                                for k, v in checkpoint.trainer_state.get("feature_moments", {}).items()}
