"""PGTTraining and RingSweep run by PyMeasure's Worker (no window): records, stopping, RF safety, threshold."""

import math
import threading
import time

import numpy as np
import pytest
from pymeasure.experiment import Procedure, Results
from pymeasure.experiment.workers import Worker

from labpgt.benchmark import applies_to
from labpgt.cli import build_parser
from labpgt.commands.train import train_config_from
from labpgt.digital import DigitalReservoir
from labpgt.engine import RunEngine, StopReason, StopRequested, _Metered
from labpgt.errors import UserError
from labpgt.inspection import inspect_session
from labpgt.instruments.simulated.ring import RingModel
from labpgt.methods import METHODS
from labpgt.procedures import PGTTraining, RingSweep, estimate_threshold, line_margin
from labpgt.reservoirs import DigitalSettings
from labpgt.runs import resume_training
from labpgt.session import SessionReader


def run_worker(procedure, csv_path, timeout=60):
    worker = Worker(Results(procedure, str(csv_path)))
    worker.start()
    threading.Thread.join(worker, timeout)  # Worker.join returns as soon as the stop flag is set
    assert not worker.is_alive()
    return worker


def quick_training(tmp_path, **overrides):
    values = dict(
        task="iris",
        method="node",
        steps=6,
        batch_size=8,
        directions=2,
        eval_every=3,
        eval_train_samples=30,
        output=str(tmp_path / "run.h5"),
    )
    values.update(overrides)
    method = values["method"]
    values = {k: v for k, v in values.items() if (applies_to(k, method) or k in ("output", "method")) and v is not None}
    return PGTTraining().assign(**values)


def test_estimate_threshold_interpolates_the_jump():
    values = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    margins = np.array([12.0, 15.0, 20.0, 70.0, 80.0])
    assert estimate_threshold(values, margins, 30.0) == pytest.approx(0.1)
    assert estimate_threshold(values[::-1], margins[::-1], 30.0) == pytest.approx(0.1)
    assert math.isnan(estimate_threshold(values, margins, 90.0))


def test_line_margin_excludes_injected_tones():
    f = np.linspace(2.9e9, 3.1e9, 201)
    trace = np.full(201, -90.0)
    trace[50] = -10.0  # an injected tone
    trace[150] = -40.0  # the ring's own line
    peak_f, peak_p, margin = line_margin(trace, f, excluded_hz=[f[50]], exclude_width_hz=5e6)
    assert peak_f == f[150] and peak_p == -40.0 and margin == pytest.approx(50.0)


def test_the_engine_stops_a_bench_between_queries():
    inner = DigitalReservoir(input_width=4, feature_width=6, seed=0)
    inner.each_query_apart = True  # as a bench: every row its own sweep
    calls = []
    engine = RunEngine()
    engine.stop_when(lambda: len(calls) >= 3, StopReason("test"))
    wrapped = _Metered(inner, engine)
    original = inner.measure
    inner.measure = lambda U: (calls.append(len(U)), original(U))[1]
    assert wrapped.input_width == 4 and wrapped.feature_width == 6
    with pytest.raises(StopRequested):
        wrapped.measure(np.random.default_rng(0).random((10, 4)))
    assert calls == [1, 1, 1]  # one query at a time, stopped before the 4th


@pytest.mark.slow
def test_training_records_a_complete_session_and_turns_rf_off(tmp_path):
    p = quick_training(tmp_path)
    run_worker(p, tmp_path / "run.csv")
    assert p.status == Procedure.FINISHED
    info = inspect_session(tmp_path / "run.h5")
    assert info["completed"] and info["queries"] > 0 and info["steps"] == 6
    assert not any(g.output_on for g in p.connected.simulator.generators)
    data = Results.load(str(tmp_path / "run.csv")).data
    assert list(data["Step"]) == [1, 2, 3, 4, 5, 6]
    assert np.isnan(data["Held-out accuracy"][0]) and np.isfinite(data["Held-out accuracy"][2])
    assert p.feed.count == info["queries"]  # every measured trace reached the feed


@pytest.mark.slow
@pytest.mark.parametrize("method", ["node", "twin", "pgt", "pgt-enc", "spsa", "backprop", "readout"])
@pytest.mark.parametrize("model", ["dense", "transformer"])
def test_the_gui_receives_exactly_one_result_row_per_step_for_every_method(tmp_path, method, model):
    """What PyMeasure's worker hands the window (the results rows it writes) is one row per recorded step."""
    p = quick_training(
        tmp_path,
        method=method,
        model=model,
        reservoir="digital",
        steps=4,
        eval_every=2,
        width=4,
        heads=1,
        blocks=1,
        directions=None,
    )
    run_worker(p, tmp_path / "run.csv")
    assert p.status == Procedure.FINISHED
    data = Results.load(str(tmp_path / "run.csv")).data
    steps = 1 if method == "readout" else 4  # the readout is fitted in one step
    assert list(data["Step"]) == list(range(1, steps + 1))
    assert inspect_session(tmp_path / "run.h5")["steps"] == steps
    assert np.isfinite(data["Held-out accuracy"].iloc[-1])


