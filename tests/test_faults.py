"""Fault injection at the simulated bench's TCP server (labpgt.instruments.simulated.faults, ``labpgt sim --faults``).

Each fault kind is observed by a raw socket client; a scripted injector picks the fault for each
message so a test can put one fault exactly where it wants it.
"""

from __future__ import annotations

import select
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from labpgt.errors import UserError
from labpgt.instruments.simulated import SimulatedBench, serve
from labpgt.instruments.simulated.devices import SimulatedSignalGenerator
from labpgt.instruments.simulated.faults import KINDS, FaultInjector, FaultSpec, garble_response
from labpgt.instruments.simulated.ring import Behaviours
from labpgt.instruments.simulated.scpi import format_number

pytestmark = pytest.mark.slow  # faults injected into servers over TCP

IDEAL_RING = Behaviours.ideal()  # these tests compare traces across benches: the kind ring has no history

IDN_GEN1 = b"Agilent Technologies,E8257D,SIM000001,C.06.28\n"


class Scripted(FaultInjector):
    """Injects the listed faults for the next messages (``None`` = no fault), then none."""

    def __init__(self, script, **spec):
        super().__init__(FaultSpec(seed=0, **spec))
        self.script = list(script)

    def decide(self, instrument=""):
        kind = self.script.pop(0) if self.script else None
        if kind:
            self.counts[kind] += 1
            self.events.append((instrument, kind, ""))
        return kind


@pytest.fixture
def bench():
    return SimulatedBench(n_generators=1, seed=0, noise=False, behaviours=IDEAL_RING)


