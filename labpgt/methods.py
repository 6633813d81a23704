"""Training methods as strategies: how the gradient of one batch is obtained through the physical layers.

This module owns the one registry of methods (:data:`METHODS`); nothing outside it branches on a
method's name. A method is one object behind one interface and declares what it needs; it never
knows the architecture — it sees a :class:`~labpgt.network.Network` (forward, backward, flat views of
its parameters) and a ``measure`` callable, and returns gradients.

========  ===============================================================================================
method    the gradient of a batch
========  ===============================================================================================
backprop  exact VJP of a differentiable reservoir (the reference; refused on a measured one)
node      node perturbation at each physical layer's input: measured directional derivatives along
          k orthogonal antithetic directions per row, chained exactly into everything digital
pgt       the paper's estimator over ALL trainable parameters: θ ± δ·PM, PM integer in {−r..r} with
          dropout p, forward passes only, plain SGD by default
pgt-enc   the paper's perturbation applied only to the parameters upstream of the last physical
          layer; the exact gradient of everything after it from the same ± measurements (ablation)
spsa      Spall's simultaneous perturbation (Rademacher directions, standard gain sequences)
dyna      model-based: several steps on an anchored twin for each step measured on the reservoir, which
          measures the samples the twin most needs; checked against node probes (:class:`Dyna`)
readout   classic reservoir computing: everything fixed at its initial value, the linear classifier
          fitted in closed form (ridge, penalty by cross-validation) on one pass over the training set
========  ===============================================================================================

Every method measures a + and its − back to back (the engine interleaves them), so slow drift of a
real ring cancels in their difference. Each method owns a seeded ``numpy.random.Generator``;
``get_state``/``set_state`` capture it as JSON, so a resumed run draws the same perturbations.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

import numpy as np

from labpgt.errors import UserError
from labpgt.estimators import PGT, SPSA, NodePerturbation, hadamard_order
from labpgt.network import Rows
from labpgt.optimizers import LR_SCHEDULES, OPTIMIZERS
from labpgt.settings import check, existing_file, setting

TRAINING_ROWS = ("calibration", "baseline", "plus", "minus")  # the measured pairs a twin learns from

_Settings = TypeVar("_Settings", bound="MethodSettings")
_Stepped = TypeVar("_Stepped", bound="SteppedSettings")


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class MethodSettings:
    """A training method's own settings: each method declares its class (``Method.Settings``) with the
    defaults, bounds, help and choices of what it uses (:mod:`labpgt.settings`); ``name`` is the method's."""

    name: ClassVar[str] = ""

    def __post_init__(self):
        check(self)

    @property
    def steps(self) -> int | None:
        """The steps a run makes (None: derived from the network, until :meth:`resolved`). Every method declares
        them: a setting of :class:`SteppedSettings`, a constant of a method fitted in closed form."""
        raise NotImplementedError(f"{type(self).__name__} declares no steps")

    def resolved(self: _Settings, n_params: Callable[[], int]) -> _Settings:
        """A copy with every derived setting given (``n_params()``: the network's trainable parameters)."""
        return self


@dataclass(frozen=True)
class SteppedSettings(MethodSettings):
    """What every method that steps an optimizer over batches is told."""

    steps: int | None = setting(600, "optimizer steps", minimum=1)
    batch_size: int = setting(32, "samples per step", minimum=1)
    lr: float = setting(0.01, "learning rate", above=0, label="Learning rate")
    optimizer: str = setting("adam", "the optimizer (optax's transformation)", choices=OPTIMIZERS)
    lr_schedule: str = setting(
        "constant",
        "constant, or cosine decay from lr to 0 over the run",
        choices=LR_SCHEDULES,
        label="Learning-rate schedule",
    )
    clip: float = setting(
        0.0, "clip each step's gradient to this global norm (0: off)", minimum=0, label="Gradient clip"
    )

    def resolved(self: _Stepped, n_params: Callable[[], int]) -> _Stepped:
        if self.steps is not None:
            return self
        return dataclasses.replace(self, steps=METHODS[self.name].default_steps(n_params()))


@dataclass
class StepResult:
    """What a method returns for one batch: the loss, a gradient per trainable array, values to record."""

    loss: float
    grads: dict
    values: dict = field(default_factory=dict)
    lr_scale: float = 1.0
    perturbation: np.ndarray | None = None


