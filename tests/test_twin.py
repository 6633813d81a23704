"""Twins (labpgt.twin) and the twin method: learning the reservoir, its policy, files, replay, resume, bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
from sessionfiles import train_until

from labpgt.cli import main
from labpgt.digital import DigitalReservoir
from labpgt.errors import UserError
from labpgt.inspection import inspect_session
from labpgt.recording import NullRecorder
from labpgt.replay import replay_session
from labpgt.runs import RunResult, resume_training, start_training
from labpgt.session import SessionReader
from labpgt.trainer import TrainConfig, Trainer, trainable_parameters
from labpgt.twin import TwinModel, TwinReservoir, TwinSpec, fit_twin, read_twin

EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "session-example.h5"
SMALL = dict(task="iris", batch_size=8, eval_every=5, eval_train_samples=20)


def labpgt(capsys, *args):
    """``labpgt args`` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def cosine(a, b):
    return float(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.slow
def test_a_twin_learns_the_digital_reservoir_and_its_vjp():
    res = DigitalReservoir(input_width=4, feature_width=6, seed=0)
    rng = np.random.default_rng(0)
    U, held = rng.random((3000, 4)), rng.random((200, 4))
    model = TwinModel(TwinSpec(4, 6, hidden=(32, 32)), seed=0)
    first = model.fit(U, res.measure(U).features, 50)
    model.fit(U, res.measure(U).features, 3000)
    assert model.error(held, res.measure(held).features) < 0.05  # held out: 5 % of the spread
    G = rng.standard_normal((200, 6))
    assert cosine(model.vjp(held, G), res.vjp(held, G)) > 0.98  # its slopes, not just its values
    assert first > 0


def test_twin_state_round_trips_and_fitting_continues_identically():
    res = DigitalReservoir(input_width=4, feature_width=6, seed=0)
    U = np.random.default_rng(1).random((500, 4))
    F = res.measure(U).features
    a = TwinModel(TwinSpec(4, 6, hidden=(8, 8)), seed=3)
    a.fit(U, F, 20)
    b = TwinModel(TwinSpec(4, 6, hidden=(8, 8)), seed=99)
    b.load_state_arrays(a.state_arrays("twin."), "twin.")
    b.set_state(json.loads(json.dumps(a.get_state())))
    a.fit(U, F, 20)
    b.fit(U, F, 20)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)


@pytest.mark.slow
def test_twin_method_logs_its_held_out_error_every_step_and_inspect_shows_it(tmp_path, capsys):
    path = tmp_path / "twin.h5"
    result = start_training(
        TrainConfig.of(method="twin", reservoir="digital", steps=12, twin_check_every=4, **SMALL), path
    )
    with SessionReader(path) as session:
        extras = [session.step_extra(i) for i in range(session.n_steps)]
        assert session.method_names and all(name.startswith("twin.") for name in session.method_names)
    assert all(np.isfinite(e["twin_error"]) for e in extras)
    used = [e["twin_used"] for e in extras]
    assert used[0] == 0 and 1 in used  # probes first, then the twin once it passed a check
    assert "twin_gradient_error" not in extras[0]  # the first probe has no slope to compare (classifier at 0)
    assert all("twin_gradient_error" in e for e, u in zip(extras[1:], used[1:]) if u == 0)
    probe_steps = [i for i, u in enumerate(used) if u == 0]
    assert all(b - a <= 5 for a, b in zip(probe_steps, probe_steps[1:] + [len(used)]))  # checked every 4 twin steps
    info = inspect_session(path)
    assert info["method_log"]["twin_error"]["steps"] == 12
    _, text, _ = labpgt(capsys, "inspect", str(path))
    assert "twin_error: last" in text and "over 12 steps" in text
    q = result.queries
    assert result.training_queries == q["calibration"] + q["baseline"] + q["plus"] + q["minus"]
    assert q["baseline"] == 12 * 8 and q["plus"] == q["minus"] == len(probe_steps) * 8 * 4


