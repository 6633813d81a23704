"""The session file: round trip, SWMR live reading, bad input, resume after SIGKILL (labpgt.session)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import h5py
import numpy as np
import pytest

from labpgt.engine import RunEngine
from labpgt.errors import UserError
from labpgt.export import export_session
from labpgt.inspection import format_inspection, inspect_session
from labpgt.recording import Checkpoint, QueryLabels
from labpgt.reservoir import Measurement
from labpgt.runs import start_training
from labpgt.session import SCHEMA, SessionReader, SessionWriter, hdf5, params_sha256
from labpgt.trainer import TrainConfig

D, M, P, S = 8, 32, 401, 8
PARAMS = {"enc_W": np.zeros((4, D)), "out_b": np.zeros(3)}
OPTIMIZER = {"m": np.zeros(35), "t": np.array(0, dtype=np.int64)}


def synthetic_writer(path) -> SessionWriter:
    config = {
        "train": {"task": "iris", "method": "node", "reservoir": "ring-sim", "steps": 3, "seed": 0},
        "bench": None,
        "reservoir": {"input_width": D, "feature_width": M, "setting_names": [f"gen{i}.power_dbm" for i in range(S)]},
    }
    return SessionWriter.create(
        path,
        config,
        params_template=PARAMS,
        optimizer_template=OPTIMIZER,
        frequencies=np.linspace(2.9e9, 3.1e9, P),
        instruments={"analyzer": "SIM,SA,0,1"},
        resolution_db=2.0**-7,
    )


def measurement(rng, n) -> Measurement:
    return Measurement(
        features=rng.random((n, M)),
        spectra=rng.normal(-80, 5, (n, P)).astype(np.float32),
        frequencies=np.linspace(2.9e9, 3.1e9, P),
        settings=rng.random((n, S)),
        started=np.full(n, 1.7e9),
        attempts=np.ones(n, dtype=np.int32),
    )


def write_steps(writer, rng, steps, first=0, rows=10):
    written = []
    for s in range(first, first + steps):
        U = rng.random((rows, D))
        m = measurement(rng, rows)
        writer.record_queries(
            QueryLabels.of(s, "plus", rows, direction=np.arange(rows), sample=np.arange(rows) + 100), U, m
        )
        writer.record_step(
            s,
            {
                "loss": 1.0 / (s + 1),
                "grad_norm": 2.0,
                "lr": 0.1,
                "training_queries": rows * (s + 1),
                "eval_queries": 0,
                "perturbation": np.ones((2, 3), dtype=np.int8),
                "alpha": 0.5,
            },
        )
        params = {"enc_W": np.full((4, D), float(s)), "out_b": np.arange(3.0) + s}
        writer.checkpoint(
            Checkpoint(
                s,
                params,
                {"m": np.full(35, s / 7), "t": np.array(s + 1)},
                {"batches": {"state": 2**100 + s}},
                {"history": [{"step": i} for i in range(s + 1)], "lr": 0.1},
            )
        )
        written.append((U, m, params))
    return written


def file_fingerprint(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest(), os.stat(path).st_mtime_ns


# --------------------------------------------------------------------------- round trip
def test_round_trip(tmp_path):
    path = tmp_path / "run.h5"
    rng = np.random.default_rng(0)
    with synthetic_writer(path) as writer:
        written = write_steps(writer, rng, 3)
    with SessionReader(path) as r:
        assert r.schema == SCHEMA and r.n_queries == 30 and r.n_steps == 3 and r.n_checkpoints == 3
        assert r.completed and r.last_complete_step == 2
        q = r.queries()
        np.testing.assert_array_equal(q["u"], np.concatenate([w[0] for w in written]))
        np.testing.assert_array_equal(q["spectrum"], np.concatenate([w[1].spectra for w in written]))
        np.testing.assert_array_equal(q["features"], np.concatenate([w[1].features for w in written]))
        np.testing.assert_array_equal(q["settings"], np.concatenate([w[1].settings for w in written]))
        assert q["u"].dtype == np.float64 and q["spectrum"].dtype == np.float32
        assert [r.role_name(c) for c in q["role"][:2]] == ["plus", "plus"]
        assert r.setting_names[0] == "gen0.power_dbm" and r.instruments == {"analyzer": "SIM,SA,0,1"}
        steps = r.steps()
        np.testing.assert_array_equal(steps["loss"], [1.0, 0.5, 1 / 3])
        assert np.isnan(steps["test_accuracy"]).all() and list(steps["queries"]) == [10, 20, 30]
        np.testing.assert_array_equal(r.perturbation(1), np.ones((2, 3)))
        assert r.step_extra(0) == {"alpha": 0.5}
        ck = r.checkpoint(-1)
        assert ck.step == 2 and ck.rng_states == {"batches": {"state": 2**100 + 2}}
        assert ck.trainer_state == {"history": [{"step": 0}, {"step": 1}, {"step": 2}], "lr": 0.1}
        assert int(ck.optimizer_state["t"]) == 3 and ck.optimizer_state["t"].dtype == np.int64
        assert params_sha256(ck.params) == params_sha256(written[-1][2])
    info = inspect_session(path)
    assert (
        info["steps"] == 3 and info["queries"] == 30 and info["completed"] and info["queries_by_role"] == {"plus": 30}
    )
    assert info["final_params_sha256"] == params_sha256(written[-1][2]) and "run.h5" in format_inspection(info)


def test_dataset_layout_is_chunked_compressed_and_swmr(tmp_path):
    path = tmp_path / "run.h5"
    with synthetic_writer(path) as writer:
        write_steps(writer, np.random.default_rng(1), 1)
        with h5py.File(path, "r", swmr=True) as f:
            assert f.swmr_mode
            spectrum = f["queries/spectrum"]
            assert spectrum.chunks == (128, P) and spectrum.maxshape == (None, P)
            assert spectrum.attrs["resolution_db"] == 2.0**-7
            for name in ("queries/index", "queries/step", "queries/spectrum", "queries/u", "queries/features"):
                assert list(f[name]._filters) == ["shuffle", "gzip"], name  # built into every HDF5: no plugin
                assert f[name]._filters["gzip"] == 4
            assert not f["steps/loss"]._filters and f["steps/loss"].chunks


def _file_and_data_bytes(path):
    stored = []
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: stored.append(obj.id.get_storage_size()) if isinstance(obj, h5py.Dataset) else None
        )
    return os.path.getsize(path), sum(stored)


@pytest.mark.parametrize(
    "rows", [4, pytest.param(10, marks=pytest.mark.slow), 32, pytest.param(45, marks=pytest.mark.slow)]
)
def test_a_long_run_leaves_no_dead_space_in_its_file(tmp_path, rows):
    """Under SWMR HDF5 leaves a rewritten compressed chunk's old copy behind (with 256-row chunks rewritten
    at every 4-row step: a file 27x its data); the live file carries that dead space, every row written,
    and the writer removes it when it closes, whatever the rows a step."""
    path = tmp_path / "run.h5"
    rng = np.random.default_rng(3)
    with synthetic_writer(path) as writer:
        written = write_steps(writer, rng, 100, rows=rows)
        live_size, live_data = _file_and_data_bytes(path)
    size, data = _file_and_data_bytes(path)
    assert live_size > 1.15 * live_data and data == live_data  # there was dead space, and no data was lost
    assert size < 1.15 * data + 200_000
    with SessionReader(path) as r:
        np.testing.assert_array_equal(r.queries(fields=("u",))["u"], np.concatenate([u for u, _, _ in written]))


# --------------------------------------------------------------------------- live reading
READER_SCRIPT = textwrap.dedent("""
    import sys, time
    from labpgt.session import SessionReader
    with SessionReader(sys.argv[1]) as r:
        print("open", r.n_steps, flush=True)
        seen, deadline = (r.n_steps, r.n_checkpoints), time.time() + 30
        while seen[1] < int(sys.argv[2]) and time.time() < deadline:
            r.refresh()
            if (r.n_steps, r.n_checkpoints) != seen:
                seen = (r.n_steps, r.n_checkpoints)
                print("steps", r.n_steps, r.n_queries, r.last_complete_step, flush=True)
            time.sleep(0.005)
