"""The ring built from a lab's parts, served by `labpgt sim --ring parts` over loopback TCP.

Stock drivers, unchanged (each constructed as a lab would, its main gets and sets done, the instrument's error
queue empty afterwards): PyMeasure's HP11713A, KepcoBOP3612, LakeShore421, LakeShore425 and LakeShore3xx, and
QCoDeS's Weinschel8320. Then `labpgt train --bench` through attenuator, coil supply, gaussmeter, temperature
controller, Tabor generators and analyzer: it completes and records every identity and the field per query;
kill -9 and --resume give the uninterrupted run's final parameters; SIGTERM leaves RF off and the coil current
at its safe value.
"""

import json
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import pyvisa

from labpgt.inspection import inspect_session

pytestmark = pytest.mark.slow  # labpgt sim processes, TCP, trainings

PYMEASURE_VISA = dict(visa_library="@py", read_termination="\n", write_termination="\n", timeout=5000)
TRAIN = [
    "--task", "iris", "--method", "pgt", "--steps", "4", "--batch-size", "8", "--eval-every", "4",
    "--eval-train-samples", "0", "--quiet", "--seed", "1",
]  # fmt: skip
# (few evaluation queries: the stock LakeShore 421 driver waits 50 ms before each command, 0.1 s a query)


def start_sim(tmp_path, *options):
    bench_file = tmp_path / f"bench-{len(list(tmp_path.iterdir()))}.toml"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "labpgt",
            "sim",
            "--port",
            "0",
            "--ring",
            "parts",
            "--generator",
            "tabor,tabor-x,tabor,tabor-x",
            "--write-bench",
            str(bench_file),
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    resources = {}
    while "analyzer" not in resources:
        line = process.stdout.readline()
        if not line:
            pytest.fail(f"labpgt sim did not start: {process.stderr.read()}")
        name, resource = line.split()
        resources[name] = resource
    return process, resources, bench_file


@pytest.fixture
def served(tmp_path):
    started = []

    def start(*options):
        started.append(start_sim(tmp_path, *options))
        return started[-1][1:]

    yield start
    for process, _, _ in started:
        process.terminate()
        process.wait(timeout=10)


def ask(resource, message, termination="\n"):
    rm = pyvisa.ResourceManager("@py")
    inst = rm.open_resource(resource, read_termination=termination, write_termination="\n", timeout=3000)
    try:
        return inst.query(message).strip()
    finally:
        inst.close()


def _VisaSocket(resource):
    """PyMeasure's VISA adapter on a raw socket, without the send-end attribute (what a GPIB-LAN gateway gives)."""
    from pymeasure.adapters import VISAAdapter

    return VISAAdapter(resource, visa_library="@py", read_termination="\n", write_termination="\n", timeout=5000)


def no_error(resource):
    assert ask(resource, ":SYST:ERR?").startswith("+0"), f"{resource} has errors queued"


