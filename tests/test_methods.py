"""Training methods (labpgt.methods) and their estimators (labpgt.estimators): unbiased, exact where they should be."""

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest

from labpgt.architectures import ModelSpec, build_network
from labpgt.digital import DigitalReservoir
from labpgt.estimators import PGT, SPSA, NodePerturbation, hadamard_directions
from labpgt.methods import METHODS, Backprop, Node, PaperPGT, Spsa, UpstreamPGT, node_vjp
from labpgt.network import Rows
from labpgt.settings import declared

# the transformer kept small (width 3, one head): the forward-only estimators need ~60 draws per parameter
MODELS = {
    "dense": ModelSpec(),
    "transformer": ModelSpec(architecture="transformer", width=3, heads=1, blocks=2, tokens=3),
}


def config(method, **kw):
    """What a method is made from: the seed and its own settings (those of ``kw`` and the base it declares)."""
    settings = METHODS[method].Settings
    values = {**dict(delta=0.01, directions=1, spsa_A=10.0), **kw}
    return SimpleNamespace(seed=0, method=settings(**{k: v for k, v in values.items() if declared(settings, k)}))


@pytest.fixture(scope="module", params=["dense", pytest.param("transformer", marks=pytest.mark.slow)])
def problem(request):
    """A small network through a noiseless digital reservoir, away from its start, with the exact gradient."""
    rng = np.random.default_rng(0)
    res = DigitalReservoir(input_width=4, feature_width=6, seed=0)
    net = build_network(MODELS[request.param], n_inputs=6, n_classes=3, input_width=4, feature_width=6, seed=0)
    X, y = rng.standard_normal((16, 6)), rng.integers(0, 3, 16)
    measure = lambda layer, U, rows: res.measure(U).features  # noqa: E731
    params, _ = net.calibrate(net.initial_params, X, measure)
    params = net.unflatten(net.flatten(params) + 0.5 * rng.standard_normal(net.n_params), params)
    exact = Backprop(config("backprop"), res).step(net, params, X, y, measure)
    return SimpleNamespace(
        res=res, net=net, params=params, X=X, y=y, measure=measure, exact=net.flatten(exact.grads), name=request.param
    )


def cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize(
    "method,kw",
    [(PaperPGT, {}), (PaperPGT, dict(r=2, p=0.0)), (Spsa, {}), (UpstreamPGT, {})],
    ids=["pgt", "pgt-r2", "spsa", "pgt-enc"],
)
def test_forward_only_methods_are_unbiased_to_first_order(problem, method, kw):
    # the estimate's relative noise is about sqrt(n_params / draws): 40 draws per parameter keep it near 0.16
    draws = 40 * problem.net.n_params
    m = method(config(method.name, directions=draws, **kw), problem.res)
    result = m.step(problem.net, problem.params, problem.X, problem.y, problem.measure)  # averages the draws
    estimate = problem.net.flatten(result.grads)
    assert cosine(estimate, problem.exact) > 0.95
    assert 0.8 < np.linalg.norm(estimate) / np.linalg.norm(problem.exact) < 1.2  # right scale, not just direction


def test_pgt_enc_is_exact_downstream_of_the_last_physical_layer_to_second_order(problem):
    """The head and classifier get the exact gradient averaged over the ± passes: its error shrinks as δ²."""
    net = problem.net
    exact = net.flatten(net.unflatten(problem.exact, problem.params), net.tail_names)
    errors = []
    for delta in (1e-2, 1e-3):
        m = UpstreamPGT(config("pgt-enc", delta=delta, directions=1), problem.res)
        grads = m.step(net, problem.params, problem.X, problem.y, problem.measure).grads
        errors.append(np.max(np.abs(net.flatten(grads, net.tail_names) - exact)))
    assert errors[1] < 1e-4 * np.max(np.abs(exact)) and errors[0] / errors[1] > 30


def test_node_vjp_mean_over_draws_matches_the_exact_vjp(problem):
    """At every physical layer: the node estimate of dL/du, averaged over draws, against the exact VJP."""
    net, res = problem.net, problem.res
    tape = net.forward(problem.params, problem.X, problem.measure)
    estimator = NodePerturbation(delta=0.01, directions=2, distribution="hadamard", seed=4)
    checked = []

    def averaged_node_vjp(layer, U, F, g_F, rows):
        mean = np.mean([node_vjp(estimator, layer, U, g_F, rows, problem.measure, []) for _ in range(300)], axis=0)
        exact = res.vjp(U, g_F)
        checked.append(cosine(mean.ravel(), exact.ravel()))
        return exact  # keep the backward pass exact, so each layer is checked on its own

    net.gradients(problem.params, tape, problem.y, averaged_node_vjp)
    assert len(checked) == len(net.layers) and min(checked) > 0.99, checked


