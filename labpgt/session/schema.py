"""The session file's schema: its versions and kinds, the column tables of each group, and what a valid file holds.

A session file is one HDF5 file per run. Nothing outside :mod:`labpgt.session` reads or writes the
layout directly. It is data: attributes and plain numeric datasets only, no pickle, no object arrays.

Schema ``labpgt-session/2``
===========================

Root attributes (all strings)::

    schema        "labpgt-session/2"
    kind          what the run was, which fixes the groups below: "training" or "sweep" (KINDS)
    config        JSON of everything needed to rerun the run; by kind:
                  training  {"train": TrainConfig as a dict (resolved: no None left),
                             "bench": BenchConfig.to_dict() or null (digital reservoir),
                             "reservoir": {"input_width", "feature_width", "setting_names"},
                             "model": the network's specification (labpgt.architectures),
                             "engine": "labpgt-engine/2" (labpgt.network.ENGINE; absent: the
                                       numpy engine of /1 files),
                             "layout": what a twin reservoir models (runs against a twin only)}
                  sweep     {"sweep": {"instrument", "setting", "start", "stop", "points", "tones",
                                       "margin_db", "fixed": {"<instrument>.<setting>": value held}},
                             "bench": BenchConfig.to_dict(), "reservoir": {...as above}}
    created       ISO 8601 UTC time the file was created
    versions      JSON {"labpgt", "numpy", "h5py", "hdf5", "python", "numerics": the numerical
                  fingerprint replay compares (labpgt.numerics.fingerprint)}
    instruments   JSON {name: identity} (e.g. the *IDN? answers), {} when none

``/frequencies`` float64 (P,) Hz — the shared axis of every spectrum (P = 0 without instruments).

Group ``queries`` (every kind) — one row per reservoir measurement, in measurement order (n rows)::

    step       int64   (n,)    0-based training step (calibration and the first evaluation: 0);
                               in a sweep, the index of the point
    role       uint8   (n,)    code; attribute ``names`` = JSON list, code i ↦ names[i]
                               (calibration, baseline, plus, minus, eval, sweep)
    direction  int32   (n,)    perturbation direction, -1 for none
    sample     int32   (n,)    index into the training split; n_train + i for test sample i; -1 for none
    layer      int16   (n,)    which physical layer of the network measured the row; -1 for none
    token      int32   (n,)    the token position of the row in a sequence model; -1 for none
    u          float64 (n, d)  the reservoir input asked for
    settings   float64 (n, S)  instrument settings sent; attribute ``names`` = JSON list (S,)
    spectrum   float32 (n, P)  trace in dBm on /frequencies, on a grid of attribute ``resolution_db``
                               (2⁻⁷ dB, labpgt.bench.features.TRACE_RESOLUTION_DB: the trace the
                               features were computed from, exactly; files without the attribute
                               hold the analyzer's float32 as read)
    features   float64 (n, m)  what the model saw
    timestamp  float64 (n,)    Unix time the query started (NaN if unknown)
    attempts   int32   (n,)    tries the query took

Kind ``training``: groups ``steps`` and ``checkpoints``.

Group ``steps`` — one row per optimizer step (row i is step i)::

    step, training_queries, eval_queries, queries (query rows recorded so far)   int64 (s,)
    loss, loss_plus, loss_minus, grad_norm, lr, train_loss, test_loss,
    train_accuracy, test_accuracy, measure_seconds, wall_time,
    validation_loss, validation_accuracy                                           float64 (s,)
        (NaN when the trainer did not report it, e.g. accuracies between evaluations; a run evaluates
        on the test split or on the validation split, config["train"]["holdout"]; a validation run
        measures test_loss and test_accuracy once, at its last step, with queries of role ``test``)
    perturbation        int8 ragged: the estimator's directions of this step, flattened
    perturbation_shape  int32 (s, 4)  its shape, padded with -1 (all -1: no perturbation)
    extra               uint8 ragged: JSON of any other value the trainer reported

Group ``checkpoints`` — the state after a step (row j; every step by default)::

    step                int64 (c,)
    params/<name>       float64 (c, *shape)   the network's arrays (Checkpoint.params)
    optimizer/<name>    (c, *shape)           the optimizer's arrays, numeric dtype as given
    method/<name>       (c, *shape)           the training method's arrays (Checkpoint.method_state),
                                              numeric dtype as given; the group may be empty
    rng_states          uint8 ragged: JSON of every RNG state (batches, estimator, reservoir)
    trainer_state       uint8 ragged: JSON of the trainer's counters; its growing ``history``
                        is stored as a delta: {"history_from": k, "history_tail": [...]} means
                        history = previous checkpoint's history[:k] + tail

Group ``prior`` (optional) — measurements from before the run that its method learns from (a twin's
pairs from earlier sessions of the same bench, ``labpgt train --twin-from``), kept in the session so
that resume and replay need nothing but the file::

    u         float64 (r, d)
    features  float64 (r, m)
    attribute ``sources``: JSON list of {"path", "sha256", "rows", "kind"} of the sessions they came from

The names, shapes and dtypes of the checkpoint arrays are fixed by the template checkpoint the
file was created with. An array name is any non-empty string without "/" (``block0.attn.wq``,
``0.mu.enc_W``); HDF5 cannot hold the name "." or a NUL, so the dataset name is the array name with
"%" written "%25", NUL "%00" and a name "." as "%2E" (:func:`dataset_name`, :func:`array_name`).

Kind ``sweep``: group ``points`` — one row per swept point (row i is point i), no steps, no checkpoints::

    value, peak_frequency_hz, peak_power_dbm, margin_db, wall_time   float64 (k,)
    queries                                                          int64 (k,) query rows so far

``margin_db`` is how far the strongest line (injected tones excluded) stands above the trace's
median; the auto-oscillation threshold of a loop-gain sweep is derived from it
(:func:`labpgt.sweeps.estimate_threshold`), not stored.

A *ragged* column NAME is a 1-D dataset of values plus ``NAME_end`` int64 (rows,): row i is
``NAME[NAME_end[i-1]:NAME_end[i]]`` (the value dataset carries the attribute ``ragged_end``).
JSON in ragged uint8 rather than variable-length strings keeps every dataset fixed-size, which
SWMR handles without the global heap.

Storage and durability
----------------------
Every row dataset is chunked and resizable along its first axis. The ``queries`` columns of a
training — nearly all of a file — are compressed (Blosc2, Zstandard after a byte shuffle, through
``hdf5plugin``; :data:`labpgt.session.hdf5.ROW_FILTER`) in chunks of 128 rows. Precision is a
stated choice, not a side effect: the spectra are stored on the 2⁻⁷ dB grid the bench puts every
trace on before computing features (finer than any analyzer's 0.01 dB display resolution, far
below its trace noise; see :mod:`labpgt.bench.features`), and every other column is stored
exactly as given. The grid leaves the low mantissa bits zero and the shuffle groups the bytes,
which is what the compressor removes (``benchmarks/session_size.py`` measures where the bytes go).
Under SWMR, HDF5 does not reuse the space of a compressed chunk that is rewritten, and appending
to a partial chunk rewrites it, so a live file carries dead space (about a tenth of the default
run's). Every row is nevertheless written at every flush — nothing measured waits in memory for a
chunk to fill, so a writer killed outright (SIGKILL, power loss) loses no query of a flushed step —
and the writer removes the dead space when it closes: a file with more than 2 % of it is copied
into a fresh one that atomically replaces it (``hdf5.compact``; resume rewrites the file anyway). A sweep (one row a point) keeps its
queries plain, as do the ``steps`` and ``checkpoints`` rows (one a step, a small part of the file:
a plain chunk is rewritten in place). The ``prior`` group, written once, is lzf-compressed. Files
written before (every row dataset plain, spectra as the analyzer sent them) read the same way;
resume keeps each dataset's compression. All datasets are created up front, then the file
switches to SWMR mode, so a reader (the GUI) can follow a live run. Rows are buffered in memory and appended
once per flush (one resize per dataset per step or point). A training is flushed at every step row
and every checkpoint, a sweep at every point. The logical length of a group is the smallest extent
of its datasets (a writer killed mid-flush leaves them uneven).

*The last complete step* of a training is the step of the last checkpoint row whose step's
queries (``steps/queries`` of its row) are all in the file: the trainer reports a step's row
before its checkpoint and both are flushed, so such a checkpoint row implies its step is whole. Queries with a larger step belong to an unfinished step; resume drops them and they
are measured again. A sweep is not resumed; it is *completed* when it holds every planned point.
:func:`params_sha256` fingerprints a checkpoint's params (``final_params_sha256`` of ``labpgt inspect``).

Schema ``labpgt-session/1`` (read, never written)
=================================================
The training layout above without the ``kind`` attribute, ``queries/layer``, ``queries/token``,
``steps/validation_*``, ``checkpoints/method`` and ``prior``. Such a file reads as kind ``training`` — or ``sweep`` when
``config["train"]["method"] == "sweep"``: the old ring sweep wrote its points as steps (their
summary in each step's ``extra``, one empty checkpoint per point, what was swept in
``config["train"]["sweep"]``). Its rows read layer 0 (-1 for rows of role ``sweep``) and token -1,
its checkpoints an empty method state. Resuming a /1 training rewrites it as /2.
"""

