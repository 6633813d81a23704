"""The ring as a lab builds it: simulated loop attenuators, coil supply, gaussmeter and temperature controller.

This module owns the *state and dialects* of the instruments that set a real ring's loop gain, bias field
and read its temperature, and :class:`RingParts`, which puts one of each on a
:class:`~labpgt.instruments.simulated.devices.SimulatedBench` in place of the ring controller. They feed
the one ring model (docs/ring-physics.md §13): the loop attenuator's attenuation takes the loop gain down
from ``unattenuated_loop_gain_db``; the coil current makes the field through the magnet's calibration
(``coil_mt_per_a``) and its remanence (``remanence_mt``, + on the branch coming down, − going up), then
the laboratory's temperature coefficient and supply wander (:mod:`.laboratory`); the Hall probe reads that
field with its offset and noise; the temperature controller's input A reads the film's sensor (its lag and
noise). Their dialects, as the stock drivers speak them:

=====================  ==========================================================================================
instrument             commands
=====================  ==========================================================================================
``hp11713``            Agilent 11713C attenuator/switch driver (``*IDN?``): the 11713A's legacy switch strings
                       ``A1234B5678`` (A: section in, B: out; bank X = 1-4 an 8494 0-11 dB, bank Y = 5-8 an 8496
                       0-110 dB) and ``:ATTenuator:X|Y <dB>`` / ``?``; ``*OPC?``
``weinschel``          Weinschel/API 8320 programmable attenuator, 0-60 dB in 2 dB: ``ATTN ALL|CH1|1 <dB>``,
                       ``ATTN? 1``; messages end in CR, answers in CR LF
``rcdat``              Mini-Circuits RCDAT-6000-90 over its LAN (Telnet) commands, 0-90 dB in 0.25 dB:
                       ``:SETATT=<dB>`` (answers ``1``), ``:ATT?``, ``:MN?``, ``:SN?``, ``:FIRMWARE?``; no ``*IDN?``
``vca``                Keysight E3631A triple DC supply whose +6 V output drives a voltage-controlled attenuator
                       (``vca_curve``: volts → dB): ``INSTrument:NSELect|SELect``, ``VOLTage``, ``CURRent``,
                       ``OUTPut``, ``MEASure:VOLTage|CURRent?``, ``APPLy``
``kepco``              Kepco BOP 36-12M with the BIT 4886 card: ``FUNCtion:MODE VOLT|CURR`` (``?``: 0|1),
                       ``CURRent``/``VOLTage`` set points (±12 A, ±36 V), ``OUTPut``, ``MEASure:CURRent|VOLTage?``,
                       ``SYSTem:BEEP``, ``DIAG:TST?``; in current mode the coil's current is the set point (up to
                       the voltage limit over ``coil_resistance_ohm``)
``ls421``              Lake Shore 421 gaussmeter: ``FIELD?``/``FIELDM?`` (value and multiplier), ``UNIT G|T``,
                       ``RANGE 0-3``, ``AUTO``, ``FAST``, ``ACDC``, ``TYPE?``, ``SNUM?``, ``FILT``, ``ZCAL``,
                       ``MAX``/``MAXR?``/``MAXC``, ``REL``/``RELR?``/``RELS``; answers end in CR LF
``ls425``              Lake Shore 425 gaussmeter: ``RDGFIELD?``, ``UNIT 1-4`` (G, T, Oe, A/m), ``RANGE 1-4``,
                       ``AUTO``, ``RDGMODE``, ``ZPROBE``; answers end in CR LF
``ls336``              Lake Shore 336 temperature controller: ``KRDG?|CRDG?|SRDG? A-D`` (input A: the film's
                       sensor; B-D: the room), ``RDGST?``, ``INNAME``, ``SETP``, ``RANGE``, ``HTR?``, ``MOUT``
                       (stored: no heater acts);
                       answers end in CR LF
=====================  ==========================================================================================

Every one also answers the common commands of :mod:`.scpi` (the Mini-Circuits box's ``*IDN?`` excepted). The
Hall probe's noise is drawn from the bench's sensor generator, one draw per reading (a closed loop reads it
several times; its state is part of the bench's checkpoint).
"""

