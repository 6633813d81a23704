"""Each simulated instrument through its driver over the in-process SimulatedAdapter."""

import warnings

import numpy as np
import pytest

from labpgt.instruments import RingController, SignalGenerator, SpectrumAnalyzer
from labpgt.instruments.simulated import SimulatedAdapter, SimulatedBench
from labpgt.instruments.simulated.ring import open_loop_level_dbm

TONE_HZ = 3.73e9  # in the passband of the default ring (f_FMR 3.70 GHz)


@pytest.fixture
def bench():
    return SimulatedBench(n_generators=2, seed=0, noise=False)


def connect(bench):
    return (
        SignalGenerator(SimulatedAdapter(bench["gen1"])),
        SignalGenerator(SimulatedAdapter(bench["gen2"])),
        RingController(SimulatedAdapter(bench["ring"])),
        SpectrumAnalyzer(SimulatedAdapter(bench["analyzer"])),
    )


def expected_tone_dbm(bench, frequency_hz, power_dbm, field_mt):
    """With the loop open the analyzer shows a tone through the input coupler, the delay line's
    transmission and loss and the output coupler (docs/ring-physics.md §1)."""
    return float(open_loop_level_dbm(power_dbm, frequency_hz, field_mt, bench.model.params))


def test_bench_names_and_identities(bench):
    assert list(bench.instruments) == ["gen1", "gen2", "ring", "analyzer"]
    gen1, gen2, ring, analyzer = connect(bench)
    assert gen1.id.startswith("Agilent Technologies,E8257D,") and gen1.id != gen2.id
    assert ring.id.startswith("labpgt,RingController,")
    assert analyzer.id.startswith("Agilent Technologies,E4408B,")


