import os
import subprocess
import sys

import numpy as np
import pytest

from labpgt.errors import UserError
from labpgt.tasks import TASKS, load_task, make_waveforms


@pytest.mark.parametrize("name", TASKS)
def test_task_shapes_split_and_standardisation(name):
    t = load_task(name, seed=0)
    assert t.name == name
    n_train, n_test = len(t.y_train), len(t.y_test)
    assert t.x_train.shape == (n_train, t.n_inputs) and t.x_test.shape == (n_test, t.n_inputs)
    assert abs(n_test / (n_train + n_test) - 0.25) < 0.01
    assert set(np.unique(t.y_train)) == set(range(t.n_classes))
    # stratified: each class's test count is its overall share of the test split, to within one sample
    counts = np.bincount(np.concatenate([t.y_train, t.y_test]), minlength=t.n_classes)
    expected = counts / counts.sum() * n_test
    assert np.all(np.abs(np.bincount(t.y_test, minlength=t.n_classes) - expected) <= 1.0)
    # standardised on the training split only: train mean 0, std 1 (or 0 for constant features)
    assert np.allclose(t.x_train.mean(axis=0), 0.0, atol=1e-10)
    std = t.x_train.std(axis=0)
    assert np.all(np.isclose(std, 1.0) | np.isclose(std, 0.0))
    assert not np.allclose(t.x_test.mean(axis=0), 0.0, atol=1e-10)


def test_same_seed_same_arrays_other_seed_other_split():
    a, b, c = load_task("wine", 3), load_task("wine", 3), load_task("wine", 4)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_train, c.y_train)


def test_known_sizes():
    assert load_task("digits").n_classes == 10 and load_task("digits").n_inputs == 64
    assert load_task("iris").n_classes == 3 and load_task("wine").n_inputs == 13
    w = load_task("waveforms")
    assert w.n_classes == 4 and w.n_inputs == 64


def test_waveforms_are_distinguishable_shapes():
    x, y = make_waveforms(n_per_class=50, noise=0.0, seed=1)
    assert x.shape == (200, 64) and np.bincount(y).tolist() == [50, 50, 50, 50]
    square = x[y == 1]
    # noiseless squares take only two values per row (±amplitude); sines do not
    assert all(len(np.unique(np.round(np.abs(row), 9))) == 1 for row in square)
    assert all(len(np.unique(np.round(np.abs(row), 9))) > 2 for row in x[y == 0])


def test_unknown_task_is_a_user_error_listing_valid_names():
    with pytest.raises(UserError) as err:
        load_task("mnist")
    message = str(err.value)
    assert "\n" not in message and "mnist" in message
    assert all(name in message for name in TASKS)


SPLIT_CHECK = """
import hashlib, sys
from labpgt.tasks import load_final_test, load_task
digest = hashlib.sha256()
for holdout in ("test", "validation"):
    task = load_task("wine", 2, holdout)
    for array in (task.x_train, task.y_train, task.x_test, task.y_test, *load_final_test("wine", 2)):
        digest.update(array.tobytes() + str(array.dtype).encode())
print(digest.hexdigest(), "sklearn" in sys.modules)
"""


def _split_in_a_process(cache) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", SPLIT_CHECK],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "XDG_CACHE_HOME": str(cache)},
    )
    digest, imported = done.stdout.split()
    return digest, imported


@pytest.mark.slow
def test_scikit_learns_arrays_are_cached_exactly_and_a_damaged_or_unwritable_cache_is_done_without(tmp_path):
    computed = _split_in_a_process(tmp_path / "cache")
    assert computed[1] == "True"  # the first time scikit-learn splits, and its arrays are kept
    cached = tmp_path / "cache" / "labpgt" / "tasks"
    assert {p.name.split("-sklearn")[0] for p in cached.iterdir()} == {
        "wine-data",
        "wine-seed2-test",
        "wine-seed2-validation",
    }
    assert _split_in_a_process(tmp_path / "cache") == (computed[0], "False")  # the same arrays, no scikit-learn
    for path in cached.iterdir():
        path.write_bytes(path.read_bytes()[:100])  # cut short, as a full disk or a kill would leave it
    assert _split_in_a_process(tmp_path / "cache") == computed
    for path in cached.iterdir():
        np.savez(path, other=np.zeros(3))  # whole, but not what it should hold
    assert _split_in_a_process(tmp_path / "cache") == computed
    unwritable = tmp_path / "file"
    unwritable.write_text("not a directory")
    assert _split_in_a_process(unwritable) == computed