@pytest.mark.slow
def test_a_twin_run_replays_exactly(tmp_path):
    path = tmp_path / "twin.h5"
    start_training(
        TrainConfig.of(method="twin", reservoir="digital", steps=10, twin_check_every=3, digital_noise=0.02, **SMALL),
        path,
    )
    report = replay_session(path)
    assert report.ok and report.largest_deviation == 0.0 and report.checkpoints_checked == 10


class StepLog(NullRecorder, list):
    """A recorder that keeps each step's values (a list of them) and calls ``after_step(step)``."""

    def __init__(self, after_step=lambda step: None):
        super().__init__()
        self.after_step = after_step

    def record_step(self, step, values):
        self.append(values)
        self.after_step(step)


class SuddenChange:
    """A digital reservoir whose map changes when told to (a mode hop, a step of the field)."""

    def __init__(self):
        self.before, self.after_change = DigitalReservoir(seed=0), DigitalReservoir(seed=5)
        self.changed = False
        self.input_width, self.feature_width, self.setting_names = 8, 32, ()
        self.differentiable = False

    def measure(self, U):
        return (self.after_change if self.changed else self.before).measure(U)

    def identities(self):
        return {}

    def get_rng_state(self):
        return {}

    def set_rng_state(self, state):
        pass

    def close(self):
        pass


@pytest.mark.slow
def test_the_twin_falls_back_on_probes_when_the_ring_changes():
    changed = 25
    reservoir = SuddenChange()

    def change(step):
        reservoir.changed = step + 1 >= changed  # from step 25 on, the ring is another

    config = TrainConfig.of(
        method="twin",
        reservoir="digital",
        steps=50,
        twin_check_every=1000,
        eval_every=50,
        eval_train_samples=10,
        task="iris",
        batch_size=8,
    )
    logs = StepLog(after_step=change)
    Trainer(config, reservoir, recorder=logs).run()
    used = [v["twin_used"] for v in logs]
    assert sum(used[changed - 5 : changed]) == 5  # trusted before the change
    assert 0 in used[changed : changed + 3]  # the jump in held-out error sends it back to probes
    assert used[-1] == 1  # and it learns the new ring and is trusted again
    error = [v["twin_error"] for v in logs]
    assert max(error[changed : changed + 3]) > 2 * np.median(error[changed - 10 : changed])


@pytest.mark.slow
def test_twin_from_earlier_sessions_is_kept_in_the_session_resumes_and_replays(tmp_path):
    earlier = tmp_path / "earlier.h5"
    start_training(TrainConfig.of(method="node", reservoir="digital", steps=6, **SMALL), earlier)
    config = TrainConfig.of(
        method="twin", reservoir="digital", steps=8, twin_check_every=3, twin_from=(str(earlier),), **SMALL
    ).resolved()
    reference = start_training(config, tmp_path / "reference.h5")
    with SessionReader(tmp_path / "reference.h5") as session:
        U, F, sources = session.prior()
        with SessionReader(earlier) as source:
            q = source.queries(fields=("role", "u"))
            training = np.isin(np.array(source.role_names)[q["role"]], ("calibration", "baseline", "plus", "minus"))
            np.testing.assert_array_equal(U, q["u"][training])
        assert sources[0]["rows"] == len(U) and sources[0]["path"] == str(earlier)
    assert inspect_session(tmp_path / "reference.h5")["prior_rows"] == len(U)

    train_until(4, config, tmp_path / "cut.h5")
    earlier.rename(tmp_path / "moved.h5")  # resume and replay need nothing but the file
    resumed = resume_training(tmp_path / "cut.h5")
    assert resumed.final_params_sha256 == reference.final_params_sha256
    assert replay_session(tmp_path / "cut.h5").ok
    assert RunResult.from_session(tmp_path / "cut.h5").history == reference.history