from __future__ import annotations

import math
import re

import numpy as np

from .devices import BenchInstrument
from .scpi import Boolean, Choice, CommandTable, Numeric, ScpiError, add_setting, format_number

KELVIN = 273.15


# ---------------------------------------------------------------------------------------------
# Loop attenuators
# ---------------------------------------------------------------------------------------------


class LoopAttenuator(BenchInstrument):
    """An attenuator in the ring's loop: ``attenuation_db`` takes the loop gain down."""

    PRESET_ATTENUATION_DB = 0.0

    @property
    def attenuation_db(self) -> float:
        raise NotImplementedError


class Simulated11713(LoopAttenuator):
    """Agilent 11713C driving an 8494 (X: 1, 2, 4, 4 dB) and an 8496 (Y: 10, 20, 40, 40 dB); see the module
    docstring."""

    SECTIONS_DB = {1: 1.0, 2: 2.0, 3: 4.0, 4: 4.0, 5: 10.0, 6: 20.0, 7: 40.0, 8: 40.0}
    BANKS = {"X": (1, 2, 3, 4), "Y": (5, 6, 7, 8)}
    LEGACY = re.compile(r"^(?:[AB][0-9]+)+$")

    def __init__(self, bench, name: str = "attenuator"):
        self.identity = "Agilent Technologies,11713C,SIM000001,1.1"
        super().__init__(bench, name)

    def reset(self) -> None:
        self.section_in = dict.fromkeys(range(10), False)  # switches 1-8 (and 9, 0: free)

    @property
    def attenuation_db(self) -> float:
        return sum(db for ch, db in self.SECTIONS_DB.items() if self.section_in[ch])

    def translate(self, message: str) -> str:
        """The 11713A's switch strings (``A12B34``) as one unit each; anything else is SCPI."""
        units = []
        for unit in message.split(";"):
            text = unit.strip().upper().replace(" ", "")
            units.append(f":SWITch {text}" if text and self.LEGACY.match(text) else unit)
        return ";".join(units)

    def switch(self, text: str) -> None:
        for polarity, channels in re.findall(r"([AB])([0-9]+)", text.upper()):
            for ch in channels:
                self.section_in[int(ch)] = polarity == "A"

    def set_bank(self, bank: str, db: float) -> None:
        channels = self.BANKS[bank]
        steps = [self.SECTIONS_DB[ch] for ch in channels]
        for combination in range(16):
            bits = [(combination >> i) & 1 for i in range(4)]
            if math.isclose(sum(b * s for b, s in zip(bits, steps)), db, abs_tol=1e-9):
                for ch, bit in zip(channels, bits):
                    self.section_in[ch] = bool(bit)
                return
        raise ScpiError(-222, f"{db:g} dB on bank {bank}")

    def bank_db(self, bank: str) -> float:
        return sum(self.SECTIONS_DB[ch] for ch in self.BANKS[bank] if self.section_in[ch])

    def declare_commands(self, table: CommandTable) -> None:
        table.add(":SWITch", setter=self.switch, parameters=(_Text(),))
        for bank in self.BANKS:
            table.add(
                f":ATTenuator:{bank}",
                setter=lambda db, b=bank: self.set_bank(b, db),
                query=lambda b=bank: format_number(self.bank_db(b)),
                parameters=(Numeric("DB", 0, 110),),
            )


