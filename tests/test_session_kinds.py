"""Schema labpgt-session/2: kinds, the layer and token columns, method state, sweeps, and reading /1 files."""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from sessionfiles import (
    GAINS,
    THRESHOLD,
    V1_EXAMPLE,
    dataset_names,
    downgrade_to_v1,
    write_sweep,
    write_v1_ring_sweep,
)

from labpgt.errors import UserError
from labpgt.export import export_session
from labpgt.inspection import format_inspection, inspect_session
from labpgt.recording import Checkpoint, QueryLabels
from labpgt.replay import replay_session
from labpgt.reservoir import Measurement
from labpgt.session import SCHEMA, SCHEMA_V1, SessionReader, SessionWriter, SweepWriter
from labpgt.session.schema import array_name, dataset_name

D, M = 3, 5
ODD_NAMES = ["block0.attn.wq", "0.mu.enc_W", ".", "..", "%2E", "a%b", "a\0b", " ", "ü-λ", "x" * 300]


def template(step=-1, scale=0.0) -> Checkpoint:
    """Params, optimizer and method arrays under names a transformer and a twin would use."""
    return Checkpoint(
        step,
        params={"block0.attn.wq": np.full((2, 2), scale), "0.mu.enc_W": np.full(3, scale)},
        optimizer_state={"block0.attn.wq.m": np.full((2, 2), scale), "t": np.array(step + 1)},
        rng_states={"batches": {"state": step}},
        trainer_state={"history": []},
        method_state={"twin.W": np.full((D, M), scale, dtype=np.float32), "twin.fitted": np.array(step >= 0)},
    )


def training_config(steps=4) -> dict:
    return {
        "train": {"task": "iris", "method": "node", "reservoir": "digital", "steps": steps, "seed": 0},
        "bench": None,
        "reservoir": {"input_width": D, "feature_width": M, "setting_names": []},
    }


def record_step(writer, rng, step, layer=0, token=-1, rows=4):
    labels = QueryLabels.of(step, "plus", rows, direction=0, sample=np.arange(rows), layer=layer, token=token)
    writer.record_queries(labels, rng.random((rows, D)), Measurement(features=rng.random((rows, M))))
    writer.record_step(step, {"loss": 1.0})
    writer.checkpoint(template(step, scale=float(step)))
    return labels


def assert_checkpoints_equal(a: Checkpoint, b: Checkpoint) -> None:
    assert a.step == b.step and a.rng_states == b.rng_states
    for mine, theirs in (
        (a.params, b.params),
        (a.optimizer_state, b.optimizer_state),
        (a.method_state, b.method_state),
    ):
        assert set(mine) == set(theirs)
        for name in mine:
            np.testing.assert_array_equal(mine[name], theirs[name])
            assert np.asarray(mine[name]).dtype == np.asarray(theirs[name]).dtype, name