""")


@pytest.mark.slow
def test_second_process_sees_new_steps_while_writing(tmp_path):
    path = tmp_path / "live.h5"
    rng = np.random.default_rng(2)
    with synthetic_writer(path) as writer:
        write_steps(writer, rng, 1)
        reader = subprocess.Popen(
            [sys.executable, "-c", READER_SCRIPT, str(path), "8"], stdout=subprocess.PIPE, text=True
        )
        try:
            assert reader.stdout.readline().split() == ["open", "1"]
            for s in range(1, 8):
                write_steps(writer, rng, 1, first=s)
                time.sleep(0.05)
            out, _ = reader.communicate(timeout=30)
        finally:
            reader.kill()
    seen = [int(line.split()[1]) for line in out.splitlines()]
    assert seen[-1] == 8 and len(seen) >= 3 and seen == sorted(seen)
    last = out.splitlines()[-1].split()  # live: every row of every step, the last one complete
    assert last == ["steps", "8", "80", "7"]
    with SessionReader(path) as r:  # closed (and compacted): the same
        assert (r.n_queries, r.last_complete_step) == (80, 7)


def test_a_live_file_is_looked_at_again_in_the_reverse_of_the_order_it_is_written(tmp_path, monkeypatch):
    """A writer flushes a step's queries, then its row, then its checkpoint; a reader refreshes the checkpoints
    first and the queries last, so a checkpoint it sees always has its step row and queries (the other way round,
    a flush between two refreshes showed a checkpoint of step 8 with 7 step rows)."""
    path = tmp_path / "run.h5"
    with synthetic_writer(path) as writer:
        write_steps(writer, np.random.default_rng(0), 2)
    refreshed = []
    monkeypatch.setattr(h5py.File, "swmr_mode", property(lambda f: True))  # as a live file's reader has it
    monkeypatch.setattr(h5py.Dataset, "refresh", lambda ds: refreshed.append(ds.name.split("/")[1]))
    with SessionReader(path) as r:
        refreshed.clear()  # opening refreshed too
        r.refresh()
    last = {group: max(i for i, g in enumerate(refreshed) if g == group) for group in refreshed}
    first = {group: min(i for i, g in enumerate(refreshed) if g == group) for group in refreshed}
    assert last["checkpoints"] < first["steps"] and last["steps"] < first["queries"]


# --------------------------------------------------------------------------- bad input
def _one_line_error(path) -> str:
    with pytest.raises(UserError) as info:
        SessionReader(path)
    message = str(info.value)
    assert "\n" not in message and message
    return message


def test_bad_files_are_one_line_user_errors(tmp_path):
    good = tmp_path / "good.h5"
    with synthetic_writer(good) as writer:
        write_steps(writer, np.random.default_rng(3), 2)

    text = tmp_path / "run.h5"
    text.write_text("step,loss\n0,1.0\n")
    assert _one_line_error(text) == "run.h5 is not an HDF5 file"
    assert "does not exist" in _one_line_error(tmp_path / "missing.h5")

    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert "truncated or damaged" in _one_line_error(truncated)

    future = tmp_path / "future.h5"
    future.write_bytes(good.read_bytes())
    with h5py.File(future, "r+") as f:
        f.attrs["schema"] = "labpgt-session/9"
    assert _one_line_error(future) == (
        "future.h5: schema 'labpgt-session/9' is not supported "
        "(this labpgt reads labpgt-session/1, labpgt-session/2 and labpgt-session/3)"
    )

    stranger = tmp_path / "stranger.h5"
    with h5py.File(stranger, "w") as f:
        f["x"] = np.arange(3)
    assert "not a labpgt session" in _one_line_error(stranger)

    no_steps = tmp_path / "no_steps.h5"
    no_steps.write_bytes(good.read_bytes())
    with h5py.File(no_steps, "r+") as f:
        del f["steps"]
    assert _one_line_error(no_steps) == "no_steps.h5: damaged session: missing group 'steps'"

    wrong_dtype = tmp_path / "wrong_dtype.h5"
    wrong_dtype.write_bytes(good.read_bytes())
    with h5py.File(wrong_dtype, "r+") as f:
        del f["queries/u"]
        f.create_dataset("queries/u", data=np.zeros((20, D), dtype=np.float32))
    assert "'queries/u' has dtype float32, expected float64" in _one_line_error(wrong_dtype)


def test_a_killed_writers_file_cut_short_is_truncated(tmp_path):
    live = tmp_path / "live.h5"
    with synthetic_writer(live) as writer:
        write_steps(writer, np.random.default_rng(4), 3)
        cut = tmp_path / "cut.h5"  # still marked open for writing, and nobody's lock beside it
        cut.write_bytes(live.read_bytes()[: live.stat().st_size * 2 // 3])
        assert "truncated or damaged" in _one_line_error(cut)


def test_a_live_writers_file_opens_in_the_moment_its_superblock_runs_ahead_of_its_data(tmp_path, monkeypatch):
    """A writer's superblock may give an end of file past the file's size for a moment (seen in CI: HDF5's
    plain open then says "truncated file"); the reader must read it live, not call it damaged."""
    path = tmp_path / "live.h5"
    with synthetic_writer(path) as writer:
        write_steps(writer, np.random.default_rng(5), 2)
        real_open = h5py.File

        def open_in_that_moment(name, mode="r", *args, **kwargs):
            if isinstance(name, os.PathLike) and mode == "r" and not args and not kwargs:  # the plain open
                raise OSError(
                    f"Unable to synchronously open file (truncated file: eof = 10, sblock->base_addr = 0, "
                    f"stored_eof = {os.path.getsize(path) + 290})"
                )
            return real_open(name, mode, *args, **kwargs)

        def our_check_in_that_moment(p):
            raise UserError(f"{p.name} is truncated or damaged: 10 bytes, its superblock says 300")

        with monkeypatch.context() as moment:
            moment.setattr(h5py, "File", open_in_that_moment)
            moment.setattr(hdf5, "check_not_truncated", our_check_in_that_moment)
            with SessionReader(path) as reader:
                assert reader.last_complete_step == 1


def test_inspect_and_export_never_modify(tmp_path):
    path = tmp_path / "run.h5"
    with synthetic_writer(path) as writer:
        write_steps(writer, np.random.default_rng(4), 2)
    before = file_fingerprint(path)
    time.sleep(0.01)
    inspect_session(path)
    written = export_session(path, tmp_path / "out")
    assert file_fingerprint(path) == before
    names = {p.name for p in written}
    assert {
        "steps.csv",
        "queries.csv",
        "spectra.npy",
        "frequencies.npy",
        "features.npy",
        "u.npy",
        "README.txt",
    } <= names
    spectra = np.load(tmp_path / "out" / "spectra.npy")
    assert spectra.shape == (20, P) and spectra.dtype == np.float32
    header = (tmp_path / "out" / "queries.csv").read_text().splitlines()[0].split(",")
    assert header[:7] == ["index", "step", "role", "direction", "sample", "timestamp", "attempts"]
    assert header[7] == "gen0.power_dbm"
    assert len((tmp_path / "out" / "steps.csv").read_text().splitlines()) == 3


# --------------------------------------------------------------------------- resume after SIGKILL
CONFIG = dict(
    task="iris",
    method="node",
    reservoir="digital",
    steps=60,
    eval_every=10,
    digital_noise=0.02,
    seed=3,
    batch_size=16,
    eval_train_samples=40,
)
RING_CONFIG = dict(
    task="iris",
    method="node",
    reservoir="ring-sim",
    steps=16,
    eval_every=8,
    eval_fraction=0.1,  # a budgeted evaluation between, whose budget resumes too; the last of the whole split
    eval_subset=8,
    seed=3,
    batch_size=8,
    eval_train_samples=40,
)
TRANSFORMER_RING_CONFIG = dict(
    task="iris",
    model="transformer",
    width=4,
    heads=1,
    blocks=2,
    method="node",
    reservoir="ring-sim",
    directions=2,
    steps=8,
    eval_every=4,
    eval_fraction=0.1,
    eval_subset=8,
    seed=3,
    batch_size=4,
    eval_train_samples=0,  # 8 queries a sample: the held-out split alone
)
TWIN_RING_CONFIG = dict(
    task="iris",
    method="twin",
    reservoir="ring-sim",
    steps=20,
    eval_every=10,
    seed=3,
    batch_size=8,
    twin_check_every=4,
    eval_train_samples=40,
)
DEVICE_RING_CONFIG = dict(RING_CONFIG, ring_device=2)  # a ring drawn from the device spread
# steps on the twin measure nothing and are not checkpointed: a kill after one resumes from the measured step before
DYNA_RING_CONFIG = dict(
    task="iris",
    method="dyna",
    reservoir="ring-sim",
    steps=20,
    eval_every=10,
    seed=3,
    batch_size=8,
    model_steps=2,
    twin_check_every=3,
    twin_check_rows=4,
    eval_train_samples=40,
)

TRAIN_SCRIPT = textwrap.dedent("""
    import json, sys
    from labpgt.engine import RunEngine, StepEnded
    from labpgt.trainer import TrainConfig
    engine = RunEngine().subscribe(lambda event: isinstance(event, StepEnded) and print(event.step + 1, flush=True))
    if sys.argv[1] == "fresh":
        engine.train(TrainConfig.of(**json.loads(sys.argv[3])), sys.argv[2])
    else:
        engine.resume(sys.argv[2])