class SimulatedWeinschel(LoopAttenuator):
    """Weinschel/API 8320: 0-60 dB in 2 dB steps, CR-terminated (see the module docstring)."""

    STEP_DB = 2.0
    MAX_DB = 60.0
    message_terminators = b"\r\n"
    answer_terminator = b"\r\n"

    def __init__(self, bench, name: str = "attenuator"):
        self.identity = "Weinschel,8320,SIM000001,2.10"
        super().__init__(bench, name)

    def reset(self) -> None:
        self.attenuation = 0.0

    @property
    def attenuation_db(self) -> float:
        return self.attenuation

    def translate(self, message: str) -> str:
        """``ATTN ALL 06`` / ``ATTN CH1 6`` / ``ATTN 1 6`` as ``ATTN 6``; ``ATTN? 1`` as ``ATTN?``."""
        return re.sub(
            r"(?i)^\s*ATTN\s+(?:ALL|CH\d+|\d+(?=\s))\s*", "ATTN ", re.sub(r"(?i)^\s*ATTN\?\s*\S*\s*$", "ATTN?", message)
        )

    def set_attenuation(self, db: float) -> None:
        if abs(db / self.STEP_DB - round(db / self.STEP_DB)) > 1e-9:
            raise ScpiError(-222, f"{db:g} dB is not a multiple of {self.STEP_DB:g} dB")
        self.attenuation = float(db)

    def declare_commands(self, table: CommandTable) -> None:
        table.add(
            "ATTN",
            setter=self.set_attenuation,
            query=lambda: f"{self.attenuation:g}",
            parameters=(Numeric("DB", 0.0, self.MAX_DB),),
        )


class SimulatedRcdat(LoopAttenuator):
    """Mini-Circuits RCDAT-6000-90 over its LAN commands (see the module docstring)."""

    STEP_DB = 0.25
    MAX_DB = 90.0
    MODEL = "RCDAT-6000-90"

    def __init__(self, bench, name: str = "attenuator"):
        self.identity = f"Mini-Circuits,{self.MODEL},11904010001,C8"
        super().__init__(bench, name)

    def reset(self) -> None:
        self.attenuation = 0.0

    @property
    def attenuation_db(self) -> float:
        return self.attenuation

    def translate(self, message: str) -> str:
        return re.sub(r"(?i):SETATT=", ":SETATT ", message)

    def set_attenuation(self, db: float) -> str:
        self.attenuation = round(db / self.STEP_DB) * self.STEP_DB
        return "1"

    def declare_commands(self, table: CommandTable) -> None:
        # :SETATT=<dB> answers 1 (done) or 0: a setting that is answered, as the box does
        table.add(":SETATT?", query=self.set_attenuation, query_parameters=(Numeric("DB", 0.0, self.MAX_DB),))
        table.add(":ATT?", query=lambda: f"{self.attenuation:.2f}")
        table.add(":MN?", query=lambda: f"MN={self.MODEL}")
        table.add(":SN?", query=lambda: "SN=11904010001")
        table.add(":FIRMWARE?", query=lambda: "FIRMWARE=C8")

    def handle(self, message: str | bytes) -> bytes:
        text = message.decode("latin-1") if isinstance(message, (bytes, bytearray)) else message
        if re.match(r"(?i)^\s*:SETATT=", text):  # a setting that answers: run it as the query it is
            text = re.sub(r"(?i)^\s*:SETATT=\s*(\S+)", r":SETATT? \1", text)
        if text.strip().upper().startswith("*IDN"):  # the box has no *IDN?: it does not answer
            return b""
        return super().handle(text)


