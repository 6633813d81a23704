"""The simulated ring as the bench shows it (docs/ring-physics.md): one test per point of the physics
review, each through the instruments' SCPI, each against the documented equations and parameters.

Every test talks to a SimulatedBench only through ``handle`` (the bytes a VISA client would send). A
bench is built from RingParameters where a test needs a bench parameter changed (a coupler, the
laboratory's drifts); what is measured is always what the analyzer displays.
"""

import dataclasses

import numpy as np
import pytest

from labpgt.instruments.simulated import SimulatedBench
from labpgt.instruments.simulated.ring import Behaviours, RingParameters, fmr_frequency_hz

QUIET = Behaviours(drift=False)
P = RingParameters()


def bench_with(behaviours=QUIET, noise=False, seed=0, **kwargs):
    return SimulatedBench(n_generators=1, seed=seed, noise=noise, behaviours=behaviours, **kwargs)


def send(bench, name, message):
    return bench[name].handle(message).decode().strip()


def trace(bench):
    return np.array([float(v) for v in send(bench, "analyzer", ":TRAC?").split(",")])


def view(bench, center_hz, span_hz, rbw_hz, points):
    send(bench, "analyzer", f":FREQ:CENT {center_hz};:FREQ:SPAN {span_hz};:BAND {rbw_hz};:SWE:POIN {points}")
    return np.linspace(center_hz - span_hz / 2, center_hz + span_hz / 2, points)


def mean_power_db(traces):
    return 10 * np.log10(np.mean(10 ** (np.asarray(traces) / 10)))


def peaks(axis, tr, above_db):
    i = np.flatnonzero((tr[1:-1] > tr[:-2]) & (tr[1:-1] >= tr[2:])) + 1
    return axis[i[tr[i] > np.median(tr) + above_db]]


# --------------------------------------------------------------------------- 1. the plane of the floor
def floor_db(bench, traces=20):
    """The displayed floor: the mean power of sample-detected noise, amplifier off, no tone."""
    send(bench, "analyzer", ":DET SAMP")
    return mean_power_db([trace(bench) for _ in range(traces)])


def documented_floor_dbm(danl_dbm_per_hz, attenuation_db, noise_bandwidth_hz, reference_dbm=0.0):
    """The analyzer's own displayed noise (§9): its DANL at 0 dB attenuation raised by the attenuation,
    in the RBW filter's noise bandwidth, plus the IF's noise 100 dB under the reference level."""
    return 10 * np.log10(
        10 ** ((danl_dbm_per_hz + attenuation_db) / 10) * noise_bandwidth_hz + 10 ** ((reference_dbm - 100.0) / 10)
    )


def test_the_displayed_floor_moves_with_attenuation_reference_level_preamplifier_and_coupler_loss():
    bench = bench_with(noise=True, analyzer_model="esa")
    view(bench, P.default_center_hz, 200e6, 1e6, 401)
    preset = floor_db(bench)  # RL 0 dBm: auto attenuation 10 dB
    assert send(bench, "analyzer", ":POW:ATT?") == "10"
    assert preset == pytest.approx(documented_floor_dbm(-145.0, 10.0, 1.128e6), abs=0.5)  # 4-pole: 1.128 RBW
    send(bench, "analyzer", ":POW:ATT 30")
    assert floor_db(bench) - preset == pytest.approx(20.0, abs=0.5)  # dB for dB with attenuation
    send(bench, "analyzer", ":POW:ATT:AUTO ON;:DISP:WIND:TRAC:Y:RLEV 20 dBm")
    assert send(bench, "analyzer", ":POW:ATT?") == "30"  # a higher reference level: more attenuation
    assert floor_db(bench) - preset == pytest.approx(20.0, abs=0.5)
    # a lab's offset (here: couplers and delay line, referring the display to the film) moves the floor with it
    send(bench, "analyzer", ":DISP:WIND:TRAC:Y:RLEV:OFFS 27 dB;:DISP:WIND:TRAC:Y:RLEV 27 dBm")
    assert send(bench, "analyzer", ":POW:ATT?") == "10"
    assert floor_db(bench) - preset == pytest.approx(27.0, abs=0.5)
    # at a fixed attenuation a high reference level lifts the floor by the IF's own noise (narrow RBW)
    send(
        bench,
        "analyzer",
        ":DISP:WIND:TRAC:Y:RLEV:OFFS 0 dB;:DISP:WIND:TRAC:Y:RLEV -20 dBm;:POW:ATT 10;:BAND 10 kHz;:FREQ:SPAN 20 MHz",
    )
    low = floor_db(bench)
    send(bench, "analyzer", ":DISP:WIND:TRAC:Y:RLEV 10 dBm")
    expected = 10 * np.log10(1 + 10 ** ((10.0 - 100.0 - low) / 10))
    assert floor_db(bench) - low == pytest.approx(expected, abs=0.7) and expected > 3.0
    # the ESA-L has no preamplifier; the X-series' and the FSL's lower the floor by their DANL
    send(bench, "analyzer", ":POW:GAIN ON")
    assert send(bench, "analyzer", ":SYST:ERR?").startswith("-113")
    for model, on, danl in (
        ("x-series", ":POW:GAIN ON", (-152.0, -164.0)),
        ("fsx", ":INP:GAIN:STAT ON", (-142.0, -152.0)),
    ):
        other = bench_with(noise=True, analyzer_model=model)
        view(other, P.default_center_hz, 200e6, 1e6, 401)
        assert floor_db(other) == pytest.approx(documented_floor_dbm(danl[0], 10.0, 1.064e6), abs=0.5)  # Gaussian
        send(other, "analyzer", on)
        assert floor_db(other) == pytest.approx(documented_floor_dbm(danl[1], 10.0, 1.064e6), abs=0.5)


