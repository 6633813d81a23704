import json

import numpy as np
import pytest

from labpgt import trainer as trainer_module
from labpgt.digital import DigitalReservoir
from labpgt.errors import UserError
from labpgt.recording import Checkpoint
from labpgt.reservoirs import make_reservoir
from labpgt.runs import start_training
from labpgt.tasks import load_final_test, load_task
from labpgt.trainer import TrainConfig, Trainer, trainable_parameters


class ListRecorder:
    """Keeps everything the trainer hands to the recorder hook."""

    def __init__(self):
        self.queries, self.steps, self.checkpoints, self.rows = [], [], [], []

    def record_queries(self, labels, U, measurement):
        assert labels.direction.shape == labels.sample.shape == labels.role.shape == (len(U),)
        assert len(measurement) == len(U)
        self.rows.append((labels, U.copy()))
        for role in dict.fromkeys(labels.role):  # one entry per role, in order of appearance
            rows = labels.role == role
            self.queries.append(
                (labels.step, str(role), labels.direction[rows].copy(), labels.sample[rows].copy(), U[rows].copy())
            )

    def record_step(self, step, values):
        self.steps.append((step, values))

    def checkpoint(self, ck):
        json.dumps(ck.rng_states), json.dumps(ck.trainer_state)  # must be JSON-able
        self.checkpoints.append(
            Checkpoint(
                ck.step,
                {k: v.copy() for k, v in ck.params.items()},
                {k: np.array(v) for k, v in ck.optimizer_state.items()},
                json.loads(json.dumps(ck.rng_states)),
                json.loads(json.dumps(ck.trainer_state)),
            )
        )


@pytest.fixture(scope="module")
def iris():
    return load_task("iris", 0)


def _config(method, **kw):
    base = dict(
        task="iris",
        method=method,
        reservoir="digital",
        steps=12,
        batch_size=8,
        eval_every=4,
        eval_train_samples=20,
        digital_noise=0.05,
    )
    base.update(kw)
    return TrainConfig.of(**base)


def vector(trainer):
    return trainer.network.flatten(trainer.params)


def _reservoir(config):
    return DigitalReservoir(input_width=8, feature_width=32, noise=config.reservoir.digital_noise, seed=config.seed)


@pytest.mark.parametrize(
    "kw,fragment",
    [
        (dict(steps=-1), "steps"),
        (dict(steps=0), "steps"),
        (dict(delta=0.0), "delta"),
        (dict(delta=-0.1), "delta"),
        (dict(method="sgd"), "method"),
        (dict(task="mnist"), "task"),
        (dict(reservoir="ring"), "reservoir"),
        (dict(p=1.0), "p"),
        (dict(optimizer="lbfgs"), "optimizer"),
        (dict(method="node", delta=0.7), "delta"),
    ],
)
def test_config_validation_is_one_clear_line(kw, fragment):
    with pytest.raises(UserError) as err:
        TrainConfig.of(**kw)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_config_json_round_trip_and_defaults():
    c = TrainConfig.of(method="pgt", seed=3)
    assert TrainConfig.from_json(c.to_json()) == c
    r = c.resolved()
    m = r.method
    assert (m.steps, m.batch_size, m.r, m.p, m.optimizer) == (
        3000,
        32,
        1,
        0.5,
        "sgd",
    ) and r.evaluation.eval_every == 150
    assert TrainConfig.of(method="pgt", lr=0.1).resolved().method.lr == 0.1  # explicit values win
    with pytest.raises(UserError):
        TrainConfig.from_json('{"method": "pgt", "learning_rate": 1}')


