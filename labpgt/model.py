"""The network around the reservoir, in plain numpy float64, with exact gradients for its digital parts.

    x ──► encoder: u = sigmoid(x·enc_W + enc_b) ∈ [0,1]^d ──► reservoir ──► F (raw features)
      ──► standardise: Fn = (F − feature_mean) / feature_scale   (fixed, not trained)
      ──► [hidden: H = act(Fn·hid_W + hid_b)] ──► logits = H·out_W + out_b ──► softmax, cross-entropy

This module owns the parameters (a dict of named arrays with a flat-vector view over the trainable
ones, in the fixed order of :attr:`Model.trainable_names`), the loss, and the exact gradients of the
digital parts: :meth:`Model.head_backward` gives the gradients of the readout (and hidden layer) and
the gradient with respect to the *raw* features, given the features; :meth:`Model.encoder_backward`
chains a gradient with respect to u into the encoder parameters.

Feature standardisation. A reservoir's features may have any scale (the ring's are normalised dB).
:meth:`Model.calibrate` sets ``feature_mean`` (per feature) and ``feature_scale`` (one common value,
the RMS of the per-feature stds) once from one calibration measurement (the trainer uses the first
training batch through the initial encoder) and they stay frozen: they
are part of the model's state (saved in checkpoints) but not trainable, so the loss stays a fixed
function of the trainable parameters, which is what every gradient estimator assumes.
"""

from __future__ import annotations

import numpy as np

