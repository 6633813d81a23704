"""The simulator dies mid-run: restarted within the retry budget the run goes on; later, it stops
cleanly and --resume finishes it."""

import dataclasses
import json
import random
import signal
import socket
import subprocess
import sys
import time

import pytest

from labpgt.bench import bench_config_toml, simulated_bench_config
from labpgt.cli import main
from labpgt.session import SessionReader

pytestmark = pytest.mark.slow  # a served bench killed and restarted


def free_base_port():
    for _ in range(50):
        base = random.randint(20000, 40000)
        ports = [base, base + 1] + [base + 10 + i for i in range(1, 5)]
        try:
            for port in ports:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free ports")


def start_sim(base):
    proc = subprocess.Popen(
        [sys.executable, "-m", "labpgt", "sim", "--port", str(base), "--noise", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for _ in range(6):
        proc.stdout.readline()
    return proc


def train(bench_path, out, *extra):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "labpgt",
            "train",
            "--bench",
            str(bench_path),
            "--task",
            "iris",
            "--steps",
            "12",
            "--batch-size",
            "8",
            "--directions",  # 48 queries a step: the run is still far from its end when the simulator is killed
            "2",
            "--eval-every",  # one evaluation, of the held-out split alone
            "12",
            "--eval-train-samples",
            "0",
            "--quiet",
            "--out",
            str(out),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_steps(path, count, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with SessionReader(path) as session:
                if (session.last_complete_step or -1) + 1 >= count:
                    return
        except Exception:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{path} never reached {count} steps")


def bench_file(tmp_path, **retries):
    """A served bench's config on free ports (with these ``[bench]`` retry settings): (base port, its file)."""
    base = free_base_port()
    config = dataclasses.replace(simulated_bench_config(embedded=False, base_port=base), **retries)
    path = tmp_path / "bench.toml"
    path.write_text(bench_config_toml(config))
    return base, path


def test_restarted_within_the_budget_the_run_continues(tmp_path):
    base, bench_path = bench_file(tmp_path)  # 10 attempts, backoff to 1 s: 5.5 s to come back in
    sim = start_sim(base)
    run = train(bench_path, tmp_path / "run.h5")
    try:
        wait_for_steps(tmp_path / "run.h5", 2)
        sim.kill()
        sim.wait()
        time.sleep(0.3)
        sim = start_sim(base)
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        with SessionReader(tmp_path / "run.h5") as session:
            assert session.completed
            attempts = session.queries(fields=("attempts",))["attempts"]
        assert attempts.max() > 1  # the queries that met the dead simulator were retried, recorded once
    finally:
        run.kill()
        sim.send_signal(signal.SIGINT)
        sim.wait(timeout=10)


def test_restarted_too_late_the_run_stops_cleanly_and_resumes(tmp_path, capsys):
    base, bench_path = bench_file(tmp_path, max_attempts=4)  # 0.35 s of backoff: given up before a restart
    session_path = tmp_path / "run.h5"
    sim = start_sim(base)
    run = train(bench_path, session_path)
    wait_for_steps(session_path, 2)
    sim.kill()
    sim.wait()
    _, err = run.communicate(timeout=120)
    assert run.returncode == 2
    assert err.count("\n") == 1 and "stopped answering" in err and "--resume" in err
    assert "Traceback" not in err
    sim = start_sim(base)
    try:
        capsys.readouterr()
        assert main(["train", "--resume", str(session_path), "--quiet"]) == 0, capsys.readouterr().err
        capsys.readouterr()
        assert main(["inspect", "--json", str(session_path)]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["completed"] and info["steps"] == 12
    finally:
        sim.send_signal(signal.SIGINT)
        sim.wait(timeout=10)