def test_a_tone_and_the_oscillation_are_displayed_through_the_couplers_and_the_delay_line():
    """The coupler and delay-line losses are bench parameters between the film and the analyzer: a
    10 dB weaker output coupler lowers every line by 10 dB and leaves the analyzer's floor where it is."""
    levels = {}
    for coupling in (10.0, 20.0):
        bench = bench_with(params=dataclasses.replace(P, output_coupling_db=coupling))
        axis = view(bench, P.default_center_hz, 200e6, 1e6, 401)
        send(bench, "gen1", f":FREQ {P.operating_fmr_hz + 20e6} Hz;:POW -10 dBm;:OUTP ON")
        tone = trace(bench)
        i = np.argmin(np.abs(axis - (P.operating_fmr_hz + 20e6)))
        send(bench, "gen1", ":OUTP OFF")
        send(bench, "ring", ":AMPL ON")
        ring = trace(bench)
        levels[coupling] = (tone[i], ring.max(), np.median(ring))
        # with the loop open the tone is where the couplers and the delay line put it (§1)
        loss = P.input_coupling_db + P.delay_line_loss_db() + coupling
        transmission = tone[i] - (-10.0 - loss)
        assert -1.0 < transmission <= 0.5
    assert levels[10.0][0] - levels[20.0][0] == pytest.approx(10.0, abs=0.3)
    assert levels[10.0][1] - levels[20.0][1] == pytest.approx(10.0, abs=0.3)
    assert levels[10.0][2] == pytest.approx(levels[20.0][2], abs=0.3)


# --------------------------------------------------------------------------- 2. the operating point
def oscillation(bench, field_mt, excess_db, queries=30):
    threshold = bench.model.threshold_gain_db(field_mt)
    send(bench, "ring", f":FIEL {field_mt} mT;:AMPL ON;:LOOP:GAIN {threshold + excess_db} dB")
    f_fmr = float(fmr_frequency_hz(field_mt))
    axis = view(bench, f_fmr + 40e6, 100e6, 300e3, 1001)
    return axis, np.array([trace(bench) for _ in range(queries)])


def test_the_default_operating_point_is_above_the_three_magnon_band_and_steady_below_it_it_is_not():
    # the default field puts f_FMR at 3.70 GHz, above 2/3 of γ'μ0Ms (3.27 GHz): no mode can split
    assert P.default_field_mt > P.mu0_ms_t / 3 * 1e3
    steady = bench_with(noise=True, seed=2)
    axis, above = oscillation(steady, P.default_field_mt, 3.0)
    assert above.max(axis=1).std() < 0.5  # the line's power barely moves
    assert len(peaks(axis, above[-1], 40.0)) <= 2  # one mode (a bucket's peak may show twice)
    noisy = bench_with(noise=True, seed=2)
    axis, below = oscillation(noisy, 50.0, 3.0)
    assert below.max(axis=1).std() > 1.0  # multi-dB fluctuations: splitting's noise
    lines = peaks(axis, below[-1], 25.0)
    assert np.ptp(lines) > 0.8 * P.free_spectral_range_hz  # several modes oscillate at once
    assert (below > np.median(below) + 20).sum(axis=1).mean() > 1.3 * (above > np.median(above) + 20).sum(axis=1).mean()
    # above the three-magnon band four-magnon damping limits the power the amplifier alone would allow
    limited, unlimited = (bench_with(dataclasses.replace(QUIET, four_magnon=on)) for on in (True, False))
    for bench in (limited, unlimited):
        view(bench, P.default_center_hz, 200e6, 1e6, 401)
        send(bench, "ring", ":AMPL ON;:LOOP:GAIN 8 dB")
    assert trace(unlimited).max() - trace(limited).max() > 3.0


