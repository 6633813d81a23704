"""Exporting a session to files any tool reads: :func:`export_session` (``labpgt export``).

One CSV of the kind's rows (steps.csv for a training, points.csv for a sweep), queries.csv with
each measurement's labels and settings, the measured arrays as ``.npy``, the config as JSON and a
README.txt saying what each file holds. The session is opened read-only and never modified.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from labpgt.session import SessionReader
from labpgt.session.schema import POINT_FLOAT_COLUMNS, POINT_INT_COLUMNS, STEP_FLOAT_COLUMNS, STEP_INT_COLUMNS

BLOCK_ROWS = 1 << 14

ROWS_README = {
    "training": "steps.csv        one row per optimizer step: {columns};\n"
                "                 NaN where the trainer reported nothing (accuracies between evaluations).",
    "sweep": "points.csv       one row per swept point: {columns};\n"
             "                 margin_db: the strongest line (injected tones excluded) above the trace's median.",
}
EXPORT_README = """\
Exported from the labpgt session {source} (schema {schema}, kind {kind}).

{rows}
queries.csv      one row per reservoir measurement: index, step (in a sweep: the point), role,
                 direction (-1: none), sample (training-split index; n_train + i for test sample i),
                 timestamp (Unix s), attempts, then the instrument settings sent, one column per
                 setting, then layer (the physical layer that measured it; -1: none) and token
                 (the token position in a sequence; -1: none).
u.npy            float64 (n, d): the reservoir inputs, row i = query i.
features.npy     float64 (n, m): the features the model saw.
spectra.npy      float32 (n, P): the traces in dBm (P = 0 without instruments).
frequencies.npy  float64 (P,): the frequency axis of every spectrum, in Hz.
config.json      the configuration of the run (training or sweep, and the bench).
"""


def export_session(path, out_dir) -> list[Path]:
    """Write steps.csv (a training) or points.csv (a sweep), queries.csv, u/features/spectra/frequencies .npy,
    config.json and README.txt into ``out_dir`` (created if needed); returns the paths written."""
    out = Path(out_dir)
    with SessionReader(path) as session:  # a file that is no session is refused before anything is made
        out.mkdir(parents=True, exist_ok=True)
        rows, columns = _export_points(session, out) if session.kind == "sweep" else _export_steps(session, out)
        written = [rows, _export_queries(session, out / "queries.csv")]
        n = session.n_queries
        for name, column in (("u.npy", "u"), ("features.npy", "features"), ("spectra.npy", "spectrum")):
            written.append(_export_array(session, column, n, out / name))
        np.save(out / "frequencies.npy", session.frequencies)
        (out / "config.json").write_text(json.dumps(session.config, indent=2, sort_keys=True) + "\n")
        (out / "README.txt").write_text(EXPORT_README.format(
            source=Path(path).name, schema=session.schema, kind=session.kind,
            rows=ROWS_README[session.kind].format(columns=", ".join(columns))))
    return written + [out / "frequencies.npy", out / "config.json", out / "README.txt"]


def _export_steps(session, out: Path) -> tuple[Path, tuple]:
    names = STEP_INT_COLUMNS + STEP_FLOAT_COLUMNS
    return _write_table(out / "steps.csv", names, session.steps(), session.n_steps), names


def _export_points(session, out: Path) -> tuple[Path, tuple]:
    names = ("point",) + POINT_FLOAT_COLUMNS + POINT_INT_COLUMNS
    points = session.points()
    points["point"] = np.arange(session.n_points)
    return _write_table(out / "points.csv", names, points, session.n_points), names


def _write_table(target: Path, names, columns: dict, rows: int) -> Path:
    """A CSV of ``columns`` in the order of ``names``: integers as such, floats exactly (``repr``)."""
    with open(target, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for row in range(rows):
            writer.writerow([_cell(columns[name][row]) for name in names])
    return target


def _cell(value) -> str:
    return repr(value.item()) if isinstance(value, np.floating) else str(int(value))


def _export_queries(session, target: Path) -> Path:
    fields = ("step", "role", "direction", "sample", "timestamp", "attempts", "settings", "layer", "token")
    with open(target, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "step", "role", "direction", "sample", "timestamp", "attempts",
                         *session.setting_names, "layer", "token"])
        for start, q in session.iter_queries(fields):
            roles = [session.role_name(code) for code in q["role"]]
            for i in range(len(q["step"])):
                writer.writerow([start + i, int(q["step"][i]), roles[i], int(q["direction"][i]), int(q["sample"][i]),
                                 repr(float(q["timestamp"][i])), int(q["attempts"][i]),
                                 *(repr(float(v)) for v in q["settings"][i]), int(q["layer"][i]), int(q["token"][i])])
    return target


def _export_array(session, column: str, n: int, target: Path) -> Path:
    dataset = session.dataset(f"queries/{column}")
    if n == 0 or 0 in dataset.shape[1:]:
        np.save(target, np.zeros((n,) + dataset.shape[1:], dtype=dataset.dtype))
        return target
    array = np.lib.format.open_memmap(target, mode="w+", dtype=dataset.dtype, shape=(n,) + dataset.shape[1:])
    for start in range(0, n, BLOCK_ROWS):
        stop = min(n, start + BLOCK_ROWS)
        array[start:stop] = dataset[start:stop]
    array.flush()
    del array
    return target