class SimulatedDcSource(LoopAttenuator):
    """Keysight E3631A whose +6 V output drives a voltage-controlled attenuator (see the module docstring)."""

    OUTPUTS = {1: ("P6V", 0.0, 6.18, 5.15), 2: ("P25V", 0.0, 25.75, 1.03), 3: ("N25V", -25.75, 0.0, 1.03)}

    def __init__(self, bench, name: str = "attenuator"):
        self.identity = "Agilent Technologies,E3631A,0,2.1-5.0-1.0"
        super().__init__(bench, name)

    def reset(self) -> None:
        self.selected = 1
        self.volts = {1: 0.0, 2: 0.0, 3: 0.0}
        self.amps = {1: 5.0, 2: 1.0, 3: 1.0}
        self.output_on = False
        self.tracking = False

    @property
    def control_volts(self) -> float:
        return self.volts[1] if self.output_on else 0.0

    @property
    def attenuation_db(self) -> float:
        curve = np.asarray(self.bench.model.params.vca_curve, dtype=float)
        return float(np.interp(self.control_volts, curve[:, 0], curve[:, 1]))

    def set_voltage(self, volts: float) -> None:
        _, low, high, _ = self.OUTPUTS[self.selected]
        if not low <= volts <= high:
            raise ScpiError(-222, f"{volts:g} V on {self.OUTPUTS[self.selected][0]}")
        self.volts[self.selected] = float(volts)

    def set_current(self, amps: float) -> None:
        if not 0.0 <= amps <= self.OUTPUTS[self.selected][3]:
            raise ScpiError(-222, f"{amps:g} A")
        self.amps[self.selected] = float(amps)

    def select(self, name: str) -> None:
        self.selected = next(n for n, out in self.OUTPUTS.items() if out[0] == name.upper())

    def apply(self, name: str, volts: float, amps: float | None = None) -> None:
        self.select(name)
        self.set_voltage(volts)
        if amps is not None:
            self.set_current(amps)

    def declare_commands(self, table: CommandTable) -> None:
        table.add(
            ":INSTrument:NSELect",
            setter=lambda n: setattr(self, "selected", n),
            query=lambda: str(self.selected),
            parameters=(Numeric("", 1, 3, integer=True),),
        )
        table.add(
            ":INSTrument[:SELect]",
            setter=self.select,
            query=lambda: self.OUTPUTS[self.selected][0],
            parameters=(Choice(["P6V", "P25V", "N25V"]),),
        )
        table.add(
            "[:SOURce]:VOLTage[:LEVel][:IMMediate][:AMPLitude]",
            setter=self.set_voltage,
            query=lambda: format_number(self.volts[self.selected]),
            parameters=(Numeric("V", -30, 30),),
        )
        table.add(
            "[:SOURce]:CURRent[:LEVel][:IMMediate][:AMPLitude]",
            setter=self.set_current,
            query=lambda: format_number(self.amps[self.selected]),
            parameters=(Numeric("A", 0, 10),),
        )
        table.add(
            ":APPLy",
            setter=self.apply,
            query=lambda: f'"{self.volts[self.selected]:.6f},{self.amps[self.selected]:.6f}"',
            parameters=(Choice(["P6V", "P25V", "N25V"]), Numeric("V", -30, 30), Numeric("A", 0, 10, optional=True)),
        )
        add_setting(table, self, ":OUTPut[:STATe]", "output_on", Boolean())
        add_setting(table, self, ":OUTPut:TRACk[:STATe]", "tracking", Boolean())
        table.add(
            ":MEASure[:SCALar]:VOLTage[:DC]?",
            query=lambda: format_number(self.volts[self.selected] if self.output_on else 0.0),
        )
        table.add(":MEASure[:SCALar]:CURRent[:DC]?", query=lambda: format_number(0.0005 if self.output_on else 0.0))


# ---------------------------------------------------------------------------------------------
# The coil's supply
# ---------------------------------------------------------------------------------------------


