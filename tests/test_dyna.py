"""The dyna method (labpgt.methods.Dyna) and evaluations toward a target (labpgt.evaluation): what they
measure, what they record, resume, rewind and replay."""

import numpy as np
import pytest
from sessionfiles import train_until

from labpgt.benchmark import queries_to_target
from labpgt.evaluation import Evaluation, TargetLook, accuracy_upper_bound
from labpgt.recording import NullRecorder, QueryLabels
from labpgt.replay import replay_session
from labpgt.reservoirs import make_reservoir
from labpgt.runs import RunResult, resume_training, start_training
from labpgt.session import SessionReader
from labpgt.trainer import TrainConfig, Trainer
from labpgt.twin import Anchors

DYNA = dict(
    task="iris",
    method="dyna",
    reservoir="digital",
    steps=14,
    batch_size=8,
    model_steps=3,
    twin_check_every=2,
    twin_check_rows=4,
    eval_every=7,
    eval_train_samples=20,
    seed=2,
)


def test_steps_on_the_twin_measure_nothing_and_the_session_says_which_were_measured(tmp_path):
    path = tmp_path / "dyna.h5"
    result = start_training(TrainConfig.of(**DYNA), path)
    with SessionReader(path) as r:
        measured = np.array([r.step_extra(row)["measured"] for row in range(r.n_steps)], dtype=int)
        np.testing.assert_array_equal(measured, [1, 0, 0, 0] * 3 + [1, 0])  # one measured, model_steps on the twin
        q = r.queries(fields=("step", "role"))
        roles = np.array(r.role_names)[q["role"]]
        training = np.isin(roles, ("calibration", "baseline", "plus", "minus"))
        stepped = np.unique(q["step"][training & (q["step"] > 0)])
        assert set(stepped) <= set(np.flatnonzero(measured))
        assert set(q["step"][roles == "plus"]) <= set(np.flatnonzero(measured))  # probes: measured steps only
        # a checkpoint after every step that measured (and the last): none after a step taken on the twin
        measuring = {s for s in range(DYNA["steps"]) if measured[s]} | {6, 13}  # 6, 13: evaluations measured
        assert set(r.checkpoint_steps) == measuring
    assert result.queries["plus"] == result.queries["minus"] > 0  # node probes checked the twin
    assert result.training_queries == sum(result.queries[k] for k in ("calibration", "baseline", "plus", "minus"))


def test_anchors_say_how_far_each_sample_moved_and_forget_what_a_rewind_drops():
    anchors = Anchors(4)
    labels = QueryLabels.of(0, "baseline", 2, sample=[0, 2])
    anchors.observe(labels, np.zeros((2, 3)), np.ones((2, 5)), row_numbers=np.array([0, 1]))
    far = anchors.staleness(0, np.arange(4), np.full(4, -1), np.full((4, 3), 0.5))
    assert np.isinf(far[[1, 3]]).all() and np.allclose(far[[0, 2]], 0.75)
    anchors.forget_after(1)  # the row numbered 1 (sample 2) forgotten
    far = anchors.staleness(0, np.arange(4), np.full(4, -1), np.full((4, 3), 0.5))
    assert np.isfinite(far[0]) and np.isinf(far[[1, 2, 3]]).all()


def test_rewind_forgets_what_the_twin_and_its_anchors_learnt_after_the_checkpoint():
    config = TrainConfig.of(**{**DYNA, "digital_noise": 0.0, "steps": 12})
    straight = Trainer(config, make_reservoir(config), recorder=NullRecorder()).run()
    trainer = Trainer(config, make_reservoir(config), recorder=NullRecorder())
    checkpoints = []
    trainer.run(progress=lambda done, steps: checkpoints.append(trainer.checkpoint()))
    assert (
        trainer.method.anchors._journal
        and trainer.method.observed_rows() > checkpoints[4].trainer_state["observed_rows"]
    )
    trainer.rewind(checkpoints[4])  # back to after step 4 (a measured one), on again
    trainer.run()
    assert trainer.step == straight.step
    for name, value in straight.params.items():
        np.testing.assert_array_equal(trainer.params[name], value)


