"""``labpgt gui``: a PyMeasure ManagedWindow for PGTTraining (or RingSweep) with live spectra and session browsing.

Layout: the procedure's inputs on the left (Queue / Abort below them); on the right, tabs —
loss and accuracy curves (PyMeasure plot widgets fed by the ``results`` rows, x selectable: Step or
Queries), the **live spectrum** (the last trace measured, dBm vs GHz), a **waterfall** of every
trace of the run (rows = queries, columns = frequency), a **recorded session** browser and the
log — and PyMeasure's queue browser underneath (several runs may be queued).

How the spectra reach the GUI: each procedure owns a :class:`~labpgt.procedures.training.SpectrumFeed`
that its reservoir wrapper fills from the worker thread; a QTimer on the GUI thread polls the
running procedure's feed (``manager.running_experiment().procedure.feed``). PyMeasure 0.16's Worker
delivers only ``results``/``batch results`` rows (to the CSV recorder) and ``status``/``progress``
(to the Monitor) inside the process; any other ``emit`` topic goes only to a ZMQ publisher, so a
custom topic would never reach the window. Reading the live HDF5 file instead would lag a whole step
(the writer flushes per step) and HDF5 does not let one process open a file it is writing a second
time. The feed is in-process, per query, and bounded in memory.

Opening a recorded session uses :class:`labpgt.session.SessionReader` (read-only: the file is
never modified).

Python's cyclic garbage is collected on the GUI thread only while a window lives (:class:`GuiThreadCollector`):
a Qt object freed by a collection in the worker thread deadlocks the window.

Closing: *File → Quit*, the window's close button, Ctrl+C and SIGTERM all stop the running procedure
between two queries (RF off, session flushed) and close the window once the manager reports it back;
the signals reach the event loop through :class:`SignalCloser` (no KeyboardInterrupt inside Qt), and
``labpgt gui`` exits 0, 130 or 143 as ``labpgt train`` does. :mod:`labpgt.procedures.preflight` checks the
machine before any of this.
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import os
import signal
import sys
import threading
from pathlib import Path

import numpy as np

os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")

import pyqtgraph as pg  # noqa: E402
from pymeasure.display.curves import ResultsCurve  # noqa: E402
from pymeasure.display.Qt import QtCore, QtGui, QtWidgets  # noqa: E402
from pymeasure.display.widgets import LogWidget, PlotWidget  # noqa: E402
from pymeasure.display.widgets.tab_widget import TabWidget  # noqa: E402
from pymeasure.display.windows.managed_window import ManagedWindowBase  # noqa: E402
from pymeasure.experiment import Results  # noqa: E402

from labpgt.errors import UserError  # noqa: E402
from labpgt.procedures.preflight import check_qt_binding  # noqa: E402
from labpgt.procedures.sweep import RingSweep  # noqa: E402
from labpgt.procedures.training import (
    DEFAULT_RUNS_DIR,
    PGTTraining,
    default_session_path,
    summary_csv_path,  # noqa: E402
)
from labpgt.signals import SignalSocket, say  # noqa: E402

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

WATERFALL_ROWS = 3000
POLL_MS = 150


# --------------------------------------------------------------------------- tabs
def _style_axes(plot) -> None:
    """Readable axes on a white background (pyqtgraph's defaults are light grey), in the units their labels
    name: no SI-prefix rescaling (an accuracy of 0.45 would read 450 with "(x0.001)"; GHz would turn to kGHz)."""
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setPen("k")
        axis.setTextPen("k")
        axis.enableAutoSIPrefix(False)


class FiniteResultsCurve(ResultsCurve):
    """A results curve through its finite points only: accuracies are NaN between evaluations, and a curve of
    NaN alone makes pyqtgraph warn "All-NaN slice encountered" on every redraw."""

    def update_data(self):
        data = self.results.data
        x, y = np.asarray(data[self.x], dtype=float), np.asarray(data[self.y], dtype=float)
        finite = np.isfinite(x) & np.isfinite(y)
        self.setData(x[finite], y[finite])


class CurvePlotWidget(PlotWidget):
    """PyMeasure's plot widget, its curves through their finite points (with symbols where asked)."""

    def __init__(self, *args, symbols=False, **kwargs):
        self.symbols = symbols
        super().__init__(*args, **kwargs)
        _style_axes(self.plot)

    def new_curve(self, results, color=pg.intColor(0), **kwargs):  # noqa: B008 - PyMeasure's signature
        curve = FiniteResultsCurve(
            results,
            wdg=self,
            x=self.plot_frame.x_axis,
            y=self.plot_frame.y_axis,
            pen=pg.mkPen(color=color, width=self.linewidth),
            antialias=False,
            **kwargs,
        )
        if self.symbols:
            curve.setSymbol("o")
            curve.setSymbolSize(6)
            curve.setSymbolBrush(color)
            curve.setSymbolPen(color)
        return curve


class SpectrumWidget(TabWidget, QtWidgets.QWidget):
    """One trace, dBm vs GHz (the live spectrum, or a query of a recorded session)."""

    def __init__(self, name="Live spectrum", parent=None):
        super().__init__(name, parent)
        self.label = QtWidgets.QLabel("No spectrum yet: queue a run on a ring reservoir.")
        self.plot_widget = pg.PlotWidget(background="w")
        self.plot = self.plot_widget.getPlotItem()
        self.plot.setLabel("bottom", "frequency", units="GHz")
        self.plot.setLabel("left", "power", units="dBm")
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        _style_axes(self.plot)
        self.curve = self.plot.plot(pen=pg.mkPen("#1f4e9c", width=1.5))
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.label)
        layout.addWidget(self.plot_widget)

    def show_trace(self, frequencies_hz, trace_dbm, text: str = "") -> None:
        self.curve.setData(np.asarray(frequencies_hz) / 1e9, np.asarray(trace_dbm, dtype=np.float64))
        if text:
            self.label.setText(text)

    def trace(self):
        """(x in GHz, y in dBm) currently shown (None, None when empty)."""
        return self.curve.getData()