class Method:
    """The interface. ``Settings`` is the method's own settings class (``config.method`` is one)."""

    name: ClassVar[str]
    Settings: ClassVar[type[MethodSettings]]
    needs_differentiable_reservoir: ClassVar[bool] = False
    closed_form: ClassVar[bool] = False
    learns_from_queries: ClassVar[bool] = False  # its state depends on the training queries it observed
    recalls_its_steps: ClassVar[bool] = False  # its state is rebuilt from what its recorded steps carried (recall)

    @classmethod
    def default_steps(cls, n_params: int) -> int:
        """The steps a run makes when its settings leave them derived (``steps`` None), for a network of
        ``n_params`` trainable parameters."""
        raise NotImplementedError(f"{cls.name} declares its steps")

    @classmethod
    def queries_per_row(cls, settings) -> int:
        """The most queries a step makes per row of its batch (a sample's token at a physical layer): what a run
        is expected to measure, before it measures."""
        return 1

    def __init__(self, config, reservoir):
        self.seed = int(config.seed)
        self.settings = config.method
        self.rng = np.random.default_rng([self.seed, 11])
        self.reservoir = reservoir

    @classmethod
    def check_config(cls, config) -> None:
        """Refuse, with one line, a training setting this method cannot run with."""
        from labpgt.reservoirs import reservoir_kind

        if cls.needs_differentiable_reservoir and not reservoir_kind(config.reservoir.name).differentiable:
            raise UserError(
                f"{cls.name} needs a differentiable reservoir (--reservoir digital); "
                f"{config.reservoir.name} is measured, not differentiated"
            )

    @classmethod
    def check(cls, config, reservoir) -> None:
        """Refuse, with one line, a setting this method cannot run with on this reservoir."""
        if cls.needs_differentiable_reservoir and not getattr(reservoir, "differentiable", False):
            raise UserError(
                f"{cls.name} needs a differentiable reservoir (digital); the ring is measured, not differentiated"
            )

    def use_training_split(self, x: np.ndarray, y: np.ndarray) -> None:
        """The training split, given once before anything else (also on resume), for a method that chooses
        which training samples to measure (it measures them with ``measure.of(samples)``)."""

    def start(self, network, params, X, y, measure, lr: float) -> float:
        """Preliminaries after the calibration batch; returns the learning rate to use."""
        return lr

    def step(self, network, params, X, y, measure) -> StepResult:
        raise NotImplementedError

    def fit(self, network, params, X, y, measure) -> tuple[dict, dict, np.ndarray]:
        """A method fitted in closed form (``closed_form``) instead of stepped: ``(params with the fit, values to
        record, logits of X)``."""
        raise NotImplementedError(f"{self.name} is stepped, not fitted in closed form")

    def observe(self, labels, U, features) -> None:
        """Every query the run measures, in order (a method that ``learns_from_queries`` overrides this;
        its state must depend only on the sequence of training-role rows, not on how they were grouped)."""

    def recall(self, perturbations: list) -> None:
        """What each recorded step before a resume carried as its ``perturbation`` (None where it carried none),
        by step from step 0 (a method that ``recalls_its_steps`` overrides this; given before its state)."""

    def add_prior(self, U, features) -> None:
        """Pairs measured before the run (earlier sessions of the same bench), given before its first step."""
        raise UserError(f"{self.name} learns from no earlier measurements")

    def observed_rows(self) -> int:
        """How many measured rows (prior pairs included) the method has learnt from (0 for one that learns from
        none)."""
        return 0

    def forget_observed_after(self, rows: int) -> None:
        """Forget every row observed after the first ``rows`` (a step a pause interrupted is measured again)."""

    def get_state(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]

    def state_arrays(self) -> dict:
        return {}

    def load_state_arrays(self, arrays: dict) -> None:
        pass


# --------------------------------------------------------------------------- through the layer
class ThroughTheLayer(Method):
    """Methods that backpropagate, each supplying the physical layers' VJP: one baseline forward pass."""

    _perturbations: list[np.ndarray]  # the step's probe directions, one array per physical layer measured

    def step(self, network, params, X, y, measure) -> StepResult:
        self._perturbations = []
        tape = network.forward(params, X, measure, role="baseline")
        loss, grads = network.gradients(
            params, tape, y, lambda layer, U, F, g_F, rows: self.physical_vjp(layer, U, F, g_F, rows, measure)
        )
        perturbation = np.stack(self._perturbations[::-1]) if self._perturbations else None
        return StepResult(loss, grads, perturbation=perturbation)

    def physical_vjp(self, layer, U, F, g_F, rows: Rows, measure) -> np.ndarray:
        raise NotImplementedError


class Backprop(ThroughTheLayer):
    name = "backprop"
    needs_differentiable_reservoir = True

    @dataclass(frozen=True)
    class Settings(SteppedSettings):
        lr_schedule: str = "cosine"

    def physical_vjp(self, layer, U, F, g_F, rows, measure):
        return self.reservoir.vjp(U, g_F)


@dataclass(frozen=True)
class ProbeSettings(SteppedSettings):
    """A method that probes the reservoir at its input (node, node-jac): the probe's size, and the cosine
    schedule its defaults were tuned with."""

    lr_schedule: str = "cosine"
    delta: float = setting(
        0.05,
        "probe size δ at the reservoir's input (inputs live in [0, 1])",
        above=0,
        maximum=0.5,
        label="Probe size δ",
    )


