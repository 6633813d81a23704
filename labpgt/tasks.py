"""Classification tasks as seeded arrays: scikit-learn's bundled digits, iris and wine, and synthetic waveforms.

This module owns the data: loading (nothing is downloaded), the stratified splits and the per-feature
standardisation, which is fitted on the training split only. Everything is seeded, so
``load_task(name, seed)`` returns bit-identical arrays for the same arguments.

Splits: 75 % train / 25 % test, stratified. The *held-out* split a run evaluates on is the test
split (``holdout="test"``, for reporting) or a validation split (``holdout="validation"``, for tuning):
20 % of the training split, stratified, carved off before standardising. The test split is then not
part of the :class:`Task` at all: :func:`load_final_test` hands it out, standardised alike, for the
one evaluation that ends such a run, so nothing tuned on validation has seen it. A network reshapes
the inputs into token sequences itself (digits' 64 pixels are 8 image rows of 8).

What scikit-learn gives (a bundled dataset's arrays, a split's indices) is kept in a per-machine cache,
``$XDG_CACHE_HOME/labpgt/tasks`` (``~/.cache`` without it), as ``.npz`` files named by the installed
scikit-learn and numpy versions: importing scikit-learn costs every ``labpgt`` process 0.6-0.9 s, the cached
arrays a few milliseconds, and they are the very arrays scikit-learn returned. A cache that cannot be read is
recomputed; one that cannot be written is done without.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

import numpy as np

from labpgt.errors import UserError

TASKS = ("digits", "iris", "wine", "waveforms")
TEST_FRACTION = 0.25
VALIDATION_FRACTION = 0.2
HOLDOUTS = ("test", "validation")
SPLITS = ("train", "held", "test")


@dataclass(frozen=True)
class Task:
    """A split, standardised classification task; ``x_*`` float64 (n, n_inputs), ``y_*`` int64 (n,).

    ``x_test``/``y_test`` hold the held-out split named by ``holdout`` ("test" or "validation").
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    name: str
    holdout: str = "test"

    @property
    def n_inputs(self) -> int:
        return int(self.x_train.shape[1])


def make_waveforms(n_per_class: int = 150, length: int = 64, noise: float = 0.3, seed: int = 0):
    """Sine, square, triangle and sawtooth (classes 0..3) with random phase, 1.5–3.5 cycles, ±30 % amplitude and
    Gaussian noise."""
    rng = np.random.default_rng(seed)
    n = 4 * n_per_class
    y = np.repeat(np.arange(4), n_per_class)
    cycles = rng.uniform(1.5, 3.5, size=(n, 1))
    phase = rng.uniform(0.0, 1.0, size=(n, 1))
    amplitude = rng.uniform(0.7, 1.3, size=(n, 1))
    t = np.arange(length)[None, :] / length
    frac = (cycles * t + phase) % 1.0
    shapes = np.stack(
        [
            np.sin(2.0 * np.pi * frac),
            np.where(frac < 0.5, 1.0, -1.0),
            4.0 * np.abs(frac - 0.5) - 1.0,
            2.0 * frac - 1.0,
        ]
    )
    x = amplitude * shapes[y, np.arange(n)] + noise * rng.standard_normal((n, length))
    order = rng.permutation(n)
    return x[order], y[order]


def _raw(name: str, seed: int):
    if name == "waveforms":
        return make_waveforms(seed=seed)
    cached = _cached(f"{name}-data", ("x", "y"), lambda: dict(zip(("x", "y"), _bundled(name))))
    return cached["x"], cached["y"]


def _bundled(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    loader = {"digits": datasets.load_digits, "iris": datasets.load_iris, "wine": datasets.load_wine}[name]
    bunch = loader()
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target)


def _split_indices(name: str, seed: int, holdout: str, y: np.ndarray) -> dict[str, np.ndarray]:
    """Indices into the task's samples of its training, held-out and test splits, as scikit-learn draws them."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(np.arange(len(y)), test_size=TEST_FRACTION, stratify=y, random_state=seed)
    held = test
    if holdout == "validation":
        train, held = train_test_split(train, test_size=VALIDATION_FRACTION, stratify=y[train], random_state=seed)
    return dict(zip(SPLITS, (train, held, test)))


def _cache_directory() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "labpgt" / "tasks"


@cache
def _versions() -> str:
    """What the cached arrays depend on: the installed scikit-learn's and numpy's versions."""
    return f"sklearn{metadata.version('scikit-learn')}-numpy{np.__version__}"


def _cached(key: str, names: tuple[str, ...], compute) -> dict[str, np.ndarray]:
    """The arrays ``names`` that ``compute()`` returns, from the cache when it holds them for the installed
    versions."""
    path = _cache_directory() / f"{key}-{_versions()}.npz"
    try:
        with np.load(path, allow_pickle=False) as held:
            if set(held.files) == set(names):
                return {name: held[name] for name in names}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass  # not cached yet, or not readable: computed again
    arrays = compute()
    written: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as handle:
            written = Path(handle.name)
            np.savez(handle, **arrays)
        os.replace(written, path)  # whole or not at all, whoever else writes it at the same time
    except OSError:
        if written is not None:  # a partial file, e.g. of a full disk
            written.unlink(missing_ok=True)
    return arrays


def load_task(name: str, seed: int = 0, holdout: str = "test") -> Task:
    """Load ``name`` (one of :data:`TASKS`), split by ``seed`` (see the module docstring) and standardise
    on the training split; ``holdout`` chooses the held-out split."""
    x_train, y_train, x_held, y_held, _, _, n_classes = _splits(name, seed, holdout)
    return Task(
        x_train=x_train, y_train=y_train, x_test=x_held, y_test=y_held, n_classes=n_classes, name=name, holdout=holdout
    )


@cache
def task_dimensions(name: str) -> tuple[int, int]:
    """``(n_inputs, n_classes)`` of ``name``: what sizes a network for it, without splitting it."""
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    x, y = _raw(name, 0)
    return int(x.shape[1]), int(y.max()) + 1


def load_final_test(name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The test split of a run that evaluated on validation, standardised as its training split was —
    for that run's final evaluation only."""
    *_, x_test, y_test, _ = _splits(name, seed, "validation")
    return x_test, y_test


def _splits(name: str, seed: int, holdout: str):
    """(train, held-out, test) inputs and labels, standardised on the training split, and the class count."""
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    if holdout not in HOLDOUTS:
        raise UserError(f"unknown holdout {holdout!r}; valid: {', '.join(HOLDOUTS)}")
    x, y = _raw(name, seed)
    index = _cached(f"{name}-seed{seed}-{holdout}", SPLITS, lambda: _split_indices(name, seed, holdout, y))
    (x_train, y_train), (x_held, y_held), (x_test, y_test) = ((x[index[k]], y[index[k]]) for k in SPLITS)
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0.0] = 1.0
    return (
        (x_train - mean) / std,
        y_train.astype(np.int64),
        (x_held - mean) / std,
        y_held.astype(np.int64),
        (x_test - mean) / std,
        y_test.astype(np.int64),
        int(y.max()) + 1,
    )
