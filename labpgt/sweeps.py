"""Characterisation sweeps of the ring: what to sweep, measuring it on a bench, and what a swept trace says.

* :class:`SweepSpec` and :func:`plan_sweep` — one setting of one instrument swept over evenly spaced
  values, with the generators on or off and a threshold margin; planning checks the names against
  the bench config and says what is wrong in one line (:class:`~labpgt.errors.UserError`);
* :func:`check_sweep_safe` — every value of a sweep through the bench's safety checks, before
  anything is sent;
* :func:`sweep_points` — measure a sweep on a bench point by point, reporting each to a recorder
  (:mod:`labpgt.recording`); the run engine (:mod:`labpgt.engine`) runs it, stops it and ends it;
* :func:`line_margin` — a trace's strongest line (injected tones excluded) and how far it stands
  above the trace's median (the noise floor); :func:`spectral_lines` — every prominent line of a trace;
* :func:`estimate_threshold`, :func:`sweep_threshold` — the swept value where that margin first rises
  through a level: the auto-oscillation threshold when the loop gain is swept;
* :func:`fixed_settings` — what a sweep of one setting holds fixed, for its session's config.

No PyMeasure, no Qt and no file here: :meth:`labpgt.engine.RunEngine.sweep` keeps the session, and
``labpgt sweep`` and the GUI's :class:`labpgt.procedures.sweep.RingSweep` subscribe to it;
inspection derives a recorded sweep's threshold with the same function.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from labpgt.bench.features import trace_features
from labpgt.errors import UserError
from labpgt.recording import QueryLabels
from labpgt.reservoir import Measurement

DEFAULT_MARGIN_DB = 30.0
THRESHOLD_SETTING = "loop_gain_db"  # the setting whose sweep crosses the auto-oscillation threshold
THRESHOLD_SETTINGS = (THRESHOLD_SETTING, "attenuation_db")  # ... and a loop attenuator's, crossed going down
TONE_EXCLUSION_RBW = 5.0  # lines within this many RBWs of an injected tone are the tone's


# --------------------------------------------------------------------------- what to sweep
@dataclass(frozen=True)
class SweepSpec:
    """``setting`` of ``instrument`` (named as in the bench config) from ``start`` to ``stop`` in ``points``
    evenly spaced values; every generator's RF on during the sweep when ``tones``; the threshold is where
    the strongest line first stands ``margin_db`` above the noise floor."""

    instrument: str
    setting: str
    start: float
    stop: float
    points: int
    tones: bool = False
    margin_db: float = DEFAULT_MARGIN_DB

    def __post_init__(self):
        if not (math.isfinite(self.start) and math.isfinite(self.stop)):
            raise UserError(f"a sweep runs between finite values, not from {self.start:g} to {self.stop:g}")
        if self.points < 2:
            raise UserError(f"a sweep needs at least 2 points, not {self.points}")
        if not (math.isfinite(self.margin_db) and self.margin_db > 0):
            raise UserError(f"the threshold margin must be a positive number of dB, not {self.margin_db:g}")

    @property
    def values(self) -> np.ndarray:
        return np.linspace(self.start, self.stop, self.points)

    @property
    def label(self) -> str:
        return f"{self.instrument}.{self.setting}"

    def description(self, bench_config) -> dict:
        """What a session records of this sweep (its ``config["sweep"]``): the spec and what it holds fixed."""
        return {**asdict(self), "fixed": fixed_settings(bench_config, self.instrument, self.setting)}


def plan_sweep(
    bench_config,
    setting: str,
    start: float,
    stop: float,
    points: int,
    instrument: str | None = None,
    tones: bool = False,
    margin_db: float = DEFAULT_MARGIN_DB,
) -> SweepSpec:
    """The sweep of ``setting`` on this bench, checked against its config.

    ``instrument`` is a name from the bench config (``gen2``, or whatever a lab's TOML calls its
    generators); None takes the first instrument that has ``setting`` (the ring, for its loop gain or
    field). Ring sweeps run free-running unless ``tones``: an injected tone pulls and locks the ring's
    modes and would mask the threshold. A generator sweep always has the generators on.
    """
    name = sweep_instrument(bench_config, setting, instrument)
    return SweepSpec(
        name,
        setting,
        float(start),
        float(stop),
        int(points),
        tones=bool(tones) or name in bench_config.generators,
        margin_db=float(margin_db),
    )


def sweep_instrument(bench_config, setting: str, name: str | None = None) -> str:
    """``name`` if it is an instrument of the bench whose ``setting`` can be swept (else a UserError listing
    those that can); the first such instrument when ``name`` is None."""
    able = [n for n, inst in bench_config.instruments.items() if setting in inst.kind.encodable]
    if not able:
        raise UserError(f"bench '{bench_config.name}' has no instrument whose {setting} can be swept")
    if name is None:
        return able[0]
    if name not in able:
        raise UserError(
            f"bench '{bench_config.name}' has no instrument {name!r} with a {setting} to sweep; "
            f"those with one are {', '.join(able)}"
        )
    return name


def check_sweep_safe(spec: SweepSpec, bench) -> None:
    """Put every value of ``spec`` through ``bench``'s safety checks (a :class:`~labpgt.bench.SafetyError`,
    one line, for the first that fails); nothing is sent."""
    for value in spec.values:
        bench.check({(spec.instrument, spec.setting): float(value)}, rf=spec.tones)


# --------------------------------------------------------------------------- measuring it
@dataclass(frozen=True)
class SweepPoint:
    """One measured point: the swept value and the strongest line of its trace."""

    index: int
    value: float
    peak_frequency_hz: float
    peak_power_dbm: float
    margin_db: float
    field_mt: float = math.nan  # the field a gaussmeter read at this point (NaN without one)

    RECORDED = ("value", "peak_frequency_hz", "peak_power_dbm", "margin_db")  # what a session's points row holds

    def recorded(self) -> dict:
        return {name: getattr(self, name) for name in self.RECORDED}


@dataclass
class SweepResult:
    """The points measured of ``spec`` (all of them unless the sweep was stopped), on a bench whose traces
    have the axis ``frequencies`` (Hz)."""

    spec: SweepSpec
    points: list[SweepPoint] = field(default_factory=list)
    frequencies: np.ndarray | None = None

    @property
    def completed(self) -> bool:
        return len(self.points) == self.spec.points

    def columns(self) -> dict[str, np.ndarray]:
        """The points as columns, as a session's ``points`` holds them: value, peak frequency and power, margin."""
        return {
            name: np.array([getattr(point, name) for point in self.points], dtype=np.float64)
            for name in SweepPoint.RECORDED
        }

    @property
    def threshold_db(self) -> float:
        """The auto-oscillation threshold of a loop-gain sweep (NaN if not reached, or not a loop-gain sweep)."""
        columns = self.columns()
        return sweep_threshold(self.spec.setting, columns["value"], columns["margin_db"], self.spec.margin_db)


