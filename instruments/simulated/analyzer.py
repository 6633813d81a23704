"""The simulated spectrum analyzers: one front end, three vendors' SCPI dialects.

This module owns the analyzer's *state and command tables*: frequency axis, resolution and video
bandwidth, sweep, reference level and input attenuation, detector, trace modes and averaging,
markers, the spectrum-analysis measurement (``:CONFigure``/``:READ``/``:FETCh``) and the data format.
The physics is :class:`~labpgt.instruments.simulated.ring.RingModel`'s and the detector statistics
are :mod:`~labpgt.instruments.simulated.detector`'s; a sweep asks the model for the trace of the
*current* states of all generators and the ring controller.

Three dialects, one behaviour (all also answer the common commands and the status model of
:mod:`~labpgt.instruments.simulated.scpi`; ``<n>`` marks a numeric suffix, 1 if omitted):

* :class:`EsaDialect` — Agilent ESA E4408B (9 kHz … 26.5 GHz, 4 markers): analog 4-pole resolution
  filters from 1 kHz (Gaussian below), DANL −145 dBm/Hz at 0 dB attenuation, no preamplifier.
* :class:`XSeriesDialect` — Keysight N9030B PXA, option 526 (… 26.5 GHz, 12 markers):
  adds ``*OPT?`` (a quoted list), ``:INSTrument:CATalog?``/``:SELect`` (mode ``SA``),
  ``:CONFigure:CATalog?`` (``"SAN"``), per-trace ``:TRACe<n>:TYPE``, ``:DETector:TRACe<n>``,
  the preamplifier ``[:SENSe]:POWer[:RF]:GAIN[:STATe]`` (DANL −152, with it −164 dBm/Hz),
  bandwidth-shape and sweep-type settings (stored; no effect in the model); Gaussian filters.
* :class:`FsxDialect` — Rohde & Schwarz FSL6 (9 kHz … 6 GHz): ``INPut:ATTenuation``,
  ``INPut:GAIN:STATe`` (preamplifier B22: DANL −142, with it −152 dBm/Hz),
  ``DISPlay[:WINDow]:TRACe<n>:MODE``, ``CALCulate:DELTamarker<n>``, ``TRACe<n>[:DATA]? TRACEk``,
  the R&S detector names (``APEak``, read out as the positive peak …) and little-endian
  (``SWAPped``) binary data; Gaussian filters.

What the settings do to the displayed floor, the filter shapes and the detectors is documented in
docs/ring-physics.md §9 and implemented in :mod:`.detector`.

Common front end (Keysight spelling; the R&S spellings are in :meth:`FsxDialect.declare_dialect`):

====================================================================  ========================================
``[:SENSe]:FREQuency:CENTer|SPAN|STARt|STOP <f>`` / ``?``             span ≥ 10 Hz; keeps the pair consistent
``[:SENSe]:BANDwidth|BWIDth[:RESolution] <f>`` / ``:AUTO``            auto: span/100 on the 1-3-10 sequence
``[:SENSe]:BANDwidth|BWIDth:VIDeo <f>`` / ``:AUTO``                   auto: VBW = RBW. VBW < RBW averages
                                                                      m = RBW/VBW envelope samples (detector)
                                                                      and lengthens the auto sweep time by m
``[:SENSe]:SWEep:POINts|TIME`` / ``:TIME:AUTO``                       auto: ``model.sweep_time_s`` × m
``:DISPlay:WINDow<n>:TRACe<n>:Y[:SCALe]:RLEVel <dBm>`` / ``:OFFSet``  reference level (−170 … +30 dBm) and
                                                                      its offset (added to every amplitude);
                                                                      the IF's noise sits 100 dB under RL
``[:SENSe]:POWer[:RF]:ATTenuation <dB>`` / ``:AUTO``                  (NR1) auto: RL − offset − (−10 dBm
                                                                      mixer), in the instrument's steps; the
                                                                      analyzer's floor rises dB for dB with it
``[:SENSe]:DETector[:FUNCtion] <detector>``                           NORMal|POSitive|SAMPle|NEGative|AVERage:
                                                                      see :mod:`.detector`; ``:AUTO`` (preset,
                                                                      = NORMal; SAMPle while trace 1 averages)
``[:SENSe]:AVERage[:STATe] ON|OFF`` / ``:COUNt <n>`` / ``:TYPE``      trace 1 averaged over n sweeps, LOG
                                                                      (in dB, the preset) or RMS (in power)
``:TRACe<n>:MODE WRITe|MAXHold|MINHold|VIEW|BLANk`` (``AVERage``)     clear/write, holds, frozen, off
``:INITiate[:IMMediate]`` / ``:INITiate:RESTart``                     restart holds and averages; take one
                                                                      sweep, or n when averaging or holding
``:INITiate:CONTinuous ON|OFF``                                       ON: every trace read takes a new sweep
``:CONFigure:SANalyzer`` / ``:CONFigure?``                            the swept-SA measurement, its defaults
``:READ:SANalyzer<n>?`` / ``:FETCh:SANalyzer<n>?`` / ``:MEASure:…``   trace n as (frequency, amplitude) pairs;
                                                                      READ sweeps first, FETCh does not (-230
                                                                      when there is no data)
``:TRACe[:DATA]? TRACE1…6``                                           the trace's amplitudes
``:FORMat[:TRACe][:DATA] ASCii|REAL[,32|64]`` / ``:FORMat:BORDer``    ASCII or an IEEE 488.2 block
``:CALCulate:MARKer<n>:STATe|MODE|TRACe|REFerence``                   markers; MODE POSition|DELTa|OFF
``:CALCulate:MARKer<n>:X <f>`` / ``X?`` / ``Y?``                      X snaps to the nearest trace point; a
                                                                      delta marker reads X and Y relative to
                                                                      its reference marker
``:CALCulate:MARKer<n>:MAXimum[:PEAK|:NEXT|:LEFT|:RIGHt]``            peak search, next lower peak, nearest
                                                                      peak left/right; a peak is a local
                                                                      maximum of prominence ≥ the excursion
``:CALCulate:MARKer:PEAK:EXCursion|THReshold`` / ``:MARKer:AOFF``     6 dB, −90 dBm; all markers off
``:CALCulate:MARKer<n>[:SET]:CENTer``                                 center frequency := marker frequency
====================================================================  ========================================

Time: each sweep advances the bench's virtual clock by the settling the instruments needed since
the last sweep (``SimulatedBench.settling_s``) plus the sweep time ``:SWEep:TIME?`` reports; a
``realtime`` bench answers the sweeping message no sooner than that in the wall clock, any other
answers at once.

Simplifications: one detector serves every trace (the simulation renders one view per sweep);
the sweep is instantaneous unless the bench is realtime, so ``*OPC?`` answers at once and each sweep pulses
``:STATus:OPERation`` bits 3 (sweeping) and 4 (measuring) (nothing sets ``:STATus:QUEStionable``);
markers read the latest data of their trace, sweeping first only if it has none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .detector import Display
from .scpi import Boolean, Choice, CommandTable, Numeric, ScpiError, add_setting, format_number, short_form

TRACES = 6
SWEEPING, MEASURING = 8, 16  # :STATus:OPERation condition bits (SCPI-99 vol. 1 §9.4)
MAX_MIXER_LEVEL_DBM = -10.0  # auto attenuation keeps the reference level this far above the mixer
IF_NOISE_BELOW_REFERENCE_DB = 100.0  # the IF's own noise this far under the reference level (docs/ring-physics.md §9)
TRACE_MODES = ("WRITe", "MAXHold", "MINHold", "AVERage", "VIEW", "BLANk")
NO_PEAK_FOUND = 202  # the Keysight analyzers' device-specific "No peak found"
MAX_BATCH_POINTS = 1 << 21  # trace points rendered per model call (averaging many long sweeps)


def auto_resolution_bandwidth(span_hz: float, minimum: float, maximum: float) -> float:
    """span/100 rounded down to the 1-3-10 sequence, within the analyzer's RBW range."""
    target = max(span_hz / 100.0, minimum)
    decade = 10.0 ** math.floor(math.log10(target))
    rbw = 3 * decade if target >= 3 * decade else decade
    return float(min(max(rbw, minimum), maximum))


