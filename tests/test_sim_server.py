"""The simulated bench served over loopback TCP, reached through pyvisa-py like LAN instruments.

The acceptance test drives PyMeasure's own, unchanged Agilent8257D and AgilentE4408B classes.
"""

import socket
import threading
import time
import warnings

import numpy as np
import pytest
from pymeasure.instruments.agilent import Agilent8257D, AgilentE4408B

from labpgt.instruments import RingController, SpectrumAnalyzer
from labpgt.instruments.simulated import SimulatedBench, serve
from labpgt.instruments.simulated.ring import open_loop_level_dbm

pytestmark = pytest.mark.slow  # instruments served over TCP

VISA = dict(visa_library="@py", read_termination="\n", write_termination="\n", timeout=5000)


@pytest.fixture(scope="module")
def bench():
    return SimulatedBench(n_generators=2, seed=0, noise=True)


@pytest.fixture(scope="module")
def server(bench):
    with serve(bench) as running:
        yield running


def raw_client(server, name):
    connection = socket.create_connection(("127.0.0.1", server.ports[name]), timeout=5)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


def ask_raw(connection, message: bytes) -> bytes:
    connection.sendall(message)
    answer = b""
    while not answer.endswith(b"\n"):
        chunk = connection.recv(65536)
        assert chunk, "server closed the connection"
        answer += chunk
    return answer


def test_resources_name_every_instrument(server):
    assert set(server.resources) == {"gen1", "gen2", "ring", "analyzer"}
    assert all(r.startswith("TCPIP::127.0.0.1::") and r.endswith("::SOCKET") for r in server.resources.values())


def test_stock_pymeasure_drivers_see_a_tone_through_pyvisa_py(bench, server):
    """Acceptance: unchanged stock drivers, pyvisa-py, raw sockets; the tone is the clear maximum."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        generator = Agilent8257D(server.resources["gen1"], **VISA)
        analyzer = AgilentE4408B(server.resources["analyzer"], **VISA)
        ring = RingController(server.resources["ring"], **VISA)
    try:
        ring.amplifier_enabled = False  # open loop: only the tone shows
        field = ring.field
        tone_hz, tone_dbm = 3.73e9, 20.0
        generator.frequency = tone_hz
        generator.power = tone_dbm
        generator.enable()
        assert generator.is_enabled and generator.frequency == tone_hz and generator.power == tone_dbm
        analyzer.start_frequency = 3.68e9
        analyzer.stop_frequency = 3.78e9
        analyzer.frequency_points = 401
        assert analyzer.sweep_time > 0
        trace = analyzer.trace()  # continuous sweep: a fresh sweep
        frequencies = analyzer.frequencies
        assert trace.shape == frequencies.shape == (401,)
        peak = int(np.argmax(trace))
        spacing = frequencies[1] - frequencies[0]
        assert abs(frequencies[peak] - tone_hz) <= spacing
        params = bench.model.params
        # open loop: the tone through the input coupler, the delay line (its loss and transmission) and the
        # output coupler, 37 dB for the default ring (docs/ring-physics.md §1)
        expected = float(open_loop_level_dbm(tone_dbm, tone_hz, field, params))
        assert trace[peak] == pytest.approx(expected, abs=1.0)
        assert trace[peak] == pytest.approx(tone_dbm - 37.0, abs=1.5)
        rbw = float(analyzer.ask(":BAND?"))
        others = trace[np.abs(frequencies - tone_hz) > 5 * rbw]  # beyond the RBW line shape
        assert trace[peak] - others.max() > 40  # the clear maximum
        assert generator.check_errors() == [] and analyzer.check_errors() == []
    finally:
        generator.disable()
        for instrument in (generator, analyzer, ring):
            instrument.adapter.close()


def test_binary_trace_over_tcp_matches_the_block(server):
    analyzer = SpectrumAnalyzer(server.resources["analyzer"], **VISA)
    try:
        analyzer.single_sweep()
        binary = analyzer.trace_binary()
        assert binary.dtype == np.float32 and binary.shape == (analyzer.frequency_points,)
        assert np.all(binary > -200) and np.all(binary < 30)
        np.testing.assert_array_equal(analyzer.trace_binary(), binary)  # held sweep
        assert analyzer.id.startswith("Agilent Technologies,E4408B")  # stream still in step
        analyzer.continuous_sweep = True
    finally:
        analyzer.adapter.close()


def test_unknown_header_is_queued_and_server_keeps_answering(server):
    with raw_client(server, "gen2") as connection:
        connection.sendall(b":BOGUS:HEADER 1\n")
        assert ask_raw(connection, b"SYST:ERR?\n") == b'-113,"Undefined header"\n'
        assert ask_raw(connection, b"*IDN?\n").startswith(b"Agilent Technologies,E8257D,")
        assert ask_raw(connection, b"SYST:ERR?\n") == b'+0,"No error"\n'


def test_garbage_and_disconnects_do_not_kill_the_server(server):
    with raw_client(server, "ring") as connection:
        connection.sendall(b"\x00\xff\xfe;;::#!@\r\n" + bytes(range(256)) + b"\n:FIEL 1e99\n")
    with raw_client(server, "ring") as connection:
        connection.sendall(b"*IDN?")  # disconnect in the middle of a message
    with raw_client(server, "ring") as connection:
        assert ask_raw(connection, b"*IDN?\n").startswith(b"labpgt,RingController,")
        assert ask_raw(connection, b"*CLS;*OPC?\n") == b"1\n"


def test_concurrent_clients_are_served_consistently(server):
    failures = []

    def worker(value):
        try:
            with raw_client(server, "gen1") as connection:
                for _ in range(20):
                    answer = ask_raw(connection, b":POW %d dBm;:POW?;*OPC?\n" % value)
                    power, done = answer.strip().split(b";")
                    if float(power) != value or done != b"1":
                        failures.append(answer)
        except Exception as error:  # pragma: no cover - reported below
            failures.append(error)

    threads = [threading.Thread(target=worker, args=(v,)) for v in (-20, -30, -40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert failures == []


def test_a_failed_query_is_answered_at_once_and_queued(server):
    """A bad query costs no timeout: an empty answer comes back at once, the error waits in the queue."""
    connection = raw_client(server, "analyzer")
    try:
        started = time.monotonic()
        assert ask_raw(connection, b":CALC:MARK7:Y?\n") == b"\n"  # the ESA has markers 1-4
        assert ask_raw(connection, b":FREQ:CENT?;:NOPE?\n").startswith(b"+")  # what came before the error
        assert time.monotonic() - started < 1.0
        assert (
            ask_raw(connection, b"*ESR?;:SYST:ERR?;:SYST:ERR?;:SYST:ERR?\n")
            == b'32;-114,"Header suffix out of range";-113,"Undefined header";+0,"No error"\n'
        )
    finally:
        connection.close()