def fingerprint(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------- kind, layer, token, method state
def test_a_file_says_its_schema_and_kind(tmp_path):
    with SessionWriter.create(tmp_path / "run.h5", training_config(), template()):
        pass
    write_sweep(tmp_path / "sweep.h5")
    for name, kind in (("run.h5", "training"), ("sweep.h5", "sweep")):
        with h5py.File(tmp_path / name, "r") as f:
            assert f.attrs["schema"] == SCHEMA == "labpgt-session/3" and f.attrs["kind"] == kind
        with SessionReader(tmp_path / name) as reader:
            assert reader.schema == SCHEMA and reader.kind == kind
    with h5py.File(tmp_path / "sweep.h5", "r") as f:
        assert set(f) == {"frequencies", "queries", "points", "plots"}  # no steps, no checkpoints


def test_layer_and_token_round_trip(tmp_path):
    path = tmp_path / "run.h5"
    rng = np.random.default_rng(0)
    with SessionWriter.create(path, training_config(), template()) as writer:
        record_step(writer, rng, 0)  # a dense network: layer 0
        record_step(writer, rng, 1, layer=[0, 1, 1, 2], token=[0, 1, 2, 31_000])
        record_step(writer, rng, 2, layer=-1, token=7)
    with SessionReader(path) as reader:
        q = reader.queries(fields=("layer", "token", "step"))
        assert q["layer"].dtype == np.int16 and q["token"].dtype == np.int32
        assert list(q["layer"]) == [0, 0, 0, 0, 0, 1, 1, 2, -1, -1, -1, -1]
        assert list(q["token"]) == [-1] * 4 + [0, 1, 2, 31_000] + [7] * 4
        assert list(reader.queries(4, 6))[:7] == ["index", "step", "role", "direction", "sample", "layer", "token"]


def test_method_state_round_trips_and_survives_resume(tmp_path):
    path = tmp_path / "run.h5"
    rng = np.random.default_rng(1)
    writer = SessionWriter.create(path, training_config(), template())
    for step in range(2):
        record_step(writer, rng, step)
    writer.record_queries(
        QueryLabels.of(2, "plus", 2, sample=[0, 1]), rng.random((2, D)), Measurement(features=rng.random((2, M)))
    )
    writer._write_queries()  # every row measured so far on disk (as writers before 0.2 did), then
    writer._file.flush()
    writer._file.close()  # killed inside step 2
    with SessionReader(path) as reader:
        assert reader.method_names == ("twin.W", "twin.fitted")
        checkpoint = reader.checkpoint(-1)
        assert isinstance(checkpoint, Checkpoint)
        assert_checkpoints_equal(checkpoint, template(1, scale=1.0))
    writer, resumed = SessionWriter.open_for_resume(path)
    with writer:
        assert_checkpoints_equal(resumed, template(1, scale=1.0))
        record_step(writer, rng, 2)
    with SessionReader(path) as reader:
        assert reader.n_checkpoints == 3 and reader.n_queries == 12
        assert_checkpoints_equal(reader.checkpoint(-1), template(2, scale=2.0))
        assert_checkpoints_equal(reader.checkpoint(0), template(0, scale=0.0))


def test_an_empty_method_state_is_an_empty_group(tmp_path):
    parts = template()
    with SessionWriter.create(
        tmp_path / "run.h5", training_config(), params_template=parts.params, optimizer_template=parts.optimizer_state
    ) as writer:
        writer.checkpoint(Checkpoint(0, template(0).params, template(0).optimizer_state, {}, {}))
    with SessionReader(tmp_path / "run.h5") as reader:
        assert reader.method_names == () and reader.checkpoint(0).method_state == {}


@pytest.mark.parametrize("group", ["params", "optimizer_state", "method_state"])
def test_checkpoint_array_names_are_any_text_without_a_slash(tmp_path, group):
    arrays = {name: np.full(2, float(i)) for i, name in enumerate(ODD_NAMES)}
    parts = {"params": {}, "optimizer_state": {}, "method_state": {}, group: arrays}
    with SessionWriter.create(tmp_path / "run.h5", training_config(), Checkpoint(-1, **parts, rng_states={})) as writer:
        writer.checkpoint(Checkpoint(0, **parts, rng_states={}))
    with SessionReader(tmp_path / "run.h5") as reader:
        stored = getattr(reader.checkpoint(0), group)
    assert set(stored) == set(ODD_NAMES)
    for name in ODD_NAMES:
        np.testing.assert_array_equal(stored[name], arrays[name])
        assert array_name(dataset_name(name)) == name and "/" not in dataset_name(name)
    for bad in ("", "a/b", "/", "\ud800"):
        with pytest.raises(ValueError):
            SessionWriter.create(tmp_path / "bad.h5", training_config(), Checkpoint(-1, {bad: np.zeros(1)}, {}, {}))
    assert not (tmp_path / "bad.h5").exists()  # refused before a file is made


def test_checkpoint_arrays_must_be_numbers(tmp_path):
    with pytest.raises(ValueError, match="numbers only"):
        SessionWriter.create(
            tmp_path / "run.h5", training_config(), Checkpoint(-1, {}, {"names": np.array(["a", "b"])}, {})
        )
    assert not (tmp_path / "run.h5").exists()


# --------------------------------------------------------------------------- sweeps
def test_sweep_round_trip(tmp_path):
    path = tmp_path / "sweep.h5"
    recorded = write_sweep(path)
    with SessionReader(path) as reader:
        assert reader.kind == "sweep" and reader.completed and reader.n_points == reader.planned_points == 9
        assert reader.sweep["setting"] == "loop_gain_db" and reader.config["sweep"]["fixed"] == {"ring.field_mt": 50.0}
        points = reader.points()
        for name in ("value", "peak_frequency_hz", "peak_power_dbm", "margin_db"):
            np.testing.assert_array_equal(points[name], [row[name] for row in recorded])
        assert list(points["queries"]) == list(range(1, 10)) and np.all(np.diff(points["wall_time"]) >= 0)
        q = reader.queries()
        assert list(q["step"]) == list(range(9)) and {reader.role_name(c) for c in q["role"]} == {"sweep"}
        assert list(q["layer"]) == [-1] * 9 and list(q["token"]) == [-1] * 9
        np.testing.assert_array_equal(q["settings"][:, 0], GAINS)
        assert reader.n_steps == reader.n_checkpoints == 0 and reader.last_checkpoint() is None
        assert reader.valid_lengths() == {"queries": 9, "points": 9}
        for no_steps in (reader.steps, lambda: reader.step_extra(0)):
            with pytest.raises(UserError, match="records a sweep: it has no steps"):
                no_steps()


def test_an_interrupted_sweep_is_not_complete(tmp_path):
    path = tmp_path / "sweep.h5"
    write_sweep(path, points=4)
    with SessionReader(path) as reader:
        assert reader.n_points == 4 and reader.planned_points == 9 and not reader.completed
    info = inspect_session(path)
    assert info["points"] == 4 and not info["completed"] and info["threshold"] is None


def test_sweep_writer_refuses_points_out_of_order_and_unknown_values(tmp_path):
    rng = np.random.default_rng(0)
    with SweepWriter.create(
        tmp_path / "sweep.h5", {"sweep": {}, "reservoir": {"input_width": 1, "feature_width": 2}}
    ) as writer:
        with pytest.raises(ValueError, match="the next point of this sweep is 0"):
            writer.record_point(1, {"value": 1.0})
        with pytest.raises(ValueError, match="unknown values"):
            writer.record_point(0, {"value": 1.0, "threshold": 2.0})
        writer.record_queries(
            QueryLabels.of(0, "sweep", 1, layer=-1), [[0.5]], Measurement(features=rng.random((1, 2)))
        )
        writer.record_point(0, {"value": 1.0})
    with pytest.raises(UserError, match="the sweep's 'instrument' is missing"):
        SessionReader(tmp_path / "sweep.h5")


def test_sweep_inspection_describes_a_sweep(tmp_path):
    path = tmp_path / "sweep.h5"
    recorded = write_sweep(path)
    info = inspect_session(path)
    assert info["kind"] == "sweep" and info["schema"] == SCHEMA and info["completed"]
    assert info["sweep"]["instrument"] == "ring" and info["sweep"]["start"] == -2.0 and info["sweep"]["stop"] == 2.0
    assert info["points"] == info["planned_points"] == 9 and info["queries_by_role"] == {"sweep": 9}
    assert [row["margin_db"] for row in info["peaks"]] == [row["margin_db"] for row in recorded]
    assert info["strongest"] == max(info["peaks"], key=lambda row: row["peak_power_dbm"])
    assert info["threshold"] == pytest.approx(THRESHOLD, abs=0.01)
    assert "task" not in info and "steps" not in info and info["bench"] == "test bench"
    text = format_inspection(info)
    assert "[labpgt-session/3, sweep]" in text and "sweep of ring.loop_gain_db from -2 to 2" in text
    assert "points 9 of 9 (complete)" in text and f"threshold: loop gain {info['threshold']:.3f} dB" in text
    assert len([line for line in text.splitlines() if line.strip().startswith(tuple("012345678"))]) == 9


def test_sweep_export_writes_points_instead_of_steps(tmp_path):
    path = tmp_path / "sweep.h5"
    recorded = write_sweep(path)
    before = fingerprint(path)
    written = {p.name for p in export_session(path, tmp_path / "out")}
    assert fingerprint(path) == before
    assert "points.csv" in written and "steps.csv" not in written and not (tmp_path / "out" / "steps.csv").exists()
    with open(tmp_path / "out" / "points.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(row["margin_db"]) for row in rows] == [row["margin_db"] for row in recorded]
    assert [int(row["point"]) for row in rows] == list(range(9)) and rows[-1]["queries"] == "9"
    header = (tmp_path / "out" / "queries.csv").read_text().splitlines()[0].split(",")
    assert header == [
        "index",
        "step",
        "role",
        "direction",
        "sample",
        "timestamp",
        "attempts",
        "ring.loop_gain_db",
        "layer",
        "token",
    ]
    assert "kind sweep" in (tmp_path / "out" / "README.txt").read_text()


def test_a_sweep_is_neither_resumed_nor_replayed(tmp_path):
    path = tmp_path / "sweep.h5"
    write_sweep(path, points=3)
    before = fingerprint(path)
    with pytest.raises(UserError, match="records a sweep, not a training"):
        SessionWriter.open_for_resume(path)
    with pytest.raises(UserError, match="replay reruns trainings"):
        replay_session(path)
    assert fingerprint(path) == before


# --------------------------------------------------------------------------- labpgt-session/1
def test_the_shipped_v1_file_reads_as_a_training(tmp_path):
    before = fingerprint(V1_EXAMPLE)
    with SessionReader(V1_EXAMPLE) as reader:
        assert reader.schema == SCHEMA_V1 and reader.kind == "training" and reader.completed
        q = reader.queries(fields=("role", "layer", "token"))
        assert q["layer"].dtype == np.int16 and not q["layer"].any() and (q["token"] == -1).all()
        assert reader.queries(10, 12, ("token", "step"))["token"].tolist() == [-1, -1]
        checkpoint = reader.last_checkpoint()
        assert type(checkpoint) is Checkpoint and checkpoint.method_state == {} and reader.method_names == ()
        assert set(checkpoint.params) == {"enc_W", "enc_b", "feature_mean", "feature_scale", "out_W", "out_b"}
    out = export_session(V1_EXAMPLE, tmp_path / "out")
    assert "steps.csv" in {p.name for p in out}
    assert (tmp_path / "out" / "queries.csv").read_text().splitlines()[1].endswith(",0,-1")
    assert fingerprint(V1_EXAMPLE) == before


def test_the_downgrade_helper_writes_the_v1_layout(tmp_path):
    """The /1 files the tests make hold the datasets the shipped /1 file holds (checkpoint arrays apart)."""
    path = tmp_path / "run.h5"
    with SessionWriter.create(
        path, training_config(), params_template={"enc_W": np.zeros(2)}, optimizer_template={}
    ) as writer:
        writer.checkpoint(Checkpoint(0, {"enc_W": np.zeros(2)}, {}, {}))
    downgrade_to_v1(path)

    def layout(p):
        return {
            name for name in dataset_names(p) if not name.startswith(("checkpoints/params/", "checkpoints/optimizer/"))
        }

    assert layout(path) == layout(V1_EXAMPLE)


def test_a_v1_ring_sweep_reads_as_a_sweep(tmp_path):
    path = tmp_path / "old-sweep.h5"
    recorded = write_v1_ring_sweep(path)
    with SessionReader(path) as reader:
        assert reader.schema == SCHEMA_V1 and reader.kind == "sweep" and reader.completed
        assert reader.sweep["setting"] == "loop_gain_db" and reader.n_points == 9
        points = reader.points()
        np.testing.assert_array_equal(points["margin_db"], [row["margin_db"] for row in recorded])
        assert list(points["queries"]) == list(range(1, 10))
        assert list(reader.queries(fields=("layer",))["layer"]) == [-1] * 9
    info = inspect_session(path)
    assert info["kind"] == "sweep" and info["schema"] == SCHEMA_V1
    assert info["threshold"] == pytest.approx(THRESHOLD, abs=0.01)
    assert "points.csv" in {p.name for p in export_session(path, tmp_path / "out")}
    write_v1_ring_sweep(tmp_path / "cut.h5", points=5)
    assert inspect_session(tmp_path / "cut.h5")["points"] == 5 and not inspect_session(tmp_path / "cut.h5")["completed"]


def test_resuming_a_v1_training_rewrites_it_as_v3_and_it_still_replays(tmp_path):
    path = tmp_path / "example.h5"
    shutil.copy(V1_EXAMPLE, path)
    with SessionReader(V1_EXAMPLE) as reader:
        original = reader.last_checkpoint()
        roles = reader.queries(fields=("role",))["role"]
    writer, checkpoint = SessionWriter.open_for_resume(path)
    writer.close()
    assert_checkpoints_equal(checkpoint, original)
    with SessionReader(path) as reader:
        assert reader.schema == SCHEMA and reader.kind == "training" and reader.method_names == ()
        q = reader.queries(fields=("role", "layer", "token"))
        np.testing.assert_array_equal(q["role"], roles)
        assert not q["layer"].any() and (q["token"] == -1).all()
    assert replay_session(path).ok


def test_v1_sweep_points_come_from_the_steps_even_when_an_extra_is_junk(tmp_path):
    path = tmp_path / "old-sweep.h5"
    write_v1_ring_sweep(path, points=2)
    with h5py.File(path, "r+") as f:  # point 0's summary replaced by a JSON list
        extra, ends = f["steps/extra"], f["steps/extra_end"]
        junk = np.frombuffer(b"[1, 2]", dtype=np.uint8)
        tail = extra[int(ends[0]) : int(ends[1])]
        extra.resize(len(junk) + len(tail), axis=0)
        extra[:] = np.concatenate([junk, tail])
        ends[:] = [len(junk), len(junk) + len(tail)]
    with SessionReader(path) as reader:
        points = reader.points()
    assert np.isnan(points["margin_db"][0]) and np.isfinite(points["margin_db"][1])
