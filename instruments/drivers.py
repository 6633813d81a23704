"""PyMeasure drivers for the bench: the stock ones, extended where they lack something, and one new.

* :class:`SignalGenerator` — PyMeasure's :class:`~pymeasure.instruments.agilent.Agilent8257D`
  with the PSG's range limits as validators and an ``output_enabled`` boolean control.
* :class:`SpectrumAnalyzer` — PyMeasure's :class:`~pymeasure.instruments.agilent.AgilentE4408B`
  with ``resolution_bandwidth``, ``span``, ``continuous_sweep``, ``single_sweep()`` and a
  binary ``trace_binary()`` (IEEE 488.2 block of big-endian float32), spending no needless
  round trips: the continuous-sweep and data-format settings are remembered and sent once.
* :class:`RohdeSchwarzAnalyzer` — PyMeasure's :class:`~pymeasure.instruments.rohdeschwarz.FSL`
  (the R&S FSx family's driver) with the same measurement setup, single sweep and binary trace.
* :class:`AnritsuGenerator` — PyMeasure's :class:`~pymeasure.instruments.anritsu.AnritsuMG3692C`
  with the MG3692C's range limits, full frequency resolution and the same one-message state.
* :class:`RingController` — the lab's own ring box (loop gain, bias field, amplifier); its SCPI
  dialect is documented in :mod:`labpgt.instruments.simulated.devices`.

Every generator driver answers ``send_state``/``read_state`` and every analyzer driver
``send_setup``/``read_setup``/``sweep_and_read``, so the bench (:mod:`labpgt.bench.kinds`) treats the
vendors alike.

Drivers know only SCPI: they work the same against real instruments over VISA, the simulated
bench over TCP, or the in-process :class:`~labpgt.instruments.simulated.transport.SimulatedAdapter`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from pymeasure.instruments import Instrument, SCPIMixin
from pymeasure.instruments.agilent import Agilent8257D, AgilentE4408B
from pymeasure.instruments.anritsu import AnritsuMG3692C
from pymeasure.instruments.rohdeschwarz import FSL
from pymeasure.instruments.validators import strict_discrete_set, strict_range

BOOLEAN_VALUES = {True: 1, False: 0}


class GeneratorState:
    """The bench's one-message state of a signal generator (mixed into each vendor's driver).

    The class declares ``MIN_/MAX_FREQUENCY_HZ`` and ``MIN_/MAX_POWER_DBM``; the commands are the
    SCPI ones every supported generator shares (``:POW``, ``:FREQ``, ``:OUTP``).
    """

    output_enabled = Instrument.control(
        ":OUTP?",
        ":OUTP %d",
        """Control whether the RF output is on (bool).""",
        validator=strict_discrete_set,
        values=BOOLEAN_VALUES,
        map_values=True,
    )

    MECHANICAL_ATTENUATOR = False  # a step attenuator that moves (time, wear) when auto attenuation steps
    ATTENUATOR_STEP_DB = 10.0
    ALC_MIN_DBM = -20.0  # the lowest level the ALC holds with the attenuator at 0 dB

    @classmethod
    def attenuator_hold_for(cls, low_dbm: float, high_dbm: float) -> float | None:
        """The attenuation (dB) at which to hold a mechanical step attenuator so that every power from ``low_dbm``
        to ``high_dbm`` is in the ALC's range (no move while measuring), or None (none to hold, or no fit)."""
        if not cls.MECHANICAL_ATTENUATOR:
            return None
        step = cls.ATTENUATOR_STEP_DB
        held = step * max(0, math.ceil((cls.ALC_MIN_DBM - low_dbm) / step - 1e-9))
        return float(held) if high_dbm <= cls.MAX_POWER_DBM - held else None

    def hold_attenuator(self, attenuation_db: float) -> None:
        """Hold the step attenuator at ``attenuation_db`` (auto off) in one message ending in ``*OPC?``."""
        self.write(":POW:ATT %g dB;*OPC?" % attenuation_db)

    def send_state(self, power_dbm: float, frequency_hz: float, output_on: bool) -> None:
        """Send power, frequency and RF output in ONE program message ending in ``*OPC?``.

        The answer (``1`` once executed) is read with :func:`read_confirmation`, so several
        instruments can be set in parallel. One message is also one chance for a fault, not three,
        and a message that fails to execute leaves no silent half-setting: it is never confirmed.
        """
        strict_range(power_dbm, [self.MIN_POWER_DBM, self.MAX_POWER_DBM])
        strict_range(frequency_hz, [self.MIN_FREQUENCY_HZ, self.MAX_FREQUENCY_HZ])
        self.write(":POW %g dBm;:FREQ %.12g Hz;:OUTP %d;*OPC?" % (power_dbm, frequency_hz, bool(output_on)))

    def read_state(self) -> tuple[float, float, bool]:
        """(power dBm, frequency Hz, output on) in one query."""
        power, frequency, output = _fields(self.ask(":POW?;:FREQ?;:OUTP?"), 3)
        return power, frequency, bool(int(output))


