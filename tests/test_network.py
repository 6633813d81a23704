"""The engine (labpgt.network) and the architectures (labpgt.architectures): gradients, calibration, order."""

import numpy as np
import pytest

from labpgt.architectures import ModelSpec, build_network
from labpgt.digital import DigitalReservoir
from labpgt.errors import UserError
from labpgt.network import MAPPED_BRANCHES
from labpgt.reservoir import Reservoir

SPECS = {
    "dense": ModelSpec(),
    "dense-hidden-tanh": ModelSpec(hidden=7),
    "dense-hidden-relu": ModelSpec(hidden=7, activation="relu"),
    "transformer-1": ModelSpec(architecture="transformer", width=4, heads=2, blocks=1, tokens=3),
    "transformer-2": ModelSpec(architecture="transformer", width=4, heads=2, blocks=2, tokens=3),
}


def measured(res):
    return lambda layer, U, rows: res.measure(U).features


def exact_vjp(res):
    return lambda layer, U, F, g_F, rows: res.vjp(U, g_F)


def setup(spec, seed=0):
    """A network on 6 inputs (3 tokens of 2 for the transformer) through a small digital reservoir,
    calibrated, with every parameter moved away from its initial value (the classifier starts at 0)."""
    rng = np.random.default_rng(seed)
    res = DigitalReservoir(input_width=4, feature_width=6, seed=seed)
    net = build_network(spec, n_inputs=6, n_classes=3, input_width=4, feature_width=6, seed=seed)
    X, y = rng.standard_normal((12, 6)), rng.integers(0, 3, 12)
    params, _ = net.calibrate(net.initial_params, X, measured(res))
    theta = net.flatten(params) + 0.3 * rng.standard_normal(net.n_params)
    return res, net, net.unflatten(theta, params), X, y


def full_loss(net, res, params, X, y):
    return net.loss(net.forward(params, X, measured(res)).logits, y)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "transformer-2" else n for n in SPECS]
)
def test_gradient_through_every_digital_stage_matches_finite_differences(name):
    res, net, params, X, y = setup(SPECS[name])
    loss, grads = net.gradients(params, net.forward(params, X, measured(res)), y, exact_vjp(res))
    assert loss == pytest.approx(full_loss(net, res, params, X, y), abs=1e-12)
    theta, g = net.flatten(params), net.flatten(grads)
    h = 1e-6
    fd = np.array(
        [
            (
                full_loss(net, res, net.unflatten(theta + h * e, params), X, y)
                - full_loss(net, res, net.unflatten(theta - h * e, params), X, y)
            )
            / (2 * h)
            for e in np.eye(theta.size)
        ]
    )
    assert np.allclose(g, fd, rtol=1e-5, atol=1e-8)
    for stage in net.stages + [net.head]:  # every stage's parameters get a gradient
        for n in stage.trainable:
            assert np.any(grads[n] != 0), n


def test_tail_gradient_wrt_raw_features_matches_finite_differences():
    res, net, params, X, y = setup(SPECS["dense-hidden-tanh"])
    tape = net.forward(params, X, measured(res))
    _, _, g_carry = net.tail_gradients(params, tape, y)
    gF = np.asarray(g_carry[0])
    F = tape.features[0]
    h = 1e-6
    for i, j in [(0, 0), (3, 5), (11, 2)]:
        E = np.zeros_like(F)
        E[i, j] = h
        losses = [net.loss(net.forward(params, X, lambda layer, U, rows, G=F + s * E: G).logits, y) for s in (1, -1)]
        assert gF[i, j] == pytest.approx((losses[0] - losses[1]) / (2 * h), rel=1e-5, abs=1e-9)


