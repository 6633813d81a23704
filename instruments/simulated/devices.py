"""Simulated instruments that speak real SCPI, all backed by one shared ring model.

This module owns the *state* of each simulated instrument and its SCPI command table; the
physics is :class:`labpgt.instruments.simulated.ring.RingModel`, and the transports
(in-process adapter, TCP server) are in :mod:`labpgt.instruments.simulated.transport`.

:class:`SimulatedBench` owns the model, a lock, and the instruments ``gen1..genN``, ``ring``,
``analyzer``. Every instrument answers ``handle(message) -> bytes`` under the bench lock, so
concurrent clients are safe. The analyzer computes its trace from the *current* states of all
generators and the ring controller (``model.spectra`` with a batch of one), exactly when a
sweep happens. The bench adds no randomness of its own: the model owns the RNG, so a bench is
deterministic for a seed and a sequence of commands.

Command tables (``[ ]`` optional, lower case optional, ``|`` alias; all also answer the common
commands ``*IDN? *RST *CLS *OPC *OPC? *WAI *ESR? *TST?`` and ``:SYSTem:ERRor[:NEXT]?``):

Signal generator (Keysight/Agilent PSG E8257D dialect) — :class:`SimulatedSignalGenerator`

=============================================================  ===========================================
``[:SOURce]:FREQuency[:CW|:FIXed] <f>`` / ``?``                 250 kHz … 20 GHz (-222 outside); MIN/MAX/DEF
``[:SOURce]:POWer[:LEVel][:IMMediate][:AMPLitude] <p>`` / ``?`` −135 … +25 dBm
``:OUTPut[:STATe] ON|OFF|1|0`` / ``?``                          RF output
``:OUTPut:MODulation[:STATe] ON|OFF`` / ``?``                   stored only (modulation is not simulated)
``[:SOURce]:LFOutput:STATe|SOURce|AMPLitude``                   stored only (stock driver's LF output)
=============================================================  ===========================================

``*RST``: 20 GHz (the PSG presets to its maximum frequency), −135 dBm, RF off.

Ring controller (the lab's own box; this is its SCPI dialect) — :class:`SimulatedRingController`

=====================================  =================================================================
``:LOOP:GAIN <dB>`` / ``?``            loop amplifier gain relative to the ring's round-trip loss,
                                       −20 … +10 dB; above 0 dB the ring auto-oscillates
``:FIELd <mT>`` / ``?``                bias field, 0 … 300 mT (suffix mT or T)
``:AMPLifier[:STATe] ON|OFF`` / ``?``  loop amplifier power
``:TEMPerature?``                      the YIG film's temperature in °C (its sensor; the simulated
                                       ring's drifts, see ring.py 16), 4 decimals
``*IDN?``                              ``labpgt,RingController,SIM…,1.0``
=====================================  =================================================================

``*RST``: the model's default gain and field, amplifier OFF (the safe state).

Spectrum analyzer (Agilent ESA E4408B / X-series dialect) — :class:`SimulatedSpectrumAnalyzer`

==============================================================  ===========================================
``[:SENSe]:FREQuency:CENTer|SPAN|STARt|STOP <f>`` / ``?``        0 … 26.5 GHz; span ≥ 10 Hz
``[:SENSe]:FREQuency:CENTer:STEP[:INCRement] <f>`` / ``?``       stored
``[:SENSe]:BANDwidth|BWIDth[:RESolution] <f>`` / ``?``           10 Hz … 5 MHz; setting it turns AUTO off
``[:SENSe]:BANDwidth|BWIDth[:RESolution]:AUTO ON|OFF`` / ``?``   auto: span/100 rounded down to 1-3-10
``[:SENSe]:SWEep:POINts <n>`` / ``?``                            101 … 8192, default 401
``[:SENSe]:SWEep:TIME <t>`` / ``?``                              setting it turns AUTO off
``[:SENSe]:SWEep:TIME:AUTO ON|OFF`` / ``?``                      auto: ``model.sweep_time_s(span, rbw)``
``:INITiate:CONTinuous ON|OFF`` / ``?``                          continuous sweep (default ON)
``:INITiate[:IMMediate]``                                        take one sweep now
``:ABORt``                                                       no-op
``:TRACe[:DATA]? [TRACE1|TRACE2|TRACE3]``                        the trace, in the current format
``:FORMat[:TRACe][:DATA] ASCii|REAL[,32|64]`` / ``?``            ASCII ``%.3f`` values, comma separated,
                                                                 or IEEE 488.2 ``#<n><len><bytes>`` block
``:FORMat:BORDer NORMal|SWAPped`` / ``?``                        big-endian (NORMal) or little-endian
==============================================================  ===========================================

The simulated sweep is instantaneous (``*OPC?`` answers ``1`` at once) unless the bench is
``realtime``: each sweep advances the bench's virtual clock by the settling the instruments needed
since the last sweep (``SimulatedBench.settling_s``) plus the sweep time ``:SWEep:TIME?`` reports,
and a realtime bench answers the sweeping message no sooner than that in the wall clock. With continuous sweep ON a trace read returns a fresh sweep
(the analyzer shows the latest); with it OFF, the trace of the last ``:INIT``.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np

from .ring import Behaviours, RingModel, RingParameters
from .scpi import (Boolean, Choice, CommandTable, Numeric, ScpiError, ScpiInstrument, add_setting,
                   format_number)


class BenchInstrument(ScpiInstrument):
    """A simulated instrument on a :class:`SimulatedBench`: handles messages under the bench lock."""

    def __init__(self, bench: "SimulatedBench", name: str):
        self.bench = bench
        self.name = name
        super().__init__()
        self.reset()

    def handle(self, message: str | bytes) -> bytes:
        with self.bench.lock:
            return super().handle(message)


# ---------------------------------------------------------------------------------------------
# Signal generator
# ---------------------------------------------------------------------------------------------

class SimulatedSignalGenerator(BenchInstrument):
    """A Keysight/Agilent E8257D PSG: CW frequency, power and RF output (see module docstring)."""

    MIN_FREQUENCY_HZ = 250e3
    MAX_FREQUENCY_HZ = 20e9
    MIN_POWER_DBM = -135.0
    MAX_POWER_DBM = 25.0
    PRESET_FREQUENCY_HZ = MAX_FREQUENCY_HZ
    PRESET_POWER_DBM = MIN_POWER_DBM

    def __init__(self, bench: "SimulatedBench", index: int):
        self.index = index
        self.identity = f"Agilent Technologies,E8257D,SIM{index:06d},C.06.28"
        super().__init__(bench, f"gen{index}")

    def reset(self) -> None:
        self.frequency_hz = self.PRESET_FREQUENCY_HZ
        self.power_dbm = self.PRESET_POWER_DBM
        self.output_on = False
        self.modulation_on = False
        self.lf_output_on = False
        self.lf_output_source = "INTernal"
        self.lf_output_amplitude_v = 0.0

    def declare_commands(self, table: CommandTable) -> None:
        frequency = Numeric("HZ", self.MIN_FREQUENCY_HZ, self.MAX_FREQUENCY_HZ, self.PRESET_FREQUENCY_HZ)
        power = Numeric("DBM", self.MIN_POWER_DBM, self.MAX_POWER_DBM, self.PRESET_POWER_DBM)
        add_setting(table, self, "[:SOURce]:FREQuency[:CW|:FIXed]", "frequency_hz", frequency)
        add_setting(table, self, "[:SOURce]:POWer[:LEVel][:IMMediate][:AMPLitude]", "power_dbm", power)
        add_setting(table, self, ":OUTPut[:STATe]", "output_on", Boolean())
        add_setting(table, self, ":OUTPut:MODulation[:STATe]", "modulation_on", Boolean())
        add_setting(table, self, "[:SOURce]:LFOutput:STATe", "lf_output_on", Boolean())
        add_setting(table, self, "[:SOURce]:LFOutput:SOURce", "lf_output_source",
                    Choice(["INTernal", "INTernal2", "FUNCtion", "FUNCtion2"]))
        add_setting(table, self, "[:SOURce]:LFOutput:AMPLitude", "lf_output_amplitude_v",
                    Numeric("VP", 0.0, 3.5, 0.0))


# ---------------------------------------------------------------------------------------------
# Ring controller
# ---------------------------------------------------------------------------------------------

class SimulatedRingController(BenchInstrument):
    """The ring's loop amplifier and bias-field supply (the lab's own SCPI dialect; see module docstring).

    ``:LOOP:GAIN`` is the loop gain relative to the ring's round-trip loss (dB, −20 … +10);
    ``:FIELd`` the bias field (mT, 0 … 300); ``:AMPLifier[:STATe]`` powers the loop amplifier.
    ``*RST`` restores the model's default gain and field with the amplifier OFF.
    """

    MIN_LOOP_GAIN_DB = -20.0
    MAX_LOOP_GAIN_DB = 10.0
    MIN_FIELD_MT = 0.0
    MAX_FIELD_MT = 300.0

    def __init__(self, bench: "SimulatedBench"):
        self.identity = "labpgt,RingController,SIM000001,1.0"
        super().__init__(bench, "ring")

    def reset(self) -> None:
        params = self.bench.model.params
        self.loop_gain_db = float(params.default_loop_gain_db)
        self.field_mt = float(params.default_field_mt)
        self.amplifier_on = False

    def declare_commands(self, table: CommandTable) -> None:
        params = self.bench.model.params
        add_setting(table, self, ":LOOP:GAIN", "loop_gain_db",
                    Numeric("DB", self.MIN_LOOP_GAIN_DB, self.MAX_LOOP_GAIN_DB,
                            float(params.default_loop_gain_db)))
        add_setting(table, self, ":FIELd", "field_mt",
                    Numeric("MT", self.MIN_FIELD_MT, self.MAX_FIELD_MT, float(params.default_field_mt)))
        add_setting(table, self, ":AMPLifier[:STATe]", "amplifier_on", Boolean())
        table.add(":TEMPerature?", query=lambda: format_number(round(self.bench.model.lab.temperature_c, 4)))


# ---------------------------------------------------------------------------------------------
# Spectrum analyzer
# ---------------------------------------------------------------------------------------------

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


class SimulatedSpectrumAnalyzer(BenchInstrument):
    """An Agilent ESA E4408B / X-series analyzer looking at the ring's output (see module docstring)."""

    def handle(self, message: str | bytes) -> bytes:
        started = time.monotonic()
        answer = super().handle(message)
        self.bench.pay_wall_time(started)
        return answer

    MAX_FREQUENCY_HZ = 26.5e9
    MIN_SPAN_HZ = 10.0
    MIN_RBW_HZ = 10.0
    MAX_RBW_HZ = 5e6
    MIN_POINTS = 101
    MAX_POINTS = 8192
    DEFAULT_POINTS = 401

    def __init__(self, bench: "SimulatedBench"):
        self.identity = "Agilent Technologies,E4408B,SIM000001,A.14.01"
        self.trace_dbm: np.ndarray | None = None
        super().__init__(bench, "analyzer")

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
        self.byte_order = "NORMal"
        self.trace_dbm = None

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
    def sweep_time_s(self) -> float:
        if self.sweep_time_auto:
            return float(self.bench.model.sweep_time_s(self.span_hz, self.rbw_hz, self.points))
        return self.manual_sweep_time_s

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

    def set_sweep_time(self, value: float) -> None:
        self.manual_sweep_time_s = value
        self.sweep_time_auto = False

    def set_format(self, kind: str, bits: int | None) -> None:
        if kind == "ASCii":
            self.data_format, self.data_bits = kind, 8
            return
        if kind != "REAL" or (bits or 32) not in (32, 64):
            raise ScpiError(-224, f"{kind},{bits}")
        self.data_format, self.data_bits = kind, bits or 32

    def format_setting(self) -> str:
        return "ASC,8" if self.data_format == "ASCii" else f"REAL,{self.data_bits}"

    # -- sweeping -----------------------------------------------------------------------------
    def sweep(self) -> np.ndarray:
        """Take one sweep from the current states of all generators and the ring controller, after
        the bench's clock has advanced by the settling it needed and the sweep time."""
        bench = self.bench
        generators = bench.generators
        ring = bench.ring
        duration = bench.settling_s() + self.sweep_time_s
        bench.model.lab.advance(duration)
        bench.owed_wall_s += duration
        lab = bench.model.lab
        tone_freq = np.array([[g.frequency_hz for g in generators]], dtype=float)
        tone_power = np.array([[g.power_dbm for g in generators]], dtype=float)
        tone_on = np.array([[g.output_on for g in generators]], dtype=bool)
        traces = bench.model.spectra(
            tone_freq, tone_power, tone_on,
            np.array([ring.loop_gain_db], dtype=float),
            np.array([ring.field_mt + lab.field_offset_mt], dtype=float),
            np.array([ring.amplifier_on], dtype=bool),
            self.frequencies_hz(), self.rbw_hz, ms_t=lab.ms_t())
        self.trace_dbm = np.asarray(traces, dtype=float)[0]
        return self.trace_dbm

    def read_trace(self, trace_name: str = "TRACE1") -> bytes:
        """``:TRACe:DATA?``: the latest trace in the current format."""
        if self.continuous or self.trace_dbm is None:
            self.sweep()
        trace = self.trace_dbm
        if self.data_format == "ASCii":
            return ",".join(["%.3f" % value for value in trace.tolist()]).encode()
        dtype = (">" if self.byte_order == "NORMal" else "<") + ("f4" if self.data_bits == 32 else "f8")
        return ieee_block(trace.astype(dtype).tobytes())

    # -- command table ------------------------------------------------------------------------
    def declare_commands(self, table: CommandTable) -> None:
        hz = lambda: Numeric("HZ", 0.0, self.MAX_FREQUENCY_HZ)  # noqa: E731
        number = format_number
        table.add("[:SENSe]:FREQuency:CENTer", self.set_center, lambda: number(self.center_hz), (hz(),))
        table.add("[:SENSe]:FREQuency:SPAN", self.set_span, lambda: number(self.span_hz), (hz(),))
        table.add("[:SENSe]:FREQuency:STARt", self.set_start, lambda: number(self.start_hz), (hz(),))
        table.add("[:SENSe]:FREQuency:STOP", self.set_stop, lambda: number(self.stop_hz), (hz(),))
        add_setting(table, self, "[:SENSe]:FREQuency:CENTer:STEP[:INCRement]", "center_step_hz", hz())
        table.add("[:SENSe]:BANDwidth|BWIDth[:RESolution]", self.set_rbw, lambda: number(self.rbw_hz),
                  (Numeric("HZ", self.MIN_RBW_HZ, self.MAX_RBW_HZ),))
        add_setting(table, self, "[:SENSe]:BANDwidth|BWIDth[:RESolution]:AUTO", "rbw_auto", Boolean())
        add_setting(table, self, "[:SENSe]:SWEep:POINts", "points",
                    Numeric("", self.MIN_POINTS, self.MAX_POINTS, self.DEFAULT_POINTS, integer=True))
        table.add("[:SENSe]:SWEep:TIME", self.set_sweep_time, lambda: number(self.sweep_time_s),
                  (Numeric("S", 1e-6, 2000.0),))
        add_setting(table, self, "[:SENSe]:SWEep:TIME:AUTO", "sweep_time_auto", Boolean())
        add_setting(table, self, ":INITiate:CONTinuous", "continuous", Boolean())
        table.add(":INITiate[:IMMediate]", setter=self.sweep)
        table.add(":ABORt", setter=lambda: None)
        table.add(":TRACe[:DATA]?", query=self.read_trace,
                  query_parameters=(Choice(["TRACE1", "TRACE2", "TRACE3"], optional=True, default="TRACE1"),))
        table.add(":FORMat[:TRACe][:DATA]", self.set_format, self.format_setting,
                  (Choice(["ASCii", "REAL"]), Numeric("", 1, 64, integer=True, optional=True)))
        add_setting(table, self, ":FORMat:BORDer", "byte_order", Choice(["NORMal", "SWAPped"]),
                    formatter=lambda order: order[:4].upper())


