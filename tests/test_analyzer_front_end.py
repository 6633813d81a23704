"""The simulated analyzers' front end and the generators' settings, in process (raw SCPI, no driver).

Markers, detectors with the Rayleigh envelope's statistics, averaging, trace modes, attenuation,
the measurement forms, the R&S dialect, generator offsets; each checked against what the physics
or the programming manuals say, not against the implementation's own numbers.
"""

import numpy as np
import pytest

from labpgt.instruments.simulated import SimulatedBench
from labpgt.instruments.simulated.ring import RingParameters, open_loop_level_dbm

TONE_HZ, TONE_DBM = 3.7312e9, 0.0  # in the passband of the default ring (f_FMR 3.70 GHz)
FIELD = RingParameters().default_field_mt


def displayed_dbm(power_dbm, frequency_hz):
    """Where the analyzer shows a tone with the loop open: through the couplers and the delay line."""
    return float(open_loop_level_dbm(power_dbm, frequency_hz, FIELD))


def ask(instrument, message):
    return instrument.handle(message).decode().strip()


def errors(instrument):
    found = []
    while (entry := ask(instrument, ":SYST:ERR?")) != '+0,"No error"':
        found.append(entry)
    return found


def numbers(text):
    return np.array([float(v) for v in text.replace(";", ",").split(",")])


def quiet_bench(analyzer_model="esa", seed=0, **kwargs):
    """Amplifier off, no tones: only the analyzer's own (flat) noise floor."""
    return SimulatedBench(n_generators=1, seed=seed, analyzer_model=analyzer_model, **kwargs)


def tone_bench(analyzer_model="esa", generator_models="psg"):
    bench = SimulatedBench(n_generators=1, seed=1, analyzer_model=analyzer_model, generator_models=generator_models)
    ask(bench["gen1"], f":FREQ {TONE_HZ} Hz;:POW {TONE_DBM} dBm;:OUTP ON")
    return bench


@pytest.mark.parametrize("model", ["esa", "x-series", "fsx"])
def test_peak_search_reads_a_tone_back_within_one_bucket_and_1_db(model):
    bench = tone_bench(model)
    analyzer = bench.analyzer
    ask(analyzer, ":FREQ:CENT 3.73 GHz;:FREQ:SPAN 100 MHz;:SWE:POIN 401;:INIT:CONT OFF;:INIT")
    ask(analyzer, ":CALC:MARK1:MAX")
    x, y = float(ask(analyzer, ":CALC:MARK1:X?")), float(ask(analyzer, ":CALC:MARK1:Y?"))
    bucket = 100e6 / 400
    assert abs(x - TONE_HZ) <= bucket
    assert abs(y - displayed_dbm(TONE_DBM, TONE_HZ)) <= 1.0
    assert errors(analyzer) == []