def test_a_forward_only_method_gets_steps_in_proportion_to_the_parameters_it_estimates():
    dense = TrainConfig.of(method="pgt", reservoir="digital")
    assert (
        trainable_parameters(dense) == 850 and dense.resolved().method.steps == 3000
    )  # the paper's network, its budget
    wider = TrainConfig.of(method="pgt", hidden=16)  # through the embedded ring
    assert trainable_parameters(wider) == 1218 and wider.resolved().method.steps == 4300  # 3000·1218/850, up to 100s
    transformer = {
        m: TrainConfig.of(method=m, model="transformer", reservoir="digital").resolved()
        for m in ("pgt", "pgt-enc", "spsa", "node", "backprop", "readout")
    }
    assert trainable_parameters(transformer["pgt"]) == 3978
    assert [transformer[m].method.steps for m in transformer] == [14100, 14100, 14100, 600, 600, 1]
    assert transformer["pgt"].evaluation.eval_every == 705 and transformer["spsa"].method.spsa_A == 1410
    assert TrainConfig.of(method="pgt", task="iris", reservoir="digital").resolved().method.steps == 3000  # never fewer
    assert TrainConfig.of(method="pgt", model="transformer", steps=50).resolved().method.steps == 50  # asked wins
    recorded = transformer["pgt-enc"]
    assert TrainConfig.from_json(recorded.to_json()).resolved() == recorded  # a recorded run keeps its own


@pytest.mark.parametrize(
    "method,per_step", [("pgt", 2 * 8), ("spsa", 2 * 8), ("node", 8 * (1 + 2 * 3)), ("backprop", 8)]
)
def test_query_accounting_by_role(iris, method, per_step):
    rec = ListRecorder()
    config = _config(method, directions=3) if method == "node" else _config(method)
    trainer = Trainer(config, _reservoir(config), task=iris, recorder=rec).run()
    q = trainer.queries
    assert q["calibration"] == 8
    assert trainer.training_queries == 8 + 12 * per_step
    evals = 1 + 12 // 4
    assert q["eval"] == evals * (20 + len(iris.y_test))
    for role in q:  # the recorder saw exactly the counted rows
        assert sum(len(u) for _, r, _, _, u in rec.queries if r == role) == q[role]
    assert [s for s, _ in rec.steps] == list(range(12))
    assert rec.steps[-1][1]["training_queries"] == trainer.training_queries
    assert "test_accuracy" in rec.steps[3][1] and "test_accuracy" not in rec.steps[2][1]
    assert len(trainer.history) == evals and trainer.history[-1]["step"] == 12
    if method == "node":
        plus = [(d, s) for _, r, d, s, _ in rec.queries if r == "plus"]
        d, s = plus[0]
        assert sorted(set(d)) == [0, 1, 2] and np.array_equal(s[:3], [s[0]] * 3)  # a sample's k directions together
    if method in ("pgt", "spsa", "node"):  # every + is measured right before its −
        for labels, _ in rec.rows:
            plus = np.flatnonzero(labels.role == "plus")
            if plus.size:
                assert np.all(labels.role[plus + 1] == "minus")
                assert np.array_equal(labels.sample[plus + 1], labels.sample[plus])
                assert np.array_equal(labels.direction[plus + 1], labels.direction[plus])
    test_eval = [s for _, r, _, s, _ in rec.queries if r == "eval" and s.min() >= len(iris.y_train)]
    assert len(test_eval) == evals


@pytest.mark.parametrize("method", ["pgt", "spsa", "node", "backprop"])
def test_same_seed_gives_bit_identical_parameters(iris, method):
    runs = [Trainer(_config(method), _reservoir(_config(method)), task=iris).run() for _ in range(2)]
    assert np.array_equal(vector(runs[0]), vector(runs[1]))
    assert runs[0].history == runs[1].history
    other = Trainer(_config(method, seed=1), _reservoir(_config(method, seed=1)), task=iris).run()
    assert not np.array_equal(vector(runs[0]), vector(other))


