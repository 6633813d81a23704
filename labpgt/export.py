"""Exporting a session to files any tool reads: :func:`export_session` (``labpgt export``), by the target's name.

* ``FILE.nc`` — netCDF-4 (xarray, MATLAB's ``ncread``, Origin, Panoply): the queries in the root
  group, ``spectrum(query, frequency)`` in dBm with ``frequency`` in Hz and every column with its
  units (:func:`labpgt.tables.queries_dataset`), the steps (a sweep: the points) in the group
  ``steps`` (``points``), the session's root attributes as global attributes;
* ``FILE.mat`` — MATLAB (``scipy.io.savemat``, format 5, compressed): the same arrays under the same
  names, the steps (points) as a struct, the units as a struct;
* anything else, a directory: one CSV of the kind's rows (steps.csv for a training, points.csv for
  a sweep), queries.csv with each measurement's labels and settings, the measured arrays as
  ``.npy``, the config as JSON and a README.txt saying what each file holds.

The session is opened read-only and never modified; a file target that exists is refused, and one
is written beside itself and renamed into place only when whole.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from labpgt.errors import UserError
from labpgt.session import SessionReader
from labpgt.session.schema import POINT_FLOAT_COLUMNS, POINT_INT_COLUMNS, STEP_FLOAT_COLUMNS, STEP_INT_COLUMNS

FILE_FORMATS = (".nc", ".mat")
NETCDF_COMPRESSION = {"zlib": True, "complevel": 4, "shuffle": True}

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


def export_session(path, target) -> list[Path]:
    """Export the session at ``path`` to ``target``: a ``.nc`` or ``.mat`` file, else a directory (see the
    module's docstring); returns the paths written."""
    target = Path(target)
    if target.suffix.lower() in FILE_FORMATS:
        return [export_file(path, target)]
    if target.exists() and not target.is_dir():
        raise UserError(f"--to {target} exists and is not a directory")
    return export_directory(path, target)


def export_file(path, target) -> Path:
    """Write the session at ``path`` as netCDF-4 (``target`` ends in .nc) or MATLAB (.mat); never overwrites."""
    target = Path(target)
    write = {".nc": _write_netcdf, ".mat": _write_mat}.get(target.suffix.lower())
    if write is None:
        raise UserError(f"{target.name}: export writes .nc (netCDF-4) or .mat (MATLAB) files, or a directory")
    if target.exists():
        raise UserError(f"{target} exists; choose another name (an export never overwrites)")
    from labpgt.tables import queries_dataset, rows_dataset

    with SessionReader(path) as session:  # a file that is no session is refused before anything is made
        queries, rows = queries_dataset(session), rows_dataset(session)
        group = "points" if session.kind == "sweep" else "steps"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    try:
        write(queries, rows, group, partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _write_netcdf(queries, rows, group: str, target: Path) -> None:
    encoding = {
        name: dict(NETCDF_COMPRESSION)
        for name, variable in queries.data_vars.items()
        if variable.ndim == 2 and 0 not in variable.shape
    }
    queries.to_netcdf(target, engine="netcdf4", format="NETCDF4", encoding=encoding)
    rows.to_netcdf(target, mode="a", group=group, engine="netcdf4", format="NETCDF4")


def _write_mat(queries, rows, group: str, target: Path) -> None:
    from scipy.io import savemat

    arrays = {name: variable.values for name, variable in {**queries.coords, **queries.data_vars}.items()}
    arrays[group] = {name: variable.values for name, variable in {**rows.coords, **rows.data_vars}.items()}
    arrays["units"] = {
        name: variable.attrs["units"]
        for name, variable in {**queries.coords, **queries.data_vars, **rows.data_vars}.items()
        if "units" in variable.attrs
    }
    arrays.update(queries.attrs)
    savemat(target, arrays, appendmat=False, do_compression=True, long_field_names=True, oned_as="column")


def export_directory(path, out_dir) -> list[Path]:
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
        (out / "README.txt").write_text(
            EXPORT_README.format(
                source=Path(path).name,
                schema=session.schema,
                kind=session.kind,
                rows=ROWS_README[session.kind].format(columns=", ".join(columns)),
            )
        )
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
        writer.writerow(
            [
                "index",
                "step",
                "role",
                "direction",
                "sample",
                "timestamp",
                "attempts",
                *session.setting_names,
                "layer",
                "token",
            ]
        )
        for start, q in session.iter_queries(fields):
            roles = [session.role_name(code) for code in q["role"]]
            for i in range(len(q["step"])):
                writer.writerow(
                    [
                        start + i,
                        int(q["step"][i]),
                        roles[i],
                        int(q["direction"][i]),
                        int(q["sample"][i]),
                        repr(float(q["timestamp"][i])),
                        int(q["attempts"][i]),
                        *(repr(float(v)) for v in q["settings"][i]),
                        int(q["layer"][i]),
                        int(q["token"][i]),
                    ]
                )
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