class Node(ThroughTheLayer):
    """Node perturbation; the estimator's maths is in :class:`labpgt.estimators.NodePerturbation`.

    Per row r (every sample, every token) the 2k probes c_r ± δ·v_rj are measured back to back:
    (r, j=0, +), (r, 0, −), (r, 1, +), … — the instruments stay near one operating point per row.
    """

    name = "node"

    @dataclass(frozen=True)
    class Settings(ProbeSettings):
        directions: int = setting(4, "orthogonal ± probe directions per row, k", minimum=1)
        distribution: str = setting(
            "hadamard", "how the probe directions are drawn", choices=NodePerturbation.DISTRIBUTIONS
        )

    def __init__(self, config, reservoir):
        super().__init__(config, reservoir)
        m = config.method
        self.estimator = NodePerturbation(
            delta=m.delta, directions=m.directions, distribution=m.distribution, seed=config.seed
        )
        self.rng = self.estimator.rng

    @classmethod
    def check(cls, config, reservoir) -> None:
        super().check(config, reservoir)
        m = config.method
        if m.distribution == "hadamard" and m.directions > hadamard_order(reservoir.input_width):
            raise UserError(
                f"node with hadamard directions allows at most {hadamard_order(reservoir.input_width)} "
                f"directions for input width {reservoir.input_width}, got {m.directions}"
            )

    def physical_vjp(self, layer, U, F, g_F, rows, measure):
        return node_vjp(self.estimator, layer, U, g_F, rows, measure, self._perturbations)

    @classmethod
    def queries_per_row(cls, settings) -> int:
        return 1 + 2 * settings.directions  # the baseline and 2k probes (the twin's probe steps too)


def node_probe(estimator: NodePerturbation, layer, U, rows: Rows, measure, perturbations: list):
    """Measure the 2k probes per row of node perturbation, a row's probes back to back (see :class:`Node`).

    Returns ``(probes (N, k, 2, d), features (N, k, 2, m))`` — index 0/1 of the third axis is +/−;
    appends the directions used to ``perturbations``.
    """
    asked = estimator.ask(U)  # values (2k, N, d): plus_0, minus_0, plus_1, …
    k, (N, d) = estimator.directions, U.shape
    probes = asked.values.reshape(k, 2, N, d).transpose(2, 0, 1, 3)
    probe_rows = Rows(
        position=np.repeat(rows.position, 2 * k),
        token=np.repeat(rows.token, 2 * k),
        role=np.tile(np.array(["plus", "minus"]), N * k),
        direction=np.tile(np.repeat(np.arange(k), 2), N),
    )
    F = np.asarray(measure(layer.index, probes.reshape(N * 2 * k, d), probe_rows)).reshape(N, k, 2, -1)
    perturbations.append(estimator.last_perturbation)
    return probes, F


def node_vjp(estimator: NodePerturbation, layer, U, g_F, rows: Rows, measure, perturbations: list) -> np.ndarray:
    """dL/dU (N, d) from 2k measured probes per row (see :class:`Node`); appends the directions used."""
    _, F = node_probe(estimator, layer, U, rows, measure, perturbations)
    return estimator.tell(F[:, :, 0].transpose(1, 0, 2), F[:, :, 1].transpose(1, 0, 2), g_F)


