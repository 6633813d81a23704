"""The engine's own time per step beside the instrument's: everything a step does except ``measure``.

    python benchmarks/engine_overhead.py [--steps 30] [--warmup 3] [--cases dense:dyna,...]

For each model (dense, transformer) and method on the embedded simulated ring (digits, batch 32, the
method's defaults), a trainer runs ``warmup`` steps (the first calls compile the jitted stages), then
``steps`` more are timed: wall time per step, the part spent inside ``reservoir.measure``, and the
rest — forward and backward of the digital stages, the estimator, the optimizer, the twin's refit,
the query accounting. Recording is off (its cost is benchmarks/session_throughput.py's), evaluation
is off (it measures, it does not compute). The compile time of the warm-up steps is reported apart:
it is paid once per run. A method that takes steps without measuring (dyna, on its twin) is reported per
*measured* step: the engine's time of all the steps over the steps that measured, beside what those
steps' queries take at a bench query of 30 ms (``engine/30 ms``: the acceptance line of issue 29).
"""

from __future__ import annotations

import argparse
import time

from labpgt.bench import embedded_bench
from labpgt.engine import RunEngine, _Metered
from labpgt.trainer import TrainConfig, Trainer

CASES = [
    ("dense", "node"),
    ("dense", "pgt"),
    ("dense", "pgt-enc"),
    ("dense", "twin"),
    ("transformer", "node"),
    ("transformer", "pgt"),
    ("transformer", "pgt-enc"),
    ("transformer", "twin"),
    ("dense", "dyna"),
]
BENCH_QUERY_S = 0.030  # a real bench's query (the yardstick)


def measure_case(model: str, method: str, steps: int, warmup: int) -> dict:
    config = TrainConfig.of(
        task="digits", model=model, method=method, reservoir="ring-sim", steps=warmup + steps, eval_every=10**9
    )
    bench = embedded_bench(seed=0)
    try:
        trainer = Trainer(config, _Metered(bench, RunEngine()))  # measured as a run measures: through the engine
        t0 = time.perf_counter()
        trainer._start()
        for s in range(warmup):
            trainer._train_step(s)
        warm_wall = time.perf_counter() - t0
        measured_before = trainer.measure_seconds
        queries_before = trainer.training_queries
        t0, measuring_steps = time.perf_counter(), 0
        for s in range(warmup, warmup + steps):
            before = trainer.training_queries
            trainer._train_step(s)
            measuring_steps += trainer.training_queries > before
        wall = time.perf_counter() - t0
        measuring = trainer.measure_seconds - measured_before
        per = max(measuring_steps, 1)
        queries = (trainer.training_queries - queries_before) / per
        return {
            "model": model,
            "method": method,
            "wall_ms": 1e3 * wall / per,
            "measure_ms": 1e3 * measuring / per,
            "engine_ms": 1e3 * (wall - measuring) / per,
            "share": (wall - measuring) / measuring,
            "share_30ms": (wall - measuring) / per / (queries * BENCH_QUERY_S),
            "queries": queries,
            "measuring_steps": measuring_steps,
            "warmup_s": warm_wall,
        }
    finally:
        bench.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--cases", help="MODEL:METHOD,... (every case)")
    args = parser.parse_args(argv)
    cases = CASES if not args.cases else [tuple(case.split(":")) for case in args.cases.split(",")]
    print(
        f"embedded ring-sim, digits, batch 32, {args.steps} timed steps after {args.warmup} warm-up steps; "
        f"per measured step"
    )
    print(
        f"{'model':<12}{'method':<9}{'queries/step':>13}{'measure ms':>12}{'engine ms':>11}{'engine/measure':>16}"
        f"{'engine/30 ms':>14}{'warm-up s':>11}"
    )
    for model, method in cases:
        r = measure_case(model, method, args.steps, args.warmup)
        print(
            f"{r['model']:<12}{r['method']:<9}{r['queries']:>13.0f}{r['measure_ms']:>12.1f}{r['engine_ms']:>11.2f}"
            f"{100 * r['share']:>15.1f}%{100 * r['share_30ms']:>13.1f}%{r['warmup_s']:>11.1f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
