"""The kind simulated ring behaves as the physics in docs/ring-physics.md says (model level, no SCPI).

These describe the ideal preset (``Behaviours.ideal()``); the real ring's behaviours are in
test_ring_realism.py and test_ring_bench_physics.py. Levels are the analyzer's input: every line
reaches it through the couplers and the delay line (§1), and the analyzer adds its own floor.
"""

import numpy as np
import pytest

from labpgt.instruments.simulated.detector import Display
from labpgt.instruments.simulated.ring import Behaviours, RingParameters, fmr_frequency_hz, open_loop_level_dbm
from labpgt.instruments.simulated.ring import RingModel as RealRingModel

P = RingParameters()
FIELD = P.default_field_mt
F_FMR = float(fmr_frequency_hz(FIELD))
OUT_LOSS_DB = P.delay_line_loss_db() + P.output_coupling_db  # film plane to the analyzer's input


def RingModel(**kwargs):  # noqa: N802 - the model, with the kind ring
    return RealRingModel(behaviours=Behaviours.ideal(), **kwargs)


AXIS = np.linspace(P.default_center_hz - P.default_span_hz / 2, P.default_center_hz + P.default_span_hz / 2, 401)
BUCKET = AXIS[1] - AXIS[0]


def trace(
    model, tones=(), gain_db=P.default_loop_gain_db, field_mt=FIELD, amplifier=True, axis=AXIS, rbw=1e6, display=None
):
    tones = list(tones) or [(3.0e9, -200.0)]
    f = np.array([[t[0] for t in tones]])
    p = np.array([[t[1] for t in tones]])
    on = p > -150
    return model.spectra(
        f, p, on, np.array([gain_db]), np.array([field_mt]), np.array([amplifier]), axis, rbw, display
    )[0]


def peaks(tr, above_db):
    """Indices of local maxima more than ``above_db`` over the trace's median (the noise floor). The
    normal detector can show one line as two maxima two points apart (its even bucket shows the pit,
    the odd one after it the peak: Keysight AN 150, Fig. 2-26); maxima that close count once."""
    floor = np.median(tr)
    i = np.flatnonzero((tr[1:-1] > tr[:-2]) & (tr[1:-1] >= tr[2:])) + 1
    i = i[tr[i] > floor + above_db]
    return i[np.concatenate([[True], np.diff(i) > 2])] if i.size else i


def test_below_threshold_only_injected_tones_rise_above_noise_floor():
    model = RingModel(seed=3)
    tones = [(F_FMR + 25.3e6, -10.0), (F_FMR + 61.1e6, -10.0)]  # 47 dB of couplers and delay line away
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
    assert below.max() < np.median(below) + 15.0  # regenerative noise humps only, no oscillation
    tr = trace(model, gain_db=threshold + 2.0)
    found = AXIS[peaks(tr, 40.0)]
    assert len(found) >= 1
    tau_sw = P.reference_group_delay_s(F_FMR)  # the kind ring's group delay: constant across the band
    phase = found * (P.electrical_delay_s + tau_sw) - F_FMR * tau_sw  # an integer on a ring eigenmode
    assert np.all(np.abs(phase - np.round(phase)) * P.free_spectral_range_hz <= BUCKET)
    assert tr.max() > np.median(tr) + 45.0  # a saturated oscillation, far above the analyzer's floor


def test_more_gain_means_more_oscillating_modes_and_saturated_power():
    model = RingModel(noise=False)
    threshold = model.threshold_gain_db()
    weak, strong = trace(model, gain_db=threshold + 0.5), trace(model, gain_db=threshold + 6.0)
    assert len(peaks(strong, 60.0)) > len(peaks(weak, 60.0))

    def clamped(gain_db):  # a lone mode's saturated power, P_sat·(G - 1), seen through the delay line and coupler
        return 10 * np.log10(P.amplifier_saturation_mw * (10 ** (gain_db / 10) - 1)) - threshold - OUT_LOSS_DB

    assert weak.max() == pytest.approx(clamped(0.5), abs=1.0)  # just above threshold: one mode
    assert strong.max() < clamped(6.0) - 1.0  # far above: modes share the gain


def test_two_tones_produce_third_order_products_that_scale_two_to_one():
    model = RingModel(noise=False)
    f1, f2 = F_FMR + 30e6, F_FMR + 34e6
    base = trace(model, [(f1, 10.0), (f2, 10.0)], amplifier=False)
    louder = trace(model, [(f1, 12.0), (f2, 10.0)], amplifier=False)
    floor = np.median(base)
    i_low, i_high = np.argmin(abs(AXIS - (2 * f1 - f2))), np.argmin(abs(AXIS - (2 * f2 - f1)))
    assert base[i_low] > floor + 20 and base[i_high] > floor + 20
    assert louder[i_low] - base[i_low] == pytest.approx(4.0, abs=0.3)  # P(2f1-f2) ∝ P1²·P2
    assert louder[i_high] - base[i_high] == pytest.approx(2.0, abs=0.3)  # P(2f2-f1) ∝ P2²·P1
    far = np.abs(AXIS - f1) > 20e6
    assert base[far].max() < floor + 10  # no products where none belong


def test_tone_displayed_through_the_couplers_and_the_delay_line_with_the_loop_open():
    model = RingModel(noise=False)
    tr = trace(model, [(F_FMR + 31.7e6, -12.0)], amplifier=False)
    assert AXIS[tr.argmax()] == pytest.approx(F_FMR + 31.7e6, abs=BUCKET)
    assert tr.max() == pytest.approx(open_loop_level_dbm(-12.0, F_FMR + 31.7e6, FIELD), abs=1.0)
    assert tr.max() == pytest.approx(-12.0 - P.input_coupling_db - OUT_LOSS_DB, abs=1.0)


