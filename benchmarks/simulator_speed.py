"""How fast the simulated bench measures: model throughput and the per-query cost in and out of process.

    python benchmarks/simulator_speed.py [--batch 1000] [--repeats 5] [--queries 300]

Prints three tables:
1. the ring model alone, batch-vectorised: spectra per second at 401 points on one core
   (BLAS/OpenMP threads pinned to 1 before numpy loads);
2. one query through the drivers on the embedded (in-process) bench: set d generator powers,
   sweep, read the binary trace;
3. the same query over TCP to a `labpgt sim` process through pyvisa-py, as a LAN instrument.
"""

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from labpgt.bench import connect_instruments, simulated_bench_config  # noqa: E402
from labpgt.instruments.simulated.ring import RingModel  # noqa: E402


def model_throughput(batch, repeats):
    model = RingModel(seed=0)
    p = model.params
    axis = np.linspace(p.default_center_hz - p.default_span_hz / 2, p.default_center_hz + p.default_span_hz / 2, 401)
    rng = np.random.default_rng(0)
    # the default bench's encoding: four tones of -30 ... 0 dBm in 20 MHz bands from f_FMR + 10 MHz, loop gain 2 dB
    args = (
        p.operating_fmr_hz + 10e6 + 80e6 * rng.random((batch, 4)),
        -30 + 30 * rng.random((batch, 4)),
        np.ones((batch, 4), bool),
        np.full(batch, p.default_loop_gain_db),
        np.full(batch, p.default_field_mt),
        np.ones(batch, bool),
        axis,
        1e6,
    )
    model.spectra(*args)
    best = min(_timed(lambda: model.spectra(*args)) for _ in range(repeats))
    return batch / best


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def per_query_ms(instruments, generators, queries):
    """Median wall time of: set every generator's power, *OPC?, sweep, read the binary trace."""
    analyzer = instruments["analyzer"]
    for g in generators:
        instruments[g].enable()
    rng = np.random.default_rng(1)
    times, stages = [], {"set d powers + *OPC?": [], "sweep + binary trace": []}
    for _ in range(queries):
        t0 = time.perf_counter()
        for g in generators:
            instruments[g].power = float(-30 + 30 * rng.random())
        for g in generators:
            instruments[g].write("*OPC?")
        for g in generators:
            instruments[g].read()
        t1 = time.perf_counter()
        trace = analyzer.sweep_and_read()
        t2 = time.perf_counter()
        assert trace.shape == (401,)
        times.append(t2 - t0)
        for key, dt in zip(stages, (t1 - t0, t2 - t1)):
            stages[key].append(dt)
    for g in generators:
        instruments[g].disable()
    return 1e3 * np.median(times), {k: 1e3 * np.median(v) for k, v in stages.items()}


def bench_query_ms(config, queries):
    """Median wall time of Bench.query: each generator's whole state in one *OPC?-confirmed message
    (the path training takes), then the sweep and binary trace."""
    from labpgt.bench import Bench

    rng = np.random.default_rng(2)
    with Bench(config) as bench:
        times = []
        for _ in range(queries):
            settings = bench.settings_for(rng.random(bench.input_width))
            t0 = time.perf_counter()
            bench.query(settings)
            times.append(time.perf_counter() - t0)
    return 1e3 * np.median(times)


def serve_sim():
    proc = subprocess.Popen([sys.executable, "-m", "labpgt", "sim", "--port", "0"], stdout=subprocess.PIPE, text=True)
    resources = dict(proc.stdout.readline().split() for _ in range(6))
    return proc, resources


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()

    rate = model_throughput(args.batch, args.repeats)
    print("ring model, batch-vectorised, 401 points, 1 thread")
    print(f"  {'batch':>8} {'spectra/s':>12}")
    print(f"  {args.batch:>8} {rate:>12,.0f}")
    print()

    generators = [f"gen{i}" for i in range(1, 5)]
    embedded = connect_instruments(simulated_bench_config(embedded=True))
    local_ms, local_stages = per_query_ms(embedded, generators, args.queries)

    proc, resources = serve_sim()
    try:
        config = simulated_bench_config(embedded=False).with_resources(resources)
        remote = connect_instruments(config)
        tcp_ms, tcp_stages = per_query_ms(remote, generators, args.queries)
        for driver in remote.values():
            driver.adapter.close()
        tcp_bench_ms = bench_query_ms(config, args.queries)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)

    print(f"one query (d = {len(generators)} generator powers, sweep, binary trace), median of {args.queries}")
    print(f"  {'stage':<26} {'in-process ms':>14} {'TCP ms':>10}")
    for key in local_stages:
        print(f"  {key:<26} {local_stages[key]:>14.3f} {tcp_stages[key]:>10.3f}")
    print(f"  {'total':<26} {local_ms:>14.3f} {tcp_ms:>10.3f}")
    local_bench_ms = bench_query_ms(simulated_bench_config(embedded=True), args.queries)
    print(f"  {'Bench.query, d = 8 (*)':<26} {local_bench_ms:>14.3f} {tcp_bench_ms:>10.3f}")
    print(f"  goal over TCP for the d = 4 query: < 2 ms  -> {'met' if tcp_ms < 2.0 else 'NOT met'}")
    print("  (*) the path training takes: 4 powers and 4 frequencies, each generator's whole state in one")
    print("      *OPC?-confirmed message, then sweep and trace in one message")


if __name__ == "__main__":
    main()
