"""The session file: one HDF5 file per training run. This module owns its schema, writer and reader.

Nothing else in labpgt reads or writes the layout directly; replay, inspect and export go through
:class:`SessionReader`, and the trainer writes through :class:`SessionWriter` (its recorder hook).
A session file is data: attributes and plain numeric datasets only, no pickle, no object arrays.

Schema ``labpgt-session/1``
===========================

Root attributes (all strings)::

    schema        "labpgt-session/1"
    config        JSON {"train": TrainConfig as a dict (resolved: no None left),
                        "bench": BenchConfig.to_dict() or null (digital reservoir),
                        "reservoir": {"input_width", "feature_width", "setting_names"}}
    created       ISO 8601 UTC time the file was created
    versions      JSON {"labpgt", "numpy", "h5py", "hdf5", "python"}
    instruments   JSON {name: identity} (e.g. the *IDN? answers), {} when none

``/frequencies`` float64 (P,) Hz — the shared axis of every spectrum (P = 0 without instruments).

Group ``queries`` — one row per reservoir measurement, in measurement order (n rows)::

    step       int64   (n,)    0-based training step (calibration and the first evaluation: 0)
    role       uint8   (n,)    code; attribute ``names`` = JSON list, code i ↦ names[i]
                               (calibration, baseline, plus, minus, eval, sweep;
                               "sweep": a characterisation point of labpgt.procedures.sweep)
    direction  int32   (n,)    perturbation direction, -1 for calibration/baseline/eval
    sample     int32   (n,)    index into the training split; n_train + i for test sample i
    u          float64 (n, d)  the reservoir input asked for
    settings   float64 (n, S)  instrument settings sent; attribute ``names`` = JSON list (S,)
    spectrum   float32 (n, P)  trace in dBm on /frequencies
    features   float64 (n, m)  what the model saw
    timestamp  float64 (n,)    Unix time the query started (NaN if unknown)
    attempts   int32   (n,)    tries the query took

Group ``steps`` — one row per optimizer step (row i is step i)::

    step, training_queries, eval_queries, queries (query rows recorded so far)   int64 (s,)
    loss, loss_plus, loss_minus, grad_norm, lr, train_loss, test_loss,
    train_accuracy, test_accuracy, measure_seconds, wall_time                      float64 (s,)
        (NaN when the trainer did not report it, e.g. accuracies between evaluations)
    perturbation        int8 ragged: the estimator's directions of this step, flattened
    perturbation_shape  int32 (s, 4)  its shape, padded with -1 (all -1: no perturbation)
    extra               uint8 ragged: JSON of any other value the trainer reported

Group ``checkpoints`` — the state after a step (row j; every step by default)::

    step                int64 (c,)
    params/<name>       float64 (c, *shape)   every array of Model.state_dict()
    optimizer/<name>    (c, *shape)           the optimizer's state_dict(), dtype as given
    rng_states          uint8 ragged: JSON of every RNG state (batches, estimator, reservoir)
    trainer_state       uint8 ragged: JSON of the trainer's counters; its growing ``history``
                        is stored as a delta: {"history_from": k, "history_tail": [...]} means
                        history = previous checkpoint's history[:k] + tail

A *ragged* column NAME is a 1-D dataset of values plus ``NAME_end`` int64 (rows,): row i is
``NAME[NAME_end[i-1]:NAME_end[i]]`` (the value dataset carries the attribute ``ragged_end``).
JSON in ragged uint8 rather than variable-length strings keeps every dataset fixed-size, which
SWMR handles without the global heap.

Storage and durability
----------------------
Every row dataset is chunked (256 rows for queries), compressed (:data:`COMPRESSION`, except the
noisy float columns u/settings/spectrum/features: measured, lzf saved ~0 % there and cost ~40 % of
the write rate), resizable
along its first axis. All datasets are created up front, then the file switches to SWMR mode, so
a reader (the GUI) can follow a live run (:meth:`SessionReader.refresh`). Rows are buffered in
memory and appended once per flush (one resize per dataset per step: amortised O(1) per row); the
file is flushed at every ``record_step`` and every ``checkpoint``. The logical length of a group
is the smallest extent of its datasets (a writer killed mid-flush leaves them uneven).

*The last complete step* is the step of the last checkpoint row: the trainer reports a step's
row before its checkpoint and both are flushed, so a checkpoint row implies its step is whole.
Queries with a larger step belong to an unfinished step; resume drops them and they are measured
again. ``final_params_sha256`` (see :func:`params_sha256`) fingerprints a checkpoint's params.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from labpgt.errors import UserError

SCHEMA = "labpgt-session/1"
ROLES = ("calibration", "baseline", "plus", "minus", "eval", "sweep")  # append only: codes are stored
ROLE_CODES = {name: code for code, name in enumerate(ROLES)}
COMPRESSION = "lzf"
UNCOMPRESSED = ("spectrum", "features", "u", "settings")  # noisy floats: lzf saved ~0 % and cost ~40 % of the write rate
QUERY_CHUNK_ROWS = 256
STEP_CHUNK_ROWS = 64
RAGGED_CHUNK = 1 << 16
PERTURBATION_DIMS = 4

QUERY_COLUMNS = {  # name: (dtype, has a width)
    "step": ("int64", False), "role": ("uint8", False), "direction": ("int32", False),
    "sample": ("int32", False), "u": ("float64", True), "settings": ("float64", True),
    "spectrum": ("float32", True), "features": ("float64", True), "timestamp": ("float64", False),
    "attempts": ("int32", False),
}
STEP_INT_COLUMNS = ("step", "training_queries", "eval_queries", "queries")
STEP_FLOAT_COLUMNS = ("loss", "loss_plus", "loss_minus", "grad_norm", "lr", "train_loss", "test_loss",
                      "train_accuracy", "test_accuracy", "measure_seconds", "wall_time")
STEP_RAGGED = {"perturbation": "int8", "extra": "uint8"}
CHECKPOINT_RAGGED = ("rng_states", "trainer_state")


# --------------------------------------------------------------------------- small public helpers
def params_sha256(params: dict) -> str:
    """SHA-256 over the arrays of ``params`` as little-endian float64 bytes, concatenated in sorted name order.

    This is ``final_params_sha256`` of :func:`labpgt.session_tools.inspect_session`; for a live
    trainer use ``params_sha256(trainer.model.state_dict())``.
    """
    digest = hashlib.sha256()
    for name in sorted(params):
        digest.update(np.ascontiguousarray(params[name], dtype="<f8").tobytes())
    return digest.hexdigest()


@dataclass
class SessionCheckpoint:
    """One stored checkpoint; duck-compatible with :class:`labpgt.trainer.Checkpoint` for ``Trainer.restore``."""

    step: int
    params: dict
    optimizer_state: dict
    rng_states: dict
    trainer_state: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)


def versions() -> dict:
    import labpgt

    return {"labpgt": labpgt.__version__, "numpy": np.__version__, "h5py": h5py.__version__,
            "hdf5": h5py.version.hdf5_version, "python": platform.python_version()}


def session_config(train_config, reservoir) -> dict:
    """The root ``config`` attribute for a trainer config (dataclass or dict) and its reservoir."""
    train = dataclasses.asdict(train_config) if dataclasses.is_dataclass(train_config) else dict(train_config)
    bench = getattr(reservoir, "config", None)
    return {"train": train,
            "bench": bench.to_dict() if hasattr(bench, "to_dict") else None,
            "reservoir": {"input_width": int(reservoir.input_width), "feature_width": int(reservoir.feature_width),
                          "setting_names": list(getattr(reservoir, "setting_names", ()))}}


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _dumps(value) -> str:
    return json.dumps(value, default=_json_default, sort_keys=True)


# --------------------------------------------------------------------------- creating the layout
def _row_dataset(group, name, dtype, width=(), chunk_rows=QUERY_CHUNK_ROWS, rows=0):
    width = tuple(int(w) for w in width)
    if any(w == 0 for w in width):  # HDF5 chunks cannot have a zero dimension
        return group.create_dataset(name, shape=(rows,) + width, maxshape=(None,) * (1 + len(width)),
                                    dtype=dtype)
    return group.create_dataset(name, shape=(rows,) + width, maxshape=(None,) + width, dtype=dtype,
                                chunks=(chunk_rows,) + width, shuffle=False,
                                compression=None if name in UNCOMPRESSED else COMPRESSION)


def _ragged_dataset(group, name, dtype):
    values = group.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(RAGGED_CHUNK,),
                                  compression=COMPRESSION)
    values.attrs["ragged_end"] = f"{name}_end"
    _row_dataset(group, f"{name}_end", "int64", chunk_rows=STEP_CHUNK_ROWS)


def _create_layout(f, config: dict, frequencies, setting_names, params_template, optimizer_template,
                   instruments):
    reservoir = config["reservoir"]
    d, m = int(reservoir["input_width"]), int(reservoir["feature_width"])
    frequencies = np.zeros(0) if frequencies is None else np.asarray(frequencies, dtype=np.float64)
    f.attrs["schema"] = SCHEMA
    f.attrs["config"] = _dumps(config)
    f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    f.attrs["versions"] = _dumps(versions())
    f.attrs["instruments"] = _dumps(instruments or {})
    f.create_dataset("frequencies", data=frequencies)
    widths = {"u": (d,), "settings": (len(setting_names),), "spectrum": (frequencies.size,), "features": (m,)}
    q = f.create_group("queries")
    for name, (dtype, wide) in QUERY_COLUMNS.items():
        _row_dataset(q, name, dtype, widths[name] if wide else ())
    q["role"].attrs["names"] = json.dumps(list(ROLES))
    q["settings"].attrs["names"] = json.dumps(list(setting_names))
    s = f.create_group("steps")
    for name in STEP_INT_COLUMNS:
        _row_dataset(s, name, "int64", chunk_rows=STEP_CHUNK_ROWS)
    for name in STEP_FLOAT_COLUMNS:
        _row_dataset(s, name, "float64", chunk_rows=STEP_CHUNK_ROWS)
    _row_dataset(s, "perturbation_shape", "int32", (PERTURBATION_DIMS,), chunk_rows=STEP_CHUNK_ROWS)
    for name, dtype in STEP_RAGGED.items():
        _ragged_dataset(s, name, dtype)
    c = f.create_group("checkpoints")
    _row_dataset(c, "step", "int64", chunk_rows=STEP_CHUNK_ROWS)
    for group_name, template in (("params", params_template), ("optimizer", optimizer_template)):
        g = c.create_group(group_name)
        for name, array in template.items():
            array = np.asarray(array)
            dtype = "float64" if group_name == "params" else array.dtype.str
            _row_dataset(g, name, dtype, array.shape, chunk_rows=16)
    for name in CHECKPOINT_RAGGED:
        _ragged_dataset(c, name, "uint8")


# --------------------------------------------------------------------------- the writer
class SessionWriter:
    """Writes a session file while training; the trainer's recorder (``record_queries``, ``record_step``, ``checkpoint``).

    Make one with :meth:`create` (or :meth:`for_trainer`), or reopen an interrupted file with
    :meth:`open_for_resume`. Always :meth:`close` it (or use ``with``).
    """

    def __init__(self, f: h5py.File, history_len: int = 0):
        self._file = f
        self.path = Path(f.filename)
        self.config = json.loads(f.attrs["config"])
        self._queries = _Handles(f["queries"])
        self._steps = _Handles(f["steps"])
        self._checkpoints = _Handles(f["checkpoints"])
        self._widths = {k: self._queries[k].shape[1] for k, (_, wide) in QUERY_COLUMNS.items() if wide}
        self._pending: dict[str, list] = {k: [] for k in QUERY_COLUMNS}
        self._pending_rows = 0
        self._query_rows = _group_length(self._queries, QUERY_COLUMNS)
        self._history_len = history_len

    # ---- construction
    @classmethod
    def create(cls, path, config: dict, *, params_template: dict, optimizer_template: dict,
               frequencies=None, instruments: dict | None = None) -> "SessionWriter":
        """A new session file at ``path`` (overwritten). ``config`` as from :func:`session_config`;
        the templates fix the names, shapes and dtypes of the checkpoint arrays (SWMR allows no
        new datasets once writing starts)."""
        setting_names = tuple(config["reservoir"].get("setting_names", ()))
        f = h5py.File(path, "w", libver="latest")
        try:
            _create_layout(f, config, frequencies, setting_names, params_template, optimizer_template,
                           instruments)
            f.swmr_mode = True
        except BaseException:
            f.close()
            raise
        return cls(f)

    @classmethod
    def for_trainer(cls, path, trainer, instruments: dict | None = None) -> "SessionWriter":
        """A new session for ``trainer`` (not yet run); set ``trainer.recorder`` to the result."""
        template = trainer.checkpoint()
        return cls.create(path, session_config(trainer.config, trainer.reservoir),
                          params_template=template.params, optimizer_template=template.optimizer_state,
                          frequencies=getattr(trainer.reservoir, "frequencies", None), instruments=instruments)

    @classmethod
    def open_for_resume(cls, path) -> tuple["SessionWriter", SessionCheckpoint | None]:
        """Reopen an interrupted session to continue it: ``(writer, last complete checkpoint or None)``.

        Every row after the last complete step is dropped — in particular the queries of a
        half-done step, which the resumed trainer measures again. The file is rewritten: its valid
        prefix is copied into a fresh file that atomically replaces it (a writer killed with
        SIGKILL leaves HDF5's "open for writing" flag set, which only a rewrite clears safely).
        Cost O(file size). ``None`` means no step was completed: start the training afresh with
        the writer. ``checkpoint.config`` is the root config.
        """
        path = Path(path)
        with SessionReader(path) as reader:
            checkpoint = reader.last_checkpoint()
            keep = reader.valid_lengths()
            tmp = path.with_name(path.name + ".resume-tmp")
            _copy_prefix(reader._file, tmp, keep)
        os.replace(tmp, path)
        f = h5py.File(path, "r+", libver="latest")
        f.swmr_mode = True
        history_len = len(checkpoint.trainer_state.get("history", [])) if checkpoint else 0
        return cls(f, history_len=history_len), checkpoint

    # ---- the recorder hook
    def record_queries(self, labels, U, measurement) -> None:
        """Buffer one measurement's rows (written at the next flush); ``labels`` a :class:`~labpgt.recording.QueryLabels`."""
        names, index = np.unique(labels.role, return_inverse=True)
        unknown = [str(r) for r in names if r not in ROLE_CODES]
        if unknown:
            raise ValueError(f"unknown query role {unknown[0]!r}; the schema knows {', '.join(ROLES)}")
        U = np.asarray(U, dtype=np.float64)
        n = U.shape[0]
        features = np.asarray(measurement.features, dtype=np.float64)
        if U.shape != (n, self._widths["u"]) or features.shape != (n, self._widths["features"]):
            raise ValueError(f"record_queries: U {U.shape} / features {features.shape} do not match the session "
                             f"(d = {self._widths['u']}, m = {self._widths['features']})")
        p = self._pending
        p["step"].append(np.full(n, labels.step, dtype=np.int64))
        p["role"].append(np.array([ROLE_CODES[r] for r in names], dtype=np.uint8)[index].reshape(n))
        p["direction"].append(np.asarray(labels.direction, dtype=np.int32).reshape(n))
        p["sample"].append(np.asarray(labels.sample, dtype=np.int32).reshape(n))
        p["u"].append(U)
        p["features"].append(features)
        p["settings"].append(_block(measurement.settings, n, self._widths["settings"], np.float64))
        p["spectrum"].append(_block(measurement.spectra, n, self._widths["spectrum"], np.float32))
        p["timestamp"].append(_column(measurement.started, n, np.float64, np.nan))
        p["attempts"].append(_column(measurement.attempts, n, np.int32, 1))
        self._pending_rows += n

    def record_step(self, step, values: dict) -> None:
        """Write the step's queries and its row, then flush."""
        self._write_queries()
        values = dict(values)
        perturbation = values.pop("perturbation", None)
        row = {"step": int(step), "queries": self._query_rows}
        for name in STEP_INT_COLUMNS[1:3]:
            row[name] = int(values.pop(name, -1))
        for name in STEP_FLOAT_COLUMNS:
            value = values.pop(name, None)
            row[name] = np.nan if value is None else float(value)
        if np.isnan(row["wall_time"]):
            row["wall_time"] = time.time()
        for name, value in row.items():
            _append(self._steps[name], np.asarray([value]))
        shape = np.full(PERTURBATION_DIMS, -1, dtype=np.int32)
        flat = np.zeros(0, dtype=np.int8)
        if perturbation is not None:
            perturbation = np.asarray(perturbation)
            if perturbation.ndim > PERTURBATION_DIMS or not np.all(perturbation == np.round(perturbation)) \
                    or np.abs(perturbation).max(initial=0) > 127:
                values["perturbation"] = perturbation.tolist()   # not small integers: keep it exactly, as JSON
            else:
                shape[:perturbation.ndim] = perturbation.shape
                flat = perturbation.astype(np.int8).ravel()
        _append(self._steps["perturbation_shape"], shape[None, :])
        _append_ragged(self._steps, "perturbation", flat)
        _append_ragged(self._steps, "extra", _json_bytes(values))
        self._file.flush()

    def checkpoint(self, checkpoint) -> None:
        """Write one checkpoint row (a :class:`~labpgt.recording.Checkpoint`; its ``step`` last), then flush."""
        self._write_queries()
        c = self._checkpoints
        for group_name, arrays in (("params", checkpoint.params), ("optimizer", checkpoint.optimizer_state)):
            group = c[group_name]
            if set(arrays) != set(group):
                raise ValueError(f"checkpoint {group_name} {sorted(arrays)} differ from the session's {sorted(group)}")
            for name, array in arrays.items():
                _append(group[name], np.asarray(array, dtype=group[name].dtype)[None, ...])
        _append_ragged(c, "rng_states", _json_bytes(checkpoint.rng_states))
        _append_ragged(c, "trainer_state", _json_bytes(self._delta_history(checkpoint.trainer_state or {})))
        _append(c["step"], np.asarray([int(checkpoint.step)]))
        self._file.flush()

    def _delta_history(self, trainer_state: dict) -> dict:
        state = dict(trainer_state)
        if "history" in state:
            history = state.pop("history")
            start = self._history_len if len(history) >= self._history_len else 0
            state["history_from"], state["history_tail"] = start, history[start:]
            self._history_len = len(history)
        return state

    def _write_queries(self) -> None:
        if not self._pending_rows:
            return
        for name, blocks in self._pending.items():
            _append(self._queries[name], np.concatenate(blocks))
            blocks.clear()
        self._query_rows += self._pending_rows
        self._pending_rows = 0

    def flush(self) -> None:
        self._write_queries()
        self._file.flush()

    def close(self) -> None:
        """Write what is buffered and close (idempotent). Buffered queries of an unfinished step are kept
        but, like any row after the last checkpoint, ignored on resume."""
        if self._file.id.valid:
            self.flush()
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


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


def _json_bytes(value) -> np.ndarray:
    return np.frombuffer(_dumps(value).encode("utf-8"), dtype=np.uint8)


class _Handles:
    """A group's datasets looked up once: h5py's by-name lookup costs more than a small write."""

    def __init__(self, group: h5py.Group):
        self.group = group
        self._cache: dict = {}

    def __getitem__(self, name: str):
        handle = self._cache.get(name)
        if handle is None:
            handle = self.group[name]
            if isinstance(handle, h5py.Group):
                handle = _Handles(handle)
            self._cache[name] = handle
        return handle

    def __iter__(self):
        return iter(self.group)


def _append(ds, block: np.ndarray) -> None:
    n = ds.shape[0]
    ds.resize(n + block.shape[0], axis=0)
    ds[n:] = block


def _append_ragged(group, name, values: np.ndarray) -> None:
    values_ds, end_ds = group[name], group[f"{name}_end"]
    end = int(end_ds[-1]) if end_ds.shape[0] else 0
    if end_ds.shape[0] and values_ds.shape[0] != end:   # tolerate nothing but a consistent file
        values_ds.resize(end, axis=0)
    if values.size:
        _append(values_ds, values)
    _append(end_ds, np.asarray([end + values.size], dtype=np.int64))


def _group_length(group, names) -> int:
    return min(group[name].shape[0] for name in names)


# --------------------------------------------------------------------------- resume: copy the valid prefix
def _copy_prefix(src: h5py.File, dst_path: Path, keep: dict) -> None:
    """Copy every dataset of ``src`` into a new file, row datasets cut to ``keep[group]`` rows."""
    with h5py.File(dst_path, "w", libver="latest") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value

        def visit(name, obj):
            if isinstance(obj, h5py.Group):
                dst.require_group(name)
                return
            if obj.maxshape[0] is not None:           # fixed-size (frequencies): copy whole
                ds = dst.create_dataset(name, data=obj[()])
            else:
                rows = _rows_to_keep(src, name, obj, keep)
                ds = dst.create_dataset(name, shape=(rows,) + obj.shape[1:], maxshape=obj.maxshape,
                                        dtype=obj.dtype, chunks=obj.chunks, compression=obj.compression,
                                        compression_opts=obj.compression_opts)
                for start in range(0, rows, 1 << 16):
                    ds[start:min(rows, start + (1 << 16))] = obj[start:min(rows, start + (1 << 16))]
            for key, value in obj.attrs.items():
                ds.attrs[key] = value

        src.visititems(visit)


def _rows_to_keep(src, name, obj, keep) -> int:
    rows = keep[name.split("/")[0]]
    if "ragged_end" in obj.attrs:
        ends = src[f"{name.rsplit('/', 1)[0]}/{obj.attrs['ragged_end']}"]
        return int(ends[rows - 1]) if rows else 0
    return rows


# --------------------------------------------------------------------------- the reader
def _damaged_is_user_error(method):
    """A read that fails on a damaged file (HDF5 error, bad JSON, bad lengths) is one UserError line."""
    @functools.wraps(method)
    def read(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise UserError(f"{self.path.name} is truncated or damaged: {_first_line(exc)}") from None
    return read


class SessionReader:
    """Read-only access to a session file, live or finished; every problem is a one-line UserError.

    Lengths are *valid* lengths: rows a killed writer left half-written are not counted. Use
    :meth:`refresh` to see rows a live writer has appended since.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._file = _open_read_only(self.path)
        try:
            self._validate()
            self._load_header()
            self.refresh()
        except UserError:
            self._file.close()
            raise
        except (OSError, KeyError, ValueError) as exc:
            self._file.close()
            raise UserError(f"{self.path.name} is truncated or damaged: {_first_line(exc)}") from None

    # ---- opening and validation
    def _fail(self, message):
        raise UserError(f"{self.path.name}: {message}")

    def _validate(self) -> None:
        f = self._file
        self._row_datasets: list[str] = []
        schema = f.attrs.get("schema")
        if schema is None:
            self._fail("not a labpgt session file (no 'schema' attribute)")
        schema = schema.decode() if isinstance(schema, bytes) else str(schema)
        if schema != SCHEMA:
            self._fail(f"schema '{schema}' is not supported (this labpgt reads {SCHEMA})")
        for key in ("config", "created", "versions", "instruments"):
            if key not in f.attrs:
                self._fail(f"damaged session: missing root attribute '{key}'")
        for name in ("queries", "steps", "checkpoints", "checkpoints/params", "checkpoints/optimizer"):
            if not isinstance(f.get(name), h5py.Group):
                self._fail(f"damaged session: missing group '{name}'")
        self._expect("frequencies", "float64", 1)
        for name, (dtype, wide) in QUERY_COLUMNS.items():
            self._expect(f"queries/{name}", dtype, 2 if wide else 1)
        for name in STEP_INT_COLUMNS:
            self._expect(f"steps/{name}", "int64", 1)
        for name in STEP_FLOAT_COLUMNS:
            self._expect(f"steps/{name}", "float64", 1)
        self._expect("steps/perturbation_shape", "int32", 2)
        for name, dtype in STEP_RAGGED.items():
            self._expect(f"steps/{name}", dtype, 1)
            self._expect(f"steps/{name}_end", "int64", 1)
        self._expect("checkpoints/step", "int64", 1)
        for name in CHECKPOINT_RAGGED:
            self._expect(f"checkpoints/{name}", "uint8", 1)
            self._expect(f"checkpoints/{name}_end", "int64", 1)
        for name in f["checkpoints/params"]:
            self._expect(f"checkpoints/params/{name}", "float64", None)
        for name in f["checkpoints/optimizer"]:
            self._expect(f"checkpoints/optimizer/{name}", f[f"checkpoints/optimizer/{name}"].dtype, None)
        q = f["queries"]
        if q["spectrum"].shape[1] != f["frequencies"].shape[0]:
            self._fail(f"damaged session: queries/spectrum has {q['spectrum'].shape[1]} points but "
                       f"frequencies has {f['frequencies'].shape[0]}")
        if q["settings"].shape[1] != len(json.loads(q["settings"].attrs.get("names", "[]"))):
            self._fail("damaged session: queries/settings does not match its 'names' attribute")

    def _expect(self, name, dtype, ndim) -> None:
        ds = self._file.get(name)
        if not isinstance(ds, h5py.Dataset):
            self._fail(f"damaged session: missing dataset '{name}'")
        if name != "frequencies":
            self._row_datasets.append(name)
        if ds.dtype != np.dtype(dtype):
            self._fail(f"damaged session: '{name}' has dtype {ds.dtype}, expected {np.dtype(dtype)}")
        if ndim is not None and ds.ndim != ndim:
            self._fail(f"damaged session: '{name}' has shape {ds.shape}, expected {ndim} dimension(s)")

    def _load_header(self) -> None:
        attrs = self._file.attrs
        try:
            self.config = json.loads(attrs["config"])
            self.versions = json.loads(attrs["versions"])
            self.instruments = json.loads(attrs["instruments"])
            self.role_names = tuple(json.loads(self._file["queries/role"].attrs["names"]))
            self.setting_names = tuple(json.loads(self._file["queries/settings"].attrs["names"]))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            self._fail(f"damaged session: unreadable JSON attribute ({_first_line(exc)})")
        if not isinstance(self.config, dict) or not isinstance(self.config.get("train"), dict):
            self._fail("damaged session: the config attribute has no 'train' table")
        self.schema = SCHEMA
        self.created = str(attrs["created"])
        self.frequencies = self._file["frequencies"][()]
        self.param_names = tuple(self._file["checkpoints/params"])
        self.optimizer_names = tuple(self._file["checkpoints/optimizer"])

    # ---- lengths
    @_damaged_is_user_error
    def refresh(self) -> None:
        """See rows appended by a live writer since opening (SWMR); recomputes the valid lengths."""
        f = self._file
        if f.swmr_mode:
            for name in self._row_datasets:
                f[name].refresh()
        n_ckpt = min(f["checkpoints/step"].shape[0], *(f[f"checkpoints/params/{n}"].shape[0] for n in self.param_names),
                     *(f[f"checkpoints/optimizer/{n}"].shape[0] for n in self.optimizer_names),
                     *(self._ragged_rows(f"checkpoints/{n}") for n in CHECKPOINT_RAGGED))
        n_steps = min(*(f[f"steps/{n}"].shape[0] for n in STEP_INT_COLUMNS + STEP_FLOAT_COLUMNS),
                      f["steps/perturbation_shape"].shape[0], *(self._ragged_rows(f"steps/{n}") for n in STEP_RAGGED))
        self.checkpoint_steps = f["checkpoints/step"][:n_ckpt]
        self.n_checkpoints = n_ckpt
        self.n_steps = n_steps
        self.n_queries = _group_length(f["queries"], QUERY_COLUMNS)

    def _ragged_rows(self, name) -> int:
        """Rows of a ragged column whose values are all present."""
        ends = self._file[f"{name}_end"][()]
        return int(np.searchsorted(ends, self._file[name].shape[0], side="right"))

    @property
    def last_complete_step(self) -> int | None:
        """The step of the last checkpoint (None before the first step completed)."""
        return int(self.checkpoint_steps[-1]) if self.n_checkpoints else None

    @_damaged_is_user_error
    def valid_lengths(self) -> dict:
        """Rows per group that belong to complete steps (what resume keeps)."""
        last = self.last_complete_step
        if last is None:
            return {"queries": 0, "steps": 0, "checkpoints": 0}
        steps = self._file["steps/step"][:self.n_steps]
        query_steps = self._file["queries/step"][:self.n_queries]
        return {"queries": int(np.searchsorted(query_steps, last, side="right")),
                "steps": int(np.searchsorted(steps, last, side="right")),
                "checkpoints": self.n_checkpoints}

    @property
    @_damaged_is_user_error
    def planned_steps(self) -> int:
        train = self.config["train"]
        return 1 if train.get("method") == "readout" else int(train.get("steps") or 0)

    @property
    def completed(self) -> bool:
        """True when the last planned step has a checkpoint."""
        return self.last_complete_step is not None and self.last_complete_step + 1 >= self.planned_steps

    @property
    def has_spectra(self) -> bool:
        return self.frequencies.size > 0

    # ---- queries
    @_damaged_is_user_error
    def queries(self, start: int = 0, stop: int | None = None, fields=None) -> dict:
        """Columns of query rows ``start:stop`` (valid rows only) as numpy arrays; ``role`` stays a code."""
        stop = self.n_queries if stop is None else min(stop, self.n_queries)
        names = fields if fields is not None else tuple(QUERY_COLUMNS)
        return {name: self._file[f"queries/{name}"][start:stop] for name in names}

    def iter_queries(self, fields=None, block_rows: int = 1 << 14):
        """``(start, columns)`` blocks over all valid query rows."""
        for start in range(0, self.n_queries, block_rows):
            yield start, self.queries(start, start + block_rows, fields)

    def dataset(self, name: str) -> h5py.Dataset:
        """The raw dataset ``name`` (e.g. ``"queries/features"``), read-only; mind the valid lengths."""
        return self._file[name]

    def role_name(self, code: int) -> str:
        return self.role_names[int(code)] if 0 <= int(code) < len(self.role_names) else f"role{int(code)}"

    # ---- steps
    @_damaged_is_user_error
    def steps(self) -> dict:
        """Scalar step columns (valid rows) as numpy arrays."""
        return {name: self._file[f"steps/{name}"][:self.n_steps] for name in STEP_INT_COLUMNS + STEP_FLOAT_COLUMNS}

    @_damaged_is_user_error
    def perturbation(self, row: int):
        """The perturbation of step row ``row`` as stored (int8 array), or None."""
        shape = self._file["steps/perturbation_shape"][row]
        if shape[0] < 0:
            return None
        flat = self._ragged("steps/perturbation", row)
        return flat.reshape(tuple(int(s) for s in shape if s >= 0))

    @_damaged_is_user_error
    def step_extra(self, row: int) -> dict:
        return json.loads(self._ragged("steps/extra", row).tobytes().decode("utf-8"))

    def _ragged(self, name, row) -> np.ndarray:
        ends = self._file[f"{name}_end"]
        start = int(ends[row - 1]) if row else 0
        return self._file[name][start:int(ends[row])]

    # ---- checkpoints
    @_damaged_is_user_error
    def checkpoint(self, index: int) -> SessionCheckpoint:
        """Checkpoint row ``index`` (negative counts from the last valid one)."""
        if not -self.n_checkpoints <= index < self.n_checkpoints:
            raise IndexError(f"checkpoint {index} of {self.n_checkpoints}")
        index %= self.n_checkpoints
        c = self._file["checkpoints"]
        params = {n: c[f"params/{n}"][index] for n in self.param_names}
        optimizer = {n: c[f"optimizer/{n}"][index] for n in self.optimizer_names}
        rng_states = json.loads(self._ragged("checkpoints/rng_states", index).tobytes().decode("utf-8"))
        return SessionCheckpoint(step=int(c["step"][index]), params=params, optimizer_state=optimizer,
                                 rng_states=rng_states, trainer_state=self._trainer_state(index),
                                 config=self.config)

    @_damaged_is_user_error
    def checkpoint_params(self, index: int) -> dict:
        return {n: self._file[f"checkpoints/params/{n}"][index] for n in self.param_names}

    def _trainer_state(self, index: int) -> dict:
        ends = self._file["checkpoints/trainer_state_end"][:index + 1]
        blob = self._file["checkpoints/trainer_state"][:int(ends[-1])].tobytes()
        history, state, start = [], {}, 0
        for end in ends:
            state = json.loads(blob[start:int(end)].decode("utf-8"))
            start = int(end)
            if "history_tail" in state:
                history = history[:state.pop("history_from")] + state.pop("history_tail")
                state["history"] = history
        return state

    def last_checkpoint(self) -> SessionCheckpoint | None:
        return self.checkpoint(-1) if self.n_checkpoints else None

    # ---- closing
    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _first_line(exc) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _open_read_only(path: Path) -> h5py.File:
    """Open with mode "r" only (never modifies the file); SWMR when possible so a live file can be read."""
    if not path.exists():
        raise UserError(f"{path} does not exist")
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a session file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not h5py.is_hdf5(path):
        raise UserError(f"{path.name} is not an HDF5 file")
    try:
        return h5py.File(path, "r")               # a closed file: HDF5 checks it is whole
    except OSError as exc:
        if "already open for write" not in str(exc):
            raise UserError(f"{path.name} is truncated or damaged: {_first_line(exc)}") from None
    _check_not_truncated(path)                    # live or killed writer: SWMR read skips that check
    try:
        return _open_swmr_read(path)
    except OSError as exc:
        raise UserError(f"{path.name} is truncated or damaged: {_first_line(exc)}") from None


#: SWMR readers retry a metadata read whose checksum fails, sleeping 1, 2, 4, … ns between tries;
#: HDF5's default of 100 tries makes a corrupt file hang the reader for ~2^100 ns (forever).
#: 24 tries wait ~17 ms in all, ample for a live writer's metadata flush to land.
SWMR_METADATA_READ_ATTEMPTS = 24


def _open_swmr_read(path: Path) -> h5py.File:
    """``h5py.File(path, "r", libver="latest", swmr=True)`` with a bounded number of metadata read attempts."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    if not _set_metadata_read_attempts(fapl, SWMR_METADATA_READ_ATTEMPTS):
        return h5py.File(path, "r", libver="latest", swmr=True)
    fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ, fapl=fapl)
    return h5py.File(fid)


def _set_metadata_read_attempts(fapl, attempts: int) -> bool:
    """``H5Pset_metadata_read_attempts`` (h5py does not wrap it) on the HDF5 library h5py loaded."""
    function = _hdf5_function("H5Pset_metadata_read_attempts")
    return function is not None and function(fapl.id, attempts) >= 0


@functools.lru_cache(maxsize=None)
def _hdf5_function(name: str):
    import ctypes

    try:
        with open("/proc/self/maps") as maps:       # the libhdf5 h5py is linked against (Linux)
            paths = {line.split()[-1] for line in maps if "/libhdf5" in line and "_hl" not in line}
    except OSError:
        paths = set()
    for path in sorted(paths):
        try:
            function = getattr(ctypes.CDLL(path), name)
        except (OSError, AttributeError):
            continue
        function.argtypes = (ctypes.c_int64, ctypes.c_uint)
        function.restype = ctypes.c_int
        return function
    return None


def _check_not_truncated(path: Path) -> None:
    """Compare the end-of-file address in a version 2/3 superblock with the file's size."""
    with open(path, "rb") as handle:
        head = handle.read(64)
    if len(head) < 12 or head[8] not in (2, 3):
        return
    size_of_offsets = head[9]
    at = 12 + 2 * size_of_offsets
    stored_eof = int.from_bytes(head[at:at + size_of_offsets], "little")
    actual = path.stat().st_size
    if stored_eof > actual:
        raise UserError(f"{path.name} is truncated or damaged: {actual} bytes, its superblock says {stored_eof}")