@pytest.mark.parametrize(
    "method,kw",
    [
        ("node", dict(optimizer="adam")),
        ("spsa", dict(spsa_calibrate=True)),
        ("pgt", dict(optimizer="momentum")),
        ("node", dict(follow_ring=2)),
    ],
)
def test_restore_from_checkpoint_continues_bit_identically(iris, method, kw):
    config = _config(method, **kw)
    rec = ListRecorder()
    full = Trainer(config, _reservoir(config), task=iris, recorder=rec).run()
    assert [c.step for c in rec.checkpoints] == list(range(12))
    ck = rec.checkpoints[5]  # after step 5; a fresh reservoir, as after a crash
    rec2 = ListRecorder()
    resumed = Trainer.restore(config, _reservoir(config), ck, task=iris, recorder=rec2)
    assert resumed.step == 6
    resumed.run()
    assert np.array_equal(vector(resumed), vector(full))
    assert resumed.queries == full.queries and resumed.history == full.history
    assert [s for s, _ in rec2.steps] == list(range(6, 12))
    assert min(s for s, *_ in rec2.queries) == 6


@pytest.mark.slow
@pytest.mark.parametrize("kw", [dict(), dict(hidden=6), dict(model="transformer", width=4, heads=1, blocks=2)])
def test_following_the_ring_moves_the_standardisation_and_keeps_the_loss(iris, kw):
    config = _config("node", follow_ring=3, digital_noise=0.0, **kw)
    trainer = Trainer(config, _reservoir(config), task=iris).run()
    layers = trainer.network.layers
    assert sorted(trainer.feature_moments) == [layer.index for layer in layers]
    reservoir = _reservoir(config)

    def measure(layer, U, rows):  # noise-free: the same inputs give the same features
        return reservoir.measure(U).features

    X = iris.x_test[:16]
    before = trainer.network.forward(trainer.params, X, measure).logits
    drifted = {k: (mean + 0.2, square + 0.3) for k, (mean, square) in trainer.feature_moments.items()}
    followed = trainer.network.follow(trainer.params, drifted)
    np.testing.assert_allclose(trainer.network.forward(followed, X, measure).logits, before, rtol=0, atol=1e-9)
    for layer in layers:
        np.testing.assert_array_equal(followed[layer.feature_mean], drifted[layer.index][0])
        assert not np.allclose(followed[layer.consumer_weight], trainer.params[layer.consumer_weight])


def test_backprop_refuses_a_measured_reservoir(iris):
    class Measured:
        input_width, feature_width, setting_names = 8, 32, ()

        def measure(self, U):
            raise AssertionError("not reached")

        def close(self):
            pass

    with pytest.raises(UserError, match="backprop needs a differentiable reservoir"):
        Trainer(_config("backprop"), Measured(), task=iris)


@pytest.mark.slow
def test_training_learns_digits_and_readout_counts_one_query_per_sample():
    node = start_training(
        TrainConfig.of(method="node", reservoir="digital", steps=60, eval_every=20, eval_train_samples=100)
    )
    assert node.holdout == "test" and node.final_accuracy > 0.8
    assert node.history[0]["test_accuracy"] < 0.3  # it was learning, not starting there
    readout = start_training(TrainConfig.of(method="readout", reservoir="digital"))
    n_train = len(load_task("digits").y_train)
    assert readout.training_queries == n_train == readout.queries["baseline"]
    assert readout.eval_queries == len(load_task("digits").y_test)  # train accuracy reuses the fit's features
    assert 0.5 < readout.final_accuracy < node.final_accuracy