class SignalGenerator(GeneratorState, Agilent8257D):
    """Keysight/Agilent E8257D PSG signal generator (PyMeasure's driver, with range validators).

    .. code-block:: python

        generator = SignalGenerator("TCPIP::127.0.0.1::5025::SOCKET")
        generator.frequency = 3.0e9      # Hz, 250 kHz ... 20 GHz
        generator.power = -10            # dBm, -135 ... +25
        generator.output_enabled = True  # same as generator.enable()
    """

    MIN_FREQUENCY_HZ = 250e3
    MAX_FREQUENCY_HZ = 20e9
    MIN_POWER_DBM = -135.0
    MAX_POWER_DBM = 25.0
    MECHANICAL_ATTENUATOR = True  # option 1E1 (PSG): electromechanical, 5 dB steps
    ATTENUATOR_STEP_DB = 5.0

    power = Instrument.control(
        ":POW?;",
        ":POW %g dBm;",
        """Control the output power in dBm (float, −135 … +25 dBm; ValueError outside).""",
        validator=strict_range,
        values=[MIN_POWER_DBM, MAX_POWER_DBM],
    )
    frequency = Instrument.control(
        ":FREQ?;",
        ":FREQ %.12g Hz;",
        """Control the CW output frequency in Hz (float, 250 kHz … 20 GHz; ValueError outside).

        Sent with 12 significant digits (1 mHz at 20 GHz, the PSG's resolution): the stock
        driver's ``%e`` would round every frequency to 1 kHz.""",
        validator=strict_range,
        values=[MIN_FREQUENCY_HZ, MAX_FREQUENCY_HZ],
    )

    def __init__(self, adapter, name="Agilent E8257D signal generator", **kwargs):
        with warnings.catch_warnings():  # the stock class warns that its SCPI support is unknown
            warnings.simplefilter("ignore", FutureWarning)
            super().__init__(adapter, name=name, **kwargs)


class AnritsuGenerator(GeneratorState, AnritsuMG3692C):
    """Anritsu MG3692C signal generator with options 2 (step attenuator) and 4 (10 MHz low end):
    PyMeasure's driver with range validators, full frequency resolution and ``output_enabled``.

    .. code-block:: python

        generator = AnritsuGenerator("TCPIP::192.168.1.40::5025::SOCKET")
        generator.frequency = 3.0e9      # Hz, 10 MHz ... 20 GHz
        generator.power = -10            # dBm, -130 ... +13
        generator.output_enabled = True
    """

    MIN_FREQUENCY_HZ = 10e6
    MAX_FREQUENCY_HZ = 20e9
    MIN_POWER_DBM = -130.0
    MAX_POWER_DBM = 13.0
    MECHANICAL_ATTENUATOR = True  # option 2: a 10 dB-step mechanical attenuator

    power = Instrument.control(
        ":POW?;",
        ":POW %g dBm;",
        """Control the output power in dBm (float, −130 … +13 dBm; ValueError outside).""",
        validator=strict_range,
        values=[MIN_POWER_DBM, MAX_POWER_DBM],
    )
    frequency = Instrument.control(
        ":FREQ?;",
        ":FREQ %.12g Hz;",
        """Control the CW output frequency in Hz (float, 10 MHz … 20 GHz; ValueError outside), sent with
        12 significant digits (the stock driver's ``%e`` rounds to 1 kHz at GHz).""",
        validator=strict_range,
        values=[MIN_FREQUENCY_HZ, MAX_FREQUENCY_HZ],
    )

    def __init__(self, adapter, name="Anritsu MG3692C signal generator", **kwargs):
        with warnings.catch_warnings():  # the stock class warns that its SCPI support is unknown
            warnings.simplefilter("ignore", FutureWarning)
            super().__init__(adapter, name=name, **kwargs)