# --------------------------------------------------------------------------- 3. the analyzer's front end
def skirt_db(bench, offsets_rbw, rbw_hz=100e3):
    """A strong tone's displayed response at offsets (in RBW) from it, relative to its peak, with the
    floor's power taken out (sample detector, no noise)."""
    tone = P.operating_fmr_hz + 20e6
    send(bench, "gen1", f":FREQ {tone} Hz;:POW 10 dBm;:OUTP ON")
    send(bench, "analyzer", ":DET SAMP;:POW:ATT 0")
    axis = view(bench, tone, 20 * rbw_hz, rbw_hz, 2001)
    tr = trace(bench)
    floor = 10 ** (tr[:50].min() / 10)
    peak = tr[np.argmin(np.abs(axis - tone))]
    levels = [
        10 * np.log10(max(10 ** (tr[np.argmin(np.abs(axis - (tone + k * rbw_hz)))] / 10) - floor, 1e-30))
        for k in offsets_rbw
    ]
    return np.array(levels) - peak, 10 * np.log10(floor) - peak


def test_the_esa_skirt_is_the_four_pole_filter_and_the_x_series_the_gaussian():
    offsets = np.array([1.0, 1.5, 2.5, 3.5, 5.0])
    four_pole = -40 * np.log10(1 + (2 * offsets * np.sqrt(2**0.25 - 1)) ** 2)  # AN 150: −30 dB at 2.5, −52 at 5
    esa, esa_floor = skirt_db(bench_with(analyzer_model="esa"), offsets)
    visible = four_pole > esa_floor + 3
    assert visible.sum() >= 4
    np.testing.assert_allclose(esa[visible], four_pole[visible], atol=3.0)
    gaussian = -10 * np.log10(np.e) * 4 * np.log(2) * offsets**2
    x_series, x_floor = skirt_db(bench_with(analyzer_model="x-series"), offsets)
    visible = gaussian > x_floor + 3
    assert visible.sum() >= 2
    np.testing.assert_allclose(x_series[visible], gaussian[visible], atol=3.0)
    assert x_series[2] < esa[2] - 20  # at 2.5 RBW the ESA's neighbour bins see the line


def test_the_normal_detector_alternates_peak_and_pit_in_noise():
    bench = bench_with(noise=True, seed=7)
    view(bench, P.default_center_hz, 200e6, 1e6, 401)  # 5 µs a bucket at 1 MHz: 5 samples
    assert send(bench, "analyzer", ":DET?") == "NORM"
    normal = np.array([trace(bench) for _ in range(60)])
    send(bench, "analyzer", ":DET SAMP")
    mean = mean_power_db([trace(bench) for _ in range(60)])  # the noise's mean power
    odd, even = mean_power_db(normal[:, 0::2]) - mean, mean_power_db(normal[:, 1::2]) - mean
    # an odd point shows the larger of its bucket's maximum and the even bucket's before it: E[max of 10] = H10
    assert odd == pytest.approx(10 * np.log10(sum(1 / k for k in range(1, 11))), abs=0.3)
    assert even == pytest.approx(10 * np.log10(1 / 5), abs=0.3)  # E[min of 5] = 1/5
    assert np.mean(normal[:, 0:-1:2] > normal[:, 1::2]) > 0.95  # each odd point over its even neighbour


def test_the_normal_detector_shows_a_narrow_line_in_the_odd_bucket_after_an_even_one():
    bench = bench_with()
    axis = view(bench, P.default_center_hz, 200e6, 30e3, 401)  # buckets 500 kHz, RBW 30 kHz
    even_bucket = axis[201]  # the 202nd point: even-numbered
    send(bench, "gen1", f":FREQ {even_bucket} Hz;:POW 0 dBm;:OUTP ON")
    normal = trace(bench)
    send(bench, "analyzer", ":DET POS")
    positive = trace(bench)
    assert positive.argmax() == 201
    assert normal[202] == pytest.approx(positive[201], abs=0.1)  # remembered, shown one point to the right
    assert normal[201] < positive[201] - 30  # the even point shows the bucket's minimum