def test_stock_pymeasure_and_qcodes_drivers_run_against_the_served_parts(served):
    from pymeasure.instruments.hp import HP11713A
    from pymeasure.instruments.hp.hp11713a import Attenuator_11dB, Attenuator_110dB
    from pymeasure.instruments.kepco import KepcoBOP3612
    from pymeasure.instruments.keysight import KeysightE3631A
    from pymeasure.instruments.lakeshore import LakeShore3xx, LakeShore421, LakeShore425
    from qcodes.instrument_drivers.Lakeshore import LakeshoreModel336
    from qcodes.instrument_drivers.weinschel import Weinschel8320

    resources, _ = served("--attenuator", "hp11713", "--gaussmeter", "ls421")
    with pytest.raises(pyvisa.errors.VisaIOError):  # the stock class sets GPIB's send-end, which no socket has
        HP11713A(resources["attenuator"], **PYMEASURE_VISA)
    switch = HP11713A(_VisaSocket(resources["attenuator"]))  # the same driver through a socket adapter
    switch.ATTENUATOR_X, switch.ATTENUATOR_Y = Attenuator_11dB, Attenuator_110dB
    switch.attenuation_x(7)
    switch.attenuation_y(30)
    assert float(switch.ask(":ATT:X?")) + float(switch.ask(":ATT:Y?")) == 37.0  # (on the driver's own connection)
    switch.ch_0.enabled = True
    switch.deactivate_all()
    assert float(switch.ask(":ATT:X?")) == 0.0
    no_error(resources["attenuator"])

    supply = KepcoBOP3612(resources["magnet"], visa_library="@py", timeout=5000)
    supply.operating_mode = "CURR"
    supply.voltage_setpoint = 20
    supply.current_setpoint = 1.5
    supply.output_enabled = True
    assert supply.operating_mode == "CURR" and supply.current_setpoint == pytest.approx(1.5)
    assert supply.current == pytest.approx(1.5) and supply.voltage == pytest.approx(3.0)
    assert supply.output_enabled and supply.confidence_test == 0
    supply.current_setpoint = 0
    no_error(resources["magnet"])

    meter = LakeShore421(resources["gaussmeter"], visa_library="@py", timeout=5000)
    meter.unit = "G"
    meter.auto_range = True
    meter.fast_mode = False
    assert meter.unit == "G" and meter.auto_range is True
    assert abs(meter.field) < 10.0  # G: the coil at 0 A leaves the remanence and the offset
    meter.unit = "T"
    assert meter.unit == "T"
    assert meter.probe_type in ("High Sensitivity", "High Stability", "Ultra-High Sensitivity")
    no_error(resources["gaussmeter"])

    controller = LakeShore3xx(resources["thermometer"], visa_library="@py", timeout=5000)
    assert 15.0 < controller.input_A.celsius < 30.0
    assert controller.input_A.kelvin == pytest.approx(controller.input_A.celsius + 273.15, abs=0.05)
    controller.output_1.setpoint = 300.0
    assert controller.output_1.setpoint == pytest.approx(300.0)
    assert controller.id.startswith("LSCI,MODEL336")
    no_error(resources["thermometer"])
    lakeshore = LakeshoreModel336("ls336", resources["thermometer"], visalib="@py", timeout=5)
    try:
        assert lakeshore.A.temperature() == pytest.approx(controller.input_A.kelvin, abs=0.05)
        assert lakeshore.A.sensor_status() == "OK"
        lakeshore.A.sensor_name("YIG film sensor")  # the driver wants 15 characters
        assert lakeshore.A.sensor_name() == "YIG film sensor"
        lakeshore.output_1.setpoint(301.5)
        assert lakeshore.output_1.setpoint() == 301.5
        lakeshore.output_1.output_range("off")
        assert lakeshore.output_1.output_range() == "off" and lakeshore.output_1.output() == 0.0
    finally:
        lakeshore.close()
    no_error(resources["thermometer"])

    resources, _ = served("--attenuator", "weinschel", "--gaussmeter", "ls425")
    attenuator = Weinschel8320(
        "weinschel", resources["attenuator"].replace("::SOCKET", "::SOCKET"), visalib="@py", timeout=5
    )
    try:
        attenuator.attenuation(24)
        assert attenuator.attenuation() == 24.0
        assert attenuator.IDN()["vendor"] == "Weinschel"
    finally:
        attenuator.close()
    no_error(resources["attenuator"])
    # the 425 has USB (a virtual serial port) only: its stock driver sets the manual's newline terminations for
    # serial; through a socket (a serial-to-LAN bridge, or labpgt sim) they are given as keyword arguments
    meter = LakeShore425(
        resources["gaussmeter"], visa_library="@py", timeout=5000, read_termination="\n", write_termination="\n"
    )
    meter.unit = "G"
    meter.range = 3500
    assert meter.unit == "G" and meter.range == 3500
    assert abs(meter.field) < 10.0
    no_error(resources["gaussmeter"])

    resources, _ = served("--attenuator", "vca")
    source = KeysightE3631A(resources["attenuator"], **PYMEASURE_VISA)
    source.ch_1.current_limit = 0.1
    source.ch_1.voltage_setpoint = 2.5
    source.ch_1.output_enabled = True  # the stock setter's channel list is the E36300's: an E3631A's OUTPut
    # switches all outputs, no list; asked on the driver's connection, which the server reads in order (another
    # connection's query can be served before the setter's write is)
    assert source.ask("SYST:ERR?").startswith("-108")
    source.write("OUTP ON")
    assert source.ch_1.voltage_setpoint == pytest.approx(2.5) and source.ch_1.current_limit == pytest.approx(0.1)
    assert source.ch_1.output_enabled and source.ch_1.voltage == pytest.approx(2.5, abs=0.01)
    assert source.ch_2.voltage_setpoint == 0.0
    no_error(resources["attenuator"])


def train(bench_file, out, *more, **popen):
    return subprocess.Popen(
        [sys.executable, "-m", "labpgt", "train", "--bench", str(bench_file), "--out", str(out), *TRAIN, *more],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def inspect(path):
    """What ``labpgt inspect --json`` prints, read in this process (the writer is another)."""
    return json.loads(json.dumps(inspect_session(path)))


def test_a_training_through_the_served_parts_records_identities_and_the_field_and_resumes_exactly(served, tmp_path):
    resources, bench_file = served("--ideal", "--noise", "0", "--attenuator", "rcdat")
    whole = tmp_path / "whole.h5"
    run = train(bench_file, whole)
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err
    info = inspect(whole)
    identities = info["instruments"]
    assert set(identities) == set(resources)
    assert identities["attenuator"].startswith("Mini-Circuits,RCDAT") and identities["magnet"].startswith("KEPCO")
    assert identities["gen1"].startswith("Tabor Electronics,LS6081B") and "LSX6081B" in identities["gen2"]
    with h5py.File(whole, "r") as f:
        field = f["queries/field_mt"][:]
        assert f["queries/field_mt"].attrs["units"] == "mT"
    assert field.size == info["queries"] and np.all(np.abs(field - 70.99) <= 0.02)

    interrupted = tmp_path / "interrupted.h5"
    run = train(bench_file, interrupted)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if interrupted.exists() and (inspect(interrupted)["steps"] or 0) >= 2:
            break
    run.kill()  # kill -9 in the middle of a step
    run.wait(timeout=10)
    resumed = subprocess.run(
        [sys.executable, "-m", "labpgt", "train", "--resume", str(interrupted), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert inspect(interrupted)["final_params_sha256"] == info["final_params_sha256"]


def test_sigterm_leaves_rf_off_and_the_coil_at_its_safe_current(served, tmp_path):
    resources, bench_file = served("--attenuator", "vca", "--gaussmeter", "ls425")
    session = tmp_path / "stopped.h5"
    run = train(bench_file, session, "--steps", "200")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (session.exists() and inspect(session)["queries"] > 20):
        time.sleep(0.5)
    assert abs(float(ask(resources["magnet"], "MEAS:CURR?"))) > 3.0
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 128 + signal.SIGTERM, err
    assert all(ask(resources[f"gen{i}"], ":OUTP?") == "0" for i in range(1, 5))
    assert float(ask(resources["magnet"], "MEAS:CURR?")) == 0.0