@pytest.mark.slow
def test_twin_fit_on_the_shipped_session_and_a_twin_as_reservoir(tmp_path, capsys, monkeypatch):
    twin = tmp_path / "t.h5"
    status, out, err = labpgt(capsys, "twin", "fit", str(EXAMPLE), "--out", str(twin), "--iterations", "3000")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("fitted on ") and "held-out error" in lines[1]
    assert len([line for line in lines if line.strip()[:1].isdigit()]) == 32  # one row per feature
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    file = read_twin(twin)
    assert file.layout["input_width"] == 8 and file.sources[0]["rows"] == 226
    reservoir = TwinReservoir(twin, seed=0)
    U = np.random.default_rng(0).random((5, 8))
    assert np.allclose(TwinReservoir(twin, noise=False).measure(U).features, file.model.predict(U))
    assert not np.array_equal(reservoir.measure(U).features, file.model.predict(U))  # noise of the measured size
    assert trainable_parameters(TrainConfig.of(method="pgt", reservoir=f"twin:{twin}", task="iris")) == 139
    monkeypatch.chdir(tmp_path)  # the twin and the session named relative to the working directory
    status, _, err = labpgt(
        capsys,
        "train",
        "--reservoir",
        "twin:t.h5",
        "--task",
        "iris",
        "--steps",
        "6",
        "--batch-size",
        "8",
        "--quiet",
        "--out",
        "run.h5",
    )
    assert status == 0, err
    monkeypatch.chdir("/")  # replayed from another working directory
    status, out, _ = labpgt(capsys, "replay", str(tmp_path / "run.h5"))
    assert status == 0 and "replay ok" in out


@pytest.mark.slow
def test_sessions_of_another_layout_are_refused_with_one_line(tmp_path, capsys):
    digital = tmp_path / "digital.h5"
    start_training(TrainConfig.of(method="node", reservoir="digital", steps=2, **SMALL), digital)
    other = tmp_path / "other.h5"
    start_training(
        TrainConfig.of(method="node", reservoir="digital", digital_feature_width=16, steps=2, **SMALL), other
    )
    cases = [
        ("twin", "fit", str(EXAMPLE), str(digital), "--out", str(tmp_path / "t.h5")),
        ("twin", "fit", str(digital), str(other), "--out", str(tmp_path / "t.h5")),
        (
            "train",
            "--method",
            "twin",
            "--reservoir",
            "digital",
            "--twin-from",
            str(EXAMPLE),
            "--task",
            "iris",
            "--out",
            str(tmp_path / "r.h5"),
        ),
        (
            "train",
            "--method",
            "node",
            "--reservoir",
            "digital",
            "--twin-from",
            str(digital),
            "--task",
            "iris",
            "--out",
            str(tmp_path / "r.h5"),
        ),
        ("twin", "fit", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "t.h5")),
        ("train", "--reservoir", "twin:" + str(tmp_path / "missing.h5"), "--out", str(tmp_path / "r.h5")),
        ("train", "--reservoir", "twin:" + str(digital), "--out", str(tmp_path / "r.h5")),
    ]
    for args in cases:
        status, _, err = labpgt(capsys, *args)
        assert status == 2, (args, err)
        assert err.startswith("labpgt: ") and err.count("\n") == 1, err
        assert "Traceback" not in err
    assert not (tmp_path / "t.h5").exists() and not (tmp_path / "r.h5").exists()
    with pytest.raises(UserError, match="another bench layout"):
        fit_twin([digital, other], tmp_path / "t.h5")


def test_the_twin_is_trusted_only_after_a_probe_that_measured_its_gradient_error():
    config = TrainConfig.of(
        method="twin",
        reservoir="digital",
        steps=12,
        twin_check_every=4,
        eval_every=12,
        eval_train_samples=10,
        task="iris",
        batch_size=8,
    )
    logs = StepLog()
    Trainer(config, DigitalReservoir(seed=0), recorder=logs).run()
    assert "twin_gradient_error" not in logs[0]  # the classifier starts at zero: no slope to compare
    assert logs[1]["twin_used"] == 0  # so the next step probes again
    last_probe = None
    for values in logs:
        if values["twin_used"]:
            assert last_probe is not None and last_probe["twin_gradient_error"] < config.method.twin_tolerance
        else:
            last_probe = values
    assert sum(v["twin_used"] for v in logs) > 0
