"""The kind simulated ring behaves as the physics in ring.py's docstring (1-9) says (model level, no SCPI).

These describe the ideal preset; the real ring's behaviours (10-16) are in test_ring_realism.py.
"""

import numpy as np
import pytest

from labpgt.instruments.simulated.ring import Behaviours, RingModel as RealRingModel, RingParameters, fmr_frequency_hz

P = RingParameters()


def RingModel(**kwargs):  # noqa: N802 - the model, with today's kind ring
    return RealRingModel(behaviours=Behaviours.ideal(), **kwargs)
AXIS = np.linspace(P.default_center_hz - P.default_span_hz / 2, P.default_center_hz + P.default_span_hz / 2, 401)
BUCKET = AXIS[1] - AXIS[0]


def trace(model, tones=(), gain_db=P.default_loop_gain_db, field_mt=50.0, amplifier=True, axis=AXIS, rbw=1e6):
    tones = list(tones) or [(3.0e9, -200.0)]
    f = np.array([[t[0] for t in tones]])
    p = np.array([[t[1] for t in tones]])
    on = p > -150
    return model.spectra(f, p, on, np.array([gain_db]), np.array([field_mt]), np.array([amplifier]), axis, rbw)[0]


def peaks(tr, above_db):
    """Indices of local maxima more than ``above_db`` over the trace's median (the noise floor)."""
    floor = np.median(tr)
    i = np.flatnonzero((tr[1:-1] > tr[:-2]) & (tr[1:-1] >= tr[2:])) + 1
    return i[tr[i] > floor + above_db]


def test_below_threshold_only_injected_tones_rise_above_noise_floor():
    model = RingModel(seed=3)
    tones = [(2.9953e9, -30.0), (3.0311e9, -30.0)]
    tr = trace(model, tones, gain_db=-10.0)
    found = AXIS[peaks(tr, 15.0)]
    assert len(found) == 2
    for (f, _), g in zip(tones, found):
        assert abs(g - f) <= BUCKET


def test_above_threshold_ring_modes_appear_on_the_mode_comb():
    model = RingModel(seed=3, noise=False)
    threshold = model.threshold_gain_db()
    assert abs(threshold) < 0.5  # the loop gain knob is referred to the passband maximum
    below = trace(model, gain_db=threshold - 0.3)
    assert below.max() < -45.0  # regenerative noise humps only, no oscillation
    tr = trace(model, gain_db=threshold + 2.0)
    found = AXIS[peaks(tr, 40.0)]
    assert len(found) >= 1
    f_fmr = fmr_frequency_hz(50.0)
    tau = P.round_trip_s
    phase = found * tau - f_fmr * P.spin_wave_delay_s  # an integer on a ring eigenmode
    assert np.all(np.abs(phase - np.round(phase)) * P.free_spectral_range_hz <= BUCKET)
    assert tr.max() > -10.0  # a saturated oscillation, far above the -90 dBm floor


def test_more_gain_means_more_oscillating_modes_and_saturated_power():
    model = RingModel(noise=False)
    threshold = model.threshold_gain_db()
    weak, strong = trace(model, gain_db=threshold + 0.5), trace(model, gain_db=threshold + 6.0)
    assert len(peaks(strong, 60.0)) > len(peaks(weak, 60.0))
    def clamped(gain_db):  # a lone mode's saturated power, P_sat·(G - 1)
        return 10 * np.log10(P.saturation_power_mw * (10 ** (gain_db / 10) - 1))

    assert weak.max() == pytest.approx(clamped(0.5), abs=1.0)  # just above threshold: one mode
    assert strong.max() < clamped(6.0) - 1.0                   # far above: modes share the gain


def test_two_tones_produce_third_order_products_that_scale_two_to_one():
    model = RingModel(noise=False)
    f1, f2 = 3.000e9, 3.004e9
    base = trace(model, [(f1, -5.0), (f2, -5.0)], amplifier=False)
    louder = trace(model, [(f1, -3.0), (f2, -5.0)], amplifier=False)
    floor = np.median(base)
    i_low, i_high = np.argmin(abs(AXIS - (2 * f1 - f2))), np.argmin(abs(AXIS - (2 * f2 - f1)))
    assert base[i_low] > floor + 20 and base[i_high] > floor + 20
    assert louder[i_low] - base[i_low] == pytest.approx(4.0, abs=0.3)   # P(2f1-f2) ∝ P1²·P2
    assert louder[i_high] - base[i_high] == pytest.approx(2.0, abs=0.3)  # P(2f2-f1) ∝ P2²·P1
    far = np.abs(AXIS - f1) > 20e6
    assert base[far].max() < floor + 10  # no products where none belong


