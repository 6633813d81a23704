"""``RingSweep``: characterise the ring — sweep one setting, record every spectrum, estimate the threshold.

Swept settings: the ring's loop gain (dB) or bias field (mT), or one generator's frequency (Hz) or
power (dBm), from ``start`` to ``stop`` over ``points`` points. Every spectrum is recorded in a
labpgt session file of kind ``sweep`` (:class:`labpgt.session.SweepWriter`: query role ``"sweep"``,
one row per point in ``points``). Each point's summary is recorded there and emitted as a
``results`` row: Point, Value, Peak frequency (GHz), Peak power (dBm), Margin (dB) = strongest
line (injected tones excluded) above the trace's median (the noise floor; :func:`labpgt.sweeps.line_margin`).

When the loop gain is swept, :func:`labpgt.sweeps.estimate_threshold` gives the auto-oscillation
threshold: the gain where the margin first rises through ``margin_db`` (default 30 dB), linearly
interpolated between the two points around the jump. It is logged and kept in
:attr:`RingSweep.threshold_db`; ``labpgt inspect`` derives it from the session's points.

Ring sweeps run with every generator's RF output off by default (the free-running ring: an
injected tone pulls and locks the modes and would mask the threshold); ``tones`` turns them on at
the bench's fixed settings. Generator sweeps always have the generators on. RF is turned off at the
end, on abort and on error.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
from pymeasure.experiment import BooleanParameter, FloatParameter, IntegerParameter, ListParameter, Parameter, \
    Procedure

from labpgt.procedures.training import DEFAULT_RUNS_DIR, BenchSafety, SpectrumFeed
from labpgt.sweeps import estimate_threshold, fixed_settings, line_margin

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

TARGETS = {"loop gain": ("ring", "loop_gain_db"), "bias field": ("ring", "field_mt"),
           "generator frequency": ("gen", "frequency_hz"), "generator power": ("gen", "power_dbm")}


class RingSweep(BenchSafety, Procedure):
    """Sweep the loop gain, the bias field, or one generator's frequency or power; record every spectrum."""

    target = ListParameter("Sweep", choices=list(TARGETS), default="loop gain")
    generator = IntegerParameter("Generator (for generator sweeps)", minimum=1, maximum=64, default=1)
    start = FloatParameter("Start (dB, mT, Hz or dBm)", minimum=-1e12, maximum=1e12, default=-3.0, decimals=6)
    stop = FloatParameter("Stop", minimum=-1e12, maximum=1e12, default=3.0, decimals=6)
    points = IntegerParameter("Points", minimum=2, maximum=100_000, default=25)
    tones = BooleanParameter("Generators on during ring sweeps", default=False)
    margin_db = FloatParameter("Threshold margin over median (dB)", minimum=1.0, maximum=200.0, default=30.0)
    bench_config = Parameter("Bench config (.toml, empty = embedded simulated bench)", default="")
    seed = IntegerParameter("Seed (embedded simulator)", minimum=0, default=0)
    output = Parameter("Session file (.h5, empty = data/runs/<time>-sweep-<setting>.h5)", default="")

    DATA_COLUMNS = ["Point", "Value", "Peak frequency (GHz)", "Peak power (dBm)", "Margin (dB)"]

    def __init__(self, *args, **kwargs):
        self.feed = SpectrumFeed()
        self.bench = None
        self.session_path = None
        self.threshold_db = math.nan
        self.summary: list[dict] = []
        super().__init__(*args, **kwargs)

    def startup(self):
        from labpgt.runs import default_session_path

        kind, setting = TARGETS[self.target]
        self.instrument_setting = setting
        path = Path(self.output) if self.output else default_session_path("sweep", setting, runs_dir=DEFAULT_RUNS_DIR)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.session_path = path

    def _open_bench(self):
        from labpgt.bench import embedded_bench, load_bench

        return load_bench(self.bench_config) if self.bench_config else embedded_bench(seed=int(self.seed))

    def execute(self):
        from labpgt.bench.features import trace_features
        from labpgt.recording import QueryLabels
        from labpgt.reservoir import Measurement
        from labpgt.session import SweepWriter, sweep_session_config

        writer = None
        try:
            bench = self.bench = self._open_bench()
            config = bench.config
            kind, setting = TARGETS[self.target]
            if kind == "ring":
                if config.ring is None:
                    raise ValueError("this bench has no ring controller to sweep")
                name = config.ring
            else:
                name = f"gen{int(self.generator)}"
                if name not in config.generators:
                    raise ValueError(f"this bench has no generator {name}; it has {', '.join(config.generators)}")
            values = np.linspace(float(self.start), float(self.stop), int(self.points))
            self.feed.set_frequencies(bench.frequencies)
            sweep = {"instrument": name, "setting": setting, "start": float(self.start), "stop": float(self.stop),
                     "points": int(self.points), "tones": bool(self.tones) or kind == "gen",
                     "margin_db": float(self.margin_db), "fixed": fixed_settings(config, name, setting)}
            writer = SweepWriter.create(self.session_path, sweep_session_config(sweep, config),
                                        frequencies=bench.frequencies, instruments=bench.identities())
            analyzer = config.instruments[config.analyzer]
            rbw = float(analyzer.settings.get("rbw_hz", 1e6))
            tones_on = bool(self.tones) or kind == "gen"
            margins = []
            if not tones_on:
                bench.rf_off()
            for i, value in enumerate(values):
                if self.should_stop():
                    log.warning("RingSweep aborted after %d of %d points", i, len(values))
                    break
                settings = {(name, setting): float(value)}
                trace = bench.measure_trace(settings, rf=tones_on)
                if tones_on:
                    excluded = [float(value) if (g, setting) == (name, "frequency_hz")
                                else config.instruments[g].settings.get("frequency_hz") for g in config.generators]
                    excluded = [f for f in excluded if f is not None]
                else:
                    excluded = []
                peak_f, peak_p, margin = line_margin(trace, bench.frequencies, excluded, 5 * rbw)
                margins.append(margin)
                u = np.array([[i / max(len(values) - 1, 1)]])
                measurement = Measurement(
                    features=trace_features(trace[None, :], config.bins, config.floor_dbm, config.ceiling_dbm),
                    spectra=trace[None, :], frequencies=bench.frequencies, settings=np.array([[value]]),
                    started=None, attempts=np.ones(1, dtype=np.int32))
                writer.record_queries(QueryLabels.of(i, "sweep", 1, layer=-1), u, measurement)
                self.feed.push(trace)
                writer.record_point(i, {"value": float(value), "peak_frequency_hz": peak_f, "peak_power_dbm": peak_p,
                                        "margin_db": margin})
                if setting == "loop_gain_db" and i == len(values) - 1:
                    self.threshold_db = estimate_threshold(values[:len(margins)], margins, float(self.margin_db))
                row = {"Point": i + 1, "Value": float(value), "Peak frequency (GHz)": peak_f / 1e9,
                       "Peak power (dBm)": peak_p, "Margin (dB)": margin}
                self.summary.append(row)
                self.emit("results", row)
                self.emit("progress", 100.0 * (i + 1) / len(values))
            if setting == "loop_gain_db" and len(margins) == len(values):
                if math.isnan(self.threshold_db):
                    log.warning("RingSweep: no auto-oscillation threshold in [%g, %g] dB (margin %g dB)",
                                self.start, self.stop, self.margin_db)
                else:
                    log.info("RingSweep: auto-oscillation threshold at loop gain %.3f dB", self.threshold_db)
        finally:
            self._close_record_and_rf_off(writer)
