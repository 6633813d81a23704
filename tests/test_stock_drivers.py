"""Stock QCoDeS and PyMeasure drivers, unchanged, against `labpgt sim` over loopback TCP.

Each `labpgt sim` process (one per analyzer dialect) is shared by the module's tests. Every test
constructs the driver as a lab would, sets and reads back its main parameters, reads a trace or a
marker where the instrument has them, and ends with an empty error queue. Last, `labpgt train
--bench` runs through an R&S analyzer and Anritsu generators served by `labpgt sim`.
"""

import json
import subprocess
import sys
import warnings

import h5py
import numpy as np
import pytest
from pymeasure.instruments.agilent import Agilent8257D, AgilentE4408B
from pymeasure.instruments.anritsu import AnritsuMG3692C
from pymeasure.instruments.rohdeschwarz import FSL
from qcodes.instrument_drivers.agilent import AgilentE8257D, AgilentE8267C
from qcodes.instrument_drivers.Keysight import KeysightN5173B, KeysightN5183B, KeysightN9030B

from labpgt.cli import main
from labpgt.instruments import RingController
from labpgt.instruments.simulated.ring import RingParameters, open_loop_level_dbm

pytestmark = pytest.mark.slow  # stock drivers over TCP

NO_ERROR = '+0,"No error"'
TONE_HZ, TONE_DBM = 3.7312e9, 0.0  # in the passband of the default ring (f_FMR 3.70 GHz)
# where the analyzer shows it, the loop open: through the couplers and the delay line (docs/ring-physics.md §1)
SHOWN_DBM = float(open_loop_level_dbm(TONE_DBM, TONE_HZ, RingParameters().default_field_mt))
PYMEASURE_VISA = dict(visa_library="@py", read_termination="\n", write_termination="\n", timeout=5000)
QCODES_VISA = dict(visalib="@py", timeout=5)


@pytest.fixture(scope="module")
def sim_factory(tmp_path_factory):
    """Start `labpgt sim` with some options; each yields (resources, bench file). Stopped at module end."""
    processes = []

    def start(*options):
        bench_file = tmp_path_factory.mktemp("sim") / "bench.toml"
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "labpgt",
                "sim",
                "--port",
                "0",
                "--seed",
                "3",
                "--write-bench",
                str(bench_file),
                *options,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        resources = {}
        while "analyzer" not in resources:  # the analyzer is announced last
            line = process.stdout.readline()
            if not line:
                pytest.fail(f"labpgt sim {' '.join(options)} did not start: {process.stderr.read()}")
            name, resource = line.split()
            resources[name] = resource
        return resources, bench_file

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def keysight(sim_factory):
    return sim_factory("--analyzer", "x-series", "--generators", "4", "--generator", "psg,e8267c,mxg,exg")[0]


@pytest.fixture(scope="module")
def esa(sim_factory):
    return sim_factory("--generators", "1")[0]


@pytest.fixture(scope="module")
def rohde_anritsu(sim_factory):
    return sim_factory("--analyzer", "fsx", "--generators", "2", "--generator", "mg369x")


@pytest.fixture
def qcodes_instruments():
    """QCoDeS instruments opened by a test, closed after it (QCoDeS names instruments globally)."""
    opened = []

    def open_instrument(cls, name, resource, **kwargs):
        instrument = cls(name, resource, **QCODES_VISA, **kwargs)
        opened.append(instrument)
        return instrument

    yield open_instrument
    for instrument in opened:
        instrument.close()


def ring_open_loop(resources):
    """The ring's amplifier off: the analyzer sees the generators' tones through the delay line."""
    ring = RingController(resources["ring"], **PYMEASURE_VISA)
    ring.amplifier_enabled = False
    ring.field = RingParameters().default_field_mt
    ring.adapter.close()


def emit_tone(generator):
    """The acceptance tone through a PyMeasure generator driver."""
    generator.frequency = TONE_HZ
    generator.power = TONE_DBM
    generator.enable()


def test_qcodes_agilent_e8257d(keysight, qcodes_instruments):
    psg = qcodes_instruments(AgilentE8257D, "e8257d", keysight["gen1"])
    # the driver read the frequency and power ranges from options 520 and 1E1
    assert (psg._min_freq, psg._max_freq, psg._min_power, psg._max_power) == (100e3, 20e9, -135, 10)
    psg.frequency(3.0012e9)
    psg.power(-20.0)
    psg.phase(45.0)
    psg.on()
    assert (psg.frequency(), psg.power(), psg.output_enabled()) == (3.0012e9, -20.0, True)
    assert psg.phase() == pytest.approx(45.0)
    psg.off()
    assert psg.output_enabled() is False
    assert psg.IDN()["model"] == "E8257D"
    assert psg.ask("SYST:ERR?") == NO_ERROR


