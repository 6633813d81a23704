"""Which compression filter for the session's query rows: bytes per query, write speed and who can read the file.

    python benchmarks/session_compression.py DEFAULT.h5 [--filters gzip4,blosc2-zstd3,...] [--steps N]

DEFAULT.h5 is a session of the default run (``labpgt train --out DEFAULT.h5``). For each candidate
filter the whole session is written again through :class:`labpgt.session.SessionWriter`, step by step
as the trainer wrote it (each step's query rows, its step row and its checkpoint, each flushed under
SWMR; the writer compacts the file when it closes), with the candidate as the query rows' filter.
Printed per filter: the file's bytes per query and the spectra's, query rows written per second of time
spent inside the writer (its calls and its close), that time as a share of the run's measuring time (the
queries' recorded wall-clock durations), and whether Debian's ``h5dump`` (HDF5 1.10) reads every query
dataset as it stands, or only with ``HDF5_PLUGIN_PATH`` set to hdf5plugin's filters, or not at all.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import hdf5plugin
import numpy as np

from labpgt.recording import QueryLabels
from labpgt.reservoir import Measurement
from labpgt.session import SessionReader, SessionWriter, hdf5


def _gzip(level: int, shuffle: bool = True) -> dict:
    return {"compression": "gzip", "compression_opts": level, "shuffle": shuffle}


def _plugin(filter_, shuffle: bool = True) -> dict:
    return {**filter_, "shuffle": shuffle}


CANDIDATES = {  # name: the h5py create_dataset keywords of the query rows
    "none": {},
    "gzip1": _gzip(1),
    "gzip4": _gzip(4),
    "gzip6": _gzip(6),
    "gzip9": _gzip(9),
    "gzip4-noshuffle": _gzip(4, shuffle=False),
    "lzf": {"compression": "lzf", "shuffle": True},
    "blosc2-zstd3": dict(hdf5plugin.Blosc2(cname="zstd", clevel=3, filters=hdf5plugin.Blosc2.SHUFFLE)),
    "blosc2-lz4-5": dict(hdf5plugin.Blosc2(cname="lz4", clevel=5, filters=hdf5plugin.Blosc2.SHUFFLE)),
    "zstd3": _plugin(hdf5plugin.Zstd(clevel=3)),
    "lz4": _plugin(hdf5plugin.LZ4()),
}
QUERY_DATASETS = ("queries/spectrum", "queries/features", "queries/u", "queries/settings", "queries/step")


def rewrite(source: SessionReader, target: Path, steps: int | None) -> tuple[float, int]:
    """Write ``source``'s first ``steps`` steps again at ``target``; ``(seconds inside the writer, query rows)``."""
    n_steps = source.n_checkpoints if steps is None else min(steps, source.n_checkpoints)
    steps_recorded = source.steps()
    ends = steps_recorded["queries"][:n_steps]
    inside, start = 0.0, 0
    t0 = time.perf_counter()
    writer = SessionWriter.create(
        target,
        source.config,
        source.checkpoint(0),
        frequencies=source.frequencies,
        instruments=source.instruments,
        prior=source.prior(),
    )
    inside += time.perf_counter() - t0
    for row in range(n_steps):
        blocks = _measurements(source.queries(start, int(ends[row]), FIELDS), source)
        step_values = {
            **{name: column[row] for name, column in steps_recorded.items() if name != "step"},
            **source.step_extra(row),
        }
        perturbation = source.perturbation(row)
        if perturbation is not None:
            step_values["perturbation"] = perturbation
        checkpoint = source.checkpoint(row)
        t0 = time.perf_counter()
        for labels, U, measurement in blocks:
            writer.record_queries(labels, U, measurement)
        writer.record_step(row, step_values)
        writer.checkpoint(checkpoint)
        inside += time.perf_counter() - t0
        start = int(ends[row])
    t0 = time.perf_counter()
    writer.close()
    return inside + time.perf_counter() - t0, start