class Twin(Node):
    """Forward on the reservoir, backward through a twin learned from the run's own measurements.

    The twin (:class:`labpgt.twin.TwinModel`) learns from every training query measured so far in the
    run (calibration, baseline and probes; never an evaluation query) and from any prior pairs of
    earlier sessions of the same bench (``twin_from``); it is refitted after every step, warm-started,
    by ``twin_fit_iterations`` Adam steps on minibatches half drawn from the whole pool and half from
    its most recent :data:`RECENT_ROWS` rows (where the network operates now; what a drifting ring
    does now). A step's forward pass measures one query per sample and token; the twin has not been
    fitted on those yet, so its error on them (:func:`labpgt.twin.standardised_error`) is an honest
    held-out error, recorded every step as ``twin_error``.

    Policy (measured, see benchmarks/RESULTS.md). A *probe step* measures node perturbation's 2k
    probes per row and uses node's VJP; it also checks the twin where it matters, on the loss: with
    s_j the measured directional derivative of the loss along probe j and ŝ_j the twin's (its ± pair
    at the same δ), ``twin_gradient_error`` ρ = Σ(ŝ − s)²/Σs² estimates the twin gradient's relative
    squared error. Node's own estimate with k of d directions has relative squared error d/k − 1 (1
    for the ring's k = 4 of d = 8), so the twin is *trusted* while ρ < ``twin_tolerance`` (default 1:
    no worse than the probes it replaces). A check whose measured slopes are all zero (the first
    step: a classifier still at zero sends no gradient back to the ring) proves nothing: the twin
    stays untrusted and the next step probes again. A trusted twin's VJP is used (one query per row) until the
    next check, every ``twin_check_every`` steps, or until drift: a held-out error above
    :data:`DRIFT_FACTOR` times the median of the last ten. Probing starts the run (the twin knows
    nothing yet). Recorded per step: ``twin_error``, ``twin_used`` (1: the twin's VJP, 0: probes),
    and on probe steps ``twin_gradient_error``.
    """

    name = "twin"
    learns_from_queries = True
    RECENT_ROWS = 2048
    DRIFT_FACTOR = 2.0

    _checks: list[tuple[np.ndarray, np.ndarray]]  # the step's probed slopes of the loss: (measured, the twin's)

    @dataclass(frozen=True)
    class Settings(Node.Settings):
        twin_width: int = setting(64, "width of the twin's two hidden layers", minimum=1)
        twin_tolerance: float = setting(
            1.0, "largest relative squared gradient error the twin may have, checked on probes", above=0
        )
        twin_fit_iterations: int = setting(30, "Adam steps of the twin's refit after every step", minimum=1)
        twin_check_every: int = setting(25, "steps between the twin's checks against node probes", minimum=1)
        twin_from: tuple[str, ...] = setting(
            (),
            "start from the measurements of earlier sessions of the same bench",
            parse=existing_file("--twin-from"),
            gui=False,
        )

    def __init__(self, config, reservoir):
        from labpgt.twin import TwinModel, TwinSpec

        super().__init__(config, reservoir)
        m = config.method
        self.model = TwinModel(
            TwinSpec(reservoir.input_width, reservoir.feature_width, hidden=(m.twin_width, m.twin_width)), config.seed
        )
        self.tolerance = float(m.twin_tolerance)
        self.fit_iterations = int(m.twin_fit_iterations)
        self.check_every = int(m.twin_check_every)
        self._pool_U, self._pool_F = [], []
        self.trusted = False  # the twin passed its last check
        self.twin_steps = 0  # twin steps since the last probe step
        self.recent_errors: list[float] = []

    # ---- what it learns from
    def add_prior(self, U, F) -> None:
        """Pairs measured before this run (earlier sessions of the same bench); fitted on from the first step."""
        self._pool_U.append(np.asarray(U, dtype=np.float64))
        self._pool_F.append(np.asarray(F, dtype=np.float64))

    def observe(self, labels, U, features) -> None:
        training = np.isin(labels.role, TRAINING_ROWS)
        if training.any():
            self._pool_U.append(np.asarray(U)[training])
            self._pool_F.append(np.asarray(features)[training])

    def observed_rows(self) -> int:
        return sum(len(U) for U in self._pool_U)

    def forget_observed_after(self, rows: int) -> None:
        if self._pool_U:
            self._pool_U = [np.concatenate(self._pool_U)[:rows]]
            self._pool_F = [np.concatenate(self._pool_F)[:rows]]

    def _refit(self) -> None:
        if len(self._pool_U) > 1:
            self._pool_U, self._pool_F = [np.concatenate(self._pool_U)], [np.concatenate(self._pool_F)]
        if self._pool_U:
            U, F = self._pool_U[0], self._pool_F[0]
            self.model.fit(U, F, self.fit_iterations, recent=self.RECENT_ROWS)

    def start(self, network, params, X, y, measure, lr):
        self._refit()  # on the calibration batch (and any prior)
        return lr

    # ---- a step
    def step(self, network, params, X, y, measure) -> StepResult:
        self._perturbations, self._checks = [], []
        tape = network.forward(params, X, measure, role="baseline")
        error = float(self.model.error(np.concatenate(tape.inputs), np.concatenate(tape.features)))
        drifted = len(self.recent_errors) >= 3 and error > self.DRIFT_FACTOR * float(np.median(self.recent_errors))
        self.recent_errors = (self.recent_errors + [error])[-10:]
        use_twin = self.trusted and self.twin_steps < self.check_every and not drifted
        vjp = self._twin_vjp if use_twin else functools.partial(self._probe_vjp, measure=measure)
        loss, grads = network.gradients(params, tape, y, vjp)
        values = {"twin_error": error, "twin_used": int(use_twin)}
        if use_twin:
            self.twin_steps += 1
        else:
            measured, predicted = self._checked_slopes()
            self.twin_steps = 0
            if np.any(measured):
                values["twin_gradient_error"] = rho = float(np.sum((predicted - measured) ** 2) / np.sum(measured**2))
                self.trusted = rho < self.tolerance
            else:  # no slope to compare (e.g. a classifier still at zero): no evidence
                self.trusted = False
        self._refit()
        perturbation = np.stack(self._perturbations[::-1]) if self._perturbations else None
        return StepResult(loss, grads, values=values, perturbation=perturbation)

    def _twin_vjp(self, layer, U, F, g_F, rows):
        return self.model.vjp(U, g_F)

    def _checked_slopes(self) -> tuple[np.ndarray, np.ndarray]:
        """The step's probed slopes of the loss, measured and the twin's, over every layer checked."""
        if not self._checks:
            return np.zeros(0), np.zeros(0)
        measured, predicted = zip(*self._checks)
        return np.concatenate(measured), np.concatenate(predicted)

    def _probe_vjp(self, layer, U, F, g_F, rows, measure):
        probes, measured = node_probe(self.estimator, layer, U, rows, measure, self._perturbations)
        predicted = self.model.predict(probes.reshape(-1, probes.shape[-1])).reshape(measured.shape)
        slope = np.einsum("nkm,nm->nk", measured[:, :, 0] - measured[:, :, 1], g_F)
        twin_slope = np.einsum("nkm,nm->nk", predicted[:, :, 0] - predicted[:, :, 1], g_F)
        self._checks.append((slope.ravel(), twin_slope.ravel()))
        return self.estimator.tell(measured[:, :, 0].transpose(1, 0, 2), measured[:, :, 1].transpose(1, 0, 2), g_F)

    # ---- state
    def get_state(self) -> dict:
        return {
            "rng": self.rng.bit_generator.state,
            "twin": self.model.get_state(),
            "trusted": self.trusted,
            "twin_steps": self.twin_steps,
            "recent_errors": list(self.recent_errors),
        }

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.model.set_state(state["twin"])
        self.trusted, self.twin_steps = bool(state["trusted"]), int(state["twin_steps"])
        self.recent_errors = [float(e) for e in state["recent_errors"]]

    def state_arrays(self) -> dict:
        return self.model.state_arrays("twin.")

    def load_state_arrays(self, arrays: dict) -> None:
        self.model.load_state_arrays(arrays, "twin.")


