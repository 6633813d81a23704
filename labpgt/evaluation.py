"""The evaluation policy of a training: what is held out, how often it is measured, and how much it may cost.

This module owns :class:`Evaluation`, the settings of when and on what a run measures its accuracy;
the trainer (:mod:`labpgt.trainer`) carries it out and counts every evaluation query.

``holdout`` is what evaluations during the run measure: ``test`` (the test split), or ``validation``
(a split carved from the training data — tune there). A validation run ends, after its last step,
with one evaluation of the test split (``final_test``; its queries have the role ``test`` and are
counted apart): nothing before it has seen a test sample. Sessions recorded before ``final_test``
existed never measured the test split, and read back so.

Budget: with ``eval_fraction`` F > 0 (the default, 0.1, when ``eval_every`` is not given), an
evaluation every ``eval_every`` steps (steps // 20) measures a fixed subset of ``eval_subset``
held-out and ``eval_subset`` training samples, and is made only while evaluation has spent at most
F of the training queries so far (counting its own cost); the last step is always evaluated on the
whole held-out split and ``eval_train_samples`` training samples. With F = 0 (the default when
``eval_every`` is given, and for sessions recorded before the budget) every evaluation, from the one
before the first step on, is of the whole held-out split.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from labpgt.settings import check, setting
from labpgt.tasks import HOLDOUTS

DEFAULT_EVAL_FRACTION = 0.1
EVALUATIONS_PER_RUN = 20


@dataclass(frozen=True)
class Evaluation:
    """When and on what a training measures its accuracy (see the module's docstring)."""

    holdout: str = setting("test", "what evaluations measure: the test split, or validation, a split of the "
                                   "training data (the run then looks at the test split once, after its last "
                                   "step)", choices=HOLDOUTS, label="Evaluate on")
    final_test: bool = setting(True, "a validation run's one look at the test split after its last step",
                               label="Final test of a validation run")
    eval_every: int | None = setting(None, "evaluate every N steps", minimum=1,
                                     derived=f"steps / {EVALUATIONS_PER_RUN}", label="Evaluate every (steps)",
                                     typical=10)
    eval_fraction: float | None = setting(None, "evaluation budget: an evaluation between the first and the last "
                                                "step measures a fixed subset of held-out and training samples, and "
                                                "is made only while evaluation has spent at most this fraction of "
                                                "the training queries; the last step is evaluated on the whole "
                                                "held-out split; 0: no budget, every evaluation of the whole split",
                                          minimum=0, maximum=1, label="Evaluation budget (fraction)",
                                          derived=f"{DEFAULT_EVAL_FRACTION} without eval_every, else 0",
                                          typical=DEFAULT_EVAL_FRACTION)
    eval_subset: int = setting(100, "held-out and training samples of a budgeted evaluation", minimum=1)
    eval_train_samples: int = setting(200, "training samples of a full evaluation", minimum=1,
                                      label="Eval training samples")

    def __post_init__(self):
        check(self)

    def resolved(self, steps: int) -> "Evaluation":
        """A copy with the derived settings given: the budget, and the cadence of a run of ``steps`` steps."""
        fraction = self.eval_fraction
        if fraction is None:                      # a cadence given (or recorded) means the whole split each time
            fraction = DEFAULT_EVAL_FRACTION if self.eval_every is None else 0.0
        every = self.eval_every if self.eval_every is not None else max(1, steps // EVALUATIONS_PER_RUN)
        return dataclasses.replace(self, eval_fraction=fraction, eval_every=every)