""")


def _run_and_kill(mode, path, config, at_step, rng) -> int:
    proc = subprocess.Popen(
        [sys.executable, "-c", TRAIN_SCRIPT, mode, str(path), json.dumps(config)], stdout=subprocess.PIPE, text=True
    )
    done = -1
    for line in proc.stdout:
        done = int(line)
        if done >= at_step:
            break
    time.sleep(rng.uniform(0.0, 0.004))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return done


@pytest.mark.slow
@pytest.mark.parametrize(
    "config, stride",
    [
        (CONFIG, (4, 15)),
        (RING_CONFIG, (2, 4)),
        (TRANSFORMER_RING_CONFIG, (1, 2)),
        (TWIN_RING_CONFIG, (3, 5)),
        (DEVICE_RING_CONFIG, (2, 4)),
        (DYNA_RING_CONFIG, (3, 5)),
    ],
    ids=["digital", "ring-sim", "transformer-ring-sim", "twin-ring-sim", "ring-sim-device-2", "dyna-ring-sim"],
)
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, config, stride):
    reference = tmp_path / "reference.h5"
    result = start_training(TrainConfig.of(**config), reference)
    with SessionReader(reference) as ref:
        ref_params = [params_sha256(ref.checkpoint(j).params) for j in range(ref.n_checkpoints)]
        ref_checkpoint_steps = list(ref.checkpoint_steps)
        ref_queries = ref.queries(fields=("u", "features"))

    path = tmp_path / "run.h5"
    rng = random.Random(12345)
    mode, last = "fresh", 0
    for kill in range(3):
        target = last + rng.randint(*stride)
        printed = _run_and_kill(mode, path, config, target, rng)
        with SessionReader(path) as r:  # a killed file opens, everything flushed is intact
            # every step printed has its row and every one of its queries (nothing measured waits in memory),
            # and the last complete step is the last checkpointed one (a step's row precedes its checkpoint)
            recorded = r.steps()["queries"]
            assert r.n_steps >= printed and r.n_queries >= recorded[printed - 1]
            # (steps that measured nothing after the last checkpoint, at most a dyna's model_steps, are recomputed)
            assert (
                r.last_complete_step is not None and r.last_complete_step + 1 + config.get("model_steps", 0) >= printed
            )
            assert r.last_complete_step == r.checkpoint_steps[-1] and r.n_steps >= r.last_complete_step + 1
            assert list(r.checkpoint_steps) == ref_checkpoint_steps[: r.n_checkpoints]
            for j in range(r.n_checkpoints):
                assert params_sha256(r.checkpoint(j).params) == ref_params[j], f"kill {kill}, checkpoint {j}"
            valid = r.valid_lengths()["queries"]
            q = r.queries(0, valid, ("u", "features"))
            np.testing.assert_array_equal(q["u"], ref_queries["u"][:valid])
            np.testing.assert_array_equal(q["features"], ref_queries["features"][:valid])
            last = r.last_complete_step + 1
        mode = "resume"
    RunEngine().resume(path)  # the last resume in this process: only the kills need processes of their own
    info, ref_info = inspect_session(path), inspect_session(reference)
    assert info["completed"] and info["steps"] == config["steps"]
    assert info["final_params_sha256"] == ref_info["final_params_sha256"] == ref_params[-1]
    assert info["queries"] == ref_info["queries"] and info["queries_by_role"] == ref_info["queries_by_role"]
    assert info["test_accuracy"] == pytest.approx(result.final_accuracy, abs=0)
    with SessionReader(path) as r, SessionReader(reference) as ref:
        np.testing.assert_array_equal(r.steps()["loss"], ref.steps()["loss"])
        assert r.last_checkpoint().trainer_state["history"] == ref.last_checkpoint().trainer_state["history"]
        if (
            config["reservoir"] == "ring-sim"
        ):  # the embedded ring drifts (the default): the clock and the drift resumed too
            times, ref_times = (
                r.queries(fields=("sim_time", "temperature_c")),
                ref.queries(fields=("sim_time", "temperature_c")),
            )
            np.testing.assert_array_equal(times["sim_time"], ref_times["sim_time"])
            np.testing.assert_array_equal(times["temperature_c"], ref_times["temperature_c"])
            assert np.ptp(times["temperature_c"]) > 0 and np.all(np.diff(times["sim_time"]) > 0)
            assert info["time"]["bench_hours"] == ref_info["time"]["bench_hours"] == times["sim_time"][-1] / 3600
            # the ring recorded is the one asked for, and its carried state (oscillating mode, the tones'
            # circulating powers, the laboratory's temperatures) is what resumed
            assert r.config["bench"]["simulator"].get("device", 0) == config.get("ring_device", 0)
            carried = r.last_checkpoint().rng_states["reservoir"]["simulated_bench"]["model"]
            assert carried == ref.last_checkpoint().rng_states["reservoir"]["simulated_bench"]["model"]
            assert len(carried["tone_power_mw"]) == 4 and carried["lab"]["box_k"] != 0.0


KILLED_AS_THE_SESSION_OPENS = (
    textwrap.dedent("""
    import os, signal, sys
    import h5py
    target = os.path.realpath(sys.argv[2])

    def killing_at_the_session(real):
        def opened(name, flags, *args, **kwargs):
            fid = real(name, flags, *args, **kwargs)
            if os.path.realpath(os.fsdecode(name)) == target and flags & (h5py.h5f.ACC_RDWR | h5py.h5f.ACC_TRUNC):
                os.kill(os.getpid(), signal.SIGKILL)  # the first moment the session file is open for writing
            return fid
        return opened

    h5py.h5f.open, h5py.h5f.create = killing_at_the_session(h5py.h5f.open), killing_at_the_session(h5py.h5f.create)