def test_next_peak_left_right_and_delta_marker():
    bench = SimulatedBench(n_generators=2, seed=2, noise=False)
    analyzer = bench.analyzer
    ask(bench["gen1"], ":FREQ 3.7312 GHz;:POW 10 dBm;:OUTP 1")
    ask(bench["gen2"], ":FREQ 3.75 GHz;:POW -5 dBm;:OUTP 1")
    # a peak threshold over the analyzer's floor, as a user sets one: the normal detector's noise has 6 dB peaks
    ask(
        analyzer, ":FREQ:CENT 3.74 GHz;:FREQ:SPAN 60 MHz;:CALC:MARK:PEAK:THR -70 dBm;:INIT:CONT 0;:INIT;:CALC:MARK1:MAX"
    )
    found = [float(ask(analyzer, ":CALC:MARK1:X?"))]
    for _ in range(2):
        ask(analyzer, ":CALC:MARK1:MAX:NEXT")
        found.append(float(ask(analyzer, ":CALC:MARK1:X?")))
    im3 = 2 * 3.7312e9 - 3.75e9  # the ring's third-order product 2 f1 - f2
    assert found == pytest.approx([3.7312e9, 3.75e9, im3], abs=0.2e6)
    ask(analyzer, ":CALC:MARK1:MAX:NEXT")  # nothing lower is a peak of 6 dB
    assert errors(analyzer) == ['202,"No peak found"']
    ask(analyzer, ":CALC:MARK1:MAX:RIGH")
    assert float(ask(analyzer, ":CALC:MARK1:X?")) == pytest.approx(3.7312e9, abs=0.2e6)
    ask(analyzer, ":CALC:MARK1:MAX:RIGH")
    assert float(ask(analyzer, ":CALC:MARK1:X?")) == pytest.approx(3.75e9, abs=0.2e6)
    ask(analyzer, ":CALC:MARK1:MAX:LEFT")
    assert float(ask(analyzer, ":CALC:MARK1:X?")) == pytest.approx(3.7312e9, abs=0.2e6)
    # delta: marker 2 relative to its reference (marker 3), which is placed where marker 2 was
    ask(analyzer, ":CALC:MARK2:MAX;:CALC:MARK2:MODE DELT;:CALC:MARK2:MAX:NEXT")
    dx, dy = float(ask(analyzer, ":CALC:MARK2:X?")), float(ask(analyzer, ":CALC:MARK2:Y?"))
    expected_dy = displayed_dbm(-5.0, 3.75e9) - displayed_dbm(10.0, 3.7312e9)  # 15 dB and the passband's slope
    assert dx == pytest.approx(3.75e9 - 3.7312e9, abs=0.3e6) and dy == pytest.approx(expected_dy, abs=1.5)
    assert ask(analyzer, ":CALC:MARK2:MODE?;:CALC:MARK3:MODE?;:CALC:MARK2:REF?") == "DELT;POS;3"
    ask(analyzer, ":CALC:MARK:AOFF;:CALC:MARK1:Y?")
    assert errors(analyzer) == ['-221,"Settings conflict"']


def rayleigh_moments(samples: int) -> tuple[float, float, float]:
    """Mean, standard deviation and skewness of 10 log10 X, X the largest of ``samples`` unit-mean
    exponential powers (the detected peak of a Rayleigh envelope), by quadrature of its density."""
    x = np.logspace(-8, 2.5, 400001)
    density = samples * (1 - np.exp(-x)) ** (samples - 1) * np.exp(-x)
    db = 10 * np.log10(x)
    mean = np.trapezoid(db * density, x)
    std = np.sqrt(np.trapezoid((db - mean) ** 2 * density, x))
    return float(mean), float(std), float(np.trapezoid((db - mean) ** 3 * density, x) / std**3)


def rayleigh_mean_db(samples: int) -> float:
    return rayleigh_moments(samples)[0]


def test_sample_and_peak_detector_floors_follow_the_rayleigh_envelope():
    bench = quiet_bench()
    analyzer = bench.analyzer
    ask(analyzer, ":FREQ:CENT 3.5 GHz;:FREQ:SPAN 200 MHz;:SWE:POIN 101;:BAND 100 kHz;:INIT:CONT 0")
    samples = analyzer.samples_per_point
    assert samples == 50  # (sweep time per bucket) x RBW = 2.5 x bucket / RBW = 2.5 x 2 MHz / 100 kHz
    floors = {}
    for detector in ("SAMP", "POS"):
        ask(analyzer, f":DET {detector}")
        floors[detector] = np.mean([numbers(ask(analyzer, ":INIT;:TRAC? TRACE1")).mean() for _ in range(20)])
    mean_noise_dbm = analyzer.floor_dbm_per_hz + 10 * np.log10(1.128 * 100e3)  # the ESA's 4-pole noise bandwidth
    assert rayleigh_mean_db(1) == pytest.approx(-2.507, abs=0.01)  # log of a Rayleigh envelope's power
    assert floors["SAMP"] - mean_noise_dbm == pytest.approx(rayleigh_mean_db(1), abs=1.5)
    assert floors["POS"] - floors["SAMP"] == pytest.approx(rayleigh_mean_db(samples) - rayleigh_mean_db(1), abs=1.5)
    assert errors(analyzer) == []