def test_qcodes_agilent_e8267c(keysight, qcodes_instruments):
    psg = qcodes_instruments(AgilentE8267C, "e8267c", keysight["gen2"])  # the constructor sets power and offset 0
    psg.frequency(3.0e9)
    psg.freq_offset(1e6)
    assert psg.frequency() == 3.001e9 and psg.freq_offset() == 1e6  # displayed = RF + offset
    psg.freq_offset(0)
    psg.freq_mode("CW")
    psg.pulse_width(15e-9)
    psg.phase(90)
    psg.power(-12.5)
    psg.power_offset(2.0)
    psg.output_rf("ON")
    psg.modulation_rf("OFF")
    assert psg.freq_mode() == "CW" and float(psg.pulse_width()) == pytest.approx(15e-9)
    assert psg.phase() == pytest.approx(90) and psg.power() == -10.5 and psg.power_offset() == 2.0
    assert psg.output_rf() == "ON" and psg.modulation_rf() == "OFF"
    psg.reset()
    assert psg.output_rf() == "OFF" and psg.power_offset() == 0.0
    assert psg.ask("SYST:ERR?") == NO_ERROR


@pytest.mark.parametrize(
    "driver, name, model", [(KeysightN5183B, "gen3", "N5183B"), (KeysightN5173B, "gen4", "N5173B")]
)
def test_qcodes_keysight_mxg_and_exg(keysight, qcodes_instruments, driver, name, model):
    source = qcodes_instruments(driver, model.lower(), keysight[name])
    assert source.IDN()["model"] == model and "520" in source._options
    source.frequency(3.0012e9)
    source.power(-5.0)
    source.phase_offset(0.5)
    source.auto_freq_ref(False)
    source.rf_output(True)
    source.pulse_modulation(True)  # option UNW: the driver adds the pulse parameters
    source.pulse_modulation_source("external")
    assert (source.frequency(), source.power(), source.phase_offset()) == (3.0012e9, -5.0, 0.5)
    assert (source.auto_freq_ref(), source.rf_output(), source.pulse_modulation()) == (False, True, True)
    assert source.pulse_modulation_source() == "external"
    source.rf_output(False)
    assert source.ask("SYST:ERR?") == NO_ERROR


def test_qcodes_keysight_n9030b_trace_and_marker(keysight, qcodes_instruments):
    """Acceptance: a 0 dBm tone at 3.7312 GHz, found by :CALC:MARK1:MAX within one bucket and 1 dB of where
    the couplers and the delay line put it."""
    ring_open_loop(keysight)
    psg = qcodes_instruments(AgilentE8257D, "tone", keysight["gen1"])
    psg.frequency(TONE_HZ)
    psg.power(TONE_DBM)
    psg.on()
    pxa = qcodes_instruments(KeysightN9030B, "pxa", keysight["analyzer"])
    sa = pxa.sa
    sa.setup_swept_sa_sweep(3.68e9, 3.78e9, 1001)
    sa.res_bw(100e3)
    sa.video_bw(100e3)
    sa.detector("POS")
    sa.average_type("LOG")
    sa.mech_attenuation(10)
    sa.preamp("LOW")
    sa.preamp_enabled(False)
    sa.auto_sweep_time_enabled(True)
    sa.auto_sweep_type_enabled(True)
    pxa.cont_meas(False)
    assert (pxa.mode(), pxa.measurement(), sa.npts(), sa.span(), sa.center()) == ("SA", "SAN", 1001, 100e6, 3.73e9)
    assert (sa.res_bw(), sa.video_bw(), sa.detector(), sa.average_type(), sa.mech_attenuation()) == (
        100e3,
        100e3,
        "POS",
        "LOG",
        10,
    )
    assert sa.sweep_time() > 0 and sa.preamp() == "LOW" and sa.preamp_enabled() is False
    trace = sa.trace()  # :READ:SAN1? as little-endian float64 pairs
    frequencies = sa.freq_axis()
    bucket = frequencies[1] - frequencies[0]
    assert trace.shape == (1001,) and abs(frequencies[np.argmax(trace)] - TONE_HZ) <= bucket
    pxa.auto_sweep(False)
    assert np.array_equal(sa.trace(), trace)  # :FETC:SAN1?: the same measurement again
    pxa.write(":CALC:MARK1:MAX")
    x, y = float(pxa.ask(":CALC:MARK1:X?")), float(pxa.ask(":CALC:MARK1:Y?"))
    assert abs(x - TONE_HZ) <= bucket and abs(y - SHOWN_DBM) <= 1.0
    psg.off()
    assert pxa.ask("SYST:ERR?") == NO_ERROR and psg.ask("SYST:ERR?") == NO_ERROR