def test_signal_generator_settings_reset_and_range_errors(bench):
    gen1, *_ = connect(bench)
    gen1.frequency = 3.0e9
    gen1.power = -10
    gen1.enable()
    assert (gen1.frequency, gen1.power, gen1.is_enabled, gen1.output_enabled) == (3.0e9, -10, True, True)
    gen1.output_enabled = False
    assert gen1.is_enabled is False
    gen1.write(":FREQ 30 GHz")  # bypassing the validator: the instrument refuses
    assert gen1.next_error[0] == -222 and gen1.frequency == 3.0e9
    with pytest.raises(ValueError):
        gen1.power = 30
    gen1.reset()
    assert (gen1.frequency, gen1.power, gen1.output_enabled) == (20e9, -135, False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gen1.shutdown()  # stock shutdown's modulation/LFO commands are understood
    assert gen1.check_errors() == []


def test_ring_controller(bench):
    _, _, ring, _ = connect(bench)
    params = bench.model.params
    assert (ring.loop_gain, ring.field, ring.amplifier_enabled) == (
        params.default_loop_gain_db,
        params.default_field_mt,
        False,
    )
    ring.loop_gain = -3.5
    ring.field = 80
    ring.amplifier_enabled = True
    assert (ring.loop_gain, ring.field, ring.amplifier_enabled) == (-3.5, 80, True)
    ring.write(":FIEL 0.1 T")
    assert ring.field == 100
    ring.write(":LOOP:GAIN 11 dB")
    assert ring.next_error[0] == -222
    with pytest.raises(ValueError):
        ring.field = 301
    assert ring.check_errors() == []


def test_analyzer_frequency_axis_rbw_points_and_sweep_time(bench):
    *_, analyzer = connect(bench)
    params = bench.model.params
    assert analyzer.center_frequency == params.default_center_hz
    assert analyzer.span == params.default_span_hz
    assert analyzer.frequency_points == params.default_points
    analyzer.center_frequency = 3.0e9
    analyzer.span = 100e6
    assert (analyzer.start_frequency, analyzer.stop_frequency) == (2.95e9, 3.05e9)
    analyzer.start_frequency = 2.96e9
    assert analyzer.center_frequency == 3.005e9
    assert analyzer.resolution_bandwidth == 300e3  # auto: span/100 down to 1-3-10
    analyzer.resolution_bandwidth = 100e3
    assert analyzer.resolution_bandwidth == 100e3
    assert analyzer.sweep_time == pytest.approx(bench.model.sweep_time_s(90e6, 100e3))
    analyzer.sweep_time = 0.5
    assert analyzer.sweep_time == 0.5
    analyzer.frequency_points = 1001
    assert analyzer.frequencies.shape == (1001,)
    analyzer.frequency_step = 1e6
    assert analyzer.frequency_step == 1e6
    analyzer.write(":SWE:POIN 50")
    assert analyzer.next_error[0] == -222
    assert analyzer.check_errors() == []


def test_tone_appears_at_its_frequency_and_power_ring_open(bench):
    gen1, gen2, ring, analyzer = connect(bench)
    ring.amplifier_enabled = False
    gen1.frequency, gen1.power = TONE_HZ, 10
    gen1.enable()
    analyzer.single_sweep()
    trace = analyzer.trace_binary()
    frequencies = analyzer.frequencies
    peak = int(np.argmax(trace))
    assert abs(frequencies[peak] - TONE_HZ) <= frequencies[1] - frequencies[0]
    assert trace[peak] == pytest.approx(expected_tone_dbm(bench, TONE_HZ, 10, ring.field), abs=0.5)
    assert np.median(trace) < -60
    gen1.disable()
    analyzer.single_sweep()
    assert analyzer.trace_binary().max() < -60


def test_binary_and_ascii_traces_agree_and_byte_order(bench):
    gen1, _, _, analyzer = connect(bench)
    gen1.frequency, gen1.power = TONE_HZ, -20
    gen1.enable()
    analyzer.single_sweep()
    binary = analyzer.trace_binary()
    ascii_ = analyzer.trace()  # stock ASCII path; continuous is off: same sweep
    assert binary.dtype == np.float32 and binary.shape == ascii_.shape == (401,)
    np.testing.assert_allclose(binary, ascii_, atol=1e-3)
    analyzer.write(":FORM REAL,32;:FORM:BORD SWAP")
    analyzer.write(":TRAC? TRACE1")
    raw = analyzer.read_bytes(-1)
    assert raw.startswith(b"#41604") and raw.endswith(b"\n")
    np.testing.assert_array_equal(np.frombuffer(raw[6:-1], "<f4"), binary)
    assert analyzer.ask(":FORM?") == "REAL,32"


def test_continuous_sweep_reads_fresh_traces_single_sweep_holds(bench):
    gen1, _, _, analyzer = connect(bench)
    gen1.frequency, gen1.power = TONE_HZ, 10  # displayed at -27 dBm, 37 dB of couplers and delay line down
    gen1.enable()
    analyzer.continuous_sweep = True
    assert analyzer.trace().max() > -40
    gen1.disable()
    assert analyzer.trace().max() < -60  # continuous: the latest state shows
    analyzer.single_sweep()
    gen1.enable()
    assert analyzer.trace().max() < -60  # held: the sweep was taken with RF off
    analyzer.single_sweep()
    assert analyzer.trace().max() > -40


def test_auto_oscillation_shows_with_amplifier_above_threshold(bench):
    *_, ring, analyzer = connect(bench)
    ring.loop_gain = 3
    ring.amplifier_enabled = True
    analyzer.single_sweep()
    assert analyzer.trace_binary().max() > -40  # the ring oscillates by itself


def test_bench_is_deterministic_for_a_seed():
    traces = []
    for _ in range(2):
        bench = SimulatedBench(n_generators=1, seed=7, noise=True)
        gen1 = SignalGenerator(SimulatedAdapter(bench["gen1"]))
        analyzer = SpectrumAnalyzer(SimulatedAdapter(bench["analyzer"]))
        gen1.frequency, gen1.power = 3.0e9, -30
        gen1.enable()
        analyzer.single_sweep()
        traces.append(analyzer.trace_binary())
    np.testing.assert_array_equal(traces[0], traces[1])


def test_adapter_reads_like_visa(bench):
    adapter = SimulatedAdapter(bench["gen1"])
    adapter.write("*IDN?;*OPC?")
    assert adapter.read_bytes(2) == b"Ag"
    assert adapter.read().endswith(";1")
    with pytest.raises(TimeoutError):
        adapter.read()
    adapter.write("*OPC?")
    adapter.write("*OPC?")
    assert adapter.read_bytes(-1, break_on_termchar=True) == b"1\n"
    adapter.flush_read_buffer()
    with pytest.raises(TimeoutError):
        adapter.read_bytes(1)
