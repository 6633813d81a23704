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
recorded under step 0. A checkpoint follows every ``checkpoint_every`` steps that measured something
(and the last step): a step that measured nothing (one a method took on its twin) protects no
measurement, and resume recomputes it bit-identically from the checkpoint before it.

A drifting ring moves its features away from the standardisation the calibration froze. With
``follow_ring = N`` the trainer keeps running moments of every physical layer's training features
and every N steps moves the standardisation to them, compensating the linear map that reads it
(:meth:`labpgt.network.Network.follow`): the loss of the present parameters does not change, only
the conditioning of what follows. ``ring_drift = False`` holds the embedded simulated ring's
temperature and field still (every other behaviour of the real ring stays on): drift on and off are
one benchmark axis (``--set ring_drift=true,false``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from labpgt.architectures import ModelSpec, TrainingData, build_network
from labpgt.errors import UserError
from labpgt.evaluation import Evaluation, TargetLook
from labpgt.methods import METHODS, MethodSettings, SteppedSettings, method_class
from labpgt.optimizers import Optimizer, schedule_factor
from labpgt.recording import Checkpoint, NullRecorder, QueryLabels
from labpgt.reservoirs import RESERVOIRS, ReservoirSettings, RingSettings, reservoir_kind, reservoir_settings
from labpgt.settings import Declared, check, declared, fields_of, setting
from labpgt.tasks import TASKS, Task, load_final_test, load_task, task_dimensions

TRAINING_ROLES = ("calibration", "baseline", "plus", "minus")
EVALUATION_ROLES = ("eval", "test")  # during the run; the final test of a validation run
FOLLOW_RATE = 0.05  # weight of each measurement in the running feature moments of ``follow_ring``
DEFAULT_METHOD = "node"


def trainable_parameters(config: TrainConfig) -> int:
    """How many trainable parameters the network of ``config`` has, from its task, model and reservoir's
    widths (nothing measured, nothing connected)."""
    n_inputs, n_classes = task_dimensions(config.task)
    input_width, feature_width = reservoir_kind(config.reservoir.name).widths(config)
    counted = dataclasses.replace(config.model, encoder_init="random")  # the same shapes, nothing fitted
    return build_network(counted, n_inputs, n_classes, input_width, feature_width, 0).n_params


@dataclass(frozen=True)
class TrainConfig:
    """Everything needed to rerun a training: the run's own settings and four groups of settings, each declared
    where it is used — the training method's (``method``, an instance of the method's ``Settings``), the
    network's (``model``, :class:`~labpgt.architectures.ModelSpec`), the reservoir kind's (``reservoir``) and
    the evaluation policy (``evaluation``, :class:`~labpgt.evaluation.Evaluation`).

    Every setting has a flat name, unique among the groups a run chooses: ``TrainConfig.of(**settings)``
    builds a config from them as the command line, the GUI, a benchmark variant and a notebook give them
    (``method`` and ``reservoir`` choose the kinds; a setting of another kind is refused in one line),
    :meth:`to_dict` gives them back as a session records them, and :meth:`from_dict` reads a record, those
    of sessions recorded before the groups existed included (whose every setting of every method was recorded:
    those of other kinds are dropped). ``resolved()`` fills what is derived (``None``: the steps of a
    forward-only method, the evaluation cadence and budget, SPSA's A).
    """

    task: str = setting("digits", "the task", choices=TASKS)
    seed: int = setting(
        0,
        "seed of everything random in the run: initialisation, batches, perturbations and the embedded simulated ring",
        minimum=0,
        maximum=2**31 - 1,
    )
    follow_ring: int = setting(
        0,
        "every N steps move the feature standardisation to running feature moments, the "
        "loss unchanged (for a drifting ring; 0: frozen at calibration)",
        minimum=0,
        label="Follow the ring's drift every N steps",
    )
    checkpoint_every: int = setting(
        1,
        "steps that measured between checkpoints (a step that measured nothing, such "
        "as one taken on a twin, is recomputed on resume)",
        minimum=1,
    )
    method: MethodSettings = field(default_factory=lambda: METHODS[DEFAULT_METHOD].Settings())
    model: ModelSpec = field(default_factory=ModelSpec)
    reservoir: ReservoirSettings = field(default_factory=RingSettings)
    evaluation: Evaluation = field(default_factory=Evaluation)

    def __post_init__(self):
        check(self)
        method_class(self.method.name).check_config(self)

    # ---- the flat namespace
    @classmethod
    def groups(cls, method: str, reservoir: str) -> dict[str, type]:
        """The settings classes a run of ``method`` on ``reservoir`` is made of, by group (``run``: its own)."""
        return {
            "run": cls,
            "method": method_class(method).Settings,
            "model": ModelSpec,
            "reservoir": reservoir_kind(reservoir).Settings,
            "evaluation": Evaluation,
        }

    @classmethod
    def of(cls, **settings) -> TrainConfig:
        """A config from flat settings by name (``method`` and ``reservoir`` choose the kinds, their defaults
        node and ring-sim); a setting that belongs to another kind, or to none, is refused in one line."""
        return cls._from_flat(settings, lenient=False)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A config as a session records it (:meth:`to_dict`), or as sessions recorded before the settings
        were grouped recorded it (every setting of every method: those of other kinds are dropped)."""
        # recorded before final_test: never measured; before twin_noise: a dyna's twin steps without noise
        return cls._from_flat({"final_test": False, "twin_noise": 0.0, **values}, lenient=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        return cls.from_dict(json.loads(text))

    @classmethod
    def _from_flat(cls, values: dict, lenient: bool) -> TrainConfig:
        values = dict(values)
        method = values.pop("method", DEFAULT_METHOD)
        reservoir = values.pop("reservoir", RingSettings.kind)
        groups = cls.groups(method, reservoir)
        routed: dict[str, dict] = {name: {} for name in groups}
        unknown, foreign = [], []
        for key, value in values.items():
            owner = _group_declaring(groups, key)
            if owner is not None:
                group, d = owner
                routed[group][d.name] = value
            elif not _declared_anywhere(key):
                unknown.append(key)
            elif value is not None and not lenient:
                foreign.append(key)
        if unknown:
            raise UserError(f"unknown training settings: {', '.join(sorted(unknown))}")
        if foreign:
            key = foreign[0]
            raise UserError(
                f"{key} is a setting of {', '.join(_owners(key))}; it cannot apply to "
                f"{method if _owners(key) & set(METHODS) else reservoir}"
            )
        return cls(
            **routed["run"],
            method=groups["method"](**routed["method"]),
            model=ModelSpec(**routed["model"]),
            reservoir=reservoir_settings(reservoir, routed["reservoir"]),
            evaluation=Evaluation(**routed["evaluation"]),
        )

    def to_dict(self) -> dict:
        """The flat settings of this run, as a session records them (JSON-able)."""
        out: dict = {
            "method": self.method.name,
            "reservoir": self.reservoir.name,
            "steps": self.method.steps,
        }  # a readout's one step too: what the session plans
        for group in (self, self.method, self.model, self.reservoir, self.evaluation):
            kind: type = type(group)
            for d in fields_of(kind):
                value = getattr(group, d.name)
                out[d.key] = list(value) if isinstance(value, tuple) else value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    # ---- what follows from the settings
    def resolved(self) -> TrainConfig:
        """A copy with everything derived given: the method's (a forward-only method's steps grow with the
        network's trainable parameters, :meth:`~labpgt.methods.Method.default_steps`) and the evaluation's."""
        method = self.method.resolved(lambda: trainable_parameters(self))
        assert method.steps is not None, "a method's resolved settings give its steps"
        return dataclasses.replace(self, method=method, evaluation=self.evaluation.resolved(method.steps))

    @property
    def steps(self) -> int:
        """The steps the run makes: its method's, once :meth:`resolved` has derived them."""
        steps = self.method.steps
        if steps is None:
            raise ValueError(f"{self.method.name}'s steps follow from the network: resolve the config first")
        return steps


def _group_declaring(groups: dict[str, type], key: str) -> tuple[str, Declared] | None:
    """The group whose settings class declares the flat setting ``key``, and its declaration (None: no group)."""
    for name, group in groups.items():
        found = declared(group, key)
        if found is not None:
            return name, found
    return None


def _owners(key: str) -> set[str]:
    """The kinds (methods, reservoirs) whose settings include ``key``."""
    return {name for name, m in METHODS.items() if declared(m.Settings, key)} | {
        name.rstrip(":") for name, k in RESERVOIRS.items() if declared(k.Settings, key)
    }


def _declared_anywhere(key: str) -> bool:
    return bool(_owners(key)) or any(declared(group, key) for group in (TrainConfig, ModelSpec, Evaluation))


class Measurer:
    """``measure(layer, U, rows)`` as the trainer hands it to a method and the network for one step: the rows'
    batch positions index ``samples`` (the training samples of the batch, or the held-out split's offset
    indices); :meth:`of` measures other samples at the same step (a method that chooses what to measure)."""

    def __init__(self, measure_labelled: Callable[[QueryLabels, np.ndarray], np.ndarray], step: int, samples):
        self._measure = measure_labelled
        self.step = int(step)
        self.samples = np.asarray(samples)

    def __call__(self, layer: int, U: np.ndarray, rows) -> np.ndarray:
        labels = QueryLabels(
            self.step,
            rows.role,
            rows.direction,
            self.samples[rows.position],
            np.full(len(rows), layer, dtype=np.int64),
            rows.token,
        )
        return self._measure(labels, U)

    def of(self, samples) -> Measurer:
        """The same step's measure for the training samples ``samples`` (batch position i is ``samples[i]``)."""
        return Measurer(self._measure, self.step, samples)


class Trainer:
    """Trains ``config.method`` on ``task`` through ``reservoir``; ``run()`` completes the remaining steps."""

    def __init__(self, config: TrainConfig, reservoir, task: Task | None = None, recorder=None, prior=None):
        """``prior``: ``(U, features)`` measured before the run, for a method that learns from queries."""
        self.config = c = config.resolved()
        self.reservoir = reservoir
        self.task = task if task is not None else load_task(c.task, c.seed, holdout=c.evaluation.holdout)
        self.recorder = recorder if recorder is not None else NullRecorder()
        stepped = c.method if isinstance(c.method, SteppedSettings) else None
        if stepped is not None and stepped.batch_size > len(self.task.y_train):
            raise UserError(
                f"batch_size {stepped.batch_size} exceeds the {len(self.task.y_train)} training samples of {c.task}"
            )
        method = method_class(c.method.name)
        method.check(c, reservoir)
        self.network = build_network(
            c.model,
            self.task.n_inputs,
            self.task.n_classes,
            reservoir.input_width,
            reservoir.feature_width,
            c.seed,
            TrainingData(self.task.x_train, self.task.y_train),
        )
        self.params = dict(self.network.initial_params)
        self.method = method(c, reservoir)
        self.method.use_training_split(self.task.x_train, self.task.y_train)
        self.prior_rows = 0  # pairs measured before the run that the method learns from
        if prior is not None:
            self.add_prior(*prior)
        # a method fitted in closed form steps no optimizer; its checkpoints hold plain SGD's (empty) state
        self.optimizer = Optimizer(
            stepped.optimizer if stepped is not None else "sgd",
            self._trainable(),
            stepped.clip if stepped is not None else 0.0,
        )
        self.batch_rng = np.random.default_rng([c.seed, 3])
        n_train, n_held = len(self.task.y_train), len(self.task.y_test)
        drawn = np.random.default_rng([c.seed, 5]).permutation(n_train)
        e = c.evaluation
        assert e.eval_train_samples is not None, "a resolved config gives its evaluation's training samples"
        self.eval_train_index = np.sort(drawn[: e.eval_train_samples])
        self.subset_train_index = np.sort(drawn[: min(e.eval_subset, e.eval_train_samples)])
        self.subset_held_index = np.sort(np.random.default_rng([c.seed, 6]).permutation(n_held)[: e.eval_subset])
        self.queries_per_sample = 0.0  # queries one sample costs a forward pass (known after calibration)
        self.lr = float(stepped.lr) if stepped is not None else 0.0
        self.step = 0  # number of completed steps
        self.queries = {role: 0 for role in TRAINING_ROLES + EVALUATION_ROLES}
        self.history: list[dict] = []
        self.measure_seconds = 0.0
        self.run_seconds = 0.0  # wall time inside run(), over every resume
        self.feature_moments: dict = {}  # layer -> running (mean, mean square) of its features (follow_ring)
        self.started = False

    def add_prior(self, U: np.ndarray, features: np.ndarray) -> None:
        """Pairs measured before the run (earlier sessions of the same bench), for a method that learns from
        them; counted apart from the run's own queries (:attr:`prior_rows`)."""
        self.method.add_prior(U, features)
        self.prior_rows += len(U)

    def _trainable(self) -> dict:
        return {n: self.params[n] for n in self.network.trainable_names}

    @property
    def stepped_settings(self) -> SteppedSettings:
        """The settings of a method that steps an optimizer over batches: every method not fitted in closed form."""
        settings = self.config.method
        assert isinstance(settings, SteppedSettings), f"{settings.name} steps no optimizer"
        return settings

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
            self.feature_moments[int(layer)] = (
                batch if old is None else tuple((1 - FOLLOW_RATE) * o + FOLLOW_RATE * b for o, b in zip(old, batch))
            )

    def _measurer(self, step: int, samples: np.ndarray) -> Measurer:
        return Measurer(self._measure, step, samples)

    # ---- the loop -------------------------------------------------------------------------------
    def run(self, progress=None) -> Trainer:
        """Run until the config's steps are done; ``progress(steps_done, steps)`` after each step is reported
        whole (its row and its checkpoint)."""
        c, steps, e = self.config, self.config.steps, self.config.evaluation
        self._run_started, self._run_seconds_before = time.perf_counter(), self.run_seconds
        if not self.started:
            self._before_start = self.checkpoint()  # what rewind(None) goes back to
            self._start()
        if self.method.closed_form:  # fitted whole in its one step
            if progress is not None:
                progress(self.step, steps)
            return self
        measuring_steps = 0  # steps that measured since the last checkpoint
        while self.step < steps:
            s = self.step
            measured_before = sum(self.queries.values())
            values = self._train_step(s)
            self.step = s + 1
            if c.follow_ring and self.step % c.follow_ring == 0:
                self.params = self.network.follow(self.params, self.feature_moments)
            if self.step == steps:
                values.update(self.evaluate(s))
                values.update(self.evaluate_final_test(s))
            elif self._evaluation_due():
                values.update(
                    self.evaluate(s, subset=bool(e.eval_fraction))
                    if e.eval_target is None
                    else self.evaluate_toward_target(s)
                )
            measuring_steps += sum(self.queries.values()) > measured_before
            checkpoint = measuring_steps >= c.checkpoint_every or self.step == steps
            self._report(s, values, checkpoint=checkpoint)
            measuring_steps = 0 if checkpoint else measuring_steps
            if progress is not None:
                progress(self.step, steps)
        return self

    def _report(self, s: int, values: dict, checkpoint: bool) -> None:
        self.run_seconds = self._run_seconds_before + time.perf_counter() - self._run_started
        values.update(
            training_queries=self.training_queries,
            eval_queries=self.queries["eval"],
            measure_seconds=self.measure_seconds,
        )
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
        batch_size = self.stepped_settings.batch_size
        index = self.batch_rng.choice(len(self.task.y_train), size=batch_size, replace=False)
        X, y = self.task.x_train[index], self.task.y_train[index]
        measure = self._measurer(0, index)
        self.params, _ = self.network.calibrate(self.params, X, measure)
        self.queries_per_sample = self.queries["calibration"] / batch_size
        self.lr = self.method.start(self.network, self.params, X, y, measure, self.lr)
        if c.evaluation.eval_target is None and self._evaluation_affordable():
            self.evaluate(-1, subset=bool(c.evaluation.eval_fraction))

    def _evaluation_due(self) -> bool:
        """Whether the step just completed is evaluated (the last step always is, apart)."""
        e = self.config.evaluation
        assert e.eval_every is not None, "a resolved config gives its evaluation's cadence"
        if self.step % e.eval_every:
            return False
        if e.eval_target is None:
            return self._evaluation_affordable()
        if e.open_target(self._best_whole_accuracy()) is None:
            return False
        last = self.history[-1]["training_queries"] if self.history else 0
        first = len(self.task.y_test) * self.queries_per_sample  # what one evaluation of the whole split costs
        return self.training_queries >= max(first, (1 + e.eval_growth) * last)

    def _best_whole_accuracy(self) -> float | None:
        """The best held-out accuracy measured on the whole split so far (None before any)."""
        held = self.task.holdout
        whole = [h[f"{held}_accuracy"] for h in self.history if f"{held}_samples" not in h]
        return max(whole) if whole else None

    def _evaluation_affordable(self) -> bool:
        """Whether an intermediate evaluation keeps evaluation within ``eval_fraction`` of the training queries."""
        fraction = self.config.evaluation.eval_fraction
        if not fraction:
            return True
        cost = (len(self.subset_train_index) + len(self.subset_held_index)) * self.queries_per_sample
        return self.queries["eval"] + cost <= fraction * self.training_queries

    def _train_step(self, s: int) -> dict:
        settings = self.stepped_settings
        index = self.batch_rng.choice(len(self.task.y_train), size=settings.batch_size, replace=False)
        X, y = self.task.x_train[index], self.task.y_train[index]
        result = self.method.step(self.network, self.params, X, y, self._measurer(s, index))
        lr = self.lr * schedule_factor(settings.lr_schedule, s, self.config.steps) * result.lr_scale
        new, grad_norm = self.optimizer.step(self._trainable(), result.grads, lr)
        self.params.update(new)
        values = {"loss": result.loss, **result.values, "grad_norm": grad_norm, "lr": float(lr)}
        if result.perturbation is not None:
            values["perturbation"] = result.perturbation
        return values

    def _fit_closed_form(self) -> None:
        """A method fitted in one pass (the readout): its one 'step', evaluated and checkpointed."""
        t = self.task
        index = np.arange(len(t.y_train))
        self.params, values, logits = self.method.fit(
            self.network, self.params, t.x_train, t.y_train, self._measurer(0, index)
        )
        self.step = 1
        values.update(self.evaluate(0, train_logits=(index, logits)))
        values.update(self.evaluate_final_test(0))
        self._report(0, values, checkpoint=True)

    # ---- evaluation -----------------------------------------------------------------------------
    def _logits(self, X: np.ndarray, samples: np.ndarray, step: int, role: str = "eval") -> np.ndarray:
        return self.network.forward(self.params, X, self._measurer(step, samples), role=role).logits

    @property
    def measures_final_test(self) -> bool:
        e = self.config.evaluation
        return e.holdout == "validation" and e.final_test

    def evaluate(self, s: int, train_logits=None, subset: bool = False) -> dict:
        """Measure the eval samples of the training split (none when ``eval_train_samples`` is 0) and the whole
        held-out split (role ``eval``); with ``subset``, the budget's fixed subsets of both instead."""
        t = self.task
        step = max(s, 0)
        if train_logits is None:
            idx = self.subset_train_index if subset else self.eval_train_index
            train_logits = (idx, self._logits(t.x_train[idx], idx, step)) if len(idx) else None
        held_idx = self.subset_held_index if subset else np.arange(len(t.y_test))
        logits_held = self._logits(t.x_test[held_idx], len(t.y_train) + held_idx, step)
        return self._record_evaluation(
            train_logits, held_idx, logits_held, {f"{t.holdout}_samples": int(len(held_idx))} if subset else {}
        )

    def evaluate_toward_target(self, s: int) -> dict:
        """Measure held-out samples in a fresh random order, :attr:`Evaluation.eval_chunk` at a time, until the
        open target is implausible or every sample is measured (see :mod:`labpgt.evaluation`)."""
        e, t = self.config.evaluation, self.task
        target = e.open_target(self._best_whole_accuracy())
        assert target is not None, "evaluated toward a target only while one is open (_evaluation_due)"
        n_train, n_held = len(t.y_train), len(t.y_test)
        order = np.random.default_rng([self.config.seed, 8, len(self.history)]).permutation(n_held)
        look, logits = TargetLook(e, target, n_held), []
        while count := look.ask():
            idx = order[look.measured : look.measured + count]
            logits.append(self._logits(t.x_test[idx], n_train + idx, s))
            look.tell(np.argmax(logits[-1], axis=-1) == t.y_test[idx])
        extra = {"eval_target": target}
        if look.measured < n_held:
            extra.update({f"{t.holdout}_samples": look.measured, f"{t.holdout}_upper_bound": look.bound})
        return self._record_evaluation(None, order[: look.measured], np.concatenate(logits), extra)

    def _record_evaluation(self, train_logits, held_idx: np.ndarray, logits_held: np.ndarray, extra: dict) -> dict:
        """Add an evaluation to the history; its losses and accuracies, to record with the step."""
        t = self.task
        held, y_held = t.holdout, t.y_test[held_idx]
        entry: dict[str, float] = {
            "step": self.step,
            "training_queries": self.training_queries,
            "eval_queries": self.queries["eval"],
        }
        if train_logits is not None:
            idx, logits_train = train_logits
            entry["train_loss"] = self.network.loss(logits_train, t.y_train[idx])
        entry[f"{held}_loss"] = self.network.loss(logits_held, y_held)
        if train_logits is not None:
            entry["train_accuracy"] = float(np.mean(np.argmax(logits_train, axis=-1) == t.y_train[idx]))
        entry[f"{held}_accuracy"] = float(np.mean(np.argmax(logits_held, axis=-1) == y_held))
        entry.update(extra)
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
        values = {
            "test_loss": self.network.loss(logits, y_test),
            "test_accuracy": float(np.mean(np.argmax(logits, axis=-1) == y_test)),
        }
        self.history[-1].update(values, test_queries=self.queries["test"])
        return values

    # ---- checkpoints ----------------------------------------------------------------------------
    def checkpoint(self) -> Checkpoint:
        """The state after the last completed step (``step`` = its 0-based index)."""
        rng_states = {
            "batches": self.batch_rng.bit_generator.state,
            "method": self.method.get_state(),
            "reservoir": self.reservoir.get_rng_state(),
        }
        trainer_state = {
            "queries": dict(self.queries),
            "history": [dict(h) for h in self.history],
            "lr": self.lr,
            "measure_seconds": self.measure_seconds,
            "run_seconds": self.run_seconds,
            "steps_done": self.step,
            "queries_per_sample": self.queries_per_sample,
            "feature_moments": {str(k): [np.asarray(a).tolist() for a in v] for k, v in self.feature_moments.items()},
            "observed_rows": self.method.observed_rows(),
        }
        return Checkpoint(
            step=self.step - 1,
            params={k: np.array(v) for k, v in self.params.items()},
            optimizer_state=self.optimizer.state_arrays(),
            rng_states=rng_states,
            trainer_state=json.loads(json.dumps(trainer_state)),
            method_state=self.method.state_arrays(),
        )

    @classmethod
    def restore(
        cls,
        config: TrainConfig,
        reservoir,
        checkpoint: Checkpoint,
        task: Task | None = None,
        recorder=None,
        observed=None,
        prior=None,
        recalled=None,
    ) -> Trainer:
        """A trainer that continues after ``checkpoint.step`` exactly as the original run would have.

        ``prior`` and ``observed`` (the ``(labels, U, features)`` of the training queries up to the
        checkpoint, in order) are shown to a method that learns from queries first, as the original
        run showed them, and ``recalled`` (each recorded step's perturbation) to a method that recalls its
        steps (see :mod:`labpgt.runs`).
        """
        trainer = cls(config, reservoir, task=task, recorder=recorder, prior=prior)
        for labels, U, features in observed or ():
            trainer.method.observe(labels, U, features)
        if recalled is not None:
            trainer.method.recall(recalled)
        trainer.load_state(checkpoint)
        trainer._take_counters(checkpoint)
        return trainer

    def _take_counters(self, checkpoint: Checkpoint) -> None:
        state = checkpoint.trainer_state
        self.queries.update({k: int(v) for k, v in state["queries"].items()})
        self.history = [dict(h) for h in state["history"]]
        self.measure_seconds = float(state.get("measure_seconds", 0.0))
        self.run_seconds = float(state.get("run_seconds", 0.0))
        self.queries_per_sample = float(state.get("queries_per_sample", 0.0))
        self.step = int(checkpoint.step) + 1
        self.started = checkpoint.step >= 0

    def rewind(self, checkpoint: Checkpoint | None) -> None:
        """Back to the state after ``checkpoint`` (None: before the run's first query), to measure again what a
        pause interrupted (:mod:`labpgt.bench.suspenders`): parameters, optimizer, method (what it learnt from
        the queries measured since, forgotten), every RNG and the counters — but not the reservoir's own state:
        its time went on."""
        if checkpoint is None and not self.started:
            return  # nothing measured yet: nothing to go back on
        checkpoint = checkpoint if checkpoint is not None else self._before_start
        reservoir_state = self.reservoir.get_rng_state()
        self.load_state(checkpoint)
        self.reservoir.set_rng_state(reservoir_state)
        self.method.forget_observed_after(int(checkpoint.trainer_state["observed_rows"]))
        self.queries = {role: 0 for role in self.queries}
        self._take_counters(checkpoint)

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
        self.feature_moments = {
            int(k): tuple(np.asarray(a, dtype=np.float64) for a in v)
            for k, v in checkpoint.trainer_state.get("feature_moments", {}).items()
        }
