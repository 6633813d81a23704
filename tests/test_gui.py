"""The ``labpgt gui`` window under pytest-qt (offscreen): queue, plot, live spectrum, abort, open a session."""

import gc
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from pymeasure.display.Qt import QtCore, QtWidgets  # noqa: E402

from labpgt.inspection import inspect_session  # noqa: E402
from labpgt.procedures import PGTTraining, RingSweep  # noqa: E402
from labpgt.procedures.window import GuiThreadCollector, TrainingWindow, main, save_screenshots  # noqa: E402
from labpgt.runs import resume_training  # noqa: E402

EXAMPLE_SESSION = Path(__file__).parents[1] / "data" / "session-example.h5"
QUICK = dict(task="iris", method="node", steps=6, batch_size=8, directions=2, eval_every=3, eval_train_samples=30)


@pytest.fixture
def window(qtbot, tmp_path):
    w = TrainingWindow(runs_dir=tmp_path / "runs")
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


def set_inputs(window, **values):
    """Fill the window's inputs with these settings, as a person does: the method and reservoir first, then the
    inputs of their settings (a derived one's "automatic" box unticked)."""
    inputs = window.inputs
    for kind in ("method", "reservoir"):
        if kind in values:
            getattr(inputs, kind).setValue(values.pop(kind))
    for key, value in values.items():
        if value is None:
            continue
        name = key
        if window.procedure_class is PGTTraining:
            name = PGTTraining.input_name(key, inputs.method.value(), inputs.reservoir.value()) or key
            automatic = PGTTraining.INPUTS.get(name) and PGTTraining.INPUTS[name].automatic
            if automatic:
                getattr(inputs, automatic).setValue(False)
        getattr(inputs, name).setValue(value)


@pytest.mark.slow
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
        assert experiment.data_filename == experiment.procedure.output[:-3] + ".csv"  # summary beside it
    loss_curve = first.curve_list[0]
    x, y = loss_curve.getData()
    assert len(x) == 6 and np.all(np.isfinite(y))
    window.poll_spectra()
    fx, fy = window.spectrum_widget.trace()
    points = second.procedure.connected.points
    assert len(fx) == points == 401 and np.all(np.isfinite(fy))
    assert window.waterfall_widget.rows.shape[1] == points and len(window.waterfall_widget.rows) > 10
    shots = save_screenshots(window, tmp_path / "window.png")
    assert [shot.name for shot in shots] == ["window.png", "window-spectrum.png"]
    assert all(shot.stat().st_size > 10_000 for shot in shots)
    window.open_session(first.procedure.output)  # browse the recorded session
    session = window.session_widget
    assert session.slider.maximum() == inspect_session(first.procedure.output)["queries"] - 1
    assert len(session.spectrum.trace()[0]) == points


@pytest.mark.slow
def test_abort_button_stops_between_queries_rf_off_and_resumable(qtbot, window):
    set_inputs(window, **{**QUICK, "steps": 10, "eval_every": 10})  # no accuracy yet when aborted
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        experiment = window.queue()
        procedure = experiment.procedure
        qtbot.waitUntil(lambda: procedure.steps_done >= 2, timeout=20_000)
        window.tabs.setCurrentWidget(window.plot_widgets[1])  # the accuracy curve: NaN so far
        qtbot.wait(300)
        window.grab()
        qtbot.mouseClick(window.abort_button, QtCore.Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not window.manager.is_running(), timeout=10_000)
        window.grab()
        window.open_session(procedure.output)
        window.grab()
    assert [str(w.message) for w in caught] == []  # no "All-NaN slice encountered"
    assert procedure.status == procedure.ABORTED
    assert not any(g.output_on for g in procedure.connected.simulator.generators)
    info = inspect_session(procedure.output)
    assert not info["completed"] and 2 <= info["steps"] < 10
    resume_training(procedure.output)
    assert inspect_session(procedure.output)["completed"]


def test_accuracy_axis_reads_accuracies_not_thousandths(qtbot, window):
    plot = window.plot_widgets[1].plot
    plot.plot([1, 10, 20], [0.39, 0.47, 0.54])
    window.tabs.setCurrentWidget(window.plot_widgets[1])
    qtbot.wait(100)
    axis = plot.getAxis("left")
    assert axis.autoSIPrefixScale == 1.0 and "x0.001" not in axis.labelString()
    assert all(0.0 <= float(text) <= 1.0 for text in axis.tickStrings([0.4, 0.5], axis.scale, 0.1))