class WaterfallWidget(TabWidget, QtWidgets.QWidget):
    """Spectra over the run as an image: rows = queries, columns = frequency, colour = dBm."""

    def __init__(self, name="Waterfall", parent=None, max_rows=WATERFALL_ROWS):
        super().__init__(name, parent)
        self.max_rows = max_rows
        self.label = QtWidgets.QLabel("Spectra of the run appear here, one row per query.")
        self.plot_widget = pg.PlotWidget(background="w")
        self.plot = self.plot_widget.getPlotItem()
        self.plot.setLabel("bottom", "frequency", units="GHz")
        self.plot.setLabel("left", "query")
        _style_axes(self.plot)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.image)
        self.colorbar = pg.ColorBarItem(
            values=(-100, 0), colorMap=pg.colormap.get("viridis"), label="dBm", interactive=False
        )
        self.colorbar.setImageItem(self.image, insert_in=self.plot)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.label)
        layout.addWidget(self.plot_widget)
        self.clear()

    def clear(self) -> None:
        self.rows = np.zeros((0, 0), dtype=np.float32)
        self.first_row = 0
        self.row_step = 1
        self.frequencies = None
        self.image.clear()

    def set_rows(self, frequencies_hz, rows, first_row=0, row_step=1, text="") -> None:
        self.frequencies = np.asarray(frequencies_hz, dtype=np.float64)
        self.rows = np.asarray(rows, dtype=np.float32)[-self.max_rows :]
        self.first_row, self.row_step = first_row, row_step
        self._redraw()
        if text:
            self.label.setText(text)

    def append_rows(self, frequencies_hz, rows, first_row: int) -> None:
        """Add rows (global index of the first given); keeps the last ``max_rows``."""
        if self.frequencies is None or self.rows.shape[1:] != rows.shape[1:]:
            self.frequencies = np.asarray(frequencies_hz, dtype=np.float64)
            self.rows, self.first_row = rows[-self.max_rows :], first_row + max(0, len(rows) - self.max_rows)
        else:
            merged = np.concatenate([self.rows, rows])
            drop = max(0, len(merged) - self.max_rows)
            self.rows, self.first_row = merged[drop:], self.first_row + drop
        self.row_step = 1
        self._redraw()

    def _redraw(self) -> None:
        if self.rows.size == 0 or self.frequencies is None or self.frequencies.size < 2:
            return
        f = self.frequencies / 1e9
        low, high = float(np.percentile(self.rows, 1)), float(self.rows.max())
        self.image.setImage(self.rows, autoLevels=False, levels=(low, max(high, low + 1)))
        self.colorbar.setLevels((low, max(high, low + 1)))
        self.image.setRect(QtCore.QRectF(f[0], self.first_row, f[-1] - f[0], len(self.rows) * self.row_step))
        self.label.setText(
            f"queries {self.first_row} … {self.first_row + len(self.rows) * self.row_step - 1}"
            + (f" (every {self.row_step}th)" if self.row_step > 1 else "")
        )


