"""PyMeasure drivers for the ring's controls as a lab builds them, and the Tabor Lucid generators.

Each subclasses PyMeasure's stock driver where one exists and adds the bench's one-message state
(``send_state`` ending in a confirmation read later with :func:`~labpgt.instruments.drivers.read_confirmation`,
``read_state`` in one query) and its limits as ``MIN_``/``MAX_`` class attributes:

* loop attenuators (state: ``attenuation_db``): :class:`StepAttenuatorDriver` (PyMeasure's
  :class:`~pymeasure.instruments.hp.HP11713A` with an 8494 on bank X and an 8496 on bank Y, 0-121 dB
  in 1 dB; read back through the 11713C's ``:ATT:X?``), :class:`WeinschelAttenuator` (8320, 0-60 dB in
  2 dB), :class:`MiniCircuitsAttenuator` (RCDAT over its LAN commands, 0-90 dB in 0.25 dB; ``:SETATT=``
  answers its own confirmation) and :class:`VcaSource` (PyMeasure's
  :class:`~pymeasure.instruments.keysight.KeysightE3631A` feeding a voltage-controlled attenuator through
  a calibration table of (volts, dB));
* :class:`CoilSupply` — PyMeasure's :class:`~pymeasure.instruments.kepco.KepcoBOP3612` in current mode;
* :class:`Gaussmeter421`, :class:`Gaussmeter425` — PyMeasure's Lake Shore 421 and 425, read in mT;
* :class:`TemperatureController` — PyMeasure's :class:`~pymeasure.instruments.lakeshore.LakeShore3xx`, one input
  in °C;
* :class:`TaborGenerator` — the Tabor Electronics Lucid (LS and Lucid X) RF generators, the generators'
  ``send_state``/``read_state`` (no stock driver exists).

The field's closed loop (current supply and gaussmeter together) is the bench's: :mod:`labpgt.bench.field`.
"""

from __future__ import annotations

import numpy as np
from pymeasure.instruments import Instrument, SCPIMixin
from pymeasure.instruments.hp import HP11713A
from pymeasure.instruments.hp.hp11713a import Attenuator_11dB, Attenuator_110dB
from pymeasure.instruments.kepco import KepcoBOP3612
from pymeasure.instruments.keysight import KeysightE3631A
from pymeasure.instruments.lakeshore import LakeShore3xx, LakeShore421, LakeShore425
from pymeasure.instruments.validators import strict_range

from labpgt.instruments.drivers import BOOLEAN_VALUES, GeneratorState, _fields, read_confirmation

GAUSS_PER_MT = 10.0


class AttenuatorState:
    """The bench's one-message state of a loop attenuator: ``attenuation_db`` in the driver's steps."""

    MIN_ATTENUATION_DB = 0.0
    MAX_ATTENUATION_DB = 0.0
    ATTENUATION_STEP_DB = 1.0

    def quantised(self, attenuation_db: float) -> float:
        return quantise(attenuation_db, self.ATTENUATION_STEP_DB)

    def checked(self, attenuation_db: float) -> float:
        strict_range(attenuation_db, [self.MIN_ATTENUATION_DB, self.MAX_ATTENUATION_DB])
        return self.quantised(attenuation_db)


def quantise(value: float, step: float) -> float:
    return float(round(round(value / step) * step, 9))