def ieee_block(payload: bytes) -> bytes:
    """IEEE 488.2 definite-length arbitrary block: ``#<n><len><payload>``."""
    length = str(len(payload))
    return b"#" + str(len(length)).encode() + length.encode() + payload


@dataclass
class Trace:
    """One of the analyzer's traces: its mode, its data (dBm) and how many sweeps it holds."""

    mode: str = "BLANk"
    data: np.ndarray | None = None
    sweeps: int = 0

    def restart(self) -> None:
        if self.mode in ("WRITe", "MAXHold", "MINHold", "AVERage"):
            self.data, self.sweeps = None, 0

    def accumulate(self, sweeps_dbm: np.ndarray, count: int, power_average: bool) -> None:
        """Fold new sweeps (S, P) in as the mode says; averages run over ``count`` sweeps, then decay."""
        if self.mode in ("VIEW", "BLANk"):
            return
        for row in sweeps_dbm:
            self.sweeps += 1
            if self.data is None or self.mode == "WRITe":
                self.data = row.copy()
            elif self.mode == "MAXHold":
                self.data = np.maximum(self.data, row)
            elif self.mode == "MINHold":
                self.data = np.minimum(self.data, row)
            else:
                weight = 1.0 / min(self.sweeps, count)
                if power_average:
                    mw = 10 ** (self.data / 10) + (10 ** (row / 10) - 10 ** (self.data / 10)) * weight
                    self.data = 10 * np.log10(mw)
                else:
                    self.data = self.data + (row - self.data) * weight


@dataclass
class Marker:
    """A marker: off, normal (POSition) or delta to a reference marker; it sits on a trace point."""

    mode: str = "OFF"
    trace: int = 1
    index: int = 0
    reference: int = 2


