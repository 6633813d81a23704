"""``labpgt sweep``: the threshold on the embedded bench, generators by their bench-config names, bad input,
stopping by signal, and the same points as the GUI's RingSweep."""

import re
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
import tomli_w
from pymeasure.experiment import Procedure, Results
from pymeasure.experiment.workers import Worker

from labpgt.bench import reservoir, simulated_bench_config
from labpgt.cli import main
from labpgt.inspection import inspect_session
from labpgt.instruments.simulated.ring import RingModel
from labpgt.procedures import RingSweep
from labpgt.session import SessionReader

POINT_ROW = re.compile(r"^\s+\d+\s+-?[\d.e+-]+\s+\d+\.\d{4}\s+-?\d+\.\d\s+-?\d+\.\d$")


def labpgt(*args, cwd=None, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "labpgt", *args], capture_output=True, text=True, timeout=120, cwd=cwd, **kwargs
    )


@pytest.mark.slow
def test_a_gain_sweep_on_the_embedded_bench_finds_the_models_threshold(tmp_path):
    result = labpgt("sweep", "--gain", "-3:3:25", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sum(bool(POINT_ROW.match(line)) for line in lines) == 25
    printed = float(re.search(r"threshold: loop gain (-?[\d.]+) dB", result.stdout).group(1))
    field = simulated_bench_config().instruments["ring"].settings["field_mt"]
    assert abs(printed - RingModel().threshold_gain_db(field)) < 0.5
    session = tmp_path / lines[-2].removeprefix("session ")
    plot = tmp_path / lines[-1].removeprefix("plot ")
    assert session.parent == tmp_path / "data" / "runs" and session.name.endswith("-sweep-loop_gain_db.h5")
    assert plot == session.with_suffix(".png") and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with SessionReader(session) as reader:
        assert reader.kind == "sweep" and reader.completed and reader.n_points == 25
    described = labpgt("inspect", str(session))
    assert described.returncode == 0
    assert (
        "[labpgt-session/3, sweep]" in described.stdout
        and "sweep of ring.loop_gain_db from -3 to 3" in described.stdout
        and "(generators off)" in described.stdout
    )
    assert f"auto-oscillation threshold: loop gain {printed:.3f} dB" in described.stdout
    assert inspect_session(session)["threshold"] == pytest.approx(printed, abs=5e-4)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--gain", "-3:3"], "--gain '-3:3': a range is START:STOP:POINTS"),
        (["--field", "40:sixty:5"], "--field '40:sixty:5': a range is START:STOP:POINTS"),
        (["--gain", "-3:3:2.5"], "a range is START:STOP:POINTS"),
        (["--gain", "-3:3:1"], "at least 2 points"),
        (["--gain", "0:nan:3"], "finite values"),
        (
            ["--frequency", "gen9", "3e9:3.02e9:3"],
            "no instrument 'gen9' with a frequency_hz to sweep; those with one are gen1, gen2, gen3, gen4",
        ),
        (["--power", "ring", "-30:-10:3"], "no instrument 'ring' with a power_dbm to sweep"),
        (["--frequency", "gen2"], "--frequency: expected 2 arguments"),
        (["--gain", "-30:3:5"], "ring.loop_gain_db = -30 outside [-20, 10]; nothing was sent"),
        (["--field", "100:400:4"], "ring.field_mt = 400 outside [0, 300]; nothing was sent"),
        (["--power", "gen2", "-30:20:5"], "gen2: 7.5 dBm exceeds max_power_dbm 5; nothing was sent"),
        (["--gain", "-3:3:5", "--field", "40:60:3"], "not allowed with argument --gain"),
        ([], "one of the arguments --gain --field --current --attenuation --frequency --power is required"),
        (["--gain", "0:1:3", "--margin-db", "0"], "--margin-db: must be a positive finite number"),
        (["--gain", "0:1:3", "--bench", "missing.toml"], "bench config missing.toml does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, monkeypatch, capsys, args, fragment):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("labpgt") and err.count("\n") == 1 and fragment in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_bad_input_from_the_shell_has_no_traceback(tmp_path):
    result = labpgt("sweep", "--power", "gen7", "-30:-10:3", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "gen7" in result.stderr and list(tmp_path.iterdir()) == []


def test_an_existing_session_is_never_overwritten(tmp_path, capsys):
    existing = tmp_path / "sweep.h5"
    existing.write_bytes(b"precious")
    assert main(["sweep", "--gain", "0:1:3", "--out", str(existing)]) == 2
    assert "exists" in capsys.readouterr().err and existing.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.h5"]


def lab_bench(path, names):
    """The embedded simulated bench with its generators named as a lab's TOML might name them."""
    raw = simulated_bench_config(embedded=True).to_dict()
    raw["instruments"] = {names.get(n, n): spec for n, spec in raw["instruments"].items()}
    for entry in raw["encoding"]:
        entry["instrument"] = names.get(entry["instrument"], entry["instrument"])
    path.write_text(tomli_w.dumps(raw))
    return path


def test_generators_are_named_as_the_bench_config_names_them(tmp_path, capsys):
    names = {"gen1": "psg_left", "gen2": "psg_right", "gen3": "mxg_a", "gen4": "mxg_b"}
    bench = lab_bench(tmp_path / "lab.toml", names)
    out = tmp_path / "power.h5"
    assert main(["sweep", "--bench", str(bench), "--power", "psg_right", "-30:-10:3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sweep of psg_right.power_dbm from -30 to -10 in 3 points (generators on)" in printed
    assert sum(bool(POINT_ROW.match(line)) for line in printed.splitlines()) == 3
    with SessionReader(out) as reader:
        assert reader.sweep["instrument"] == "psg_right" and reader.sweep["tones"] is True
        assert reader.setting_names == ("psg_right.power_dbm",)
    assert main(["sweep", "--bench", str(bench), "--power", "gen2", "-30:-10:3", "--out", str(tmp_path / "x.h5")]) == 2
    assert "those with one are psg_left, psg_right, mxg_a, mxg_b" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()


def test_a_frequency_sweep_of_a_named_generator_on_the_embedded_bench(tmp_path, capsys):
    out = tmp_path / "freq.h5"
    assert (
        main(
            [
                "sweep",
                "--frequency",
                "gen2",
                "3.00e9:3.02e9:3",
                "--out",
                str(out),
                "--plot",
                str(tmp_path / "f.png"),
                "--quiet",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"session {out}", f"plot {tmp_path / 'f.png'}"]  # no threshold: not a gain sweep
    info = inspect_session(out)
    assert info["sweep"]["instrument"] == "gen2" and info["sweep"]["tones"] and info["completed"]


def test_rf_is_off_after_the_command(tmp_path, monkeypatch, capsys):
    benches = []

    class WatchedBench(reservoir.Bench):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            benches.append(self)

    monkeypatch.setattr(reservoir, "Bench", WatchedBench)
    assert main(["sweep", "--power", "gen3", "-30:-5:4", "--out", str(tmp_path / "p.h5"), "--quiet"]) == 0
    (bench,) = benches
    assert [bool(g.output_on) for g in bench.simulator.generators] == [False] * 4
    assert inspect_session(tmp_path / "p.h5")["sweep"]["tones"] is True  # they were on while measuring


@pytest.mark.slow
def test_sigterm_stops_between_points_with_a_valid_incomplete_session(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "labpgt", "sweep", "--gain", "-3:3:100000", "--out", "s.h5"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    rows = 0
    for line in process.stdout:
        rows += bool(POINT_ROW.match(line))
        if rows == 3:
            process.send_signal(signal.SIGTERM)
            break
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143  # 128 + SIGTERM
    assert "stopped (SIGTERM) after" in err and "RF is off" in err and "Traceback" not in err
    assert "session s.h5" in out
    info = inspect_session(tmp_path / "s.h5")
    assert info["kind"] == "sweep" and not info["completed"] and 3 <= info["points"] < 100_000
    assert info["queries"] == info["points"] and (tmp_path / "s.png").exists()


@pytest.mark.slow
def test_ring_sweep_and_the_command_measure_the_same_points(tmp_path, capsys):
    procedure = RingSweep()
    procedure.target, procedure.start, procedure.stop, procedure.points = "loop gain", -2.0, 2.0, 9
    procedure.seed, procedure.output = 5, str(tmp_path / "gui.h5")
    worker = Worker(Results(procedure, str(tmp_path / "gui.csv")))
    worker.start()
    threading.Thread.join(worker, 60)
    assert procedure.status == Procedure.FINISHED
    assert main(["sweep", "--gain", "-2:2:9", "--seed", "5", "--out", str(tmp_path / "cli.h5")]) == 0
    with SessionReader(tmp_path / "gui.h5") as gui, SessionReader(tmp_path / "cli.h5") as cli:
        for name in ("value", "peak_frequency_hz", "peak_power_dbm", "margin_db"):
            np.testing.assert_array_equal(gui.points()[name], cli.points()[name])
        np.testing.assert_array_equal(
            gui.queries(fields=("spectrum",))["spectrum"], cli.queries(fields=("spectrum",))["spectrum"]
        )
        assert gui.sweep == cli.sweep
