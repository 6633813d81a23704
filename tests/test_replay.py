"""Replay and re-analysis of session files (labpgt.replay): reproduces, and names the first divergence."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from sessionfiles import config_for

from labpgt.replay import (
    FLOAT64_ROUNDING,
    ROUNDING_ULPS,
    STEP_TOLERANCE,
    ReplayReservoir,
    refit_readout,
    replay_session,
)
from labpgt.runs import start_training
from labpgt.session import SessionReader
from labpgt.trainer import TrainConfig

SMALL = dict(
    task="iris",
    reservoir="digital",
    steps=6,
    eval_every=3,
    batch_size=16,
    eval_train_samples=40,
    digital_noise=0.02,
    seed=1,
)


def fingerprint(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest(), os.stat(path).st_mtime_ns


@pytest.fixture(scope="module")
def ring_session(tmp_path_factory):
    path = tmp_path_factory.mktemp("ring") / "ring.h5"
    start_training(
        TrainConfig.of(
            task="iris",
            method="node",
            reservoir="ring-sim",
            steps=2,
            eval_every=2,
            batch_size=8,
            directions=2,
            eval_train_samples=16,
            seed=0,
        ),
        path,
    )
    return path


@pytest.mark.parametrize("method", ["node", "pgt", "spsa", "backprop", "readout"])
def test_replay_reproduces_digital_runs(tmp_path, method):
    path = tmp_path / f"{method}.h5"
    start_training(config_for(method, **SMALL), path)
    before = fingerprint(path)
    report = replay_session(path)
    assert report.ok, report.first_divergence
    with SessionReader(path) as r:
        assert report.queries_replayed == r.n_queries and report.checkpoints_checked == r.n_checkpoints
    assert fingerprint(path) == before


@pytest.mark.slow
def test_replay_reproduces_the_ring_and_checks_every_spectrum(ring_session):
    before = fingerprint(ring_session)
    report = replay_session(ring_session)
    assert report.ok, report.first_divergence
    with SessionReader(ring_session) as r:
        assert report.spectra_checked == r.n_queries > 0
    assert fingerprint(ring_session) == before


def _altered_copy(source, target, change):
    shutil.copy(source, target)
    with h5py.File(target, "r+") as f:
        change(f)
    return target


def test_altered_spectrum_is_named_by_its_query(ring_session, tmp_path):
    def change(f):
        f["queries/spectrum"][123, 200] += 3.0

    report = replay_session(_altered_copy(ring_session, tmp_path / "altered.h5", change))
    assert not report.ok
    assert report.first_divergence.startswith("query 123 (step ")
    assert "spectrum does not give the recorded features" in report.first_divergence


def test_altered_input_is_named(ring_session, tmp_path):
    with SessionReader(ring_session) as r:
        step, role = int(r.queries(150, 151)["step"][0]), r.role_name(r.queries(150, 151)["role"][0])

    def change(f):
        f["queries/u"][150, 2] += 3.1e-07

    report = replay_session(_altered_copy(ring_session, tmp_path / "altered_u.h5", change))
    assert report.first_divergence == (
        f"query 150 (step {step}, role {role}): recorded input differs from requested by 3.1e-07"
    )


def _allowed_deviation(path, name, step, index):
    """What step-local replay allows checkpoint ``step``'s array ``name`` at ``index`` (module docstring)."""
    with SessionReader(path) as r:
        after, before = r.checkpoint(step).params[name], r.checkpoint(step - 1).params[name]
    return STEP_TOLERANCE * np.max(np.abs(after - before)) + ROUNDING_ULPS * FLOAT64_ROUNDING * np.max(np.abs(after))


@pytest.mark.slow
def test_altered_feature_diverges_and_altered_checkpoint_is_named(tmp_path):
    path = tmp_path / "pgt.h5"
    start_training(TrainConfig.of(method="pgt", **SMALL), path)
    allowed = _allowed_deviation(path, "out_b", 3, 0)
    # a change of checkpoint 3 is seen twice: by step 3, and by step 4, which starts from it
    allowed_both = min(allowed, _allowed_deviation(path, "out_b", 4, 0))

    def change_checkpoint(by):
        def change(f):
            f["checkpoints/params/out_b"][3, 0] += by

        return change

    report = replay_session(_altered_copy(path, tmp_path / "ck.h5", change_checkpoint(10 * allowed)))
    assert report.first_divergence.startswith("step 3: parameters differ from checkpoint")
    assert "in out_b" in report.first_divergence
    within = _altered_copy(path, tmp_path / "ck-within.h5", change_checkpoint(0.1 * allowed_both))
    report = replay_session(within)  # below the tolerance: indistinguishable from another CPU's rounding
    assert report.ok and 0.0 < report.largest_deviation <= STEP_TOLERANCE
    assert report.largest_at.startswith(("step 3, parameters out_b", "step 4, parameters out_b"))
    report = replay_session(within, exact=True)
    assert not report.ok and report.first_divergence.startswith("step 3: parameters differ from checkpoint")

    with SessionReader(path) as r:  # a training query: its features move the parameters
        q = r.queries(fields=("step", "role"))
        row = int(np.flatnonzero((q["step"] == 2) & (q["role"] == r.role_names.index("plus")))[0])

    def change_features(f):
        f["queries/features"][row, 0] += 1e-6

    report = replay_session(_altered_copy(path, tmp_path / "features.h5", change_features))
    assert not report.ok and "step 2" in report.first_divergence


def test_replay_reservoir_serves_recorded_rows(ring_session):
    with SessionReader(ring_session) as r:
        reservoir = ReplayReservoir(r)
        q = r.queries(0, 5)
        m = reservoir.measure(q["u"])
        np.testing.assert_array_equal(m.features, q["features"])
        np.testing.assert_array_equal(m.spectra, q["spectrum"])
        assert reservoir.setting_names == r.setting_names and reservoir.input_width == 8


