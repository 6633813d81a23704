"""Digital-only references a benchmark reports beside its methods: what the task's own inputs give, no reservoir.

* **Logistic regression on the raw inputs** (standardised on the training split, as every run's are):
  scikit-learn's ``LogisticRegression``, its penalty ``C`` chosen on the validation split from
  :data:`LOGISTIC_C` — its tuning budget, ``len(LOGISTIC_C)`` fits per seed — then one look at the test split.

* **The digital ceiling**: the benchmark's own network (its model settings) with the ring replaced by a digital
  layer of the same widths, 8 in and 32 out, ``tanh(gain · (2u − 1) W + b)`` started from the digital reservoir's
  seeded map and *trained* with everything else by exact backpropagation (Adam, batches of
  :data:`CEILING_BATCH`, :data:`CEILING_STEPS` steps), its learning rate chosen on the validation split from
  :data:`CEILING_LR` — ``len(CEILING_LR)`` trainings per seed — then one look at the test split. It is what the
  network could do if the reservoir were a layer one could train; ``--reservoir digital --methods backprop``
  keeps the same layer fixed instead.

Neither makes a reservoir query.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

# numpy and the tasks are imported where used: the command line's parser reads CEILING_STEPS, and must stay light
LOGISTIC_C = tuple(10.0**k for k in range(-3, 4))
LOGISTIC = "logistic regression (raw inputs)"
CEILING_LR = (1e-3, 3e-3, 1e-2, 3e-2)
CEILING_STEPS = 2000
CEILING_BATCH = 32
CEILING = "digital ceiling (layer trained)"


def logistic_regression(task: str, seed: int) -> dict:
    """The reference on ``task`` split by ``seed``: the chosen C, its validation accuracy and its test accuracy."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from labpgt.tasks import load_final_test, load_task

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


def digital_ceiling(task: str, seed: int, model=None, steps: int = CEILING_STEPS) -> dict:
    """The ceiling on ``task`` split by ``seed`` for the network ``model`` (a ModelSpec; the default network if
    None): the chosen learning rate, its validation accuracy and its test accuracy."""
    import numpy as np

    from labpgt.architectures import ModelSpec
    from labpgt.tasks import load_final_test, load_task

    data = load_task(task, seed, holdout="validation")
    fits = [_trained_with_layer(data, seed, model or ModelSpec(), lr, steps) for lr in CEILING_LR]
    scores = [fit.accuracy(data.x_test, data.y_test) for fit in fits]
    best = int(np.argmax(scores))
    return {
        "reference": CEILING,
        "seed": int(seed),
        "lr": CEILING_LR[best],
        "steps": int(steps),
        "tuning_fits": len(CEILING_LR),
        "validation_by_lr": scores,
        "validation_accuracy": scores[best],
        "test_accuracy": fits[best].accuracy(*load_final_test(task, seed)),
    }


class CeilingFit(NamedTuple):
    """A network trained with its digital layer: its accuracy on (X, labels), and the layer's trained W and b."""

    accuracy: Callable[[Any, Any], float]
    layer: dict


def _trained_with_layer(data, seed: int, model, lr: float, steps: int) -> CeilingFit:
    """Train the network and its digital layer together (see the module docstring)."""
    import numpy as np
    import optax

    from labpgt.architectures import TrainingData, build_network
    from labpgt.digital import DigitalReservoir
    from labpgt.numerics import jax, jnp

    x, y = data.x_train, data.y_train
    start = DigitalReservoir(seed=seed)
    network = build_network(
        model, x.shape[1], data.n_classes, start.input_width, start.feature_width, seed, TrainingData(x, y)
    )

    def layer_map(layer, U):
        return jnp.tanh(start.gain * (2.0 * U - 1.0) @ layer["W"] + layer["b"])

    layer = {"W": jnp.asarray(start.W), "b": jnp.asarray(start.b)}
    rng = np.random.default_rng([int(seed), 3])
    batch = min(CEILING_BATCH, len(y))

    def measure(_index, U, _rows):
        return np.asarray(layer_map(layer, jnp.asarray(U)))

    params, _ = network.calibrate(network.initial_params, x[rng.choice(len(y), batch, replace=False)], measure)
    trainable = {n: params[n] for n in network.trainable_names}
    optimizer = optax.adam(lr)
    state = optimizer.init((trainable, layer))
    layer_vjp = jax.jit(lambda layer, U, g: jax.vjp(layer_map, layer, U)[1](g))
    layer_grads: dict = {}

    def through_the_layer(_index, U, _F, g_F, _rows):
        """dL/du for the network's backward pass; dL/d(W, b) kept aside for the layer's own step."""
        g_layer, g_U = layer_vjp(layer, jnp.asarray(U), jnp.asarray(g_F))
        layer_grads.update(g_layer)
        return g_U

    for _ in range(steps):
        index = rng.choice(len(y), batch, replace=False)
        tape = network.forward({**params, **trainable}, x[index], measure)
        _, grads = network.gradients({**params, **trainable}, tape, y[index], through_the_layer)
        updates, state = optimizer.update((grads, dict(layer_grads)), state)
        trainable, layer = optax.apply_updates((trainable, layer), updates)
    final = {**params, **{n: np.asarray(v) for n, v in trainable.items()}}

    def accuracy(X: np.ndarray, labels: np.ndarray) -> float:
        logits = network.forward(final, X, measure).logits
        return float(np.mean(np.argmax(logits, axis=-1) == labels))

    return CeilingFit(accuracy, {k: np.asarray(v) for k, v in layer.items()})


def digital_references(task: str, seeds, model=None, ceiling_steps: int = CEILING_STEPS) -> list[dict]:
    """Every reference for each seed's split (the ceiling for the network ``model``; none with ceiling_steps 0)."""
    rows = [logistic_regression(task, int(seed)) for seed in seeds]
    if ceiling_steps:
        rows += [digital_ceiling(task, int(seed), model, ceiling_steps) for seed in seeds]
    return rows


def references_table(rows: list[dict]) -> list[str]:
    """Per reference: median validation and test accuracy over the seeds' splits, and their range."""
    import numpy as np

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