# --------------------------------------------------------------------------- 4. the driven ring folds over
def resonance_sweep(behaviours, power_dbm):
    bench = bench_with(behaviours)
    send(bench, "ring", f":AMPL ON;:LOOP:GAIN {bench.model.threshold_gain_db() - 0.5} dB")
    resonance = bench.model._mode_table(P.default_field_mt, P.mu0_ms_t)[1][0]  # where to look, not what is seen
    axis = view(bench, resonance, 4e6, 10e3, 401)
    offsets = np.arange(-1.5e6, 1.5e6 + 1, 25e3)
    levels = {}
    for name, sweep in (("up", offsets), ("down", offsets[::-1])):
        seen = []
        for offset in sweep:
            send(bench, "gen1", f":FREQ {resonance + offset} Hz;:POW {power_dbm} dBm;:OUTP ON")
            i = np.argmin(np.abs(axis - (resonance + offset)))
            seen.append(trace(bench)[i - 2 : i + 3].max())
        levels[name] = np.array(seen if name == "up" else seen[::-1])
    return offsets, levels


def test_a_driven_ring_below_threshold_folds_its_resonance_over_in_a_sweep_up_and_down():
    offsets, folded = resonance_sweep(QUIET, 5.0)
    differ = np.abs(folded["up"] - folded["down"]) > 3.0
    assert differ.sum() >= 2  # a bistable stretch ...
    assert offsets[differ].max() < 0  # ... below the resonance (N < 0)
    assert offsets[folded["down"].argmax()] < offsets[folded["up"].argmax()]  # the downward sweep rides further
    assert offsets[folded["up"].argmax()] < -100e3  # the strong tone pulled its resonance down
    _, linear = resonance_sweep(dataclasses.replace(QUIET, nonlinear_shift=False), 5.0)
    np.testing.assert_allclose(linear["up"], linear["down"], atol=0.2)  # without the shift: no memory of the sweep


def test_intermodulation_products_are_regenerated_on_a_resonance():
    """2f1 - f2 of two tones, per unit of P1²·P2 as displayed, is far stronger where it lands on a ring
    resonance than half a mode spacing away from one (below threshold, the loop regenerates it)."""
    bench = SimulatedBench(
        n_generators=2, seed=0, noise=False, behaviours=dataclasses.replace(QUIET, nonlinear_shift=False)
    )
    send(bench, "ring", f":AMPL ON;:LOOP:GAIN {bench.model.threshold_gain_db() - 0.5} dB")
    resonance = bench.model._mode_table(P.default_field_mt, P.mu0_ms_t)[1][0]  # where to look, not what is seen
    efficiency = []
    for product in (resonance, resonance + P.free_spectral_range_hz / 2):
        f1, f2 = product + 1.2e6, product + 2.4e6  # 2·f1 - f2 = product
        axis = view(bench, product + 1.2e6, 6e6, 10e3, 601)
        send(bench, "gen1", f":FREQ {f1} Hz;:POW -5 dBm;:OUTP ON")
        send(bench, "gen2", f":FREQ {f2} Hz;:POW -5 dBm;:OUTP ON")
        tr = trace(bench)
        at = lambda f, tr=tr, axis=axis: tr[np.argmin(np.abs(axis - f))]  # noqa: E731
        efficiency.append(at(product) - 2 * at(f1) - at(f2))
    assert efficiency[0] - efficiency[1] > 10.0


# --------------------------------------------------------------------------- 5. locking within half a mode spacing
def lines(axis, tr, above_db=30.0):
    i = np.flatnonzero((tr[1:-1] > tr[:-2]) & (tr[1:-1] >= tr[2:])) + 1
    return axis[i[tr[i] > np.median(tr) + above_db]]


