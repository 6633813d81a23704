"""The recorder protocol: what a run tells whoever keeps its record, and nothing about how it is kept.

A run (a training or a characterisation sweep) reports to a *recorder*; the session writer
(:mod:`labpgt.session`) is the recorder that keeps an HDF5 file, the replay checker is one that
compares with a file, and :class:`NullRecorder` keeps nothing. Runs import this module, never the
session: the data flows one way.

A training calls, in this order:

* ``record_queries(labels, U, measurement)`` after every ``reservoir.measure`` call, with exactly the
  rows measured (:class:`QueryLabels` says what each row was for);
* ``record_step(step, values)`` once per completed step: a dict of floats/ints and small numpy arrays;
* ``checkpoint(checkpoint)`` after ``record_step`` (:class:`Checkpoint`: everything needed to continue
  after that step bit-identically).

Query rows with a step greater than the last checkpoint's belong to an unfinished step and are
measured again on resume.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class QueryLabels:
    """What the rows of one ``measure`` call were for (n rows).

    ``step``: the 0-based training step (calibration and the first evaluation: 0); ``role``: each row's
    role, one of the session's (calibration, baseline, plus, minus, eval, sweep, …) — one measurement
    may interleave plus and minus rows so that a pair is measured back to back; ``direction``: the
    perturbation direction of each row, −1 for none; ``sample``: the index into the training split
    (``n_train + i`` for evaluation sample i of the held-out split, −1 for none); ``layer``: which
    physical layer of the network measured the row (0 for a network with one, −1 for none);
    ``token``: the token position of the row in a sequence model, −1 for none.
    """

    step: int
    role: np.ndarray
    direction: np.ndarray
    sample: np.ndarray
    layer: np.ndarray
    token: np.ndarray

    @classmethod
    def of(cls, step: int, role: str, n: int, direction=-1, sample=-1, layer=0, token=-1) -> QueryLabels:
        """Labels for ``n`` rows; each of role/direction/sample/layer/token is a scalar (broadcast) or (n,)."""

        def column(value, dtype):
            return np.broadcast_to(np.asarray(value, dtype=dtype), (n,)).copy()

        return cls(
            int(step),
            column(role, np.str_),
            column(direction, np.int64),
            column(sample, np.int64),
            column(layer, np.int64),
            column(token, np.int64),
        )

    def __len__(self) -> int:
        return int(self.sample.shape[0])


@dataclass
class Checkpoint:
    """The state after step ``step`` completed.

    ``params``: the network's arrays (trainable and frozen, by name); ``optimizer_state`` and
    ``method_state``: named arrays of the optimizer and of the training method (e.g. a twin's
    parameters); ``rng_states`` and ``trainer_state``: JSON-able dicts.
    """

    step: int
    params: dict
    optimizer_state: dict
    rng_states: dict
    trainer_state: dict = field(default_factory=dict)
    method_state: dict = field(default_factory=dict)


class NullRecorder:
    """The default recorder: keeps nothing."""

    def record_queries(self, labels: QueryLabels, U, measurement) -> None:
        pass

    def record_step(self, step: int, values: dict) -> None:
        pass

    def checkpoint(self, checkpoint: Checkpoint) -> None:
        pass