def sweep_points(spec: SweepSpec, bench, recorder, before_query=None):
    """Measure ``spec`` on ``bench`` (a connected :class:`~labpgt.bench.Bench`), one query per point, yielding
    each ``(SweepPoint, Measurement)`` once ``recorder`` has it (``record_queries`` with role ``sweep``, then
    ``record_point``). ``before_query()`` is called before each query (the run engine's stop check). Owns no
    file, no window and no ending: the run engine turns RF off however the sweep ends."""
    tone_width_hz = TONE_EXCLUSION_RBW * bench.setting(bench.config.analyzer, "rbw_hz")
    for index, value in enumerate(spec.values):
        if before_query is not None:
            before_query()
        measurement = _measure(spec, bench, float(value))
        assert measurement.spectra is not None and measurement.field_mt is not None, "_measure gives both"
        peak = line_margin(measurement.spectra[0], bench.frequencies, _injected_tones(spec, bench), tone_width_hz)
        point = SweepPoint(index, float(value), *peak, field_mt=float(measurement.field_mt[0]))
        position = np.array([[index / (spec.points - 1)]])  # a sweep's input u: how far along the range
        recorder.record_queries(QueryLabels.of(index, "sweep", 1, layer=-1), position, measurement)
        recorder.record_point(index, point.recorded())
        yield point, measurement


def _measure(spec: SweepSpec, bench, value: float) -> Measurement:
    """One query with the swept setting at ``value``: its trace, features, setting, start time and attempts."""
    started = time.time()
    trace, attempts = bench.query({(spec.instrument, spec.setting): value}, rf=spec.tones)
    config = bench.config
    clock, temperature, field = bench.readings()
    return Measurement(
        features=trace_features(trace[None, :], config.bins, config.floor_dbm, config.ceiling_dbm),
        spectra=trace[None, :],
        frequencies=bench.frequencies,
        settings=np.array([[value]]),
        started=np.array([started]),
        attempts=np.array([attempts], dtype=np.int32),
        wall_seconds=np.array([time.time() - started]),
        sim_time=np.array([clock]),
        temperature_c=np.array([temperature]),
        field_mt=np.array([field]),
    )


