"""One way to stop a run: the run engine's stop request, acted on between two measurements.

A training and a sweep are stopped through it from the command line's path (a signal, turned into a stop
request by ``labpgt.signals``) and from the GUI's (PyMeasure's abort, a condition the engine polls), over TCP
against ``labpgt sim``: each time RF is off at every generator afterwards (asked through SCPI), the session
holds what was measured, and nothing else stops a run.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
from pymeasure.experiment import Procedure, Results
from pymeasure.experiment.workers import Worker
from servedbench import generator_outputs, served_bench

from labpgt.cli import main
from labpgt.inspection import inspect_session
from labpgt.procedures import PGTTraining, RingSweep
from labpgt.signals import STOP_SIGNALS

pytestmark = pytest.mark.slow  # a served bench in its own process, runs over TCP
LABPGT = Path(__file__).resolve().parents[1] / "labpgt"
IRIS = ["--task", "iris", "--batch-size", "4", "--directions", "2", "--eval-every", "50", "--steps", "50", "--quiet"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with served_bench(tmp_path_factory.mktemp("bench")) as bench:
        yield bench


def signal_when(condition, signum=signal.SIGINT, timeout=60.0):
    """Send this process ``signum`` from another thread once ``condition()`` holds (as a terminal would); never if it
    does not hold within ``timeout`` (a late signal would stop whatever test runs next in this process)."""

    def watch():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                os.kill(os.getpid(), signum)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def steps_in(path: Path) -> int:
    try:
        return inspect_session(path)["steps"] if path.exists() else 0
    except Exception:  # noqa: BLE001 - a file being laid out: not yet
        return 0


def test_the_engine_is_the_one_thing_that_stops_a_run():
    """No reservoir wrapper, flag or exception of its own stops a run anywhere else in labpgt."""
    raisers = {}
    for path in [*LABPGT.rglob("*.py"), *(LABPGT.parent / "procedures").rglob("*.py")]:
        text = path.read_text()
        for name in ("StopRequested", "StoppableReservoir", "should_stop", "raise_if_interrupted"):
            if re.search(rf"\b{name}\b", text):
                raisers.setdefault(name, []).append(path.name)
    assert set(raisers.get("StopRequested", [])) <= {"engine.py"}, raisers
    assert "StoppableReservoir" not in raisers and "raise_if_interrupted" not in raisers
    assert set(raisers.get("should_stop", [])) <= {"training.py", "sweep.py"}  # PyMeasure's abort, given to the engine


@pytest.mark.parametrize("signum", STOP_SIGNALS, ids=[signal.Signals(s).name for s in STOP_SIGNALS])
def test_a_signal_stops_a_training_from_the_command_line_rf_off(served, tmp_path, capsys, signum):
    bench, resources = served
    out = tmp_path / "run.h5"
    signal_when(lambda: steps_in(out) >= 2, signum)
    status = main(["train", "--bench", str(bench), *IRIS, "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 128 + signum, err
    assert generator_outputs(resources) == ["0"] * 4
    info = inspect_session(out)
    assert 2 <= info["steps"] < 50 and not info["completed"]
    assert f"continue with labpgt train --resume {out}" in err and "RF is off" in err
    assert "Traceback" not in err


def test_a_signal_stops_a_sweep_from_the_command_line_rf_off(served, tmp_path, capsys):
    bench, resources = served
    out = tmp_path / "sweep.h5"

    def points():
        try:
            return inspect_session(out)["points"] if out.exists() else 0
        except Exception:  # noqa: BLE001
            return 0

    signal_when(lambda: points() >= 3, signal.SIGTERM)
    status = main(["sweep", "--bench", str(bench), "--power", "gen1", "-30:-10:200", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert status == 143, err
    assert generator_outputs(resources) == ["0"] * 4
    info = inspect_session(out)
    assert 3 <= info["points"] < 200 and not info["completed"] and "of 200 points" in err


def _abort_when(procedure, condition, timeout=60.0) -> Worker:
    worker = Worker(Results(procedure, str(Path(procedure.output).with_suffix(".csv"))))
    worker.start()
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.stop()  # the window's Abort
    threading.Thread.join(worker, timeout)
    assert not worker.is_alive()
    return worker


def test_the_windows_abort_stops_a_training_rf_off(served, tmp_path):
    bench, resources = served
    procedure = PGTTraining().assign(
        task="iris", bench=str(bench), batch_size=4, directions=2, steps=50, output=str(tmp_path / "gui.h5")
    )
    _abort_when(procedure, lambda: procedure.steps_done >= 2)
    assert procedure.status == Procedure.ABORTED and procedure.stopped.why == "stopped from the window"
    assert generator_outputs(resources) == ["0"] * 4
    info = inspect_session(tmp_path / "gui.h5")
    assert 2 <= info["steps"] < 50 and not info["completed"]


def test_the_windows_abort_stops_a_sweep_rf_off(served, tmp_path):
    bench, resources = served
    procedure = RingSweep()
    procedure.target, procedure.generator, procedure.start, procedure.stop, procedure.points = (
        "generator power",
        "gen1",
        -30.0,
        -10.0,
        200,
    )
    procedure.bench, procedure.output = str(bench), str(tmp_path / "gui-sweep.h5")
    _abort_when(procedure, lambda: len(procedure.summary) >= 3)
    assert procedure.status == Procedure.ABORTED
    assert generator_outputs(resources) == ["0"] * 4
    info = inspect_session(tmp_path / "gui-sweep.h5")
    assert 3 <= info["points"] < 200 and not info["completed"]


@pytest.mark.parametrize("signum", STOP_SIGNALS, ids=[signal.Signals(s).name for s in STOP_SIGNALS])
def test_a_signal_closes_a_measuring_window_rf_off_session_saved(qtbot, served, tmp_path, signum):
    """Every stop signal reaches the window through its signal socket (no Python code interrupted), stops the run
    between two queries and closes the window; the exit status is 128 + the signal."""
    pytest.importorskip("pytestqt")
    from labpgt.procedures.window import SignalCloser, TrainingWindow, exit_status

    bench, resources = served
    window = TrainingWindow(runs_dir=tmp_path / "runs", bench_config=str(bench))
    qtbot.addWidget(window)
    closer = SignalCloser(window)
    try:
        window.show()
        for name, value in (("task", "iris"), ("node_batch_size", 4), ("node_directions", 2), ("node_steps", 50)):
            getattr(window.inputs, name).setValue(value)
        experiment = window.queue()
        qtbot.waitUntil(lambda: experiment.procedure.steps_done >= 2, timeout=60_000)
        os.kill(os.getpid(), signum)
        qtbot.waitUntil(lambda: not window.isVisible(), timeout=60_000)
    finally:
        closer.restore()
        for handled in STOP_SIGNALS:  # restore() ignores them once one closed the window
            signal.signal(handled, signal.SIG_DFL if handled != signal.SIGINT else signal.default_int_handler)
    assert exit_status(window) == 128 + signum
    assert generator_outputs(resources) == ["0"] * 4
    info = inspect_session(experiment.procedure.output)
    assert 2 <= info["steps"] < 50 and not info["completed"]