class SimulatedKepcoBop(BenchInstrument):
    """Kepco BOP 36-12M (BIT 4886) driving the electromagnet's coil (see the module docstring)."""

    MAX_CURRENT_A = 12.0
    MAX_VOLTAGE_V = 36.0

    def __init__(self, bench, name: str = "magnet"):
        self.identity = "KEPCO,BOP 36-12M,SIM000001,2.03"
        self.branch = 0.0  # +1 on the branch coming down, -1 going up, 0 never magnetised
        self.last_current_a = 0.0
        super().__init__(bench, name)

    def reset(self) -> None:
        self.mode = "VOLT"
        self.current_setpoint = 0.0
        self.voltage_setpoint = 0.0
        self.output_on = False
        self._follow()

    @property
    def current_a(self) -> float:
        """The coil's current: the set point in current mode (as far as the voltage limit lets it)."""
        if not self.output_on:
            return 0.0
        resistance = self.bench.model.params.coil_resistance_ohm
        if self.mode == "CURR":
            limit = (
                abs(self.voltage_setpoint) / resistance if self.voltage_setpoint else self.MAX_VOLTAGE_V / resistance
            )
            return float(np.clip(self.current_setpoint, -limit, limit))
        return float(
            np.clip(self.voltage_setpoint / resistance, -abs(self.current_setpoint), abs(self.current_setpoint))
        )

    @property
    def cold_field_mt(self) -> float:
        """The magnet's field at room temperature for the present current: calibration plus remanence."""
        p = self.bench.model.params
        return p.magnet_calibration * p.coil_mt_per_a * self.current_a + p.remanence_mt * self.branch

    def _follow(self) -> None:
        """The iron's branch follows the current's last direction of travel."""
        current = self.current_a
        if current != self.last_current_a:
            self.branch = 1.0 if current < self.last_current_a else -1.0
            self.last_current_a = current

    def _set(self, attribute: str, value) -> None:
        setattr(self, attribute, value)
        self._follow()

    def declare_commands(self, table: CommandTable) -> None:
        table.add(
            "[:SOURce]:FUNCtion:MODE",
            setter=lambda m: self._set("mode", m),
            query=lambda: "1" if self.mode == "CURR" else "0",
            parameters=(Choice(["VOLT", "CURR"]),),
        )
        table.add(
            "[:SOURce]:CURRent[:LEVel][:IMMediate][:AMPLitude]",
            setter=lambda a: self._set("current_setpoint", a),
            query=lambda: format_number(self.current_setpoint),
            parameters=(Numeric("A", -self.MAX_CURRENT_A, self.MAX_CURRENT_A),),
        )
        table.add(
            "[:SOURce]:VOLTage[:LEVel][:IMMediate][:AMPLitude]",
            setter=lambda v: self._set("voltage_setpoint", v),
            query=lambda: format_number(self.voltage_setpoint),
            parameters=(Numeric("V", -self.MAX_VOLTAGE_V, self.MAX_VOLTAGE_V),),
        )
        table.add(
            ":OUTPut[:STATe]",
            setter=lambda on: self._set("output_on", on),
            query=lambda: "1" if self.output_on else "0",
            parameters=(Boolean(),),
        )
        resistance = self.bench.model.params.coil_resistance_ohm
        table.add(":MEASure[:SCALar]:CURRent[:DC]?", query=lambda: format_number(round(self.current_a, 5)))
        table.add(":MEASure[:SCALar]:VOLTage[:DC]?", query=lambda: format_number(round(self.current_a * resistance, 4)))
        table.add(":SYSTem:BEEP", setter=lambda: None)
        table.add(":DIAGnostic:TST?", query=lambda: "0")


# ---------------------------------------------------------------------------------------------
# Gaussmeters
# ---------------------------------------------------------------------------------------------


class Gaussmeter(BenchInstrument):
    """A Hall probe in the magnet's gap beside the film: the gap's field, its offset and noise."""

    answer_terminator = b"\r\n"

    def field_mt(self) -> float:
        """One reading (mT): the gap's field now, the probe's offset, one noise draw."""
        bench = self.bench
        p = bench.model.params
        noise = p.hall_noise_mt * float(bench.sensor_rng.standard_normal()) if bench.model.noise else 0.0
        return bench.model.lab.gap_field_mt(bench.parts.magnet.cold_field_mt) + p.hall_offset_mt + noise


