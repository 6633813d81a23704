"""Optimizers: turn a gradient (estimate) into a step on the flat parameter vector.

They know nothing about reservoirs or estimators. ``step(theta, grad, lr)`` returns the new vector;
``state_dict()`` returns the optimizer's whole state as named float64/int64 arrays (checkpointable
without pickle) and ``load_state_dict`` restores it exactly.
"""

from __future__ import annotations

import numpy as np

from labpgt.errors import UserError

OPTIMIZERS = ("sgd", "momentum", "adam")


def clip_by_norm(grad: np.ndarray, max_norm: float) -> np.ndarray:
    """Scale ``grad`` down to ``max_norm`` if it is longer; ``max_norm <= 0`` disables clipping."""
    if max_norm <= 0:
        return grad
    norm = float(np.linalg.norm(grad))
    return grad * (max_norm / norm) if norm > max_norm else grad


class SGD:
    """θ ← θ − lr·g (the paper's plain gradient step)."""

    def __init__(self, n_params: int):
        self.n_params = int(n_params)

    def step(self, theta: np.ndarray, grad: np.ndarray, lr: float) -> np.ndarray:
        return theta - lr * grad

    def state_dict(self) -> dict[str, np.ndarray]:
        return {}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        pass


class Momentum:
    """Heavy ball: v ← β·v + g; θ ← θ − lr·v."""

    def __init__(self, n_params: int, beta: float = 0.9):
        self.n_params = int(n_params)
        self.beta = float(beta)
        self.velocity = np.zeros(self.n_params)

    def step(self, theta: np.ndarray, grad: np.ndarray, lr: float) -> np.ndarray:
        self.velocity = self.beta * self.velocity + grad
        return theta - lr * self.velocity

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"velocity": self.velocity.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.velocity = np.array(state["velocity"], dtype=np.float64)


class Adam:
    """Adam (Kingma & Ba) with bias correction."""

    def __init__(self, n_params: int, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.n_params = int(n_params)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.m = np.zeros(self.n_params)
        self.v = np.zeros(self.n_params)
        self.t = 0

    def step(self, theta: np.ndarray, grad: np.ndarray, lr: float) -> np.ndarray:
        self.t += 1
        self.m = self.beta1 * self.m + (1.0 - self.beta1) * grad
        self.v = self.beta2 * self.v + (1.0 - self.beta2) * grad * grad
        m_hat = self.m / (1.0 - self.beta1 ** self.t)
        v_hat = self.v / (1.0 - self.beta2 ** self.t)
        return theta - lr * m_hat / (np.sqrt(v_hat) + self.eps)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"m": self.m.copy(), "v": self.v.copy(), "t": np.array(self.t, dtype=np.int64)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.m = np.array(state["m"], dtype=np.float64)
        self.v = np.array(state["v"], dtype=np.float64)
        self.t = int(state["t"])


def make_optimizer(name: str, n_params: int):
    if name == "sgd":
        return SGD(n_params)
    if name == "momentum":
        return Momentum(n_params)
    if name == "adam":
        return Adam(n_params)
    raise UserError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(OPTIMIZERS)}")
