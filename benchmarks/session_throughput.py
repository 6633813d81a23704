"""Session-file throughput: query rows written per second, bytes per query, and the recorder's cost in training.

    python benchmarks/session_throughput.py [--rows 100000] [--steps 8]
    python benchmarks/session_throughput.py --default-run DEFAULT.h5

The second form runs the default training (``labpgt train``: digits, node, the embedded ring) into
DEFAULT.h5 and prints the time spent inside the recorder and in the writer's closing compaction
against the run's measuring time, and the file's bytes per query.

Rows are real 401-point traces of the embedded simulated ring (cycled; float32 on the bench's 2^-7 dB grid),
32 features, d = 8,
written the way the trainer does: record_queries in batches of 32, ten per step, then record_step
and checkpoint (each flushing). Targets: >= 20,000 query rows/s; logging adds <= 10 % to training.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from labpgt import session
from labpgt.bench import embedded_bench
from labpgt.recording import Checkpoint, QueryLabels
from labpgt.reservoir import Measurement
from labpgt.session import hdf5

BATCH, BATCHES_PER_STEP = 32, 10


def real_traces(count: int = 2048):
    bench = embedded_bench(seed=0)
    try:
        m = bench.measure(np.random.default_rng(0).random((count, bench.input_width)))
    finally:
        bench.close()
    return m, bench.setting_names


def write_rows(path: Path, rows: int, traces: Measurement, setting_names, plain: bool) -> float:
    """Write ``rows`` query rows; ``plain``: every row dataset uncompressed (the layout before hdf5plugin)."""
    shipped = hdf5.row_dataset

    def row_dataset(*args, **kwargs):
        return shipped(*args, **{**kwargs, "compress": False})

    hdf5.row_dataset = row_dataset if plain else shipped
    try:
        return _write_rows(path, rows, traces, setting_names)
    finally:
        hdf5.row_dataset = shipped


def _write_rows(path: Path, rows: int, traces: Measurement, setting_names) -> float:
    params = {"enc_W": np.zeros((64, 8)), "enc_b": np.zeros(8), "out_W": np.zeros((32, 10)), "out_b": np.zeros(10)}
    config = {
        "train": {"task": "digits", "method": "node", "steps": rows},
        "bench": None,
        "reservoir": {"input_width": 8, "feature_width": 32, "setting_names": list(setting_names)},
    }
    rng = np.random.default_rng(1)
    n_traces = len(traces)
    t0 = time.perf_counter()
    writer = session.SessionWriter.create(
        path, config, params_template=params, optimizer_template={}, frequencies=traces.frequencies
    )
    written, step = 0, 0
    while written < rows:
        for _ in range(BATCHES_PER_STEP):
            at = written % n_traces
            idx = np.arange(at, at + BATCH) % n_traces
            m = Measurement(
                features=traces.features[idx],
                spectra=traces.spectra[idx],
                settings=traces.settings[idx],
                started=np.full(BATCH, time.time()),
                attempts=np.ones(BATCH, dtype=np.int32),
            )
            writer.record_queries(
                QueryLabels.of(step, "plus", BATCH, direction=0, sample=idx), rng.random((BATCH, 8)), m
            )
            written += BATCH
        writer.record_step(
            step, {"loss": 1.0, "grad_norm": 1.0, "lr": 0.01, "perturbation": np.ones((4, 32, 8), dtype=np.int8)}
        )
        writer.checkpoint(Checkpoint(step, params, {}, {"batches": {"state": 12345}}, {"history": []}))
        step += 1
    writer.close()
    return written / (time.perf_counter() - t0), written


class TimedRecorder:
    """Forwards the recorder hook to a SessionWriter and adds up the time spent inside it."""

    def __init__(self, writer):
        self.writer, self.seconds = writer, 0.0

    def _timed(self, name, *args):
        t0 = time.perf_counter()
        getattr(self.writer, name)(*args)
        self.seconds += time.perf_counter() - t0

    def record_queries(self, *args):
        self._timed("record_queries", *args)

    def record_step(self, *args):
        self._timed("record_step", *args)

    def checkpoint(self, *args):
        self._timed("checkpoint", *args)

    def close(self):
        self._timed("close")


def training_overhead(steps: int, repeats: int = 2):
    """Wall time of an embedded-sim training run with and without the recorder, and the time spent
    inside the recorder itself (the direct measure: immune to the other core's load)."""
    from labpgt import runs
    from labpgt.runs import start_training
    from labpgt.trainer import TrainConfig

    config = TrainConfig.of(
        task="digits", method="node", reservoir="ring-sim", steps=steps, eval_every=steps, eval_train_samples=100
    ).resolved()
    plain, recorded, inside = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            t0 = time.perf_counter()
            start_training(config)
            plain.append(time.perf_counter() - t0)
            timed = []
            new_session = runs.new_training_session

            def timed_session(*args, timed=timed, new_session=new_session, **kwargs):
                timed.append(TimedRecorder(new_session(*args, **kwargs)))
                return timed[-1]

            runs.new_training_session = timed_session  # the engine's writer, timed
            try:
                t0 = time.perf_counter()
                start_training(config, Path(tmp) / "run.h5")
                recorded.append(time.perf_counter() - t0)
            finally:
                runs.new_training_session = new_session
            inside.append(timed[0].seconds)
            size = (Path(tmp) / "run.h5").stat().st_size
            (Path(tmp) / "run.h5").unlink()
    return min(plain), min(recorded), min(inside), size


def default_run(path: Path) -> None:
    """The default training recorded at ``path``: the recorder's time against the measuring time."""
    from labpgt.runs import start_training
    from labpgt.trainer import TrainConfig

    timed, compacting = [], []
    shipped_compact = hdf5.compact

    def timed_compact(*args, **kwargs):
        t0 = time.perf_counter()
        shipped_compact(*args, **kwargs)
        compacting.append(time.perf_counter() - t0)

    hdf5.compact = timed_compact
    try:
        t0 = time.perf_counter()
        result = start_training(
            TrainConfig(reservoir="ring-sim"),
            path,  # what `labpgt train` runs
            wrap_recorder=lambda writer: timed.append(TimedRecorder(writer)) or timed[-1],
        )
        wall = time.perf_counter() - t0
    finally:
        hdf5.compact = shipped_compact
    queries = result.training_queries + result.eval_queries + result.test_queries
    writer = timed[0].seconds + sum(compacting)
    print(
        f"default run ({result.config['task']}, {result.config['method']}, {result.config['reservoir']}): "
        f"{queries:,} queries, wall {wall:.1f} s, measuring {result.measure_seconds:.1f} s"
    )
    print(
        f"  inside the recorder {timed[0].seconds:.2f} s + compaction at close {sum(compacting):.2f} s = "
        f"{writer:.2f} s = {100 * writer / result.measure_seconds:.1f} % of the measuring time"
    )
    print(
        f"  file {path.stat().st_size / 1e6:.2f} MB = {path.stat().st_size / queries:,.0f} bytes per query "
        f"(rows compressed with {hdf5.ROW_FILTER_NAME})"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument(
        "--default-run",
        type=Path,
        metavar="DEFAULT.h5",
        help="run the default training into this new file and report its recorder's cost",
    )
    args = parser.parse_args()
    if args.default_run is not None:
        default_run(args.default_run)
        return
    traces, names = real_traces()
    print(f"the query row datasets as shipped ({hdf5.ROW_FILTER_NAME}, 128-row chunks) and plain:")
    print(f"{'layout':<12}{'rows/s':>12}{'bytes/query':>14}{'raw bytes/query':>17}")
    raw = 401 * 4 + 32 * 8 + 8 * 8 + 8 * 8 + 8 + 1 + 4 + 4 + 2 + 4 + 8 + 4
    with tempfile.TemporaryDirectory() as tmp:
        for label, plain in (("shipped", False), ("plain", True)):
            path = Path(tmp) / f"bench-{label}.h5"
            rate, written = write_rows(path, args.rows, traces, names, plain)
            print(f"{label:<12}{rate:>12,.0f}{os.path.getsize(path) / written:>14,.0f}{raw:>17,}")
    plain, recorded, inside, size = training_overhead(args.steps)
    print(f"\nembedded-sim training (digits, node, {args.steps} steps), best of 2:")
    print(
        f"  without recorder {plain:8.2f} s\n  with recorder    {recorded:8.2f} s   "
        f"(wall-clock difference {100 * (recorded / plain - 1):+.1f} %, noisy on a shared machine)"
    )
    print(
        f"  inside the recorder {inside:5.2f} s = {100 * inside / recorded:.1f} % of the recorded run's "
        f"wall time   file {size / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
