"""The session file's schema: its versions and kinds, the column tables of each group, their units, and what a
valid file holds.

A session file is one HDF5 file per run. Nothing outside :mod:`labpgt.session` reads or writes the
layout directly. It is data: attributes and plain numeric datasets only, no pickle, no object arrays.
``docs/session-format.md`` describes the format in full; in brief, schema ``labpgt-session/3``:

* root attributes ``schema``, ``kind`` ("training" or "sweep"), ``config`` (JSON: everything needed
  to rerun the run), ``created``, ``versions``, ``instruments``, ``reader_needs``;
* ``/frequencies`` (Hz), the axis of every spectrum;
* ``queries``: one row per measurement (:data:`QUERY_COLUMNS`, :data:`QUERY_TIME_COLUMNS`), whose
  ``index`` is the dimension scale of the rows;
* a training: ``steps`` (:data:`STEP_INT_COLUMNS`, :data:`STEP_FLOAT_COLUMNS`, :data:`STEP_RAGGED`),
  ``checkpoints`` (:data:`CHECKPOINT_ARRAYS`, :data:`CHECKPOINT_RAGGED`), optionally ``prior``; a
  sweep: ``points`` (:data:`POINT_FLOAT_COLUMNS`, :data:`POINT_INT_COLUMNS`);
* ``units`` on every physical dataset (:data:`UNITS`, :func:`setting_units`), dimension scales and
  NeXus ``NXdata`` groups under ``/plots`` (:mod:`labpgt.session.nexus`).

``labpgt-session/2`` is /3 without ``queries/index`` and the self-description (and with its queries
compressed through a plugin); ``labpgt-session/1`` moreover lacks ``kind``, ``queries/layer`` and
``/token``, ``steps/validation_*``, ``checkpoints/method`` and ``prior``. Both are read, never
written: the reader presents them as /3 files would hold them (:func:`query_columns`,
:func:`v1_kind`, :func:`missing_query_column`).
"""

from __future__ import annotations

import hashlib
import zlib

import numpy as np

SCHEMA = "labpgt-session/3"
SCHEMA_V2 = "labpgt-session/2"
SCHEMA_V1 = "labpgt-session/1"
#: the schemas whose writers recorded no digests of a step's rows and a checkpoint's arrays (nothing to check)
SCHEMAS_BEFORE_DIGESTS = (SCHEMA_V1, SCHEMA_V2)
READABLE_SCHEMAS = (SCHEMA_V1, SCHEMA_V2, SCHEMA)

KIND_GROUPS = {"training": ("queries", "steps", "checkpoints"), "sweep": ("queries", "points")}
#: a training's record of its pauses (labpgt.bench.suspenders), in files since 0.2: ``suspensions/record`` (JSON per
#: suspension: step, started, ended, condition, value, discarded_queries) and ``checks`` (each check query of a
#: suspender: ``record`` JSON — step, time, condition, value — and its ``spectrum``)
PAUSE_GROUPS = ("suspensions", "checks")
KINDS = tuple(KIND_GROUPS)

ROLES = ("calibration", "baseline", "plus", "minus", "eval", "sweep", "test")  # append only: codes are stored
ROLE_CODES = {name: code for code, name in enumerate(ROLES)}

QUERY_COLUMNS = {  # name: (dtype, has a width)
    "index": ("int64", False),
    "step": ("int64", False),
    "role": ("uint8", False),
    "direction": ("int32", False),
    "sample": ("int32", False),
    "layer": ("int16", False),
    "token": ("int32", False),
    "u": ("float64", True),
    "settings": ("float64", True),
    "spectrum": ("float32", True),
    "features": ("float64", True),
    "timestamp": ("float64", False),
    "attempts": ("int32", False),
}
QUERY_COLUMNS_SINCE_V2 = ("layer", "token")
QUERY_COLUMNS_SINCE_V3 = ("index",)
# Each query's time and the ring's temperature, float64 (n,), NaN where a reservoir has none: ``wall_seconds``
# (wall-clock duration), ``sim_time`` (a simulated bench's virtual clock at the query's end, s) and
# ``temperature_c`` (the ring's temperature sensor) and ``field_mt`` (the field a gaussmeter reads after the
# query). Optional: files written before them lack them (read as NaN).
QUERY_TIME_COLUMNS = ("wall_seconds", "sim_time", "temperature_c", "field_mt")