class Dyna(Twin):
    """Model-based training (Dyna): ``model_steps`` optimizer steps against the twin for each step measured.

    The twin (:class:`Twin`'s, learned from the run's training queries and any ``twin_from`` pairs) is
    used *anchored* (:class:`labpgt.twin.Anchors`): a step on the twin sees, for each row of its batch,
    the features last measured at that sample's row plus the twin's change from there to the row's
    present input (the twin's own prediction for a row never measured), and takes its backward pass
    through the twin. Such a step measures nothing.

    A *measured step* measures what the twin most needs: the ``batch_size`` training samples whose
    present inputs have moved farthest from their anchors (every physical layer and token of a sample;
    the present inputs from a pass on the anchored twin, no query), samples never measured first, ties
    drawn at random. It measures them forward (role baseline), records the twin's held-out error on them
    (``twin_error``, as :class:`Twin` does), steps on the loss of those measured features with the twin's
    backward pass, and refits the twin; the next ``model_steps`` steps are taken on the twin. Recorded
    per step: ``measured`` (1 on the reservoir, 0 on the twin) and ``twin_used`` (the twin's backward pass).

    The check (measured with node's probes, as :class:`Twin`'s): on the first measured step whose loss
    sends a gradient back to the reservoir, every ``twin_check_every`` measured steps after, and whenever
    the held-out error jumps (drift, ``DRIFT_FACTOR``), ``twin_check_rows`` rows of the measured batch are
    probed (node's 2k ± probes each, roles plus/minus), giving the slopes s of the loss along the probes;
    the twin predicts them, ŝ. Recorded: ``twin_gradient_error`` ρ = |ŝ − s|²/|s|² (:class:`Twin`'s
    measure) and ``twin_gradient_cosine`` ŝ·s/(|ŝ||s|). The twin stays in use while the cosine is
    positive — its gradient is a descent direction on the measured slopes, which is what steps of an
    optimizer that normalises its steps (Adam) need. (ρ, the twin's criterion, also weighs the slopes'
    size: the twin, a smooth fit, predicts them two to three times smaller than the probes measure them,
    whose measurement noise is about as large as the slope itself at δ = 0.05, and ρ then stays near 1
    however well the twin points; measured in benchmarks/RESULTS.md.) When the cosine is not positive,
    training falls back to measuring: every step is a probe step (the batch's forward pass and node's
    probes of every row measured, node's backward pass, a check of every row), with no step on the
    twin, until a check passes again.

    *Noise on the twin's features* (``twin_noise``). The ring measures a feature with noise of the order of
    its spread over inputs (a repeated input on the simulated ring: 0.08 to 1.4 of that spread, median 0.7),
    and the twin predicts the noiseless mean: a network stepped on the twin alone learns to lean on features the
    ring measures badly, and measures worse than the twin promised (benchmarks/RESULTS.md section 21). A step
    on the twin therefore sees each feature with Gaussian noise of ``twin_noise`` times the twin's residual
    standard deviation for that feature over the latest :data:`RESIDUAL_ROWS` measured training pairs (what
    the twin gets wrong, model and measurement together), drawn from a generator of the run's seed that
    checkpoints carry. The choice of what to measure uses the twin without noise.

    A checkpoint follows every step that measured (:mod:`labpgt.trainer`); the steps on the twin between
    two are recomputed on resume from the same state and the same recorded queries.
    """

    name = "dyna"
    RESIDUAL_ROWS = 512

    @dataclass(frozen=True)
    class Settings(Twin.Settings):
        steps: int | None = setting(1680, "optimizer steps, on the reservoir and on the twin", minimum=1)
        model_steps: int = setting(
            20,
            "optimizer steps taken on the twin for each step measured",
            minimum=0,
            label="Steps on the twin per measured step",
        )
        twin_check_every: int = setting(20, "measured steps between the twin's checks against node probes", minimum=1)
        twin_check_rows: int = setting(8, "rows of a measured batch a check probes", minimum=1)
        twin_noise: float = setting(
            1.0,
            "noise on the features of a step on the twin, in units of the twin's residual spread on the "
            "latest measured pairs (0: none)",
            minimum=0,
            label="Noise on the twin's features",
        )

    def __init__(self, config, reservoir):
        super().__init__(config, reservoir)
        m = config.method
        self.model_steps, self.check_rows = int(m.model_steps), int(m.twin_check_rows)
        self.noise = float(m.twin_noise)
        self.choice_rng = np.random.default_rng([self.seed, 29])
        self.noise_rng = np.random.default_rng([self.seed, 31])
        self._spread: np.ndarray | None = None  # the twin's residual spread per feature, since its last refit
        self.trusted: bool | None = None  # None: not checked yet
        self.twin_steps = self.model_steps  # twin steps since the last measured step: the first step measures
        self.since_check = 0  # measured steps since the last check
        self.anchors = None

    def use_training_split(self, x, y) -> None:
        from labpgt.twin import Anchors

        self.x_train, self.y_train = np.asarray(x), np.asarray(y)
        self.anchors = Anchors(len(self.y_train))

    def observe(self, labels, U, features) -> None:
        first = self.observed_rows()
        super().observe(labels, U, features)
        training = np.isin(labels.role, TRAINING_ROWS)
        self.anchors.observe(labels, U, features, first + np.cumsum(training) - 1)

    def forget_observed_after(self, rows: int) -> None:
        super().forget_observed_after(rows)
        self.anchors.forget_after(rows)
        self._spread = None

    def _refit(self) -> None:
        super()._refit()
        self._spread = None

    def _residual_spread(self) -> np.ndarray:
        """The twin's residual standard deviation per feature over the latest measured training pairs."""
        if not self.observed_rows():  # nothing measured yet: nothing known of the noise
            return np.zeros(self.model.spec.feature_width)
        if self._spread is None:
            U = np.concatenate(self._pool_U)[-self.RESIDUAL_ROWS :]
            F = np.concatenate(self._pool_F)[-self.RESIDUAL_ROWS :]
            self._spread = np.std(self.model.predict(U) - F, axis=0)
        return self._spread

    # ---- a step
    def step(self, network, params, X, y, measure) -> StepResult:
        if self.trusted is not False and self.twin_steps < self.model_steps:
            return self._twin_step(network, params, X, y, measure.samples)
        return self._measured_step(network, params, measure)

    def _anchored(self, samples: np.ndarray, noisy: bool = False):
        """A ``measure`` that measures nothing: the anchored twin's features for the rows of ``samples``, with
        ``noisy`` the noise of ``twin_noise`` on them."""
        spread = self.noise * self._residual_spread() if noisy and self.noise else None

        def imagined(layer: int, U, rows):
            features = self.anchors.predict(self.model, layer, samples[rows.position], rows.token, U)
            if spread is not None:
                features = features + spread * self.noise_rng.standard_normal(features.shape)
            return features

        return imagined

    def _twin_step(self, network, params, X, y, samples) -> StepResult:
        self.twin_steps += 1
        tape = network.forward(params, X, self._anchored(np.asarray(samples), noisy=True), role="baseline")
        loss, grads = network.gradients(params, tape, y, self._twin_vjp)
        return StepResult(loss, grads, values={"measured": 0, "twin_used": 1})

    def _most_needed(self, network, params) -> np.ndarray:
        """The ``batch_size`` training samples whose inputs moved farthest from their anchors (never measured
        first; ties at random), in that order."""
        everyone = np.arange(len(self.y_train))
        tape = network.forward(params, self.x_train, self._anchored(everyone))
        need = np.zeros(len(everyone))
        for layer, U, rows in zip(network.layers, tape.inputs, tape.rows):
            np.add.at(need, rows.position, self.anchors.staleness(layer.index, rows.position, rows.token, U))
        order = np.lexsort((self.choice_rng.random(len(need)), -need))
        return np.sort(order[: self.settings.batch_size])

    def _measured_step(self, network, params, measure) -> StepResult:
        chosen = self._most_needed(network, params)
        measure = measure.of(chosen)
        X, y = self.x_train[chosen], self.y_train[chosen]
        self._perturbations, self._checks = [], []
        tape = network.forward(params, X, measure, role="baseline")
        error = float(self.model.error(np.concatenate(tape.inputs), np.concatenate(tape.features)))
        drifted = len(self.recent_errors) >= 3 and error > self.DRIFT_FACTOR * float(np.median(self.recent_errors))
        self.recent_errors = (self.recent_errors + [error])[-10:]
        probing = self.trusted is False
        check = probing or self.trusted is None or drifted or self.since_check + 1 >= self.check_every
        vjp: Callable[..., np.ndarray]
        if probing:
            vjp = functools.partial(self._probe_vjp, measure=measure)
        elif check:
            vjp = functools.partial(self._checked_twin_vjp, measure=measure)
        else:
            vjp = self._twin_vjp
        loss, grads = network.gradients(params, tape, y, vjp)
        values = {"measured": 1, "twin_used": int(not probing), "twin_error": error}
        self.since_check += 1
        measured, predicted = self._checked_slopes()
        if np.any(measured) and np.any(predicted):
            values["twin_gradient_error"] = float(np.sum((predicted - measured) ** 2) / np.sum(measured**2))
            values["twin_gradient_cosine"] = cosine = float(
                measured @ predicted / np.linalg.norm(measured) / np.linalg.norm(predicted)
            )
            self.trusted, self.since_check = cosine > 0, 0
        self.twin_steps = 0
        self._refit()
        perturbation = np.stack(self._perturbations[::-1]) if self._perturbations else None
        return StepResult(loss, grads, values=values, perturbation=perturbation)

    def _checked_twin_vjp(self, layer, U, F, g_F, rows, measure):
        """The twin's VJP, after probing ``twin_check_rows`` of the rows to check it (none when the loss sends
        no gradient back: a slope of zero is known without measuring it)."""
        if np.any(g_F):
            some = np.sort(self.choice_rng.choice(len(U), size=min(self.check_rows, len(U)), replace=False))
            subset = Rows(rows.position[some], rows.token[some], rows.role[some], rows.direction[some])
            self._probe_vjp(layer, U[some], F[some], g_F[some], subset, measure)
        return self._twin_vjp(layer, U, F, g_F, rows)

    # ---- state
    def get_state(self) -> dict:
        return {
            **super().get_state(),
            "choice_rng": self.choice_rng.bit_generator.state,
            "noise_rng": self.noise_rng.bit_generator.state,
            "since_check": self.since_check,
        }

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self.trusted = None if state["trusted"] is None else bool(state["trusted"])
        self.choice_rng.bit_generator.state = state["choice_rng"]
        if "noise_rng" in state:  # recorded before twin_noise: no noise, the generator unused
            self.noise_rng.bit_generator.state = state["noise_rng"]
        self.since_check = int(state["since_check"])
        self._spread = None