FIELDS = (
    "step",
    "role",
    "direction",
    "sample",
    "layer",
    "token",
    "u",
    "settings",
    "spectrum",
    "features",
    "timestamp",
    "attempts",
    "wall_seconds",
    "sim_time",
    "temperature_c",
)


def _measurements(q: dict, source: SessionReader):
    """The rows of one step as ``(labels, U, measurement)`` blocks of one step value each."""
    blocks = []
    for value in np.unique(q["step"]):
        rows = q["step"] == value
        roles = np.array([source.role_name(code) for code in q["role"][rows]])
        labels = QueryLabels(
            int(value), roles, q["direction"][rows], q["sample"][rows], q["layer"][rows], q["token"][rows]
        )
        m = Measurement(
            features=q["features"][rows],
            spectra=q["spectrum"][rows],
            settings=q["settings"][rows],
            started=q["timestamp"][rows],
            attempts=q["attempts"][rows],
            wall_seconds=q["wall_seconds"][rows],
            sim_time=q["sim_time"][rows],
            temperature_c=q["temperature_c"][rows],
        )
        blocks.append((labels, q["u"][rows], m))
    return blocks


def h5dump_reads(path: Path) -> str:
    """Whether h5dump reads every query dataset whole: "yes", "plugin" (with HDF5_PLUGIN_PATH), "no" (or "-": no
    h5dump). A subset (``-c``) of a dataset it cannot decode comes out empty without an error, so each dataset
    is dumped whole as binary and its size checked."""
    if shutil.which("h5dump") is None:
        return "-"
    with SessionReader(path) as session:
        sizes = {name: session.dataset(name).nbytes for name in QUERY_DATASETS}
    out = path.with_suffix(".bin")

    def reads(env) -> bool:
        for name, size in sizes.items():
            out.unlink(missing_ok=True)
            done = subprocess.run(
                ["h5dump", "-d", f"/{name}", "-b", "LE", "-o", str(out), str(path)],
                capture_output=True,
                text=True,
                env=env,
            )
            if (
                done.returncode
                or "error" in done.stderr + done.stdout
                or not out.exists()
                or out.stat().st_size != size
            ):
                return False
        return True

    try:
        if reads(os.environ):
            return "yes"
        return "plugin" if reads({**os.environ, "HDF5_PLUGIN_PATH": hdf5plugin.PLUGIN_PATH}) else "no"
    finally:
        out.unlink(missing_ok=True)


def measuring_seconds(source: SessionReader, rows: int) -> float:
    wall = source.queries(0, rows, ("wall_seconds",))["wall_seconds"]
    return float(np.nansum(wall))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("session", type=Path, help="a session of the default run")
    parser.add_argument(
        "--filters", default=",".join(CANDIDATES), help="comma-separated names of " + ", ".join(CANDIDATES)
    )
    parser.add_argument("--steps", type=int, help="only the first N steps (default: all)")
    args = parser.parse_args()
    shipped = hdf5.ROW_FILTER
    print(f"{args.session}: its queries written again with each filter (shipped: {hdf5.ROW_FILTER_NAME})")
    print(f"{'filter':<17}{'B/query':>9}{'spectra B/q':>13}{'rows/s':>10}{'writer/measuring':>18}  h5dump 1.10")
    with SessionReader(args.session) as source, tempfile.TemporaryDirectory() as tmp:
        for name in args.filters.split(","):
            target = Path(tmp) / f"{name}.h5"
            hdf5.ROW_FILTER = CANDIDATES[name]
            try:
                seconds, rows = rewrite(source, target, args.steps)
            finally:
                hdf5.ROW_FILTER = shipped
            with SessionReader(target) as written:
                spectra = written.dataset("queries/spectrum").id.get_storage_size()
            measuring = measuring_seconds(source, rows)
            share = f"{100 * seconds / measuring:.1f} %" if measuring > 0 else "-"
            print(
                f"{name:<17}{target.stat().st_size / rows:>9,.0f}{spectra / rows:>13,.0f}{rows / seconds:>10,.0f}"
                f"{share:>18}  {h5dump_reads(target)}",
                flush=True,
            )
            target.unlink()


if __name__ == "__main__":
    main()
