"""Digital-only references a benchmark reports beside its methods: what the task's own inputs give, no reservoir.

* **Logistic regression on the raw inputs** (standardised on the training split, as every run's are):
  scikit-learn's ``LogisticRegression``, its penalty ``C`` chosen on the validation split from
  :data:`LOGISTIC_C` — its tuning budget, ``len(LOGISTIC_C)`` fits per seed — then one look at the test split.
  It makes no reservoir query.

The other digital reference, the same network with the ring replaced by a digital layer of the same width, is a
benchmark of its own: ``--reservoir digital --methods backprop`` (the digital reservoir's widths are the
embedded ring's, 8 in and 32 out; its layer is a fixed random tanh map, which backprop does not train).
"""

from __future__ import annotations

import numpy as np

from labpgt.tasks import load_final_test, load_task

LOGISTIC_C = tuple(float(c) for c in np.logspace(-3, 3, 7))
LOGISTIC = "logistic regression (raw inputs)"


def logistic_regression(task: str, seed: int) -> dict:
    """The reference on ``task`` split by ``seed``: the chosen C, its validation accuracy and its test accuracy."""
    from sklearn.linear_model import LogisticRegression

    data = load_task(task, seed, holdout="validation")
    fits = [LogisticRegression(C=c, max_iter=2000).fit(data.x_train, data.y_train) for c in LOGISTIC_C]
    scores = [float(f.score(data.x_test, data.y_test)) for f in fits]
    best = int(np.argmax(scores))
    x_test, y_test = load_final_test(task, seed)
    return {
        "reference": LOGISTIC,
        "seed": int(seed),
        "C": LOGISTIC_C[best],
        "tuning_fits": len(LOGISTIC_C),
        "validation_accuracy": scores[best],
        "test_accuracy": float(fits[best].score(x_test, y_test)),
    }


def digital_references(task: str, seeds) -> list[dict]:
    """Every reference for each seed's split."""
    return [logistic_regression(task, int(seed)) for seed in seeds]


def references_table(rows: list[dict]) -> list[str]:
    """Per reference: median validation and test accuracy over the seeds' splits, and their range."""
    lines = [
        "digital-only references (no reservoir query), median [range] over seeds",
        f"{'reference':<36}{'seeds':>6}{'validation acc.':>24}{'test acc.':>24}",
    ]
    for name in dict.fromkeys(r["reference"] for r in rows):
        mine = [r for r in rows if r["reference"] == name]
        cells = []
        for key in ("validation_accuracy", "test_accuracy"):
            values = [r[key] for r in mine]
            cells.append(f"{np.median(values):.4f} [{min(values):.4f}–{max(values):.4f}]")
        lines.append(f"{name:<36}{len(mine):>6}{cells[0]:>24}{cells[1]:>24}")
    return lines