def test_peak_detector_skews_the_floor_upward():
    bench = quiet_bench()
    analyzer = bench.analyzer
    ask(analyzer, ":SWE:POIN 101;:BAND 100 kHz;:INIT:CONT 0")  # 50 samples per point, as above
    traces = {}
    for detector in ("SAMP", "POS"):
        ask(analyzer, f":DET {detector}")
        traces[detector] = numbers(ask(analyzer, ";".join([":INIT;:TRAC?"] * 20)))

    def skew(values):
        centred = values - values.mean()
        return np.mean(centred**3) / np.std(values) ** 3

    # the log of an exponential power leans far low (skewness -1.13); the log of the largest of 50
    # leans high: the peak detector lifts the floor, narrows it, and turns its lean upward
    for detector, samples in (("SAMP", 1), ("POS", 50)):
        _, std, skewness = rayleigh_moments(samples)
        assert traces[detector].std() == pytest.approx(std, rel=0.1)
        assert skew(traces[detector]) == pytest.approx(skewness, abs=0.25)
    assert rayleigh_moments(1)[2] < -1 and rayleigh_moments(50)[2] > 0.2


@pytest.mark.parametrize("average_type", ["LOG", "RMS"])
def test_averaging_ten_traces_lowers_the_noise_std_by_root_ten(average_type):
    bench = quiet_bench(seed=4)
    analyzer = bench.analyzer
    ask(analyzer, f":SWE:POIN 2001;:INIT:CONT 0;:AVER:TYPE {average_type}")
    normal = numbers(ask(analyzer, ":INIT;:TRAC? TRACE1"))
    ask(analyzer, ":AVER:COUN 10;:AVER ON")
    auto = numbers(ask(analyzer, ":INIT;:TRAC? TRACE1"))
    # the detector on auto: normal (odd points peaks, even points pits) until averaging couples it to sample
    assert normal[0::2].mean() - normal[1::2].mean() > 5.0 and abs(auto[0::2].mean() - auto[1::2].mean()) < 0.5
    ask(analyzer, ":AVER OFF;:DET SAMP")
    single = numbers(ask(analyzer, ":INIT;:TRAC? TRACE1")).std()
    ask(analyzer, ":AVER ON")
    averaged = numbers(ask(analyzer, ":INIT;:TRAC? TRACE1")).std()
    assert single / averaged == pytest.approx(np.sqrt(10), rel=0.3)
    assert ask(analyzer, ":AVER?;:AVER:COUN?;:TRAC1:MODE?") == "1;10;AVER"
    assert errors(analyzer) == []


def test_trace_modes_max_hold_min_hold_view_and_blank():
    bench = quiet_bench(seed=5)
    analyzer = bench.analyzer
    ask(analyzer, ":INIT:CONT 0;:AVER:COUN 5;:TRAC2:MODE MAXH;:TRAC3:MODE MINH;:INIT")
    write, high, low = (numbers(ask(analyzer, f":TRAC? TRACE{n}")) for n in (1, 2, 3))
    assert np.all(high >= write) and np.all(low <= write) and high.mean() > write.mean() + 1 > low.mean() + 2
    ask(analyzer, ":TRAC1:MODE VIEW;:INIT")
    assert np.array_equal(numbers(ask(analyzer, ":TRAC? TRACE1")), write)  # frozen
    held = numbers(ask(analyzer, ":TRAC? TRACE2"))
    ask(analyzer, ":TRAC2:MODE BLAN;:INIT")  # blanked: kept, no longer updated
    assert np.array_equal(numbers(ask(analyzer, ":TRAC? TRACE2")), held)
    ask(analyzer, ":TRAC? TRACE3;:TRAC? TRACE4")  # trace 4 never swept: no data
    assert errors(analyzer) == ['-230,"Data corrupt or stale"']


def test_attenuation_raises_the_noise_floor_and_follows_the_reference_level():
    bench = quiet_bench(seed=6)
    analyzer = bench.analyzer
    ask(analyzer, ":INIT:CONT 0;:SWE:POIN 1001")
    assert ask(analyzer, ":POW:ATT?;:POW:ATT:AUTO?;:DISP:WIND:TRAC:Y:RLEV?") == "10;1;+0.00000000000E+00"  # NR1 dB
    at_10 = numbers(ask(analyzer, ":INIT;:TRAC?")).mean()
    ask(analyzer, ":POW:ATT 30")
    at_30 = numbers(ask(analyzer, ":INIT;:TRAC?")).mean()
    assert at_30 - at_10 == pytest.approx(20.0, abs=0.5)
    ask(analyzer, ":POW:ATT:AUTO ON;:DISP:WIND:TRAC:Y:RLEV 12 dBm")  # auto: RL + 10 dB, 5 dB steps
    assert float(ask(analyzer, ":POW:ATT?")) == 25.0
    ask(analyzer, ":DISP:WIND:TRAC:Y:RLEV -40 dBm")
    assert float(ask(analyzer, ":POW:ATT?")) == 0.0
    ask(analyzer, ":DISP:WIND:TRAC:Y:RLEV:OFFS 7 dB")  # an offset shifts every amplitude
    assert numbers(ask(analyzer, ":INIT;:TRAC?")).mean() == pytest.approx(at_10 - 10 + 7, abs=0.5)


