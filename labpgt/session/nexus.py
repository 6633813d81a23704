"""The session file's description of itself, for tools that know nothing of labpgt: units, dimension scales and
NeXus plots.

:func:`describe` adds to a laid-out file (before it switches to SWMR mode, which allows no new
attribute or link): ``units`` and ``long_name`` attributes (:data:`labpgt.session.schema.UNITS`), HDF5
dimension scales (the spectra against ``/frequencies``, every column against its group's row index),
the root attribute ``reader_needs``, and a NeXus ``NXentry`` ``/plots`` of ``NXdata`` groups made of
soft links, so that h5web, silx and HDFView plot the training curve against queries, a sweep's peaks
against the swept value and any spectrum against frequency without help. It reads only the file's
own layout and attributes, and may be applied again (a copy made by :func:`labpgt.session.hdf5.copy_prefix`
keeps the attributes and groups but not the scales and links). ``docs/session-format.md`` has the table.
"""

from __future__ import annotations

import json

import h5py

from labpgt.session.hdf5 import READER_NEEDS
from labpgt.session.schema import UNITS, setting_units

PLOTS = "plots"
LONG_NAMES = {
    "frequencies": "frequency",
    "queries/index": "query",
    "queries/spectrum": "trace",
    "queries/timestamp": "Unix time the query started",
    "steps/step": "step",
    "steps/queries": "queries measured",
    "steps/loss": "training loss",
    "points/peak_power_dbm": "peak power",
    "points/peak_frequency_hz": "peak frequency",
    "points/margin_db": "line above the noise floor",
}
#: group: (dimension scale of its rows, scale name); the scale goes on the first dimension of every dataset of the
#: group with one row per row of the scale (ragged value datasets, whose rows are not the group's, get none)
ROW_SCALES = {
    "queries": ("index", "query"),
    "steps": ("step", "step"),
    "checkpoints": ("step", "checkpoint step"),
    "points": ("value", None),
}


def describe(f: h5py.File) -> None:
    """Units, dimension scales, ``reader_needs`` and the NeXus plots of the session ``f`` (open for writing)."""
    config = json.loads(f.attrs["config"])
    swept = (config.get("sweep") or {}).get("setting", "")
    f.attrs["reader_needs"] = READER_NEEDS
    _units(f, swept)
    _scales(f, swept)
    _plots(f, kind=str(f.attrs["kind"]))


def _units(f: h5py.File, swept: str) -> None:
    for path, units in UNITS.items():
        if path in f:
            f[path].attrs["units"] = units
    names = json.loads(f["queries/settings"].attrs["names"])
    f["queries/settings"].attrs["units"] = json.dumps([setting_units(name) for name in names])
    if "points/value" in f:
        f["points/value"].attrs["units"] = setting_units(swept)
        f["points/value"].attrs["long_name"] = swept
    for path, name in LONG_NAMES.items():
        if path in f:
            f[path].attrs["long_name"] = name


def _scales(f: h5py.File, swept: str) -> None:
    frequencies = f["frequencies"]
    frequencies.make_scale("frequency")
    _attach(f["queries/spectrum"], 1, frequencies, "frequency")
    for group, (scale_name, label) in ROW_SCALES.items():
        if group not in f:
            continue
        scale = f[group][scale_name]
        scale.make_scale(label or swept)
        for dataset in _row_datasets(f[group]):
            if dataset != scale:
                _attach(dataset, 0, scale, label or swept)


def _attach(dataset: h5py.Dataset, dim: int, scale: h5py.Dataset, label: str) -> None:
    dataset.dims[dim].attach_scale(scale)
    dataset.dims[dim].label = label


def _row_datasets(group: h5py.Group):
    """The datasets of ``group`` (and its subgroups) with one row per row of the group, i.e. all but the values
    of a ragged column."""
    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and "ragged_end" not in obj.attrs and obj.ndim >= 1:
            found.append(obj)

    group.visititems(visit)
    return found


def _plots(f: h5py.File, kind: str) -> None:
    f.attrs["NX_class"] = "NXroot"
    f.attrs["default"] = PLOTS
    entry = f.require_group(PLOTS)
    entry.attrs["NX_class"] = "NXentry"
    if kind == "sweep":
        _nxdata(entry, "peaks", ("peak_power_dbm", "/points/peak_power_dbm"), [("value", "/points/value")])
        entry.attrs["default"] = "peaks"
    else:
        _nxdata(entry, "loss", ("loss", "/steps/loss"), [("queries", "/steps/queries")])
        entry.attrs["default"] = "loss"
    if f["frequencies"].shape[0]:
        _nxdata(
            entry,
            "spectra",
            ("spectrum", "/queries/spectrum"),
            [("query", "/queries/index"), ("frequency", "/frequencies")],
        )


def _nxdata(entry: h5py.Group, name: str, signal: tuple[str, str], axes: list[tuple[str, str]]) -> None:
    """An NXdata group ``name`` of soft links: ``signal`` = (its name, target), ``axes`` one per dimension."""
    group = entry.require_group(name)
    group.attrs["NX_class"] = "NXdata"
    group.attrs["signal"] = signal[0]
    group.attrs["axes"] = [axis for axis, _ in axes] if len(axes) > 1 else axes[0][0]
    for i, (axis, _) in enumerate(axes):
        group.attrs[f"{axis}_indices"] = i
    for link, target in (signal, *axes):
        if link not in group:
            group[link] = h5py.SoftLink(target)
