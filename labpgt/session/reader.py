"""Reading session files: :class:`SessionReader`, read-only, for a live or finished file of any kind and schema.

The reader checks a file against :mod:`labpgt.session.schema` before handing anything out, and
every problem — not HDF5, truncated, damaged, a schema or kind it does not know — is one
:class:`~labpgt.errors.UserError` line. A ``labpgt-session/1`` or /2 file is presented as a /3 file
would hold it: the query columns it lacks at their defaults (the row index; a /1 file's layer and
token), and for /1 its kind from its config, empty method states, and an old sweep's points read
from its steps.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import NoReturn

import h5py
import numpy as np

from labpgt.errors import UserError
from labpgt.recording import Checkpoint
from labpgt.session import hdf5
from labpgt.session.liveness import writer_holds_lock
from labpgt.session.schema import (
    ARRAYS_DIGEST,
    CHECKPOINT_ARRAYS,
    CHECKPOINT_RAGGED,
    KINDS,
    NUMERIC_KINDS,
    POINT_FLOAT_COLUMNS,
    POINT_INT_COLUMNS,
    POINT_VALUES,
    QUERIES_DIGEST,
    QUERY_COLUMNS,
    QUERY_TIME_COLUMNS,
    READABLE_SCHEMAS,
    SCHEMA_V1,
    SCHEMAS_BEFORE_DIGESTS,
    STEP_FLOAT_COLUMNS,
    STEP_INT_COLUMNS,
    STEP_RAGGED,
    SWEEP_FIELDS,
    array_name,
    checkpoint_array_groups,
    missing_query_column,
    query_columns,
    required_datasets,
    required_groups,
    rows_digest,
    step_float_columns,
    v1_kind,
)

ROOT_ATTRIBUTES = ("config", "created", "versions", "instruments")


#: what h5py, numpy and json raise on a damaged file (h5py gives some HDF5 failures as RuntimeError)
DAMAGE_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError)


def _damaged_is_user_error(method):
    """A read that fails on a damaged file (HDF5 error, bad JSON, bad lengths) is one UserError line."""

    @functools.wraps(method)
    def read(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except DAMAGE_ERRORS as exc:
            raise UserError(f"{self.path.name} is truncated or damaged: {hdf5.first_line(exc)}") from None

    return read


def _json_whole(group, name: str, row: int) -> bool:
    """Whether row ``row`` of the ragged JSON column ``name`` decodes."""
    try:
        json.loads(hdf5.ragged_row(group, name, row).tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def _text(value) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


class SessionReader:
    """Read-only access to a session file, live or finished; every problem is a one-line UserError.

    ``schema`` is the file's, ``kind`` what it recorded ("training" or "sweep"). Lengths are *valid*
    lengths: rows a killed writer left half-written are not counted. Use :meth:`refresh` to see rows
    a live writer has appended since.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._file = hdf5.open_read_only(self.path)
        try:
            self._read_root()
            self._validate_layout()
            self._read_names()
            self.refresh()
        except UserError:
            self._file.close()
            raise
        except DAMAGE_ERRORS as exc:
            self._file.close()
            raise UserError(f"{self.path.name} is truncated or damaged: {hdf5.first_line(exc)}") from None

    # ---- opening and validation
    def _fail(self, message) -> NoReturn:
        raise UserError(f"{self.path.name}: {message}")

    def _read_root(self) -> None:
        attrs = self._file.attrs
        if "schema" not in attrs:
            self._fail("not a labpgt session file (no 'schema' attribute)")
        schema = _text(attrs["schema"])
        if schema is None or schema not in READABLE_SCHEMAS:
            shown = repr(schema) if schema is not None else "of a non-text value"
            readable = f"{', '.join(READABLE_SCHEMAS[:-1])} and {READABLE_SCHEMAS[-1]}"
            self._fail(f"schema {shown} is not supported (this labpgt reads {readable})")
        self.schema = schema
        for key in ROOT_ATTRIBUTES + (() if schema == SCHEMA_V1 else ("kind",)):
            if key not in attrs:
                self._fail(f"damaged session: missing root attribute '{key}'")
        try:
            self.config = json.loads(attrs["config"])
            self.versions = json.loads(attrs["versions"])
            self.instruments = json.loads(attrs["instruments"])
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
            self._fail(f"damaged session: unreadable JSON attribute ({hdf5.first_line(exc)})")
        self.created = str(attrs["created"])
        if not isinstance(self.config, dict):
            self._fail("damaged session: the config attribute is not a table")
        self.kind = self._read_kind()
        self.sweep = self._read_sweep() if self.kind == "sweep" else None

    def _read_kind(self) -> str:
        if self.schema == SCHEMA_V1:
            self._expect_table(self.config, "train")
            return v1_kind(self.config)
        kind = _text(self._file.attrs["kind"])
        if kind is None or kind not in KINDS:
            shown = repr(kind) if kind is not None else "of a non-text value"
            self._fail(f"kind {shown} is not supported (this labpgt reads {' and '.join(KINDS)})")
        if kind == "training":
            self._expect_table(self.config, "train")
        return kind

    def _read_sweep(self) -> dict:
        """What was swept: ``config["sweep"]`` (/1: ``config["train"]["sweep"]``)."""
        owner = self.config["train"] if self.schema == SCHEMA_V1 else self.config
        self._expect_table(owner, "sweep")
        sweep = owner["sweep"]
        for key, types in SWEEP_FIELDS.items():
            if not isinstance(sweep.get(key), types):
                self._fail(f"damaged session: the sweep's '{key}' is missing or not a {types[0].__name__}")
        return sweep

    def _expect_table(self, owner: dict, key: str) -> None:
        if not isinstance(owner.get(key), dict):
            self._fail(f"damaged session: the config attribute has no '{key}' table")

    def _validate_layout(self) -> None:
        f = self._file
        self._row_datasets: list[str] = []
        for name in required_groups(self.schema, self.kind):
            if not isinstance(f.get(name), h5py.Group):
                self._fail(f"damaged session: missing group '{name}'")
        for name, (dtype, ndim) in required_datasets(self.schema, self.kind).items():
            self._expect(name, dtype, ndim)
        for group in self._checkpoint_groups():
            for name in f[f"checkpoints/{group}"]:
                self._expect(f"checkpoints/{group}/{name}", CHECKPOINT_ARRAYS[group], None)
        q = f["queries"]
        if "prior" in f:
            self._validate_prior(q)
        if q["spectrum"].shape[1] != f["frequencies"].shape[0]:
            self._fail(
                f"damaged session: queries/spectrum has {q['spectrum'].shape[1]} points but "
                f"frequencies has {f['frequencies'].shape[0]}"
            )

    def _validate_prior(self, queries) -> None:
        prior = self._file["prior"]
        if not isinstance(prior, h5py.Group) or self.schema == SCHEMA_V1:
            self._fail("damaged session: 'prior' is not a group of a /2 or later file")
        for name, width in (("u", queries["u"].shape[1]), ("features", queries["features"].shape[1])):
            ds = prior.get(name)
            if not isinstance(ds, h5py.Dataset) or ds.dtype != np.float64 or ds.ndim != 2 or ds.shape[1] != width:
                self._fail(f"damaged session: prior/{name} is not float64 rows of width {width}")
        if prior["u"].shape[0] != prior["features"].shape[0]:
            self._fail("damaged session: prior/u and prior/features differ in rows")

    def _expect(self, name, dtype, ndim) -> None:
        """Dataset ``name`` is there with ``dtype`` (None: any numeric dtype) and ``ndim`` dimensions (None: any)."""
        ds = self._file.get(name)
        if not isinstance(ds, h5py.Dataset):
            self._fail(f"damaged session: missing dataset '{name}'")
        if name != "frequencies":
            self._row_datasets.append(name)
        if dtype is None and ds.dtype.kind not in NUMERIC_KINDS:
            self._fail(f"damaged session: '{name}' has dtype {ds.dtype}, expected numbers")
        if dtype is not None and ds.dtype != np.dtype(dtype):
            self._fail(f"damaged session: '{name}' has dtype {ds.dtype}, expected {np.dtype(dtype)}")
        if ndim is not None and ds.ndim != ndim:
            self._fail(f"damaged session: '{name}' has shape {ds.shape}, expected {ndim} dimension(s)")
        if ndim is None and ds.ndim < 1:
            self._fail(f"damaged session: '{name}' is a scalar, expected one row per checkpoint")

    def _checkpoint_groups(self) -> tuple[str, ...]:
        return checkpoint_array_groups(self.schema) if self._stores("checkpoints") else ()

    def _stores(self, group: str) -> bool:
        return group in required_groups(self.schema, self.kind)

    def _read_names(self) -> None:
        f = self._file
        try:
            self.role_names = tuple(json.loads(f["queries/role"].attrs["names"]))
            self.setting_names = tuple(json.loads(f["queries/settings"].attrs["names"]))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            self._fail(f"damaged session: unreadable JSON attribute ({hdf5.first_line(exc)})")
        if f["queries/settings"].shape[1] != len(self.setting_names):
            self._fail("damaged session: queries/settings does not match its 'names' attribute")
        self._sweep_code = self.role_names.index("sweep") if "sweep" in self.role_names else None
        self._query_columns = query_columns(self.schema)
        self.frequencies = f["frequencies"][()]
        self._arrays = {
            group: {
                array_name(ds) if self.schema != SCHEMA_V1 else ds: f"checkpoints/{group}/{ds}"
                for ds in f[f"checkpoints/{group}"]
            }
            for group in self._checkpoint_groups()
        }
        self.param_names = tuple(self._arrays.get("params", ()))
        self.optimizer_names = tuple(self._arrays.get("optimizer", ()))
        self.method_names = tuple(self._arrays.get("method", ()))

    # ---- lengths
    @_damaged_is_user_error
    def refresh(self) -> None:
        """See rows appended by a live writer since opening (SWMR); recomputes the valid lengths."""
        f = self._file
        if f.swmr_mode:
            for name in sorted(self._row_datasets, key=_refresh_rank):
                f[name].refresh()
        self.n_queries = hdf5.group_length(f["queries"], self._query_columns)
        self.n_steps = self.n_checkpoints = 0
        self.checkpoint_steps = np.zeros(0, dtype=np.int64)
        if self._stores("steps"):
            self._refresh_training()
        if self.kind == "sweep":
            self.n_points = self._count_points()

    def _refresh_training(self) -> None:
        f = self._file
        arrays = [f[path].shape[0] for names in self._arrays.values() for path in names.values()]
        n_ckpt = min(
            f["checkpoints/step"].shape[0], *arrays, *(hdf5.ragged_rows(f["checkpoints"], n) for n in CHECKPOINT_RAGGED)
        )
        step_columns = STEP_INT_COLUMNS + step_float_columns(self.schema) + ("perturbation_shape",)
        n_steps = min(
            hdf5.group_length(f["steps"], step_columns), *(hdf5.ragged_rows(f["steps"], n) for n in STEP_RAGGED)
        )
        # a writer that failed mid-write (the disk full) can leave a last row whose JSON was reserved but
        # never written: such a row is not whole, as if the writer had been killed before it
        while n_ckpt and not all(_json_whole(f["checkpoints"], n, n_ckpt - 1) for n in CHECKPOINT_RAGGED):
            n_ckpt -= 1
        while n_steps and not _json_whole(f["steps"], "extra", n_steps - 1):
            n_steps -= 1
        # a checkpoint counts once its step's queries are all in the file (a writer killed mid-flush, or files
        # of a writer that kept back the rows of a partial compressed chunk, can lack some)
        recorded = f["steps/queries"][:n_steps]
        steps = f["checkpoints/step"][:n_ckpt]
        while n_ckpt and 0 <= steps[n_ckpt - 1] < n_steps and recorded[steps[n_ckpt - 1]] > self.n_queries:
            n_ckpt -= 1
        # a writer whose disk filled mid-flush can leave rows that are there by their length only (the space for
        # their data never written: zeros): a step counts once its rows and its checkpoint are the bytes written.
        # A live writer's file is whole at every flush (SWMR), and a reader's chunk cache may lag it: not checked.
        if self.schema not in SCHEMAS_BEFORE_DIGESTS and not writer_holds_lock(self.path):
            while n_ckpt and not (
                self._step_whole(int(steps[n_ckpt - 1]), recorded) and self._checkpoint_whole(n_ckpt - 1)
            ):
                n_ckpt -= 1
        self.n_steps = n_steps
        self.checkpoint_steps = f["checkpoints/step"][:n_ckpt]
        self.n_checkpoints = n_ckpt
        if n_steps:  # the queries of complete step rows only: never a row of a torn step
            self.n_queries = min(self.n_queries, int(recorded[-1]))

    def _step_whole(self, step: int, recorded) -> bool:
        """Whether step ``step``'s query rows are those its writer recorded (files before the digest, and a
        checkpoint with no step row to hold a digest: assumed)."""
        if not 0 <= step < len(recorded):
            return True
        try:
            digest = hdf5.json_value(hdf5.ragged_row(self._file["steps"], "extra", step)).get(QUERIES_DIGEST)
        except (ValueError, AttributeError):
            return False
        if digest is None:
            return True
        start, stop = (int(recorded[step - 1]) if step else 0), int(recorded[step])
        names = [*self._query_columns, *(n for n in QUERY_TIME_COLUMNS if n in self._file["queries"])]
        columns = {name: self._file[f"queries/{name}"][start:stop] for name in names}
        return rows_digest(columns) == digest

    def _checkpoint_whole(self, index: int) -> bool:
        """Whether checkpoint row ``index``'s arrays are those its writer recorded (files before the digest:
        assumed)."""
        state = hdf5.json_value(hdf5.ragged_row(self._file["checkpoints"], "trainer_state", index))
        if not isinstance(state, dict) or ARRAYS_DIGEST not in state:
            return True
        rows = {
            f"{group}/{name}": np.asarray(self._file[path][index])
            for group, names in self._arrays.items()
            for name, path in names.items()
        }
        return rows_digest(rows) == state[ARRAYS_DIGEST]

    def _count_points(self) -> int:
        if self._stores("points"):
            return hdf5.group_length(self._file["points"], POINT_INT_COLUMNS + POINT_FLOAT_COLUMNS)
        return self.valid_lengths()["steps"]  # a /1 sweep: one complete step per point

    @property
    def last_complete_step(self) -> int | None:
        """The step of the last checkpoint (None before the first step completed, and for a sweep)."""
        return int(self.checkpoint_steps[-1]) if self.n_checkpoints else None

    @_damaged_is_user_error
    def valid_lengths(self) -> dict:
        """Rows per group that belong to complete steps (what resume keeps), or to complete points."""
        if not self._stores("steps"):
            done = int(self._file["points/queries"][self.n_points - 1]) if self.n_points else 0
            return {"queries": done, "points": self.n_points}
        last = self.last_complete_step
        if last is None:
            return {"queries": 0, "steps": 0, "checkpoints": 0}
        steps = self._file["steps/step"][: self.n_steps]
        query_steps = self._file["queries/step"][: self.n_queries]
        return {
            "queries": int(np.searchsorted(query_steps, last, side="right")),
            "steps": int(np.searchsorted(steps, last, side="right")),
            "checkpoints": self.n_checkpoints,
        }

    @property
    @_damaged_is_user_error
    def planned_steps(self) -> int:
        """The steps the training was to make (0 for a sweep): its resolved config's ``steps`` (a method
        fitted in closed form resolves to 1)."""
        if self.kind != "training":
            return 0
        return int(self.config["train"].get("steps") or 0)

    @property
    @_damaged_is_user_error
    def planned_points(self) -> int:
        """The points the sweep was to measure (0 for a training)."""
        return int(self.sweep.get("points") or 0) if self.sweep is not None else 0

    @property
    def completed(self) -> bool:
        """A training: the last planned step has a checkpoint. A sweep: every planned point is recorded."""
        if self.kind == "sweep":
            return self.n_points == self.planned_points
        return self.last_complete_step is not None and self.last_complete_step + 1 >= self.planned_steps

    @property
    def has_spectra(self) -> bool:
        return self.frequencies.size > 0

    # ---- queries
    @_damaged_is_user_error
    def queries(self, start: int = 0, stop: int | None = None, fields=None) -> dict:
        """Columns of query rows ``start:stop`` (valid rows only) as numpy arrays; ``role`` stays a code."""
        stop = self.n_queries if stop is None else min(stop, self.n_queries)
        names = tuple(fields) if fields is not None else tuple(QUERY_COLUMNS)
        stored = {
            name: self._file[f"queries/{name}"][start:stop]
            for name in names
            if name in self._query_columns or (name in QUERY_TIME_COLUMNS and name in self._file["queries"])
        }
        for name in set(names).intersection(QUERY_TIME_COLUMNS) - set(stored):  # a file from before them
            stored[name] = np.full(max(stop - start, 0), np.nan)
        if len(stored) < len(names):
            roles = stored["role"] if "role" in stored else self._file["queries/role"][start:stop]
            for name in set(names) - set(stored):
                stored[name] = missing_query_column(name, start, roles, self._sweep_code)
        return {name: stored[name] for name in names}

    def iter_queries(self, fields=None, block_rows: int = 1 << 14):
        """``(start, columns)`` blocks over all valid query rows."""
        for start in range(0, self.n_queries, block_rows):
            yield start, self.queries(start, start + block_rows, fields)

    def dataset(self, name: str) -> h5py.Dataset:
        """The raw dataset ``name`` (e.g. ``"queries/features"``), read-only; mind the valid lengths."""
        return self._file[name]

    def role_name(self, code: int) -> str:
        return self.role_names[int(code)] if 0 <= int(code) < len(self.role_names) else f"role{int(code)}"

    # ---- measurements from before the run
    @_damaged_is_user_error
    def suspensions(self) -> list[dict]:
        """The run's pauses, in order (each: step, started, ended, condition, value, discarded_queries); none in
        files before 0.2."""
        return self._records("suspensions")

    @_damaged_is_user_error
    def checks(self) -> list[dict]:
        """The check queries the run's suspenders measured (each: step, time, condition, value)."""
        return self._records("checks")

    def _records(self, group: str) -> list[dict]:
        if group not in self._file or "record_end" not in self._file[group]:
            return []
        rows = self._file[f"{group}/record_end"].shape[0]
        out = []
        for row in range(rows):
            try:
                out.append(hdf5.json_value(hdf5.ragged_row(self._file[group], "record", row)))
            except ValueError:  # a last row a writer did not finish: not whole
                break
        return out

    @_damaged_is_user_error
    def prior(self):
        """``(U, features, sources)`` of the pairs the run was given from earlier sessions, or None."""
        if "prior" not in self._file:
            return None
        prior = self._file["prior"]
        sources = json.loads(prior.attrs.get("sources", "[]"))
        if not isinstance(sources, list):
            self._fail("damaged session: prior sources are not a list")
        return prior["u"][()], prior["features"][()], sources

    # ---- steps (a training; a /1 sweep too)
    def _require_steps(self) -> None:
        if not self._stores("steps"):
            self._fail(f"records a {self.kind}: it has no steps")

    @_damaged_is_user_error
    def steps(self) -> dict:
        """Scalar step columns (valid rows) as numpy arrays."""
        self._require_steps()
        stored = STEP_INT_COLUMNS + step_float_columns(self.schema)
        return {
            name: self._file[f"steps/{name}"][: self.n_steps] if name in stored else np.full(self.n_steps, np.nan)
            for name in STEP_INT_COLUMNS + STEP_FLOAT_COLUMNS
        }

    @_damaged_is_user_error
    def perturbation(self, row: int):
        """The perturbation of step row ``row`` as stored (int8 array), or None."""
        self._require_steps()
        shape = self._file["steps/perturbation_shape"][row]
        if shape[0] < 0:
            return None
        flat = hdf5.ragged_row(self._file["steps"], "perturbation", row)
        return flat.reshape(tuple(int(s) for s in shape if s >= 0))

    @_damaged_is_user_error
    def step_extra(self, row: int) -> dict:
        """What the method recorded of step row ``row`` besides the standard columns (the writer's own digest left
        out)."""
        self._require_steps()
        extra = hdf5.json_value(hdf5.ragged_row(self._file["steps"], "extra", row))
        return {k: v for k, v in extra.items() if k != QUERIES_DIGEST} if isinstance(extra, dict) else extra

    # ---- checkpoints (a training)
    @_damaged_is_user_error
    def checkpoint(self, index: int) -> Checkpoint:
        """Checkpoint row ``index`` (negative counts from the last valid one)."""
        if not -self.n_checkpoints <= index < self.n_checkpoints:
            raise IndexError(f"checkpoint {index} of {self.n_checkpoints}")
        index %= self.n_checkpoints
        c = self._file["checkpoints"]
        return Checkpoint(
            step=int(c["step"][index]),
            params=self._array_row("params", index),
            optimizer_state=self._array_row("optimizer", index),
            rng_states=hdf5.json_value(hdf5.ragged_row(c, "rng_states", index)),
            trainer_state=self._trainer_state(index),
            method_state=self._array_row("method", index),
        )

    @_damaged_is_user_error
    def checkpoint_params(self, index: int) -> dict:
        return self._array_row("params", index)

    def _array_row(self, group: str, index: int) -> dict:
        return {name: self._file[path][index] for name, path in self._arrays.get(group, {}).items()}

    def _trainer_state(self, index: int) -> dict:
        ends = self._file["checkpoints/trainer_state_end"][: index + 1]
        blob = self._file["checkpoints/trainer_state"][: int(ends[-1])].tobytes()
        history: list[dict] = []
        state, start = {}, 0
        for end in ends:
            state = json.loads(blob[start : int(end)].decode("utf-8"))
            state.pop(ARRAYS_DIGEST, None)
            start = int(end)
            if "history_tail" in state:
                history = history[: state.pop("history_from")] + state.pop("history_tail")
                state["history"] = history
        return state

    def last_checkpoint(self) -> Checkpoint | None:
        return self.checkpoint(-1) if self.n_checkpoints else None

    # ---- points (a sweep)
    @_damaged_is_user_error
    def points(self) -> dict:
        """The recorded points of a sweep as numpy arrays: ``value``, ``peak_frequency_hz``,
        ``peak_power_dbm``, ``margin_db``, ``wall_time`` (float64) and ``queries`` (int64)."""
        if self.kind != "sweep":
            self._fail(f"records a {self.kind}: it has no points")
        if self._stores("points"):
            return {
                name: self._file[f"points/{name}"][: self.n_points] for name in POINT_FLOAT_COLUMNS + POINT_INT_COLUMNS
            }
        return self._points_from_steps()

    def _points_from_steps(self) -> dict:
        """A /1 sweep's points: each point's summary is in its step's ``extra``."""
        n = self.n_points
        extras = [self.step_extra(row) for row in range(n)]
        extras = [extra if isinstance(extra, dict) else {} for extra in extras]
        points = {
            name: np.array([float(extra.get(name, math.nan)) for extra in extras], dtype=np.float64)
            for name in POINT_VALUES
        }
        steps = self.steps()
        points["wall_time"] = steps["wall_time"][:n]
        points["queries"] = steps["queries"][:n]
        return points

    # ---- closing
    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _refresh_rank(name: str) -> int:
    """The order a live file's datasets are looked at again: the reverse of the order the writer flushes them
    (a step's queries, then its row, then its checkpoint), so that whatever is seen of a later one is backed by the
    earlier ones (a checkpoint seen before its step row would be a step without a row)."""
    group = name.split("/", 1)[0]
    return {"checkpoints": 0, "queries": 2}.get(group, 1)