def test_video_bandwidth_smooths_the_floor_and_slows_the_sweep():
    bench = quiet_bench(seed=7)
    analyzer = bench.analyzer
    ask(analyzer, ":INIT:CONT 0;:SWE:POIN 2001;:DET SAMP")
    auto_time = float(ask(analyzer, ":SWE:TIME?"))
    wide = numbers(ask(analyzer, ":INIT;:TRAC?")).std()
    ask(analyzer, ":BAND:VID 10 kHz")  # RBW 1 MHz: 100 samples averaged
    narrow = numbers(ask(analyzer, ":INIT;:TRAC?")).std()
    assert wide == pytest.approx(5.57, abs=0.3) and narrow < wide / 5  # 5.57 dB: log of an exponential
    assert float(ask(analyzer, ":SWE:TIME?")) == pytest.approx(100 * auto_time)
    assert ask(analyzer, ":BAND:VID:AUTO?") == "0"


def test_x_series_measurement_forms_and_catalogs():
    bench = tone_bench("x-series")
    analyzer = bench.analyzer
    assert ask(analyzer, "*OPT?") == '"526,B40,EA3,P26,PFR"'
    assert ask(analyzer, ":INST:CAT?;:CONF:CAT?;:INST?;:CONF?") == '"SA 1";"SAN";SA;SAN'
    ask(analyzer, ":CONF:SAN;:FREQ:CENT 3.73 GHz;:FREQ:SPAN 20 MHz;:SWE:POIN 201")
    assert ask(analyzer, ":FETC:SAN?") == ""
    assert errors(analyzer) == ['-230,"Data corrupt or stale"']
    pairs = numbers(ask(analyzer, ":READ:SAN?")).reshape(-1, 2)
    assert pairs.shape == (201, 2) and pairs[0, 0] == 3.72e9 and pairs[-1, 0] == 3.74e9
    assert abs(pairs[np.argmax(pairs[:, 1]), 0] - TONE_HZ) <= 0.1e6
    assert np.array_equal(numbers(ask(analyzer, ":FETC:SAN1?")).reshape(-1, 2), pairs)
    assert ask(analyzer, ":DET:TRAC2 SAMP;:DET:TRAC?;:TRAC2:TYPE MAXH;:TRAC2:TYPE?") == "SAMP;MAXH"
    assert ask(analyzer, ":STAT:OPER:COND?;:STAT:OPER?;:STAT:OPER?") == "0;24;0"  # sweeping, measuring
    ask(analyzer, ":FREQ:CENT 3.735 GHz;:FREQ:TUNE:IMM")  # autotune: onto the tone
    assert abs(float(ask(analyzer, ":FREQ:CENT?")) - TONE_HZ) <= 0.1e6
    ask(analyzer, ":FREQ:CENT 3.735 GHz;:INIT;:CALC:MARK1:MAX;:CALC:MARK1:CENT")  # marker -> center
    assert abs(float(ask(analyzer, ":FREQ:CENT?")) - TONE_HZ) <= 0.1e6
    assert errors(analyzer) == []


