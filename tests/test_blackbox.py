"""The referee's baselines (labpgt.blackbox): MeZO, CMA-ES and node with the full Jacobian, on the digital reservoir."""

from types import SimpleNamespace

import numpy as np
import pytest
from sessionfiles import train_until

from labpgt.architectures import ModelSpec, build_network
from labpgt.blackbox import CmaEs, Mezo, SeededGaussian, jacobian_vjp
from labpgt.digital import DigitalReservoir
from labpgt.errors import UserError
from labpgt.methods import METHODS, Backprop
from labpgt.network import Rows
from labpgt.recording import NullRecorder
from labpgt.replay import replay_session
from labpgt.reservoirs import make_reservoir
from labpgt.runs import resume_training, start_training
from labpgt.session import SessionReader
from labpgt.trainer import TrainConfig, Trainer

SMALL = dict(task="iris", reservoir="digital", holdout="validation", batch_size=16, eval_every=5, eval_train_samples=20)


def cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def problem():
    """The dense network through a noiseless digital reservoir, away from its start, with the exact gradient."""
    rng = np.random.default_rng(0)
    res = DigitalReservoir(input_width=4, feature_width=6, seed=0)
    net = build_network(ModelSpec(), n_inputs=6, n_classes=3, input_width=4, feature_width=6, seed=0)
    X, y = rng.standard_normal((16, 6)), rng.integers(0, 3, 16)
    measure = lambda layer, U, rows: res.measure(U).features  # noqa: E731
    params, _ = net.calibrate(net.initial_params, X, measure)
    params = net.unflatten(net.flatten(params) + 0.5 * rng.standard_normal(net.n_params), params)
    exact = Backprop(SimpleNamespace(seed=0, method=Backprop.Settings()), res).step(net, params, X, y, measure)
    return SimpleNamespace(res=res, net=net, params=params, X=X, y=y, measure=measure, exact=net.flatten(exact.grads))


def test_the_baselines_are_registered_methods():
    assert {"mezo", "cma", "node-jac"} <= set(METHODS)
    assert all(METHODS[m].Settings.name == m for m in ("mezo", "cma", "node-jac"))


@pytest.mark.slow
def test_mezo_regenerates_its_direction_from_the_step_seed_and_is_unbiased(problem):
    estimator = SeededGaussian(delta=0.01, seed=3)
    theta = np.arange(5.0)
    asked = estimator.ask(theta)
    z = (asked.values[0] - asked.values[1]) / (2 * 0.01)
    assert np.allclose(z, estimator.direction()) and asked.roles == ("plus", "minus")
    assert estimator.last_perturbation.tolist() == [estimator.step_seed]  # the seed is recorded, not z
    state = estimator.get_state()
    following = estimator.ask(theta).values
    estimator.set_state(state)
    assert np.array_equal(estimator.ask(theta).values, following)
    method = Mezo(SimpleNamespace(seed=0, method=Mezo.Settings(delta=1e-3)), problem.res)
    draws = [
        problem.net.flatten(method.step(problem.net, problem.params, problem.X, problem.y, problem.measure).grads)
        for _ in range(60 * problem.net.n_params)
    ]
    mean = np.mean(draws, axis=0)
    assert cosine(mean, problem.exact) > 0.95
    assert 0.8 < np.linalg.norm(mean) / np.linalg.norm(problem.exact) < 1.2


def test_node_jacobian_is_the_exact_vjp_to_first_order_in_delta_with_d_one_sided_probes_per_row():
    res = DigitalReservoir(input_width=4, feature_width=6, seed=0)
    rng = np.random.default_rng(0)
    U, g_F = rng.random((16, 4)), rng.standard_normal((16, 6))
    U[0, 2] = 1.0  # at the edge: probed downwards
    rows = Rows(np.arange(16), np.full(16, -1), np.full(16, "baseline"), np.full(16, -1))
    seen = []

    def measure(layer, V, r):
        seen.append((V, r))
        return res.measure(V).features

    errors = []
    for delta in (1e-3, 1e-4):
        perturbations: list = []
        grad = jacobian_vjp(
            delta, SimpleNamespace(index=0), U, res.measure(U).features, g_F, rows, measure, perturbations
        )
        errors.append(np.max(np.abs(grad - res.vjp(U, g_F))))
    assert errors[1] < 1e-3 * np.max(np.abs(res.vjp(U, g_F))) and 5 < errors[0] / errors[1] < 20  # O(δ)
    V, r = seen[-1]
    assert len(V) == 16 * 4 and np.all((V >= 0) & (V <= 1))
    assert list(r.position[:4]) == [0] * 4 and list(r.direction[:4]) == [0, 1, 2, 3]
    assert r.role[2] == "minus" and list(r.role[:2]) == ["plus", "plus"] and perturbations[0].shape == (1, 16, 4)