@pytest.mark.parametrize("field_mt", [30.0, 50.0, 80.0])
def test_bias_field_moves_the_band_as_kittel_says(field_mt):
    model = RingModel(noise=False)
    axis = np.linspace(1.5e9, 4.5e9, 3001)
    quiet_analyzer = Display(floor_dbm_per_hz=-175.0, if_noise_dbm=-200.0)  # the band, not the analyzer, is looked at
    tr = trace(model, gain_db=-20.0, field_mt=field_mt, axis=axis, rbw=1e6, display=quiet_analyzer)
    edge = axis[np.argmax(tr > tr.max() - 3.0)]  # the amplifier's noise through the passband: its -3 dB edge
    kittel = 28e9 * np.sqrt(field_mt * 1e-3 * (field_mt * 1e-3 + 0.175))
    assert edge == pytest.approx(kittel + P.edge_offset_hz, abs=P.edge_width_hz * 3 + 1e6)


def test_injection_locking_pulls_a_mode_onto_a_nearby_tone():
    model = RingModel(noise=False)
    mode = AXIS[trace(model, gain_db=2.0).argmax()]
    axis = np.linspace(mode - 2e6, mode + 2e6, 801)
    free = trace(model, gain_db=2.0, axis=axis, rbw=10e3)
    mode = axis[free.argmax()]
    # Adler: half-width asin(ρ)/(2πτ), ρ² the injected over the oscillating power (23 mW in the film): +15 dBm
    # from the generator is 3.2 mW after the coupler, ρ = 0.37, a range of ±0.3 MHz
    locked = trace(model, [(mode + 0.2e6, 15.0)], gain_db=2.0, axis=axis, rbw=10e3)
    assert axis[locked.argmax()] == pytest.approx(mode + 0.2e6, abs=axis[1] - axis[0])
    assert np.sum(np.abs(axis[peaks(locked, 40.0)] - mode) < 0.15e6) == 0  # no line left at the free mode


def test_strong_tones_quench_the_auto_oscillation():
    model = RingModel(noise=False)
    free = trace(model, gain_db=2.0)
    mode = AXIS[free.argmax()]
    other_mode = mode + 3 * P.free_spectral_range_hz  # a ring mode that does not oscillate by itself
    quenched = trace(model, [(other_mode, 20.0)], gain_db=2.0)
    assert quenched[np.argmin(abs(AXIS - mode))] < free.max() - 20.0
    assert AXIS[quenched.argmax()] == pytest.approx(other_mode, abs=BUCKET)


def extreme_db_std(samples: int, largest: bool) -> float:
    """Standard deviation of 10 log10 X, X the largest (or smallest) of ``samples`` unit-mean exponential
    powers (the normal detector's peak or pit of a Rayleigh envelope), by quadrature of its density."""
    x = np.logspace(-8, 2.5, 400001)
    cdf = 1 - np.exp(-x)
    density = samples * (cdf ** (samples - 1) if largest else (1 - cdf) ** (samples - 1)) * np.exp(-x)
    db = 10 * np.log10(x)
    mean = np.trapezoid(db * density, x)
    return float(np.sqrt(np.trapezoid((db - mean) ** 2 * density, x)))


def test_repeated_measurements_differ_by_noise_only_and_noise_is_seeded():
    tones = [(F_FMR + 30e6, 10.0)]
    a = RingModel(seed=11)
    first, second = trace(a, tones, gain_db=-6.0), trace(a, tones, gain_db=-6.0)
    assert not np.array_equal(first, second)
    tone = np.argmax(first)
    assert abs(first[tone] - second[tone]) < 0.5  # a strong line barely moves
    # the normal detector in noise (5 samples a bucket): odd points the largest of 10, even the smallest of 5
    far = np.abs(AXIS - AXIS[tone]) > 20e6
    for parity, largest, samples in ((0, True, 10), (1, False, 5)):
        diff = (first - second)[parity::2][far[parity::2]]
        assert abs(diff.mean()) < 0.6
        assert diff.std() == pytest.approx(np.sqrt(2) * extreme_db_std(samples, largest), rel=0.2)
    b = RingModel(seed=11)
    assert np.array_equal(trace(b, tones, gain_db=-6.0), first)  # same seed, same noise, bit for bit
    assert not np.array_equal(trace(RingModel(seed=12), tones, gain_db=-6.0), first)
    quiet = RingModel(seed=11, noise=False)
    assert np.array_equal(trace(quiet, tones, gain_db=-6.0), trace(quiet, tones, gain_db=-6.0))


def test_batch_rows_equal_single_rows_without_noise():
    model = RingModel(noise=False)
    rng = np.random.default_rng(0)
    b = 5
    args = (
        2.98e9 + rng.random((b, 4)) * 80e6,
        -30 + 30 * rng.random((b, 4)),
        np.ones((b, 4), bool),
        np.linspace(-3, 4, b),
        np.array([50.0, 50.0, 52.0, 50.0, 48.0]),
        np.ones(b, bool),
    )
    batch = model.spectra(*args, AXIS, 1e6)
    for row in range(b):
        single = model.spectra(*(x[row : row + 1] for x in args), AXIS, 1e6)[0]
        np.testing.assert_allclose(batch[row], single, rtol=0, atol=1e-9)


def test_sweep_time_follows_span_over_rbw_squared():
    model = RingModel()
    assert model.sweep_time_s(200e6, 100e3) == pytest.approx(2.5 * 200e6 / 1e10)
    assert model.sweep_time_s(200e6, 3e6) == P.min_sweep_time_s