from __future__ import annotations

import hashlib

import numpy as np

SCHEMA = "labpgt-session/2"
SCHEMA_V1 = "labpgt-session/1"
READABLE_SCHEMAS = (SCHEMA_V1, SCHEMA)

KIND_GROUPS = {"training": ("queries", "steps", "checkpoints"), "sweep": ("queries", "points")}
KINDS = tuple(KIND_GROUPS)

ROLES = ("calibration", "baseline", "plus", "minus", "eval", "sweep", "test")  # append only: codes are stored
ROLE_CODES = {name: code for code, name in enumerate(ROLES)}

QUERY_COLUMNS = {  # name: (dtype, has a width)
    "step": ("int64", False), "role": ("uint8", False), "direction": ("int32", False),
    "sample": ("int32", False), "layer": ("int16", False), "token": ("int32", False),
    "u": ("float64", True), "settings": ("float64", True), "spectrum": ("float32", True),
    "features": ("float64", True), "timestamp": ("float64", False), "attempts": ("int32", False),
}
QUERY_COLUMNS_SINCE_V2 = ("layer", "token")
# Each query's time and the ring's temperature, float64 (n,), NaN where a reservoir has none: ``wall_seconds``
# (wall-clock duration), ``sim_time`` (a simulated bench's virtual clock at the query's end, s) and
# ``temperature_c`` (the ring controller's sensor). Optional: files written before them lack them.
QUERY_TIME_COLUMNS = ("wall_seconds", "sim_time", "temperature_c")