def test_node_full_gradient_is_unbiased(problem):
    m = Node(config("node", directions=2, delta=0.01), problem.res)
    mean = np.mean(
        [
            problem.net.flatten(m.step(problem.net, problem.params, problem.X, problem.y, problem.measure).grads)
            for _ in range(200)
        ],
        axis=0,
    )
    assert cosine(mean, problem.exact) > 0.99
    upstream = problem.net.upstream_names  # the estimated part alone, not carried by the exact rest
    exact = problem.net.flatten(problem.net.unflatten(problem.exact, problem.params), upstream)
    assert cosine(problem.net.flatten(problem.net.unflatten(mean, problem.params), upstream), exact) > 0.99


def test_node_with_a_full_orthogonal_set_is_exact_in_one_draw():
    res = DigitalReservoir(input_width=4, feature_width=6, seed=0)
    rng = np.random.default_rng(0)
    U, g_F = rng.random((16, 4)), rng.standard_normal((16, 6))
    rows = Rows(np.arange(16), np.full(16, -1), np.full(16, "baseline"), np.full(16, -1))
    estimator = NodePerturbation(delta=1e-4, directions=4, distribution="hadamard", seed=5)
    grad_U = node_vjp(
        estimator, SimpleNamespace(index=0), U, g_F, rows, lambda layer, V, r: res.measure(V).features, []
    )
    inside = np.all((U > 1e-4) & (U < 1 - 1e-4), axis=1)  # exact wherever the in-range clip did not shift the centre
    assert inside.sum() > 10
    # central differences with δ = 1e-4 are exact to O(δ²) ≈ 1e-8 relative
    assert np.allclose(grad_U[inside], res.vjp(U, g_F)[inside], rtol=1e-6, atol=1e-6)


def test_node_probes_a_row_back_to_back_and_labels_them():
    res = DigitalReservoir(input_width=4, feature_width=6, seed=0)
    U = np.random.default_rng(0).random((3, 4))
    rows = Rows(np.array([0, 0, 1]), np.array([0, 1, 0]), np.full(3, "baseline"), np.full(3, -1))
    seen = []

    def measure(layer, V, r):
        seen.append(r)
        return res.measure(V).features

    node_vjp(
        NodePerturbation(delta=0.05, directions=2, seed=0),
        SimpleNamespace(index=1),
        U,
        np.ones((3, 6)),
        rows,
        measure,
        [],
    )
    r = seen[0]
    assert list(r.role[:4]) == ["plus", "minus", "plus", "minus"] and list(r.direction[:4]) == [0, 0, 1, 1]
    assert list(r.position) == [0] * 8 + [1] * 4 and list(r.token[:8]) == [0] * 4 + [1] * 4


def test_every_method_declares_its_capabilities_nothing_else():
    assert METHODS["backprop"].needs_differentiable_reservoir
    assert not any(METHODS[m].needs_differentiable_reservoir for m in ("node", "pgt", "pgt-enc", "spsa", "readout"))
    assert METHODS["readout"].closed_form and not METHODS["node"].closed_form
    for name, method in METHODS.items():
        assert method.name == name and method.Settings.name == name
        assert {"steps", "lr", "optimizer"} <= {
            f.name for f in dataclasses.fields(method.Settings)
        } or method.closed_form
    assert METHODS["pgt"].Settings().optimizer == "sgd"  # the paper's plain step


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
    V = hadamard_directions(rng, 4, 3000, 8).astype(float)  # (k, B, d)
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
    assert abs(np.mean(pm**2) - est.second_moment) < 0.03
    assert np.allclose(asked.values[0::2], 0.1 * pm) and np.allclose(asked.values[1::2], -0.1 * pm)


def test_estimator_state_restores_the_same_draws():
    for est in (PGT(seed=1), SPSA(seed=1), NodePerturbation(seed=1)):
        x = np.full((4, 8), 0.5) if isinstance(est, NodePerturbation) else np.zeros(30)
        est.ask(x)
        state = est.get_state()
        first = est.ask(x).values
        est.set_state(state)
        assert np.array_equal(est.ask(x).values, first)
        json.dumps(state)  # JSON-able


def test_spsa_gain_sequences():
    est = SPSA(delta=0.2, A=10, seed=0)
    assert est.c_k() == pytest.approx(0.2) and est.lr_scale() == pytest.approx(1.0)
    for _ in range(9):
        est.ask(np.zeros(3))
        est.tell(np.array([1.0, 0.0]))
    assert est.k == 9
    assert est.c_k() == pytest.approx(0.2 / 10**0.101)
    assert est.lr_scale() == pytest.approx((11 / 20) ** 0.602)
    a0 = est.calibrate(loss_noise_std=0.5, gradient_magnitude=4.0, initial_step=0.02)
    assert a0 == pytest.approx(0.005) and est.delta == 0.5