def locking_edges(behaviours, gain_db, power_dbm, step_hz=0.1e6):
    """(below, above): how far under and over the free-running mode a tone still locks it alone."""
    bench = bench_with(behaviours)
    send(bench, "ring", f":AMPL ON;:LOOP:GAIN {gain_db} dB")
    wide = view(bench, P.default_center_hz, 200e6, 100e3, 2001)
    mode = wide[trace(bench).argmax()]
    axis = view(bench, mode, 14e6, 30e3, 2001)
    mode = axis[trace(bench).argmax()]
    send(bench, "gen1", f":POW {power_dbm} dBm;:OUTP ON")
    edges = []
    for sign in (-1, 1):
        offset = 0.0
        while offset < 6e6:
            tone = mode + sign * (offset + step_hz)
            send(bench, "gen1", f":FREQ {tone} Hz")
            if np.any(np.abs(lines(axis, trace(bench)) - tone) > 2 * (axis[1] - axis[0])):
                break
            offset += step_hz
        edges.append(offset)
    return edges


def test_no_lock_is_reported_beyond_half_a_mode_spacing():
    behaviours = dataclasses.replace(QUIET, nonlinear_shift=False, sidebands=False)
    half = P.free_spectral_range_hz / 2
    ranges = [locking_edges(behaviours, 2.0, power) for power in (0.0, 10.0, 16.0, 22.0)]
    widths = [below + above for below, above in ranges]
    assert all(np.diff(widths) >= 0) and widths[0] > 0  # wider with the tone's power ...
    assert all(below <= half + 0.1e6 and above <= half + 0.1e6 for below, above in ranges)  # ... never past FSR/2
    assert ranges[-1][0] >= 0.8 * half  # the strongest reaches it on the wide side
    assert all(below > above for below, above in ranges[1:])  # wider under the mode (N < 0)
    kind = [locking_edges(Behaviours.ideal(), 2.0, power, step_hz=0.05e6) for power in (10.0, 22.0)]
    assert all(below <= half + 0.05e6 and above <= half + 0.05e6 for below, above in kind)


# --------------------------------------------------------------------------- 6. drift with the documented coefficients
def fmr_track(params, hours=24, every_s=600.0):
    """f_FMR and the temperature sensor every ``every_s`` for ``hours``, from a tone on the passband's
    lower edge (its displayed level inverts the documented edge), amplifier off (§2, §10)."""
    bench = SimulatedBench(
        n_generators=1,
        seed=3,
        noise=False,
        params=params,
        behaviours=dataclasses.replace(Behaviours.ideal(), drift=True),
    )
    send(bench, "analyzer", f":BAND 10 kHz;:FREQ:SPAN 1 MHz;:SWE:POIN 101;:DET SAMP;:POW:ATT 0;:SWE:TIME {every_s} s")
    open_level = -params.input_coupling_db - params.delay_line_loss_db() - params.output_coupling_db
    f_fmr = float(fmr_frequency_hz(params.default_field_mt, params))
    found, temperatures = [], []
    for _ in range(int(hours * 3600 / every_s)):
        tone = f_fmr + params.edge_offset_hz - 5e6
        send(bench, "gen1", f":FREQ {tone} Hz;:POW 0 dBm;:OUTP ON")
        send(bench, "analyzer", f":FREQ:CENT {tone} Hz")
        transmission = trace(bench)[50] - open_level
        x = params.edge_offset_hz - params.edge_width_hz * np.log(np.expm1(-transmission * np.log(10) / 10))
        f_fmr = tone - x
        found.append(f_fmr)
        temperatures.append(float(send(bench, "ring", ":TEMP?")))
    return np.array(temperatures), np.array(found)


def documented_coefficient_hz_per_k(params, magnet=True):
    """df_FMR/dT from Kittel: the magnet's field coefficient and Ms's temperature coefficient."""
    field, ms = params.default_field_mt, params.mu0_ms_t
    per_mt = float(fmr_frequency_hz(field + 1e-3, params) - fmr_frequency_hz(field - 1e-3, params)) / 2e-3
    per_t = float(fmr_frequency_hz(field, params, ms + 1e-6) - fmr_frequency_hz(field, params, ms - 1e-6)) / 2e-6
    return per_mt * field * params.magnet_tempco_per_k * magnet + per_t * ms * params.ms_temperature_coefficient_per_k


def test_with_drift_the_band_wanders_with_the_documented_temperature_coefficients_including_the_magnets():
    # the room's slow wander only (no warm-up, HVAC or supply noise) and equal lags: the slope of f_FMR
    # against the sensor over a day is the documented coefficient
    slow = dataclasses.replace(
        P,
        warmup_rise_k=0.0,
        hvac_amplitude_k=0.0,
        field_sigma_mt=0.0,
        field_steps_per_hour=0.0,
        magnet_time_constant_s=P.film_time_constant_s,
    )
    for params in (slow, dataclasses.replace(slow, magnet_tempco_per_k=0.0)):
        temperatures, found = fmr_track(params)
        assert np.ptp(temperatures) > 1.0
        slope = np.polyfit(temperatures, found, 1)[0]
        assert slope == pytest.approx(documented_coefficient_hz_per_k(params), rel=0.05)
    assert documented_coefficient_hz_per_k(P) < 1.8 * documented_coefficient_hz_per_k(
        P, magnet=False
    )  # the magnet doubles it


