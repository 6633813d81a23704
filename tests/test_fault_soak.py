"""End to end over TCP: a run against a simulator that drops, delays, garbles, errors and reboots
records exactly what an unfaulted run records (benchmarks/fault_soak.py, scaled down)."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a soak over TCP with faults

SOAK = Path(__file__).resolve().parents[1] / "benchmarks" / "fault_soak.py"


def test_faulted_run_records_exactly_the_clean_run(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(SOAK),
            "--task",
            "iris",
            "--steps",
            "1",
            "--timeout-ms",
            "150",
            "--delay-s",
            "0.3",
            "--eval-train-samples",
            "0",
            "--faults",
            "drop=0.02,garble=0.02,delay=0.01,error=0.01,reboot=0.005,seed=11",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "RESULT: the faulted run recorded exactly the clean run's queries and parameters" in result.stdout
    faulted = next(line for line in result.stdout.splitlines() if line.startswith("faulted"))
    assert int(faulted.split()[4]) > 0  # some queries really were retried
    assert "reboot 0" not in result.stdout  # and instruments really rebooted under the run