def test_a_stopped_dyna_run_resumes_bit_identically_and_replays(tmp_path):
    config = TrainConfig.of(**DYNA)
    reference = start_training(config, tmp_path / "reference.h5")
    train_until(9, config, tmp_path / "cut.h5")  # after a step on the twin: resume recomputes from step 8's
    resumed = resume_training(tmp_path / "cut.h5")
    assert resumed.final_params_sha256 == reference.final_params_sha256
    assert resumed.history == reference.history and resumed.queries == reference.queries
    assert replay_session(tmp_path / "cut.h5").ok
    assert replay_session(tmp_path / "reference.h5").ok


def test_steps_on_the_twin_see_features_as_noisy_as_the_twin_is_wrong_and_sessions_before_it_none():
    def imagined(trainer, noisy):
        dyna, task = trainer.method, trainer.task
        anchored = dyna._anchored(np.arange(len(task.y_train)), noisy=noisy)
        return np.concatenate(trainer.network.forward(trainer.params, task.x_train, anchored).features)

    for scale in (1.0, 2.5):
        config = TrainConfig.of(**{**DYNA, "steps": 5, "twin_noise": scale})
        trainer = Trainer(config, make_reservoir(config), recorder=NullRecorder())
        assert not np.any(trainer.method._residual_spread())  # nothing measured yet: no noise known
        trainer.run()
        before = trainer.method.noise_rng.bit_generator.state
        clean = imagined(trainer, noisy=False)
        assert trainer.method.noise_rng.bit_generator.state == before  # the choice of what to measure: no noise
        spread = trainer.method._residual_spread()
        assert spread.shape == (clean.shape[1],) and np.all(spread > 0)
        ratio = np.std(imagined(trainer, noisy=True) - clean, axis=0) / (scale * spread)
        assert 0.75 < np.median(ratio) < 1.3, ratio
    assert TrainConfig.of(method="dyna").method.twin_noise == 1.0
    recorded = TrainConfig.of(**DYNA).to_dict()
    del recorded["twin_noise"]  # a session recorded before the setting: its twin steps had no noise
    assert TrainConfig.from_dict(recorded).method.twin_noise == 0.0


# --------------------------------------------------------------------------- evaluation toward a target
def test_the_upper_bound_is_exact_on_the_whole_split_and_shrinks_with_evidence():
    assert accuracy_upper_bound(40, 60, 60, 0.95) == pytest.approx(40 / 60)
    assert accuracy_upper_bound(0, 0, 60, 0.95) == 1.0
    loose, tight = accuracy_upper_bound(6, 10, 100, 0.95), accuracy_upper_bound(30, 50, 100, 0.95)
    assert 0.6 < tight < loose < 1.0
    # the bound holds at its confidence: a split with 85 of 100 right is rarely bounded below 0.85
    rng = np.random.default_rng(0)
    split = np.r_[np.ones(85), np.zeros(15)]
    wrong = sum(accuracy_upper_bound(int(rng.permutation(split)[:30].sum()), 30, 100, 0.95) < 0.85 for _ in range(400))
    assert wrong / 400 <= 0.05


def test_a_look_toward_a_target_stops_once_the_target_is_implausible_and_never_before_on_a_right_split():
    def look_at(outcome, target, chunk=10):
        look, asked = TargetLook(Evaluation(eval_target=target, eval_chunk=chunk), target, len(outcome)), []
        while count := look.ask():
            asked.append(count)
            look.tell(outcome[look.measured : look.measured + count])
        return look, asked

    all_wrong, all_right = np.zeros(95, bool), np.ones(95, bool)
    look, asked = look_at(all_wrong, 0.85)
    assert asked == [10] and look.ruled_out and look.bound < 0.85 and look.correct == 0
    look, asked = look_at(all_right, 0.85)  # the whole split, the last look a partial chunk
    assert asked == [10] * 9 + [5] and look.measured == 95 and not look.ruled_out
    # the confidence is shared between the looks that may stop it: 9 here (the last, the whole split, is exact)
    assert look.confidence == pytest.approx(1 - 0.05 / 9)
    look, _ = look_at(np.r_[np.ones(60, bool), np.zeros(35, bool)], 0.85)  # 60 right, all first: found late
    assert 60 < look.measured < 95 and look.ruled_out


