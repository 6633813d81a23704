"""Replay and re-analysis of session files (labpgt.replay): reproduces, and names the first divergence."""

from __future__ import annotations

import hashlib
import os
import shutil

import h5py
import numpy as np
import pytest

from labpgt.replay import ReplayReservoir, refit_readout, replay_session
from labpgt.session import SessionReader
from labpgt.runs import start_training
from labpgt.trainer import TrainConfig

SMALL = dict(task="iris", reservoir="digital", steps=6, eval_every=3, batch_size=16, eval_train_samples=40,
             digital_noise=0.02, seed=1)


def fingerprint(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest(), os.stat(path).st_mtime_ns


@pytest.fixture(scope="module")
def ring_session(tmp_path_factory):
    path = tmp_path_factory.mktemp("ring") / "ring.h5"
    start_training(TrainConfig(task="iris", method="node", reservoir="ring-sim", steps=2, eval_every=2, batch_size=8,
                                directions=2, eval_train_samples=16, seed=0), path)
    return path


@pytest.mark.parametrize("method", ["node", "pgt", "spsa", "backprop", "readout"])
def test_replay_reproduces_digital_runs(tmp_path, method):
    path = tmp_path / f"{method}.h5"
    start_training(TrainConfig(method=method, **SMALL), path)
    before = fingerprint(path)
    report = replay_session(path)
    assert report.ok, report.first_divergence
    with SessionReader(path) as r:
        assert report.queries_replayed == r.n_queries and report.checkpoints_checked == r.n_checkpoints
    assert fingerprint(path) == before


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
    assert report.first_divergence == (f"query 150 (step {step}, role {role}): recorded input differs from "
                                       f"requested by 3.1e-07")


def test_altered_feature_diverges_and_altered_checkpoint_is_named(tmp_path):
    path = tmp_path / "pgt.h5"
    start_training(TrainConfig(method="pgt", **SMALL), path)

    def change_checkpoint(f):
        f["checkpoints/params/out_b"][3, 0] += 1e-12

    report = replay_session(_altered_copy(path, tmp_path / "ck.h5", change_checkpoint))
    assert report.first_divergence.startswith("step 3: parameters differ from checkpoint")

    with SessionReader(path) as r:   # a training query: its features move the parameters
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
    start_training(TrainConfig(method="readout", **SMALL), path)
    result = refit_readout(path)
    assert result["source"] == "baseline" and result["test_accuracy"] > 0.6
