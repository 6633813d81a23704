import numpy as np
import pytest

from labpgt.digital import DigitalReservoir
from labpgt.model import Model
from labpgt.reservoir import Reservoir


def _setup(hidden=0, activation="tanh", seed=0):
    rng = np.random.default_rng(seed)
    res = DigitalReservoir(input_width=4, feature_width=6, seed=seed)
    model = Model(n_inputs=5, input_width=4, feature_width=6, n_classes=3, hidden=hidden,
                  activation=activation, seed=seed)
    model.set_vector(0.7 * rng.standard_normal(model.n_params))   # away from the zero-readout start
    X = rng.standard_normal((12, 5))
    y = rng.integers(0, 3, 12)
    model.calibrate(res.measure(model.encode(X)).features)
    return res, model, X, y


def _full_loss(model, res, X, y, vector):
    p = model.unflatten(vector)
    return model.loss(res.measure(model.encode(X, p)).features, y, p)


def _exact_grad(model, res, X, y):
    U = model.encode(X)
    _, grads, gF = model.head_backward(res.measure(U).features, y)
    grads.update(model.encoder_backward(X, U, res.vjp(U, gF)))
    return model.flatten(grads)


@pytest.mark.parametrize("hidden,activation", [(0, "tanh"), (7, "tanh"), (7, "relu")])
def test_backprop_gradient_matches_finite_differences(hidden, activation):
    res, model, X, y = _setup(hidden, activation)
    theta = model.get_vector()
    g = _exact_grad(model, res, X, y)
    h = 1e-6
    fd = np.array([(_full_loss(model, res, X, y, theta + h * e) - _full_loss(model, res, X, y, theta - h * e)) / (2 * h)
                   for e in np.eye(theta.size)])
    assert np.allclose(g, fd, rtol=1e-5, atol=1e-8)


def test_grad_wrt_raw_features_matches_finite_differences():
    res, model, X, y = _setup(hidden=5)
    F = res.measure(model.encode(X)).features
    _, _, gF = model.head_backward(F, y)
    h = 1e-6
    for i, j in [(0, 0), (3, 5), (11, 2)]:
        E = np.zeros_like(F)
        E[i, j] = h
        fd = (model.loss(F + E, y) - model.loss(F - E, y)) / (2 * h)
        assert np.isclose(gF[i, j], fd, rtol=1e-5, atol=1e-9)


def test_flat_vector_view_and_state_round_trip():
    _, model, X, y = _setup(hidden=3)
    assert model.trainable_names == ("enc_W", "enc_b", "hid_W", "hid_b", "out_W", "out_b")
    v = model.get_vector()
    assert v.size == model.n_params == 5 * 4 + 4 + 6 * 3 + 3 + 3 * 3 + 3
    p = model.unflatten(v)
    assert np.shares_memory(p["out_W"], v)
    assert np.array_equal(model.flatten(p), v)
    state = model.state_dict()
    other = Model(5, 4, 6, 3, hidden=3, seed=9)
    other.load_state_dict(state)
    assert np.array_equal(other.get_vector(), v)
    assert np.array_equal(other.feature_scale, model.feature_scale)
    model.set_vector(v + 1.0)              # state_dict returned copies
    assert np.array_equal(state["out_b"], p["out_b"])


def test_calibration_standardises_features_and_is_frozen():
    res, model, X, y = _setup()
    F = res.measure(model.encode(X)).features
    model.calibrate(F)
    Fn = (F - model.feature_mean) / model.feature_scale
    assert np.allclose(Fn.mean(axis=0), 0.0) and np.isclose(np.mean(Fn.var(axis=0)), 1.0)
    # one common scale: a quiet feature stays quiet instead of being blown up to unit variance
    F[:, 0] = 0.3 + 1e-3 * np.random.default_rng(1).standard_normal(len(F))
    model.calibrate(F)
    Fn = (F - model.feature_mean) / model.feature_scale
    assert np.all(model.feature_scale == model.feature_scale[0]) and Fn[:, 0].std() < 0.01
    assert "feature_mean" not in model.trainable_names


def test_encoder_output_in_unit_interval():
    _, model, X, _ = _setup()
    U = model.encode(100 * X)
    assert U.min() >= 0.0 and U.max() <= 1.0


def test_digital_reservoir_contract_vjp_and_nonlinearity():
    res = DigitalReservoir(input_width=4, feature_width=6, seed=1)
    assert isinstance(res, Reservoir)
    rng = np.random.default_rng(0)
    U = rng.random((5, 4))
    m = res.measure(U)
    assert m.features.shape == (5, 6) and m.spectra is None and len(m) == 5
    G = rng.standard_normal((5, 6))
    h = 1e-6
    fd = np.stack([((res.measure(U + h * e).features - res.measure(U - h * e).features) * G).sum(axis=1) / (2 * h)
                   for e in np.eye(4)], axis=1)
    assert np.allclose(res.vjp(U, G), fd, rtol=1e-5, atol=1e-8)
    # nonlinear: the midpoint of two inputs does not map to the midpoint of their features
    a, b = res.measure(np.zeros((1, 4))).features, res.measure(np.ones((1, 4))).features
    mid = res.measure(np.full((1, 4), 0.5)).features
    assert np.max(np.abs(mid - (a + b) / 2)) > 0.1
    with pytest.raises(ValueError):
        res.measure(np.zeros((2, 3)))


def test_digital_noise_is_seeded_and_state_restorable():
    U = np.random.default_rng(0).random((3, 8))
    a, b = DigitalReservoir(noise=0.1, seed=2), DigitalReservoir(noise=0.1, seed=2)
    state = a.get_rng_state()
    fa = a.measure(U).features
    assert np.array_equal(fa, b.measure(U).features)
    assert not np.array_equal(fa, a.measure(U).features)
    a.set_rng_state(state)
    assert np.array_equal(fa, a.measure(U).features)


def test_readout_starts_at_zero_so_the_initial_loss_is_uninformed():
    model = Model(n_inputs=5, input_width=4, feature_width=6, n_classes=3, hidden=4, seed=0)
    F = np.random.default_rng(0).standard_normal((10, 6))
    assert model.loss(F, np.zeros(10, dtype=int)) == pytest.approx(np.log(3))
    assert np.any(model.params["enc_W"] != 0) and np.any(model.params["hid_W"] != 0)