def test_targets_open_one_after_another():
    e = Evaluation(eval_target=0.8, eval_target_step=0.05)
    assert e.open_target(None) == 0.8 and e.open_target(0.79) == 0.8
    assert e.open_target(0.8) == 0.85 and e.open_target(0.93) == 0.95 and e.open_target(0.99) is None
    assert Evaluation(eval_target=0.8, eval_target_step=0).open_target(0.81) is None


def test_evaluations_toward_a_target_measure_no_training_sample_and_stop_early(tmp_path):
    config = TrainConfig.of(
        task="digits",
        method="node",
        reservoir="digital",
        steps=8,
        batch_size=16,
        eval_target=0.99,
        eval_chunk=10,
        seed=1,
        holdout="validation",
        final_test=False,
    )
    result = start_training(config, tmp_path / "t.h5")
    with SessionReader(tmp_path / "t.h5") as r:
        q = r.queries(fields=("role", "sample"))
        eval_rows = np.array(r.role_names)[q["role"]] == "eval"
        assert q["sample"][eval_rows].min() > q["sample"][~eval_rows].max()  # held-out samples only
    held = result.holdout
    partial = [h for h in result.history if f"{held}_samples" in h]
    assert partial, "an evaluation far below the target stopped before the whole split"
    for h in partial:
        assert h[f"{held}_upper_bound"] < h["eval_target"] == 0.99 and h[f"{held}_samples"] % 10 == 0
    assert all("train_accuracy" not in h for h in result.history)
    measured = sum(h.get(f"{held}_samples", 0) for h in partial)
    whole = [h for h in result.history if f"{held}_samples" not in h]
    assert result.eval_queries == measured + 270 * len(whole)  # validation: 270 samples
    assert queries_to_target(result.history, 0.0, held) == whole[0]["training_queries"]
    assert RunResult.from_session(tmp_path / "t.h5").history == result.history


@pytest.mark.slow
def test_a_dyna_run_on_the_simulated_ring_replays_exactly(tmp_path):
    config = TrainConfig.of(**{**DYNA, "reservoir": "ring-sim", "steps": 9, "eval_train_samples": 8})
    start_training(config, tmp_path / "ring.h5")
    report = replay_session(tmp_path / "ring.h5", exact=True)
    assert report.ok, report.first_divergence
    with SessionReader(tmp_path / "ring.h5") as r:
        assert report.queries_replayed == r.n_queries and report.spectra_checked == r.n_queries > 0


def test_a_warm_start_reports_its_fresh_queries_and_the_amortised_count_with_the_pairs_reused(tmp_path):
    from labpgt.display import training_lines

    earlier = tmp_path / "earlier.h5"
    start_training(TrainConfig.of(**{**DYNA, "steps": 5}), earlier)
    with SessionReader(earlier) as source:
        q = source.queries(fields=("role",))
        reused = int(
            np.isin(np.array(source.role_names)[q["role"]], ("calibration", "baseline", "plus", "minus")).sum()
        )
    result = start_training(TrainConfig.of(**{**DYNA, "twin_from": (str(earlier),)}), tmp_path / "warm.h5")
    assert result.prior_queries == reused > 0
    assert RunResult.from_session(tmp_path / "warm.h5").prior_queries == reused
    fresh = result.training_queries + result.eval_queries + result.test_queries
    assert result.queries_incl_evaluation == fresh
    line = training_lines(result, resumed=False)[1]
    assert f"{fresh} in all" in line and f"{reused} pairs reused" in line and f"{fresh + reused} amortised" in line
