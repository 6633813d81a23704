"""Optimizers: optax's transformations by name, one jit-compiled step, and their state as named arrays.

A step is ``θ ← θ − lr_t · d_t``, where d_t is what the optax transformation makes of the gradient —
``sgd``: the gradient itself (the paper's plain step); ``momentum``: ``optax.trace(0.9)`` (heavy
ball); ``adam``: ``optax.scale_by_adam()`` — after ``optax.clip_by_global_norm`` when ``clip`` > 0.
The learning rate lr_t (the schedule times a method's gain, e.g. SPSA's a_k) stays outside the
transformation because the trainer records it per step.

:func:`state_arrays` names every leaf of an optax state by its path (``mu.enc_W``, ``count``, …), so
a checkpoint holds plain arrays and :func:`load_state_arrays` rebuilds the state exactly; nothing is
pickled.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import optax

from labpgt.errors import UserError
from labpgt.numerics import jax

TRANSFORMATIONS = {
    "sgd": optax.identity,
    "momentum": lambda: optax.trace(decay=0.9),
    "adam": optax.scale_by_adam,
}
OPTIMIZERS = tuple(TRANSFORMATIONS)
#: per (name, clip), the step of the first optimizer made in this process, which later ones reuse
_COMPILED_STEPS: dict[tuple[str, float], Callable] = {}
LR_SCHEDULES = ("constant", "cosine")


def schedule_factor(schedule: str, step: int, steps: int) -> float:
    """The learning-rate factor of 0-based ``step`` of ``steps``: 1, or cosine decay from 1 to 0 over the run."""
    if schedule == "cosine":
        return 0.5 * (1.0 + np.cos(np.pi * step / steps))
    return 1.0


class Optimizer:
    """``step(params, grads, lr) -> params`` over the trainable arrays of a parameter dict."""

    def __init__(self, name: str, trainable: dict, clip: float = 0.0):
        if name not in TRANSFORMATIONS:
            raise UserError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(OPTIMIZERS)}")
        self.name = name
        self.clip = float(clip)
        transformation = TRANSFORMATIONS[name]()
        if self.clip > 0:
            transformation = optax.chain(optax.clip_by_global_norm(self.clip), transformation)
        self.transformation = transformation
        self.state = transformation.init(trainable)
        key = (name, self.clip)  # one compiled step per key in a process: the same transformation, the same program
        if key not in _COMPILED_STEPS:
            _COMPILED_STEPS[key] = jax.jit(self._apply)
        self._step = _COMPILED_STEPS[key]

    def _apply(self, params, grads, state, lr):
        directions, state = self.transformation.update(grads, state, params)
        new = jax.tree_util.tree_map(lambda p, d: p - lr * d, params, directions)
        norm = optax.tree.norm(grads)
        return new, state, jax.numpy.minimum(norm, self.clip) if self.clip > 0 else norm

    def step(self, trainable: dict, grads: dict, lr: float) -> tuple[dict, float]:
        """The new trainable arrays, and the norm of the gradient as used (after clipping)."""
        new, self.state, norm = self._step(trainable, grads, self.state, float(lr))
        return {k: np.asarray(v) for k, v in new.items()}, float(norm)

    def state_arrays(self) -> dict[str, np.ndarray]:
        return state_arrays(self.state)

    def load_state_arrays(self, arrays: dict) -> None:
        self.state = load_state_arrays(self.state, arrays)


def _leaf_name(path) -> str:
    parts = []
    for key in path:
        for attribute in ("name", "key", "idx"):
            if hasattr(key, attribute):
                parts.append(str(getattr(key, attribute)))
                break
    return ".".join(parts)


def state_arrays(state) -> dict[str, np.ndarray]:
    """Every array leaf of ``state`` by its path name (numpy copies, dtypes kept)."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(state)
    return {_leaf_name(path): np.array(leaf) for path, leaf in leaves}


def load_state_arrays(template, arrays: dict):
    """``template``'s structure with its leaves taken from ``arrays`` (as :func:`state_arrays` named them)."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = [_leaf_name(path) for path, _ in leaves]
    if sorted(names) != sorted(arrays):
        raise ValueError(f"optimizer state {sorted(arrays)} does not match {sorted(names)}")
    values = [
        jax.numpy.asarray(np.asarray(arrays[n]), dtype=np.asarray(leaf).dtype) for n, (_, leaf) in zip(names, leaves)
    ]
    return jax.tree_util.tree_unflatten(treedef, values)
