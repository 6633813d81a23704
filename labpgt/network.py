"""Networks of digital stages and physical layers, and the engine that runs them forward and backward.

A network is a chain ::

    stage 0 ──► physical 1 ──► stage 1 ──► physical 2 ──► … ──► physical n ──► head ──► classifier ──► logits

* A **stage** is a pure JAX function of its parameters and the *carry* it receives (a tuple of
  arrays), jit-compiled, float64. A stage that precedes a physical layer returns the layer's input
  first: u ∈ [0, 1], shape (B, d), or (B, T, d) for T tokens per sample; whatever follows u in the
  carry (a transformer's residual stream) passes the physical layer untouched.
* A **physical layer** is the reservoir, measured on the host: every row of u (every sample, every
  token) is one query. It hands the *raw* features F on; the next stage standardises them with the
  layer's frozen ``feature_mean``/``feature_scale`` (set once by :meth:`Network.calibrate`, part of
  the parameters but never trained, so the loss stays a fixed function of the trainable ones).
* The **head** maps the last carry to a representation z (B, h); the **classifier** is linear,
  logits = z·W + b, so a closed-form readout can be fitted on z.

Forward: :meth:`Network.forward` runs one pass and keeps a :class:`Tape` (each stage's input, each
layer's u and F); :meth:`Network.forward_branches` runs several parameter sets in lockstep and, at
each physical layer, measures their rows interleaved — row r of branch 0, row r of branch 1, … — so
the + and − measurements of a pair are taken back to back and slow drift of the real ring cancels
in their difference. Backward: :meth:`Network.gradients` pulls the loss gradient back through the
head and stages with JAX's VJPs; at each physical layer it asks the caller's *physical VJP*
(supplied by the training method: node perturbation, a twin, or the exact VJP of a differentiable
reservoir) for dL/du given dL/dF.

The engine measures through a ``measure(layer, U, rows)`` callable (:class:`Rows` says which batch
sample, token, role and direction each row is); it knows nothing of reservoirs, recording or
training methods.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from labpgt.numerics import jax, jnp

ENGINE = "labpgt-engine/2"  # recorded in sessions; /1 was the numpy engine with hand-written gradients


@dataclass(frozen=True)
class Stage:
    """A digital stage: ``apply(params, *carry) -> carry'``; ``params`` holds the names it reads."""

    name: str
    apply: Callable
    trainable: tuple[str, ...]
    frozen: tuple[str, ...] = ()


@dataclass(frozen=True)
class PhysicalLayer:
    """Where the reservoir sits, the names of its standardisation arrays, and of the linear map
    (weight, bias) that reads the standardised features (``None``: none to compensate)."""

    index: int
    feature_mean: str
    feature_scale: str
    consumer_weight: str | None = None
    consumer_bias: str | None = None


@dataclass(frozen=True)
class Rows:
    """Labels of the rows of one measurement: batch position, token (−1: none), role and direction (−1: none)."""

    position: np.ndarray
    token: np.ndarray
    role: np.ndarray
    direction: np.ndarray

    def __len__(self) -> int:
        return int(self.position.shape[0])


@dataclass
class Tape:
    """What a forward pass keeps for the backward pass (flat rows: u and F are (N, d) and (N, m))."""

    carries: list  # the carry each stage received, then the head's
    inputs: list  # per physical layer: u as measured, (N, d)
    features: list  # per physical layer: F measured, (N, m)
    rows: list  # per physical layer: the Rows measured
    logits: np.ndarray