class SpectrumAnalyzer(AgilentE4408B):
    """Agilent ESA E4408B spectrum analyzer (PyMeasure's driver, plus RBW, span, single sweeps
    and binary traces).

    .. code-block:: python

        analyzer = SpectrumAnalyzer("TCPIP::127.0.0.1::5026::SOCKET")
        analyzer.center_frequency = 3.03e9
        analyzer.span = 200e6
        analyzer.resolution_bandwidth = 1e6
        analyzer.single_sweep()
        trace_dbm = analyzer.trace_binary()   # float32 numpy array
    """

    resolution_bandwidth = Instrument.control(
        ":BAND?",
        ":BAND %g Hz",
        """Control the resolution bandwidth in Hz (float, 10 Hz … 5 MHz); setting it turns auto RBW off.""",
        validator=strict_range,
        values=[10.0, 5e6],
    )
    span = Instrument.control(
        ":FREQ:SPAN?",
        ":FREQ:SPAN %e Hz",
        """Control the frequency span in Hz (float, 10 Hz … 26.5 GHz), keeping the center.""",
        validator=strict_range,
        values=[10.0, 26.5e9],
    )

    def __init__(self, adapter, name="Agilent E4408B spectrum analyzer", **kwargs):
        super().__init__(adapter, name=name, **kwargs)
        self._continuous: bool | None = None  # unknown until we set or read it
        self._binary_format = False  # True once ':FORM REAL,32' has been sent

    @property
    def continuous_sweep(self) -> bool:
        """Control whether the analyzer sweeps continuously (bool)."""
        self._continuous = bool(int(float(self.ask(":INIT:CONT?"))))
        return self._continuous

    @continuous_sweep.setter
    def continuous_sweep(self, enabled: bool) -> None:
        self.write(":INIT:CONT %d" % bool(enabled))
        self._continuous = bool(enabled)

    def single_sweep(self) -> None:
        """Take one sweep and wait for it (``:INIT:IMM;*OPC?``); turns continuous sweep off once."""
        if self._continuous is not False:
            self.continuous_sweep = False
        answer = self.ask(":INIT:IMM;*OPC?").strip()
        if answer != "1":
            raise ValueError(f"{self.name}: sweep did not complete, *OPC? answered {answer!r}")

    def trace(self, number: int = 1):
        """Get the trace as ASCII (stock behaviour; switches the data format to ASCII)."""
        self._binary_format = False
        return super().trace(number)

    def trace_binary(self, number: int = 1) -> np.ndarray:
        """Get trace ``number`` as a float32 array through an IEEE 488.2 binary block.

        Sends ``:FORM REAL,32;:FORM:BORD NORM`` the first time only; reads the block with exact
        byte counts and raises :class:`ValueError` if it is malformed.
        """
        if not self._binary_format:
            self.write(":FORM REAL,32;:FORM:BORD NORM")
            self._binary_format = True
        self.write(":TRAC? TRACE%d" % number)
        return read_ieee_float32_block(self)

    def sweep_and_read(self, number: int = 1) -> np.ndarray:
        """Take one sweep and read trace ``number`` in binary, in a single program message.

        ``:INIT:IMM;*OPC?;:TRAC? TRACEn`` — the analyzer answers ``1;`` once the sweep is done,
        then the block: one round trip per query instead of two.
        """
        if self._continuous is not False:
            self.continuous_sweep = False
        if not self._binary_format:
            self.write(":FORM REAL,32;:FORM:BORD NORM")
            self._binary_format = True
        return sweep_and_read_block(self, ":INIT:IMM;*OPC?;:TRAC? TRACE%d" % number)

    def send_setup(self, center_hz: float, span_hz: float, rbw_hz: float, points: int) -> None:
        """Send the whole measurement setup (single sweeps, binary float32 traces) in one message
        ending in ``*OPC?``; confirm with :func:`read_confirmation`."""
        self.write(
            ":FREQ:CENT %.12g Hz;:FREQ:SPAN %.12g Hz;:BAND %g Hz;:SWE:POIN %d;:INIT:CONT 0;"
            ":FORM REAL,32;:FORM:BORD NORM;*OPC?" % (center_hz, span_hz, rbw_hz, int(points))
        )
        self._continuous = False
        self._binary_format = True

    def read_setup(self) -> tuple[float, float, float, int]:
        """(center Hz, span Hz, RBW Hz, points) in one query."""
        center, span, rbw, points = _fields(self.ask(":FREQ:CENT?;:FREQ:SPAN?;:BAND?;:SWE:POIN?"), 4)
        return center, span, rbw, int(points)

    def reset(self) -> None:
        super().reset()
        self._continuous = None
        self._binary_format = False