def connect(server, name="gen1", timeout=2.0):
    sock = socket.create_connection(("127.0.0.1", server.ports[name]), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def ask(sock, message: bytes) -> bytes:
    """Send one message, read through the first ``\\n`` (raises on reset, timeout, EOF)."""
    sock.sendall(message + b"\n")
    answer = b""
    while not answer.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("EOF")
        answer += chunk
    return answer


def ask_block(sock, message: bytes) -> bytes:
    """Read one IEEE block answer exactly as its header says (raises on timeout)."""
    sock.sendall(message + b"\n")
    data = b""
    while len(data) < 2:
        data += sock.recv(65536)
    digits = int(data[1:2])
    while len(data) < 2 + digits:
        data += sock.recv(65536)
    need = 2 + digits + int(data[2 : 2 + digits]) + 1
    while len(data) < need:
        data += sock.recv(65536)
    return data


def outcome(sock, message: bytes):
    try:
        return ask(sock, message)
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    except TimeoutError:
        return "timeout"


# --------------------------------------------------------------------------- the spec
def test_spec_parses_strictly():
    spec = FaultSpec.parse(" drop=0.02, delay=0.01,garble=0.02,error=0.01,reboot=0.001,seed=7,delay_s=0.5")
    assert (spec.drop, spec.delay, spec.garble, spec.error, spec.reboot, spec.seed, spec.delay_s) == (
        0.02,
        0.01,
        0.02,
        0.01,
        0.001,
        7,
        0.5,
    )
    assert FaultSpec.parse(str(spec)) == spec
    assert FaultSpec.parse("drop=1").active and not FaultSpec.parse("seed=3").active
    for bad in [
        "bogus=1",
        "drop=1.5",
        "drop=-0.1",
        "drop=x",
        "drop",
        "drop=",
        "=1",
        "",
        "drop=0.1,drop=0.2",
        "seed=1.5",
        "seed=-1",
        "drop=nan",
        "delay_s=0",
        "reboot_s=-1",
        "drop=0.7,garble=0.7",
    ]:
        with pytest.raises(UserError) as info:
            FaultSpec.parse(bad)
        assert "\n" not in str(info.value)


def test_bad_spec_on_the_command_line_is_one_line_and_exit_2():
    run = subprocess.run(
        [sys.executable, "-m", "labpgt", "sim", "--port", "0", "--faults", "bogus=1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown fault 'bogus'" in lines[0], run.stderr


# --------------------------------------------------------------------------- the injector
def test_fault_sequence_is_determined_by_the_seed_and_has_the_asked_rates():
    spec = FaultSpec.parse("drop=0.1,delay=0.05,garble=0.2,error=0.05,reboot=0.1,seed=11")
    a, b = FaultInjector(spec), FaultInjector(spec)
    seq_a = [a.decide("gen1") for _ in range(4000)]
    assert seq_a == [b.decide("gen1") for _ in range(4000)]
    other = FaultInjector(FaultSpec.parse("drop=0.1,delay=0.05,garble=0.2,error=0.05,reboot=0.1,seed=12"))
    assert seq_a != [other.decide("gen1") for _ in range(4000)]
    for kind in KINDS:
        rate = seq_a.count(kind) / len(seq_a)
        assert rate == pytest.approx(getattr(spec, kind), abs=0.02), kind
    assert a.counts == {kind: seq_a.count(kind) for kind in KINDS}


def test_fault_rng_is_not_the_model_rng():
    noisy = SimulatedBench(n_generators=1, seed=0, noise=True, behaviours=IDEAL_RING)
    state = noisy.model.rng.bit_generator.state
    with serve(noisy, faults=FaultSpec.parse("drop=0.5,seed=0")) as server:
        for _ in range(4):
            sock = connect(server)
            outcome(sock, b"*IDN?")  # dropped or answered: no sweep, no noise drawn
            sock.close()
        assert server.faults.rng is not noisy.model.rng
    assert noisy.model.rng.bit_generator.state == state


def test_garbling_always_changes_the_response_and_keeps_framing_of_ascii():
    rng = np.random.default_rng(0)
    ascii_answer = b"-80.123,-79.5,-81.0,-20.25\n"
    block = b"#216" + np.arange(4, dtype=">f4").tobytes() + b"\n"
    modes = set()
    for _ in range(400):
        garbled, mode = garble_response(ascii_answer, rng)
        modes.add(mode)
        assert garbled != ascii_answer and garbled.endswith(b"\n") and garbled.count(b"\n") == 1
        garbled, mode = garble_response(block, rng)
        modes.add("block-" + mode)
        assert garbled != block and garbled.endswith(b"\n")
    assert modes == {
        "flip",
        "truncate",
        "text",
        "nan",
        "block-nan",
        "block-short_length",
        "block-long_length",
        "block-truncate",
        "block-header",
    }


def test_a_block_after_a_joined_opc_answer_is_garbled_as_a_block_never_silently():
    payload = np.arange(401, dtype=">f4").tobytes()
    header = b"#" + str(len(str(len(payload)))).encode() + str(len(payload)).encode()
    response = b"1;" + header + payload + b"\n"
    rng = np.random.default_rng(5)
    for _ in range(200):
        garbled, mode = garble_response(response, rng)
        assert garbled.startswith(b"1;")
        body = garbled[2:-1]
        if len(body) == len(header) + len(payload) and body.startswith(header):
            # same framing: then the payload must carry a NaN, which no client accepts as data
            values = np.frombuffer(body[len(header) :], dtype=">f4")
            assert mode == "nan" and np.isnan(values).any()


# --------------------------------------------------------------------------- each kind over TCP
def test_drop_resets_the_connection_and_the_server_keeps_serving(bench):
    with serve(bench, faults=Scripted(["drop"])) as server:
        sock = connect(server)
        assert outcome(sock, b":FREQ 3 GHz;*IDN?") == "reset"
        sock.close()
        sock = connect(server)
        assert ask(sock, b"*IDN?") == IDN_GEN1
        assert float(ask(sock, b":FREQ?")) == SimulatedSignalGenerator.PRESET_FREQUENCY_HZ  # not executed
        sock.close()


def test_drop_through_pyvisa_raises_at_once_and_a_new_session_works(bench):
    import pyvisa

    with serve(bench, faults=Scripted(["drop"])) as server:
        rm = pyvisa.ResourceManager("@py")
        visa = dict(read_termination="\n", write_termination="\n", timeout=2000)
        inst = rm.open_resource(server.resources["gen1"], **visa)
        started = time.perf_counter()
        with pytest.raises(OSError):  # ConnectionResetError from pyvisa-py
            inst.query("*IDN?")
        assert time.perf_counter() - started < 1.0
        inst.close()
        inst = rm.open_resource(server.resources["gen1"], **visa)
        assert inst.query("*IDN?") == IDN_GEN1.decode().strip()
        inst.close()


def test_delay_answers_late_so_a_client_must_reconnect_after_a_timeout(bench):
    with serve(bench, faults=Scripted(["delay"], delay_s=0.6)) as server:
        sock = connect(server, timeout=0.15)
        assert outcome(sock, b"*IDN?") == "timeout"
        assert select.select([sock], [], [], 5.0)[0], "the late answer never came"
        # the hazard: the late answer sits in the buffer and reads as the answer to the next query
        # (on a loaded machine the real answer may already be behind it in the same read)
        assert ask(sock, b":OUTP?").split(b"\n")[0] + b"\n" == IDN_GEN1
        sock.close()
        sock = connect(server)  # the remedy: a new connection holds no stale bytes
        assert ask(sock, b":OUTP?") == b"0\n"
        assert ask(sock, b"*IDN?") == IDN_GEN1
        sock.close()


def test_garble_corrupts_ascii_and_binary_answers(bench):
    with serve(bench, faults=Scripted(["garble"] * 6)) as server:
        clean = SimulatedBench(n_generators=1, seed=0, noise=False, behaviours=IDEAL_RING)
        gen = connect(server, timeout=0.3)
        for _ in range(3):
            answer = outcome(gen, b"*IDN?")
            assert isinstance(answer, bytes) and answer != IDN_GEN1  # still one \n-terminated line
        gen.close()
        analyzer = connect(server, "analyzer", timeout=0.5)
        reference = clean.analyzer.handle(b":FORM REAL,32;:TRAC?")
        analyzer.sendall(b":FORM REAL,32\n")  # garbled, but no answer: nothing to corrupt
        for _ in range(2):
            try:
                got = ask_block(analyzer, b":TRAC?")
            except (TimeoutError, ValueError):
                got = None  # a length field too long, or a mangled header
            assert got != reference
            analyzer.close()
            analyzer = connect(server, "analyzer", timeout=0.5)
        assert ask_block(analyzer, b":TRAC?") == reference  # FORM was kept: garbling only hits answers
        analyzer.close()


def test_error_rejects_the_message_and_queues_minus_200(bench):
    with serve(bench, faults=Scripted(["error", None, "error"])) as server:
        sock = connect(server, timeout=0.5)
        sock.sendall(b":FREQ 3 GHz;:OUTP ON\n")  # silently not executed
        assert ask(sock, b":FREQ?;:OUTP?") == b"+2.00000000000E+10;0\n"
        assert outcome(sock, b"*OPC?") == "timeout"  # a rejected query gets no answer
        assert ask(sock, b":SYST:ERR?") == b'-200,"Execution error"\n'
        assert ask(sock, b":SYST:ERR?") == b'-200,"Execution error"\n'
        assert ask(sock, b":SYST:ERR?") == b'+0,"No error"\n'
        sock.close()


def test_reboot_restores_rst_state_resets_every_connection_and_serves_again():
    bench = SimulatedBench(n_generators=1, seed=0, noise=False, behaviours=IDEAL_RING)
    script = [None] * 5 + ["reboot"]  # one injector for all instruments: count every message
    with serve(bench, faults=Scripted(script, reboot_s=0.5)) as server:
        gen, other = connect(server), connect(server)
        ask(gen, b":FREQ 3.1 GHz;:POW -10 dBm;:OUTP ON;*OPC?")
        gen.sendall(b":BOGUS\n")  # leaves -113 in the queue
        ask(gen, b"*OPC?")
        assert ask(other, b":OUTP?;:FREQ?") == b"1;+3.10000000000E+09\n"
        assert bench["gen1"].output_on and bench["gen1"].errors
        ring = connect(server, "ring")
        ask(ring, b":AMPL ON;:LOOP:GAIN 3;*OPC?")  # another instrument: not rebooted
        assert outcome(gen, b"*IDN?") == "reset"
        other.settimeout(1.0)
        assert outcome(other, b"*IDN?") == "reset"  # every connection to the instrument
        try:  # inside reboot_s: accepted and reset (the reset may even beat connect()'s return, on a busy machine)
            refused = connect(server)
        except ConnectionResetError:
            refused = None
        assert refused is None or outcome(refused, b"*IDN?") == "reset"
        time.sleep(0.55)
        gen = connect(server)
        assert ask(gen, b":OUTP?;:FREQ?;:POW?") == b"0;+2.00000000000E+10;-1.35000000000E+02\n"
        assert ask(gen, b":SYST:ERR?") == b'+0,"No error"\n'
        assert ask(gen, b"*IDN?") == IDN_GEN1
        assert ask(ring, b":AMPL?") == b"1\n"
        for sock in (gen, other, ring, refused):
            if sock is not None:
                sock.close()


def test_reboot_of_the_ring_and_analyzer_restores_their_defaults():
    bench = SimulatedBench(n_generators=1, seed=0, noise=False, behaviours=IDEAL_RING)
    defaults = {
        name: bench[name].handle(q)
        for name, q in (
            ("ring", b":AMPL?;:LOOP:GAIN?;:FIEL?"),
            ("analyzer", b":FREQ:STAR?;:FREQ:STOP?;:SWE:POIN?;:FORM?"),
        )
    }
    with serve(bench, faults=Scripted([None, "reboot", None, "reboot"])) as server:
        ring, analyzer = connect(server, "ring"), connect(server, "analyzer")
        ask(ring, b":AMPL ON;:LOOP:GAIN 5;:FIEL 100;*OPC?")
        assert outcome(ring, b"*OPC?") == "reset"
        ask(analyzer, b":FREQ:STAR 1 GHz;:SWE:POIN 1001;:FORM REAL,64;*OPC?")
        assert outcome(analyzer, b"*OPC?") == "reset"
        ring, analyzer = connect(server, "ring"), connect(server, "analyzer")
        assert ask(ring, b":AMPL?;:LOOP:GAIN?;:FIEL?") == defaults["ring"]
        assert ask(analyzer, b":FREQ:STAR?;:FREQ:STOP?;:SWE:POIN?;:FORM?") == defaults["analyzer"]
        ring.close()
        analyzer.close()


# --------------------------------------------------------------------------- seeded, end to end
def _run_seeded_session(spec):
    """Fresh noise-free bench + seeded faults; a fixed list of queries; what the client saw."""
    bench = SimulatedBench(n_generators=1, seed=0, noise=False, behaviours=IDEAL_RING)
    seen = []
    with serve(bench, faults=spec) as server:
        sock = connect(server, timeout=0.4)
        for i in range(14):
            result = outcome(sock, b":FREQ %d MHz;:FREQ?" % (1000 + i))
            seen.append(result)
            if result in ("reset", "timeout"):
                sock.close()
                sock = connect(server, timeout=0.4)
        sock.close()
        return seen, list(server.faults.events)


def test_seeded_faults_are_reproducible_end_to_end_and_clean_answers_are_exact():
    spec = FaultSpec.parse("drop=0.15,garble=0.2,error=0.08,reboot=0.1,seed=3")
    seen, events = _run_seeded_session(spec)
    assert (seen, events) == _run_seeded_session(spec)
    decided = [kind for _instrument, kind, detail in events if not detail]  # garble() adds a second entry
    counts = {kind: decided.count(kind) for kind in KINDS}
    assert all(counts[kind] for kind in ("drop", "garble", "error", "reboot")), events
    exact = [b"%s\n" % format_number((1000 + i) * 1e6).encode() for i in range(len(seen))]
    assert seen.count("reset") == counts["drop"] + counts["reboot"]
    assert seen.count("timeout") == counts["error"]  # a rejected query gets no answer
    wrong = [i for i, result in enumerate(seen) if isinstance(result, bytes) and result != exact[i]]
    assert len(wrong) == counts["garble"]  # every other answer is exact


def test_noise_free_traces_are_identical_with_and_without_faults():
    plain = SimulatedBench(n_generators=1, seed=3, noise=False, behaviours=IDEAL_RING)
    faulty = SimulatedBench(n_generators=1, seed=3, noise=False, behaviours=IDEAL_RING)
    setup = b":FREQ 3.0012 GHz;:POW -20 dBm;:OUTP ON"
    plain["gen1"].handle(setup)
    faulty["gen1"].handle(setup)
    reference = plain["analyzer"].handle(b":FORM REAL,32;:TRAC?")
    with serve(faulty, faults=FaultSpec.parse("garble=0.5,seed=2")) as server:
        analyzer = connect(server, "analyzer", timeout=0.5)
        faulty["analyzer"].handle(b":FORM REAL,32")
        intact = corrupt = 0
        for _ in range(12):
            try:
                got = ask_block(analyzer, b":TRAC?")
            except (TimeoutError, ValueError):
                got = None
            if got == reference:
                intact += 1
            else:
                corrupt += 1
                analyzer.close()
                analyzer = connect(server, "analyzer", timeout=0.5)
        analyzer.close()
        assert intact and corrupt == server.faults.counts["garble"]


def test_no_faults_means_no_injector(bench):
    with serve(bench, faults=FaultSpec.parse("seed=3")) as server:
        assert server.faults is None
        sock = connect(server)
        assert ask(sock, b"*IDN?") == IDN_GEN1
        sock.close()