@pytest.mark.slow
@pytest.mark.parametrize("method,steps", [("mezo", 300), ("cma", 30), ("node-jac", 40)])
def test_each_baseline_trains_counts_its_queries_and_is_bit_identical_for_a_seed(tmp_path, method, steps):
    config = TrainConfig.of(method=method, steps=steps, **SMALL).resolved()
    first = start_training(config, tmp_path / "a.h5")
    again = start_training(config)
    assert first.final_params_sha256 == again.final_params_sha256 and first.history == again.history
    assert first.history[-1]["validation_accuracy"] > first.history[0]["validation_accuracy"]
    rows = {"mezo": 2, "cma": CmaEs.default_population(first_params(config)), "node-jac": 1 + 8}[method]
    assert first.training_queries == 16 + steps * 16 * rows  # calibration, then each step's
    with SessionReader(tmp_path / "a.h5") as session:
        assert session.n_queries == sum(first.queries.values())


def first_params(config) -> int:
    from labpgt.trainer import trainable_parameters

    return trainable_parameters(config)


@pytest.mark.slow
@pytest.mark.parametrize("method,steps,stop", [("mezo", 12, 5), ("cma", 6, 2)])
def test_an_interrupted_run_resumes_bit_identically_and_replays(tmp_path, method, steps, stop):
    """cma's strategy is rebuilt from the losses its steps recorded: the resumed run is the uninterrupted one."""
    config = TrainConfig.of(method=method, steps=steps, **SMALL).resolved()
    reference = start_training(config, tmp_path / "reference.h5")
    train_until(stop, config, tmp_path / "cut.h5")
    resumed = resume_training(tmp_path / "cut.h5")
    assert resumed.final_params_sha256 == reference.final_params_sha256
    assert resumed.history == reference.history and resumed.queries == reference.queries
    assert replay_session(tmp_path / "cut.h5").ok


def test_a_rewound_cma_run_goes_on_as_the_straight_one_and_an_unrecorded_one_refuses():
    config = TrainConfig.of(method="cma", steps=6, **{**SMALL, "digital_noise": 0.0}).resolved()
    straight = Trainer(config, make_reservoir(config), recorder=NullRecorder()).run()
    trainer = Trainer(config, make_reservoir(config), recorder=NullRecorder())
    checkpoints = []
    trainer.run(progress=lambda done, steps: checkpoints.append(trainer.checkpoint()))
    trainer.rewind(checkpoints[2])  # back to after generation 3 (a pause's rewind), on again
    assert trainer.method.es is None and len(trainer.method.losses) == 3
    trainer.run()
    for name, value in straight.params.items():
        np.testing.assert_array_equal(trainer.params[name], value)
    old = checkpoints[2].rng_states["method"]  # as sessions recorded it before the losses were
    old = {"rng": old["rng"], "generations": old["generations"]}
    with pytest.raises(UserError, match="this cma run cannot be resumed or rewound"):
        CmaEs(config, make_reservoir(config)).set_state(old)


def test_cma_refuses_settings_that_would_move_the_parameters_off_its_mean():
    for bad in (dict(lr=0.5), dict(optimizer="adam"), dict(lr_schedule="cosine"), dict(follow_ring=5)):
        with pytest.raises(UserError, match="cma moves the parameters to its own mean"):
            TrainConfig.of(method="cma", **bad)
    assert TrainConfig.of(method="cma", task="digits").resolved().method.steps == 2 * 3000 // (4 + int(3 * np.log(850)))