STEP_INT_COLUMNS = ("step", "training_queries", "eval_queries", "queries")
STEP_FLOAT_COLUMNS_SINCE_V2 = ("validation_loss", "validation_accuracy")
STEP_FLOAT_COLUMNS = (
    "loss",
    "loss_plus",
    "loss_minus",
    "grad_norm",
    "lr",
    "train_loss",
    "test_loss",
    "train_accuracy",
    "test_accuracy",
    "measure_seconds",
    "wall_time",
) + STEP_FLOAT_COLUMNS_SINCE_V2
STEP_RAGGED = {"perturbation": "int8", "extra": "uint8"}
PERTURBATION_DIMS = 4

CHECKPOINT_ARRAYS = {"params": "float64", "optimizer": None, "method": None}  # group: dtype (None: numeric as given)
CHECKPOINT_ARRAYS_SINCE_V2 = ("method",)
CHECKPOINT_RAGGED = ("rng_states", "trainer_state")

POINT_INT_COLUMNS = ("queries",)
POINT_FLOAT_COLUMNS = ("value", "peak_frequency_hz", "peak_power_dbm", "margin_db", "wall_time")
POINT_VALUES = POINT_FLOAT_COLUMNS[:4]  # what a sweep reports per point (wall_time and queries are the writer's)

SWEEP_FIELDS = {
    "instrument": (str,),
    "setting": (str,),
    "start": (int, float),
    "stop": (int, float),
    "points": (int,),
    "tones": (bool,),
    "margin_db": (int, float),
}  # of config["sweep"], by type

NUMERIC_KINDS = "biuf"  # numpy dtype kinds a checkpoint array may have


# --------------------------------------------------------------------------- what a valid file holds
def stored_layout(schema: str, kind: str) -> str:
    """The kind whose groups the file holds: a /1 file holds the training layout whatever it recorded."""
    return "training" if schema == SCHEMA_V1 else kind


def required_groups(schema: str, kind: str) -> tuple[str, ...]:
    groups = KIND_GROUPS[stored_layout(schema, kind)]
    if "checkpoints" in groups:
        groups += tuple(f"checkpoints/{name}" for name in checkpoint_array_groups(schema))
    return groups


def required_datasets(schema: str, kind: str) -> dict[str, tuple[str, int]]:
    """``{path: (dtype, ndim)}`` of every fixed-name dataset the file must hold (ragged ends included)."""
    groups = KIND_GROUPS[stored_layout(schema, kind)]
    required = {"frequencies": ("float64", 1)}
    for name, (dtype, wide) in query_columns(schema).items():
        required[f"queries/{name}"] = (dtype, 2 if wide else 1)
    if "steps" in groups:
        required.update({f"steps/{name}": ("int64", 1) for name in STEP_INT_COLUMNS})
        required.update({f"steps/{name}": ("float64", 1) for name in step_float_columns(schema)})
        required["steps/perturbation_shape"] = ("int32", 2)
        required.update(_ragged("steps", STEP_RAGGED))
    if "checkpoints" in groups:
        required["checkpoints/step"] = ("int64", 1)
        required.update(_ragged("checkpoints", dict.fromkeys(CHECKPOINT_RAGGED, "uint8")))
    if "points" in groups:
        required.update({f"points/{name}": ("int64", 1) for name in POINT_INT_COLUMNS})
        required.update({f"points/{name}": ("float64", 1) for name in POINT_FLOAT_COLUMNS})
    return required


def _ragged(group: str, columns: dict) -> dict:
    required = {}
    for name, dtype in columns.items():
        required[f"{group}/{name}"] = (dtype, 1)
        required[f"{group}/{name}_end"] = ("int64", 1)
    return required


def query_columns(schema: str) -> dict:
    """The query columns a file of ``schema`` stores."""
    missing = {SCHEMA_V1: QUERY_COLUMNS_SINCE_V2 + QUERY_COLUMNS_SINCE_V3, SCHEMA_V2: QUERY_COLUMNS_SINCE_V3}
    return {k: v for k, v in QUERY_COLUMNS.items() if k not in missing.get(schema, ())}


def step_float_columns(schema: str) -> tuple[str, ...]:
    if schema == SCHEMA_V1:
        return tuple(name for name in STEP_FLOAT_COLUMNS if name not in STEP_FLOAT_COLUMNS_SINCE_V2)
    return STEP_FLOAT_COLUMNS