class SimulatedGaussmeter421(Gaussmeter):
    """Lake Shore 421 (see the module docstring): 4¾ digits, ranges 30 kG … 30 G (high-stability probe)."""

    RANGES_G = (30e3, 3e3, 300.0, 30.0)
    MULTIPLIERS = ((1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "u"))

    def __init__(self, bench, name: str = "gaussmeter"):
        self.identity = "LSCI,MODEL421,SIM000001,1.5"
        self.alarm = {"ALARM": 0, "ALMB": 0, "ALMSORT": 0}
        self.alarm_limits = {"ALML": 0.0, "ALMH": 0.0}
        super().__init__(bench, name)

    def reset(self) -> None:
        self.unit = "G"
        self.range = 1
        self.auto = True
        self.fast = False
        self.ac = False
        self.filter_on = False
        self.locked = False
        self.brightness = 4
        self.max_hold = False
        self.max_field_g = 0.0
        self.relative = False
        self.relative_setpoint = 0.0
        self.alarm.update(dict.fromkeys(self.alarm, 0))
        self.alarm_limits.update(dict.fromkeys(self.alarm_limits, 0.0))

    def _reading(self) -> tuple[float, str]:
        """The field in the unit shown, split into value and multiplier (``OL`` past the range)."""
        gauss = self.field_mt() * 10.0
        if self.auto:
            self.range = next((i for i in range(3, -1, -1) if abs(gauss) < self.RANGES_G[i] * 0.99), 0)
        if abs(gauss) >= self.RANGES_G[self.range]:
            return math.nan, ""
        self.max_field_g = max(self.max_field_g, abs(gauss)) if self.max_hold else self.max_field_g
        value = gauss if self.unit == "G" else gauss * 1e-4
        return _split_multiplier(value, self.MULTIPLIERS)

    def field_answer(self) -> str:
        value, _ = self._reading()
        return "OL" if math.isnan(value) else f"{value:+.4g}"

    def multiplier_answer(self) -> str:
        return self._reading()[1]

    def declare_commands(self, table: CommandTable) -> None:
        flags = {
            "AUTO": "auto",
            "FAST": "fast",
            "ACDC": "ac",
            "FILT": "filter_on",
            "LOCK": "locked",
            "MAX": "max_hold",
            "REL": "relative",
        }
        table.add("FIELD?", query=self.field_answer)
        table.add("FIELDM?", query=self.multiplier_answer)
        table.add(
            "UNIT", setter=lambda u: setattr(self, "unit", u), query=lambda: self.unit, parameters=(Choice(["G", "T"]),)
        )
        add_setting(table, self, "RANGE", "range", Numeric("", 0, 3, integer=True))
        for header, attribute in flags.items():
            table.add(
                header,
                setter=lambda on, a=attribute: setattr(self, a, on),
                query=lambda a=attribute: "1" if getattr(self, a) else "0",
                parameters=(Boolean(),),
            )
        add_setting(table, self, "BRIGT", "brightness", Numeric("", 0, 7, integer=True))
        table.add("TYPE?", query=lambda: "1")
        table.add("SNUM?", query=lambda: "H421-0001")
        table.add("ZCAL", setter=lambda: None)
        table.add("MAXR?", query=lambda: format_number(self.max_field_g))
        table.add("MAXC", setter=lambda: setattr(self, "max_field_g", 0.0))
        table.add("RELR?", query=lambda: f"{self.field_mt() * 10.0 - self.relative_setpoint:+.4g}")
        table.add("RELRM?", query=lambda: "")
        add_setting(table, self, "RELS", "relative_setpoint", Numeric("", -3e4, 3e4))
        for header in self.alarm:
            table.add(
                header,
                setter=lambda v, h=header: self.alarm.__setitem__(h, int(v)),
                query=lambda h=header: str(self.alarm[h]),
                parameters=(Numeric("", 0, 1, integer=True),),
            )
        table.add("ALMS?", query=lambda: "0")
        for header in self.alarm_limits:
            table.add(
                header,
                setter=lambda v, h=header: self.alarm_limits.__setitem__(h, v),
                query=lambda h=header: format_number(self.alarm_limits[h]),
                parameters=(Numeric("", -3e4, 3e4),),
            )
            table.add(f"{header}M?", query=lambda: "")