def flat_rows(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """u (B, d) or (B, T, d) → rows (N, d), each row's batch position and token (−1 without tokens)."""
    u = np.asarray(u)
    if u.ndim == 2:
        return u, np.arange(u.shape[0]), np.full(u.shape[0], -1)
    B, T, d = u.shape
    return u.reshape(B * T, d), np.repeat(np.arange(B), T), np.tile(np.arange(T), B)


def cross_entropy(logits, y):
    """Mean cross-entropy of integer labels ``y`` under ``logits`` (B, C)."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=-1))


def standardisation(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and ONE common scale (the RMS of the per-feature standard deviations).

    A common scale keeps a bin that barely moves (e.g. the noise floor) from being blown up to unit
    variance, where its measurement noise would dominate the standardised features.
    """
    return features.mean(axis=0), _common_scale(features.var(axis=0), features.shape[1])


def _common_scale(variances: np.ndarray, width: int) -> np.ndarray:
    scale = float(np.sqrt(np.mean(variances)))
    return np.full(width, scale if scale > 1e-12 else 1.0)


#: From this many branches on, a compiled function runs over all of them as one loop (``lax.map``): the loop's
#: body is the function's own program, so each branch's result is the same to the bit as a call of its own, and
#: thousands of branches (a transformer's unbiasedness check, a population) no longer pay a dispatch each.
MAPPED_BRANCHES = 8


def _each_branch(fn, args: list[tuple]) -> list:
    """``[fn(*a) for a in args]``; with many ``args``, one call of ``fn`` mapped over them, stacked.

    Every argument is stacked, shared or not: the loop's body is then ``fn``'s program on each branch's values
    (an argument left out of the map is one XLA may fold into the loop otherwise, and the bits then differ). The
    branch count is padded (with the last branch) to a power of two, so a run compiles few loop sizes.
    """
    if len(args) < MAPPED_BRANCHES:
        return [fn(*a) for a in args]
    padded = args + [args[-1]] * ((1 << (len(args) - 1).bit_length()) - len(args))
    # np.array of arrays of one shape is np.stack's result in a third of its time
    stacked = jax.tree_util.tree_map(lambda *leaves: np.array(leaves), *padded)
    return _unstacked(_mapped(fn)(stacked), len(args))


def _unstacked(tree, n: int) -> list:
    """The first ``n`` branches of a tuple of stacked arrays (or of one stacked array), as numpy."""
    if isinstance(tree, tuple):
        return list(zip(*(_unstacked(leaf, n) for leaf in tree), strict=True))
    return list(np.asarray(tree)[:n])


@functools.cache
def _mapped(fn):
    return jax.jit(lambda stacked: jax.lax.map(lambda a: fn(*a), stacked))


class Network:
    """A chain of stages and physical layers with a linear classifier; see the module docstring.

    ``params`` (a dict of float64 numpy arrays, trainable and frozen) is passed to every method: the
    network holds the architecture, never the values, so a method may evaluate any parameter set.
    ``trainable_names`` is sorted: it fixes the order of the flat parameter vector.
    """

    def __init__(
        self,
        stages: list[Stage],
        layers: list[PhysicalLayer],
        head: Stage,
        classifier: tuple[str, str],
        params: dict,
        spec: dict,
    ):
        if len(stages) != len(layers):
            raise ValueError("every stage before the head must feed one physical layer")
        self.stages, self.layers, self.head = list(stages), list(layers), head
        self.classifier = classifier
        self.spec = dict(spec)
        self.initial_params = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
        names: set[str] = set()
        for stage in self.stages + [self.head]:
            names.update(stage.trainable)
        self.trainable_names = tuple(sorted(names | set(classifier)))
        self.upstream_names = tuple(sorted({n for s in self.stages for n in s.trainable}))
        self.tail_names = tuple(n for n in self.trainable_names if n not in self.upstream_names)
        self._stage_fns = [self._compile(s) for s in self.stages]
        self._stage_vjps = [self._compile_vjp(s) for s in self.stages]
        self._head_fn = jax.jit(self._head_representation)
        self._logits_fn = jax.jit(self._head_logits)
        self._tail_grad = jax.jit(jax.value_and_grad(self._tail_loss, argnums=(0, 2)))
        self._loss = jax.jit(cross_entropy)

    def share_compiled(self, other: Network) -> None:
        """Run on ``other``'s compiled pieces, which JAX has traced already: for a network built from the same
        spec and widths (its stages the same functions of the parameters), so the same programs; only the
        initial parameter values differ, and those are arguments, never compiled in."""
        for name in ("_stage_fns", "_stage_vjps", "_head_fn", "_logits_fn", "_tail_grad", "_loss"):
            setattr(self, name, getattr(other, name))

    # ---- parameters -----------------------------------------------------------------------------
    @property
    def n_params(self) -> int:
        return int(sum(self.initial_params[n].size for n in self.trainable_names))

    def flatten(self, params: dict, names: tuple[str, ...] | None = None) -> np.ndarray:
        """The named arrays (default: all trainable) as one float64 vector, in ``names`` order."""
        names = self.trainable_names if names is None else names
        return np.concatenate([np.asarray(params[n], dtype=np.float64).ravel() for n in names])

    def unflatten(self, vector: np.ndarray, params: dict, names: tuple[str, ...] | None = None) -> dict:
        """``params`` with the named arrays (default: all trainable) taken from ``vector``."""
        names = self.trainable_names if names is None else names
        vector = np.asarray(vector, dtype=np.float64)
        out, at = dict(params), 0
        for n in names:
            shape = np.shape(params[n])
            size = math.prod(shape)
            out[n] = vector[at : at + size].reshape(shape)
            at += size
        return out

    # ---- compiled pieces ------------------------------------------------------------------------
    @staticmethod
    def _compile(stage: Stage):
        def run(trainable, frozen, carry):
            return stage.apply({**trainable, **frozen}, *carry)

        return jax.jit(run)

    @staticmethod
    def _compile_vjp(stage: Stage):
        def vjp(trainable, frozen, carry, cotangent):
            _, pullback = jax.vjp(lambda t, c: stage.apply({**t, **frozen}, *c), trainable, carry)
            return pullback(cotangent)

        return jax.jit(vjp)

    def _split(self, stage: Stage, params: dict):
        return {n: params[n] for n in stage.trainable}, {n: params[n] for n in stage.frozen}

    def _head_representation(self, trainable, frozen, carry):
        return self.head.apply({**trainable, **frozen}, *carry)

    def _head_logits(self, trainable, frozen, carry):
        w, b = self.classifier
        return self._head_representation(trainable, frozen, carry) @ trainable[w] + trainable[b]

    def _tail_loss(self, trainable, frozen, carry, y):
        return cross_entropy(self._head_logits(trainable, frozen, carry), y)

    def _tail_split(self, params: dict):
        trainable = {n: params[n] for n in self.head.trainable + self.classifier}
        return trainable, {n: params[n] for n in self.head.frozen}

    # ---- forward --------------------------------------------------------------------------------
    def forward(self, params: dict, X: np.ndarray, measure, role: str = "baseline") -> Tape:
        """One pass measuring every physical layer with ``role``; returns the tape (logits included)."""
        return self.forward_branches([params], X, measure, roles=(role,), directions=(-1,))[0]

    def forward_branches(
        self, branches: list[dict], X: np.ndarray, measure, roles, directions, calibrate: bool = False
    ) -> list[Tape]:
        """Run every parameter set in ``branches`` in lockstep, measuring each layer's rows interleaved.

        ``roles[b]``/``directions[b]`` label branch b's queries. Returns one tape per branch. With
        ``calibrate`` (one branch), each layer's standardisation is set in ``branches[0]`` from its
        measured features before the next stage runs.
        """
        carries = [(np.asarray(X),)] * len(branches)  # numpy into jit: the same values, without jnp's slow path
        tapes = [Tape([], [], [], [], np.empty(0)) for _ in branches]  # logits once the head has run
        for stage, fn, layer in zip(self.stages, self._stage_fns, self.layers):
            for b in range(len(branches)):
                tapes[b].carries.append(carries[b])
            outs = _each_branch(fn, [(*self._split(stage, params), carries[b]) for b, params in enumerate(branches)])
            features = self._measure_interleaved(layer, [o[0] for o in outs], measure, roles, directions)
            if calibrate:
                branches[0][layer.feature_mean], branches[0][layer.feature_scale] = standardisation(features[0][1])
            for b, (out, (u, F, rows)) in enumerate(zip(outs, features)):
                tapes[b].inputs.append(u)
                tapes[b].features.append(F)
                tapes[b].rows.append(rows)
                carries[b] = (F.reshape(out[0].shape[:-1] + (F.shape[-1],)),) + tuple(out[1:])
        logits = _each_branch(
            self._logits_fn, [(*self._tail_split(params), carries[b]) for b, params in enumerate(branches)]
        )
        for b in range(len(branches)):
            tapes[b].carries.append(carries[b])
            tapes[b].logits = np.asarray(logits[b])
        return tapes

    def _measure_interleaved(self, layer: PhysicalLayer, inputs, measure, roles, directions):
        """Measure the rows of every branch, row r of each branch back to back; split the answer again."""
        _, position, token = flat_rows(np.asarray(inputs[0]))  # every branch has the same rows
        n, nb = len(position), len(inputs)
        flats = [np.asarray(u).reshape(n, -1) for u in inputs]
        U = np.stack(flats, axis=1).reshape(n * nb, -1)
        rows = Rows(
            position=np.repeat(position, nb),
            token=np.repeat(token, nb),
            role=np.tile(np.asarray(roles), n),
            direction=np.tile(np.asarray(directions), n),
        )
        F = np.asarray(measure(layer.index, U, rows), dtype=np.float64).reshape(n, nb, -1)
        column = functools.cache(lambda label: np.full(n, label))  # many branches share a role and a direction
        return [
            (u, F[:, b], Rows(position, token, column(roles[b]), column(directions[b]))) for b, u in enumerate(flats)
        ]

    def loss(self, logits: np.ndarray, y: np.ndarray) -> float:
        return float(self._loss(logits, y))

    def losses(self, tapes: list[Tape], y: np.ndarray) -> np.ndarray:
        """The loss of each tape's logits, as :meth:`loss` gives it."""
        return np.array([float(loss) for loss in _each_branch(self._loss, [(t.logits, y) for t in tapes])])

    def representation(self, params: dict, tape: Tape) -> np.ndarray:
        """z (B, h): what the classifier sees at the end of ``tape``'s pass."""
        trainable, frozen = self._tail_split(params)
        return np.asarray(self._head_fn(trainable, frozen, tape.carries[-1]))

    # ---- backward -------------------------------------------------------------------------------
    def tail_gradients(self, params: dict, tape: Tape, y: np.ndarray):
        """``(loss, grads of head and classifier parameters, dL/dF of the last physical layer (N, m))``."""
        trainable, frozen = self._tail_split(params)
        loss, (g_params, g_carry) = self._tail_grad(trainable, frozen, tape.carries[-1], jnp.asarray(y))
        return float(loss), {k: np.asarray(v) for k, v in g_params.items()}, g_carry

    def gradients(self, params: dict, tape: Tape, y: np.ndarray, physical_vjp):
        """``(loss, grads of every trainable parameter)`` of the mean cross-entropy of ``tape``'s pass.

        ``physical_vjp(layer, U, F, g_F, rows) -> g_U`` gives dL/du (N, d) of a physical layer from
        dL/dF (N, m); everything else is JAX's VJP.
        """
        loss, grads, g_carry = self.tail_gradients(params, tape, y)
        for i in range(len(self.stages) - 1, -1, -1):
            stage, layer = self.stages[i], self.layers[i]
            g_F = np.asarray(g_carry[0])
            shape = g_F.shape
            g_U = np.asarray(
                physical_vjp(layer, tape.inputs[i], tape.features[i], g_F.reshape(-1, shape[-1]), tape.rows[i]),
                dtype=np.float64,
            )
            g_u = jnp.asarray(g_U.reshape(shape[:-1] + (g_U.shape[-1],)))
            trainable, frozen = self._split(stage, params)
            g_trainable, g_carry = self._stage_vjps[i](trainable, frozen, tape.carries[i], (g_u,) + tuple(g_carry[1:]))
            for name, value in g_trainable.items():
                grads[name] = grads[name] + np.asarray(value) if name in grads else np.asarray(value)
        return loss, {n: grads[n] for n in self.trainable_names}

    # ---- calibration ----------------------------------------------------------------------------
    def follow(self, params: dict, feature_moments: dict) -> dict:
        """Params with each layer's standardisation moved to running feature moments, the network's
        function unchanged: the linear map reading the standardised features is rescaled and its
        bias shifted so that every feature vector gives the same output (and so the same loss).

        ``feature_moments``: ``{layer index: (mean, mean of squares)}`` of recently measured features.
        """
        params = dict(params)
        for layer in self.layers:
            if layer.index not in feature_moments or layer.consumer_weight is None:
                continue
            mean, square = (np.asarray(a, dtype=np.float64) for a in feature_moments[layer.index])
            new_mean, new_scale = mean, _common_scale(np.maximum(square - mean**2, 0.0), mean.size)
            old_mean, old_scale = np.asarray(params[layer.feature_mean]), np.asarray(params[layer.feature_scale])
            weight = np.asarray(params[layer.consumer_weight])
            params[layer.consumer_bias] = (
                np.asarray(params[layer.consumer_bias]) + ((new_mean - old_mean) / old_scale) @ weight
            )
            params[layer.consumer_weight] = weight * (new_scale / old_scale)[:, None]
            params[layer.feature_mean], params[layer.feature_scale] = new_mean, new_scale
        return params

    def calibrate(self, params: dict, X: np.ndarray, measure, role: str = "calibration"):
        """Measure ``X`` layer by layer and freeze each layer's standardisation to what it measured.

        Returns ``(params with the standardisation set, tape of the pass)``; each layer is
        calibrated before the next one is measured, since its output feeds the next input.
        """
        params = dict(params)
        (tape,) = self.forward_branches([params], X, measure, (role,), (-1,), calibrate=True)
        return params, tape