class SessionWidget(TabWidget, QtWidgets.QWidget):
    """Browse a recorded session (.h5): its summary, its curves — a training's loss and accuracy per step,
    a sweep's peak power and margin against the swept value — and every spectrum."""

    def __init__(self, name="Recorded session", parent=None):
        super().__init__(name, parent)
        self.reader = None
        self.open_button = QtWidgets.QPushButton("Open session…")
        self.info = QtWidgets.QLabel("Open a recorded session file (.h5) to browse its curves and spectra.")
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        font = QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont)
        self.info.setFont(font)
        self.curves = pg.GraphicsLayoutWidget()
        self.curves.setBackground("w")
        self.left_plot = self.curves.addPlot(row=0, col=0)
        self.right_plot = self.curves.addPlot(row=0, col=1)
        self.legend = pg.LegendItem(colCount=2, labelTextColor="k")  # below the curves, never on them
        self.curves.addItem(self.legend, row=1, col=1)
        _style_axes(self.left_plot)
        _style_axes(self.right_plot)
        self.spectrum = SpectrumWidget("spectrum")
        self.waterfall = WaterfallWidget("waterfall", max_rows=2000)
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.slider.setEnabled(False)
        self.slider.valueChanged.connect(self.show_query)
        views = QtWidgets.QTabWidget()
        views.addTab(self.curves, "curves")
        spectrum_box = QtWidgets.QWidget()
        box = QtWidgets.QVBoxLayout(spectrum_box)
        box.addWidget(self.spectrum)
        box.addWidget(QtWidgets.QLabel("query:"))
        box.addWidget(self.slider)
        views.addTab(spectrum_box, "spectra")
        views.addTab(self.waterfall, "waterfall")
        self.views = views
        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.open_button)
        top.addWidget(self.info, 1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(views, 1)

    def open_session(self, path) -> None:
        from labpgt.inspection import format_inspection, inspect_session
        from labpgt.session import SessionReader

        self.close_session()
        info = inspect_session(path)
        self.reader = reader = SessionReader(path)
        self.info.setText(format_inspection(info))
        self.left_plot.clear()
        self.right_plot.clear()
        self.legend.clear()
        if reader.kind == "sweep":
            self._plot_sweep(reader, info["threshold"])
        else:
            self._plot_training(reader)
        self._show_spectra(reader)

    def _plot_training(self, reader) -> None:
        steps = reader.steps()
        x = steps["step"] + 1
        self._label_plots("step", "loss", "accuracy")
        self.left_plot.plot(x, steps["loss"], pen=pg.mkPen("#1f4e9c", width=1.5), connect="finite")
        for column, color in (("train_accuracy", "#d95f02"), ("test_accuracy", "#1b9e77")):
            ok = np.isfinite(steps[column])
            if ok.any():
                curve = self.right_plot.plot(
                    x[ok],
                    steps[column][ok],
                    pen=pg.mkPen(color, width=1.5),
                    symbol="o",
                    symbolSize=5,
                    symbolBrush=color,
                )
                self.legend.addItem(curve, column.replace("_", " "))

    def _plot_sweep(self, reader, threshold) -> None:
        points = reader.points()
        self._label_plots(reader.setting_names[0], "peak power (dBm)", "margin (dB)")
        for plot, column in ((self.left_plot, "peak_power_dbm"), (self.right_plot, "margin_db")):
            plot.plot(
                points["value"],
                points[column],
                pen=pg.mkPen("#1f4e9c", width=1.5),
                symbol="o",
                symbolSize=5,
                symbolBrush="#1f4e9c",
                connect="finite",
            )
        if threshold is not None:
            self.right_plot.addLine(x=threshold, pen=pg.mkPen("#d95f02", width=1.5, style=QtCore.Qt.PenStyle.DashLine))

    def _label_plots(self, x_label: str, left_title: str, right_title: str) -> None:
        for plot, title in ((self.left_plot, left_title), (self.right_plot, right_title)):
            plot.setTitle(title)
            plot.setLabel("bottom", x_label)

    def _show_spectra(self, reader) -> None:
        n = reader.n_queries
        if reader.has_spectra and n:
            stride = max(1, math.ceil(n / self.waterfall.max_rows))
            rows = reader.dataset("queries/spectrum")[0:n:stride]
            self.waterfall.set_rows(reader.frequencies, rows, 0, stride)
            self.slider.setRange(0, n - 1)
            self.slider.setEnabled(True)
            self.slider.setValue(n - 1)
            self.show_query(n - 1)
        else:
            self.slider.setEnabled(False)
            self.waterfall.clear()
            self.spectrum.curve.setData([], [])
            self.spectrum.label.setText("This session has no spectra (digital reservoir).")

    def show_query(self, index: int) -> None:
        reader = self.reader
        if reader is None or not reader.has_spectra or not 0 <= index < reader.n_queries:
            return
        q = reader.queries(index, index + 1, fields=("spectrum", "step", "role"))
        unit = "point" if reader.kind == "sweep" else "step"
        self.spectrum.show_trace(
            reader.frequencies,
            q["spectrum"][0],
            f"query {index} of {reader.n_queries}: {unit} {int(q['step'][0])}, role {reader.role_name(q['role'][0])}",
        )

    def close_session(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None


class WindowLogWidget(LogWidget):
    """PyMeasure's log tab with a blink timer of its own: PyMeasure 0.16 shares one class-level timer among
    all log widgets, so a new window's log tab would blink (and fail, not yet in its tabs) on an old one's."""

    def __init__(self, *args, **kwargs):
        self._blink_qtimer = QtCore.QTimer()
        super().__init__(*args, **kwargs)


# --------------------------------------------------------------------------- the window
PLOTS = {
    PGTTraining: (("Loss", "Step", "Loss", False), ("Accuracy", "Step", "Held-out accuracy", True)),
    RingSweep: (("Peak power", "Value", "Peak power (dBm)", True), ("Margin", "Value", "Margin (dB)", True)),
}
INPUTS = {
    PGTTraining: PGTTraining.input_names(),
    RingSweep: ("target", "generator", "start", "stop", "points", "tones", "margin_db", "bench", "seed", "output"),
}
DISPLAYS = {
    PGTTraining: ("task", "model", "method", "reservoir", "output"),
    RingSweep: ("target", "start", "stop", "points", "output"),
}


class TrainingWindow(ManagedWindowBase):
    """The ``labpgt gui`` window (PGTTraining by default; ``procedure_class=RingSweep`` for sweeps)."""

    def __init__(self, procedure_class=PGTTraining, runs_dir=None, bench_config: str | None = None, parent=None):
        self.runs_dir = Path(runs_dir) if runs_dir is not None else DEFAULT_RUNS_DIR
        self._assigned: set[str] = set()
        self.plot_widgets = []
        for title, x, y, symbols in PLOTS[procedure_class]:
            widget = CurvePlotWidget(title, procedure_class.DATA_COLUMNS, x, y, symbols=symbols, linewidth=2)
            widget.setMinimumSize(100, 200)
            self.plot_widgets.append(widget)
        self.spectrum_widget = SpectrumWidget()
        self.waterfall_widget = WaterfallWidget()
        self.session_widget = SessionWidget()
        self.log_widget = WindowLogWidget("Log")
        widgets = tuple(self.plot_widgets) + (
            self.spectrum_widget,
            self.waterfall_widget,
            self.session_widget,
            self.log_widget,
        )
        inputs = INPUTS[procedure_class]
        super().__init__(
            procedure_class,
            widget_list=widgets,
            inputs=inputs,
            displays=DISPLAYS[procedure_class],
            enable_file_input=False,
            inputs_in_scrollarea=True,
            parent=parent,
        )
        self.inputs.setMinimumHeight(640)  # most inputs visible without scrolling
        self._fit_inputs()
        self._fit_queue()
        self.manager.port = None  # no ZMQ publisher: everything the window needs is in-process
        self.browser_widget.browser.measured_quantities.update(procedure_class.DATA_COLUMNS)
        logging.getLogger().addHandler(self.log_widget.handler)
        self.setWindowTitle(
            "labpgt — "
            + ("perturbative gradient training" if procedure_class is PGTTraining else "ring characterisation")
        )
        if bench_config:
            self.inputs.bench.setValue(str(bench_config))
        self.session_widget.open_button.clicked.connect(self.open_session_dialog)
        menu = self.menuBar().addMenu("&File")
        action = menu.addAction("&Open session…")
        action.setShortcut(QtGui.QKeySequence.StandardKey.Open)
        action.triggered.connect(self.open_session_dialog)
        self.quit_action = menu.addAction("&Quit", self.close)
        self.quit_action.setShortcut(QtGui.QKeySequence.StandardKey.Quit)
        self.stop_signal = None  # the signal that closed the window (its number), if one did
        self.stopped_session = None  # the session of a run stopped by closing the window
        self._closing = False
        self._feed = None
        self._next_row = 0
        self._shown = -1
        self._ticks = 0
        self.timer = QtCore.QTimer(self)
        self.timer.timeout.connect(self.poll_spectra)
        self.timer.start(POLL_MS)
        self.collector = GuiThreadCollector(self)
        self.resize(1280, 860)

    # ---- layout
    def _fit_inputs(self) -> None:
        """Labels wrap, and the panel is as wide as its widest field plus the scrollbar: no field or combo
        arrow runs under the scrollbar, no label is cut."""
        for label in self.inputs.labels.values():
            label.setWordWrap(True)
        scroll = self.inputs.findChild(QtWidgets.QScrollArea)
        if scroll is not None:
            scroll.setMinimumWidth(
                scroll.widget().minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width() + 4
            )

    def _fit_queue(self) -> None:
        """The queue's file names whole (the column follows its contents)."""
        header = self.browser_widget.browser.header()
        header.setSectionResizeMode(1, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)

    # ---- queueing: the session is the record, the CSV its derived summary
    def queue(self, procedure=None):
        if procedure is None:
            procedure = self.make_procedure()
        if isinstance(procedure, PGTTraining):
            try:
                procedure.train_config()  # refused here, in one line, rather than failing in the queue
            except UserError as exc:
                log.error("not queued: %s", exc)
                return None
        if procedure.output:
            session = Path(procedure.output)
            if session.exists() or str(session) in self._assigned:
                log.error(
                    "%s already exists: a session is a record and is never overwritten; "
                    "choose another file or leave the field empty",
                    session,
                )
                return None
        else:
            labels = (
                (procedure.task, procedure.model, procedure.method)
                if isinstance(procedure, PGTTraining)
                else ("sweep", procedure.target)
            )
            session = default_session_path(*labels, runs_dir=self.runs_dir, taken=self._assigned)
            procedure.output = str(session)
        self._assigned.add(str(session))
        session.parent.mkdir(parents=True, exist_ok=True)
        results = Results(procedure, str(summary_csv_path(session)))
        experiment = self.new_experiment(results)
        experiment.browser_item.setText(1, session.name)  # the record (the CSV summary is beside it)
        self.manager.queue(experiment)
        return experiment

    # ---- live spectra, polled on the GUI thread
    def poll_spectra(self) -> None:
        if self.manager.is_running():
            feed = getattr(self.manager.running_experiment().procedure, "feed", None)
            if feed is not None and feed is not self._feed:
                self._feed, self._next_row, self._shown = feed, 0, -1
                self.waterfall_widget.clear()
        feed = self._feed
        if feed is None or feed.frequencies is None:
            return
        index, trace = feed.latest()
        if trace is not None and index != self._shown:
            self._shown = index
            self.spectrum_widget.show_trace(feed.frequencies, trace, f"query {index + 1} of the latest run")
        self._ticks += 1
        if self._ticks % 3 == 0 or not self.manager.is_running():  # the image at ~2 Hz
            first, rows = feed.rows_since(self._next_row)
            if rows is not None:
                self.waterfall_widget.append_rows(feed.frequencies, rows, first)
                self._next_row = first + len(rows)

    # ---- recorded sessions
    def open_session_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open a recorded session", str(self.runs_dir), "labpgt sessions (*.h5);;All files (*)"
        )
        if path:
            self.open_session(path)

    def open_session(self, path) -> None:
        try:
            self.session_widget.open_session(path)
        except UserError as exc:
            QtWidgets.QMessageBox.warning(self, "Cannot open session", str(exc))
            return
        self.tabs.setCurrentWidget(self.session_widget)

    # ---- closing: the run is stopped first (RF off, session flushed), then the window goes
    def close_on_signal(self, signum: int) -> None:
        """A stop signal (:data:`labpgt.signals.STOP_SIGNALS`): close as *File → Quit* does; the first signal
        decides the exit status."""
        name = signal.Signals(signum).name
        if self.stop_signal is None:
            self.stop_signal = signum
            say(
                f"labpgt gui: {name}: stopping"
                + (
                    " the run between two queries (RF off, session saved), then closing"
                    if self.manager.is_running()
                    else " and closing"
                )
            )
        else:
            say(f"labpgt gui: {name}: still stopping (the query being measured ends first)")
        self.close()

    def closeEvent(self, event):
        if self.manager.is_running():  # stop the run first; close when the manager says it has returned
            event.ignore()
            if not self._closing:
                self._closing = True
                self.stopped_session = self.manager.running_experiment().procedure.output
                log.warning("closing: stopping the run first (RF off, session saved)")
                for returned in (self.manager.abort_returned, self.manager.failed, self.manager.finished):
                    returned.connect(self._close_after_run)
                self.manager.abort()
            return
        self.timer.stop()
        self.log_widget._blink_qtimer.stop()
        self.session_widget.close_session()
        logging.getLogger().removeHandler(self.log_widget.handler)
        super().closeEvent(event)
        self.collector.stop()

    def _close_after_run(self, _experiment=None) -> None:
        QtCore.QTimer.singleShot(0, self.close)


# --------------------------------------------------------------------------- garbage, collected on the GUI thread
class GuiThreadCollector(QtCore.QObject):
    """Python's cyclic garbage collector, run on the GUI thread only, while a window lives.

    Left automatic, the collector runs in whichever thread allocates when a threshold is passed, the
    procedure's worker thread among them; a Qt object it frees there (a closed window's menu, say) is destroyed
    off the GUI thread, where shiboken waits for the GIL inside Qt's destructor while the GUI thread, holding
    the GIL, waits for that destructor's lock: the window hangs mid-run, RF on (the suite caught it, a worker
    thread's collection freeing a menu of the window a test before). So the automatic collector is off while a
    window lives, and a timer on the GUI thread collects, generation by generation as the thresholds are passed
    (calibre's GarbageCollector does the same). The last window to close collects once more and puts the
    automatic collector back as it found it.
    """

    INTERVAL_MS = 1000
    _living = 0
    _was_enabled = True

    def __init__(self, parent):
        super().__init__(parent)
        if GuiThreadCollector._living == 0:
            GuiThreadCollector._was_enabled = gc.isenabled()
            gc.disable()
        GuiThreadCollector._living += 1
        self._timer = QtCore.QTimer(self)
        self._timer.timeout.connect(self.collect)
        self._timer.start(self.INTERVAL_MS)

    @staticmethod
    def collect() -> None:
        counts, thresholds = gc.get_count(), gc.get_threshold()
        if counts[0] > thresholds[0]:
            gc.collect(0)
            if counts[1] > thresholds[1]:
                gc.collect(1)
                if counts[2] > thresholds[2]:
                    gc.collect(2)

    def stop(self) -> None:
        if not self._timer.isActive():
            return
        self._timer.stop()
        GuiThreadCollector._living -= 1
        gc.collect()
        if GuiThreadCollector._living == 0 and GuiThreadCollector._was_enabled:
            gc.enable()


# --------------------------------------------------------------------------- signals
class SignalCloser(QtCore.QObject):
    """Ctrl+C and SIGTERM close the window as *File → Quit* does, on the Qt event loop's turn: the signals
    arrive through a :class:`labpgt.signals.SignalSocket`, which a QSocketNotifier watches, so no Python
    code of the window is ever interrupted (see that class for why)."""

    def __init__(self, window: TrainingWindow):
        super().__init__(window)
        self.window = window
        self.signals = SignalSocket()
        self._notifier = QtCore.QSocketNotifier(self.signals.fileno(), QtCore.QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(self._deliver)

    def _deliver(self, *_) -> None:
        for signum in self.signals.received():
            self.window.close_on_signal(signum)

    def restore(self) -> None:
        """The signals' previous handlers back — or ignored from now on, if one already closed the window (the
        run is stopped and the exit status decided)."""
        self._notifier.setEnabled(False)
        self.signals.restore(ignore=self.window.stop_signal is not None)


def exit_status(window: TrainingWindow) -> int:
    """0, or 128 + the signal that closed the window (SIGINT 130, SIGTERM 143, SIGHUP 129, …), after one line
    saying so."""
    if window.stop_signal is None:
        return 0
    session = window.stopped_session
    if session and Path(session).is_file():
        hint = (
            f"continue with labpgt train --resume {session}"
            if window.procedure_class is PGTTraining
            else f"it holds the points measured so far: {session}"
        )
        say(f"labpgt gui: interrupted; RF is off and the session is saved: {hint}")
    else:
        say("labpgt gui: interrupted")
    return 128 + int(window.stop_signal)


def dispose(window: TrainingWindow) -> None:
    """Delete the window's Qt objects now, while Python and the QApplication are both alive (not in
    whatever order the interpreter's finalisation would reach them)."""
    window.deleteLater()
    QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)


# --------------------------------------------------------------------------- screenshots
SCREENSHOT_STEPS = 60


def save_screenshots(window: TrainingWindow, path) -> list[Path]:
    """Grab the real window twice — the loss tab and the live-spectrum tab — as ``path`` and ``<path>-spectrum``."""
    path = Path(path)
    saved = []
    for widget, target in (
        (window.plot_widgets[0], path),
        (window.spectrum_widget, path.with_name(path.stem + "-spectrum" + path.suffix)),
    ):
        window.tabs.setCurrentWidget(widget)
        QtWidgets.QApplication.processEvents()
        window.grab().save(str(target))
        saved.append(target)
    window.tabs.setCurrentWidget(window.plot_widgets[0])
    return saved


def screenshot_during_run(window: TrainingWindow, path, steps: int = SCREENSHOT_STEPS) -> None:
    """Queue a run with the default inputs; once it has made ``steps`` steps, save the screenshots and close
    (which stops the run). Used to make ``docs/gui.png``; works offscreen."""
    experiment = window.queue()
    timer = QtCore.QTimer(window)

    def check():
        if experiment.procedure.status in (experiment.procedure.FAILED, experiment.procedure.ABORTED):
            timer.stop()
            window.close()
        elif getattr(experiment.procedure, "steps_done", 0) >= steps:
            timer.stop()
            window.poll_spectra()
            for curve in filter(None, experiment.curve_list):
                curve.update_data()
            save_screenshots(window, path)
            window.close()

    timer.timeout.connect(check)
    timer.start(250)


# --------------------------------------------------------------------------- entry point
def run_gui(
    bench_path=None, procedure: str = "train", runs_dir=None, open_session=None, start: bool = False, screenshot=None
) -> int:
    """Show the window and run the Qt event loop; returns the exit status (130 after Ctrl+C, 143 after SIGTERM).

    ``start``: queue one run with the inputs' defaults at once. ``screenshot``: see
    :func:`screenshot_during_run`.
    """
    check_qt_binding()
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    window = TrainingWindow(
        RingSweep if procedure == "sweep" else PGTTraining, runs_dir=runs_dir, bench_config=bench_path
    )
    closer = SignalCloser(window) if threading.current_thread() is threading.main_thread() else None
    try:
        window.show()
        if open_session:
            window.open_session(open_session)
        if screenshot:
            screenshot_during_run(window, screenshot)
        elif start:
            window.queue()
        app.exec()
    finally:
        if closer is not None:
            closer.restore()
    status = exit_status(window)
    dispose(window)
    return status


def main(argv=None) -> int:
    """``labpgt gui [--bench FILE.toml] [--sweep] [--runs-dir DIR] [--open FILE.h5] [--start]``."""
    parser = argparse.ArgumentParser(
        prog="labpgt gui",
        description="The PyMeasure window: queue training runs "
        "(or ring sweeps), watch loss, accuracy and the live spectrum, browse sessions.",
    )
    parser.add_argument("--bench", metavar="FILE.toml", help="bench config (default: the embedded simulated bench)")
    parser.add_argument("--sweep", action="store_true", help="characterisation sweeps (RingSweep) instead of training")
    parser.add_argument("--runs-dir", default=str(DEFAULT_RUNS_DIR), help="where sessions go (default data/runs)")
    parser.add_argument("--open", metavar="FILE.h5", help="open a recorded session at start")
    parser.add_argument("--start", action="store_true", help="queue one run with the default inputs at once")
    parser.add_argument("--screenshot", metavar="FILE.png", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return run_gui(
        args.bench, "sweep" if args.sweep else "train", args.runs_dir, args.open, args.start, args.screenshot
    )


if __name__ == "__main__":
    raise SystemExit(main())