def checkpoint_array_groups(schema: str) -> tuple[str, ...]:
    if schema == SCHEMA_V1:
        return tuple(name for name in CHECKPOINT_ARRAYS if name not in CHECKPOINT_ARRAYS_SINCE_V2)
    return tuple(CHECKPOINT_ARRAYS)


# --------------------------------------------------------------------------- reading /1 and /2 files
def v1_kind(config: dict) -> str:
    """The kind a /1 file recorded: the old ring sweep said so as its training method."""
    return "sweep" if config["train"].get("method") == "sweep" else "training"


def missing_query_column(name: str, start: int, roles: np.ndarray, sweep_code: int | None) -> np.ndarray:
    """What the rows ``start:start + len(roles)`` of an older file read for a column it lacks: their index;
    layer 0 (-1 for sweep rows); token -1."""
    if name == "index":
        return np.arange(start, start + roles.shape[0], dtype=np.int64)
    if name == "layer":
        return (
            np.where(roles == sweep_code, -1, 0).astype(np.int16)
            if sweep_code is not None
            else np.zeros(roles.shape, dtype=np.int16)
        )
    return np.full(roles.shape, -1, dtype=np.int32)


# --------------------------------------------------------------------------- units
#: ``units`` of each physical dataset (UDUNITS spelling); queries/settings and points/value take theirs from
#: the setting's name (:func:`setting_units`)
UNITS = {
    "frequencies": "Hz",
    "queries/spectrum": "dBm",
    "queries/timestamp": "s",
    "queries/wall_seconds": "s",
    "queries/sim_time": "s",
    "queries/temperature_c": "°C",
    "queries/field_mt": "mT",
    "steps/measure_seconds": "s",
    "steps/wall_time": "s",
    "points/peak_frequency_hz": "Hz",
    "points/peak_power_dbm": "dBm",
    "points/margin_db": "dB",
    "points/wall_time": "s",
}
#: a setting's units by the end of its name (``gen1.power_dbm``, ``ring.field_mt``, …)
SETTING_UNIT_SUFFIXES = (
    ("_dbm", "dBm"),
    ("_hz", "Hz"),
    ("_db", "dB"),
    ("_mt", "mT"),
    ("_c", "°C"),
    ("_s", "s"),
    ("_a", "A"),
)


def setting_units(name: str) -> str:
    """The units of the instrument setting ``name`` ("" when its name does not say)."""
    return next((units for suffix, units in SETTING_UNIT_SUFFIXES if name.endswith(suffix)), "")


# --------------------------------------------------------------------------- checkpoint arrays
def params_sha256(params: dict) -> str:
    """SHA-256 over the arrays of ``params`` as little-endian float64 bytes, concatenated in sorted name order.

    ``final_params_sha256`` of :func:`labpgt.inspection.inspect_session` is this of the last
    checkpoint's params; for a live trainer use ``params_sha256(trainer.model.state_dict())``.
    """
    digest = hashlib.sha256()
    for name in sorted(params):
        digest.update(np.ascontiguousarray(params[name], dtype="<f8").tobytes())
    return digest.hexdigest()


def dataset_name(name: str) -> str:
    """The HDF5 dataset name of checkpoint array ``name`` (any non-empty string without "/")."""
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"checkpoint array name {name!r}: must be a non-empty string without '/'")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"checkpoint array name {name!r}: not encodable as UTF-8") from None
    if name == ".":
        return "%2E"
    return name.replace("%", "%25").replace("\0", "%00")


def array_name(dataset: str) -> str:
    """The checkpoint array name of HDF5 dataset name ``dataset`` (inverse of :func:`dataset_name`)."""
    if dataset == "%2E":
        return "."
    parts = dataset.split("%25")
    return "%".join(part.replace("%00", "\0") for part in parts)


# --------------------------------------------------------------------------- what makes a step whole
QUERIES_DIGEST = "_queries_crc32"  # in a step's ``extra``: the CRC-32 of its query rows, as written
ARRAYS_DIGEST = "_arrays_crc32"  # in a checkpoint's ``trainer_state``: the CRC-32 of its arrays


def rows_digest(columns: dict) -> int:
    """CRC-32 of query rows given as ``{column: array}`` (each in its dataset's dtype), in the order of the names:
    a writer records it with a step, a reader recomputes it to know the rows on the disk are those written."""
    crc = 0
    for name in sorted(columns):
        crc = zlib.crc32(np.ascontiguousarray(columns[name]).tobytes(), crc)
    return crc
