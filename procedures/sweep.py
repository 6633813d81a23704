"""``RingSweep``: characterise the ring from PyMeasure's window, a subscriber of the run engine's sweep.

Swept settings: the ring's loop gain (dB) or bias field (mT), or one generator's frequency (Hz) or
power (dBm), from ``start`` to ``stop`` over ``points`` points. The sweep itself — checked against
the bench before anything is sent, one recorded spectrum per point, the peak and margin of each,
the threshold — is :mod:`labpgt.sweeps`, run, stopped (PyMeasure's abort is one of its stop conditions)
and ended (RF off, the session closed) by the run engine (:meth:`labpgt.engine.RunEngine.sweep`) in a
session of kind ``sweep``: the code ``labpgt sweep`` runs.

What this procedure adds is what the window shows: each point as a ``results`` row (Point, Value,
Peak frequency (GHz), Peak power (dBm), Margin (dB)) and the progress, every trace pushed to
:attr:`RingSweep.feed` (the live spectrum), and the auto-oscillation threshold of a loop-gain sweep
logged and kept in :attr:`RingSweep.threshold_db`.

The generator of a generator sweep is named as in the bench config (``gen2``, or whatever a lab's
TOML calls it); left empty, it is the bench's first generator. Ring sweeps run free-running (every
generator off) unless ``tones`` is ticked; generator sweeps always have the generators on.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from pymeasure.experiment import BooleanParameter, FloatParameter, IntegerParameter, ListParameter, Parameter, Procedure

from labpgt.engine import Connected, Measured, PointEnded, RunEngine
from labpgt.procedures.training import DEFAULT_RUNS_DIR, STOPPED_FROM_THE_WINDOW, SpectrumFeed
from labpgt.sweeps import THRESHOLD_SETTING

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

TARGETS = {  # the choice in the window: (the setting swept, whether it is the named generator's)
    "loop gain": ("loop_gain_db", False),
    "bias field": ("field_mt", False),
    "generator frequency": ("frequency_hz", True),
    "generator power": ("power_dbm", True),
}


class RingSweep(Procedure):
    """Sweep the loop gain, the bias field, or one generator's frequency or power; record every spectrum."""

    target = ListParameter("Sweep", choices=list(TARGETS), default="loop gain")
    generator = Parameter("Generator (for generator sweeps; empty = the bench's first)", default="")
    start = FloatParameter("Start (dB, mT, Hz or dBm)", minimum=-1e12, maximum=1e12, default=-3.0, decimals=6)
    stop = FloatParameter("Stop", minimum=-1e12, maximum=1e12, default=3.0, decimals=6)
    points = IntegerParameter("Points", minimum=2, maximum=100_000, default=25)
    tones = BooleanParameter("Generators on during ring sweeps", default=False)
    margin_db = FloatParameter("Threshold margin over median (dB)", minimum=1.0, maximum=200.0, default=30.0)
    bench = Parameter("Bench config (.toml, empty = the embedded simulated bench)", default="")
    seed = IntegerParameter("Seed (embedded simulator)", minimum=0, default=0)
    output = Parameter("Session file (.h5, empty = data/runs/<time>-sweep-<setting>.h5)", default="")

    DATA_COLUMNS = ["Point", "Value", "Peak frequency (GHz)", "Peak power (dBm)", "Margin (dB)"]

    def __init__(self, *args, **kwargs):
        self.feed = SpectrumFeed()
        self.connected = None  # the connected bench, once the sweep runs
        self.session_path = None
        self.threshold_db = math.nan
        self.summary: list[dict] = []
        super().__init__(*args, **kwargs)

    def startup(self):
        from labpgt.runs import default_session_path

        setting, _ = TARGETS[self.target]
        self.session_path = (
            Path(self.output) if self.output else default_session_path("sweep", setting, runs_dir=DEFAULT_RUNS_DIR)
        )

    def sweep_spec(self, bench_config):
        """The sweep these parameters ask for on the bench of ``bench_config`` (a one-line UserError if it has none)."""
        from labpgt.sweeps import plan_sweep

        setting, of_generator = TARGETS[self.target]
        generator = (self.generator or "").strip() or None if of_generator else None
        return plan_sweep(
            bench_config,
            setting,
            self.start,
            self.stop,
            self.points,
            instrument=generator,
            tones=self.tones,
            margin_db=self.margin_db,
        )

    def execute(self):
        from labpgt.bench import load_bench_config, simulated_bench_config

        config = (
            load_bench_config(self.bench) if self.bench else simulated_bench_config(embedded=True, seed=int(self.seed))
        )
        spec = self.sweep_spec(config)
        engine = RunEngine().subscribe(self._watch)
        engine.stop_when(self.should_stop, STOPPED_FROM_THE_WINDOW)
        result = engine.sweep(spec, config, self.session_path).result
        self.threshold_db = result.threshold_db
        self._log_outcome(result)

    def _watch(self, event) -> None:
        if isinstance(event, Connected):
            self.connected = event.reservoir
            self.feed.set_frequencies(event.reservoir.frequencies)
        elif isinstance(event, Measured):
            self.feed.push(event.measurement.spectra[0])
        elif isinstance(event, PointEnded):
            self._emit_point(event.point, event.points)

    def _emit_point(self, point, total: int) -> None:
        row = {
            "Point": point.index + 1,
            "Value": point.value,
            "Peak frequency (GHz)": point.peak_frequency_hz / 1e9,
            "Peak power (dBm)": point.peak_power_dbm,
            "Margin (dB)": point.margin_db,
        }
        self.summary.append(row)
        self.emit("results", row)
        self.emit("progress", 100.0 * (point.index + 1) / total)

    def _log_outcome(self, result) -> None:
        spec = result.spec
        if not result.completed:
            log.warning(
                "RingSweep stopped after %d of %d points; session %s",
                len(result.points),
                spec.points,
                self.session_path,
            )
        if spec.setting != THRESHOLD_SETTING:
            return
        if math.isnan(result.threshold_db):
            log.warning(
                "RingSweep: no auto-oscillation threshold in [%g, %g] dB (margin %g dB)",
                spec.start,
                spec.stop,
                spec.margin_db,
            )
        else:
            log.info("RingSweep: auto-oscillation threshold at loop gain %.3f dB", result.threshold_db)
