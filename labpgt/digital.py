"""The digital reservoir: a fixed, seeded random nonlinear map that can be differentiated.

``features = tanh(gain · (2u − 1) W + b) + noise`` with W ~ N(0, 1/d) (d = input width) and
b ~ N(0, 0.25). With the default gain of 2 a typical pre-activation has a standard deviation of
about 1.2, well inside tanh's bend, so the map is genuinely nonlinear. ``noise`` adds seeded Gaussian
noise to every feature to mimic measurement noise (0 by default: exact). The map is a JAX function,
so :meth:`vjp` is JAX's exact vector–Jacobian product of the noiseless map, which makes end-to-end
backpropagation possible: the ceiling against which the perturbative estimators are measured.
"""

from __future__ import annotations

import time

import numpy as np

from labpgt.numerics import jax, jnp
from labpgt.reservoir import Measurement


class DigitalReservoir:
    """Fixed random ``tanh`` map from [0, 1]^input_width to feature_width features (implements ``Reservoir``)."""

    differentiable = True
    setting_names: tuple[str, ...] = ()

    def __init__(
        self, input_width: int = 8, feature_width: int = 32, gain: float = 2.0, noise: float = 0.0, seed: int = 0
    ):
        self.input_width = int(input_width)
        self.feature_width = int(feature_width)
        self.gain = float(gain)
        self.noise = float(noise)
        self.seed = int(seed)
        weights_rng = np.random.default_rng([self.seed, 1])
        self.W = weights_rng.standard_normal((self.input_width, self.feature_width)) / np.sqrt(self.input_width)
        self.b = 0.5 * weights_rng.standard_normal(self.feature_width)
        self._noise_rng = np.random.default_rng([self.seed, 2])
        self._map = jax.jit(self.noiseless)
        self._vjp = jax.jit(lambda U, g: jax.vjp(self.noiseless, U)[1](g)[0])

    def noiseless(self, U):
        """The map itself, as a JAX function of U (B, input_width)."""
        return jnp.tanh(self.gain * (2.0 * U - 1.0) @ self.W + self.b)

    def measure(self, U: np.ndarray) -> Measurement:
        U = np.asarray(U, dtype=np.float64)
        if U.ndim != 2 or U.shape[1] != self.input_width:
            raise ValueError(f"U must have shape (B, {self.input_width}), got {U.shape}")
        started = np.full(U.shape[0], time.time())
        features = np.asarray(self._map(U))
        if self.noise > 0.0:
            features = features + self.noise * self._noise_rng.standard_normal(features.shape)
        return Measurement(features=features, started=started, attempts=np.ones(U.shape[0], dtype=np.int64))

    def vjp(self, U: np.ndarray, grad_features: np.ndarray) -> np.ndarray:
        """Exact ``grad_U`` (B, input_width) of ``sum(grad_features · features(U))`` for the noiseless map."""
        return np.asarray(self._vjp(np.asarray(U, dtype=np.float64), np.asarray(grad_features, dtype=np.float64)))

    def get_rng_state(self) -> dict:
        """The measurement-noise generator's state (JSON-able), so a resumed run draws the same noise."""
        return dict(self._noise_rng.bit_generator.state)

    def set_rng_state(self, state: dict) -> None:
        if state:
            self._noise_rng.bit_generator.state = state

    def identities(self) -> dict[str, str]:
        return {}

    def close(self) -> None:
        pass
