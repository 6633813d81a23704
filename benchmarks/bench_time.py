"""How much bench time one query costs on the simulated bench's clock, before and after issue 27.

    python benchmarks/bench_time.py [--queries 640] [--batch 32]

Before issue 27 the clock charged settling and sweeping only (10 ms generator settling + 2 ms sweep);
since, it also charges every program message, its round trip and ``*OPC?``, the trace's transfer, the
analyzer's processing and a mechanical attenuator's moves, at the rates of
``labpgt.instruments.simulated.timing.BenchTiming`` (docs/ring-physics.md §10 gives their sources).
Each row measures ``--queries`` random encodings in batches of ``--batch`` (as a training's steps do)
through the bench's drivers on the embedded simulated bench and divides the clock's advance by the
queries. The last column scales that to the default run (172,832 training + 4,450 evaluation queries).
"""

import argparse
import contextlib
from unittest import mock

import numpy as np

from labpgt.bench import Bench, simulated_bench_config
from labpgt.instruments import SignalGenerator
from labpgt.instruments.simulated.timing import UNCHARGED

DEFAULT_RUN_QUERIES = 172_832 + 4_450


def default_bench():
    return Bench(simulated_bench_config(embedded=True))


def parts_bench():
    return Bench(simulated_bench_config(embedded=True, ring_parts=("hp11713", "ls421"), generator_models="tabor"))


@contextlib.contextmanager
def attenuators_on_auto():
    """The PSG's attenuator left on auto, as a driver that does not hold it leaves it."""
    with mock.patch.object(SignalGenerator, "attenuator_hold_for", None):
        yield


VARIANTS = [  # (label, bench factory, context, clock rates)
    ("default bench, clock before issue 27 (settling + sweep only)", default_bench, contextlib.nullcontext, UNCHARGED),
    ("default bench, issue 27 clock, PSG attenuators held", default_bench, contextlib.nullcontext, None),
    ("default bench, issue 27 clock, PSG attenuators on auto", default_bench, attenuators_on_auto, None),
    (
        "parts bench (Tabor, 11713, BOP, 421, 3xx), clock before issue 27",
        parts_bench,
        contextlib.nullcontext,
        UNCHARGED,
    ),
    ("parts bench (Tabor, 11713, BOP, 421, 3xx), issue 27 clock", parts_bench, contextlib.nullcontext, None),
]


def seconds_per_query(factory, context, timing, queries, batch):
    with context(), factory() as bench:
        if timing is not None:
            bench.simulator.timing = timing
        rng = np.random.default_rng(0)
        bench.measure(rng.random((batch, bench.input_width)))  # setup and the first settling not counted
        start = bench.simulator.clock_s
        for _ in range(queries // batch):
            bench.measure(rng.random((batch, bench.input_width)))
        return (bench.simulator.clock_s - start) / (queries // batch * batch)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=640)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    print("| bench | bench time / query (ms) | default run's queries (h) |")
    print("|---|---:|---:|")
    for label, factory, context, timing in VARIANTS:
        per_query = seconds_per_query(factory, context, timing, args.queries, args.batch)
        print(f"| {label} | {per_query * 1e3:.1f} | {per_query * DEFAULT_RUN_QUERIES / 3600:.2f} |", flush=True)


if __name__ == "__main__":
    main()