class SimulatedGaussmeter425(Gaussmeter):
    """Lake Shore 425 (see the module docstring): ranges 35 G … 35 kG."""

    UNITS = {1: 1.0, 2: 1e-4, 3: 1.0, 4: 1e3 / (4 * math.pi)}  # from gauss: G, T, Oe (in air), A/m

    def __init__(self, bench, name: str = "gaussmeter"):
        self.identity = "LSCI,MODEL425,SIM000001,1.0"
        super().__init__(bench, name)

    def reset(self) -> None:
        self.unit = 1
        self.range = 3
        self.mode = (1, 0, 1)

    def declare_commands(self, table: CommandTable) -> None:
        table.add("RDGFIELD?", query=lambda: f"{self.field_mt() * 10.0 * self.UNITS[self.unit]:+.5g}")
        add_setting(table, self, "UNIT", "unit", Numeric("", 1, 4, integer=True))
        add_setting(table, self, "RANGE", "range", Numeric("", 1, 4, integer=True))
        table.add("AUTO", setter=lambda: None)
        table.add(
            "RDGMODE",
            setter=lambda a, b, c: setattr(self, "mode", (a, b, c)),
            query=lambda: ",".join(str(v) for v in self.mode),
            parameters=(
                Numeric("", 1, 2, integer=True),
                Numeric("", 0, 1, integer=True),
                Numeric("", 1, 2, integer=True),
            ),
        )
        table.add("ZPROBE", setter=lambda: None)


# ---------------------------------------------------------------------------------------------
# Temperature controller
# ---------------------------------------------------------------------------------------------


class SimulatedTemperatureController(BenchInstrument):
    """Lake Shore 336 (see the module docstring): input A on the ring's film, B-D in the room."""

    answer_terminator = b"\r\n"
    INPUTS = ("A", "B", "C", "D")

    def __init__(self, bench, name: str = "thermometer"):
        self.identity = "LSCI,MODEL336,SIM000001,2.9"
        self.setpoints, self.ranges, self.manual, self.names = {}, {}, {}, {}
        super().__init__(bench, name)

    def reset(self) -> None:
        self.setpoints.update(dict.fromkeys(range(1, 5), 0.0))
        self.ranges.update(dict.fromkeys(range(1, 5), 0))
        self.manual.update(dict.fromkeys(range(1, 5), 0.0))
        self.names.update({ch: f"Input {ch}" for ch in self.INPUTS})

    def celsius(self, channel: str) -> float:
        lab = self.bench.model.lab
        return lab.temperature_c if channel == "A" else self.bench.model.params.room_temperature_c

    def declare_commands(self, table: CommandTable) -> None:
        channel = (Choice(list(self.INPUTS)),)
        output = Numeric("", 1, 4, integer=True)
        table.add("KRDG?", query=lambda ch: f"{self.celsius(ch) + KELVIN:+.4f}", query_parameters=channel)
        table.add("CRDG?", query=lambda ch: f"{self.celsius(ch):+.4f}", query_parameters=channel)
        table.add(
            "SRDG?", query=lambda ch: f"{1000.0 * (1 + 3.85e-3 * self.celsius(ch)):+.4f}", query_parameters=channel
        )
        for header, store, value in (
            ("SETP", self.setpoints, Numeric("", 0, 1500)),
            ("RANGE", self.ranges, Numeric("", 0, 3, integer=True)),
            ("MOUT", self.manual, Numeric("", 0, 100)),
        ):
            table.add(
                header,
                setter=lambda out, v, s=store: s.__setitem__(out, v),
                query=lambda out, s=store: format_number(s[out]) if not isinstance(s[out], int) else str(s[out]),
                parameters=(output, value),
                query_parameters=(output,),
            )
        table.add("HTR?", query=lambda out: "+000.0", query_parameters=(output,))
        table.add("RDGST?", query=lambda ch: "000", query_parameters=channel)  # a valid reading: no status bit
        table.add(
            "INNAME",
            setter=lambda ch, text: self.names.__setitem__(ch, text.strip('"')[:15]),
            query=lambda ch: self.names[ch],
            parameters=(*channel, _Text()),
            query_parameters=channel,
        )


