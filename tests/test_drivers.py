"""The drivers' exact SCPI traffic, checked with PyMeasure's expected_protocol."""

import warnings

import numpy as np
import pytest
from pymeasure.test import expected_protocol

from labpgt.instruments import RingController, SignalGenerator, SpectrumAnalyzer

BLOCK = np.array([-10.5, -90.25, 3.0], dtype=">f4").tobytes()


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def test_signal_generator_protocol():
    with expected_protocol(
        SignalGenerator,
        [
            (":POW -10 dBm;", None),
            (":POW?;", "-1.00000000000E+01"),
            (":FREQ 3000000000 Hz;", None),
            (":FREQ?;", "+3.00000000000E+09"),
            (":OUTP 1", None),
            (":OUTP?", "1"),
            (":OUTPUT ON;", None),
            (":OUTPUT OFF;", None),
        ],
    ) as generator:
        generator.power = -10
        assert generator.power == -10
        generator.frequency = 3e9
        assert generator.frequency == 3e9
        generator.output_enabled = True
        assert generator.output_enabled is True
        generator.enable()
        generator.disable()


@pytest.mark.parametrize(
    "name, value", [("power", 26), ("power", -136), ("frequency", 100e3), ("frequency", 21e9), ("output_enabled", 2)]
)
def test_signal_generator_validators(name, value):
    with expected_protocol(SignalGenerator, []) as generator:
        with pytest.raises(ValueError):
            setattr(generator, name, value)


def test_ring_controller_protocol():
    with expected_protocol(
        RingController,
        [
            (":LOOP:GAIN -3 dB", None),
            (":LOOP:GAIN?", "-3.0"),
            (":FIEL 50 mT", None),
            (":FIEL?", "+5.00000000000E+01"),
            (":AMPL 0", None),
            (":AMPL?", "0"),
        ],
    ) as ring:
        ring.loop_gain = -3
        assert ring.loop_gain == -3
        ring.field = 50
        assert ring.field == 50
        ring.amplifier_enabled = False
        assert ring.amplifier_enabled is False
        for name, value in [("loop_gain", 10.5), ("field", -1), ("amplifier_enabled", "yes")]:
            with pytest.raises(ValueError):
                setattr(ring, name, value)


def test_analyzer_settings_protocol():
    with expected_protocol(
        SpectrumAnalyzer,
        [
            (":BAND 100000 Hz", None),
            (":BAND?", "1.0E+05"),
            (":FREQ:SPAN 2.000000e+08 Hz", None),
            (":FREQ:SPAN?", "2.0E+08"),
            (":INIT:CONT 1", None),
            (":INIT:CONT?", "1"),
        ],
    ) as analyzer:
        analyzer.resolution_bandwidth = 1e5
        assert analyzer.resolution_bandwidth == 1e5
        analyzer.span = 200e6
        assert analyzer.span == 200e6
        analyzer.continuous_sweep = True
        assert analyzer.continuous_sweep is True
        with pytest.raises(ValueError):
            analyzer.resolution_bandwidth = 10e6


def test_single_sweep_turns_continuous_off_once():
    with expected_protocol(
        SpectrumAnalyzer,
        [
            (":INIT:CONT 0", None),
            (":INIT:IMM;*OPC?", "1"),
            (":INIT:IMM;*OPC?", "1"),
        ],
    ) as analyzer:
        analyzer.single_sweep()
        analyzer.single_sweep()


def test_single_sweep_raises_if_not_complete():
    with expected_protocol(SpectrumAnalyzer, [(":INIT:CONT 0", None), (":INIT:IMM;*OPC?", "0")]) as analyzer:
        with pytest.raises(ValueError, match="did not complete"):
            analyzer.single_sweep()


def test_trace_binary_sets_format_once_and_reads_exact_block():
    block = b"#212" + BLOCK + b"\n"
    with expected_protocol(
        SpectrumAnalyzer,
        [
            (":FORM REAL,32;:FORM:BORD NORM", None),
            (":TRAC? TRACE1", block),
            (":TRAC? TRACE1", block),
            (":FORMat:TRACe:DATA ASCII;", None),
            (":TRACE:DATA? TRACE1;", "-10.5,-90.25,3.0"),
            (":FORM REAL,32;:FORM:BORD NORM", None),  # the stock ASCII trace() switched format
            (":TRAC? TRACE2", b"#10\n"),
        ],
    ) as analyzer:
        for _ in range(2):
            trace = analyzer.trace_binary()
            assert trace.dtype == np.float32
            np.testing.assert_array_equal(trace, [-10.5, -90.25, 3.0])
        np.testing.assert_array_equal(analyzer.trace(), [-10.5, -90.25, 3.0])
        assert analyzer.trace_binary(2).shape == (0,)


@pytest.mark.parametrize(
    "reply, message",
    [
        (b"X212" + BLOCK + b"\n", "header"),
        (b"#A12" + BLOCK + b"\n", "header"),
        (b"#2x2" + BLOCK + b"\n", "length field"),
        (b"#211" + BLOCK[:11] + b"\n", "whole number"),
        (b"#212" + BLOCK + b";", "terminated"),
    ],
)
def test_trace_binary_rejects_malformed_blocks(reply, message):
    with pytest.raises(ValueError, match=message):
        with expected_protocol(
            SpectrumAnalyzer,
            [
                (":FORM REAL,32;:FORM:BORD NORM", None),
                (":TRAC? TRACE1", reply),
            ],
        ) as analyzer:
            analyzer.trace_binary()


class _ShortReads:
    """A transport that hands out what it has and then empty reads (no timeout)."""

    def __init__(self, data):
        self.data = data

    def read_bytes(self, count):
        chunk, self.data = self.data[:count], self.data[count:]
        return chunk


def test_read_block_reassembles_short_reads_and_reports_truncation():
    from labpgt.instruments import read_ieee_float32_block

    class OneByteAtATime(_ShortReads):
        def read_bytes(self, count):
            return super().read_bytes(min(count, 1))

    np.testing.assert_array_equal(
        read_ieee_float32_block(OneByteAtATime(b"#212" + BLOCK + b"\n")), [-10.5, -90.25, 3.0]
    )
    with pytest.raises(ValueError, match="truncated"):
        read_ieee_float32_block(_ShortReads(b"#216" + BLOCK + b"\n"))
