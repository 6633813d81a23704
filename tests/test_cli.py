"""Bad input on the command line: one clear line on stderr, exit status 2, nothing written.

The command line runs in this process (``labpgt.cli.main``), as ``python -m labpgt`` runs it: argument parsing,
config validation and the one-line errors are the same code. One case starts the real process, to show it.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from labpgt.cli import main

BENCH_SIM = Path(__file__).resolve().parents[1] / "data" / "bench-sim.toml"


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["train", "--task", "mnist"], "unknown task 'mnist'"),
        (["train", "--method", "adam"], "unknown method 'adam'"),
        (["train", "--reservoir", "fpga"], "unknown reservoir 'fpga'"),
        (["train", "--method", "backprop"], "backprop needs a differentiable reservoir"),
        (["train", "--steps", "-3"], "--steps: must be a positive integer"),
        (["train", "--steps", "ten"], "--steps: 'ten' is not a whole number"),
        (["train", "--delta", "0"], "--delta: must be a positive finite number"),
        (["train", "--delta", "-0.1"], "--delta: must be a positive finite number"),
        (["train", "--p", "1.5"], "--p: must be in [0, 1)"),
        (["train", "--bench", "missing.toml"], "bench config missing.toml does not exist"),
        (["train", "--resume", "missing.h5"], "cannot resume: missing.h5 does not exist"),
        (["train", "--reservoir", "digital", "--no-drift"], "it cannot apply to digital"),
        (
            ["benchmark", "--bench", str(BENCH_SIM), "--set", "ring_drift=false"],
            "it cannot apply to the instruments of",
        ),
        (["benchmark", "--methods", "pgt,magic"], "unknown method 'magic'"),
        (
            ["benchmark", "--methods", "backprop", "--reservoir", "ring-sim"],
            "backprop needs a differentiable reservoir",
        ),
        (["benchmark", "--steps", "pgt=many"], "--steps takes METHOD=N"),
        (["benchmark", "--target", "pgt:lr=fast"], "lr='fast' is not a float"),
        (["benchmark", "--bench", str(BENCH_SIM), "--workers", "2"], "run here, one after another"),
        (["benchmark", "--set", "pgt.lr"], "expected [METHOD.]KEY=V1,V2"),
        (["benchmark", "--set", "pgt.lr=fast"], "lr='fast' is not a float"),
        (["benchmark", "--set", "pgt.colour=red"], "'colour' is not a training setting"),
        (["benchmark", "--set", "spsa.lr=0.1"], "spsa is not among the benchmark's methods"),
        (["benchmark", "--set", "lr=0.1,0.1"], "a value is listed twice"),
        (["inspect", "missing.h5"], "missing.h5"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["sim", "--analyzer", "hp8563"], "invalid choice: 'hp8563'"),
        (["sim", "--generator", "psg,keysight"], "unknown generator model 'keysight'"),
        (["sim", "--generators", "3", "--generator", "psg,mxg"], "--generator names 2 models for 3 generators"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(labpgt, tmp_path, args, fragment):
    result = labpgt(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("labpgt") and result.stderr.count("\n") == 1, result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("command", ["replay", "inspect", "export"])
def test_a_file_that_is_not_a_session_is_refused_and_left_alone(labpgt, tmp_path, command):
    stranger = tmp_path / "notes.h5"
    stranger.write_bytes(b"this is not HDF5 at all\n" * 10)
    before = stranger.read_bytes()
    extra = ["--to", str(tmp_path / "out")] if command == "export" else []
    result = labpgt(command, str(stranger), *extra)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "not an HDF5 file" in result.stderr
    assert stranger.read_bytes() == before and not (tmp_path / "out").exists()


def test_train_refuses_to_overwrite_a_session(labpgt, tmp_path):
    existing = tmp_path / "run.h5"
    existing.write_bytes(b"precious")
    result = labpgt("train", "--out", str(existing))
    assert result.returncode == 2 and "exists" in result.stderr and "--resume" in result.stderr
    assert existing.read_bytes() == b"precious"


@pytest.mark.slow
def test_the_process_itself_says_one_line_and_exits_2(tmp_path):
    """``python -m labpgt`` as a user starts it: the same one line, exit 2, no traceback, nothing written."""
    result = subprocess.run(
        [sys.executable, "-m", "labpgt", "train", "--task", "mnist"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "unknown task 'mnist'" in result.stderr
    assert "Traceback" not in result.stderr and list(tmp_path.iterdir()) == []


def test_sim_help_names_every_simulated_model_and_building_the_parser_imports_no_simulator(capsys):
    """The model options check their names when given (the simulator imported then), so ``labpgt --help`` does not
    import it; their help lists the names by hand, and must list every one."""
    import subprocess
    import sys

    from labpgt.instruments.simulated import ANALYZER_MODELS, GENERATOR_MODELS
    from labpgt.instruments.simulated.controls import ATTENUATOR_MODELS, GAUSSMETER_MODELS

    with pytest.raises(SystemExit):
        main(["sim", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in [*ANALYZER_MODELS, *GENERATOR_MODELS, *ATTENUATOR_MODELS, *GAUSSMETER_MODELS]:
        assert f"{name} (" in text, name
    probe = "import sys; from labpgt.cli import build_parser; build_parser(['--help']); print(sorted(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "labpgt.instruments.simulated" not in loaded