def test_flat_vector_in_sorted_name_order_and_round_trip():
    _, net, params, _, _ = setup(SPECS["dense-hidden-tanh"])
    assert net.trainable_names == ("enc_W", "enc_b", "hid_W", "hid_b", "out_W", "out_b")
    assert "feature_mean" not in net.trainable_names and "feature_scale" in params
    v = net.flatten(params)
    assert v.size == net.n_params == 6 * 4 + 4 + 6 * 7 + 7 + 7 * 3 + 3
    back = net.unflatten(v + 1.0, params)
    assert np.array_equal(back["out_b"], params["out_b"] + 1.0)
    assert back["feature_scale"] is params["feature_scale"]  # frozen arrays untouched
    assert np.array_equal(net.flatten(net.unflatten(v, params)), v)


def test_upstream_and_tail_partition_the_trainable_parameters():
    for name, spec in SPECS.items():
        _, net, _, _, _ = setup(spec)
        assert set(net.upstream_names) | set(net.tail_names) == set(net.trainable_names), name
        assert not set(net.upstream_names) & set(net.tail_names)
    _, net, _, _, _ = setup(SPECS["transformer-2"])
    assert "b1.ff_in_W" in net.upstream_names and "b0.ff_out_W" in net.upstream_names  # between two layers
    assert "b1.ff_out_W" in net.tail_names and "out_W" in net.tail_names


@pytest.mark.parametrize("name", ["dense", "transformer-2"])
def test_calibration_standardises_each_layer_with_one_common_scale(name):
    res = DigitalReservoir(input_width=4, feature_width=6, seed=0)
    net = build_network(SPECS[name], 6, 3, 4, 6, seed=0)
    X = np.random.default_rng(1).standard_normal((40, 6))
    params, tape = net.calibrate(net.initial_params, X, measured(res))
    for layer, F in zip(net.layers, tape.features):
        Fn = (F - params[layer.feature_mean]) / params[layer.feature_scale]
        assert np.allclose(Fn.mean(axis=0), 0.0) and np.isclose(np.mean(Fn.var(axis=0)), 1.0)
        assert np.all(params[layer.feature_scale] == params[layer.feature_scale][0])
        assert layer.feature_mean not in net.trainable_names


def test_the_classifier_starts_at_zero_so_the_initial_loss_is_uninformed():
    for spec in SPECS.values():
        res = DigitalReservoir(input_width=4, feature_width=6, seed=0)
        net = build_network(spec, 6, 3, 4, 6, seed=0)
        X, y = np.random.default_rng(0).standard_normal((10, 6)), np.zeros(10, dtype=int)
        params, _ = net.calibrate(net.initial_params, X, measured(res))
        assert full_loss(net, res, params, X, y) == pytest.approx(np.log(3))


def test_transformer_measures_every_token_of_every_block_with_its_labels():
    seen = []
    res = DigitalReservoir(input_width=4, feature_width=6, seed=0)

    def measure(layer, U, rows):
        seen.append((layer, U.copy(), rows))
        return res.measure(U).features

    net = build_network(ModelSpec(architecture="transformer", width=4, heads=2, blocks=2), 6, 3, 4, 6, seed=0)
    assert net.spec["tokens"] == 6  # default for a short input: one feature each
    net = build_network(SPECS["transformer-2"], 6, 3, 4, 6, seed=0)
    assert net.spec["tokens"] == 3
    net.forward(net.initial_params, np.random.default_rng(0).standard_normal((5, 6)), measure, role="eval")
    assert [layer for layer, _, _ in seen] == [0, 1]
    for _, U, rows in seen:
        assert U.shape == (15, 4) and U.min() >= 0.0 and U.max() <= 1.0
        assert list(rows.position[:4]) == [0, 0, 0, 1] and list(rows.token[:4]) == [0, 1, 2, 0]
        assert set(rows.role) == {"eval"} and set(rows.direction) == {-1}


def test_branches_are_measured_interleaved_plus_right_before_minus():
    res, net, params, X, y = setup(SPECS["transformer-2"])
    calls = []

    def measure(layer, U, rows):
        calls.append(rows)
        return res.measure(U).features

    other = net.unflatten(net.flatten(params) + 0.01, params)
    tapes = net.forward_branches([params, other], X, measure, roles=("plus", "minus"), directions=(0, 0))
    for rows in calls:
        assert list(rows.role[:4]) == ["plus", "minus", "plus", "minus"]
        assert np.array_equal(rows.position[0::2], rows.position[1::2])
        assert np.array_equal(rows.token[0::2], rows.token[1::2])
    alone = net.forward(other, X, measured(res))  # lockstep changes nothing but the order
    assert np.array_equal(tapes[1].logits, alone.logits)