def test_pymeasure_keysight_esa_and_psg(esa):
    ring_open_loop(esa)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        psg = Agilent8257D(esa["gen1"], **PYMEASURE_VISA)
        analyzer = AgilentE4408B(esa["analyzer"], **PYMEASURE_VISA)
    emit_tone(psg)
    assert (psg.frequency, psg.power, psg.is_enabled) == (TONE_HZ, TONE_DBM, True)
    analyzer.start_frequency = 3.68e9
    analyzer.stop_frequency = 3.78e9
    analyzer.frequency_points = 401
    assert (analyzer.start_frequency, analyzer.stop_frequency, analyzer.frequency_points) == (3.68e9, 3.78e9, 401)
    assert analyzer.sweep_time > 0
    trace, frequencies = analyzer.trace(), analyzer.frequencies
    bucket = frequencies[1] - frequencies[0]
    assert abs(frequencies[np.argmax(trace)] - TONE_HZ) <= bucket
    analyzer.write(":CALC:MARK:MAX")
    x, y = analyzer.values(":CALC:MARK:X?;:CALC:MARK:Y?", separator=";")
    assert abs(x - TONE_HZ) <= bucket and abs(y - SHOWN_DBM) <= 1.0
    psg.disable()
    assert psg.check_errors() == [] and analyzer.check_errors() == []


def test_pymeasure_rohde_schwarz_fsl_and_anritsu_mg3692c(rohde_anritsu):
    resources, _ = rohde_anritsu
    ring_open_loop(resources)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        generator = AnritsuMG3692C(resources["gen1"], **PYMEASURE_VISA)
    fsl = FSL(resources["analyzer"], **PYMEASURE_VISA)
    assert generator.id.startswith("ANRITSU,MG3692C,") and fsl.id.startswith("Rohde&Schwarz,FSL-6,")
    emit_tone(generator)
    assert (generator.power, generator.frequency, generator.output) == (TONE_DBM, TONE_HZ, True)
    fsl.freq_center = 3.73e9
    fsl.freq_span = 100e6
    fsl.res_bandwidth = 300e3
    fsl.video_bandwidth = "AUTO"
    fsl.sweep_time = "AUTO"
    fsl.attenuation = 10
    fsl.trace_mode = "WRIT"
    fsl.continuous_sweep_enabled = False
    assert (fsl.freq_center, fsl.freq_span, fsl.freq_start, fsl.freq_stop) == (3.73e9, 100e6, 3.68e9, 3.78e9)
    assert (fsl.res_bandwidth, fsl.video_bandwidth, fsl.attenuation) == (300e3, 300e3, 10)
    assert fsl.sweep_time > 0 and fsl.trace_mode == "WRIT" and fsl.continuous_sweep_enabled is False
    fsl.single_sweep()
    frequencies, levels = fsl.read_trace()
    bucket = frequencies[1] - frequencies[0]
    assert abs(frequencies[np.argmax(levels)] - TONE_HZ) <= bucket
    marker = fsl.create_marker()
    marker.peak_excursion = 6
    marker.to_trace(1)
    marker.to_peak()
    assert abs(marker.x - TONE_HZ) <= bucket and abs(marker.y - SHOWN_DBM) <= 1.0 and marker.peak_excursion == 6
    delta = fsl.create_marker(2, is_delta_marker=True)
    delta.x = 3.75e9
    assert delta.x == pytest.approx(3.75e9, abs=bucket) and delta.y < -30  # noise, relative to the tone
    delta.disable()
    marker.disable()
    generator.shutdown()
    assert generator.output is False
    assert fsl.ask("SYST:ERR?").strip() == NO_ERROR and generator.ask("SYST:ERR?").strip() == NO_ERROR


def test_training_through_rohde_schwarz_and_anritsu_over_tcp(rohde_anritsu, tmp_path):
    resources, bench_file = rohde_anritsu
    text = bench_file.read_text()
    assert 'driver = "rs-spectrum-analyzer"' in text and text.count('driver = "anritsu-signal-generator"') == 2
    session = tmp_path / "run.h5"
    code = main(
        [
            "train",
            "--bench",
            str(bench_file),
            "--task",
            "iris",
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--eval-every",
            "2",
            "--out",
            str(session),
            "--plot",
            str(tmp_path / "run.png"),
            "--quiet",
        ]
    )
    assert code == 0
    with h5py.File(session, "r") as f:
        identities = json.loads(f.attrs["instruments"])
    assert identities["analyzer"].startswith("Rohde&Schwarz,FSL-6,")
    assert identities["gen1"].startswith("ANRITSU,MG3692C,") and identities["gen2"].startswith("ANRITSU,MG3692C,")