ACTIVATIONS = ("tanh", "relu")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class Model:
    """Encoder → reservoir → (hidden) → softmax readout; see the module docstring for the maths."""

    def __init__(self, n_inputs: int, input_width: int, feature_width: int, n_classes: int,
                 hidden: int = 0, activation: str = "tanh", seed: int = 0):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}")
        self.n_inputs = int(n_inputs)
        self.input_width = int(input_width)
        self.feature_width = int(feature_width)
        self.n_classes = int(n_classes)
        self.hidden = int(hidden)
        self.activation = activation
        self.seed = int(seed)
        rng = np.random.default_rng([self.seed, 7])
        params = {
            # pre-activations of unit variance keep the sigmoid out of saturation at the start
            "enc_W": rng.standard_normal((self.n_inputs, self.input_width)) / np.sqrt(self.n_inputs),
            "enc_b": np.zeros(self.input_width),
        }
        head_in = self.feature_width
        if self.hidden:
            params["hid_W"] = rng.standard_normal((head_in, self.hidden)) / np.sqrt(head_in)
            params["hid_b"] = np.zeros(self.hidden)
            head_in = self.hidden
        # a zero readout starts every method at the uninformed loss ln(n_classes), and no estimator has
        # to spend queries undoing a random readout first
        params["out_W"] = np.zeros((head_in, self.n_classes))
        params["out_b"] = np.zeros(self.n_classes)
        self.params: dict[str, np.ndarray] = params
        self.trainable_names: tuple[str, ...] = tuple(params)
        self.feature_mean = np.zeros(self.feature_width)
        self.feature_scale = np.ones(self.feature_width)
        self._shapes = {k: v.shape for k, v in params.items()}
        sizes = [v.size for v in params.values()]
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)

    # ---- parameters -------------------------------------------------------------------------
    @property
    def n_params(self) -> int:
        return int(self._offsets[-1])

    def slices(self) -> dict[str, slice]:
        """Where each trainable array lives in the flat vector."""
        return {k: slice(self._offsets[i], self._offsets[i + 1]) for i, k in enumerate(self.trainable_names)}

    def get_vector(self) -> np.ndarray:
        return np.concatenate([self.params[k].ravel() for k in self.trainable_names])

    def unflatten(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        """A parameter dict viewing ``vector`` (no copy)."""
        return {k: vector[s].reshape(self._shapes[k]) for k, s in self.slices().items()}

    def flatten(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(arrays[k], dtype=np.float64).ravel() for k in self.trainable_names])

    def set_vector(self, vector: np.ndarray) -> None:
        self.params = self.unflatten(np.array(vector, dtype=np.float64))

    def state_dict(self) -> dict[str, np.ndarray]:
        """Trainable parameters plus the frozen feature standardisation, as copies."""
        state = {k: v.copy() for k, v in self.params.items()}
        state["feature_mean"] = self.feature_mean.copy()
        state["feature_scale"] = self.feature_scale.copy()
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.set_vector(self.flatten(state))
        self.feature_mean = np.array(state["feature_mean"], dtype=np.float64)
        self.feature_scale = np.array(state["feature_scale"], dtype=np.float64)

    # ---- forward / backward -----------------------------------------------------------------
    def calibrate(self, features: np.ndarray) -> None:
        """Freeze the standardisation to one measured batch: per-feature mean, one common scale.

        The scale is the RMS of the per-feature standard deviations, shared by all features: a bin that
        happens to be quiet during calibration (the ring's bins at the analyzer's noise floor vary by
        ~0.005 against ~0.15 for active bins) must not be blown up to unit variance of pure noise.
        """
        self.feature_mean = features.mean(axis=0)
        scale = float(np.sqrt(np.mean(features.var(axis=0))))
        self.feature_scale = np.full(features.shape[1], scale if scale > 1e-12 else 1.0)

    def encode(self, X: np.ndarray, params: dict | None = None) -> np.ndarray:
        p = self.params if params is None else params
        return _sigmoid(X @ p["enc_W"] + p["enc_b"])

    def _head(self, F: np.ndarray, p: dict):
        Fn = (F - self.feature_mean) / self.feature_scale
        H = Fn
        pre = None
        if self.hidden:
            pre = Fn @ p["hid_W"] + p["hid_b"]
            H = np.tanh(pre) if self.activation == "tanh" else np.maximum(pre, 0.0)
        return Fn, pre, H, H @ p["out_W"] + p["out_b"]

    def logits(self, F: np.ndarray, params: dict | None = None) -> np.ndarray:
        return self._head(F, self.params if params is None else params)[3]

    def predict(self, F: np.ndarray, params: dict | None = None) -> np.ndarray:
        return np.argmax(self.logits(F, params), axis=-1)

    def loss(self, F: np.ndarray, y: np.ndarray, params: dict | None = None) -> float:
        """Mean cross-entropy of the batch, given the raw features ``F`` it produced."""
        z = self.logits(F, params)
        z = z - z.max(axis=-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        return float(-logp[np.arange(len(y)), y].mean())

    def head_backward(self, F: np.ndarray, y: np.ndarray, params: dict | None = None):
        """``(loss, grads of hidden/readout params, grad wrt raw features (B, m))`` of the mean loss."""
        p = self.params if params is None else params
        Fn, pre, H, logits = self._head(F, p)
        B = len(y)
        probs = _softmax(logits)
        loss = float(-np.log(np.maximum(probs[np.arange(B), y], 1e-300)).mean())
        d_logits = probs
        d_logits[np.arange(B), y] -= 1.0
        d_logits /= B
        grads = {"out_W": H.T @ d_logits, "out_b": d_logits.sum(axis=0)}
        d_H = d_logits @ p["out_W"].T
        if self.hidden:
            d_pre = d_H * ((1.0 - H * H) if self.activation == "tanh" else (pre > 0.0))
            grads["hid_W"] = Fn.T @ d_pre
            grads["hid_b"] = d_pre.sum(axis=0)
            d_H = d_pre @ p["hid_W"].T
        return loss, grads, d_H / self.feature_scale

    def encoder_backward(self, X: np.ndarray, U: np.ndarray, grad_U: np.ndarray) -> dict[str, np.ndarray]:
        """Chain ``grad_U`` (B, d) through u = sigmoid(x·enc_W + enc_b) into the encoder parameters."""
        d_z = grad_U * U * (1.0 - U)
        return {"enc_W": X.T @ d_z, "enc_b": d_z.sum(axis=0)}
