import numpy as np
import pytest

from labpgt.digital import DigitalReservoir
from labpgt.estimators import PGT, SPSA, NodePerturbation, hadamard_directions
from labpgt.model import Model


@pytest.fixture(scope="module")
def problem():
    """A small model through a small noiseless digital reservoir, with its exact (backprop) gradient."""
    rng = np.random.default_rng(0)
    res = DigitalReservoir(input_width=4, feature_width=6, seed=0)
    model = Model(n_inputs=5, input_width=4, feature_width=6, n_classes=3, seed=0)
    model.set_vector(0.7 * rng.standard_normal(model.n_params))   # away from the zero-readout start
    X, y = rng.standard_normal((16, 5)), rng.integers(0, 3, 16)
    model.calibrate(res.measure(model.encode(X)).features)
    U = model.encode(X)
    _, grads, gF = model.head_backward(res.measure(U).features, y)
    grads.update(model.encoder_backward(X, U, res.vjp(U, gF)))
    return res, model, X, y, model.flatten(grads)


def _losses(model, res, X, y, vectors):
    out = np.empty(len(vectors))
    for i, v in enumerate(vectors):
        p = model.unflatten(v)
        out[i] = model.loss(res.measure(model.encode(X, p)).features, y, p)
    return out


def _cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("estimator", [PGT(r=1, p=0.5, delta=0.01, directions=6000, seed=1),
                                       PGT(r=2, p=0.0, delta=0.01, directions=6000, seed=2),
                                       SPSA(delta=0.01, directions=6000, seed=3)], ids=["pgt", "pgt-r2", "spsa"])
def test_parameter_estimators_are_unbiased(problem, estimator):
    res, model, X, y, exact = problem
    asked = estimator.ask(model.get_vector())
    assert asked.roles[:4] == ("plus", "minus", "plus", "minus") and list(asked.directions[:4]) == [0, 0, 1, 1]
    mean_estimate = estimator.tell(_losses(model, res, X, y, asked.values))   # averages the 6000 draws
    assert _cosine(mean_estimate, exact) > 0.95
    assert 0.8 < np.linalg.norm(mean_estimate) / np.linalg.norm(exact) < 1.2   # right scale, not just direction


def _node_full_gradient(problem, estimator, draws):
    res, model, X, y, _ = problem
    U = model.encode(X)
    _, grads, gF = model.head_backward(res.measure(U).features, y)
    grad_U = np.zeros_like(U)
    for _ in range(draws):
        asked = estimator.ask(U)
        k, B, d = estimator.directions, *U.shape
        F = res.measure(asked.values.reshape(-1, d)).features.reshape(2 * k, B, -1)
        grad_U += estimator.tell(F[0::2], F[1::2], gF) / draws
    grads.update(model.encoder_backward(X, U, grad_U))
    return model.flatten(grads), grad_U


@pytest.mark.parametrize("distribution,k,draws", [("rademacher", 1000, 1), ("hadamard", 2, 400)])
def test_node_perturbation_is_unbiased(problem, distribution, k, draws):
    res, model, X, y, exact = problem
    estimator = NodePerturbation(delta=0.01, directions=k, distribution=distribution, seed=4)
    full, _ = _node_full_gradient(problem, estimator, draws)
    enc = model.slices()["enc_W"]
    assert _cosine(full, exact) > 0.95
    assert _cosine(full[enc], exact[enc]) > 0.95      # the estimated part alone, not carried by the exact readout


def test_node_with_a_full_orthogonal_set_is_exact_in_one_draw(problem):
    res, model, X, y, exact = problem
    U = model.encode(X)
    estimator = NodePerturbation(delta=1e-4, directions=4, distribution="hadamard", seed=5)
    _, grad_U = _node_full_gradient(problem, estimator, 1)
    _, _, gF = model.head_backward(res.measure(U).features, y)
    # exact wherever the centre was not shifted by the in-range clip
    inside = np.all((U > 1e-4) & (U < 1 - 1e-4), axis=1)
    assert inside.sum() > 10
    # central differences with δ = 1e-4 are exact to O(δ²) ≈ 1e-8; the entries are of order 0.1
    assert np.allclose(grad_U[inside], res.vjp(U, gF)[inside], rtol=0, atol=1e-6)


def test_node_points_stay_in_range_and_are_antithetic():
    U = np.array([[0.0, 1.0, 0.5, 0.02], [1.0, 0.0, 0.99, 0.3]])
    est = NodePerturbation(delta=0.05, directions=3, distribution="rademacher", seed=0)
    asked = est.ask(U)
    assert asked.values.shape == (6, 2, 4)
    assert asked.values.min() >= 0.0 and asked.values.max() <= 1.0
    centre = (asked.values[0::2] + asked.values[1::2]) / 2
    assert np.allclose(centre, np.clip(U, 0.05, 0.95))
    assert np.allclose(asked.values[0::2] - asked.values[1::2], 0.1 * est.last_perturbation)


def test_hadamard_directions_orthogonal_and_isotropic():
    rng = np.random.default_rng(0)
    V = hadamard_directions(rng, 4, 3000, 8).astype(float)      # (k, B, d)
    assert set(np.unique(V)) == {-1.0, 1.0}
    gram = np.einsum("kbd,jbd->bkj", V, V)
    assert np.array_equal(gram[0], 8 * np.eye(4)) and np.all(gram == gram[0])
    second_moment = np.einsum("kbd,kbe->de", V, V) / (4 * 3000)
    assert np.allclose(second_moment, np.eye(8), atol=0.05)
    with pytest.raises(ValueError):
        hadamard_directions(rng, 9, 2, 8)


def test_pgt_perturbation_matrix_statistics():
    est = PGT(r=2, p=0.5, delta=0.1, directions=200, seed=0)
    asked = est.ask(np.zeros(500))
    pm = est.last_perturbation.astype(float)
    assert set(np.unique(pm)) <= {-2, -1, 0, 1, 2}
    assert abs(np.mean(pm == 0) - (0.5 + 0.5 / 5)) < 0.01
    assert est.second_moment == pytest.approx(0.5 * 2 * 3 / 3)
    assert abs(np.mean(pm ** 2) - est.second_moment) < 0.03
    assert np.allclose(asked.values[0::2], 0.1 * pm) and np.allclose(asked.values[1::2], -0.1 * pm)


def test_estimator_state_restores_the_same_draws():
    for est in (PGT(seed=1), SPSA(seed=1), NodePerturbation(seed=1)):
        x = np.full((4, 8), 0.5) if est.kind == "node" else np.zeros(30)
        est.ask(x)
        state = est.get_state()
        first = est.ask(x).values
        est.set_state(state)
        assert np.array_equal(est.ask(x).values, first)
        import json
        json.dumps(state)     # JSON-able


def test_spsa_gain_sequences():
    est = SPSA(delta=0.2, A=10, seed=0)
    assert est.c_k() == pytest.approx(0.2) and est.lr_scale() == pytest.approx(1.0)
    for _ in range(9):
        est.ask(np.zeros(3))
        est.tell(np.array([1.0, 0.0]))
    assert est.k == 9
    assert est.c_k() == pytest.approx(0.2 / 10 ** 0.101)
    assert est.lr_scale() == pytest.approx((11 / 20) ** 0.602)
    a0 = est.calibrate(loss_noise_std=0.5, gradient_magnitude=4.0, initial_step=0.02)
    assert a0 == pytest.approx(0.005) and est.delta == 0.5