class EsaDialect:
    """Agilent ESA E4408B, the base dialect (see the module docstring).

    A mixin over :class:`~labpgt.instruments.simulated.devices.BenchInstrument`, combined with it in
    :mod:`.devices` (``SimulatedSpectrumAnalyzer`` and the others), so this module needs nothing of
    the bench but ``self.bench``.
    """

    identity = "Agilent Technologies,E4408B,SIM000001,A.14.01"
    options = "1DN,1DR,1D5,A4H,B72"
    MIN_FREQUENCY_HZ = 9e3
    MAX_FREQUENCY_HZ = 26.5e9
    MIN_SPAN_HZ = 10.0
    MIN_RBW_HZ = 10.0
    MAX_RBW_HZ = 5e6
    MIN_VBW_HZ = 1.0
    MAX_VBW_HZ = 3e6
    MIN_POINTS = 101
    MAX_POINTS = 8192
    DEFAULT_POINTS = 401
    MAX_ATTENUATION_DB = 65.0
    ATTENUATION_STEP_DB = 5.0
    MARKERS = 4
    DANL_DBM_PER_HZ = -145.0  # at 0 dB input attenuation, 3-6 GHz (docs/ring-physics.md §9)
    PREAMP_DANL_DBM_PER_HZ: float | None = None  # the E4408B (ESA-L) has no preamplifier
    ANALOG_RBW_MIN_HZ = 1e3  # RBW from which the filters are the analog 4-pole ones
    DETECTOR_NAMES = {
        "NORMal": "NORMal",
        "POSitive": "POSitive",
        "SAMPle": "SAMPle",
        "NEGative": "NEGative",
        "AVERage": "AVERage",
        "RMS": "AVERage",
    }
    PRESET_DETECTOR = "NORMal"
    PRESET_BYTE_ORDER = "NORMal"
    PRESET_AVERAGE_COUNT = 100

    def __init__(self, bench, name: str = "analyzer"):
        self.traces = [Trace() for _ in range(TRACES)]
        self.markers = [Marker() for _ in range(self.MARKERS)]
        super().__init__(bench, name)

    def first_reference(self, number: int) -> int:
        """A marker's preset reference marker: the next one (the last refers to the first)."""
        return number % self.MARKERS + 1

    # -- state -------------------------------------------------------------------------------
    def reset(self) -> None:
        center, span = self.default_center_and_span()
        self.start_hz = center - span / 2
        self.stop_hz = center + span / 2
        self.center_step_hz = span / 10
        self.rbw_auto = True
        self.manual_rbw_hz = auto_resolution_bandwidth(span, self.MIN_RBW_HZ, self.MAX_RBW_HZ)
        self.points = int(getattr(self.bench.model.params, "default_points", self.DEFAULT_POINTS))
        self.sweep_time_auto = True
        self.manual_sweep_time_s = 0.0
        self.continuous = True
        self.data_format = "ASCii"
        self.data_bits = 8
        self.byte_order = self.PRESET_BYTE_ORDER
        self.reference_level_dbm = 0.0
        self.reference_offset_db = 0.0
        self.dB_per_division = 10.0
        self.attenuation_auto = True
        self.manual_attenuation_db = 10.0
        self.preamp_on = False
        self.preamp_band = "LOW"
        self.bandwidth_shape = "DB3"
        self.sweep_type = "SWEep"
        self.sweep_type_auto = True
        self.measurement = "SAN"
        self.mode = "SA"
        self.preset_measurement()

    def preset_measurement(self) -> None:
        """The swept-SA measurement's own defaults (``:CONFigure:SANalyzer``, a Meas Preset)."""
        self.rbw_auto = True
        self.vbw_auto = True
        self.manual_vbw_hz = self.rbw_hz
        self.sweep_time_auto = True
        self.detector = self.PRESET_DETECTOR
        self.detector_auto = True
        self.average_count = self.PRESET_AVERAGE_COUNT
        self.average_power = False  # LOG (video) averaging
        for number, trace in enumerate(self.traces, start=1):
            trace.mode = "WRITe" if number == 1 else "BLANk"
            trace.data, trace.sweeps = None, 0
        for number, marker in enumerate(self.markers, start=1):
            marker.mode, marker.trace, marker.reference = "OFF", 1, self.first_reference(number)
        self.peak_excursion_db = 6.0
        self.peak_threshold_dbm = -90.0
        self.have_data = False

    def default_center_and_span(self) -> tuple[float, float]:
        """The ring model's preferred view if it declares one, else 2–4 GHz."""
        params = self.bench.model.params
        center = getattr(params, "default_center_hz", None)
        span = getattr(params, "default_span_hz", None)
        if center is None or span is None:
            return 3e9, 2e9
        return float(center), float(span)

    @property
    def center_hz(self) -> float:
        return (self.start_hz + self.stop_hz) / 2

    @property
    def span_hz(self) -> float:
        return self.stop_hz - self.start_hz

    @property
    def rbw_hz(self) -> float:
        if self.rbw_auto:
            return auto_resolution_bandwidth(self.span_hz, self.MIN_RBW_HZ, self.MAX_RBW_HZ)
        return self.manual_rbw_hz

    @property
    def vbw_hz(self) -> float:
        return self.rbw_hz if self.vbw_auto else self.manual_vbw_hz

    @property
    def video_averages(self) -> float:
        return max(1.0, self.rbw_hz / self.vbw_hz)

    @property
    def sweep_time_s(self) -> float:
        if self.sweep_time_auto:
            return float(self.bench.model.sweep_time_s(self.span_hz, self.rbw_hz, self.points)) * self.video_averages
        return self.manual_sweep_time_s

    @property
    def attenuation_db(self) -> float:
        if not self.attenuation_auto:
            return self.manual_attenuation_db
        wanted = self.reference_level_dbm - self.reference_offset_db - MAX_MIXER_LEVEL_DBM
        stepped = math.ceil(wanted / self.ATTENUATION_STEP_DB - 1e-9) * self.ATTENUATION_STEP_DB
        return float(min(max(stepped, 0.0), self.MAX_ATTENUATION_DB))

    @property
    def samples_per_point(self) -> int:
        """Independent video samples in one display bucket: (sweep time per bucket) × min(RBW, VBW)."""
        per_bucket = self.sweep_time_s / max(self.points - 1, 1)
        return int(min(max(per_bucket * min(self.rbw_hz, self.vbw_hz), 1.0), 1e4))

    @property
    def floor_dbm_per_hz(self) -> float:
        """The analyzer's displayed average noise level referred to its input: its DANL at 0 dB input
        attenuation (with the preamplifier, if it has one and it is on), raised dB for dB by the attenuation."""
        danl = (
            self.PREAMP_DANL_DBM_PER_HZ
            if self.preamp_on and self.PREAMP_DANL_DBM_PER_HZ is not None
            else self.DANL_DBM_PER_HZ
        )
        return danl + self.attenuation_db

    def rbw_filter(self) -> str:
        """The resolution filter's shape at the present RBW (:mod:`.detector`): the ESA's analog 4-pole
        filters down to 1 kHz, digital (Gaussian) below."""
        return "four-pole" if self.rbw_hz >= self.ANALOG_RBW_MIN_HZ else "gaussian"

    def detector_in_use(self) -> str:
        """The detector a sweep uses: the chosen one; with the detector on auto while trace 1 averages, the
        sample detector (as the Keysight analyzers couple it), else the preset's."""
        if self.detector_auto and self.traces[0].mode == "AVERage":
            return "SAMPle"
        return self.DETECTOR_NAMES[self.detector]

    def display(self) -> Display:
        """The detector, video filter, resolution filter and noise floor the next sweep is rendered with."""
        return Display(
            detector=self.detector_in_use(),
            video_averages=self.video_averages,
            samples_per_point=self.samples_per_point,
            floor_dbm_per_hz=self.floor_dbm_per_hz,
            if_noise_dbm=self.reference_level_dbm - self.reference_offset_db - IF_NOISE_BELOW_REFERENCE_DB,
            rbw_filter=self.rbw_filter(),
        )

    def frequencies_hz(self) -> np.ndarray:
        return np.linspace(self.start_hz, self.stop_hz, self.points)

    # -- frequency setters keep the other pair consistent, as a real analyzer does ------------
    def set_center(self, value: float) -> None:
        half = self.span_hz / 2
        half = min(half, value, self.MAX_FREQUENCY_HZ - value)
        half = max(half, self.MIN_SPAN_HZ / 2)
        self.start_hz, self.stop_hz = value - half, value + half

    def set_span(self, value: float) -> None:
        center = self.center_hz
        half = min(value / 2, center, self.MAX_FREQUENCY_HZ - center)
        half = max(half, self.MIN_SPAN_HZ / 2)
        self.start_hz, self.stop_hz = center - half, center + half

    def set_start(self, value: float) -> None:
        self.start_hz = value
        if self.stop_hz < value + self.MIN_SPAN_HZ:
            self.stop_hz = min(value + self.MIN_SPAN_HZ, self.MAX_FREQUENCY_HZ)
            self.start_hz = self.stop_hz - self.MIN_SPAN_HZ

    def set_stop(self, value: float) -> None:
        self.stop_hz = value
        if self.start_hz > value - self.MIN_SPAN_HZ:
            self.start_hz = max(value - self.MIN_SPAN_HZ, 0.0)
            self.stop_hz = self.start_hz + self.MIN_SPAN_HZ

    def set_rbw(self, value: float) -> None:
        self.manual_rbw_hz = value
        self.rbw_auto = False

    def set_vbw(self, value: float) -> None:
        self.manual_vbw_hz = value
        self.vbw_auto = False

    def set_sweep_time(self, value: float) -> None:
        self.manual_sweep_time_s = value
        self.sweep_time_auto = False

    def set_attenuation(self, value: float) -> None:
        self.manual_attenuation_db = float(round(value / self.ATTENUATION_STEP_DB) * self.ATTENUATION_STEP_DB)
        self.attenuation_auto = False

    def set_detector(self, name: str) -> None:
        self.detector = name
        self.detector_auto = False

    def set_detector_auto(self, on: bool) -> None:
        self.detector_auto = on
        if on:
            self.detector = self.PRESET_DETECTOR

    def set_averaging(self, on: bool) -> None:
        self.traces[0].mode = "AVERage" if on else "WRITe"
        self.traces[0].restart()

    def set_average_type(self, kind: str) -> None:
        self.average_power = kind in ("RMS", "SCALar", "POWer", "LINear")

    def set_trace_mode(self, number: int, mode: str) -> None:
        trace = self._trace(number)
        trace.mode = mode
        trace.restart()

    def set_format(self, kind: str, bits: int | None) -> None:
        if kind == "ASCii":
            self.data_format, self.data_bits = kind, 8
            return
        if kind != "REAL" or (bits or 32) not in (32, 64):
            raise ScpiError(-224, f"{kind},{bits}")
        self.data_format, self.data_bits = kind, bits or 32

    def format_setting(self) -> str:
        return "ASC,8" if self.data_format == "ASCii" else f"REAL,{self.data_bits}"

    def _trace(self, number: int) -> Trace:
        if not 1 <= number <= TRACES:
            raise ScpiError(-114, f"trace {number}")
        return self.traces[number - 1]

    # -- sweeping -----------------------------------------------------------------------------
    def sweeps_to_take(self) -> int:
        """One, or the average/hold count when a trace averages or holds (a single sweep takes them all)."""
        accumulating = any(t.mode in ("AVERage", "MAXHold", "MINHold") for t in self.traces)
        return self.average_count if accumulating else 1

    def sweep(self, count: int = 1) -> np.ndarray:
        """Take ``count`` sweeps (batches of the model) and fold them into the traces; the last sweep."""
        chunk = max(1, MAX_BATCH_POINTS // self.points)  # bounded memory, however many sweeps
        last = None
        for start in range(0, count, chunk):
            sweeps = self._render(min(chunk, count - start))
            for trace in self.traces:
                trace.accumulate(sweeps, self.average_count, self.average_power)
            last = sweeps[-1]
        self.operation.pulse(SWEEPING | MEASURING)
        self.have_data = True
        return last

    def _render(self, count: int) -> np.ndarray:
        """``count`` sweeps (count, P) in dBm from the current states of all generators and the ring,
        after the bench's clock has advanced by the settling they needed and the sweeps' time."""
        bench = self.bench
        generators = bench.generators
        duration = bench.sweep_duration_s(self, count, self.sweep_time_s)
        lab = bench.model.lab
        lab.advance(duration)
        bench.owed_wall_s += duration
        gain_db, field_mt, amplifier_on = bench.ring_inputs()
        tone_freq = np.array([[g.rf_frequency_hz for g in generators]] * count, dtype=float)
        tone_power = np.array([[g.rf_power_dbm for g in generators]] * count, dtype=float)
        tone_on = np.array([[g.output_on for g in generators]] * count, dtype=bool)
        traces = bench.model.spectra(
            tone_freq,
            tone_power,
            tone_on,
            np.full(count, gain_db, dtype=float),
            np.full(count, field_mt, dtype=float),
            np.full(count, amplifier_on, dtype=bool),
            self.frequencies_hz(),
            self.rbw_hz,
            self.display(),
            temperature_c=lab.film_temperature_c,
        )
        return np.asarray(traces, dtype=float) + self.reference_offset_db

    def initiate(self) -> None:
        """``:INIT``: restart averages and holds, then take the sweeps a single sweep takes."""
        for trace in self.traces:
            trace.restart()
        self.sweep(self.sweeps_to_take())

    def trace_data(self, number: int = 1) -> np.ndarray:
        """Trace ``number``'s data; with continuous sweep on, after one new sweep."""
        trace = self._trace(number)
        if self.continuous or (trace.data is None and trace.mode not in ("VIEW", "BLANk")):
            self.sweep()
        if trace.data is None:
            raise ScpiError(-230, f"trace {number} holds no data")
        return trace.data

    @property
    def trace_dbm(self) -> np.ndarray | None:
        """Trace 1's latest data (None before the first sweep)."""
        return self.traces[0].data

    def encode(self, values: np.ndarray) -> bytes:
        if self.data_format == "ASCii":
            return ",".join(["%.3f" % value for value in values.tolist()]).encode()
        dtype = (">" if self.byte_order == "NORMal" else "<") + ("f4" if self.data_bits == 32 else "f8")
        return ieee_block(np.asarray(values).astype(dtype).tobytes())

    def read_trace(self, trace_name: str = "TRACE1") -> bytes:
        """``:TRACe:DATA? TRACEn``: trace n's amplitudes in the current format."""
        return self.encode(self.trace_data(int(trace_name[-1])))

    def measurement_data(self, number: int) -> bytes:
        """Trace ``number`` as interleaved (frequency, amplitude) pairs: the SAN measurement result."""
        trace = self._trace(number)
        if trace.data is None:
            raise ScpiError(-230, f"no measurement data for trace {number}")
        pairs = np.column_stack([self.frequencies_hz(), trace.data]).ravel()
        return self.encode(pairs)

    def read_measurement(self, number: int) -> bytes:
        """``:READ:SANalyzer<n>?``: a new measurement (``:INIT``), then its data."""
        self.initiate()
        return self.measurement_data(number)

    def fetch_measurement(self, number: int) -> bytes:
        if not self.have_data:
            raise ScpiError(-230, "no measurement since :CONFigure")
        return self.measurement_data(number)

    def configure(self) -> None:
        """``:CONFigure:SANalyzer``: select the swept-SA measurement with its own defaults."""
        self.measurement = "SAN"
        self.preset_measurement()

    def measure(self, number: int) -> bytes:
        """``:MEASure:SANalyzer<n>?``: ``:CONFigure``, then ``:READ``."""
        self.configure()
        return self.read_measurement(number)

    def autotune(self) -> None:
        """``:FREQuency:TUNE:IMMediate``: center on the strongest signal of the current view."""
        self.set_center(float(self.frequencies_hz()[int(np.argmax(self.trace_data(1)))]))

    # -- markers ------------------------------------------------------------------------------
    def _marker(self, number: int) -> Marker:
        if not 1 <= number <= self.MARKERS:
            raise ScpiError(-114, f"marker {number}")
        return self.markers[number - 1]

    def _marker_trace(self, marker: Marker) -> np.ndarray:
        trace = self._trace(marker.trace)
        if trace.data is None:
            self.trace_data(marker.trace)
        return trace.data

    def _active(self, number: int) -> Marker:
        marker = self._marker(number)
        if marker.mode == "OFF":
            marker.mode = "POSition"
        return marker

    def set_marker_mode(self, number: int, mode: str) -> None:
        marker = self._marker(number)
        if mode == "DELTa":  # the reference is placed where the marker is
            reference = self._marker(marker.reference)
            reference.mode, reference.trace, reference.index = "POSition", marker.trace, marker.index
        marker.mode = mode

    def set_marker_state(self, number: int, on: bool) -> None:
        marker = self._marker(number)
        marker.mode = ("POSition" if marker.mode == "OFF" else marker.mode) if on else "OFF"

    def set_marker_x(self, number: int, frequency_hz: float) -> None:
        marker = self._active(number)
        reference = self._marker(marker.reference) if marker.mode == "DELTa" else None
        target = frequency_hz + (self.frequencies_hz()[reference.index] if reference else 0.0)
        marker.index = self._nearest_point(target)

    def _nearest_point(self, frequency_hz: float) -> int:
        step = self.span_hz / max(self.points - 1, 1)
        return int(min(max(round((frequency_hz - self.start_hz) / step), 0), self.points - 1))

    def marker_x(self, number: int) -> str:
        marker = self._marker(number)
        if marker.mode == "OFF":
            raise ScpiError(-221, f"marker {number} is off")
        x = self.frequencies_hz()[marker.index]
        if marker.mode == "DELTa":
            x -= self.frequencies_hz()[self._marker(marker.reference).index]
        return format_number(x)

    def marker_y(self, number: int) -> str:
        marker = self._marker(number)
        if marker.mode == "OFF":
            raise ScpiError(-221, f"marker {number} is off")
        y = self._marker_trace(marker)[marker.index]
        if marker.mode == "DELTa":
            reference = self._marker(marker.reference)
            y -= self._marker_trace(reference)[reference.index]
        return format_number(y)

    def _peaks(self, marker: Marker) -> tuple[np.ndarray, np.ndarray]:
        from scipy.signal import find_peaks  # here: scipy.signal costs 0.6 s to import, and few runs search peaks

        data = self._marker_trace(marker)
        peaks, _ = find_peaks(data, prominence=self.peak_excursion_db)
        peaks = peaks[data[peaks] >= self.peak_threshold_dbm]
        return peaks, data

    def peak_search(self, number: int) -> None:
        """``:MAXimum``: the marker to the highest point of its trace (a fresh sweep when sweeping)."""
        marker = self._active(number)
        if self.continuous:
            self.sweep()
        marker.index = int(np.argmax(self._marker_trace(marker)))

    def next_peak(self, number: int, direction: str = "NEXT") -> None:
        """``:MAXimum:NEXT|LEFT|RIGHt``: the next lower peak, or the nearest peak to the left/right."""
        marker = self._active(number)
        peaks, data = self._peaks(marker)
        if direction == "NEXT":
            lower = peaks[(data[peaks] < data[marker.index]) & (peaks != marker.index)]
            chosen = lower[np.argmax(data[lower])] if lower.size else None
        elif direction == "LEFT":
            left = peaks[peaks < marker.index]
            chosen = left[-1] if left.size else None
        else:
            right = peaks[peaks > marker.index]
            chosen = right[0] if right.size else None
        if chosen is None:
            raise ScpiError(NO_PEAK_FOUND, f"marker {number}: no peak {direction.lower()}")
        marker.index = int(chosen)

    def set_marker_reference(self, number: int, reference: int) -> None:
        self._marker(reference)
        self._marker(number).reference = reference

    def set_marker_trace(self, number: int, trace: int) -> None:
        self._trace(trace)
        self._active(number).trace = trace

    def markers_off(self) -> None:
        for marker in self.markers:
            marker.mode = "OFF"

    def marker_to_center(self, number: int) -> None:
        marker = self._marker(number)
        if marker.mode == "OFF":
            raise ScpiError(-221, f"marker {number} is off")
        self.set_center(float(self.frequencies_hz()[marker.index]))

    # -- command table ------------------------------------------------------------------------
    def declare_commands(self, table: CommandTable) -> None:
        self.declare_front_end(table)
        self.declare_markers(table)
        self.declare_dialect(table)

    def declare_front_end(self, table: CommandTable) -> None:
        hz = lambda: Numeric("HZ", 0.0, self.MAX_FREQUENCY_HZ)  # noqa: E731
        number = format_number
        table.add("[:SENSe]:FREQuency:CENTer", self.set_center, lambda: number(self.center_hz), (hz(),))
        table.add("[:SENSe]:FREQuency:SPAN", self.set_span, lambda: number(self.span_hz), (hz(),))
        table.add("[:SENSe]:FREQuency:STARt", self.set_start, lambda: number(self.start_hz), (hz(),))
        table.add("[:SENSe]:FREQuency:STOP", self.set_stop, lambda: number(self.stop_hz), (hz(),))
        add_setting(table, self, "[:SENSe]:FREQuency:CENTer:STEP[:INCRement]", "center_step_hz", hz())
        table.add("[:SENSe]:FREQuency:TUNE:IMMediate", setter=self.autotune)
        table.add(
            "[:SENSe]:BANDwidth|BWIDth[:RESolution]",
            self.set_rbw,
            lambda: number(self.rbw_hz),
            (Numeric("HZ", self.MIN_RBW_HZ, self.MAX_RBW_HZ),),
        )
        add_setting(table, self, "[:SENSe]:BANDwidth|BWIDth[:RESolution]:AUTO", "rbw_auto", Boolean())
        table.add(
            "[:SENSe]:BANDwidth|BWIDth:VIDeo",
            self.set_vbw,
            lambda: number(self.vbw_hz),
            (Numeric("HZ", self.MIN_VBW_HZ, self.MAX_VBW_HZ),),
        )
        add_setting(table, self, "[:SENSe]:BANDwidth|BWIDth:VIDeo:AUTO", "vbw_auto", Boolean())
        add_setting(
            table,
            self,
            "[:SENSe]:SWEep:POINts",
            "points",
            Numeric("", self.MIN_POINTS, self.MAX_POINTS, self.DEFAULT_POINTS, integer=True),
        )
        table.add(
            "[:SENSe]:SWEep:TIME", self.set_sweep_time, lambda: number(self.sweep_time_s), (Numeric("S", 1e-6, 2000.0),)
        )
        add_setting(table, self, "[:SENSe]:SWEep:TIME:AUTO", "sweep_time_auto", Boolean())
        add_setting(table, self, "[:SENSe]:AVERage:COUNt", "average_count", Numeric("", 1, 10000, integer=True))
        table.add(
            "[:SENSe]:AVERage:TYPE",
            self.set_average_type,
            lambda: "RMS" if self.average_power else "LOG",
            (Choice(["LOG", "RMS", "SCALar", "POWer"]),),
        )
        table.add("[:SENSe]:AVERage:CLEar", setter=lambda: self.traces[0].restart())
        add_setting(table, self, ":INITiate:CONTinuous", "continuous", Boolean())
        table.add(":INITiate[:IMMediate]", setter=self.initiate)
        table.add(":INITiate:RESTart", setter=self.initiate)
        table.add(":ABORt", setter=lambda: None)
        table.add(
            ":TRACe<n>[:DATA]?",
            query=lambda window, name: self.read_trace(name),
            query_parameters=(Choice([f"TRACE{k}" for k in range(1, TRACES + 1)], optional=True, default="TRACE1"),),
        )
        table.add(
            ":FORMat[:TRACe][:DATA]",
            self.set_format,
            self.format_setting,
            (Choice(["ASCii", "REAL"]), Numeric("", 1, 64, integer=True, optional=True)),
        )
        add_setting(table, self, ":FORMat:BORDer", "byte_order", Choice(["NORMal", "SWAPped"]))
        level = Numeric("DBM", -170.0, 30.0)
        table.add(
            ":DISPlay[:WINDow<n>]:TRACe<n>:Y[:SCALe]:RLEVel",
            lambda w, t, value: setattr(self, "reference_level_dbm", value),
            lambda w, t: number(self.reference_level_dbm),
            (level,),
        )
        table.add(
            ":DISPlay[:WINDow<n>]:TRACe<n>:Y[:SCALe]:RLEVel:OFFSet",
            lambda w, t, value: setattr(self, "reference_offset_db", value),
            lambda w, t: number(self.reference_offset_db),
            (Numeric("DB", -300.0, 300.0),),
        )
        table.add(
            ":DISPlay[:WINDow<n>]:TRACe<n>:Y[:SCALe]:PDIVision",
            lambda w, t, value: setattr(self, "dB_per_division", value),
            lambda w, t: number(self.dB_per_division),
            (Numeric("DB", 0.1, 20.0),),
        )
        self.declare_measurement(table)

    def declare_measurement(self, table: CommandTable) -> None:
        table.add(":CONFigure:SANalyzer", setter=self.configure)
        table.add(":CONFigure:SANalyzer:NDEFault", setter=lambda: setattr(self, "measurement", "SAN"))
        table.add(":CONFigure?", query=lambda: self.measurement)
        table.add(":READ:SANalyzer<1-6>?", query=self.read_measurement)
        table.add(":FETCh:SANalyzer<1-6>?", query=self.fetch_measurement)
        table.add(":MEASure:SANalyzer<1-6>?", query=self.measure)

    def declare_markers(self, table: CommandTable) -> None:
        markers = f"<1-{self.MARKERS}>"
        table.add(
            f":CALCulate:MARKer{markers}:STATe",
            self.set_marker_state,
            lambda n: "0" if self._marker(n).mode == "OFF" else "1",
            (Boolean(),),
        )
        table.add(
            f":CALCulate:MARKer{markers}:MODE",
            self.set_marker_mode,
            lambda n: short_form(self._marker(n).mode),
            (Choice(["POSition", "DELTa", "OFF"]),),
        )
        table.add(
            f":CALCulate:MARKer{markers}:REFerence",
            self.set_marker_reference,
            lambda n: str(self._marker(n).reference),
            (Numeric("", 1, self.MARKERS, integer=True),),
        )
        table.add(
            f":CALCulate:MARKer{markers}:X",
            self.set_marker_x,
            self.marker_x,
            (Numeric("HZ", -self.MAX_FREQUENCY_HZ, self.MAX_FREQUENCY_HZ),),
        )
        self.declare_marker_search(table, f":CALCulate:MARKer{markers}", self.peak_search)
        table.add(f":CALCulate:MARKer{markers}[:SET]:CENTer", setter=self.marker_to_center)
        table.add(":CALCulate:MARKer:AOFF", setter=self.markers_off)
        add_setting(table, self, ":CALCulate:MARKer:PEAK:EXCursion", "peak_excursion_db", Numeric("DB", 0.0, 100.0))
        add_setting(table, self, ":CALCulate:MARKer:PEAK:THReshold", "peak_threshold_dbm", Numeric("DBM", -200.0, 30.0))

    def declare_marker_search(self, table: CommandTable, header: str, peak_search) -> None:
        """Y, trace, peak search and next peak under ``header`` (a marker or an R&S delta marker)."""
        table.add(f"{header}:Y?", query=self.marker_y)
        table.add(
            f"{header}:TRACe",
            self.set_marker_trace,
            lambda n: str(self._marker(n).trace),
            (Numeric("", 1, TRACES, integer=True),),
        )
        table.add(f"{header}:MAXimum[:PEAK]", setter=peak_search)
        for direction in ("NEXT", "LEFT", "RIGHt"):
            table.add(f"{header}:MAXimum:{direction}", setter=lambda n, d=direction.upper(): self.next_peak(n, d))  # noqa: B008 - bound per direction

    def declare_dialect(self, table: CommandTable) -> None:
        """The ESA's own spellings: attenuation, detector, trace modes."""
        self.declare_keysight_front_end(table)
        detectors = Choice(["NORMal", "POSitive", "SAMPle", "NEGative", "AVERage", "RMS"])
        table.add("[:SENSe]:DETector[:FUNCtion]", self.set_detector, lambda: short_form(self.detector), (detectors,))
        table.add(
            "[:SENSe]:DETector[:FUNCtion]:AUTO",
            self.set_detector_auto,
            lambda: "1" if self.detector_auto else "0",
            (Boolean(),),
        )
        table.add(
            ":TRACe<1-3>:MODE", self.set_trace_mode, lambda n: short_form(self._trace(n).mode), (Choice(TRACE_MODES),)
        )

    def declare_keysight_front_end(self, table: CommandTable) -> None:
        """Attenuation and averaging as the Keysight analyzers spell them."""
        table.add(
            "[:SENSe]:AVERage[:STATe]",
            self.set_averaging,
            lambda: "1" if self.traces[0].mode == "AVERage" else "0",
            (Boolean(),),
        )
        table.add(
            "[:SENSe]:POWer[:RF]:ATTenuation",
            self.set_attenuation,
            lambda: "%d" % round(self.attenuation_db),
            (Numeric("DB", 0.0, self.MAX_ATTENUATION_DB),),
        )
        add_setting(table, self, "[:SENSe]:POWer[:RF]:ATTenuation:AUTO", "attenuation_auto", Boolean())


class XSeriesDialect(EsaDialect):
    """Keysight N9030B PXA signal analyzer, option 526, in its Spectrum Analyzer mode (swept SA)."""

    identity = "Keysight Technologies,N9030B,SIM0000001,A.33.03"
    options = '"526,B40,EA3,P26,PFR"'
    MAX_FREQUENCY_HZ = 26.5e9
    MIN_RBW_HZ = 1.0
    MAX_RBW_HZ = 8e6
    MAX_VBW_HZ = 50e6
    MIN_POINTS = 1
    MAX_POINTS = 40001
    MAX_ATTENUATION_DB = 70.0
    ATTENUATION_STEP_DB = 2.0
    MARKERS = 12
    DANL_DBM_PER_HZ = -152.0  # preamplifier off, 0 dB attenuation (docs/ring-physics.md §9)
    PREAMP_DANL_DBM_PER_HZ = -164.0  # preamplifier on (option P26)
    ANALOG_RBW_MIN_HZ = float("inf")  # all-digital IF: Gaussian filters at every RBW

    def declare_dialect(self, table: CommandTable) -> None:
        self.declare_keysight_front_end(table)
        detectors = Choice(["NORMal", "POSitive", "SAMPle", "NEGative", "AVERage"])
        for pattern in ("[:SENSe]:DETector:TRACe<1-6>", "[:SENSe]:DETector[:FUNCtion]"):
            table.add(
                pattern,
                lambda *args: self.set_detector(args[-1]),
                lambda *args: short_form(self.detector),
                (detectors,),
            )
        table.add(
            "[:SENSe]:DETector:TRACe<1-6>:AUTO",
            lambda n, on: self.set_detector_auto(on),
            lambda n: "1" if self.detector_auto else "0",
            (Boolean(),),
        )
        table.add(
            ":TRACe<1-6>:TYPE",
            self.set_trace_mode,
            lambda n: self._x_series_type(self._trace(n).mode),
            (Choice(["WRITe", "AVERage", "MAXHold", "MINHold"]),),
        )
        table.add(
            ":TRACe<1-6>:UPDate[:STATe]",
            lambda n, on: self._set_update(n, on),
            lambda n: "0" if self._trace(n).mode in ("VIEW", "BLANk") else "1",
            (Boolean(),),
        )
        table.add(
            ":TRACe<1-6>:DISPlay[:STATe]",
            lambda n, on: self._set_update(n, on),
            lambda n: "0" if self._trace(n).mode == "BLANk" else "1",
            (Boolean(),),
        )
        table.add(":INSTrument:CATalog?", query=lambda: '"SA 1"')
        table.add(
            ":INSTrument[:SELect]", lambda mode: setattr(self, "mode", mode), lambda: self.mode, (Choice(["SA"]),)
        )
        table.add(":INSTrument:NSELect", lambda number: None, lambda: "1", (Numeric("", 1, 1, integer=True),))
        table.add(":CONFigure:CATalog?", query=lambda: '"SAN"')
        add_setting(table, self, "[:SENSe]:POWer[:RF]:GAIN[:STATe]", "preamp_on", Boolean())
        add_setting(table, self, "[:SENSe]:POWer[:RF]:GAIN:BAND", "preamp_band", Choice(["LOW", "FULL"]))
        add_setting(
            table,
            self,
            "[:SENSe]:BANDwidth|BWIDth[:RESolution]:TYPE|SHAPe",
            "bandwidth_shape",
            Choice(["DB3", "DB6", "IMPulse", "NOISe"]),
        )
        add_setting(table, self, "[:SENSe]:SWEep:TYPE", "sweep_type", Choice(["FFT", "SWEep"]))
        add_setting(table, self, "[:SENSe]:SWEep:TYPE:AUTO", "sweep_type_auto", Boolean())

    @staticmethod
    def _x_series_type(mode: str) -> str:
        return short_form("WRITe" if mode in ("VIEW", "BLANk") else mode)

    def _set_update(self, number: int, on: bool) -> None:
        trace = self._trace(number)
        if on and trace.mode in ("VIEW", "BLANk"):
            trace.mode = "WRITe"
        elif not on and trace.mode not in ("VIEW", "BLANk"):
            trace.mode = "VIEW"


class FsxDialect(EsaDialect):
    """Rohde & Schwarz FSL6 spectrum analyzer (9 kHz … 6 GHz), the R&S FSx dialect."""

    identity = "Rohde&Schwarz,FSL-6,1300.2502K06/SIM000001,2.30"
    options = "B4,B5,B22"
    MAX_FREQUENCY_HZ = 6e9
    MAX_RBW_HZ = 10e6
    MAX_VBW_HZ = 10e6
    MAX_POINTS = 32001
    MAX_ATTENUATION_DB = 45.0
    DANL_DBM_PER_HZ = -142.0  # preamplifier off, 0 dB attenuation (docs/ring-physics.md §9)
    PREAMP_DANL_DBM_PER_HZ = -152.0  # preamplifier FSL-B22 on
    ANALOG_RBW_MIN_HZ = float("inf")  # Gaussian filters
    DETECTOR_NAMES = {**EsaDialect.DETECTOR_NAMES, "APEak": "POSitive"}
    PRESET_DETECTOR = "APEak"
    PRESET_BYTE_ORDER = "SWAPped"
    PRESET_AVERAGE_COUNT = 10

    def set_delta_state(self, number: int, on: bool) -> None:
        """``CALC:DELT<n>:STAT ON``: marker n becomes a delta marker to marker 1 (R&S numbers them together)."""
        marker = self._marker(number)
        if on:
            if number == marker.reference:
                marker.reference = self.first_reference(number)
            reference = self._marker(marker.reference)
            if reference.mode == "OFF":
                reference.mode, reference.index = "POSition", marker.index
            marker.mode = "DELTa"
        else:
            marker.mode = "OFF"

    def delta_x(self, number: int, relative: bool) -> str:
        marker = self._marker(number)
        if marker.mode != "DELTa":
            raise ScpiError(-221, f"delta marker {number} is off")
        x = self.frequencies_hz()[marker.index]
        if relative:
            x -= self.frequencies_hz()[self._marker(marker.reference).index]
        return format_number(x)

    def set_delta_x(self, number: int, frequency_hz: float) -> None:
        marker = self._marker(number)
        if marker.mode != "DELTa":
            self.set_delta_state(number, True)
        marker.index = self._nearest_point(frequency_hz)

    def first_reference(self, number: int) -> int:
        """R&S delta markers refer to marker 1 (marker 1's own delta to marker 2)."""
        return 2 if number == 1 else 1

    def declare_dialect(self, table: CommandTable) -> None:
        table.add(
            ":INPut:ATTenuation",
            self.set_attenuation,
            lambda: "%d" % round(self.attenuation_db),
            (Numeric("DB", 0.0, self.MAX_ATTENUATION_DB),),
        )
        add_setting(table, self, ":INPut:ATTenuation:AUTO", "attenuation_auto", Boolean())
        add_setting(table, self, ":INPut:GAIN:STATe", "preamp_on", Boolean())
        detectors = Choice(["APEak", "POSitive", "SAMPle", "NEGative", "AVERage", "RMS"])
        table.add(
            "[:SENSe]:DETector<1-6>[:FUNCtion]",
            lambda n, name: self.set_detector(name),
            lambda n: short_form(self.detector),
            (detectors,),
        )
        table.add(
            "[:SENSe]:DETector<1-6>[:FUNCtion]:AUTO",
            lambda n, on: self.set_detector_auto(on),
            lambda n: "1" if self.detector_auto else "0",
            (Boolean(),),
        )
        table.add(
            ":DISPlay[:WINDow<n>]:TRACe<1-6>:MODE",
            lambda w, n, mode: self.set_trace_mode(n, mode),
            lambda w, n: short_form(self._trace(n).mode),
            (Choice(TRACE_MODES),),
        )
        table.add(
            "[:SENSe]:AVERage:STATe<1-6>",
            lambda n, on: self.set_trace_mode(n, "AVERage" if on else "WRITe"),
            lambda n: "1" if self._trace(n).mode == "AVERage" else "0",
            (Boolean(),),
        )
        table.add(":INITiate:CONMeasure", setter=lambda: self.sweep(self.sweeps_to_take()))
        deltas = f"<1-{self.MARKERS}>"
        table.add(
            f":CALCulate:DELTamarker{deltas}[:STATe]",
            self.set_delta_state,
            lambda n: "1" if self._marker(n).mode == "DELTa" else "0",
            (Boolean(),),
        )
        table.add(
            f":CALCulate:DELTamarker{deltas}:X",
            self.set_delta_x,
            lambda n: self.delta_x(n, False),
            (Numeric("HZ", 0.0, self.MAX_FREQUENCY_HZ),),
        )
        table.add(f":CALCulate:DELTamarker{deltas}:X:RELative?", query=lambda n: self.delta_x(n, True))
        self.declare_marker_search(table, f":CALCulate:DELTamarker{deltas}", self._delta_peak)
        table.add(
            f":CALCulate:DELTamarker{deltas}:MREFerence",
            self.set_marker_reference,
            lambda n: str(self._marker(n).reference),
            (Numeric("", 1, self.MARKERS, integer=True),),
        )
        for header in ("MARKer", "DELTamarker"):  # one excursion for all markers, as on the FSL
            table.add(
                f":CALCulate:{header}{deltas}:PEXCursion",
                lambda n, db: setattr(self, "peak_excursion_db", db),
                lambda n: format_number(self.peak_excursion_db),
                (Numeric("DB", 0.0, 80.0),),
            )

    def _delta_peak(self, number: int) -> None:
        if self._marker(number).mode != "DELTa":
            self.set_delta_state(number, True)
        self.peak_search(number)


__all__ = ["EsaDialect", "XSeriesDialect", "FsxDialect", "auto_resolution_bandwidth", "ieee_block", "Trace", "Marker"]