@pytest.mark.parametrize("spec", [ModelSpec(), ModelSpec(architecture="transformer")], ids=["dense", "transformer"])
@pytest.mark.parametrize("n_branches", [MAPPED_BRANCHES, MAPPED_BRANCHES + 3])
def test_many_branches_run_as_one_compiled_loop_give_each_branch_its_own_pass_to_the_bit(spec, n_branches):
    """From MAPPED_BRANCHES on, the stages run mapped over the branches (padded): every tape, loss included, is
    the one the branch's own forward pass records, bit for bit, so a recorded session replays whichever ran.
    (At digits' widths: there a batched map, ``vmap``, differs in the last bits.)"""
    rng = np.random.default_rng(1)
    res = DigitalReservoir(input_width=8, feature_width=32, seed=0)
    net = build_network(spec, n_inputs=64, n_classes=10, input_width=8, feature_width=32, seed=0)
    X, y = rng.standard_normal((16, 64)), rng.integers(0, 10, 16)
    params, _ = net.calibrate(net.initial_params, X, measured(res))
    branches = [
        net.unflatten(net.flatten(params) + 0.1 * rng.standard_normal(net.n_params), params) for _ in range(n_branches)
    ]
    tapes = net.forward_branches(branches, X, measured(res), ("plus",) * n_branches, range(n_branches))
    for branch, tape in zip(branches, tapes, strict=True):
        alone = net.forward(branch, X, measured(res))
        assert np.array_equal(tape.logits, alone.logits)
        for mine, its in zip(tape.inputs + tape.features, alone.inputs + alone.features, strict=True):
            assert np.array_equal(mine, its)
    assert np.array_equal(net.losses(tapes, y), [net.loss(t.logits, y) for t in tapes])


def test_token_count_must_divide_the_inputs():
    with pytest.raises(UserError, match="tokens"):
        build_network(ModelSpec(architecture="transformer", tokens=4), 6, 3, 4, 6, seed=0)
    with pytest.raises(UserError, match="multiple of the heads"):
        build_network(ModelSpec(architecture="transformer", width=6, heads=4), 6, 3, 4, 6, seed=0)


def test_encoder_output_in_unit_interval():
    res, net, params, X, _ = setup(SPECS["dense"])
    tape = net.forward(params, 100 * X, measured(res))
    assert tape.inputs[0].min() >= 0.0 and tape.inputs[0].max() <= 1.0


def test_digital_reservoir_contract_vjp_and_nonlinearity():
    res = DigitalReservoir(input_width=4, feature_width=6, seed=1)
    assert isinstance(res, Reservoir)
    rng = np.random.default_rng(0)
    U = rng.random((5, 4))
    m = res.measure(U)
    assert m.features.shape == (5, 6) and m.spectra is None and len(m) == 5
    G = rng.standard_normal((5, 6))
    h = 1e-6
    fd = np.stack(
        [
            ((res.measure(U + h * e).features - res.measure(U - h * e).features) * G).sum(axis=1) / (2 * h)
            for e in np.eye(4)
        ],
        axis=1,
    )
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


# --------------------------------------------------------------------------- an encoder fitted to the data
def _digits():
    from labpgt.tasks import load_task

    return load_task("digits", 0, holdout="validation")