class RohdeSchwarzAnalyzer(FSL):
    """Rohde & Schwarz FSx spectrum analyzer (FSL, and the FSV/FSW's shared spectrum commands):
    PyMeasure's FSL driver plus the bench's one-message setup, single sweeps and binary traces.

    .. code-block:: python

        analyzer = RohdeSchwarzAnalyzer("TCPIP::192.168.1.50::5025::SOCKET")
        analyzer.send_setup(3.03e9, 200e6, 1e6, 401)
        read_confirmation(analyzer)
        trace_dbm = analyzer.sweep_and_read()   # float32 numpy array

    R&S transfers ``REAL,32`` blocks little-endian.
    """

    def __init__(self, adapter, name="Rohde&Schwarz FSx spectrum analyzer", **kwargs):
        super().__init__(adapter, name=name, **kwargs)

    def send_setup(self, center_hz: float, span_hz: float, rbw_hz: float, points: int) -> None:
        """Send the measurement setup (single sweeps, binary float32) in one message ending in ``*OPC?``;
        confirm with :func:`read_confirmation`."""
        self.write(
            ":FREQ:CENT %.12g Hz;:FREQ:SPAN %.12g Hz;:BAND:RES %g Hz;:SWE:POIN %d;:INIT:CONT OFF;"
            ":FORM REAL,32;*OPC?" % (center_hz, span_hz, rbw_hz, int(points))
        )

    def read_setup(self) -> tuple[float, float, float, int]:
        """(center Hz, span Hz, RBW Hz, points) in one query."""
        center, span, rbw, points = _fields(self.ask(":FREQ:CENT?;:FREQ:SPAN?;:BAND:RES?;:SWE:POIN?"), 4)
        return center, span, rbw, int(points)

    def sweep_and_read(self, number: int = 1) -> np.ndarray:
        """One single sweep and trace ``number`` in binary, in one program message
        (``:INIT;*OPC?;:TRACn? TRACEn``; single-sweep mode and the format are set in the same message)."""
        message = ":INIT:CONT OFF;:FORM REAL,32;:INIT;*OPC?;:TRAC%d? TRACE%d" % (number, number)
        return sweep_and_read_block(self, message, big_endian=False)


def sweep_and_read_block(instrument: Instrument, message: str, big_endian: bool = True) -> np.ndarray:
    """Write ``message`` (ending ``*OPC?;<trace query>``), check the ``1;`` and read the float32 block."""
    instrument.write(message)
    done = read_exactly(instrument, 2)
    if done != b"1;":
        raise ValueError(f"{instrument.name}: sweep did not complete, *OPC? answered {done!r}")
    return read_ieee_float32_block(instrument, big_endian)


def read_confirmation(instrument: Instrument) -> None:
    """Read the ``1`` that ``*OPC?`` answers once everything before it has executed."""
    answer = instrument.read().strip()
    if answer != "1":
        raise ValueError(f"{instrument.name}: *OPC? answered {answer!r}")


def _fields(answer: str, count: int) -> list[float]:
    """The numbers of a ``;``-joined multi-query answer; ValueError if garbled."""
    parts = answer.strip().split(";")
    if len(parts) != count:
        raise ValueError(f"expected {count} values, got {answer!r}")
    values = [float(p) for p in parts]
    if not all(np.isfinite(values)):
        raise ValueError(f"non-finite value in {answer!r}")
    return values


def read_exactly(instrument: Instrument, count: int) -> bytes:
    """Read ``count`` bytes, reassembling short reads; fewer only if the transport runs dry."""
    data = b""
    while len(data) < count:
        more = instrument.read_bytes(count - len(data))
        if not more:
            break
        data += more
    return data


