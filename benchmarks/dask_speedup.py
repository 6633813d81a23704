"""How much a second dask worker buys: one 4-run benchmark with ``--workers 1`` and with ``--workers 2``.

    python benchmarks/dask_speedup.py [--task digits] [--reservoir ring-sim] [--steps 60] [--out DIR]

Runs ``labpgt benchmark --methods pgt,node --seeds 2`` (4 runs; pgt is the target, so nothing else is
added) twice as a user would, each into a fresh ``--out-dir``, and prints the wall time of each
command (worker start-up included) and their ratio. The two commands must agree bit for bit on every
run's final parameters, which it checks. Run it on an otherwise idle machine: it measures the cores.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(workers: int, args, out: Path) -> tuple[float, dict]:
    command = [
        sys.executable,
        "-m",
        "labpgt",
        "benchmark",
        "--task",
        args.task,
        "--reservoir",
        args.reservoir,
        "--methods",
        "pgt,node",
        "--seeds",
        "2",
        "--steps",
        f"pgt={args.steps}",
        "--steps",
        f"node={args.steps}",
        "--workers",
        str(workers),
        "--out-dir",
        str(out / f"w{workers}"),
        "--json",
        str(out / f"w{workers}.json"),
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    runs = json.loads((out / f"w{workers}.json").read_text())["results"]
    return wall, {(r["method"], r["seed"]): r["final_params_sha256"] for r in runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits")
    parser.add_argument("--reservoir", default="ring-sim")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", type=Path, default=None, help="where the sessions go (a temporary directory)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="dask-speedup-"))
    one, shas_one = run(1, args, out)
    two, shas_two = run(2, args, out)
    if shas_one != shas_two:
        sys.exit("the two benchmarks disagree on a run's final parameters")
    print(f"4 runs ({args.task}, {args.reservoir}, pgt and node, 2 seeds, {args.steps} steps each)")
    print(f"{'workers':>8}{'wall s':>10}")
    print(f"{1:>8}{one:>10.1f}\n{2:>8}{two:>10.1f}")
    print(f"speed-up {one / two:.2f}x; final parameters identical in both")


if __name__ == "__main__":
    main()
