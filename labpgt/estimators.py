"""Gradient estimators in ask/tell form: they say where they need measurements and turn them into gradients.

An estimator has no loop of its own (cf. nevergrad's and pycma's ask/tell). A step is::

    asked = estimator.ask(x)          # Points: where to measure, with a role and direction per point
    ...the trainer measures every point through the reservoir...
    grad = estimator.tell(...)        # the gradient estimate

Two kinds, both used by :mod:`labpgt.methods`:

* over parameters (:class:`PGT`, :class:`SPSA`): ``ask(theta)`` returns perturbed copies of a flat
  parameter vector, ``tell(losses)`` takes the batch loss measured at each one and returns an
  estimate of dL/dθ;
* over a physical layer's input (:class:`NodePerturbation`): ``ask(U)`` returns perturbed inputs
  (one set per direction, every row), ``tell(F_plus, F_minus, grad_features)`` takes the features
  measured there plus the exact gradient of the loss with respect to the features and returns an
  estimate of dL/dU (the engine chains it exactly into everything upstream).

Each estimator owns a seeded ``numpy.random.Generator``; ``get_state()``/``set_state()`` capture and
restore everything that is not a constructor parameter as JSON-able values, so a resumed run draws
the same perturbations. ``last_perturbation`` holds the directions of the latest ask (small integer
arrays) for the session record.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Points:
    """What ``ask`` returns: ``values[i]`` is to be measured with ``roles[i]`` ("plus"/"minus") and
    ``directions[i]``."""

    values: np.ndarray
    roles: tuple[str, ...]
    directions: np.ndarray


def _antithetic(centre: np.ndarray, steps: np.ndarray) -> Points:
    """Interleave centre + steps[j] and centre − steps[j]: plus_0, minus_0, plus_1, minus_1, …"""
    n = steps.shape[0]
    values = np.empty((2 * n,) + centre.shape)
    values[0::2] = centre + steps
    values[1::2] = centre - steps
    return Points(values=values, roles=("plus", "minus") * n, directions=np.repeat(np.arange(n), 2))


class _Seeded:
    """Shared seeding and state capture."""

    def __init__(self, seed: int):
        self.seed = int(seed)
        self.rng = np.random.default_rng([self.seed, 11])
        self.last_perturbation: np.ndarray | None = None

    def get_state(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


class PGT(_Seeded):
    """The paper's perturbative gradient training estimator over all trainable parameters.

    PM has integer entries uniform in {−r, …, r}, each zeroed with probability ``p``; θ± = θ ± δ·PM,
    and the estimate ``(L+ − L−)/(2δ) · PM / E[PM_i²]`` with ``E[PM_i²] = (1 − p)·r(r + 1)/3`` is
    unbiased to first order. ``directions`` independent matrices are averaged (the paper uses 1).
    """

    def __init__(self, r: int = 1, p: float = 0.5, delta: float = 0.1, directions: int = 1, seed: int = 0):
        super().__init__(seed)
        self.r = int(r)
        self.p = float(p)
        self.delta = float(delta)
        self.directions = int(directions)

    @property
    def second_moment(self) -> float:
        return (1.0 - self.p) * self.r * (self.r + 1) / 3.0

    def ask(self, theta: np.ndarray) -> Points:
        shape = (self.directions, theta.size)
        pm = self.rng.integers(-self.r, self.r + 1, size=shape)
        if self.p > 0.0:
            pm = np.where(self.rng.random(shape) < self.p, 0, pm)
        self.last_perturbation = pm.astype(np.int8)
        return _antithetic(theta, self.delta * pm)

    def tell(self, losses: np.ndarray) -> np.ndarray:
        losses = np.asarray(losses, dtype=np.float64)
        diff = (losses[0::2] - losses[1::2]) / (2.0 * self.delta)
        return diff @ self.last_perturbation / (self.directions * self.second_moment)


class SPSA(_Seeded):
    """Spall's simultaneous perturbation with Rademacher directions and the standard gain sequences.

    Perturbation size c_k = c / (k + 1)^0.101 with c = ``delta``; step gain a_k = a / (k + 1 + A)^0.602,
    which the trainer applies as ``lr · lr_scale()`` with ``lr_scale() = ((1 + A)/(k + 1 + A))^0.602``,
    so ``lr`` is the initial gain a_0. :meth:`calibrate` applies Spall's practical guidelines.
    """

    ALPHA = 0.602
    GAMMA = 0.101

    def __init__(self, delta: float = 0.05, A: float = 300.0, directions: int = 1, seed: int = 0):
        super().__init__(seed)
        self.delta = float(delta)
        self.A = float(A)
        self.directions = int(directions)
        self.k = 0

    def c_k(self) -> float:
        return self.delta / (self.k + 1) ** self.GAMMA

    def lr_scale(self) -> float:
        return ((1.0 + self.A) / (self.k + 1.0 + self.A)) ** self.ALPHA

    def ask(self, theta: np.ndarray) -> Points:
        delta = self.rng.integers(0, 2, size=(self.directions, theta.size)) * 2 - 1
        self.last_perturbation = delta.astype(np.int8)
        self._c = self.c_k()
        return _antithetic(theta, self._c * delta)

    def tell(self, losses: np.ndarray) -> np.ndarray:
        losses = np.asarray(losses, dtype=np.float64)
        diff = (losses[0::2] - losses[1::2]) / (2.0 * self._c)
        self.k += 1
        return diff @ self.last_perturbation / self.directions

    def calibrate(self, loss_noise_std: float, gradient_magnitude: float, initial_step: float) -> float:
        """Spall's guidelines: c ≈ loss-noise std (never below the configured δ); a_0 = initial_step / |ĝ_0|.

        Returns the calibrated initial gain a_0 (the learning rate to use with :meth:`lr_scale`).
        """
        self.delta = max(self.delta, float(loss_noise_std))
        return float(initial_step) / max(float(gradient_magnitude), 1e-12)

    def get_state(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "k": self.k, "delta": self.delta}

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.k = int(state["k"])
        self.delta = float(state["delta"])


def hadamard_order(d: int) -> int:
    """The order of the smallest Sylvester–Hadamard matrix with at least ``d`` columns (a power of two)."""
    return 1 << max(0, int(d) - 1).bit_length()


def hadamard_directions(rng: np.random.Generator, k: int, B: int, d: int) -> np.ndarray:
    """(k, B, d) ±1 directions: per sample, k distinct rows of a Sylvester–Hadamard matrix (order n ≥ d,
    first d columns) times an independent random sign per coordinate. E[v vᵀ] = I (unbiased), and the k
    directions of a sample are mutually orthogonal when d is a power of two."""
    n = hadamard_order(d)
    if k > n:
        raise ValueError(f"at most {n} orthogonal directions exist for input width {d}")
    H = np.ones((1, 1), dtype=np.int64)
    while H.shape[0] < n:
        H = np.block([[H, H], [H, -H]])
    rows = np.argsort(rng.random((B, n)), axis=1)[:, :k]  # (B, k) distinct rows per sample
    signs = rng.integers(0, 2, size=(B, d)) * 2 - 1
    V = H[rows][:, :, :d] * signs[:, None, :]  # (B, k, d)
    return np.ascontiguousarray(V.transpose(1, 0, 2))


class NodePerturbation(_Seeded):
    """Node perturbation at the reservoir input (the hybrid; cf. multiplexed gradient descent).

    For each sample i and direction v_j ∈ {±1}^d the reservoir is measured at c_i ± δ·v_j, where
    c_i = clip(u_i, δ, 1 − δ) keeps both points inside [0, 1] without clipping them (a shift of the
    expansion point by at most δ, never a distorted difference). With g_F the exact gradient of the loss
    with respect to the features, the directional derivative of the loss along v_j is
    ``g_F · (F(c + δv) − F(c − δv)) / (2δ)`` (the measured Jacobian–vector product), and
    ``dL/du ≈ mean_j [ that · v_j ]``. ``distribution`` "hadamard" (default) draws orthogonal ±1
    directions per sample (variance (d/k − 1)·|g|² instead of ≈ (d − 1)/k·|g|² for "rademacher").
    """

    DISTRIBUTIONS = ("hadamard", "rademacher")

    def __init__(self, delta: float = 0.05, directions: int = 4, distribution: str = "hadamard", seed: int = 0):
        super().__init__(seed)
        if not 0.0 < delta <= 0.5:
            raise ValueError("node perturbation needs 0 < delta <= 0.5 (inputs live in [0, 1])")
        if distribution not in self.DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {self.DISTRIBUTIONS}")
        self.delta = float(delta)
        self.directions = int(directions)
        self.distribution = distribution

    def ask(self, U: np.ndarray) -> Points:
        B, d = U.shape
        if self.distribution == "hadamard":
            V = hadamard_directions(self.rng, self.directions, B, d)
        else:
            V = self.rng.integers(0, 2, size=(self.directions, B, d)) * 2 - 1
        self.last_perturbation = V.astype(np.int8)
        centre = np.clip(U, self.delta, 1.0 - self.delta)
        return _antithetic(centre, self.delta * V)

    def tell(self, F_plus: np.ndarray, F_minus: np.ndarray, grad_features: np.ndarray) -> np.ndarray:
        """F_plus, F_minus (k, B, m) measured at the asked plus/minus points; grad_features (B, m)."""
        assert self.last_perturbation is not None, "tell() answers an ask()"
        slopes = np.einsum("kbm,bm->kb", F_plus - F_minus, grad_features) / (2.0 * self.delta)
        return np.einsum("kb,kbd->bd", slopes, self.last_perturbation.astype(np.float64)) / self.directions