# ---------------------------------------------------------------------------------------------
# The bench
# ---------------------------------------------------------------------------------------------

class SimulatedBench:
    """One ring model and the simulated instruments around it.

    :param n_generators: number of signal generators ``gen1..genN``.
    :param seed: seed of the model's RNG (the bench adds no randomness of its own).
    :param noise: ``False`` for noise-free traces.
    :param params: :class:`RingParameters`, defaults if ``None``.
    :param behaviours: the real ring's behaviours (:class:`Behaviours`; all if ``None``,
        ``Behaviours.ideal()`` for the kind ring).
    :param realtime: sweeps take their simulated duration in the wall clock too.

    ``instruments`` maps the names ``gen1..genN``, ``ring``, ``analyzer`` to the instruments;
    each answers ``handle(message) -> bytes``. ``lock`` serialises all access to the model.
    """

    def __init__(self, n_generators: int = 4, seed: int = 0, noise: bool = True,
                 params: RingParameters | None = None, behaviours: Behaviours | None = None,
                 realtime: bool = False):
        if n_generators < 1:
            raise ValueError("a bench needs at least one signal generator")
        self.model = RingModel(params=params if params is not None else RingParameters(),
                               seed=seed, noise=noise, behaviours=behaviours)
        self.realtime = realtime
        self.owed_wall_s = 0.0
        self.lock = threading.RLock()
        self.generators = [SimulatedSignalGenerator(self, index) for index in range(1, n_generators + 1)]
        self.ring = SimulatedRingController(self)
        self.analyzer = SimulatedSpectrumAnalyzer(self)
        self._swept = self._settled_state()

    # -- time --------------------------------------------------------------------------------
    def _settled_state(self) -> dict:
        return {"generators": [[g.frequency_hz, g.power_dbm, bool(g.output_on)] for g in self.generators],
                "field_mt": self.ring.field_mt, "ring": [self.ring.loop_gain_db, bool(self.ring.amplifier_on)]}

    def settling_s(self) -> float:
        """The settling the instruments needed since the last sweep (the slowest change), and mark
        the present state settled: a changed generator, the field, the loop gain or amplifier."""
        p = self.model.params
        now = self._settled_state()
        waits = [p.generator_settling_s for old, new in zip(self._swept["generators"], now["generators"])
                 if old != new]
        waits += [p.field_settling_s] if now["field_mt"] != self._swept["field_mt"] else []
        waits += [p.gain_settling_s] if now["ring"] != self._swept["ring"] else []
        self._swept = now
        return max(waits, default=0.0)

    def pay_wall_time(self, started: float) -> None:
        """On a realtime bench, wait (outside the lock) until the message that swept has taken as
        long in the wall clock as the sweep took on the bench's clock."""
        with self.lock:
            owed, self.owed_wall_s = self.owed_wall_s, 0.0
        if self.realtime and owed > 0:
            time.sleep(max(0.0, owed - (time.monotonic() - started)))

    @property
    def clock_s(self) -> float:
        """The bench's virtual clock (s since it was made)."""
        return self.model.lab.time_s

    # -- checkpoints -------------------------------------------------------------------------
    def get_state(self) -> dict:
        """The model's randomness, clock, drifts and oscillating state, and what the last sweep
        saw settled, as JSON: restoring it continues the bench exactly."""
        with self.lock:
            return {"model": self.model.get_state(), "swept": self._swept}

    def set_state(self, state: dict) -> None:
        with self.lock:
            self.model.set_state(state["model"])
            self._swept = state["swept"]

    @property
    def instruments(self) -> dict[str, BenchInstrument]:
        named = {generator.name: generator for generator in self.generators}
        named["ring"] = self.ring
        named["analyzer"] = self.analyzer
        return named

    def __getitem__(self, name: str) -> BenchInstrument:
        return self.instruments[name]

    def reset(self) -> None:
        """``*RST`` every instrument."""
        with self.lock:
            for instrument in self.instruments.values():
                instrument.reset()


__all__ = ["SimulatedBench", "BenchInstrument", "SimulatedSignalGenerator", "SimulatedRingController",
           "SimulatedSpectrumAnalyzer", "auto_resolution_bandwidth", "ieee_block"]