# --------------------------------------------------------------------------- forward passes only
class ParameterPerturbation(Method):
    """Perturb a flat parameter vector; every ± pair is a lockstep pair of forward passes.

    Budget: an estimate along one random direction in n parameters has a variance that grows with n,
    and so do the steps a forward-only method needs to converge (linearly: Nesterov & Spokoiny 2017,
    Duchi et al. 2015). The default steps (3000, set for the paper's dense network of
    :data:`BUDGET_PARAMETERS` parameters on digits) therefore grow in proportion to the network's
    trainable parameters, rounded up to a hundred, and are never fewer: the transformer's 3,978 get 14,100.
    """

    perturbed = "all"
    BUDGET_STEPS: ClassVar[int] = 3000
    BUDGET_PARAMETERS: ClassVar[int] = 850
    GROWING_STEPS = "3000 for 850 trainable parameters (the dense network), in proportion above"

    @classmethod
    def default_steps(cls, n_params: int) -> int:
        scaled = math.ceil(cls.BUDGET_STEPS * n_params / cls.BUDGET_PARAMETERS / 100) * 100
        return max(cls.BUDGET_STEPS, scaled)

    def _estimator(self, config):
        m = config.method
        return PGT(r=m.r, p=m.p, delta=m.delta, directions=m.directions, seed=config.seed)

    @classmethod
    def queries_per_row(cls, settings) -> int:
        return 2 * settings.directions  # a + and a − pass per direction

    def __init__(self, config, reservoir):
        super().__init__(config, reservoir)
        self.estimator = self._estimator(config)
        self.rng = self.estimator.rng

    def _names(self, network):
        return network.trainable_names if self.perturbed == "all" else network.upstream_names

    def _measure_pairs(self, network, params, X, measure):
        names = self._names(network)
        asked = self.estimator.ask(network.flatten(params, names))
        branches = [network.unflatten(v, params, names) for v in asked.values]
        tapes = network.forward_branches(branches, X, measure, roles=asked.roles, directions=asked.directions)
        return names, branches, tapes

    def step(self, network, params, X, y, measure) -> StepResult:
        names, _, tapes = self._measure_pairs(network, params, X, measure)
        losses = network.losses(tapes, y)
        grads = network.unflatten(self.estimator.tell(losses), params, names)
        return StepResult(
            float(losses.mean()),
            {n: grads[n] for n in names},
            values={"loss_plus": float(losses[0]), "loss_minus": float(losses[1])},
            lr_scale=self.lr_scale(),
            perturbation=self.estimator.last_perturbation,
        )

    def lr_scale(self) -> float:
        return 1.0

    def get_state(self) -> dict:
        return self.estimator.get_state()

    def set_state(self, state: dict) -> None:
        self.estimator.set_state(state)