@pytest.mark.slow
def test_abort_mid_step_leaves_a_resumable_session_and_rf_off(tmp_path):
    p = quick_training(tmp_path, steps=8)
    worker = Worker(Results(p, str(tmp_path / "run.csv")))
    worker.start()
    deadline = time.time() + 30
    while p.steps_done < 2:
        assert time.time() < deadline
        time.sleep(0.01)
    time.sleep(0.05)  # somewhere inside step 3
    worker.stop()
    threading.Thread.join(worker, 30)
    assert not worker.is_alive()
    assert p.status == Procedure.ABORTED
    assert not any(g.output_on for g in p.connected.simulator.generators)
    info = inspect_session(tmp_path / "run.h5")
    assert not info["completed"] and 2 <= info["steps"] < 8
    result = resume_training(tmp_path / "run.h5")
    assert result.final_accuracy >= 0
    info = inspect_session(tmp_path / "run.h5")
    assert info["completed"] and info["steps"] == 8


def test_loop_gain_sweep_finds_the_threshold(tmp_path):
    p = RingSweep()
    p.target, p.start, p.stop, p.points = "loop gain", -2.0, 2.0, 17
    p.output = str(tmp_path / "sweep.h5")
    run_worker(p, tmp_path / "sweep.csv")
    assert p.status == Procedure.FINISHED
    field = p.connected.config.instruments["ring"].settings["field_mt"]
    expected = RingModel().threshold_gain_db(field)
    assert abs(p.threshold_db - expected) < 0.5
    assert not any(g.output_on for g in p.connected.simulator.generators)
    info = inspect_session(tmp_path / "sweep.h5")
    assert info["completed"] and info["queries_by_role"] == {"sweep": 17}
    assert info["kind"] == "sweep" and info["threshold"] == pytest.approx(p.threshold_db)  # the session holds it
    with SessionReader(tmp_path / "sweep.h5") as reader:
        assert reader.queries(fields=("spectrum",))["spectrum"].shape == (17, reader.frequencies.size)
        points = reader.points()
        np.testing.assert_array_equal(points["value"], [row["Value"] for row in p.summary])
        np.testing.assert_array_equal(points["margin_db"], [row["Margin (dB)"] for row in p.summary])
        assert list(points["queries"]) == list(range(1, 18))
        assert (
            reader.config["sweep"]["fixed"]["ring.field_mt"] == field
            and "ring.loop_gain_db" not in reader.config["sweep"]["fixed"]
        )
        assert "train" not in reader.config and reader.n_checkpoints == 0
    assert len(Results.load(str(tmp_path / "sweep.csv")).data) == 17


def test_generator_frequency_sweep_runs_with_tones(tmp_path):
    p = RingSweep()
    p.target, p.generator, p.start, p.stop, p.points = "generator frequency", "gen2", 3.00e9, 3.02e9, 3
    p.output = str(tmp_path / "gsweep.h5")
    run_worker(p, tmp_path / "gsweep.csv")
    assert p.status == Procedure.FINISHED and len(p.summary) == 3
    assert not any(g.output_on for g in p.connected.simulator.generators)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_the_window_starts_where_labpgt_train_does(method):
    """Every training setting the window leaves at its default resolves as ``labpgt train`` leaves it."""
    reservoir = "digital" if METHODS[method].needs_differentiable_reservoir else "ring-sim"
    argv = ["train", "--method", method, "--reservoir", reservoir]
    cli = train_config_from(build_parser(argv).parse_args(argv))
    procedure = PGTTraining()
    procedure.method, procedure.reservoir = method, reservoir
    assert procedure.train_config() == cli and procedure.train_config().to_dict() == cli.to_dict()


def test_the_sweep_window_shares_the_sweep_commands_defaults():
    cli = build_parser().parse_args(["sweep", "--gain", "-3:3:25"])
    procedure = RingSweep()
    assert (procedure.seed, procedure.margin_db, procedure.tones) == (cli.seed, cli.margin_db, cli.tones)


def test_the_window_sets_the_rings_drift_and_following_as_labpgt_train_does():
    args = ["train", "--reservoir", "ring-sim", "--no-drift", "--follow-ring", "5"]
    cli = train_config_from(build_parser(args).parse_args(args))
    procedure = PGTTraining()
    procedure.reservoir, procedure.ring_drift, procedure.follow_ring = "ring-sim", False, 5
    config = procedure.train_config()
    assert (config.reservoir.ring_drift, config.follow_ring) == (False, 5)
    assert config == cli
    procedure.reservoir = "digital"  # the drift input is the ring's: hidden, and not given to a digital run
    assert procedure.train_config().reservoir == DigitalSettings()
    procedure.assign(reservoir="ring-sim", bench="/nowhere/bench.toml")  # a bench's instruments cannot be held
    with pytest.raises(UserError, match="ring_drift off"):
        procedure.train_config()