def read_ieee_float32_block(instrument: Instrument, big_endian: bool = True) -> np.ndarray:
    """Read ``#<n><length><payload>\\n`` of float32 (big-endian unless told) from ``instrument``, exactly.

    Raises :class:`ValueError` on a malformed header or length field, a length that is not a
    whole number of float32, a truncated payload, or a missing newline terminator.
    """
    head = read_exactly(instrument, 2)
    if len(head) != 2 or head[:1] != b"#" or not head[1:2].isdigit() or head[1:2] == b"0":
        raise ValueError(f"malformed IEEE 488.2 block: header {head!r}")
    digits = read_exactly(instrument, int(head[1:2]))
    if not digits.isdigit():
        raise ValueError(f"malformed IEEE 488.2 block: length field {digits!r}")
    length = int(digits)
    if length % 4:
        raise ValueError(f"IEEE 488.2 block of {length} bytes is not a whole number of float32")
    payload = read_exactly(instrument, length + 1)  # the block and its newline in one read
    if len(payload) != length + 1:
        raise ValueError(f"IEEE 488.2 block truncated: {max(len(payload) - 1, 0)} of {length} bytes")
    if payload[-1:] != b"\n":
        raise ValueError(f"IEEE 488.2 block not terminated by newline: {payload[-1:]!r}")
    return np.frombuffer(payload, dtype=">f4" if big_endian else "<f4", count=length // 4).astype(np.float32)


class RingController(SCPIMixin, Instrument):
    """The ring's loop amplifier and bias-field supply (the lab's own box).

    .. code-block:: python

        ring = RingController("TCPIP::127.0.0.1::5027::SOCKET")
        ring.field = 50              # mT
        ring.loop_gain = -3          # dB relative to the round-trip loss: below threshold
        ring.amplifier_enabled = True
    """

    MIN_LOOP_GAIN_DB = -20.0
    MAX_LOOP_GAIN_DB = 10.0
    MIN_FIELD_MT = 0.0
    MAX_FIELD_MT = 300.0

    loop_gain = Instrument.control(
        ":LOOP:GAIN?",
        ":LOOP:GAIN %g dB",
        """Control the loop amplifier gain relative to the ring's round-trip loss in dB
        (float, −20 … +10 dB). Above about 0 dB the ring auto-oscillates.""",
        validator=strict_range,
        values=[MIN_LOOP_GAIN_DB, MAX_LOOP_GAIN_DB],
    )
    field = Instrument.control(
        ":FIEL?",
        ":FIEL %g mT",
        """Control the bias magnetic field in mT (float, 0 … 300 mT); it sets the spin-wave passband.""",
        validator=strict_range,
        values=[MIN_FIELD_MT, MAX_FIELD_MT],
    )
    amplifier_enabled = Instrument.control(
        ":AMPL?",
        ":AMPL %d",
        """Control whether the loop amplifier is powered (bool).""",
        validator=strict_discrete_set,
        values=BOOLEAN_VALUES,
        map_values=True,
    )
    temperature = Instrument.measurement(
        ":TEMP?",
        """Measure the YIG film's temperature in °C (float), if the ring has a sensor
        (a bench config reads it with ``[bench] ring_temperature = true``).""",
    )

    def send_state(self, loop_gain_db: float, field_mt: float, amplifier_on: bool) -> None:
        """Send loop gain, field and amplifier state in one message ending in ``*OPC?``."""
        strict_range(loop_gain_db, [self.MIN_LOOP_GAIN_DB, self.MAX_LOOP_GAIN_DB])
        strict_range(field_mt, [self.MIN_FIELD_MT, self.MAX_FIELD_MT])
        self.write(":LOOP:GAIN %g dB;:FIEL %g mT;:AMPL %d;*OPC?" % (loop_gain_db, field_mt, bool(amplifier_on)))

    def read_state(self) -> tuple[float, float, bool]:
        """(loop gain dB, field mT, amplifier on) in one query."""
        gain, field, amplifier = _fields(self.ask(":LOOP:GAIN?;:FIEL?;:AMPL?"), 3)
        return gain, field, bool(int(amplifier))

    def __init__(self, adapter, name="Ring controller", **kwargs):
        super().__init__(adapter, name=name, **kwargs)


__all__ = [
    "SignalGenerator",
    "AnritsuGenerator",
    "SpectrumAnalyzer",
    "RohdeSchwarzAnalyzer",
    "RingController",
    "read_ieee_float32_block",
    "read_confirmation",
]
