"""Baselines a referee asks for, as training methods behind the one measure interface of :mod:`labpgt.methods`.

========  ===============================================================================================
method    what a step does
========  ===============================================================================================
mezo      zeroth-order SGD along one seeded Gaussian direction z ~ N(0, I) over all trainable parameters
          (MeZO, Malladi et al. 2023): L(θ ± δz) measured back to back, ĝ = (L₊ − L₋)/(2δ)·z; z is never
          stored: each step draws a seed, z is regenerated from it to measure and again to step, and the
          seed is what the session records as the step's perturbation
cma       CMA-ES (Hansen's ``cma``, the reference implementation) as an ask/tell optimizer over all trainable
          parameters: each step is one generation, its λ candidates' batch losses measured (role ``plus``,
          direction = the candidate), and the parameters moved to the new mean
node-jac  node perturbation with the full finite-difference Jacobian at each physical layer's input:
          one-sided along every coordinate (d probes per row, ``plus`` up or ``minus`` down where up would
          leave [0, 1]), reusing the baseline forward pass as the other point: J exactly up to O(δ), no
          sampling variance, for d queries per row where node's default spends 2k = 8
========  ===============================================================================================

Every query goes through the trainer's ``measure``, so it is counted by role and recorded like any other.
CMA-ES's state is ``cma``'s own objects, which a checkpoint does not hold (never pickled). Each step records
its generation's candidate losses (as its perturbation, exactly); a resume or a pause's rewind rebuilds the
strategy by telling a fresh one, drawn from the same generator state, every recorded generation again, and
checks that the generator ends where the checkpoint says.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from labpgt.errors import UserError
from labpgt.estimators import Points
from labpgt.methods import (
    GrowingStepsSettings,
    Method,
    ParameterPerturbation,
    ProbeSettings,
    SteppedSettings,
    StepResult,
    ThroughTheLayer,
)
from labpgt.network import Rows
from labpgt.settings import setting

#: the embedded ring's input width: node-jac's probes per row for the storage estimate made before a run
#: (``queries_per_row`` is told the settings, not the reservoir)
EXPECTED_INPUT_WIDTH = 8


# --------------------------------------------------------------------------- MeZO
class SeededGaussian:
    """MeZO's estimator in ask/tell form (cf. :mod:`labpgt.estimators`): one Gaussian direction per step,
    regenerated from a per-step seed drawn from the estimator's own generator, never kept."""

    def __init__(self, delta: float = 0.1, seed: int = 0):
        self.delta = float(delta)
        self.rng = np.random.default_rng([int(seed), 11])
        self.step_seed = 0
        self.size = 0
        self.last_perturbation: np.ndarray | None = None

    def direction(self) -> np.ndarray:
        """z of the current step, from its seed."""
        return np.random.default_rng([self.step_seed, 17]).standard_normal(self.size)

    def ask(self, theta: np.ndarray) -> Points:
        self.step_seed, self.size = int(self.rng.integers(0, 2**62)), int(theta.size)
        self.last_perturbation = np.array([self.step_seed], dtype=np.int64)
        step = self.delta * self.direction()
        return Points(
            values=np.stack([theta + step, theta - step]),
            roles=("plus", "minus"),
            directions=np.zeros(2, dtype=np.int64),
        )

    def tell(self, losses: np.ndarray) -> np.ndarray:
        losses = np.asarray(losses, dtype=np.float64)
        return (losses[0] - losses[1]) / (2.0 * self.delta) * self.direction()

    def get_state(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


class Mezo(ParameterPerturbation):
    name = "mezo"

    @dataclass(frozen=True)
    class Settings(GrowingStepsSettings):
        lr: float = 0.002
        optimizer: str = "sgd"
        delta: float = setting(
            0.1, "perturbation size ε of the Gaussian direction", above=0, label="Perturbation size ε"
        )

    def _estimator(self, config):
        return SeededGaussian(delta=config.method.delta, seed=config.seed)

    @classmethod
    def queries_per_row(cls, settings) -> int:
        return 2


# --------------------------------------------------------------------------- CMA-ES
class CmaEs(Method):
    """CMA-ES through ``cma``. Its generations draw from the method's own seeded generator (``cma``'s ``randn``
    option), so a run is bit-identical for a seed; cma never touches numpy's global generator nor writes files.
    The trainer steps plain SGD with learning rate 1 along θ − m, which puts θ on cma's new mean m exactly:
    those settings are fixed (any other is refused)."""

    name = "cma"

    @dataclass(frozen=True)
    class Settings(SteppedSettings):
        steps: int | None = setting(
            None,
            "generations",
            minimum=1,
            derived="the queries of pgt's default steps: 2 × pgt's steps / population",
            typical=250,
        )
        lr: float = setting(1.0, "fixed: the parameters move to CMA-ES's mean", above=0)
        optimizer: str = "sgd"
        cma_sigma: float = setting(0.1, "CMA-ES's initial step size σ₀", above=0, label="Initial step size σ₀")
        cma_population: int = setting(0, "candidates per generation λ (0: cma's default 4 + 3 ln n)", minimum=0)
        cma_diagonal: bool = setting(False, "separable CMA-ES: a diagonal covariance (for large networks)")

        def resolved(self, n_params):
            if self.steps is not None:
                return self
            population = self.cma_population or CmaEs.default_population(n_params())
            steps = max(1, 2 * Mezo.default_steps(n_params()) // population)
            return dataclasses.replace(self, steps=steps)

    @staticmethod
    def default_population(n: int) -> int:
        return 4 + int(3 * np.log(n))

    @classmethod
    def check_config(cls, config) -> None:
        super().check_config(config)
        m = config.method
        fixed = {
            "lr": (m.lr, 1.0),
            "optimizer": (m.optimizer, "sgd"),
            "lr_schedule": (m.lr_schedule, "constant"),
            "clip": (m.clip, 0.0),
            "follow_ring": (config.follow_ring, 0),
        }
        for key, (value, needed) in fixed.items():
            if value != needed:
                raise UserError(f"cma moves the parameters to its own mean: {key} must be {needed}, not {value}")

    @classmethod
    def queries_per_row(cls, settings) -> int:
        return settings.cma_population or cls.default_population(ParameterPerturbation.BUDGET_PARAMETERS)

    recalls_its_steps = True

    def __init__(self, config, reservoir) -> None:
        super().__init__(config, reservoir)
        self.es: Any = None  # cma's CMAEvolutionStrategy, made at the first step
        self.losses: list[np.ndarray | None] = []  # each generation's candidate losses, in order
        self.start_rng: dict | None = None  # the generator's state when the strategy was made
        self.generations = 0  # generations the strategy has been told
        self.replayable = True  # whether it started from the network's initial parameters (what a rebuild uses)

    def _strategy(self, theta: np.ndarray):
        import cma

        m = self.settings
        options = {
            "randn": lambda *shape: self.rng.standard_normal(shape),
            "seed": np.nan,
            "verbose": -9,
            "verb_log": 0,
            "verb_disp": 0,
            "CMA_diagonal": bool(m.cma_diagonal),
            "maxiter": np.inf,
            "tolfun": 0,
            "tolx": 0,
            "tolfunhist": 0,
            "tolstagnation": np.inf,
            "tolflatfitness": np.inf,
        }
        if m.cma_population:
            options["popsize"] = int(m.cma_population)
        return cma.CMAEvolutionStrategy(theta, float(m.cma_sigma), options)

    def step(self, network, params, X, y, measure) -> StepResult:
        names = network.trainable_names
        theta = network.flatten(params, names)
        if self.es is None and self.generations:
            self.es = self._rebuilt(network.flatten(network.initial_params, names))
        elif self.es is None:
            self.start_rng = self.rng.bit_generator.state
            self.replayable = bool(np.array_equal(theta, network.flatten(network.initial_params, names)))
            self.es = self._strategy(theta)
        candidates = [np.asarray(c, dtype=np.float64) for c in self.es.ask()]
        branches = [network.unflatten(c, params, names) for c in candidates]
        tapes = network.forward_branches(
            branches, X, measure, roles=("plus",) * len(branches), directions=np.arange(len(branches))
        )
        losses = network.losses(tapes, y)
        self.es.tell(candidates, losses.tolist())
        self.losses.append(losses)
        self.generations += 1
        move = network.unflatten(theta - np.asarray(self.es.mean, dtype=np.float64), params, names)
        return StepResult(
            float(np.mean(losses)),
            {n: move[n] for n in names},
            values={"loss_best": float(losses.min()), "sigma": float(self.es.sigma)},
            perturbation=losses,
        )

    def _rebuilt(self, theta0: np.ndarray):
        """The strategy after ``generations`` generations: a fresh one from ``theta0`` and the generator state it
        was made with, told each recorded generation's losses again (its candidates drawn again as they were)."""
        told = [losses for losses in self.losses[: self.generations] if losses is not None]
        if len(told) < self.generations:
            raise UserError(
                f"cma cannot continue: its checkpoint is after generation {self.generations} but the session "
                f"records the losses of {len(told)}"
            )
        resumed_rng = self.rng.bit_generator.state
        self.rng.bit_generator.state = self.start_rng
        es = self._strategy(theta0)
        for losses in told:
            es.tell([np.asarray(c, dtype=np.float64) for c in es.ask()], [float(v) for v in losses])
        if self.rng.bit_generator.state != resumed_rng:
            raise UserError("cma cannot continue: its recorded generations do not lead to its checkpoint's state")
        return es

    def recall(self, perturbations: list) -> None:
        self.losses = [None if p is None else np.asarray(p, dtype=np.float64) for p in perturbations]

    def get_state(self) -> dict:
        return {
            "rng": self.rng.bit_generator.state,
            "generations": self.generations,
            "start_rng": self.start_rng,
            "replayable": self.replayable,
        }

    def set_state(self, state: dict) -> None:
        generations = int(state.get("generations", 0))
        if generations and not state.get("replayable", False):  # sessions from before it recorded its losses
            raise UserError(
                "this cma run cannot be resumed or rewound: it was recorded without its generations' losses, "
                "or did not start from the network's initial parameters; run it again"
            )
        self.rng.bit_generator.state = state["rng"]
        self.start_rng, self.replayable = state.get("start_rng"), bool(state.get("replayable", True))
        self.generations = generations
        self.losses = self.losses[:generations]  # a rewind forgets the generations after its checkpoint
        self.es = None  # rebuilt at the next step


# --------------------------------------------------------------------------- node, full Jacobian
class NodeJacobian(ThroughTheLayer):
    """Node perturbation with every coordinate probed once, one-sided from the baseline (see the table above).

    The baseline is the step's own forward pass, measured before the probes: on a drifting ring the drift
    between them enters the difference (node's ± pairs, back to back, cancel it); that is this variant's price
    for half the probes of a central difference."""

    name = "node-jac"

    @dataclass(frozen=True)
    class Settings(ProbeSettings):
        """node's probe size and schedule; no directions (every coordinate is probed)."""

    @classmethod
    def queries_per_row(cls, settings) -> int:
        return 1 + EXPECTED_INPUT_WIDTH

    def physical_vjp(self, layer, U, F, g_F, rows: Rows, measure) -> np.ndarray:
        return jacobian_vjp(float(self.settings.delta), layer, U, F, g_F, rows, measure, self._perturbations)


def jacobian_vjp(delta: float, layer, U, F, g_F, rows: Rows, measure, perturbations: list) -> np.ndarray:
    """dL/dU (N, d) from the one-sided finite-difference Jacobian: a row's d probes U + s_j δ e_j back to back
    (s_j = +1, or −1 where U_j + δ would leave [0, 1]), each against the baseline features F of the row."""
    U, F = np.asarray(U, dtype=np.float64), np.asarray(F, dtype=np.float64)
    N, d = U.shape
    signs = np.where(U + delta <= 1.0, 1, -1)  # (N, d)
    probes = U[:, None, :] + delta * signs[:, :, None] * np.eye(d)[None]  # (N, d, d): row n, coordinate j
    probe_rows = Rows(
        position=np.repeat(rows.position, d),
        token=np.repeat(rows.token, d),
        role=np.where(signs.ravel() > 0, "plus", "minus"),
        direction=np.tile(np.arange(d), N),
    )
    measured = np.asarray(measure(layer.index, probes.reshape(N * d, d), probe_rows)).reshape(N, d, -1)
    perturbations.append(signs.astype(np.int8)[None])
    return np.einsum("njm,nm->nj", measured - F[:, None, :], g_F) / (delta * signs)


def _register() -> None:
    """Add the baselines to the one registry of methods (:data:`labpgt.methods.METHODS`)."""
    from labpgt.methods import METHODS

    for method in (Mezo, CmaEs, NodeJacobian):
        method.Settings.name = method.name
        METHODS[method.name] = method


_register()
