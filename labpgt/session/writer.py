"""Writing session files: :class:`SessionWriter` records a training, :class:`SweepWriter` a characterisation sweep,
and :meth:`SessionWriter.open_for_resume` rewrites an interrupted training to continue it.

Both writers are recorders in the sense of :mod:`labpgt.recording`: ``record_queries(labels, U,
measurement)`` buffers a measurement's rows; a training's ``record_step`` and ``checkpoint``, a
sweep's ``record_point``, append them with their own row and flush. The layout is that of
:mod:`labpgt.session.schema`. Every dataset is created before the file switches to SWMR mode (which
allows no new ones), so the template checkpoint given at creation fixes the checkpoint arrays.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import platform
import time
from pathlib import Path

import h5py
import numpy as np

from labpgt.errors import UserError
from labpgt.recording import Checkpoint
from labpgt.session import hdf5
from labpgt.session.liveness import WriterLock
from labpgt.session.nexus import describe
from labpgt.session.reader import SessionReader
from labpgt.session.schema import (
    ARRAYS_DIGEST,
    CHECKPOINT_ARRAYS,
    CHECKPOINT_ARRAYS_SINCE_V2,
    CHECKPOINT_RAGGED,
    KIND_GROUPS,
    NUMERIC_KINDS,
    PAUSE_GROUPS,
    PERTURBATION_DIMS,
    POINT_FLOAT_COLUMNS,
    POINT_INT_COLUMNS,
    QUERIES_DIGEST,
    QUERY_COLUMNS,
    QUERY_TIME_COLUMNS,
    ROLE_CODES,
    ROLES,
    SCHEMA,
    SCHEMA_V1,
    STEP_FLOAT_COLUMNS,
    STEP_FLOAT_COLUMNS_SINCE_V2,
    STEP_INT_COLUMNS,
    STEP_RAGGED,
    array_name,
    dataset_name,
    query_columns,
    rows_digest,
)
from labpgt.session.storage import Storage, StorageFault, _free_bytes

QUERY_CHUNK_ROWS = 256
STEP_CHUNK_ROWS = 64
CHECKPOINT_CHUNK_ROWS = 16
COMPACT_ABOVE = 0.02  # dead fraction of a file worth a rewrite at close
STEP_ROW_BYTES = 1 << 16  # a step's or a point's own row, its JSON and perturbation (small; checked with the rows)


# --------------------------------------------------------------------------- the root config
def session_config(train: dict, reservoir, model: dict | None = None, engine: str | None = None) -> dict:
    """The root ``config`` of a training: its settings (``train``, flat, as the trainer's config gives them),
    its reservoir, the network it built (``model``: the architecture's specification), the ``engine`` that ran
    it, and — for a reservoir that models another (a twin) — the ``layout`` of what it models."""
    train = dict(train)
    bench = getattr(reservoir, "config", None)
    config = {
        "train": train,
        "bench": bench.to_dict() if bench is not None and hasattr(bench, "to_dict") else None,
        "reservoir": {
            "input_width": int(reservoir.input_width),
            "feature_width": int(reservoir.feature_width),
            "setting_names": list(getattr(reservoir, "setting_names", ())),
        },
    }
    if model is not None:
        config["model"] = dict(model)
    if engine is not None:
        config["engine"] = engine
    layout = getattr(reservoir, "layout", None)  # a twin says what the reservoir it models measured
    if isinstance(layout, dict):
        config["layout"] = dict(layout)
    return config


def sweep_session_config(sweep: dict, bench: dict, bins: int) -> dict:
    """The root ``config`` of a sweep: what was swept (``instrument``, ``setting``, …) on the bench of config
    ``bench`` (a dict) whose features are ``bins`` wide.

    Each point is one query of one input (the position along the sweep) giving the bench's features.
    """
    return {
        "sweep": dict(sweep),
        "bench": dict(bench),
        "reservoir": {
            "input_width": 1,
            "feature_width": int(bins),
            "setting_names": [f"{sweep['instrument']}.{sweep['setting']}"],
        },
    }


def versions() -> dict:
    """Versions of what wrote the file, and the numerical fingerprint replay compares (``numerics``)."""
    import labpgt
    from labpgt.numerics import fingerprint

    return {
        "labpgt": labpgt.__version__,
        "numpy": np.__version__,
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
        "python": platform.python_version(),
        "numerics": fingerprint(),
    }


# --------------------------------------------------------------------------- creating a file
def _new_file(
    path, kind: str, config: dict, frequencies, instruments, lay_out_kind, resolution_db: float | None = None
) -> h5py.File:
    """A new file at ``path`` (overwritten) with the root, the queries and ``lay_out_kind(file)``, described
    (:mod:`labpgt.session.nexus`), in SWMR mode; ``resolution_db``: the grid the spectra are on, when they are
    quantised.

    The file is laid out beside ``path`` and moved there closed, then reopened in SWMR mode
    (:func:`hdf5.open_swmr_write`): a process killed at any moment leaves at ``path`` the file that was there, or
    one that readers open."""
    frequencies = np.zeros(0) if frequencies is None else np.asarray(frequencies, dtype=np.float64)
    path = Path(path)
    tmp = path.with_name(path.name + ".new-tmp")
    f = hdf5.open_for_writing(tmp, "w")
    try:
        f.attrs["schema"] = SCHEMA
        f.attrs["kind"] = kind
        f.attrs["config"] = hdf5.dumps(config)
        f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        f.attrs["versions"] = hdf5.dumps(versions())
        f.attrs["instruments"] = hdf5.dumps(instruments or {})
        f.create_dataset("frequencies", data=frequencies)
        _lay_out_queries(f, config["reservoir"], frequencies.size, compress=kind != "sweep")
        if resolution_db is not None:
            f["queries/spectrum"].attrs["resolution_db"] = float(resolution_db)
        lay_out_kind(f)
        describe(f)
    except BaseException:
        f.close()
        tmp.unlink(missing_ok=True)
        raise
    f.close()
    os.replace(tmp, path)
    return hdf5.open_swmr_write(path)


def _lay_out_queries(f, reservoir: dict, points: int, compress: bool) -> None:
    """The query columns, compressed (schema.py, Storage) unless ``compress`` is False (a sweep: one row a
    point, each of which would rewrite a compressed chunk and, under SWMR, leave its old copy behind)."""
    setting_names = list(reservoir.get("setting_names", ()))
    widths = {
        "u": (int(reservoir["input_width"]),),
        "settings": (len(setting_names),),
        "spectrum": (points,),
        "features": (int(reservoir["feature_width"]),),
    }
    q = f.create_group("queries")
    for name, (dtype, wide) in QUERY_COLUMNS.items():
        hdf5.row_dataset(q, name, dtype, widths[name] if wide else (), chunk_rows=QUERY_CHUNK_ROWS, compress=compress)
    for name in QUERY_TIME_COLUMNS:
        hdf5.row_dataset(q, name, "float64", chunk_rows=QUERY_CHUNK_ROWS, compress=compress)
    q["role"].attrs["names"] = json.dumps(list(ROLES))
    q["settings"].attrs["names"] = json.dumps(setting_names)


def _lay_out_training(f, checkpoint_layout: dict) -> None:
    s = f.create_group("steps")
    for name in STEP_INT_COLUMNS:
        hdf5.row_dataset(s, name, "int64", chunk_rows=STEP_CHUNK_ROWS)
    for name in STEP_FLOAT_COLUMNS:
        hdf5.row_dataset(s, name, "float64", chunk_rows=STEP_CHUNK_ROWS)
    hdf5.row_dataset(s, "perturbation_shape", "int32", (PERTURBATION_DIMS,), chunk_rows=STEP_CHUNK_ROWS)
    for name, dtype in STEP_RAGGED.items():
        hdf5.ragged_dataset(s, name, dtype, STEP_CHUNK_ROWS)
    c = f.create_group("checkpoints")
    hdf5.row_dataset(c, "step", "int64", chunk_rows=STEP_CHUNK_ROWS)
    for group_name, arrays in checkpoint_layout.items():
        group = c.create_group(group_name)
        for name, (dtype, shape) in arrays.items():
            hdf5.row_dataset(group, name, dtype, shape, chunk_rows=CHECKPOINT_CHUNK_ROWS)
    for name in CHECKPOINT_RAGGED:
        hdf5.ragged_dataset(c, name, "uint8", STEP_CHUNK_ROWS)
    _lay_out_pauses(f)


def _lay_out_pauses(f) -> None:
    """The record of a run's pauses (:data:`~labpgt.session.schema.PAUSE_GROUPS`): each suspension, and each check
    query a suspender measured (its spectrum too)."""
    for group_name in PAUSE_GROUPS:
        if group_name in f:
            continue
        group = f.create_group(group_name)
        hdf5.ragged_dataset(group, "record", "uint8", STEP_CHUNK_ROWS)
    if "spectrum" not in f["checks"]:
        hdf5.row_dataset(f["checks"], "spectrum", "float32", (f["frequencies"].shape[0],), chunk_rows=STEP_CHUNK_ROWS)


def _lay_out_prior(f, U, features, sources) -> None:
    prior = f.create_group("prior")
    prior.create_dataset("u", data=np.asarray(U, dtype=np.float64), **hdf5.ROW_FILTER)
    prior.create_dataset("features", data=np.asarray(features, dtype=np.float64), **hdf5.ROW_FILTER)
    prior.attrs["sources"] = hdf5.dumps(sources)


def _lay_out_points(f) -> None:
    p = f.create_group("points")
    for name in POINT_INT_COLUMNS:
        hdf5.row_dataset(p, name, "int64", chunk_rows=STEP_CHUNK_ROWS)
    for name in POINT_FLOAT_COLUMNS:
        hdf5.row_dataset(p, name, "float64", chunk_rows=STEP_CHUNK_ROWS)


def _checkpoint_arrays(checkpoint: Checkpoint) -> dict:
    return {"params": checkpoint.params, "optimizer": checkpoint.optimizer_state, "method": checkpoint.method_state}


def _checkpoint_layout(template: Checkpoint) -> dict:
    """``{group: {dataset name: (dtype, shape)}}`` of the template's arrays; refuses what a session cannot hold."""
    layout: dict[str, dict] = {}
    for group_name, arrays in _checkpoint_arrays(template).items():
        layout[group_name] = {}
        for name, array in arrays.items():
            array = np.asarray(array)
            dtype = CHECKPOINT_ARRAYS[group_name] or _numeric_dtype(group_name, name, array)
            layout[group_name][dataset_name(name)] = (dtype, array.shape)
    return layout


def _numeric_dtype(group_name: str, name: str, array: np.ndarray) -> str:
    if array.dtype.kind not in NUMERIC_KINDS:
        raise ValueError(
            f"checkpoint {group_name} array {name!r} has dtype {array.dtype}; a session stores "
            f"numbers only (bool, int, uint, float)"
        )
    return array.dtype.str


def _template(template, params, optimizer_state, method_state) -> Checkpoint:
    if template is None:
        return Checkpoint(-1, params or {}, optimizer_state or {}, {}, {}, method_state or {})
    if params is not None or optimizer_state is not None or method_state is not None:
        raise ValueError("give the template checkpoint or its parts, not both")
    return template


# --------------------------------------------------------------------------- what every kind writes
class _QueryWriter:
    """The queries every kind records, buffered in memory until the kind's next row is written."""

    def __init__(self, f: h5py.File):
        self._file = f
        self.path = Path(f.filename)
        self.config = json.loads(f.attrs["config"])
        self._queries = hdf5.Handles(f["queries"])
        self._widths = {k: self._queries[k].shape[1] for k, (_, wide) in QUERY_COLUMNS.items() if wide}
        self._times = tuple(name for name in QUERY_TIME_COLUMNS if name in f["queries"])  # older files: none
        self._pending: dict[str, list] = {k: [] for k in (*QUERY_COLUMNS, *self._times)}
        self._pending_rows = 0
        self._query_rows = hdf5.group_length(self._queries, QUERY_COLUMNS)
        self._lock = WriterLock(self.path)  # readers see "in progress" while this writer lives
        self._storage = Storage(self.path, f.id.get_vfd_handle())

    def record_queries(self, labels, U, measurement) -> None:
        """Buffer the rows of one measurement until the next row is written (``labels``: their QueryLabels)."""
        names, index = np.unique(labels.role, return_inverse=True)
        unknown = [str(r) for r in names if r not in ROLE_CODES]
        if unknown:
            raise ValueError(f"unknown query role {unknown[0]!r}; the schema knows {', '.join(ROLES)}")
        U = np.asarray(U, dtype=np.float64)
        n = U.shape[0]
        features = np.asarray(measurement.features, dtype=np.float64)
        if U.shape != (n, self._widths["u"]) or features.shape != (n, self._widths["features"]):
            raise ValueError(
                f"record_queries: U {U.shape} / features {features.shape} do not match the session "
                f"(d = {self._widths['u']}, m = {self._widths['features']})"
            )
        p = self._pending
        first = self._query_rows + self._pending_rows
        p["index"].append(np.arange(first, first + n, dtype=np.int64))
        p["step"].append(np.full(n, labels.step, dtype=np.int64))
        p["role"].append(np.array([ROLE_CODES[r] for r in names], dtype=np.uint8)[index].reshape(n))
        p["direction"].append(np.asarray(labels.direction, dtype=np.int32).reshape(n))
        p["sample"].append(np.asarray(labels.sample, dtype=np.int32).reshape(n))
        p["layer"].append(np.asarray(labels.layer, dtype=np.int16).reshape(n))
        p["token"].append(np.asarray(labels.token, dtype=np.int32).reshape(n))
        p["u"].append(U)
        p["features"].append(features)
        p["settings"].append(_block(measurement.settings, n, self._widths["settings"], np.float64))
        p["spectrum"].append(_block(measurement.spectra, n, self._widths["spectrum"], np.float32))
        p["timestamp"].append(_column(measurement.started, n, np.float64, np.nan))
        p["attempts"].append(_column(measurement.attempts, n, np.int32, 1))
        for name in self._times:
            p[name].append(_column(getattr(measurement, name, None), n, np.float64, np.nan))
        self._pending_rows += n

    @contextlib.contextmanager
    def _writing(self, row_bytes: int = 0):
        """Write a step's or a point's rows (``row_bytes`` of them besides the buffered queries): checked before
        (:meth:`Storage.check`), and a write that fails is a :class:`StorageFault` (see :mod:`.storage`)."""
        self._storage.check(self._pending_bytes() + row_bytes)
        try:
            yield
        except StorageFault:
            raise
        except (OSError, RuntimeError) as exc:
            if isinstance(exc, RuntimeError) and not _is_io_error(exc):
                raise
            raise self._storage.failed(exc) from None

    def _pending_bytes(self) -> int:
        return sum(block.nbytes for blocks in self._pending.values() for block in blocks)

    def _sync(self) -> None:
        """Every row written so far on the disk (HDF5's flush, then the operating system's), before the row that
        says they are there: a step's row never stands on the disk without its queries."""
        self._file.flush()
        os.fsync(self._storage.fd)

    @property
    def fault(self) -> StorageFault | None:
        """What stopped this writer from writing (None while it writes)."""
        return self._storage.fault

    def _write_queries(self) -> int:
        """Append the buffered rows (every one: a row measured is a row on disk at the next flush); returns their
        digest (:func:`~labpgt.session.schema.rows_digest`)."""
        columns = {}
        for name, blocks in self._pending.items():
            if blocks:
                columns[name] = np.concatenate(blocks).astype(self._queries[name].dtype, copy=False)
                hdf5.append(self._queries[name], columns[name])
                blocks.clear()
        self._query_rows += self._pending_rows
        self._pending_rows = 0
        return rows_digest(columns)

    def close(self) -> None:
        """Close (idempotent); then, if over :data:`COMPACT_ABOVE` of the file is dead space (compressed chunks
        that SWMR rewrote elsewhere, see schema.py, Storage) and the disk has room, rewrite it without.

        Queries still buffered belong to a step (or point) that never completed: they are not written — a step
        is in the file whole or not at all — and a resumed run measures them again. After a storage fault the
        file is closed as the fault left it (:mod:`.storage`)."""
        if self._file.id.valid:
            for blocks in self._pending.values():
                blocks.clear()
            self._pending_rows = 0
            compact = False
            if self.fault is None:
                try:
                    self._file.flush()
                    compact = (
                        hdf5.dead_fraction(self._file) > COMPACT_ABOVE
                        and _free_bytes(self.path.parent) > 2 * self.path.stat().st_size
                    )
                except (OSError, RuntimeError) as exc:
                    if isinstance(exc, RuntimeError) and not _is_io_error(exc):
                        raise
                    self._storage.failed(exc)
            self._file.close()
            if compact:
                hdf5.compact(self.path, finish=describe)
        self._lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _is_io_error(exc: RuntimeError) -> bool:
    """Whether h5py's RuntimeError is HDF5 failing to read or write the file (not a programming error)."""
    text = str(exc)
    return "errno" in text or "write failed" in text or "file read failed" in text


def _block(values, n, width, dtype) -> np.ndarray:
    if width == 0:
        return np.zeros((n, 0), dtype=dtype)
    if values is None:
        return np.full((n, width), np.nan, dtype=dtype)
    values = np.asarray(values, dtype=dtype)
    if values.shape != (n, width):
        raise ValueError(f"record_queries: got an array of shape {values.shape}, the session expects {(n, width)}")
    return values


def _column(values, n, dtype, missing) -> np.ndarray:
    if values is None:
        return np.full(n, missing, dtype=dtype)
    return np.asarray(values, dtype=dtype).reshape(n)


def _float_row(values: dict, names) -> dict:
    """``{name: float or NaN}`` for each of ``names``, removed from ``values``; a missing wall_time is now."""
    row = {}
    for name in names:
        value = values.pop(name, None)
        row[name] = math.nan if value is None else float(value)
    if math.isnan(row.get("wall_time", 0.0)):
        row["wall_time"] = time.time()
    return row


def _append_row(handles, row: dict) -> None:
    for name, value in row.items():
        hdf5.append(handles[name], np.asarray([value]))


# --------------------------------------------------------------------------- a training
class SessionWriter(_QueryWriter):
    """Writes the session of a training while it runs: the trainer's recorder (``record_queries``,
    ``record_step``, ``checkpoint``).

    Make one with :meth:`create`, or reopen an interrupted file with
    :meth:`open_for_resume`. Always :meth:`close` it (or use ``with``).
    """

    def __init__(self, f: h5py.File, history_len: int = 0):
        super().__init__(f)
        self._steps = hdf5.Handles(f["steps"])
        self._checkpoints = hdf5.Handles(f["checkpoints"])
        self._arrays = {
            group: {array_name(ds): f[f"checkpoints/{group}/{ds}"] for ds in f[f"checkpoints/{group}"]}
            for group in CHECKPOINT_ARRAYS
        }
        self._history_len = history_len

    # ---- construction
    @classmethod
    def create(
        cls,
        path,
        config: dict,
        template: Checkpoint | None = None,
        *,
        kind: str = "training",
        params_template: dict | None = None,
        optimizer_template: dict | None = None,
        method_template: dict | None = None,
        frequencies=None,
        instruments: dict | None = None,
        prior=None,
        resolution_db: float | None = None,
    ) -> SessionWriter:
        """A new session file at ``path`` (overwritten) of a run of ``kind`` with steps and checkpoints.

        ``config`` as from :func:`session_config`. ``template`` (a :class:`~labpgt.recording.Checkpoint`,
        or its parts ``params_template``, ``optimizer_template``, ``method_template``) fixes the
        names, shapes and dtypes of the checkpoint arrays. ``prior``: ``(U, features, sources)`` the
        run's method learns from besides its own queries (the ``prior`` group). ``resolution_db``: the grid
        of the spectra (the reservoir's, when it quantises them).
        """
        if KIND_GROUPS.get(kind) != KIND_GROUPS["training"]:
            raise ValueError(f"SessionWriter writes runs with steps and checkpoints, not kind {kind!r}")
        layout = _checkpoint_layout(_template(template, params_template, optimizer_template, method_template))

        def lay_out(f):
            _lay_out_training(f, layout)
            if prior is not None:
                _lay_out_prior(f, *prior)

        return cls(_new_file(path, kind, config, frequencies, instruments, lay_out, resolution_db))

    @classmethod
    def open_for_resume(cls, path) -> tuple[SessionWriter, Checkpoint | None]:
        """Reopen an interrupted training to continue it: ``(writer, last complete checkpoint or None)``.

        Every row after the last complete step is dropped — in particular the queries of a
        half-done step, which the resumed trainer measures again. The file is rewritten: its valid
        prefix is copied into a fresh file that atomically replaces it (a writer killed with
        SIGKILL leaves HDF5's "open for writing" flag set, which only a rewrite clears safely); a
        ``labpgt-session/1`` or /2 file comes out as /3. Cost: the file's bytes copied (a /1 or /2
        file's decoded and encoded again). ``None`` means no step was completed: start the training
        afresh with the writer. The root config is ``writer.config``.
        """
        path = Path(path)
        tmp = path.with_name(path.name + ".resume-tmp")
        with SessionReader(path) as reader:
            if reader.kind != "training":
                raise UserError(f"{path.name} records a {reader.kind}, not a training: there is nothing to resume")
            checkpoint = reader.last_checkpoint()
            keep = reader.valid_lengths()
            missing = [name for name in QUERY_COLUMNS if name not in query_columns(reader.schema)]
            new_columns = reader.queries(0, keep["queries"], missing)
            schema = reader.schema

            def finish(copy: h5py.File) -> None:
                _upgrade_copy(copy, schema, new_columns)
                _record_resume_machine(copy, checkpoint)

            hdf5.copy_prefix(reader._file, tmp, keep, finish=finish)
        os.replace(tmp, path)
        f = hdf5.open_swmr_write(path)
        history_len = len(checkpoint.trainer_state.get("history", [])) if checkpoint else 0
        return cls(f, history_len=history_len), checkpoint

    # ---- the recorder
    def record_step(self, step, values: dict) -> None:
        """Write the step's queries, make sure they are on the disk, then write its row and flush."""
        with self._writing(STEP_ROW_BYTES):
            digest = self._write_queries()
            self._sync()
            self._write_step_row(step, {**values, QUERIES_DIGEST: digest})
            self._file.flush()

    def _write_step_row(self, step, values: dict) -> None:
        values = dict(values)
        perturbation = values.pop("perturbation", None)
        row = {"step": int(step), "queries": self._query_rows}
        for name in STEP_INT_COLUMNS[1:3]:
            row[name] = int(values.pop(name, -1))
        row.update(_float_row(values, STEP_FLOAT_COLUMNS))
        _append_row(self._steps, row)
        shape = np.full(PERTURBATION_DIMS, -1, dtype=np.int32)
        flat = np.zeros(0, dtype=np.int8)
        if perturbation is not None:
            perturbation = np.asarray(perturbation)
            if (
                perturbation.ndim > PERTURBATION_DIMS
                or not np.all(perturbation == np.round(perturbation))
                or np.abs(perturbation).max(initial=0) > 127
            ):
                values["perturbation"] = perturbation.tolist()  # not small integers: keep it exactly, as JSON
            else:
                shape[: perturbation.ndim] = perturbation.shape
                flat = perturbation.astype(np.int8).ravel()
        hdf5.append(self._steps["perturbation_shape"], shape[None, :])
        hdf5.append_ragged(self._steps, "perturbation", flat)
        hdf5.append_ragged(self._steps, "extra", hdf5.json_bytes(values))

    def checkpoint(self, checkpoint: Checkpoint) -> None:
        """Write one checkpoint row (its ``step`` last: the row counts once it is there), then flush."""
        arrays = _checkpoint_arrays(checkpoint)
        with self._writing(sum(np.asarray(a).nbytes for group in arrays.values() for a in group.values())):
            self._write_checkpoint(checkpoint, arrays)
            self._file.flush()

    def _write_checkpoint(self, checkpoint: Checkpoint, arrays: dict) -> None:
        self._write_queries()
        written = {}
        for group_name, group in arrays.items():
            datasets = self._arrays[group_name]
            if set(group) != set(datasets):
                raise ValueError(
                    f"checkpoint {group_name} {sorted(group)} differ from the session's {sorted(datasets)}"
                )
            for name, array in group.items():
                row = np.asarray(array, dtype=datasets[name].dtype)
                hdf5.append(datasets[name], row[None, ...])
                written[f"{group_name}/{name}"] = row
        c = self._checkpoints
        state = {**self._delta_history(checkpoint.trainer_state or {}), ARRAYS_DIGEST: rows_digest(written)}
        hdf5.append_ragged(c, "rng_states", hdf5.json_bytes(checkpoint.rng_states))
        hdf5.append_ragged(c, "trainer_state", hdf5.json_bytes(state))
        hdf5.append(c["step"], np.asarray([int(checkpoint.step)]))

    # ---- a run's pauses (labpgt.bench.suspenders)
    def discard_pending(self) -> int:
        """Forget the buffered queries of the step a pause interrupted (measured again when the run goes on);
        returns how many there were."""
        dropped = self._pending_rows
        for blocks in self._pending.values():
            blocks.clear()
        self._pending_rows = 0
        return dropped

    def record_suspension(self, record: dict) -> None:
        """One suspension: when it began and ended, why, what was measured again; flushed at once."""
        if "suspensions" in self._file:
            with self._writing():
                hdf5.append_ragged(self._file["suspensions"], "record", hdf5.json_bytes(record))
                self._file.flush()

    def record_check(self, record: dict, spectrum) -> None:
        """One check query a suspender measured (``record``: when, which condition, its value) and its trace."""
        if "checks" in self._file:
            checks = self._file["checks"]
            with self._writing():
                width = checks["spectrum"].shape[1]
                row = (
                    np.full((1, width), np.nan, np.float32)
                    if spectrum is None
                    else np.asarray(spectrum, np.float32).reshape(1, width)
                )
                hdf5.append(checks["spectrum"], row)
                hdf5.append_ragged(checks, "record", hdf5.json_bytes(record))
                self._file.flush()

    def _delta_history(self, trainer_state: dict) -> dict:
        state = dict(trainer_state)
        if "history" in state:
            history = state.pop("history")
            start = self._history_len if len(history) >= self._history_len else 0
            state["history_from"], state["history_tail"] = start, history[start:]
            self._history_len = len(history)
        return state


def recording_fingerprint(versions: dict):
    """The numerical fingerprint of the machine that recorded the last part of a session: the last resume's
    (``versions["resumed"]``), else the creator's (``versions["numerics"]``); None when not recorded."""
    resumed = versions.get("resumed")
    if isinstance(resumed, list) and resumed and isinstance(resumed[-1], dict):
        return resumed[-1].get("numerics")
    return versions.get("numerics")


def _record_resume_machine(f: h5py.File, checkpoint: Checkpoint | None) -> None:
    """Append ``{"after_step", "numerics"}`` to ``versions["resumed"]`` when this machine's fingerprint is not
    the one that recorded the session so far (a continuation there is not bit-identical)."""
    from labpgt.numerics import fingerprint

    versions = json.loads(f.attrs["versions"])
    here = fingerprint()
    if recording_fingerprint(versions) != here:
        after = None if checkpoint is None else int(checkpoint.step)
        versions["resumed"] = list(versions.get("resumed") or []) + [{"after_step": after, "numerics": here}]
        f.attrs["versions"] = hdf5.dumps(versions)


def _upgrade_copy(f: h5py.File, schema: str, new_columns: dict) -> None:
    """Make the resume copy ``f`` of a file of ``schema`` a file of the current one: the query columns it lacks
    (``new_columns``: what the reader shows for them), a /1 file's step columns, checkpoint groups and kind,
    and the description (:mod:`labpgt.session.nexus`)."""
    for name, values in new_columns.items():
        ds = hdf5.row_dataset(
            f["queries"], name, QUERY_COLUMNS[name][0], chunk_rows=QUERY_CHUNK_ROWS, rows=len(values), compress=True
        )
        if len(values):
            ds[:] = values
    _lay_out_pauses(f)
    if schema == SCHEMA_V1:
        steps = hdf5.group_length(f["steps"], STEP_INT_COLUMNS)
        for name in STEP_FLOAT_COLUMNS_SINCE_V2:
            hdf5.row_dataset(f["steps"], name, "float64", chunk_rows=STEP_CHUNK_ROWS, rows=steps)[:] = np.nan
        for name in CHECKPOINT_ARRAYS_SINCE_V2:
            f["checkpoints"].create_group(name)
        f.attrs["kind"] = "training"
    f.attrs["schema"] = SCHEMA
    describe(f)


# --------------------------------------------------------------------------- a sweep
class SweepWriter(_QueryWriter):
    """Writes the session of a characterisation sweep: ``record_queries`` for each spectrum, then
    ``record_point`` for the point they belong to (flushed per point)."""

    def __init__(self, f: h5py.File):
        super().__init__(f)
        self._points = hdf5.Handles(f["points"])
        self.n_points = hdf5.group_length(self._points, POINT_INT_COLUMNS + POINT_FLOAT_COLUMNS)

    @classmethod
    def create(
        cls,
        path,
        config: dict,
        *,
        frequencies=None,
        instruments: dict | None = None,
        resolution_db: float | None = None,
    ) -> SweepWriter:
        """A new sweep session at ``path`` (overwritten); ``config`` as from :func:`sweep_session_config`."""
        return cls(_new_file(path, "sweep", config, frequencies, instruments, _lay_out_points, resolution_db))

    def record_point(self, index: int, values: dict) -> None:
        """Write the queries recorded since the last point and point ``index``'s row (``value``,
        ``peak_frequency_hz``, ``peak_power_dbm``, ``margin_db``; NaN where missing), then flush."""
        if index != self.n_points:
            raise ValueError(f"record_point({index}): the next point of this sweep is {self.n_points}")
        values = dict(values)
        row = _float_row(values, POINT_FLOAT_COLUMNS)
        if values:
            raise ValueError(
                f"record_point: unknown values {sorted(values)}; a point has {', '.join(POINT_FLOAT_COLUMNS)}"
            )
        with self._writing(STEP_ROW_BYTES):
            self._write_queries()
            self._sync()
            row["queries"] = self._query_rows
            _append_row(self._points, row)
            self._file.flush()
        self.n_points += 1
