"""The evaluation policy of a training: what is held out, how often it is measured, and how much it may cost.

This module owns :class:`Evaluation`, the settings of when and on what a run measures its accuracy, and
:class:`TargetLook`, the stopping rule of one evaluation toward a target; the trainer (:mod:`labpgt.trainer`)
carries them out and counts every evaluation query.

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

Target (``eval_target`` T given): evaluations measure only what the decision "has the held-out accuracy
reached T" needs. They are spaced in training queries, not steps: the first once training has
measured as many queries as the whole held-out split costs, each next once the training queries have
grown by ``eval_growth`` since the last (considered every ``eval_every`` steps, 1 by default); none
before the first step. An evaluation measures the held-out samples in a random order (seeded, drawn
afresh for each evaluation), ``eval_chunk`` at a time, and stops as soon as the samples measured make
an accuracy of T or more of the whole split implausible: the exact upper confidence bound for a draw
without replacement (hypergeometric) at ``eval_confidence``, shared between the looks of one
evaluation (Bonferroni), falls below T. Otherwise it measures the whole split, and that exact
accuracy decides: T is *reached* only by an accuracy measured on every held-out sample, never by a
bound, so a wrong "reached" is impossible and a wrong "not yet" (probability at most 1 −
``eval_confidence`` per evaluation) only delays the next. Once T is reached the next target is
``eval_target_step`` higher (0: none). No training sample is measured unless ``eval_train_samples``
asks for it, and the last step is evaluated on the whole split, as without a target. An evaluation
that stopped early records how many held-out samples it measured (``<holdout>_samples``) beside the
accuracy of those, the target it tested (``eval_target``) and its bound (``<holdout>_upper_bound``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from labpgt.errors import UserError
from labpgt.settings import check, setting
from labpgt.tasks import HOLDOUTS

DEFAULT_EVAL_FRACTION = 0.1
DEFAULT_EVAL_TRAIN_SAMPLES = 200
EVALUATIONS_PER_RUN = 20


@dataclass(frozen=True)
class Evaluation:
    """When and on what a training measures its accuracy (see the module's docstring)."""

    holdout: str = setting(
        "test",
        "what evaluations measure: the test split, or validation, a split of the "
        "training data (the run then looks at the test split once, after its last "
        "step)",
        choices=HOLDOUTS,
        label="Evaluate on",
    )
    final_test: bool = setting(
        True,
        "a validation run's one look at the test split after its last step",
        label="Final test of a validation run",
    )
    eval_every: int | None = setting(
        None,
        "evaluate every N steps",
        minimum=1,
        derived=f"steps / {EVALUATIONS_PER_RUN}",
        label="Evaluate every (steps)",
        typical=10,
    )
    eval_fraction: float | None = setting(
        None,
        "evaluation budget: an evaluation between the first and the last "
        "step measures a fixed subset of held-out and training samples, and "
        "is made only while evaluation has spent at most this fraction of "
        "the training queries; the last step is evaluated on the whole "
        "held-out split; 0: no budget, every evaluation of the whole split",
        minimum=0,
        maximum=1,
        label="Evaluation budget (fraction)",
        derived=f"{DEFAULT_EVAL_FRACTION} without eval_every, else 0",
        typical=DEFAULT_EVAL_FRACTION,
    )
    eval_subset: int = setting(100, "held-out and training samples of a budgeted evaluation", minimum=1)
    eval_train_samples: int | None = setting(
        None,
        "training samples of a full evaluation",
        minimum=0,
        derived=f"{DEFAULT_EVAL_TRAIN_SAMPLES}, none with eval_target",
        label="Eval training samples",
        typical=DEFAULT_EVAL_TRAIN_SAMPLES,
    )
    eval_target: float | None = setting(
        None,
        "evaluate only to decide whether the held-out accuracy has reached "
        "this: each evaluation measures held-out samples until it is sure "
        "they fall short, or all of them (the exact accuracy decides); "
        "evaluations as the training queries grow",
        above=0,
        below=1,
        derived="none: evaluate every eval_every steps",
        label="Target accuracy",
        typical=0.85,
    )
    eval_target_step: float = setting(
        0.05,
        "with eval_target: once it is reached, the next target is this much higher (0: none)",
        minimum=0,
        below=1,
        label="Next target (step)",
    )
    eval_growth: float = setting(
        0.25,
        "with eval_target: an evaluation once the training queries have grown by "
        "this fraction since the last (the first once they match the held-out "
        "split's)",
        above=0,
        label="Evaluate as queries grow by",
    )
    eval_confidence: float = setting(
        0.95,
        "with eval_target: how sure an evaluation must be that the accuracy falls short before it stops measuring",
        minimum=0.5,
        below=1,
        label="Confidence of a 'not yet'",
    )
    eval_chunk: int = setting(
        30, "with eval_target: held-out samples measured between two looks", minimum=1, label="Samples per look"
    )

    def __post_init__(self):
        check(self)
        if self.eval_target is not None and self.eval_fraction:
            raise UserError(
                "eval_fraction budgets evaluations made every eval_every steps; with eval_target "
                "the evaluations decide their own cost"
            )

    def resolved(self, steps: int) -> Evaluation:
        """A copy with the derived settings given: the budget, and the cadence of a run of ``steps`` steps."""
        target = self.eval_target is not None
        fraction = self.eval_fraction
        if fraction is None:  # a cadence given (or recorded) means the whole split each time
            fraction = DEFAULT_EVAL_FRACTION if self.eval_every is None and not target else 0.0
        every = (
            self.eval_every if self.eval_every is not None else 1 if target else max(1, steps // EVALUATIONS_PER_RUN)
        )
        train = (
            self.eval_train_samples
            if self.eval_train_samples is not None
            else 0
            if target
            else DEFAULT_EVAL_TRAIN_SAMPLES
        )
        return dataclasses.replace(self, eval_fraction=fraction, eval_every=every, eval_train_samples=train)

    def targets_reached(self, best_whole_accuracy: float | None) -> int:
        """How many targets an exact held-out accuracy of ``best_whole_accuracy`` has reached (0 for None)."""
        if self.eval_target is None or best_whole_accuracy is None:
            return 0
        if best_whole_accuracy < self.eval_target - 1e-12:
            return 0
        if not self.eval_target_step:
            return 1
        return 1 + int(math.floor((best_whole_accuracy - self.eval_target) / self.eval_target_step + 1e-9))

    def open_target(self, best_whole_accuracy: float | None) -> float | None:
        """The lowest target not yet reached (None: every target reached, or none set)."""
        if self.eval_target is None:
            return None
        reached = self.targets_reached(best_whole_accuracy)
        if reached and not self.eval_target_step:
            return None
        target = self.eval_target + reached * self.eval_target_step
        return round(target, 12) if target < 1 else None

    def looks(self, population: int) -> int:
        """The looks of one target evaluation of a held-out split of ``population`` samples that may stop it
        early (the last, the whole split, is exact)."""
        return max(1, math.ceil(population / self.eval_chunk) - 1)


class TargetLook:
    """One evaluation toward ``target``, ask/tell: it owns the stopping rule and no loop, so the trainer's
    measurements and a simulation of them (``benchmarks/target_look_cost.py``) apply the same rule.

    :meth:`ask` says how many of the next held-out samples (in the evaluation's order) to measure, 0 once it
    is done; :meth:`tell` takes whether each of them was answered right. It is done when every one of the
    ``population`` samples is measured or when the upper bound on the whole split's accuracy, at the
    policy's confidence shared between its :meth:`Evaluation.looks`, falls below ``target``.
    """

    def __init__(self, policy: Evaluation, target: float, population: int):
        self.policy, self.target, self.population = policy, target, population
        self.confidence = 1.0 - (1.0 - policy.eval_confidence) / policy.looks(population)
        self.measured, self.correct, self.bound = 0, 0, 1.0  # nothing measured rules out no accuracy

    @property
    def ruled_out(self) -> bool:
        return self.bound < self.target

    def ask(self) -> int:
        if self.measured >= self.population or self.ruled_out:
            return 0
        return min(self.policy.eval_chunk, self.population - self.measured)

    def tell(self, right: np.ndarray) -> None:
        self.measured += len(right)
        self.correct += int(np.sum(right))
        if self.measured < self.population:
            self.bound = accuracy_upper_bound(self.correct, self.measured, self.population, self.confidence)


def accuracy_upper_bound(correct: int, measured: int, population: int, confidence: float) -> float:
    """The largest accuracy of a whole split of ``population`` samples that is still plausible, at
    ``confidence``, when ``correct`` of ``measured`` samples drawn without replacement were right: the exact
    one-sided hypergeometric bound (all right in the split cannot be ruled out when nothing is measured)."""
    from scipy.stats import hypergeom

    right = np.arange(population + 1)  # the split's possible numbers of right answers
    plausible = hypergeom.cdf(correct, population, right, measured) > 1.0 - confidence
    return float(right[plausible].max() / population)