@dataclass(frozen=True)
class GrowingStepsSettings(SteppedSettings):
    """A forward-only method's settings: its steps grow with the trainable parameters
    (:meth:`ParameterPerturbation.default_steps`)."""

    steps: int | None = setting(
        None,
        "optimizer steps",
        minimum=1,
        derived=ParameterPerturbation.GROWING_STEPS,
        typical=ParameterPerturbation.BUDGET_STEPS,
    )


class PaperPGT(ParameterPerturbation):
    name = "pgt"

    @dataclass(frozen=True)
    class Settings(GrowingStepsSettings):
        lr: float = 0.002
        optimizer: str = "sgd"
        delta: float = setting(0.1, "perturbation size δ of the parameters", above=0, label="Perturbation size δ")
        r: int = setting(1, "perturbation entries uniform in {-r..r}", minimum=1)
        p: float = setting(0.5, "probability an entry of the perturbation is zeroed (dropout)", minimum=0, below=1)
        directions: int = setting(1, "perturbation directions per step", minimum=1)


class UpstreamPGT(ParameterPerturbation):
    """The paper's perturbation on the upstream parameters; exact gradients downstream of the last layer.

    The downstream (head and classifier) gradient is the mean of the exact gradients at the + and −
    passes: the gradient at θ to O(δ²), from measurements already made.
    """

    name = "pgt-enc"
    perturbed = "upstream"

    @dataclass(frozen=True)
    class Settings(PaperPGT.Settings):
        pass

    def step(self, network, params, X, y, measure) -> StepResult:
        names, branches, tapes = self._measure_pairs(network, params, X, measure)
        branch_losses: list[float] = []
        tail: dict[str, np.ndarray] = {}
        for branch, tape in zip(branches, tapes):
            loss, grads, _ = network.tail_gradients(branch, tape, y)
            branch_losses.append(loss)
            for name, g in grads.items():
                tail[name] = tail.get(name, 0.0) + g / len(tapes)
        losses = np.array(branch_losses)
        upstream = network.unflatten(self.estimator.tell(losses), params, names)
        grads = {**{n: upstream[n] for n in names}, **tail}
        return StepResult(
            float(losses.mean()),
            grads,
            values={"loss_plus": float(losses[0]), "loss_minus": float(losses[1])},
            perturbation=self.estimator.last_perturbation,
        )


