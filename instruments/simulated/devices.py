"""Simulated instruments that speak real SCPI, all backed by one shared ring model.

This module owns the *state* of each simulated signal generator and of the ring controller, their
SCPI command tables, and the bench that puts them together; the analyzers are in
:mod:`labpgt.instruments.simulated.analyzer`, the physics is
:class:`labpgt.instruments.simulated.ring.RingModel`, and the transports (in-process adapter, TCP
server) are in :mod:`labpgt.instruments.simulated.transport`.

:class:`SimulatedBench` owns the model, a lock, and the instruments ``gen1..genN``, ``ring``,
``analyzer``; each generator and the analyzer is one of several vendors' models (``generator_models``,
``analyzer_model``), all backed by the same ring. Every instrument answers ``handle(message) -> bytes``
under the bench lock, so concurrent clients are safe: state and error queue belong to the instrument,
whichever connection sent the command, and messages of different connections are executed in the
order they arrive, with no ordering between connections. The analyzer computes its trace from the
*current* states of all generators and the ring controller, exactly when a sweep happens. The bench
adds no randomness of its own: the model owns the RNG, so a bench is deterministic for a seed and a
sequence of commands.

All instruments also answer the common commands (``*IDN? *OPT? *RST *CLS *OPC *OPC? *WAI *ESR? *ESE
*SRE *STB? *TST?``), ``:SYSTem:ERRor[:NEXT]?`` and the ``:STATus`` subsystem (see :mod:`.scpi`).

Signal generators — :class:`SimulatedSignalGenerator` and its models (``generator_models`` names):

==========  =========================  ================  ==============  ====================
name        model (``*IDN?``)          frequency         power           ``*OPT?``
==========  =========================  ================  ==============  ====================
``psg``     Agilent E8257D PSG analog  250 kHz – 20 GHz  −135 … +25 dBm  1E1,1EA,520,UNT,UNW
``e8267c``  Agilent E8267C PSG vector  250 kHz – 20 GHz  −135 … +25 dBm  1E1,520,UNT,UNW,002
``mxg``     Keysight N5183B MXG        9 kHz – 20 GHz    −130 … +19 dBm  1E1,1EA,520,UNW
``exg``     Keysight N5173B EXG        9 kHz – 20 GHz    −130 … +19 dBm  1E1,520,UNW
``mg369x``  Anritsu MG3692C            10 MHz – 20 GHz   −130 … +13 dBm  2,4
==========  =========================  ================  ==============  ====================

The PSGs also answer ``:DIAGnostic[:CPU]:INFOrmation:OPTions:DETail?`` (each option with its
revision). Commands (all models; ``[ ]`` optional, lower case optional, ``|`` alias):

===============================================================  =====================================
``[:SOURce]:FREQuency[:CW|:FIXed] <f>`` / ``?``                  the displayed frequency; MIN/MAX/DEF
``[:SOURce]:FREQuency:OFFSet <f>`` / ``:MULTiplier <k>``         displayed = RF × k + offset, so the
                                                                 RF output is (set − offset)/k; the
                                                                 RF must stay within the model's range
``[:SOURce]:FREQuency:MODE CW|FIXed|SWEep|LIST``                 stored; the simulated output is CW
``[:SOURce]:POWer[:LEVel][:IMMediate][:AMPLitude] <p>`` / ``?``  displayed = RF + offset
``[:SOURce]:POWer[:LEVel][:IMMediate]:OFFSet <dB>``              −200 … +200 dB
``[:SOURce]:POWer:ALC[:STATe] ON|OFF`` / ``:ALC:SEARch``         stored (no effect in the model)
``[:SOURce]:POWer:ALC:BANDwidth|BWIDth <f>`` / ``:AUTO``         stored
``[:SOURce]:POWer:ATTenuation <dB>`` / ``:AUTO``                 stored
``[:SOURce]:POWer:MODE FIXed|LIST|SWEep``                        stored; the simulated power is fixed
``[:SOURce]:PHASe[:ADJust] <rad>`` / ``:PHASe:REFerence``        −2π … 2π, kept in −π … π (DEG
                                                                 accepted); stored: one tone's phase
                                                                 changes no power spectrum
``:OUTPut[:STATe] ON|OFF`` / ``?``                               RF output
``:OUTPut:MODulation[:STATe]``, ``[:SOURce]:LFOutput:…``         stored (modulation is not simulated)
``[:SOURce]:PULM:STATe|SOURce|INTernal:PWIDth``                  stored
``[:SOURce]:ROSCillator:SOURce:AUTO``                            stored
``:SYSTem:PRESet``                                               as ``*RST``
===============================================================  =====================================

``*RST``: the model's preset frequency (a PSG presets to its maximum), its minimum power, RF off,
no offsets, multiplier 1, ALC on, phase 0.

Ring controller (the lab's own box; this is its SCPI dialect) — :class:`SimulatedRingController`

=====================================  =================================================================
``:LOOP:GAIN <dB>`` / ``?``            loop amplifier gain relative to the ring's round-trip loss,
                                       −20 … +10 dB; above 0 dB the ring auto-oscillates
``:FIELd <mT>`` / ``?``                bias field, 0 … 300 mT (suffix mT or T)
``:AMPLifier[:STATe] ON|OFF`` / ``?``  loop amplifier power
``:TEMPerature?``                      the YIG film's temperature in °C, 4 decimals: its sensor, which
                                       lags the film and has readout noise (docs/ring-physics.md §10)
``*IDN?``                              ``labpgt,RingController,SIM…,1.0``
=====================================  =================================================================

``*RST``: the model's default gain and field, amplifier OFF (the safe state). The field and loop gain
are set points: the ring sees them through the laboratory's magnet and amplifier drifts
(:mod:`.laboratory`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence

import numpy as np

from .analyzer import EsaDialect, FsxDialect, XSeriesDialect, auto_resolution_bandwidth, ieee_block
from .ring import Behaviours, RingModel, RingParameters
from .scpi import Boolean, Choice, CommandTable, Numeric, ScpiError, ScpiInstrument, add_setting, format_number
from .spread import device_parameters
from .timing import BenchTiming


class BenchInstrument(ScpiInstrument):
    """A simulated instrument on a :class:`SimulatedBench`: handles messages under the bench lock."""

    def __init__(self, bench: SimulatedBench, name: str):
        self.bench = bench
        self.name = name
        self.away_until = 0.0  # time.monotonic() until which it has gone away (:SIMulate:AWAY)
        super().__init__()
        self.table.add(":SIMulate:AWAY", setter=self.go_away, parameters=(Numeric("S", 0.0, 3600.0),))
        self.reset()

    message_terminators = b"\n"  # what ends a program message on a socket (b"\r\n": CR alone too)
    answer_terminator = b"\n"  # what ends each answer

    def translate(self, message: str) -> str:
        """A dialect that is not SCPI, rewritten as the SCPI the command table understands (default: as it is)."""
        return message

    def go_away(self, seconds: float) -> None:
        """Simulation only: the instrument goes away (powered off, unplugged) for ``seconds`` of wall time and
        comes back in its ``*RST`` state; the TCP server refuses and resets its connections meanwhile."""
        self.away_until = time.monotonic() + float(seconds)
        self.reset()

    @property
    def away(self) -> bool:
        return time.monotonic() < self.away_until

    def handle(self, message: str | bytes) -> bytes:
        started = time.monotonic()
        text = message.decode("latin-1") if isinstance(message, (bytes, bytearray)) else message
        with self.bench.lock:
            answer = super().handle(self.translate(text))
            if self.answer_terminator != b"\n" and answer:
                answer = answer[:-1].replace(b"\n", self.answer_terminator) + self.answer_terminator
            self.bench.charge(self, text, len(answer))
        self.bench.pay_wall_time(started)  # a realtime bench: the sweep's time, outside the lock
        return answer


# ---------------------------------------------------------------------------------------------
# Signal generators
# ---------------------------------------------------------------------------------------------


class SimulatedSignalGenerator(BenchInstrument):
    """A Keysight/Agilent E8257D PSG (and the base of the other models; see the module docstring)."""

    MODEL = "E8257D"
    VENDOR = "Agilent Technologies"
    FIRMWARE = "C.06.28"
    options = "1E1,1EA,520,UNT,UNW"
    MIN_FREQUENCY_HZ = 250e3
    MAX_FREQUENCY_HZ = 20e9
    MIN_POWER_DBM = -135.0
    MAX_POWER_DBM = 25.0
    PRESET_FREQUENCY_HZ = MAX_FREQUENCY_HZ
    PRESET_POWER_DBM = MIN_POWER_DBM
    OPTION_DETAILS = True  # answers :DIAG:CPU:INFO:OPT:DET? (the PSGs do)
    MECHANICAL_ATTENUATOR = True  # option 1E1: an electromechanical step attenuator (moves cost time, wear)
    ATTENUATOR_STEP_DB = 5.0
    MAX_ATTENUATION_DB = 115.0
    ALC_MIN_DBM = -20.0  # the ALC's range with the attenuator at 0 dB: the lowest level it holds

    def __init__(self, bench: SimulatedBench, index: int):
        self.index = index
        self.identity = f"{self.VENDOR},{self.MODEL},SIM{index:06d},{self.FIRMWARE}"
        self.frequency_parameter = Numeric("HZ", self.MIN_FREQUENCY_HZ, self.MAX_FREQUENCY_HZ, self.PRESET_FREQUENCY_HZ)
        self.power_parameter = Numeric("DBM", self.MIN_POWER_DBM, self.MAX_POWER_DBM, self.PRESET_POWER_DBM)
        super().__init__(bench, f"gen{index}")

    def reset(self) -> None:
        self.frequency_offset_hz = 0.0
        self.frequency_multiplier = 1.0
        self.power_offset_db = 0.0
        self.update_limits()
        self.frequency_hz = self.PRESET_FREQUENCY_HZ
        self.power_dbm = self.PRESET_POWER_DBM
        self.output_on = False
        self.frequency_mode = "CW"
        self.power_mode = "FIXed"
        self.alc_on = True
        self.alc_bandwidth_hz = 100e3
        self.alc_bandwidth_auto = True
        self.attenuation_db = 0.0
        self.attenuation_auto = True
        self.attenuator_cycles = getattr(self, "attenuator_cycles", 0)  # a counter that survives *RST
        self.phase_rad = 0.0
        self.modulation_on = False
        self.pulse_on = False
        self.pulse_source = "INTernal"
        self.pulse_width_s = 10e-6
        self.reference_auto = True
        self.lf_output_on = False
        self.lf_output_source = "INTernal"
        self.lf_output_amplitude_v = 0.0

    # -- what reaches the ring ----------------------------------------------------------------
    @property
    def rf_frequency_hz(self) -> float:
        return (self.frequency_hz - self.frequency_offset_hz) / self.frequency_multiplier

    @property
    def rf_power_dbm(self) -> float:
        return self.power_dbm - self.power_offset_db

    def update_limits(self) -> None:
        """The displayed-value limits (and MIN/MAX) follow the offsets, so the RF stays in range."""
        k, offset = self.frequency_multiplier, self.frequency_offset_hz
        self.frequency_parameter.minimum = self.MIN_FREQUENCY_HZ * k + offset
        self.frequency_parameter.maximum = self.MAX_FREQUENCY_HZ * k + offset
        self.frequency_parameter.default = self.PRESET_FREQUENCY_HZ * k + offset
        self.power_parameter.minimum = self.MIN_POWER_DBM + self.power_offset_db
        self.power_parameter.maximum = self.MAX_POWER_DBM + self.power_offset_db
        self.power_parameter.default = self.PRESET_POWER_DBM + self.power_offset_db

    def set_frequency_offset(self, offset_hz: float) -> None:
        self.frequency_hz += offset_hz - self.frequency_offset_hz  # the RF output stays where it is
        self.frequency_offset_hz = offset_hz
        self.update_limits()

    def set_frequency_multiplier(self, multiplier: float) -> None:
        self.frequency_hz = self.rf_frequency_hz * multiplier + self.frequency_offset_hz
        self.frequency_multiplier = multiplier
        self.update_limits()

    def set_power_offset(self, offset_db: float) -> None:
        self.power_dbm += offset_db - self.power_offset_db
        self.power_offset_db = offset_db
        self.update_limits()

    def set_phase(self, value: float) -> None:
        self.phase_rad = math.remainder(value, 2 * math.pi)

    # -- the step attenuator -------------------------------------------------------------------
    def auto_attenuation_db(self, power_dbm: float) -> float:
        """Where the attenuator goes on auto: in, in its steps, only as far as the ALC cannot reach down."""
        below = self.ALC_MIN_DBM - power_dbm
        return (
            min(self.MAX_ATTENUATION_DB, self.ATTENUATOR_STEP_DB * math.ceil(below / self.ATTENUATOR_STEP_DB))
            if below > 0
            else 0.0
        )

    def move_attenuator(self, attenuation_db: float) -> None:
        if attenuation_db != self.attenuation_db:
            self.attenuation_db = attenuation_db
            self.attenuator_cycles += 1
            if self.MECHANICAL_ATTENUATOR:
                self.bench.charge_attenuator_move(self)

    def set_power(self, power_dbm: float) -> None:
        """The power (displayed); on auto the attenuator follows it, on hold the ALC must reach it (-221)."""
        rf = power_dbm - self.power_offset_db
        if not self.attenuation_auto:
            low, high = self.ALC_MIN_DBM - self.attenuation_db, self.MAX_POWER_DBM - self.attenuation_db
            if not low - 1e-9 <= rf <= high + 1e-9:
                raise ScpiError(
                    -221,
                    f"{rf:g} dBm outside the ALC's range {low:g} … {high:g} dBm with the "
                    f"attenuator held at {self.attenuation_db:g} dB",
                )
        else:
            self.move_attenuator(self.auto_attenuation_db(rf))
        self.power_dbm = power_dbm

    def hold_attenuator(self, attenuation_db: float) -> None:
        if abs(attenuation_db / self.ATTENUATOR_STEP_DB - round(attenuation_db / self.ATTENUATOR_STEP_DB)) > 1e-9:
            raise ScpiError(-222, f"{attenuation_db:g} dB is not in {self.ATTENUATOR_STEP_DB:g} dB steps")
        self.attenuation_auto = False
        self.move_attenuator(float(attenuation_db))

    def set_attenuation_auto(self, on: bool) -> None:
        self.attenuation_auto = bool(on)
        if on:
            self.move_attenuator(self.auto_attenuation_db(self.rf_power_dbm))

    def option_details(self) -> str:
        return ",".join(f"{option} 1.0 N/A" for option in self.options.split(","))

    # -- command table ------------------------------------------------------------------------
    def declare_commands(self, table: CommandTable) -> None:
        add_setting(table, self, "[:SOURce]:FREQuency[:CW|:FIXed]", "frequency_hz", self.frequency_parameter)
        table.add(
            "[:SOURce]:FREQuency:OFFSet",
            self.set_frequency_offset,
            lambda: format_number(self.frequency_offset_hz),
            (Numeric("HZ", -200e9, 200e9),),
        )
        table.add(
            "[:SOURce]:FREQuency:MULTiplier",
            self.set_frequency_multiplier,
            lambda: format_number(self.frequency_multiplier),
            (Numeric("", 0.001, 1000.0),),
        )
        add_setting(table, self, "[:SOURce]:FREQuency:MODE", "frequency_mode", Choice(["CW", "FIXed", "SWEep", "LIST"]))
        table.add(
            "[:SOURce]:POWer[:LEVel][:IMMediate][:AMPLitude]",
            self.set_power,
            lambda: format_number(self.power_dbm),
            (self.power_parameter,),
        )
        table.add(
            "[:SOURce]:POWer[:LEVel][:IMMediate]:OFFSet",
            self.set_power_offset,
            lambda: format_number(self.power_offset_db),
            (Numeric("DB", -200.0, 200.0),),
        )
        add_setting(table, self, "[:SOURce]:POWer:MODE", "power_mode", Choice(["FIXed", "LIST", "SWEep"]))
        add_setting(table, self, "[:SOURce]:POWer:ALC[:STATe]", "alc_on", Boolean())
        add_setting(
            table,
            self,
            "[:SOURce]:POWer:ALC:BANDwidth|BWIDth",
            "alc_bandwidth_hz",
            Numeric("HZ", 100.0, 1e6),
            on_set=lambda: setattr(self, "alc_bandwidth_auto", False),
        )
        add_setting(table, self, "[:SOURce]:POWer:ALC:BANDwidth|BWIDth:AUTO", "alc_bandwidth_auto", Boolean())
        table.add(
            "[:SOURce]:POWer:ALC:SEARch",
            setter=lambda *state: None,
            parameters=(Choice(["ON", "OFF", "ONCE"], optional=True, default="ONCE"),),
        )
        table.add(
            "[:SOURce]:POWer:ATTenuation",
            self.hold_attenuator,
            lambda: format_number(self.attenuation_db),
            (Numeric("DB", 0.0, self.MAX_ATTENUATION_DB),),
        )
        table.add(
            "[:SOURce]:POWer:ATTenuation:AUTO",
            self.set_attenuation_auto,
            lambda: "1" if self.attenuation_auto else "0",
            (Boolean(),),
        )
        table.add(":DIAGnostic[:CPU]:INFOrmation:CCOunt:ATTenuator?", query=lambda: str(self.attenuator_cycles))
        table.add(
            "[:SOURce]:PHASe[:ADJust]",
            self.set_phase,
            lambda: format_number(self.phase_rad),
            (Numeric("RAD", -2 * math.pi, 2 * math.pi),),
        )
        table.add("[:SOURce]:PHASe:REFerence", setter=lambda: setattr(self, "phase_rad", 0.0))
        add_setting(table, self, ":OUTPut[:STATe]", "output_on", Boolean())
        add_setting(table, self, ":OUTPut:MODulation[:STATe]", "modulation_on", Boolean())
        add_setting(table, self, "[:SOURce]:PULM:STATe", "pulse_on", Boolean())
        add_setting(table, self, "[:SOURce]:PULM:SOURce", "pulse_source", Choice(["INTernal", "EXTernal"]))
        add_setting(table, self, "[:SOURce]:PULM:INTernal:PWIDth", "pulse_width_s", Numeric("S", 10e-9, 40.0))
        add_setting(table, self, "[:SOURce]:ROSCillator:SOURce:AUTO", "reference_auto", Boolean())
        add_setting(table, self, "[:SOURce]:LFOutput:STATe", "lf_output_on", Boolean())
        add_setting(
            table,
            self,
            "[:SOURce]:LFOutput:SOURce",
            "lf_output_source",
            Choice(["INTernal", "INTernal2", "FUNCtion", "FUNCtion2"]),
        )
        add_setting(table, self, "[:SOURce]:LFOutput:AMPLitude", "lf_output_amplitude_v", Numeric("VP", 0.0, 3.5, 0.0))
        table.add(":SYSTem:PRESet", setter=self.reset)
        if self.OPTION_DETAILS:
            table.add(":DIAGnostic[:CPU]:INFOrmation:OPTions:DETail?", query=self.option_details)
            table.add(":DIAGnostic[:CPU]:INFOrmation:OPTions?", query=lambda: self.options)


class SimulatedE8267C(SimulatedSignalGenerator):
    """Agilent E8267C PSG vector signal generator (the E8257D's commands; option 002, internal baseband)."""

    MODEL = "E8267C"
    FIRMWARE = "C.04.56"
    options = "1E1,520,UNT,UNW,002"


class SimulatedMxg(SimulatedSignalGenerator):
    """Keysight N5183B MXG X-series microwave analog signal generator."""

    MODEL = "N5183B"
    VENDOR = "Keysight Technologies"
    FIRMWARE = "B.01.86"
    options = "1E1,1EA,520,UNW"
    MIN_FREQUENCY_HZ = 9e3
    MIN_POWER_DBM = -130.0
    MAX_POWER_DBM = 19.0
    PRESET_FREQUENCY_HZ = 20e9
    PRESET_POWER_DBM = -130.0
    OPTION_DETAILS = False
    MECHANICAL_ATTENUATOR = False  # the MXG/EXG's attenuator is electronic: no move time, no wear (assumption)


class SimulatedExg(SimulatedMxg):
    """Keysight N5173B EXG X-series microwave analog signal generator."""

    MODEL = "N5173B"
    options = "1E1,520,UNW"


class SimulatedAnritsuGenerator(SimulatedSignalGenerator):
    """Anritsu MG3692C synthesized signal generator, options 2 (step attenuator) and 4 (down to 10 MHz)."""

    MODEL = "MG3692C"
    VENDOR = "ANRITSU"
    FIRMWARE = "4.01"
    options = "2,4"
    MIN_FREQUENCY_HZ = 10e6
    MIN_POWER_DBM = -130.0
    MAX_POWER_DBM = 13.0
    PRESET_FREQUENCY_HZ = 10e9
    PRESET_POWER_DBM = 0.0
    OPTION_DETAILS = False
    ATTENUATOR_STEP_DB = 10.0  # option 2: a 10 dB-step mechanical attenuator
    MAX_ATTENUATION_DB = 110.0


class SimulatedTaborLucid(SimulatedSignalGenerator):
    """Tabor Electronics Lucid LS6081B benchtop RF signal generator (the PSG's commands; electronic attenuator)."""

    MODEL = "LS6081B"
    VENDOR = "Tabor Electronics"
    FIRMWARE = "1.2.0"
    options = "PE,FS"
    MIN_FREQUENCY_HZ = 9e3
    MAX_FREQUENCY_HZ = 6e9
    MIN_POWER_DBM = -100.0
    MAX_POWER_DBM = 15.0
    PRESET_FREQUENCY_HZ = 1e9
    PRESET_POWER_DBM = -10.0
    OPTION_DETAILS = False
    MECHANICAL_ATTENUATOR = False
    MAX_ATTENUATION_DB = 90.0


class SimulatedTaborLucidX(SimulatedTaborLucid):
    """Tabor Electronics Lucid X LSX6081B (the Lucid's commands)."""

    MODEL = "LSX6081B"
    FIRMWARE = "2.0.3"
    options = "PE,FS,LN"


GENERATOR_MODELS = {
    "psg": SimulatedSignalGenerator,
    "e8267c": SimulatedE8267C,
    "mxg": SimulatedMxg,
    "exg": SimulatedExg,
    "mg369x": SimulatedAnritsuGenerator,
    "tabor": SimulatedTaborLucid,
    "tabor-x": SimulatedTaborLucidX,
}


def generator_class(name: str) -> type:
    """The generator model for a ``--generator`` name (see the module docstring); ValueError otherwise."""
    try:
        return GENERATOR_MODELS[name]
    except KeyError:
        raise ValueError(f"unknown generator model {name!r}; expected one of {', '.join(GENERATOR_MODELS)}") from None


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

    def __init__(self, bench: SimulatedBench):
        self.identity = "labpgt,RingController,SIM000001,1.0"
        super().__init__(bench, "ring")

    def reset(self) -> None:
        params = self.bench.model.params
        self.loop_gain_db = float(params.default_loop_gain_db)
        self.field_mt = float(params.default_field_mt)
        self.amplifier_on = False

    def declare_commands(self, table: CommandTable) -> None:
        params = self.bench.model.params
        add_setting(
            table,
            self,
            ":LOOP:GAIN",
            "loop_gain_db",
            Numeric("DB", self.MIN_LOOP_GAIN_DB, self.MAX_LOOP_GAIN_DB, float(params.default_loop_gain_db)),
        )
        add_setting(
            table,
            self,
            ":FIELd",
            "field_mt",
            Numeric("MT", self.MIN_FIELD_MT, self.MAX_FIELD_MT, float(params.default_field_mt)),
        )
        add_setting(table, self, ":AMPLifier[:STATe]", "amplifier_on", Boolean())
        table.add(":TEMPerature?", query=lambda: format_number(round(self.bench.model.lab.temperature_c, 4)))
        lab = self.bench.model.lab  # simulation only: conditions a run's suspenders must ride out
        table.add(
            ":SIMulate:TEMPerature:EXCursion",
            setter=lambda k, s: lab.command("temperature", k, s),
            parameters=(Numeric("", -50.0, 50.0), Numeric("S", 0.0, 3600.0)),
        )
        table.add(
            ":SIMulate:GAIN:DROP",
            setter=lambda db, s: lab.command("gain", db, s),
            parameters=(Numeric("DB", 0.0, 60.0), Numeric("S", 0.0, 3600.0)),
        )


# ---------------------------------------------------------------------------------------------
# Spectrum analyzers (their dialects are in .analyzer; here they join the bench)
# ---------------------------------------------------------------------------------------------


class SimulatedSpectrumAnalyzer(EsaDialect, BenchInstrument):
    """Agilent ESA E4408B looking at the ring's output (see :mod:`.analyzer`)."""


class SimulatedXSeriesAnalyzer(XSeriesDialect, BenchInstrument):
    """Keysight N9030B PXA looking at the ring's output (see :mod:`.analyzer`)."""


class SimulatedFsxAnalyzer(FsxDialect, BenchInstrument):
    """Rohde & Schwarz FSL6 looking at the ring's output (see :mod:`.analyzer`)."""


ANALYZER_MODELS = {"esa": SimulatedSpectrumAnalyzer, "x-series": SimulatedXSeriesAnalyzer, "fsx": SimulatedFsxAnalyzer}


def analyzer_class(name: str) -> type:
    """The analyzer for a ``--analyzer`` name (``esa``, ``x-series``, ``fsx``); ValueError otherwise."""
    try:
        return ANALYZER_MODELS[name]
    except KeyError:
        raise ValueError(f"unknown analyzer model {name!r}; expected one of {', '.join(ANALYZER_MODELS)}") from None


# ---------------------------------------------------------------------------------------------
# The bench
# ---------------------------------------------------------------------------------------------


class SimulatedBench:
    """One ring model and the simulated instruments around it.

    :param n_generators: number of signal generators ``gen1..genN``.
    :param seed: seed of the model's RNG (the bench adds no randomness of its own).
    :param noise: ``False`` for noise-free traces.
    :param params: :class:`RingParameters`; if ``None``, those of simulated device ``device``.
    :param device: which simulated ring device (0: the nominal ring; N ≥ 1 drawn from the documented
        spread, :mod:`.spread`); ignored when ``params`` is given.
    :param analyzer_model: ``esa`` (Agilent E4408B), ``x-series`` (Keysight N9030B) or ``fsx``
        (R&S FSL6).
    :param generator_models: one model name for every generator, or one per generator (``psg``,
        ``e8267c``, ``mxg``, ``exg``, ``mg369x``; see the module docstring).
    :param behaviours: the real ring's behaviours (:class:`Behaviours`; all if ``None``,
        ``Behaviours.ideal()`` for the kind ring).
    :param realtime: sweeps take their simulated duration in the wall clock too.
    :param ring_parts: ``None`` for the ring controller, or ``(attenuator, gaussmeter)`` model names
        (:mod:`.controls`) for the ring a lab builds: ``attenuator``, ``magnet``, ``gaussmeter`` and
        ``thermometer`` in place of ``ring``.
    :param timing: what the clock charges for messages, the analyzer and attenuator moves (:mod:`.timing`).

    ``instruments`` maps the names ``gen1..genN``, ``ring`` (or the ring's parts), ``analyzer`` to the
    instruments; each answers ``handle(message) -> bytes``. ``lock`` serialises all access to the model.
    """

    def __init__(
        self,
        n_generators: int = 4,
        seed: int = 0,
        noise: bool = True,
        params: RingParameters | None = None,
        analyzer_model: str = "esa",
        generator_models: str | Sequence[str] = "psg",
        behaviours: Behaviours | None = None,
        realtime: bool = False,
        device: int = 0,
        ring_parts: Sequence[str] | None = None,
        timing: BenchTiming | None = None,
    ):
        if n_generators < 1:
            raise ValueError("a bench needs at least one signal generator")
        models = [generator_models] * n_generators if isinstance(generator_models, str) else list(generator_models)
        if len(models) != n_generators:
            raise ValueError(f"{len(models)} generator models for {n_generators} generators")
        generator_classes = [generator_class(name) for name in models]
        analyzer = analyzer_class(analyzer_model)
        self.device = int(device)
        self.model = RingModel(
            params=params if params is not None else device_parameters(self.device),
            seed=seed,
            noise=noise,
            behaviours=behaviours,
        )
        self.realtime = realtime
        self.owed_wall_s = 0.0
        self.timing = timing if timing is not None else BenchTiming()
        self.busy_s: dict[str, float] = {}
        self.sensor_rng = np.random.default_rng([int(seed), 0x5E45])  # the Hall probe's noise, one draw a reading
        self.lock = threading.RLock()
        self.generators = [cls(self, index) for index, cls in enumerate(generator_classes, start=1)]
        if ring_parts is None:
            self.ring, self.parts = SimulatedRingController(self), None
        else:
            from .controls import RingParts

            self.ring, self.parts = None, RingParts(self, *ring_parts)
        self.analyzer = analyzer(self)
        self.busy_s = dict.fromkeys(self.instruments, 0.0)
        self._swept = self._settled_state()

    # -- what the ring model sees of the ring's controls ---------------------------------------
    def ring_inputs(self) -> tuple[float, float, bool]:
        """(net loop gain dB, field in the film mT, amplifier on) now, the laboratory's drifts included."""
        lab = self.model.lab
        if self.parts is None:
            return (
                lab.loop_gain_db(self.ring.loop_gain_db),
                lab.film_field_mt(self.ring.field_mt),
                self.ring.amplifier_on,
            )
        return lab.loop_gain_db(self.parts.loop_gain_setpoint_db), lab.gap_field_mt(self.parts.cold_field_mt), True

    # -- time --------------------------------------------------------------------------------
    def _settled_state(self) -> dict:
        controls = (
            self.parts.settled_state()
            if self.parts is not None
            else {"field_mt": self.ring.field_mt, "ring": [self.ring.loop_gain_db, bool(self.ring.amplifier_on)]}
        )
        return {"generators": [[g.frequency_hz, g.power_dbm, bool(g.output_on)] for g in self.generators], **controls}

    def charge(self, instrument, message: str, answer_bytes: int) -> None:
        """Add what one program message cost ``instrument`` to its busy time (:mod:`.timing`)."""
        name = instrument.name
        self.busy_s[name] = self.busy_s.get(name, 0.0) + self.timing.message_cost_s(message, answer_bytes)

    def idle(self, name: str, seconds: float) -> None:
        """A client waited ``seconds`` on instrument ``name`` (a coil's ramp): its busy time."""
        with self.lock:
            self.busy_s[name] = self.busy_s.get(name, 0.0) + float(seconds)

    def charge_attenuator_move(self, instrument) -> None:
        self.busy_s[instrument.name] = self.busy_s.get(instrument.name, 0.0) + self.timing.attenuator_move_s

    def sweep_duration_s(self, analyzer, count: int, sweep_time_s: float) -> float:
        """How long ``count`` sweeps take on the clock from the last one: the slowest instrument's messages and the
        slowest settling (set in parallel), then the analyzer's messages, processing and sweeps; every busy time
        is spent."""
        others = max((t for name, t in self.busy_s.items() if name != analyzer.name), default=0.0)
        duration = (
            max(others, 0.0)
            + self.settling_s()
            + self.busy_s.get(analyzer.name, 0.0)
            + count * (sweep_time_s + self.timing.analyzer_processing_s)
        )
        self.busy_s = dict.fromkeys(self.busy_s, 0.0)
        return duration

    def settling_s(self) -> float:
        """The settling the instruments needed since the last sweep (the slowest change), and mark
        the present state settled: a changed generator, the field, the loop gain or amplifier."""
        p = self.model.params
        now = self._settled_state()
        waits = [p.generator_settling_s for old, new in zip(self._swept["generators"], now["generators"]) if old != new]
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
        """The model's randomness, clock, drifts and oscillating state, what the last sweep saw settled, the
        instruments' busy times and the sensors' randomness, as JSON: restoring it continues the bench exactly."""
        with self.lock:
            return {
                "model": self.model.get_state(),
                "swept": self._swept,
                "busy_s": dict(self.busy_s),
                "sensor_rng": self.sensor_rng.bit_generator.state,
                **({"parts": self.parts.get_state()} if self.parts is not None else {}),
            }

    def set_state(self, state: dict) -> None:
        with self.lock:
            self.model.set_state(state["model"])
            self._swept = state["swept"]
            self.busy_s.update({name: float(t) for name, t in state.get("busy_s", {}).items()})
            if "sensor_rng" in state:
                self.sensor_rng.bit_generator.state = state["sensor_rng"]
            if self.parts is not None and "parts" in state:
                self.parts.set_state(state["parts"])

    @property
    def instruments(self) -> dict[str, BenchInstrument]:
        named = {generator.name: generator for generator in self.generators}
        named.update({"ring": self.ring} if self.parts is None else self.parts.instruments)
        named["analyzer"] = self.analyzer
        return named

    def __getitem__(self, name: str) -> BenchInstrument:
        return self.instruments[name]

    def reset(self) -> None:
        """``*RST`` every instrument."""
        with self.lock:
            for instrument in self.instruments.values():
                instrument.reset()


__all__ = [
    "SimulatedBench",
    "BenchInstrument",
    "SimulatedSignalGenerator",
    "SimulatedE8267C",
    "SimulatedMxg",
    "SimulatedExg",
    "SimulatedAnritsuGenerator",
    "SimulatedRingController",
    "SimulatedSpectrumAnalyzer",
    "SimulatedXSeriesAnalyzer",
    "SimulatedFsxAnalyzer",
    "GENERATOR_MODELS",
    "ANALYZER_MODELS",
    "generator_class",
    "analyzer_class",
    "auto_resolution_bandwidth",
    "ieee_block",
]
