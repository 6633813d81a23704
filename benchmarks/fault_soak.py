"""Train over TCP against a faulty simulator and check the record equals an unfaulted run's.

    python benchmarks/fault_soak.py [--faults drop=0.02,garble=0.02,delay=0.01,error=0.01,seed=7]
                                    [--steps 7] [--task digits] [--timeout-ms 1000] [--delay-s 2]
                                    [--eval-train-samples N]

Runs `labpgt train --bench …` twice, each against its own `labpgt sim --noise 0 --ideal` process:
once clean, once with the faults. The kind ring (--ideal): a real ring's drift and memory would make
every retried sweep a different measurement, so only the kind ring can be compared query for query.
Prints a table: queries by role, attempts, wall time and
final_params_sha256 of both, and whether every recorded spectrum, feature and input is identical.
Exit status 0 when the faulted session has exactly the clean session's queries and parameters.
"""

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from labpgt.session import SessionReader


def serve(workdir: Path, faults: str | None, timeout_ms: int) -> tuple[subprocess.Popen, Path]:
    bench = workdir / ("bench-faulty.toml" if faults else "bench-clean.toml")
    command = [
        sys.executable,
        "-m",
        "labpgt",
        "sim",
        "--port",
        "0",
        "--noise",
        "0",
        "--ideal",
        "--write-bench",
        str(bench),
    ]
    if faults:
        command += ["--faults", faults]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(6):
        proc.stdout.readline()
    bench.write_text(bench.read_text().replace("timeout_ms = 1000", f"timeout_ms = {timeout_ms}"))
    return proc, bench


def train_command(bench: Path, out: Path, options: list[str]) -> list[str]:
    """``labpgt train`` of ``options`` on ``bench``, recorded at ``out``."""
    return [sys.executable, "-m", "labpgt", "train", "--bench", str(bench), *options, "--quiet", "--out", str(out)]


def train(bench: Path, out: Path, options: list[str]) -> float:
    """Train to the end (the soak stops on failure); its wall time in seconds."""
    t0 = time.perf_counter()
    result = subprocess.run(train_command(bench, out, options), capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"training against {bench.name} failed: {result.stderr.strip()}")
    return time.perf_counter() - t0


def inspect(path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "labpgt", "inspect", "--json", str(path)], capture_output=True, text=True
    )
    return json.loads(out.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", default="drop=0.02,garble=0.02,delay=0.01,error=0.01,seed=7")
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--task", default="digits")
    parser.add_argument("--timeout-ms", type=int, default=1000)
    parser.add_argument("--delay-s", type=float, default=2.0, help="how late a delayed answer comes")
    parser.add_argument(
        "--eval-train-samples", type=int, help="training samples the evaluation measures (labpgt train's default)"
    )
    args = parser.parse_args()
    faults = f"{args.faults},delay_s={args.delay_s}" if "delay=" in args.faults else args.faults

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        runs = {}
        for label, spec in (("clean", None), ("faulted", faults)):
            sim, bench = serve(work, spec, args.timeout_ms)
            try:
                seconds = train(
                    bench,
                    work / f"{label}.h5",
                    ["--task", args.task, "--steps", str(args.steps), "--eval-every", str(args.steps)]
                    + (
                        []
                        if args.eval_train_samples is None
                        else ["--eval-train-samples", str(args.eval_train_samples)]
                    ),
                )
            finally:
                sim.send_signal(signal.SIGINT)
                _, err = sim.communicate(timeout=30)
            runs[label] = (inspect(work / f"{label}.h5"), seconds, err.strip().splitlines()[-1] if spec else "")
        with SessionReader(work / "clean.h5") as a, SessionReader(work / "faulted.h5") as b:
            fields = ("u", "spectrum", "features", "role", "step", "sample", "direction")
            qa, qb = a.queries(fields=fields + ("attempts",)), b.queries(fields=fields + ("attempts",))
            same = {f: qa[f].shape == qb[f].shape and np.array_equal(qa[f], qb[f]) for f in fields}
            attempts = qb["attempts"]

    clean, faulted = runs["clean"][0], runs["faulted"][0]
    print(f"task {args.task}, node, {args.steps} steps, TCP with --noise 0 --ideal; faults: {faults}")
    print(
        f"{'':<10}{'queries':>9}{'training':>10}{'eval':>7}{'retried':>9}{'max att.':>9}{'wall s':>8}"
        "  final_params_sha256"
    )
    for label, (info, seconds, _) in runs.items():
        roles = info["queries_by_role"]
        retried = int((attempts > 1).sum()) if label == "faulted" else 0
        most = int(attempts.max()) if label == "faulted" else 1
        print(
            f"{label:<10}{info['queries']:>9}{info['queries'] - roles['eval']:>10}{roles['eval']:>7}"
            f"{retried:>9}{most:>9}{seconds:>8.1f}  {info['final_params_sha256']}"
        )
    print(f"simulator: {runs['faulted'][2]}")
    print("identical per query: " + ", ".join(f"{f} {'yes' if ok else 'NO'}" for f, ok in same.items()))
    ok = (
        all(same.values())
        and clean["final_params_sha256"] == faulted["final_params_sha256"]
        and clean["queries"] == faulted["queries"]
        and faulted["completed"]
    )
    print(
        "RESULT: " + ("the faulted run recorded exactly the clean run's queries and parameters" if ok else "MISMATCH")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