def test_refit_readout_offline(ring_session, tmp_path):
    before = fingerprint(ring_session)
    result = refit_readout(ring_session)
    assert result["kind"] == "ridge" and result["source"] == "eval" and result["n_test"] == 38
    assert 0.0 <= result["test_accuracy"] <= 1.0 and result["n_train"] == 16
    assert fingerprint(ring_session) == before
    path = tmp_path / "readout.h5"
    start_training(config_for("readout", **SMALL), path)
    result = refit_readout(path)
    assert result["source"] == "baseline" and result["test_accuracy"] > 0.6


# --------------------------------------------------------------------------- another machine's rounding
def _labpgt(*args, env=None):
    return subprocess.run([sys.executable, "-m", "labpgt", *args], capture_output=True, text=True, timeout=300, env=env)


def _blas_kernels(env) -> str:
    probe = (
        "import numpy, scipy.linalg, threadpoolctl; print(sorted(i.get('architecture') for i in "
        "threadpoolctl.threadpool_info() if i.get('user_api') == 'blas'))"
    )
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env).stdout


@pytest.fixture(scope="module")
def other_kernel():
    """The environment of a process whose OpenBLAS runs another CPU kernel than this one's (OPENBLAS_CORETYPE)."""
    from threadpoolctl import threadpool_info

    kernels = {i.get("architecture") for i in threadpool_info() if i.get("internal_api") == "openblas"}
    if platform.machine() not in ("x86_64", "AMD64") or not kernels:
        pytest.skip("needs numpy's OpenBLAS on x86-64")
    env = dict(os.environ, OPENBLAS_CORETYPE="Haswell" if kernels & {"Prescott", "Katmai"} else "Prescott")
    if _blas_kernels(env) == _blas_kernels(dict(os.environ)):
        pytest.skip(f"this OpenBLAS ignores OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']}")
    return env


@pytest.mark.slow
def test_replay_holds_under_another_blas_kernel(tmp_path, other_kernel):
    """The ridge readout's solve runs through BLAS: under another kernel its bits differ (``--exact`` fails,
    naming the other machine), and step-local replay passes, reporting the deviation."""
    path = tmp_path / "readout.h5"
    start_training(config_for("readout", **SMALL), path)
    assert replay_session(path, exact=True).ok  # bit-identical on the recording machine
    exact = _labpgt("replay", "--exact", str(path), env=other_kernel)
    assert exact.returncode == 1 and "replay diverged: step 0" in exact.stdout
    assert "recorded on another machine" in exact.stdout
    replay = _labpgt("replay", "--json", str(path), env=other_kernel)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    report = json.loads(replay.stdout)
    assert report["ok"] and 0.0 < report["largest_deviation"] <= STEP_TOLERANCE
    assert any(line.startswith("blas: ") for line in report["other_machine"])
    assert "on another machine" in report["summary"] and "largest deviation" in report["summary"]


@pytest.mark.slow
def test_resume_on_another_kernel_says_so_and_replays(tmp_path, other_kernel):
    from sessionfiles import train_until

    path = tmp_path / "pgt.h5"
    train_until(2, TrainConfig.of(method="pgt", **SMALL), path)
    resumed = _labpgt("train", "--resume", str(path), "--quiet", env=other_kernel)
    assert resumed.returncode == 0, resumed.stderr
    notes = [line for line in resumed.stderr.splitlines() if "another machine" in line]
    assert len(notes) == 1 and "not bit-identically" in notes[0] and "blas: " in notes[0]
    with SessionReader(path) as r:
        assert r.completed and r.versions["resumed"][0]["after_step"] == 2
        assert r.versions["resumed"][0]["numerics"]["blas"] != r.versions["numerics"]["blas"]
    report = replay_session(path)
    assert report.ok, report.first_divergence
    again = _labpgt("train", "--resume", str(path), "--quiet", env=other_kernel)  # the last part's machine: no note
    assert again.returncode == 0 and "another machine" not in again.stderr


@pytest.mark.slow
def test_a_session_written_before_compression_and_the_new_fingerprint_replays_and_resumes(tmp_path, monkeypatch):
    """The layout before this labpgt wrote compressed queries: every row dataset plain, no spectrum grid, a
    fingerprint without SIMD and BLAS. It replays step by step (naming the machine as another), resumes, and
    stays plain."""
    from sessionfiles import train_until

    from labpgt.runs import resume_training
    from labpgt.session import hdf5

    plain = hdf5.row_dataset
    monkeypatch.setattr(hdf5, "row_dataset", lambda *args, **kwargs: plain(*args, **{**kwargs, "compress": False}))
    path = tmp_path / "earlier.h5"
    train_until(2, TrainConfig.of(method="pgt", **SMALL), path)
    monkeypatch.undo()
    with h5py.File(path, "r+") as f:
        versions = json.loads(f.attrs["versions"])
        versions["numerics"] = {k: v for k, v in versions["numerics"].items() if k not in ("simd", "blas")}
        f.attrs["versions"] = json.dumps(versions)
        f["queries/spectrum"].attrs.pop("resolution_db", None)  # no spectra, no grid: absent already
    report = replay_session(path)
    assert report.ok and not report.recording_complete and report.checkpoints_checked == 3
    assert report.largest_deviation == 0.0 and report.other_machine
    resume_training(path)
    with h5py.File(path, "r") as f:
        assert not any(hdf5.is_compressed(f[f"queries/{name}"]) for name in f["queries"])
    report = replay_session(path)
    assert report.ok and report.recording_complete, report.first_divergence
