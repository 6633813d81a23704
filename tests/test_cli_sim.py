"""``labpgt sim`` as a user runs it: a separate process serving raw-socket SCPI on loopback."""

import signal
import subprocess
import sys

import numpy as np
import pytest

from labpgt.bench import Bench, embedded_bench, simulated_bench_config

pytestmark = pytest.mark.slow  # labpgt sim served over TCP


@pytest.fixture
def served():
    proc = subprocess.Popen(
        [sys.executable, "-m", "labpgt", "sim", "--port", "0", "--seed", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        resources = dict(proc.stdout.readline().split() for _ in range(6))
        yield proc, resources
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=10)


def test_sim_prints_one_line_per_instrument_and_stops_cleanly_on_interrupt(served):
    proc, resources = served
    assert set(resources) == {"gen1", "gen2", "gen3", "gen4", "ring", "analyzer"}
    assert all(r.startswith("TCPIP::127.0.0.1::") and r.endswith("::SOCKET") for r in resources.values())
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0
    assert "Traceback" not in proc.stderr.read()


def test_stock_pymeasure_drivers_read_a_tone_through_pyvisa_py(served):
    from pymeasure.instruments.agilent import Agilent8257D, AgilentE4408B

    _, resources = served
    visa = dict(visa_library="@py", read_termination="\n", write_termination="\n", timeout=5000)
    generator = Agilent8257D(resources["gen2"], **visa)
    analyzer = AgilentE4408B(resources["analyzer"], **visa)
    generator.frequency = 3.7312e9
    generator.power = 20.0
    generator.enable()
    assert generator.is_enabled  # a query round trip: the generator has applied everything before
    analyzer.start_frequency, analyzer.stop_frequency = 3.68e9, 3.78e9
    analyzer.frequency_points = 401
    trace = analyzer.trace()
    freqs = analyzer.frequencies
    peak = int(np.argmax(trace))
    assert freqs[peak] == pytest.approx(3.7312e9, abs=freqs[1] - freqs[0])
    # the ring amplifier is off after *RST: the tone through the couplers and the delay line, 37 dB down
    assert trace[peak] == pytest.approx(20.0 - 37.0, abs=3.0)
    assert trace[peak] > np.median(trace) + 40.0
    generator.disable()
    assert generator.is_enabled is False or generator.is_enabled == 0


def test_bench_over_tcp_is_bit_identical_to_the_embedded_bench(served):
    """Both paths send the same messages (the identity once, at connection), and the clock charges each alike."""
    _, resources = served
    config = simulated_bench_config(embedded=False).with_resources(resources)
    u = np.random.default_rng(2).random((5, 8))
    with Bench(config) as tcp:
        over_tcp = tcp.measure(u)
    with embedded_bench(seed=5) as local:
        in_process = local.measure(u)
    assert np.array_equal(over_tcp.spectra, in_process.spectra)