""")
    + TRAIN_SCRIPT
)


@pytest.mark.slow
def test_a_kill_as_the_session_file_opens_leaves_a_file_that_opens_and_resumes(tmp_path):
    """Found by CI's reliability soak: a writer killed between opening the file and switching it to SWMR left it
    marked "open for writing" (not SWMR), which HDF5 opens for nobody: --resume failed with "truncated or damaged".
    Killed at that moment when a run starts, and again when it resumes, the file still opens and the run ends as
    the uninterrupted one."""
    config = dict(CONFIG, steps=20, eval_every=5)
    reference = start_training(TrainConfig.of(**config), tmp_path / "reference.h5")
    path = tmp_path / "run.h5"
    for mode in ("fresh", "resume"):
        proc = subprocess.run(
            [sys.executable, "-c", KILLED_AS_THE_SESSION_OPENS, mode, str(path), json.dumps(config)], timeout=300
        )
        assert proc.returncode == -signal.SIGKILL
        with SessionReader(path) as r:  # opens: the new file's layout, or the resumed file's whole steps
            assert r.kind == "training"
            assert r.n_steps == 0 if mode == "fresh" else r.last_complete_step is not None
        if mode == "fresh":
            _run_and_kill("resume", path, config, 8, random.Random(1))
    proc = subprocess.run(
        [sys.executable, "-c", TRAIN_SCRIPT, "resume", str(path)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert inspect_session(path)["final_params_sha256"] == reference.final_params_sha256


def test_resume_before_first_checkpoint_starts_afresh(tmp_path):
    path = tmp_path / "run.h5"
    rng = np.random.default_rng(5)
    writer = synthetic_writer(path)
    writer.record_queries(
        QueryLabels.of(0, "calibration", 4, sample=np.arange(4)), rng.random((4, D)), measurement(rng, 4)
    )
    writer._write_queries()  # rows of an unfinished step on disk, as writers before 0.2 left them
    writer._file.flush()
    writer._file.close()  # as if killed: no step completed
    writer, checkpoint = SessionWriter.open_for_resume(path)
    with writer:
        assert checkpoint is None
    with SessionReader(path) as r:
        assert r.n_queries == 0 and r.n_steps == 0 and r.last_complete_step is None


def test_resume_drops_rows_of_the_unfinished_step(tmp_path):
    path = tmp_path / "run.h5"
    rng = np.random.default_rng(6)
    writer = synthetic_writer(path)
    write_steps(writer, rng, 2, rows=hdf5.COMPRESSED_CHUNK_ROWS)
    writer.record_queries(
        QueryLabels.of(2, "plus", 5, direction=0, sample=np.arange(5)), rng.random((5, D)), measurement(rng, 5)
    )
    writer.record_step(2, {"loss": 9.0})  # step row written, checkpoint missing
    writer._file.close()
    writer, checkpoint = SessionWriter.open_for_resume(path)
    with writer:
        assert checkpoint.step == 1 and checkpoint.trainer_state["history"] == [{"step": 0}, {"step": 1}]
        write_steps(writer, rng, 1, first=2)
    with SessionReader(path) as r:
        assert r.n_queries == 2 * hdf5.COMPRESSED_CHUNK_ROWS + 10 and r.n_steps == 3
        assert list(r.steps()["step"]) == [0, 1, 2]
        assert r.steps()["loss"][2] == 1 / 3
        assert r.checkpoint(-1).trainer_state["history"] == [{"step": 0}, {"step": 1}, {"step": 2}]


@pytest.mark.slow
def test_a_last_row_whose_json_never_reached_the_disk_is_not_whole_and_resume_starts_before_it(tmp_path):
    """A disk that fills mid-write can leave the last checkpoint's JSON reserved but unwritten (zeros)."""
    path = tmp_path / "run.h5"
    with synthetic_writer(path) as writer:
        write_steps(writer, np.random.default_rng(7), 3)
    with h5py.File(path, "r+") as f:
        ends = f["checkpoints/trainer_state_end"][()]
        f["checkpoints/trainer_state"][int(ends[-2]) : int(ends[-1])] = 0
        ends = f["steps/extra_end"][()]
        f["steps/extra"][int(ends[-2]) : int(ends[-1])] = 0
    with SessionReader(path) as r:
        assert r.n_checkpoints == 2 and r.last_complete_step == 1 and r.n_steps == 2 and not r.completed
    writer, checkpoint = SessionWriter.open_for_resume(path)
    with writer:
        assert checkpoint.step == 1
        write_steps(writer, np.random.default_rng(8), 1, first=2)
    with SessionReader(path) as r:
        assert r.completed and r.n_steps == 3 and r.step_extra(2) == {"alpha": 0.5}