def test_tone_displayed_at_its_set_power_with_the_loop_open():
    model = RingModel(noise=False)
    tr = trace(model, [(3.0017e9, -12.0)], amplifier=False)
    assert AXIS[tr.argmax()] == pytest.approx(3.0017e9, abs=BUCKET)
    assert tr.max() == pytest.approx(-12.0, abs=1.0)


@pytest.mark.parametrize("field_mt", [30.0, 50.0, 80.0])
def test_bias_field_moves_the_band_as_kittel_says(field_mt):
    model = RingModel(noise=False)
    axis = np.linspace(1.5e9, 4.5e9, 3001)
    tr = trace(model, gain_db=-3.0, field_mt=field_mt, axis=axis, rbw=1e6)
    floor = np.median(tr[:50])  # well below any band in this range: the analyzer's own floor
    edge = axis[np.argmax(tr > floor + 6.0)]
    kittel = 28e9 * np.sqrt(field_mt * 1e-3 * (field_mt * 1e-3 + 0.175))
    assert edge == pytest.approx(kittel + P.edge_offset_hz, abs=P.edge_width_hz * 3 + 1e6)


def test_injection_locking_pulls_a_mode_onto_a_nearby_tone():
    model = RingModel(noise=False)
    free = trace(model, gain_db=2.0)
    mode = AXIS[free.argmax()]
    locked = trace(model, [(mode + 0.4e6, -8.0)], gain_db=2.0)
    assert AXIS[locked.argmax()] == pytest.approx(mode + 0.4e6, abs=BUCKET)
    assert np.sum(np.abs(AXIS[peaks(locked, 60.0)] - mode) < 0.3e6) == 0  # no line left at the free mode


def test_strong_tones_quench_the_auto_oscillation():
    model = RingModel(noise=False)
    free = trace(model, gain_db=2.0)
    mode = AXIS[free.argmax()]
    other_mode = mode + 3 * P.free_spectral_range_hz  # a ring mode that does not oscillate by itself
    quenched = trace(model, [(other_mode, -10.0)], gain_db=2.0)
    assert quenched[np.argmin(abs(AXIS - mode))] < free.max() - 20.0
    assert AXIS[quenched.argmax()] == pytest.approx(other_mode, abs=BUCKET)


def test_repeated_measurements_differ_by_noise_only_and_noise_is_seeded():
    tones = [(3.0e9, -10.0)]
    a = RingModel(seed=11)
    first, second = trace(a, tones, gain_db=-6.0), trace(a, tones, gain_db=-6.0)
    assert not np.array_equal(first, second)
    tone = np.argmax(first)
    assert abs(first[tone] - second[tone]) < 0.5               # a strong line barely moves
    floor = first < np.median(first) + 3
    diff = (first - second)[floor]
    assert abs(diff.mean()) < 0.4 and 1.0 < diff.std() < 3.5    # video-averaged noise, ~±1.5 dB each
    b = RingModel(seed=11)
    assert np.array_equal(trace(b, tones, gain_db=-6.0), first)  # same seed, same noise, bit for bit
    assert not np.array_equal(trace(RingModel(seed=12), tones, gain_db=-6.0), first)
    quiet = RingModel(seed=11, noise=False)
    assert np.array_equal(trace(quiet, tones, gain_db=-6.0), trace(quiet, tones, gain_db=-6.0))


def test_batch_rows_equal_single_rows_without_noise():
    model = RingModel(noise=False)
    rng = np.random.default_rng(0)
    b = 5
    args = (2.98e9 + rng.random((b, 4)) * 80e6, -30 + 30 * rng.random((b, 4)), np.ones((b, 4), bool),
            np.linspace(-3, 4, b), np.array([50.0, 50.0, 52.0, 50.0, 48.0]), np.ones(b, bool))
    batch = model.spectra(*args, AXIS, 1e6)
    for row in range(b):
        single = model.spectra(*(x[row:row + 1] for x in args), AXIS, 1e6)[0]
        np.testing.assert_allclose(batch[row], single, rtol=0, atol=1e-9)


def test_sweep_time_follows_span_over_rbw_squared():
    model = RingModel()
    assert model.sweep_time_s(200e6, 100e3) == pytest.approx(2.5 * 200e6 / 1e10)
    assert model.sweep_time_s(200e6, 3e6) == P.min_sweep_time_s