class StepAttenuatorDriver(AttenuatorState, HP11713A):
    """HP/Agilent 11713 switch driver with an 8494 (0-11 dB, bank X) and an 8496 (0-110 dB, bank Y)."""

    ATTENUATOR_X = Attenuator_11dB
    ATTENUATOR_Y = Attenuator_110dB
    MAX_ATTENUATION_DB = 121.0
    X_CHANNELS = (1, 2, 3, 4)
    Y_CHANNELS = (5, 6, 7, 8)

    def __init__(self, adapter, name="HP/Agilent 11713 attenuator driver", **kwargs):
        # the stock class asks for VI_ATTR_SEND_END_EN (GPIB's EOI), which a raw socket has not: pyvisa-py refuses it
        Instrument.__init__(self, adapter, name, includeSCPI=False, **kwargs)

    def switch_string(self, attenuation_db: float) -> str:
        """The 11713A's switch string that puts ``attenuation_db`` in: tens on Y, the rest (0-11) on X."""
        total = int(round(self.checked(attenuation_db)))
        y = min(110, total // 10 * 10)
        x = total - y
        sections = dict(zip(self.X_CHANNELS, self.ATTENUATOR_X[x])) | dict(zip(self.Y_CHANNELS, self.ATTENUATOR_Y[y]))
        closed = "".join(str(ch) for ch, on in sections.items() if on)
        opened = "".join(str(ch) for ch, on in sections.items() if not on)
        return (f"A{closed}" if closed else "") + (f"B{opened}" if opened else "")

    def send_state(self, attenuation_db: float) -> None:
        self.write(f"{self.switch_string(attenuation_db)};*OPC?")

    def read_state(self) -> tuple[float]:
        x, y = _fields(self.ask(":ATT:X?;:ATT:Y?"), 2)
        return (x + y,)


class WeinschelAttenuator(AttenuatorState, SCPIMixin, Instrument):
    """Weinschel/API 8320 programmable attenuator (0-60 dB in 2 dB)."""

    MAX_ATTENUATION_DB = 60.0
    ATTENUATION_STEP_DB = 2.0

    attenuation = Instrument.control(
        "ATTN? 1",
        "ATTN ALL %02d",
        """Control the attenuation in dB (0-60, even).""",
        validator=strict_range,
        values=[0, 60],
    )

    def __init__(self, adapter, name="Weinschel 8320 attenuator", **kwargs):
        super().__init__(adapter, name=name, **kwargs)

    def send_state(self, attenuation_db: float) -> None:
        self.write("ATTN ALL %02d;*OPC?" % int(round(self.checked(attenuation_db))))

    def read_state(self) -> tuple[float]:
        return (float(self.ask("ATTN? 1")),)


class MiniCircuitsAttenuator(AttenuatorState, Instrument):
    """Mini-Circuits RCDAT programmable attenuator over its LAN (Telnet) commands (0-90 dB in 0.25 dB).

    The box has no ``*IDN?``: it is identified by ``:MN?`` (:meth:`identify`)."""

    MAX_ATTENUATION_DB = 90.0
    ATTENUATION_STEP_DB = 0.25

    def __init__(self, adapter, name="Mini-Circuits RCDAT attenuator", **kwargs):
        super().__init__(adapter, name=name, includeSCPI=False, **kwargs)

    def identify(self) -> str:
        """``Mini-Circuits,<model>,<serial>,<firmware>`` from the box's own queries."""
        model, serial = (self.ask(q).strip().split("=", 1)[-1] for q in (":MN?", ":SN?"))
        return f"Mini-Circuits,{model},{serial},{self.ask(':FIRMWARE?').strip().split('=', 1)[-1]}"

    def send_state(self, attenuation_db: float) -> None:
        """``:SETATT=<dB>``, which the box answers with ``1`` (read as the confirmation)."""
        self.write(":SETATT=%.2f" % self.checked(attenuation_db))

    def read_state(self) -> tuple[float]:
        return (float(self.ask(":ATT?")),)


class VcaSource(AttenuatorState, KeysightE3631A):
    """A voltage-controlled attenuator driven by a Keysight E3631A's +6 V output, through a calibration table.

    ``calibration`` holds (volts, dB) pairs, monotonic in dB (the bench config's ``calibration``); the
    attenuation is mapped to volts by linear interpolation, and read back the same way."""

    MAX_ATTENUATION_DB = float("inf")  # the calibration table's range (set by calibrate)
    ATTENUATION_STEP_DB = 0.01
    MAX_VOLTS = 6.0

    def __init__(self, adapter, name="Keysight E3631A driving a VCA", **kwargs):
        super().__init__(adapter, name=name, **kwargs)
        self.calibration = np.zeros((0, 2))

    def calibrate(self, table) -> None:
        table = np.asarray(table, dtype=float)
        order = np.argsort(table[:, 1])
        self.calibration = table[order]
        self.MIN_ATTENUATION_DB, self.MAX_ATTENUATION_DB = float(table[:, 1].min()), float(table[:, 1].max())

    def volts_for(self, attenuation_db: float) -> float:
        return float(np.interp(self.checked(attenuation_db), self.calibration[:, 1], self.calibration[:, 0]))

    def send_state(self, attenuation_db: float) -> None:
        self.write("INST:NSEL 1;:VOLT %.4f;:OUTP 1;*OPC?" % self.volts_for(attenuation_db))

    def read_state(self) -> tuple[float]:
        volts, output = _fields(self.ask("INST:NSEL 1;:VOLT?;:OUTP?"), 2)
        volts = volts if output else 0.0
        by_volts = self.calibration[np.argsort(self.calibration[:, 0])]
        return (self.quantised(float(np.interp(volts, by_volts[:, 0], by_volts[:, 1]))),)


def stock_terminations(kwargs: dict) -> dict:
    """``kwargs`` without the bench's newline terminations, for a stock driver that sets its instrument's own
    (from the manual: the 421's CR answers, the 3xx's CR LF) and refuses them twice."""
    return {key: value for key, value in kwargs.items() if key not in ("read_termination", "write_termination")}


class CoilSupply(KepcoBOP3612):
    """Kepco BOP bipolar supply driving the electromagnet's coil in current mode (±12 A, ±36 V for the 36-12)."""

    MIN_CURRENT_A = -12.0
    MAX_CURRENT_A = 12.0
    MIN_FIELD_MT = -float("inf")  # the field's limits are the bench's: its calibration over ±max_current_a
    MAX_FIELD_MT = float("inf")

    def __init__(self, adapter, name="Kepco BOP coil supply", **kwargs):
        super().__init__(adapter, name=name, **stock_terminations(kwargs))

    def prepare(self) -> None:
        """Current mode, the voltage limit at its maximum, in one message (confirmed)."""
        self.write("FUNC:MODE CURR;:VOLT %g;*OPC?" % self._Vmax)
        read_confirmation(self)

    def send_current(self, current_a: float, output_on: bool = True) -> None:
        strict_range(current_a, [self.MIN_CURRENT_A, self.MAX_CURRENT_A])
        self.write("CURR %.5g;:OUTP %d;*OPC?" % (current_a, BOOLEAN_VALUES[bool(output_on)]))

    def read_output(self) -> tuple[float, bool]:
        """(the coil's measured current A, output on)."""
        current, output = _fields(self.ask("MEAS:CURR?;:OUTP?"), 2)
        return current, bool(int(output))


class Gaussmeter421(LakeShore421):
    """Lake Shore 421 gaussmeter, read in mT (PyMeasure's driver; gauss units set at connect)."""

    def __init__(self, adapter, name="Lake Shore 421 gaussmeter", **kwargs):
        super().__init__(adapter, name=name, **stock_terminations(kwargs))

    def prepare(self) -> None:
        self.unit = "G"

    @property
    def field_mt(self) -> float:
        raw, multiplier = self.ask("FIELD?").strip(), self.ask("FIELDM?").strip()
        factor = {"k": 1e3, "": 1.0, "m": 1e-3, "n": 1e-6, "u": 1e-6}[multiplier]
        if raw.strip() == "OL":
            raise ValueError(f"{self.name}: the field is over its range (OL)")
        return float(raw) * factor / GAUSS_PER_MT


class Gaussmeter425(LakeShore425):
    """Lake Shore 425 gaussmeter, read in mT (PyMeasure's driver; gauss units set at connect)."""

    def __init__(self, adapter, name="Lake Shore 425 gaussmeter", **kwargs):
        super().__init__(adapter, name=name, **kwargs)

    def prepare(self) -> None:
        self.unit = "G"

    @property
    def field_mt(self) -> float:
        return float(self.ask("RDGFIELD?")) / GAUSS_PER_MT


class TemperatureController(LakeShore3xx):
    """Lake Shore 3xx temperature controller (331, 335, 336, 340, 350): one input, read in °C."""

    def __init__(self, adapter, name="Lake Shore 3xx temperature controller", **kwargs):
        super().__init__(adapter, name=name, **stock_terminations(kwargs))
        self.input = "A"

    @property
    def temperature(self) -> float:
        return float(self.ask(f"CRDG? {self.input}"))


class TaborGenerator(GeneratorState, SCPIMixin, Instrument):
    """Tabor Electronics Lucid RF signal generator (LS and Lucid X families, up to 6 GHz models here).

    .. code-block:: python

        generator = TaborGenerator("TCPIP::192.168.1.60::5025::SOCKET")
        generator.frequency = 3.7e9
        generator.power = -10
        generator.output_enabled = True
        print(generator.options)      # *OPT?
    """

    MIN_FREQUENCY_HZ = 9e3
    MAX_FREQUENCY_HZ = 6e9
    MIN_POWER_DBM = -100.0
    MAX_POWER_DBM = 15.0

    power = Instrument.control(
        ":POW?",
        ":POW %g dBm",
        """Control the output power in dBm (−100 … +15).""",
        validator=strict_range,
        values=[MIN_POWER_DBM, MAX_POWER_DBM],
    )
    frequency = Instrument.control(
        ":FREQ?",
        ":FREQ %.12g Hz",
        """Control the CW frequency in Hz (9 kHz … 6 GHz).""",
        validator=strict_range,
        values=[MIN_FREQUENCY_HZ, MAX_FREQUENCY_HZ],
    )
    options = Instrument.measurement(
        "*OPT?",
        """Get the installed options (comma-separated).""",
        get_process=lambda v: v if isinstance(v, list) else [v],
    )

    def __init__(self, adapter, name="Tabor Lucid signal generator", **kwargs):
        super().__init__(adapter, name=name, **kwargs)

    def disable(self) -> None:
        self.output_enabled = False


__all__ = [
    "StepAttenuatorDriver",
    "WeinschelAttenuator",
    "MiniCircuitsAttenuator",
    "VcaSource",
    "CoilSupply",
    "Gaussmeter421",
    "Gaussmeter425",
    "TemperatureController",
    "TaborGenerator",
    "quantise",
]
