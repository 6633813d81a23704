"""labpgt as a library: the README's "From Python" examples and the API's doctests run; open_session and the
netCDF and MATLAB exports read every schema, and refuse a damaged or foreign file without touching it."""

from __future__ import annotations

import doctest
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import xarray as xr
from sessionfiles import V1_EXAMPLE, downgrade_to_v2, write_sweep
from test_session import synthetic_writer, write_steps

import labpgt
from labpgt import api
from labpgt.errors import UserError
from labpgt.export import export_session

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "data" / "session-example.h5"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_doctests(text: str, name: str, globs: dict) -> None:
    test = doctest.DocTestParser().get_doctest(text, globs, name, name, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    failed, attempted = runner.summarize(verbose=False)
    assert attempted > 5 and failed == 0


@pytest.mark.slow
def test_the_readme_from_python_examples_run(tmp_path, monkeypatch):
    readme = (REPO / "README.md").read_text()
    section = re.search(r"^## From Python\n(.*?)^## ", readme, re.S | re.M).group(1)
    (tmp_path / "data").symlink_to(REPO / "data")
    monkeypatch.chdir(tmp_path)
    run_doctests(section, "README.md: From Python", {})
    assert (tmp_path / "iris.h5").is_file() and (tmp_path / "gain.h5").is_file()


def test_the_api_docstrings_run():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(api, globs={"labpgt": labpgt, "EXAMPLE": EXAMPLE}):
        runner.run(test)
    failed, attempted = runner.summarize(verbose=False)
    assert attempted >= 8 and failed == 0


@pytest.mark.slow
def test_import_labpgt_stays_cheap():
    code = (
        "import sys, labpgt; labpgt.open_session; "
        "print(sorted(m for m in ('jax', 'pandas', 'xarray') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


def test_open_session_reads_every_schema_with_coordinates_and_units(tmp_path):
    v2 = tmp_path / "v2.h5"
    with synthetic_writer(v2) as writer:
        write_steps(writer, np.random.default_rng(0), 3)
    downgrade_to_v2(v2)
    for path, queries in ((V1_EXAMPLE, 184), (v2, 30), (EXAMPLE, 226)):
        with labpgt.open_session(path) as session:
            spectra = session.spectra
            assert spectra.dims == ("query", "frequency") and spectra.shape == (queries, 401)
            assert spectra.frequency.units == "Hz" and spectra.units == "dBm"
            np.testing.assert_array_equal(spectra["query"], np.arange(queries))
            assert session.steps.index.name == "step" and session.steps.attrs["units"]["wall_time"] == "s"
            assert session.checkpoint().step == session.n_steps - 1
    sweep = tmp_path / "sweep.h5"
    write_sweep(sweep)
    with labpgt.open_session(sweep) as session:
        assert session.points.index.name == "point" and session.points.attrs["units"]["value"] == "dB"
        with pytest.raises(UserError, match="records a sweep: it has no steps"):
            _ = session.steps


def damaged_and_foreign_files(tmp_path: Path) -> list[Path]:
    good = tmp_path / "good.h5"
    with synthetic_writer(good) as writer:
        write_steps(writer, np.random.default_rng(0), 2)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.h5"
    text.write_text("step,loss\n0,1.0\n")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["data"] = np.arange(10)
    corrupt = tmp_path / "corrupt.h5"  # whole metadata, a query chunk overwritten with junk
    corrupt.write_bytes(good.read_bytes())
    with h5py.File(corrupt, "r") as f:
        offset = f["queries/spectrum"].id.get_chunk_info(0).byte_offset
    with open(corrupt, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"\xff" * 64)
    return [truncated, text, foreign, corrupt]


def test_a_damaged_or_foreign_file_is_a_user_error_and_untouched(tmp_path):
    for path in damaged_and_foreign_files(tmp_path):
        before = sha256(path)
        with pytest.raises(UserError):
            with labpgt.open_session(path) as session:
                _ = session.queries
        for target in (tmp_path / "out.nc", tmp_path / "out.mat"):
            with pytest.raises(UserError):
                export_session(path, target)
            assert not target.exists() and not list(tmp_path.glob(".out.*"))
        assert sha256(path) == before, path.name


def test_the_exports_of_a_damaged_or_foreign_file_are_one_line_and_exit_2(tmp_path, labpgt):
    for path in damaged_and_foreign_files(tmp_path):
        before = sha256(path)
        for target in ("out.nc", "out.mat"):
            done = labpgt("export", str(path), "--to", str(tmp_path / target))
            assert done.returncode == 2 and done.stderr.startswith("labpgt: "), (path.name, done.stderr)
            assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
            assert not (tmp_path / target).exists()
        assert sha256(path) == before, path.name


@pytest.mark.parametrize("source", ["example", "v1", "sweep"])
def test_netcdf_and_matlab_exports_hold_the_same_arrays_with_units(tmp_path, source):
    path = {"example": EXAMPLE, "v1": V1_EXAMPLE, "sweep": tmp_path / "sweep.h5"}[source]
    if source == "sweep":
        write_sweep(path)
    before = sha256(path)
    nc, mat = tmp_path / "run.nc", tmp_path / "run.mat"
    assert export_session(path, nc) == [nc] and export_session(path, mat) == [mat]
    with xr.open_dataset(nc) as ds, labpgt.open_session(path) as session:
        assert ds.spectrum.dims == ("query", "frequency") and ds.frequency.units == "Hz"
        assert ds.spectrum.units == "dBm" and ds.timestamp.units == "s" and ds.attrs["schema"] == session.schema
        np.testing.assert_array_equal(ds.spectrum, session.spectra)
        np.testing.assert_array_equal(ds.frequency, session.frequencies)
        group = "points" if session.kind == "sweep" else "steps"
        with xr.open_dataset(nc, group=group) as rows:
            table = session.points if session.kind == "sweep" else session.steps
            np.testing.assert_array_equal(rows.wall_time, table["wall_time"])
            assert rows.wall_time.units == "s"
        loaded = scipy.io.loadmat(mat)
        for name in ("spectrum", "u", "features", "settings", "frequency", "query", "step", "sample", "timestamp"):
            np.testing.assert_array_equal(loaded[name].reshape(ds[name].shape), ds[name].values, err_msg=name)
        assert [r.strip() for r in loaded["role"]] == list(ds.role.values)
        assert loaded["units"]["spectrum"][0, 0][0] == "dBm" and loaded["units"]["frequency"][0, 0][0] == "Hz"
        np.testing.assert_array_equal(loaded[group]["wall_time"][0, 0].ravel(), rows_wall_time(nc, group))
        assert json.loads(loaded["config"][0]) == session.config
    assert sha256(path) == before
    with pytest.raises(UserError, match="exists"):
        export_session(path, nc)


def rows_wall_time(nc: Path, group: str) -> np.ndarray:
    with xr.open_dataset(nc, group=group) as rows:
        return rows.wall_time.values