@pytest.mark.parametrize("final_test", [True, False])
def test_a_validation_run_sees_no_test_sample_before_its_final_evaluation(monkeypatch, final_test):
    rec, loaded = ListRecorder(), []
    monkeypatch.setattr(
        trainer_module, "load_final_test", lambda *a: loaded.append(len(rec.steps)) or load_final_test(*a)
    )
    config = _config("node", holdout="validation", final_test=final_test)
    trainer = Trainer(config, _reservoir(config), recorder=rec).run()
    task, (_, y_test) = trainer.task, load_final_test("iris", 0)
    assert len(task.y_train) + len(task.y_test) == len(load_task("iris", 0).y_train)  # carved from training
    roles = np.concatenate([labels.role for labels, _ in rec.rows])
    samples = np.concatenate([labels.sample for labels, _ in rec.rows])
    n_seen = len(task.y_train) + len(task.y_test)
    assert all("test_accuracy" not in entry for entry in trainer.history[:-1])
    if not final_test:
        assert loaded == [] and "test" not in roles and "test_accuracy" not in trainer.history[-1]
        return
    assert loaded == [config.method.steps - 1]  # loaded once: in the last step, after training it
    first = int(np.argmax(roles == "test"))
    assert np.all(roles[first:] == "test") and np.sum(roles == "test") == len(y_test)  # the last queries
    assert np.all(samples[:first] < n_seen) and np.array_equal(samples[first:], n_seen + np.arange(len(y_test)))
    assert {"validation_accuracy", "test_accuracy"} <= set(trainer.history[-1])
    assert trainer.queries["test"] == len(y_test) and trainer.history[-1]["eval_queries"] == trainer.queries["eval"]


def test_make_reservoir_names():
    assert make_reservoir(TrainConfig.of(reservoir="digital")).feature_width == 32
    with pytest.raises(UserError, match="valid reservoirs"):
        TrainConfig.of(reservoir="photonic")


def test_ring_sim_training_is_deterministic():
    bench = pytest.importorskip("labpgt.bench")
    config = TrainConfig.of(
        task="iris",
        method="node",
        reservoir="ring-sim",
        steps=2,
        batch_size=4,
        directions=2,
        eval_every=2,
        eval_train_samples=8,
    )
    a, b = (Trainer(config, bench.embedded_bench(seed=0)).run() for _ in range(2))
    assert np.array_equal(vector(a), vector(b))
    assert a.history == b.history


def test_too_many_orthogonal_directions_is_a_user_error(iris):
    config = _config("node", directions=9)
    with pytest.raises(UserError, match="at most 8 directions"):
        Trainer(config, _reservoir(config), task=iris)


def test_batch_larger_than_training_split_is_a_user_error(iris):
    config = _config("pgt", batch_size=500)
    with pytest.raises(UserError, match="exceeds the 112 training samples"):
        Trainer(config, _reservoir(config), task=iris)


def test_cosine_schedule_decays_the_recorded_learning_rate(iris):
    rec = ListRecorder()
    config = _config("node", lr=0.02, lr_schedule="cosine")
    Trainer(config, _reservoir(config), task=iris, recorder=rec).run()
    lrs = [v["lr"] for _, v in rec.steps]
    assert lrs[0] == pytest.approx(0.02) and lrs[6] == pytest.approx(0.01)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    rec = ListRecorder()
    Trainer(_config("node", lr=0.02), _reservoir(config), task=iris, recorder=rec).run()  # method default: cosine
    assert rec.steps[-1][1]["lr"] < 0.02
    rec = ListRecorder()
    Trainer(_config("pgt", lr=0.02), _reservoir(config), task=iris, recorder=rec).run()  # paper: constant
    assert all(v["lr"] == 0.02 for _, v in rec.steps)


def test_the_readout_fits_the_ridge_penalty_it_is_given_or_chooses_one_by_cross_validation():
    def readout(**settings):
        config = TrainConfig.of(task="iris", method="readout", reservoir="digital", **settings)
        recorder = ListRecorder()
        Trainer(config, _reservoir(config), recorder=recorder).run()
        return recorder.steps[0][1]["alpha"]

    assert readout(ridge_penalty=123.0) == 123.0 and readout() in np.logspace(-3, 3, 13)
    with pytest.raises(UserError, match="ridge_penalty is a setting of readout"):
        TrainConfig.of(method="node", ridge_penalty=1.0)