STEP_INT_COLUMNS = ("step", "training_queries", "eval_queries", "queries")
STEP_FLOAT_COLUMNS_SINCE_V2 = ("validation_loss", "validation_accuracy")
STEP_FLOAT_COLUMNS = ("loss", "loss_plus", "loss_minus", "grad_norm", "lr", "train_loss", "test_loss",
                      "train_accuracy", "test_accuracy", "measure_seconds", "wall_time") + STEP_FLOAT_COLUMNS_SINCE_V2
STEP_RAGGED = {"perturbation": "int8", "extra": "uint8"}
PERTURBATION_DIMS = 4

CHECKPOINT_ARRAYS = {"params": "float64", "optimizer": None, "method": None}  # group: dtype (None: numeric as given)
CHECKPOINT_ARRAYS_SINCE_V2 = ("method",)
CHECKPOINT_RAGGED = ("rng_states", "trainer_state")

POINT_INT_COLUMNS = ("queries",)
POINT_FLOAT_COLUMNS = ("value", "peak_frequency_hz", "peak_power_dbm", "margin_db", "wall_time")
POINT_VALUES = POINT_FLOAT_COLUMNS[:4]   # what a sweep reports per point (wall_time and queries are the writer's)

SWEEP_FIELDS = {"instrument": (str,), "setting": (str,), "start": (int, float), "stop": (int, float),
                "points": (int,), "tones": (bool,), "margin_db": (int, float)}   # of config["sweep"], by type

NUMERIC_KINDS = "biuf"                   # numpy dtype kinds a checkpoint array may have


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
    if schema == SCHEMA_V1:
        return {k: v for k, v in QUERY_COLUMNS.items() if k not in QUERY_COLUMNS_SINCE_V2}
    return QUERY_COLUMNS


def step_float_columns(schema: str) -> tuple[str, ...]:
    if schema == SCHEMA_V1:
        return tuple(name for name in STEP_FLOAT_COLUMNS if name not in STEP_FLOAT_COLUMNS_SINCE_V2)
    return STEP_FLOAT_COLUMNS


def checkpoint_array_groups(schema: str) -> tuple[str, ...]:
    if schema == SCHEMA_V1:
        return tuple(name for name in CHECKPOINT_ARRAYS if name not in CHECKPOINT_ARRAYS_SINCE_V2)
    return tuple(CHECKPOINT_ARRAYS)


# --------------------------------------------------------------------------- reading /1 files
def v1_kind(config: dict) -> str:
    """The kind a /1 file recorded: the old ring sweep said so as its training method."""
    return "sweep" if config["train"].get("method") == "sweep" else "training"


def v1_query_column(name: str, roles: np.ndarray, sweep_code: int | None) -> np.ndarray:
    """What a /1 file's rows read for a column it lacks: layer 0 (-1 for sweep rows), token -1."""
    if name == "layer":
        return np.where(roles == sweep_code, -1, 0).astype(np.int16) if sweep_code is not None \
            else np.zeros(roles.shape, dtype=np.int16)
    return np.full(roles.shape, -1, dtype=np.int32)


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