@pytest.mark.parametrize("kind", ["pca", "lda"])
def test_a_fitted_encoder_starts_centred_unit_variance_and_leaves_every_other_draw_alone(kind):
    from labpgt.architectures import TrainingData

    task = _digits()
    data = TrainingData(task.x_train, task.y_train)
    random = build_network(ModelSpec(), 64, 10, 8, 32, seed=3)
    fitted = build_network(ModelSpec(encoder_init=kind), 64, 10, 8, 32, seed=3, data=data)
    z = task.x_train @ fitted.initial_params["enc_W"] + fitted.initial_params["enc_b"]
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=1e-9)
    assert abs(np.corrcoef(z.T)[np.triu_indices(8, 1)]).max() < 1e-6 if kind == "pca" else True
    for name in random.initial_params:
        if not name.startswith("enc_"):
            assert np.array_equal(random.initial_params[name], fitted.initial_params[name]), name


def test_the_discriminant_encoder_separates_the_classes_better_than_a_random_or_principal_one():
    from sklearn.linear_model import LogisticRegression

    from labpgt.architectures import TrainingData, sigmoid

    task = _digits()
    data = TrainingData(task.x_train, task.y_train)

    def held_out_accuracy(kind):
        net = build_network(ModelSpec(encoder_init=kind), 64, 10, 8, 32, seed=0, data=data)
        W, b = net.initial_params["enc_W"], net.initial_params["enc_b"]
        u, u_held = (np.asarray(sigmoid(x @ W + b)) for x in (task.x_train, task.x_test))
        return LogisticRegression(max_iter=2000).fit(u, task.y_train).score(u_held, task.y_test)

    accuracy = {kind: held_out_accuracy(kind) for kind in ("random", "pca", "lda")}
    assert accuracy["lda"] > accuracy["pca"] > accuracy["random"]
    assert accuracy["lda"] > 0.9


def test_lda_with_fewer_classes_than_inputs_is_completed_by_principal_components():
    from labpgt.architectures import TrainingData, fitted_encoder
    from labpgt.tasks import load_task

    task = load_task("iris", 0)  # 3 classes: 2 discriminant directions, 4 inputs
    W, b = fitted_encoder("lda", TrainingData(task.x_train, task.y_train), 6)
    assert W.shape == (4, 6)
    z = task.x_train @ W + b
    assert np.all(z[:, :4].std(axis=0) > 0.99)  # 2 discriminant + 2 principal directions
    assert np.all(W[:, 4:] == 0) and np.all(b[4:] == 0)  # nothing left to fit: those inputs start at u = 0.5


def test_a_fitted_encoder_is_the_dense_networks_and_needs_the_training_inputs():
    with pytest.raises(UserError, match="encoder_init lda fits the dense network's encoder"):
        ModelSpec(architecture="transformer", encoder_init="lda")
    with pytest.raises(ValueError, match="training inputs"):
        build_network(ModelSpec(encoder_init="pca"), 64, 10, 8, 32, seed=0)


@pytest.mark.parametrize("name", ["dense-hidden-tanh", "transformer-2"])
def test_a_network_built_again_runs_on_the_first_ones_compiled_pieces_with_the_same_results(name, monkeypatch):
    """build_network reuses the traced programs of an earlier network of the same spec and widths: the forward
    pass, the loss and every gradient equal bit for bit those of a network whose pieces are traced afresh."""
    import labpgt.architectures as architectures

    build_network(SPECS[name], n_inputs=6, n_classes=3, input_width=4, feature_width=6, seed=5)  # the first
    res, shared, params, X, y = setup(SPECS[name], seed=1)
    assert shared._stage_fns[0] is architectures._FIRST_BUILT[(SPECS[name], 6, 3, 4, 6)]._stage_fns[0]
    monkeypatch.setattr(architectures, "_FIRST_BUILT", {})
    _, fresh, _, _, _ = setup(SPECS[name], seed=1)
    assert fresh._stage_fns[0] is not shared._stage_fns[0]
    results = []
    for net in (shared, fresh):
        tape = net.forward(params, X, measured(res))
        loss, grads = net.gradients(params, tape, y, exact_vjp(res))
        results.append((tape.logits, loss, net.flatten(grads)))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    other_width = build_network(SPECS[name], n_inputs=6, n_classes=3, input_width=4, feature_width=5, seed=1)
    assert other_width._stage_fns[0] is not shared._stage_fns[0]  # another shape is another program