class Spsa(ParameterPerturbation):
    """SPSA; its gains are in :class:`labpgt.estimators.SPSA`. ``spsa_calibrate`` applies Spall's guidelines
    at the start (4 repeated losses for the noise, 4 estimates for the gradient magnitude)."""

    name = "spsa"

    @dataclass(frozen=True)
    class Settings(GrowingStepsSettings):
        lr: float = setting(0.005, "the gain a of a_k = a/(k + 1 + A)^0.602", above=0, label="Gain a")
        optimizer: str = "sgd"
        delta: float = setting(
            0.05, "the gain c of c_k = c/(k + 1)^0.101 (the perturbation size)", above=0, label="Perturbation size c"
        )
        directions: int = setting(1, "perturbation directions per step", minimum=1)
        spsa_A: float | None = setting(
            None,
            "the stability constant A of a_k",
            minimum=0,
            derived="steps / 10",
            label="Stability constant A",
            typical=300.0,
        )
        spsa_calibrate: bool = setting(
            False,
            "apply Spall's guidelines at the start (4 repeated losses for the "
            "noise, 4 estimates for the gradient's magnitude)",
        )
        spsa_initial_step: float = setting(0.02, "with spsa_calibrate: the size of the first step", above=0)

        def resolved(self, n_params: Callable[[], int]) -> Spsa.Settings:
            settings = super().resolved(n_params)
            if settings.spsa_A is not None:
                return settings
            assert settings.steps is not None, "SteppedSettings.resolved derives the steps"
            return dataclasses.replace(settings, spsa_A=0.1 * settings.steps)

    def _estimator(self, config):
        m = config.method
        self.calibrate, self.initial_step = bool(m.spsa_calibrate), float(m.spsa_initial_step)
        return SPSA(delta=m.delta, A=m.spsa_A, directions=m.directions, seed=config.seed)

    def lr_scale(self) -> float:
        return self.estimator.lr_scale()

    def start(self, network, params, X, y, measure, lr):
        if not self.calibrate:
            return lr
        losses = [network.loss(network.forward(params, X, measure, role="calibration").logits, y) for _ in range(4)]
        magnitudes = []
        for _ in range(4):
            names = self._names(network)
            asked = self.estimator.ask(network.flatten(params, names))
            branches = [network.unflatten(v, params, names) for v in asked.values]
            tapes = network.forward_branches(
                branches, X, measure, roles=("calibration",) * len(branches), directions=asked.directions
            )
            estimate = self.estimator.tell(network.losses(tapes, y))
            magnitudes.append(np.mean(np.abs(estimate)))
        self.estimator.k = 0
        return self.estimator.calibrate(np.std(losses, ddof=1), float(np.mean(magnitudes)), self.initial_step)


# --------------------------------------------------------------------------- closed form
class Readout(Method):
    """Classic reservoir computing: one pass over the training set (role baseline) calibrates the
    standardisation and gives the classifier's input z; a ridge classifier is the classifier, its penalty
    ``ridge_penalty`` or, by default, chosen from 10⁻³…10³ by cross-validation on the training set
    (``RidgeClassifierCV``'s leave-one-out)."""

    name = "readout"
    closed_form = True

    @dataclass(frozen=True)
    class Settings(MethodSettings):
        steps: ClassVar[int] = 1  # fitted in closed form: one step
        ridge_penalty: float | None = setting(
            None, "the ridge classifier's penalty α", above=0, derived="by cross-validation from 10⁻³…10³", typical=1.0
        )

    @classmethod
    def check_config(cls, config) -> None:
        super().check_config(config)
        if config.model.hidden:
            raise UserError("the readout baseline has no hidden layer; use hidden=0")

    def fit(self, network, params, X, y, measure):
        """``(params with the classifier fitted, values to record, logits of the training set)``."""
        from sklearn.linear_model import RidgeClassifierCV

        params, tape = network.calibrate(params, X, measure, role="baseline")
        Z = network.representation(params, tape)
        penalty = self.settings.ridge_penalty
        penalties = np.logspace(-3, 3, 13) if penalty is None else [penalty]
        ridge = RidgeClassifierCV(alphas=penalties).fit(Z, y)
        w, b = network.classifier
        params[w], params[b] = ridge.coef_.T.astype(np.float64), ridge.intercept_.astype(np.float64)
        logits = Z @ params[w] + params[b]
        return params, {"loss": network.loss(logits, y), "alpha": float(ridge.alpha_)}, logits


METHODS: dict[str, type[Method]] = {
    m.name: m for m in (Node, Twin, Dyna, PaperPGT, UpstreamPGT, Spsa, Backprop, Readout)
}
for _method in METHODS.values():
    _method.Settings.name = _method.name
import labpgt.blackbox  # noqa: E402,F401  the referee's baselines (mezo, cma, node-jac) register themselves


def method_class(name: str) -> type[Method]:
    try:
        return METHODS[name]
    except KeyError:
        raise UserError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}") from None
