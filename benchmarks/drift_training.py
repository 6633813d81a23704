"""How each training method fares on the simulated ring with its drift off and on, and the bench time it takes.

    python benchmarks/drift_training.py [--methods pgt spsa node twin] [--seeds 0 1 2] [--steps-scale 1.0]
                                        [--json benchmarks/results/drift.json] [--table-only]

Digits, the dense network, the embedded simulated ring with every real-ring behaviour on (ring.py
10-16) and its temperature and field drift either off or on (``[simulator] drift``); with drift on,
also with ``follow_ring`` (the feature standardisation following the ring every ``--follow`` steps,
the loss unchanged; labpgt.trainer). For each method, seed and variant, one run with the method's
defaults (``--steps-scale`` shrinks every method's default step count, for a shared machine); each
run is appended to the JSON as it finishes, so an interrupted benchmark keeps what it measured and
``--table-only`` prints the table from it.

The table: final test accuracy (mean ± std over the seeds that ran), training queries, and the bench
time each run represents — the simulated bench's clock at the end (generator settling plus the
analyzer's sweep time of every query, evaluations included; docs/ring-physics.md §10), in hours — and how far the
film's temperature wandered over the run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from labpgt.bench import Bench, simulated_bench_config
from labpgt.methods import method_class
from labpgt.runs import start_training
from labpgt.trainer import TrainConfig

METHODS = ("pgt", "spsa", "node", "twin")
VARIANTS = ("off", "on", "on+follow")  # drift off; drift on; drift on with the standardisation following the ring


def one_run(method: str, seed: int, variant: str, steps_scale: float, follow: int) -> dict:
    drift = variant != "off"
    steps = max(1, int(round(method_class(method).defaults["steps"] * steps_scale)))
    bench = Bench(simulated_bench_config(embedded=True, seed=seed, physics={"drift": drift}))
    temperatures = []
    measure = bench.measure

    def measured(U):  # keep the ring's temperature over the run
        m = measure(U)
        temperatures.append(float(m.temperature_c[-1]))
        return m

    bench.measure = measured
    started = time.perf_counter()
    config = TrainConfig.of(
        task="digits",
        method=method,
        reservoir="ring-sim",
        seed=seed,
        steps=steps,
        follow_ring=follow if variant == "on+follow" else 0,
    )
    result = start_training(config, reservoir=bench)
    return {
        "method": method,
        "seed": seed,
        "variant": variant,
        "steps": steps,
        "accuracy": result.final_accuracy,
        "training_queries": result.training_queries,
        "eval_queries": result.eval_queries,
        "bench_hours": bench.simulator.clock_s / 3600.0,
        "wall_seconds": time.perf_counter() - started,
        "temperature_span_k": float(np.ptp(temperatures)) if temperatures else 0.0,
    }


def table(runs: list[dict]) -> str:
    rows = [
        "| method | drift | seeds | steps | test accuracy | training queries | bench hours / run "
        "| temperature span (K) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method in METHODS:
        for variant in VARIANTS:
            done = [r for r in runs if r["method"] == method and r["variant"] == variant]
            if not done:
                continue
            acc = np.array([r["accuracy"] for r in done])
            spread = f" ± {acc.std(ddof=1):.3f}" if len(acc) > 1 else ""
            rows.append(
                f"| {method} | {variant} | {len(done)} | {done[0]['steps']} "
                f"| {acc.mean():.3f}{spread} | {int(np.mean([r['training_queries'] for r in done])):,} "
                f"| {np.mean([r['bench_hours'] for r in done]):.2f} "
                f"| {np.mean([r['temperature_span_k'] for r in done]):.2f} |"
            )
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps-scale", type=float, default=1.0)
    parser.add_argument("--follow", type=int, default=10, help="follow_ring of the on+follow variant (10)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/drift.json"))
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args(argv)
    runs = json.loads(args.json.read_text()) if args.json.exists() else []
    if not args.table_only:
        for seed in args.seeds:
            for method in args.methods:
                for variant in VARIANTS:
                    if any(r["method"] == method and r["seed"] == seed and r["variant"] == variant for r in runs):
                        continue
                    run = one_run(method, seed, variant, args.steps_scale, args.follow)
                    runs.append(run)
                    args.json.parent.mkdir(parents=True, exist_ok=True)
                    args.json.write_text(json.dumps(runs, indent=1))
                    print(
                        f"{method:>5} seed {seed} drift {variant:<9}: accuracy {run['accuracy']:.4f}, "
                        f"{run['training_queries']:,} training queries, {run['bench_hours']:.2f} bench hours, "
                        f"{run['wall_seconds']:.0f} s",
                        flush=True,
                    )
    print(table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
