"""A session as labelled tables: its steps (or a sweep's points) as a pandas DataFrame, its queries and spectra as
xarray objects with coordinates and units.

What the library API (:mod:`labpgt.api`) hands a notebook and what the netCDF and MATLAB exports
(:mod:`labpgt.export`) write. Read through :class:`~labpgt.session.SessionReader`, so files of every
schema read the same way and a damaged file is one :class:`~labpgt.errors.UserError`. Everything is
read into memory: the queries of the default run are about 400 MB.

The queries are one :class:`xarray.Dataset` over the dimensions ``query`` (the row index),
``frequency`` (Hz), ``setting`` (the instrument settings' names, with their ``setting_units``),
``input`` and ``feature``. The units are the session's (``docs/session-format.md``).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import xarray as xr

from labpgt.session import SessionReader
from labpgt.session.schema import (
    POINT_FLOAT_COLUMNS,
    POINT_INT_COLUMNS,
    QUERY_TIME_COLUMNS,
    STEP_FLOAT_COLUMNS,
    STEP_INT_COLUMNS,
    UNITS,
    setting_units,
)

#: per-query columns, beside the wide ones (u, settings, spectrum, features)
QUERY_SCALARS = ("step", "role", "direction", "sample", "layer", "token", "timestamp", "attempts") + QUERY_TIME_COLUMNS
DESCRIPTIONS = {
    "step": "training step (a sweep: the point)",
    "role": "what the query was for",
    "direction": "perturbation direction (-1: none)",
    "sample": "index into the training split (-1: none)",
    "layer": "physical layer of the network (-1: none)",
    "token": "token position in a sequence (-1: none)",
    "timestamp": "Unix time the query started",
    "attempts": "tries the query took",
    "wall_seconds": "wall-clock duration of the query",
    "sim_time": "simulated bench clock at the query's end",
    "temperature_c": "ring temperature",
    "field_mt": "field the gaussmeter read",
    "u": "reservoir input asked for",
    "settings": "instrument settings sent",
    "spectrum": "analyzer trace",
    "features": "features the model saw",
    "frequency": "frequency",
    "query": "query index",
}


def _attrs(name: str) -> dict:
    """``long_name`` and ``units`` of a query column (or coordinate) ``name``."""
    attrs = {"long_name": DESCRIPTIONS[name]} if name in DESCRIPTIONS else {}
    path = "frequencies" if name == "frequency" else f"queries/{name}"
    if path in UNITS:
        attrs["units"] = UNITS[path]
    return attrs


def session_attributes(session: SessionReader) -> dict[str, str]:
    """The session's root attributes as strings (JSON where structured): what a dataset carries along."""
    return {
        "source": session.path.name,
        "schema": session.schema,
        "kind": session.kind,
        "created": session.created,
        "config": json.dumps(session.config, sort_keys=True),
        "versions": json.dumps(session.versions),
        "instruments": json.dumps(session.instruments),
    }


def queries_dataset(session: SessionReader, start: int = 0, stop: int | None = None) -> xr.Dataset:
    """Query rows ``start:stop`` (valid rows; all by default) as one Dataset; ``role`` as its names."""
    q = session.queries(start, stop, fields=("index",) + QUERY_SCALARS + ("u", "settings", "spectrum", "features"))
    role_names = np.array([session.role_name(code) for code in range(256)])  # role is a uint8 code
    variables: dict[str, tuple] = {name: ("query", q[name], _attrs(name)) for name in QUERY_SCALARS if name != "role"}
    variables["role"] = ("query", role_names[q["role"]], _attrs("role"))
    variables.update(
        {
            "u": (("query", "input"), q["u"], _attrs("u")),
            "settings": (("query", "setting"), q["settings"], _attrs("settings")),
            "spectrum": (("query", "frequency"), q["spectrum"], _attrs("spectrum")),
            "features": (("query", "feature"), q["features"], _attrs("features")),
        }
    )
    coords = {
        "query": ("query", q["index"], _attrs("query")),
        "frequency": ("frequency", session.frequencies, _attrs("frequency")),
        "setting": ("setting", np.array(session.setting_names, dtype=str)),
        "setting_units": ("setting", np.array([setting_units(n) for n in session.setting_names], dtype=str)),
        "input": ("input", np.arange(q["u"].shape[1])),
        "feature": ("feature", np.arange(q["features"].shape[1])),
    }
    return xr.Dataset(variables, coords=coords, attrs=session_attributes(session))


def spectra(queries: xr.Dataset) -> xr.DataArray:
    """The spectra of a :func:`queries_dataset` as one DataArray over (query, frequency), dBm, with each query's
    step and role as coordinates."""
    return queries["spectrum"].assign_coords(step=queries["step"], role=queries["role"])


def row_columns(session: SessionReader) -> dict[str, np.ndarray]:
    """A training's step columns, or a sweep's point columns (the row index first: ``step`` or ``point``)."""
    if session.kind == "sweep":
        points = session.points()
        return {
            "point": np.arange(session.n_points),
            **{name: points[name] for name in POINT_FLOAT_COLUMNS + POINT_INT_COLUMNS},
        }
    steps = session.steps()
    return {name: steps[name] for name in STEP_INT_COLUMNS + STEP_FLOAT_COLUMNS}


def rows_frame(session: SessionReader) -> pd.DataFrame:
    """:func:`row_columns` as a DataFrame indexed by step (or point); ``frame.attrs["units"]`` gives the units."""
    columns = row_columns(session)
    index = next(iter(columns))
    frame = pd.DataFrame(columns).set_index(index)
    frame.attrs["units"] = row_units(session)
    return frame


def row_units(session: SessionReader) -> dict[str, str]:
    """Units of the step (or point) columns that have any."""
    group = "points" if session.kind == "sweep" else "steps"
    units = {name: UNITS[f"{group}/{name}"] for name in row_columns(session) if f"{group}/{name}" in UNITS}
    if session.sweep is not None:
        units["value"] = setting_units(session.sweep["setting"])
    return units


def rows_dataset(session: SessionReader) -> xr.Dataset:
    """:func:`row_columns` as a Dataset over ``step`` (or ``point``), with units."""
    columns = row_columns(session)
    index = next(iter(columns))
    units = row_units(session)
    variables = {
        name: (index, values, {"units": units[name]} if name in units else {})
        for name, values in columns.items()
        if name != index
    }
    return xr.Dataset(variables, coords={index: columns[index]})