def test_rs_dialect_markers_delta_markers_and_trace_modes():
    bench = tone_bench("fsx", "mg369x")
    analyzer = bench.analyzer
    assert ask(analyzer, "*IDN?").startswith("Rohde&Schwarz,FSL-6,") and ask(analyzer, "*OPT?") == "B4,B5,B22"
    assert ask(analyzer, "DET?;FORM:BORD?") == "APE;SWAP"
    ask(analyzer, "FREQ:CENT 3.73 GHz")
    ask(analyzer, "FREQ:SPAN 50 MHz")
    ask(analyzer, "INIT:CONT OFF")
    ask(analyzer, "INIT; *WAI")
    ask(analyzer, "CALC:MARK:MAX")
    assert abs(float(ask(analyzer, "CALC:MARK:X?")) - TONE_HZ) <= 50e6 / 400
    ask(analyzer, "CALC:DELT2:STAT ON")
    ask(analyzer, "CALC:DELT2:X 3.74 GHz")
    assert float(ask(analyzer, "CALC:DELT2:X:REL?")) == pytest.approx(3.74e9 - float(ask(analyzer, "CALC:MARK:X?")))
    assert float(ask(analyzer, "CALC:DELT2:Y?")) < -40  # noise relative to the tone
    assert ask(analyzer, ":DISP:TRAC:MODE MAXH;:DISP:TRAC:MODE?;:DISP:WIND:TRAC2:MODE?") == "MAXH;BLAN"
    assert ask(analyzer, ":INP:ATT 20;:INP:ATT?;:CALC:MARK:PEXC 10 dB;:CALC:DELT2:PEXC?") == "20;+1.00000000000E+01"
    assert errors(analyzer) == []


@pytest.mark.parametrize(
    "model, identity, options",
    [
        ("psg", "Agilent Technologies,E8257D,", "1E1,1EA,520,UNT,UNW"),
        ("e8267c", "Agilent Technologies,E8267C,", "1E1,520,UNT,UNW,002"),
        ("mxg", "Keysight Technologies,N5183B,", "1E1,1EA,520,UNW"),
        ("exg", "Keysight Technologies,N5173B,", "1E1,520,UNW"),
        ("mg369x", "ANRITSU,MG3692C,", "2,4"),
    ],
)
def test_generators_identify_as_their_models(model, identity, options):
    generator = SimulatedBench(n_generators=1, generator_models=model)["gen1"]
    assert ask(generator, "*IDN?").startswith(identity) and ask(generator, "*OPT?") == options


def test_generator_offsets_move_what_is_displayed_not_the_rf():
    bench = tone_bench()
    generator, analyzer = bench["gen1"], bench.analyzer
    ask(analyzer, ":FREQ:CENT 3.73 GHz;:FREQ:SPAN 20 MHz;:INIT:CONT 0")
    ask(generator, ":FREQ:OFFS 1 GHz;:POW:OFFS 10 dB")
    assert ask(generator, ":FREQ?;:POW?") == "+4.73120000000E+09;+1.00000000000E+01"
    ask(analyzer, ":INIT;:CALC:MARK:MAX")
    assert abs(float(ask(analyzer, ":CALC:MARK:X?")) - TONE_HZ) <= 20e6 / 400  # the RF did not move
    ask(generator, ":FREQ 4.735 GHz;:POW 0 dBm")  # displayed values
    ask(analyzer, ":INIT;:CALC:MARK:MAX")
    assert abs(float(ask(analyzer, ":CALC:MARK:X?")) - 3.735e9) <= 20e6 / 400
    assert float(ask(analyzer, ":CALC:MARK:Y?")) == pytest.approx(displayed_dbm(-10.0, 3.735e9), abs=0.5)
    ask(generator, ":FREQ 20.5 GHz")  # RF 19.5 GHz: allowed
    ask(generator, ":FREQ 21.5 GHz")  # RF 20.5 GHz: refused
    assert errors(generator) == ['-222,"Data out of range"']
    ask(generator, ":SYST:PRES")
    assert ask(generator, ":FREQ:OFFS?;:POW:OFFS?;:OUTP?") == "+0.00000000000E+00;+0.00000000000E+00;0"


def test_generator_settings_without_physics_are_stored_validated_and_read_back():
    generator = SimulatedBench(n_generators=1)["gen1"]
    ask(generator, ":FREQ:MODE CW;:POW:ALC OFF;:POW:ALC:BWID 1 kHz;:PHAS 90 DEG;:PULM:STAT ON;:PULM:SOUR EXT")
    assert (
        ask(generator, ":FREQ:MODE?;:POW:ALC?;:POW:ALC:BWID?;:POW:ALC:BWID:AUTO?;:PULM:STAT?;:PULM:SOUR?")
        == "CW;0;+1.00000000000E+03;0;1;EXT"
    )
    assert float(ask(generator, ":PHAS?")) == pytest.approx(np.pi / 2)
    ask(generator, ":POW:ALC:BWID 5 MHz")
    ask(generator, ":FREQ:MODE CHIRP")
    assert errors(generator) == ['-222,"Data out of range"', '-224,"Illegal parameter value"']
