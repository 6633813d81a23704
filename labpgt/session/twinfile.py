"""The twin file (HDF5, schema ``labpgt-twin/1``): a fitted twin as attributes and numeric datasets.

This module owns the file's layout; :mod:`labpgt.twin` owns the model in it. Root attributes (JSON text):
``schema``, ``created``, ``versions``, ``spec`` (the model's shape), ``layout`` (what its inputs and
features mean), ``sources`` (the sessions it was fitted on) and ``fit`` (what the fit measured). Datasets:
``params/<name>`` (float64), ``mean`` and ``scale`` (the feature standardisation), ``heldout_error_per_feature``
and ``residual_std``. Written to a temporary file that replaces the target whole; read read-only, and
anything that is not a whole twin file is one :class:`~labpgt.errors.UserError` line. Nothing is pickled.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from labpgt.errors import UserError
from labpgt.session.writer import versions

SCHEMA = "labpgt-twin/1"
ARRAYS = ("mean", "scale", "heldout_error_per_feature", "residual_std")
TABLES = ("spec", "layout", "sources", "fit")


@dataclass
class TwinRecord:
    """A twin file's contents: its tables (``spec``, ``layout``, ``sources``, ``fit``), its parameters and the
    per-feature arrays (``arrays``: mean, scale, held-out error, residual standard deviation)."""

    spec: dict
    layout: dict
    sources: list
    fit: dict
    params: dict
    arrays: dict


def write_twin_file(path, record: TwinRecord) -> None:
    """Write ``record`` at ``path`` (its directory made), replacing any file there only once it is whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["schema"] = SCHEMA
        f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        f.attrs["versions"] = json.dumps(versions())
        for name in TABLES:
            f.attrs[name] = json.dumps(getattr(record, name))
        group = f.create_group("params")
        for name, value in record.params.items():
            group.create_dataset(name, data=np.asarray(value, dtype=np.float64))
        for name in ARRAYS:
            f.create_dataset(name, data=np.asarray(record.arrays[name], dtype=np.float64))
    tmp.replace(path)


def read_twin_file(path, param_names) -> TwinRecord:
    """The twin file at ``path`` with the parameters ``param_names``, opened read-only; one UserError line for
    anything that is not a whole twin file (the model checks the shapes it needs)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"twin file {path} does not exist")
    if not h5py.is_hdf5(path):
        raise UserError(f"{path.name} is not an HDF5 file")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("schema") != SCHEMA:
                raise UserError(f"{path.name} is not a labpgt twin file (schema {f.attrs.get('schema')!r})")
            tables = {name: json.loads(f.attrs[name]) for name in TABLES}
            names = param_names(tables["spec"])
            params = {name: np.asarray(f["params"][name][()], dtype=np.float64) for name in names}
            arrays = {name: np.asarray(f[name][()], dtype=np.float64) for name in ARRAYS}
    except UserError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise UserError(
            f"{path.name} is not a readable twin file: {str(exc).splitlines()[0] if str(exc) else exc}"
        ) from None
    if not isinstance(tables["layout"], dict) or not isinstance(tables["spec"], dict):
        raise UserError(f"{path.name}: damaged layout")
    return TwinRecord(params=params, arrays=arrays, **tables)
