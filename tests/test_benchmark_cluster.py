"""A benchmark on an existing dask cluster (a scheduler and two worker processes on loopback) that loses
a worker in the middle of a run: the run is resumed from its own session on the other worker and ends
bit-identical to an uninterrupted one."""

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labpgt.runs import RunResult, start_training
from labpgt.trainer import TrainConfig

pytestmark = pytest.mark.slow  # a dask scheduler and workers in processes of their own


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(*args, log):
    return subprocess.Popen([sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT)


def _executing_session(client, worker_address, out_dir):
    """The session file of a run that ``worker_address`` is executing and has written a step of, or None."""
    for key in client.processing().get(worker_address, ()):
        session = out_dir / f"{str(key).removeprefix('labpgt-')}.h5"
        if session.exists() and session.stat().st_size > 200_000:
            return session
    return None


@pytest.fixture
def cluster(tmp_path):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = open(tmp_path / "cluster.log", "w")
    processes = [
        _start("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard", log=log)
    ]
    processes += [
        _start(
            "distributed.cli.dask_worker",
            address,
            "--nthreads",
            "1",
            "--no-nanny",
            "--no-dashboard",
            "--host",
            "127.0.0.1",
            "--name",
            f"w{i}",
            log=log,
        )
        for i in range(2)
    ]
    from distributed import Client

    client = Client(address, timeout=60)
    client.wait_for_workers(2, timeout=60)
    try:
        yield address, client, processes[1:]
    finally:
        client.close()
        for process in processes:
            process.kill()
            process.wait()
        log.close()


def test_a_benchmark_survives_losing_a_worker_and_resumes_the_run_from_its_session(tmp_path, cluster):
    address, client, workers = cluster
    out_dir = tmp_path / "runs"
    command = [
        sys.executable,
        "-m",
        "labpgt",
        "benchmark",
        "--scheduler",
        address,
        "--task",
        "iris",
        "--reservoir",
        "ring-sim",
        "--methods",
        "pgt,node",
        "--seeds",
        "2",
        "--steps",
        "pgt=20",
        "--steps",
        "node=10",
        "--batch-size",
        "8",
        "--eval-every",
        "5",
        "--ceiling-steps",
        "0",
        "--out-dir",
        str(out_dir),
        "--json",
        str(tmp_path / "out.json"),
    ]
    bench = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim_address = next(a for a, info in client.scheduler_info()["workers"].items() if info["name"] == "w0")
    victim = workers[0]
    deadline, interrupted = time.monotonic() + 120, None
    while interrupted is None and time.monotonic() < deadline and bench.poll() is None:
        interrupted = _executing_session(client, victim_address, out_dir)
        time.sleep(0.05)
    assert interrupted is not None, "worker w0 never ran a job long enough to be killed"
    victim.kill()
    victim.wait()
    assert RunResult.from_session(interrupted) is None  # killed mid-run: its session is incomplete

    stdout, stderr = bench.communicate(timeout=300)
    assert bench.returncode == 0, stderr
    runs = json.loads((tmp_path / "out.json").read_text())["results"]
    assert sorted((r["method"], r["seed"]) for r in runs) == [("node", 0), ("node", 1), ("pgt", 0), ("pgt", 1)]

    for run in runs:  # each run's full config in the JSON reruns it, uninterrupted
        assert start_training(TrainConfig.from_dict(run["config"])).final_params_sha256 == run["final_params_sha256"]
    resumed = next(r for r in runs if Path(r["session"]).name == interrupted.name)
    assert RunResult.from_session(resumed["session"]) is not None
