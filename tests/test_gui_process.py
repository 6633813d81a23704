"""``labpgt gui`` as a separate process, as a lab runs it: Ctrl+C, SIGTERM and Quit during a measuring run.

The run measures through ``labpgt sim`` over TCP, so the generators' RF state is read from outside
the GUI (``OUTP?`` on each generator's own socket) after the GUI has exited.
"""

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from labpgt.inspection import inspect_session  # noqa: E402
from labpgt.session import SessionReader  # noqa: E402

pytestmark = pytest.mark.slow  # the GUI in a process of its own

GUI_ENV = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}


@pytest.fixture
def served(tmp_path):
    """``labpgt sim`` on free ports; yields (bench TOML, {name: port} of the generators)."""
    bench = tmp_path / "bench.toml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "labpgt", "sim", "--port", "0", "--write-bench", str(bench)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        resources = dict(proc.stdout.readline().split() for _ in range(6))
        generators = {
            name: int(resource.split("::")[2]) for name, resource in resources.items() if name.startswith("gen")
        }
        wait_for(bench.is_file, 10, "the bench file")
        yield bench, generators
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def rf_on(port: int) -> bool:
    """The generator's RF output state, asked over its own socket (``OUTP?``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"OUTP?\n")
        answer = sock.makefile("r").readline().strip()
    assert answer in ("0", "1"), answer
    return answer == "1"


def step_rows(runs: Path) -> int:
    """Steps the window has received so far (the rows of the run's CSV summary)."""
    summaries = list(runs.glob("*.csv"))
    if not summaries:
        return 0
    with summaries[0].open() as f:
        return sum(1 for row in csv.reader(f) if row and row[0].isdigit())


def start_gui(tmp_path, bench: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "labpgt", "gui", "--bench", str(bench), "--runs-dir", str(runs), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=GUI_ENV,
    )
    return proc, runs


def assert_stopped_cleanly(proc, runs: Path, generators: dict, status: int, rows_before: int) -> None:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "Fatal" not in err, err
    assert not any(rf_on(port) for port in generators.values())  # every generator, asked from outside
    (session,) = runs.glob("*.h5")
    info = inspect_session(session)
    assert not info["completed"] and info["steps"] >= rows_before >= 2
    assert info["steps"] == step_rows(runs)  # every step the window showed is saved
    with SessionReader(session) as reader:
        assert len(reader.steps()["loss"]) == info["steps"]
    assert f"--resume {session}" in err


@pytest.mark.parametrize("signum, repeats", [(signal.SIGTERM, 1), (signal.SIGINT, 3)])
def test_a_signal_to_a_measuring_gui_stops_the_run_rf_off_session_saved(tmp_path, served, signum, repeats):
    bench, generators = served
    proc, runs = start_gui(tmp_path, bench, "--start")
    try:
        wait_for(lambda: step_rows(runs) >= 2, 120, "two steps of the run")
        assert any(rf_on(port) for port in generators.values())  # it is measuring: RF is on
        rows = step_rows(runs)
        for _ in range(repeats):  # Ctrl+C pressed impatiently, too
            proc.send_signal(signum)
            time.sleep(0.1)
        assert_stopped_cleanly(proc, runs, generators, 128 + signum, rows)
    finally:
        if proc.poll() is None:
            proc.kill()


QUIT_AFTER_TWO_STEPS = """
import sys
from labpgt.procedures import window as gui

def quit_when_measuring(window):
    def check():
        if window.manager.is_running() and window.manager.running_experiment().procedure.steps_done >= 2:
            window.quit_action.trigger()
    timer = gui.QtCore.QTimer(window)
    timer.timeout.connect(check)
    timer.start(100)

original = gui.TrainingWindow.show
gui.TrainingWindow.show = lambda self: (original(self), quit_when_measuring(self))
sys.exit(gui.main(sys.argv[1:]))
"""


def test_file_quit_during_a_run_stops_it_and_exits_without_a_crash(tmp_path, served):
    bench, generators = served
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-c", QUIT_AFTER_TWO_STEPS, "--bench", str(bench), "--runs-dir", str(runs), "--start"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=GUI_ENV,
    )
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Fatal" not in err, err
    assert not any(rf_on(port) for port in generators.values())
    (session,) = runs.glob("*.h5")
    info = inspect_session(session)
    assert not info["completed"] and info["steps"] >= 2 and info["steps"] == step_rows(runs)