def test_a_resumed_file_that_ends_inside_a_chunk_keeps_every_row(tmp_path):
    """Resume copies a prefix of any length, ending inside a compressed chunk or not."""
    path = tmp_path / "run.h5"
    rng = np.random.default_rng(9)
    with synthetic_writer(path) as writer:
        written = write_steps(writer, rng, 2, rows=10)  # closed: all 20 rows, the chunk half full
    writer, checkpoint = SessionWriter.open_for_resume(path)
    with writer:
        assert checkpoint.step == 1
        written += write_steps(writer, rng, 3, first=2, rows=10)
    with SessionReader(path) as r:
        assert r.n_queries == 50 and r.last_complete_step == 4
        np.testing.assert_array_equal(r.queries(fields=("u",))["u"], np.concatenate([u for u, _, _ in written]))


def _hold_open(path, seconds: float) -> subprocess.Popen:
    """Another process that holds HDF5's (shared) lock on ``path`` for ``seconds``, as an inspector does."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import time, h5py
        f = h5py.File({str(path)!r}, "r")
        print("open", flush=True)
        time.sleep({seconds})
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "open"
    return holder


def test_a_file_this_process_reads_for_a_moment_is_waited_for(tmp_path):
    """A reader of the same process (the GUI inspecting a session its run is creating): HDF5 refuses to open a file
    for writing while this process has it open to read; the writer waits until it is closed (a test's reader
    once made a run fail to start)."""
    path = tmp_path / "read.h5"
    with hdf5.open_for_writing(path, "w") as f:  # in the sessions' format, which SWMR writing needs
        f["x"] = np.arange(3)
    reader = h5py.File(path, "r")
    threading.Timer(0.3, reader.close).start()
    with hdf5.open_swmr_write(path) as f:
        assert list(f["x"][()]) == [0, 1, 2]


@pytest.mark.slow
def test_a_file_another_program_holds_open_is_waited_for_then_refused_in_one_line(tmp_path):
    path = tmp_path / "held.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    holder = _hold_open(path, 30)
    try:
        with pytest.raises(UserError, match="held.h5 is open in another program"):
            hdf5.open_for_writing(path, "r+")
    finally:
        holder.kill()
        holder.wait()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    holder = _hold_open(path, 0.5)  # one that closes it in a moment is waited for
    try:
        with hdf5.open_for_writing(path, "r+") as f:
            assert list(f["x"][()]) == [0, 1, 2]
    finally:
        holder.wait()