def test_inputs_clear_the_scrollbar_and_show_every_label_whole(qtbot, window):
    scroll = window.inputs.findChild(QtWidgets.QScrollArea)
    shown = set()
    for method, model, reservoir in (
        ("node", "dense", "ring-sim"),
        ("pgt", "transformer", "digital"),
        ("spsa", "dense", "ring-sim"),
        ("twin", "dense", "digital"),
    ):
        set_inputs(window, method=method, reservoir=reservoir, model=model)  # each shows its own inputs
        qtbot.wait(50)
        assert scroll.widget().width() <= scroll.viewport().width()  # nothing runs under the scrollbar
        for name, label in window.inputs.labels.items():
            if not label.isVisible():  # another method's, model's or reservoir's: not shown
                continue
            shown.add(name)
            assert label.height() >= label.heightForWidth(label.width()), name
            assert label.width() <= scroll.viewport().width(), name
    assert {"width", "digital_noise", "twin_width", "bench"} <= shown
    set_inputs(window, method="pgt", steps=500)  # a derived setting given: its box unticked, its value shown
    qtbot.wait(50)
    assert not window.inputs.pgt_steps_automatic.value() and window.inputs.labels["pgt_steps"].isVisible()
    assert window.inputs.pgt_steps_automatic.isVisible() and not window.inputs.labels["node_steps"].isVisible()


def test_the_queue_shows_the_session_name_whole(qtbot, window):
    set_inputs(window, **QUICK)
    experiment = window.queue()
    item = experiment.browser_item
    browser = window.browser_widget.browser
    assert item.text(1) == Path(experiment.procedure.output).name
    window.manager.abort()
    qtbot.waitUntil(lambda: not window.manager.is_running(), timeout=10_000)
    assert browser.header().sectionSize(1) >= browser.fontMetrics().horizontalAdvance(item.text(1))


def test_the_recorded_sessions_legend_sits_below_its_curves(qtbot, window):
    window.open_session(EXAMPLE_SESSION)
    session = window.session_widget
    qtbot.wait(100)
    assert len(session.legend.items) == 2
    legend = session.legend.sceneBoundingRect()
    assert not legend.intersects(session.right_plot.vb.sceneBoundingRect())
    assert not legend.intersects(session.left_plot.vb.sceneBoundingRect())


@pytest.mark.slow
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
    assert w.queue() is None  # an existing session is never overwritten
    w.open_session(experiment.procedure.output)  # a recorded sweep is shown as a sweep
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


def test_a_run_the_trainer_would_refuse_is_not_queued(qtbot, window, caplog):
    set_inputs(window, **{**QUICK, "method": "backprop", "directions": None}, reservoir="ring-sim")
    with caplog.at_level("ERROR"):
        assert window.queue() is None
    assert "not queued: backprop needs a differentiable reservoir" in caplog.text
    assert not window.manager.experiments.queue and not list((window.runs_dir).glob("*"))


def test_while_a_window_lives_garbage_is_collected_on_the_gui_thread_only(qtbot, tmp_path):
    """A worker thread that allocates past every threshold collects nothing while a window lives (a Qt object
    freed there hangs the window); the GUI thread's timer frees the cycle; the last window closed puts the
    automatic collector back."""
    assert gc.isenabled()
    window = TrainingWindow(runs_dir=tmp_path / "runs")
    qtbot.addWidget(window)
    freed_on_gui_thread = []

    class Witness:
        def __del__(self):
            freed_on_gui_thread.append(threading.current_thread() is threading.main_thread())

    cycle = [Witness()]
    cycle.append(cycle)
    del cycle
    kept: list = []  # the worker's containers live on, as a run's do: their count passes every threshold
    worker = threading.Thread(target=lambda: kept.extend([] for _ in range(20 * sum(gc.get_threshold()))))
    worker.start()
    worker.join()
    assert freed_on_gui_thread == [] and not gc.isenabled()
    qtbot.waitUntil(lambda: bool(freed_on_gui_thread), timeout=5 * GuiThreadCollector.INTERVAL_MS)
    assert freed_on_gui_thread == [True]
    window.close()
    assert gc.isenabled()