def _injected_tones(spec: SweepSpec, bench) -> list[float]:
    """The frequencies of the generators' tones in the last query (none when they were off)."""
    return [bench.setting(name, "frequency_hz") for name in bench.config.generators] if spec.tones else []


# --------------------------------------------------------------------------- what a swept trace says
def spectral_lines(trace, threshold_dbm: float, prominence_db: float) -> list[int]:
    """Indices (ascending frequency) of every local maximum at or above ``threshold_dbm`` that stands
    ``prominence_db`` above its surroundings (scipy's topographic prominence)."""
    from scipy.signal import find_peaks

    peaks, _ = find_peaks(trace, height=threshold_dbm, prominence=prominence_db)
    return [int(i) for i in peaks]


def line_margin(trace_dbm, frequencies_hz, excluded_hz=(), exclude_width_hz=0.0) -> tuple[float, float, float]:
    """``(peak_frequency_hz, peak_dbm, margin_db)``: the strongest point outside ±width of every
    excluded frequency, and how far it stands above the trace's median."""
    trace = np.asarray(trace_dbm, dtype=np.float64)
    f = np.asarray(frequencies_hz, dtype=np.float64)
    keep = np.ones(trace.shape, dtype=bool)
    for tone in excluded_hz:
        keep &= np.abs(f - tone) > exclude_width_hz
    if not keep.any():
        keep[:] = True
    i = int(np.flatnonzero(keep)[np.argmax(trace[keep])])
    return float(f[i]), float(trace[i]), float(trace[i] - np.median(trace))


def estimate_threshold(values, margins, margin_db: float = DEFAULT_MARGIN_DB) -> float:
    """The swept value where ``margins`` first rises through ``margin_db`` (linear interpolation); NaN if never.

    ``values`` must be monotonic (either direction); the first point already above gives that point.
    """
    v = np.asarray(values, dtype=np.float64)
    m = np.asarray(margins, dtype=np.float64)
    order = np.argsort(v)
    v, m = v[order], m[order]
    above = np.flatnonzero(m >= margin_db)
    if above.size == 0:
        return math.nan
    i = int(above[0])
    if i == 0:
        return float(v[0])
    return float(v[i - 1] + (margin_db - m[i - 1]) / (m[i] - m[i - 1]) * (v[i] - v[i - 1]))


def sweep_threshold(setting: str, values, margins, margin_db: float) -> float:
    """The auto-oscillation threshold of a sweep of ``setting``: :func:`estimate_threshold` for a loop-gain
    sweep, and for a loop attenuator's (the attenuation where the margin first rises going *down*), NaN for any
    other setting or no points."""
    if setting not in THRESHOLD_SETTINGS or len(values) == 0:
        return math.nan
    if setting == "attenuation_db":
        return -estimate_threshold(-np.asarray(values, dtype=np.float64), margins, margin_db)
    return estimate_threshold(values, margins, margin_db)


def field_calibration(currents, fields) -> tuple[float, float, float]:
    """``(mt_per_a, offset_mt, rms_mt)``: the straight line through a current sweep's (current, measured field)
    points (least squares; points without a field reading left out) and the rms of what it leaves."""
    i, b = np.asarray(currents, dtype=np.float64), np.asarray(fields, dtype=np.float64)
    keep = np.isfinite(b)
    if keep.sum() < 2:
        raise UserError("a field calibration needs at least two points with a gaussmeter reading")
    slope, offset = np.polyfit(i[keep], b[keep], 1)
    return float(slope), float(offset), float(np.sqrt(np.mean((b[keep] - (slope * i[keep] + offset)) ** 2)))


def calibration_lines(result: SweepResult) -> str:
    """A current sweep's field calibration in words, and the lines a bench config's coil supply takes."""
    slope, offset, rms = field_calibration([p.value for p in result.points], [p.field_mt for p in result.points])
    return (
        f"field calibration of {result.spec.instrument}: {slope:.5g} mT/A, {offset:+.4g} mT at 0 A "
        f"(rms {rms:.3g} mT over {len(result.points)} points); its table takes\n"
        f"    mt_per_a = {slope:.6g}\n    offset_mt = {offset:.6g}"
    )


def fixed_settings(bench_config, instrument: str, setting: str) -> dict:
    """``{"<instrument>.<setting>": value}`` of every ring and generator setting of the bench but the swept one."""
    held = [*bench_config.ring_controls, *bench_config.generators]
    return {
        f"{name}.{key}": value
        for name in held
        for key, value in bench_config.instruments[name].settings.items()
        if (name, key) != (instrument, setting)
    }
