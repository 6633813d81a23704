"""The ``labpgt gui`` window under pytest-qt (offscreen): queue, plot, live spectrum, abort, open a session."""

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from pymeasure.display.Qt import QtCore  # noqa: E402

from labpgt.procedures import RingSweep  # noqa: E402
from labpgt.procedures.window import TrainingWindow, main, save_screenshots  # noqa: E402
from labpgt.inspection import inspect_session  # noqa: E402
from labpgt.runs import resume_training  # noqa: E402

QUICK = dict(task="iris", method="node", steps=6, batch_size=8, directions=2, eval_every=3, eval_samples=30)


@pytest.fixture
def window(qtbot, tmp_path):
    w = TrainingWindow(runs_dir=tmp_path / "runs")
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


def set_inputs(window, **values):
    for name, value in values.items():
        getattr(window.inputs, name).setValue(value)


def test_queue_two_runs_plot_spectrum_session_and_screenshot(qtbot, window, tmp_path):
    set_inputs(window, **QUICK)
    first = window.queue()
    set_inputs(window, steps=3, seed=1)
    second = window.queue()
    assert first.procedure.output != second.procedure.output
    qtbot.waitUntil(lambda: second.procedure.status == second.procedure.FINISHED, timeout=40_000)
    qtbot.waitUntil(lambda: not window.manager.is_running(), timeout=5_000)
    for experiment, steps in ((first, 6), (second, 3)):
        info = inspect_session(experiment.procedure.output)
        assert info["completed"] and info["queries"] > 0 and info["steps"] == steps
        assert experiment.data_filename == experiment.procedure.output[:-3] + ".csv"   # summary beside it
    loss_curve = first.curve_list[0]
    x, y = loss_curve.getData()
    assert len(x) == 6 and np.all(np.isfinite(y))
    window.poll_spectra()
    fx, fy = window.spectrum_widget.trace()
    points = second.procedure.bench.points
    assert len(fx) == points == 401 and np.all(np.isfinite(fy))
    assert window.waterfall_widget.rows.shape[1] == points and len(window.waterfall_widget.rows) > 10
    shots = save_screenshots(window, tmp_path / "window.png")
    assert [shot.name for shot in shots] == ["window.png", "window-spectrum.png"]
    assert all(shot.stat().st_size > 10_000 for shot in shots)
    window.open_session(first.procedure.output)                 # browse the recorded session
    session = window.session_widget
    assert session.slider.maximum() == inspect_session(first.procedure.output)["queries"] - 1
    assert len(session.spectrum.trace()[0]) == points


def test_abort_button_stops_between_queries_rf_off_and_resumable(qtbot, window):
    set_inputs(window, **{**QUICK, "steps": 10})
    experiment = window.queue()
    procedure = experiment.procedure
    qtbot.waitUntil(lambda: procedure.steps_done >= 2, timeout=20_000)
    qtbot.mouseClick(window.abort_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.manager.is_running(), timeout=10_000)
    assert procedure.status == procedure.ABORTED
    assert not any(g.output_on for g in procedure.bench.simulator.generators)
    info = inspect_session(procedure.output)
    assert not info["completed"] and 2 <= info["steps"] < 10
    resume_training(procedure.output)
    assert inspect_session(procedure.output)["completed"]


def test_sweep_window_and_refusal_to_overwrite(qtbot, tmp_path):
    w = TrainingWindow(procedure_class=RingSweep, runs_dir=tmp_path)
    qtbot.addWidget(w)
    set_inputs(w, points=5)
    experiment = w.queue()
    qtbot.waitUntil(lambda: experiment.procedure.status == experiment.procedure.FINISHED, timeout=20_000)
    qtbot.waitUntil(lambda: not w.manager.is_running(), timeout=5_000)  # the manager has finished too

    def plotted():  # the curve refreshes on the GUI's timer, shortly after the procedure finishes
        x = experiment.curve_list[0].getData()[0]
        return x is not None and len(x) == 5

    qtbot.waitUntil(plotted, timeout=5_000)
    w.inputs.output.setValue(experiment.procedure.output)
    assert w.queue() is None                          # an existing session is never overwritten
    w.open_session(experiment.procedure.output)       # a recorded sweep is shown as a sweep
    session = w.session_widget
    summary = experiment.procedure.summary
    for plot, column in ((session.left_plot, "Peak power (dBm)"), (session.right_plot, "Margin (dB)")):
        x, y = plot.listDataItems()[0].getData()
        np.testing.assert_array_equal(x, [row["Value"] for row in summary])
        np.testing.assert_array_equal(y, [row[column] for row in summary])
        assert plot.getAxis("bottom").labelText == "ring.loop_gain_db"
    assert session.left_plot.titleLabel.text == "peak power (dBm)"
    assert "sweep of ring.loop_gain_db" in session.info.text()
    assert session.slider.maximum() == 4 and "point 4" in session.spectrum.label.text()
    w.close()


def test_main_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--bench" in capsys.readouterr().out