def test_the_ring_warms_up_and_the_air_conditioning_cycles_under_a_lagging_sensor():
    params = dataclasses.replace(P, temperature_sigma_k=0.0, temperature_steps_per_hour=0.0)
    temperatures, found = fmr_track(params, hours=3, every_s=60.0)
    minutes = np.arange(temperatures.size)
    early, late = temperatures[:10].mean(), temperatures[-30:].mean()
    assert late - early == pytest.approx(
        params.warmup_rise_k * (1 - np.exp(-2.5 * 3600 / params.warmup_time_s)), abs=0.4
    )
    detrended = temperatures[60:] - np.polyval(np.polyfit(minutes[60:], temperatures[60:], 2), minutes[60:])
    spectrum = np.abs(np.fft.rfft(detrended))
    period_min = detrended.size / np.argmax(spectrum[1:]) / 1.0
    assert period_min == pytest.approx(params.hvac_period_s / 60, rel=0.35)
    assert np.std(np.diff(temperatures)) > 0.0 and found.std() > 0


# --------------------------------------------------------------------------- 7. the smaller points
def test_the_mode_spacing_changes_across_the_passband_as_the_film_disperses():
    tau = lambda f: P.electrical_delay_s + P.group_delay_s(f, P.operating_fmr_hz)  # noqa: E731 - Damon-Eshbach
    for dispersive in (True, False):
        bench = bench_with(dataclasses.replace(QUIET, dispersion=dispersive, nonlinear_shift=False))
        send(bench, "ring", f":AMPL ON;:LOOP:GAIN {bench.model.threshold_gain_db() - 0.1} dB")
        send(bench, "analyzer", ":DET SAMP;:POW:ATT 0")
        axis = view(bench, P.operating_fmr_hz + 35e6, 60e6, 10e3, 6001)
        humps = peaks(axis, trace(bench), 1.0)  # the regenerative noise comb
        assert humps.size >= 8 and np.ptp(humps) > 35e6
        gaps, middle = np.diff(humps), (humps[1:] + humps[:-1]) / 2
        expected = 1.0 / tau(middle) if dispersive else np.full(gaps.size, P.free_spectral_range_hz)
        np.testing.assert_allclose(gaps, expected, rtol=0.006)
        if dispersive:
            assert gaps[0] / gaps[-1] > 1.03  # the spacing shrinks up the band


def test_no_self_modulation_comb_at_a_mode_spacing_and_the_generators_noise_circulates():
    bench = bench_with()
    send(bench, "ring", ":AMPL ON;:LOOP:GAIN 8 dB")
    wide = view(bench, P.default_center_hz, 200e6, 100e3, 2001)
    mode = wide[trace(bench).argmax()]
    axis = view(bench, mode, 24e6, 10e3, 2401)
    tr = trace(bench)
    for k in (-2, -1, 1, 2):  # MSSW is modulationally stable: no ±FSR comb
        near = np.abs(axis - (mode + k * P.free_spectral_range_hz)) < 100e3
        assert tr[near].max() < np.median(tr) + 20
    # a strong tone far out of the passband brings its broadband noise into the loop, regenerated there
    quiet = bench_with()
    send(quiet, "ring", f":AMPL ON;:LOOP:GAIN {quiet.model.threshold_gain_db() - 0.3} dB")
    send(quiet, "analyzer", ":DET SAMP")
    axis = view(quiet, P.operating_fmr_hz + 20e6, 10e6, 10e3, 1001)
    humps = trace(quiet)
    send(quiet, "gen1", f":FREQ {P.operating_fmr_hz - 200e6} Hz;:POW 25 dBm;:OUTP ON")
    assert trace(quiet).max() - humps.max() == pytest.approx(
        10
        * np.log10(
            1 + 10 ** ((25 - P.input_coupling_db + P.generator_noise_dbc_per_hz - P.amplifier_noise_dbm_per_hz) / 10)
        ),
        abs=0.5,
    )