# ---------------------------------------------------------------------------------------------
# The parts of one ring
# ---------------------------------------------------------------------------------------------

ATTENUATOR_MODELS = {
    "hp11713": Simulated11713,
    "weinschel": SimulatedWeinschel,
    "rcdat": SimulatedRcdat,
    "vca": SimulatedDcSource,
}
GAUSSMETER_MODELS = {"ls421": SimulatedGaussmeter421, "ls425": SimulatedGaussmeter425}


class RingParts:
    """The ring's loop attenuator, coil supply, gaussmeter and temperature controller on one bench: what the
    ring model sees of them (:meth:`loop_gain_setpoint_db`, :meth:`cold_field_mt`, the amplifier always on)."""

    amplifier_on = True

    def __init__(self, bench, attenuator: str = "hp11713", gaussmeter: str = "ls421"):
        if attenuator not in ATTENUATOR_MODELS or gaussmeter not in GAUSSMETER_MODELS:
            raise ValueError(
                f"unknown ring parts {attenuator!r}/{gaussmeter!r}; attenuators: "
                f"{', '.join(ATTENUATOR_MODELS)}; gaussmeters: {', '.join(GAUSSMETER_MODELS)}"
            )
        self.attenuator = ATTENUATOR_MODELS[attenuator](bench)
        self.magnet = SimulatedKepcoBop(bench)
        self.gaussmeter = GAUSSMETER_MODELS[gaussmeter](bench)
        self.thermometer = SimulatedTemperatureController(bench)
        self.params = bench.model.params

    @property
    def instruments(self) -> dict:
        return {
            "attenuator": self.attenuator,
            "magnet": self.magnet,
            "gaussmeter": self.gaussmeter,
            "thermometer": self.thermometer,
        }

    @property
    def loop_gain_setpoint_db(self) -> float:
        return self.params.unattenuated_loop_gain_db - self.attenuator.attenuation_db

    @property
    def cold_field_mt(self) -> float:
        return self.magnet.cold_field_mt

    def settled_state(self) -> dict:
        return {"field_mt": self.magnet.current_a, "ring": [self.attenuator.attenuation_db, True]}

    def get_state(self) -> dict:
        return {"branch": self.magnet.branch, "last_current_a": self.magnet.last_current_a}

    def set_state(self, state: dict) -> None:
        self.magnet.branch = float(state["branch"])
        self.magnet.last_current_a = float(state["last_current_a"])


def _split_multiplier(value: float, multipliers) -> tuple[float, str]:
    """``value`` as (mantissa, multiplier letter) with the mantissa in [1, 1000) (or 0)."""
    for factor, letter in multipliers:
        if abs(value) >= factor or factor == multipliers[-1][0]:
            return value / factor, letter
    return value, ""


class _Text(Numeric):
    """A parameter taken as its text (the 11713A's switch strings)."""

    def parse(self, text: str) -> str:  # type: ignore[override]
        return text


__all__ = [
    "RingParts",
    "ATTENUATOR_MODELS",
    "GAUSSMETER_MODELS",
    "Simulated11713",
    "SimulatedWeinschel",
    "SimulatedRcdat",
    "SimulatedDcSource",
    "SimulatedKepcoBop",
    "SimulatedGaussmeter421",
    "SimulatedGaussmeter425",
    "SimulatedTemperatureController",
]
