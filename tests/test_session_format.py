"""What any lab tool sees in a session file: HDF5 1.10's format and built-in filters (h5dump 1.10 reads every
dataset), units, dimension scales and NeXus plots (silx finds them), and older files rewritten as /3 on resume."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from sessionfiles import downgrade_to_v2, write_sweep
from test_session import synthetic_writer, write_steps

from labpgt.session import SCHEMA, SessionReader, SessionWriter, hdf5
from labpgt.session.hdf5 import READER_NEEDS

H5DUMP = shutil.which("h5dump")
COMPACT = hdf5.compact
needs_h5dump = pytest.mark.skipif(
    H5DUMP is None, reason="h5dump is not installed (Debian: apt-get install hdf5-tools; .ci/run installs it)"
)


def training(path: Path, steps: int = 3, rows: int = 10) -> None:
    with synthetic_writer(path) as writer:
        write_steps(writer, np.random.default_rng(0), steps, rows=rows)


def datasets(path: Path) -> dict[str, np.ndarray]:
    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return found


def h5dump(*args) -> subprocess.CompletedProcess:
    """h5dump with no HDF5 variable set: the README tells its reader to set none."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("HDF5")}
    return subprocess.run([H5DUMP, *args], capture_output=True, text=True, env=env, timeout=60)


def assert_h5dump_reads_every_dataset(path: Path, tmp_path: Path) -> None:
    """Every dataset, dumped by h5dump as little-endian binary, holds exactly what h5py reads."""
    expected = datasets(path)
    assert len(expected) > 10
    for name, values in expected.items():
        out = tmp_path / "dataset.bin"
        out.unlink(missing_ok=True)
        done = h5dump("-d", f"/{name}", "-b", "LE", "-o", str(out), str(path))
        assert done.returncode == 0 and "error" not in done.stderr.lower(), (name, done.stderr)
        if values.size:
            dumped = np.fromfile(out, dtype=values.dtype.newbyteorder("<")).reshape(values.shape)
            np.testing.assert_array_equal(dumped, values, err_msg=name)


@pytest.mark.slow
@needs_h5dump
def test_h5dump_of_hdf5_1_10_reads_every_dataset_of_a_training_and_a_sweep(tmp_path):
    version = subprocess.run([H5DUMP, "--version"], capture_output=True, text=True).stdout
    print(version)  # Debian bookworm: "h5dump: Version 1.10.8"
    run, sweep = tmp_path / "run.h5", tmp_path / "sweep.h5"
    training(run)
    write_sweep(sweep)
    for path in (run, sweep):
        whole = h5dump(str(path))
        assert whole.returncode == 0 and whole.stderr == "", whole.stderr
        assert_h5dump_reads_every_dataset(path, tmp_path)
    header = h5dump("-A", "-a", "/reader_needs", str(run)).stdout
    assert "HDF5 1.10 or later" in header


def test_a_file_is_written_for_hdf5_1_10_with_built_in_filters_and_says_so(tmp_path):
    path = tmp_path / "run.h5"
    training(path)
    head = path.read_bytes()[:9]
    assert head[:8] == b"\x89HDF\r\n\x1a\n" and head[8] == 3  # superblock version 3: HDF5 1.10, SWMR
    with h5py.File(path, "r") as f:
        assert f.attrs["reader_needs"] == READER_NEEDS and "nothing to install" in READER_NEEDS
        filters = set()
        f.visititems(lambda name, obj: filters.update(obj._filters) if isinstance(obj, h5py.Dataset) else None)
        assert filters == {"shuffle", "gzip"}  # HDF5's own: no plugin needed


def test_units_dimension_scales_and_nexus_plots(tmp_path):
    path = tmp_path / "run.h5"
    training(path)
    with h5py.File(path, "r") as f:
        units = {
            name: f[name].attrs["units"]
            for name in (
                "frequencies",
                "queries/spectrum",
                "queries/timestamp",
                "steps/wall_time",
                "steps/measure_seconds",
            )
        }
        assert units == {
            "frequencies": "Hz",
            "queries/spectrum": "dBm",
            "queries/timestamp": "s",
            "steps/wall_time": "s",
            "steps/measure_seconds": "s",
        }
        assert f["queries/temperature_c"].attrs["units"] == "°C"
        assert json.loads(f["queries/settings"].attrs["units"]) == ["dBm"] * 8
        spectrum = f["queries/spectrum"]
        assert spectrum.dims[1][0] == f["frequencies"] and spectrum.dims[0][0] == f["queries/index"]
        assert [d.label for d in spectrum.dims] == ["query", "frequency"]
        assert all(f[f"queries/{name}"].dims[0][0] == f["queries/index"] for name in f["queries"] if name != "index")
        assert f["steps/loss"].dims[0][0] == f["steps/step"]
        assert f["checkpoints/params/enc_W"].dims[0][0] == f["checkpoints/step"]
        np.testing.assert_array_equal(f["queries/index"][()], np.arange(30))
        assert f.attrs["NX_class"] == "NXroot" and f.attrs["default"] == "plots"
        assert f["plots"].attrs["NX_class"] == "NXentry" and f["plots"].attrs["default"] == "loss"
        loss = f["plots/loss"]
        assert loss.attrs["signal"] == "loss" and loss.attrs["axes"] == "queries"
        assert loss.get("loss", getlink=True).path == "/steps/loss"  # a link: nothing stored twice
        np.testing.assert_array_equal(loss["queries"][()], [10, 20, 30])


def test_silx_plots_the_training_curve_and_the_spectra_without_help(tmp_path):
    nxdata = pytest.importorskip("silx.io.nxdata")
    run, sweep = tmp_path / "run.h5", tmp_path / "sweep.h5"
    training(run)
    write_sweep(sweep)
    with h5py.File(run, "r") as f:
        default = nxdata.get_default(f)  # root@default -> /plots@default -> the NXdata group
        assert default.is_valid and default.signal.name == "/plots/loss/loss"
        assert default.axes[0].name == "/plots/loss/queries"
        spectra = nxdata.NXdata(f["plots/spectra"])
        assert (
            spectra.is_valid
            and spectra.signal.shape == (30, 401)
            and spectra.axes_dataset_names == ["query", "frequency"]
        )
        assert spectra.axes[1].attrs["units"] == "Hz" and spectra.signal.attrs["units"] == "dBm"
    with h5py.File(sweep, "r") as f:
        default = nxdata.get_default(f)
        assert default.is_valid and default.signal.name == "/plots/peaks/peak_power_dbm"
        assert default.axes[0].attrs["units"] == "dB" and default.axes[0].attrs["long_name"] == "loop_gain_db"


def test_compaction_at_close_keeps_the_description(tmp_path, monkeypatch):
    """Many small steps leave dead space that the writer removes at close by copying the file: the copy has
    the scales and links again."""
    compacted = []
    monkeypatch.setattr(hdf5, "compact", lambda path, finish: compacted.append(path) or COMPACT(path, finish))
    path = tmp_path / "run.h5"
    training(path, steps=40, rows=3)
    assert compacted == [path]
    with h5py.File(path, "r") as f:
        assert f["queries/spectrum"].dims[1][0] == f["frequencies"]
        assert f["plots/spectra/spectrum"].shape == (120, 401)
        assert f["frequencies"].attrs["units"] == "Hz"


def test_resuming_a_v2_file_rewrites_it_as_v3(tmp_path):
    path = tmp_path / "run.h5"
    training(path)
    before = datasets(path)
    downgrade_to_v2(path)
    with h5py.File(path, "r") as f:
        assert f.attrs["schema"] == "labpgt-session/2" and "index" not in f["queries"] and "plots" not in f
        assert "32026" in f["queries/spectrum"]._filters  # Blosc2, as /2 wrote it
    with SessionReader(path) as reader:
        assert reader.schema == "labpgt-session/2" and reader.n_queries == 30
        np.testing.assert_array_equal(reader.queries(5, 9, ("index",))["index"], [5, 6, 7, 8])
    writer, checkpoint = SessionWriter.open_for_resume(path)
    write_steps(writer, np.random.default_rng(1), 1, first=checkpoint.step + 1)
    writer.close()
    after = datasets(path)
    with h5py.File(path, "r") as f:
        assert f.attrs["schema"] == SCHEMA and list(f["queries/spectrum"]._filters) == ["shuffle", "gzip"]
        assert f["queries/spectrum"].dims[1][0] == f["frequencies"] and "plots/loss" in f
    np.testing.assert_array_equal(after["queries/index"], np.arange(40))
    for name in ("queries/spectrum", "queries/u", "queries/features", "steps/loss", "checkpoints/params/enc_W"):
        np.testing.assert_array_equal(after[name][: len(before[name])], before[name], err_msg=name)


def test_appended_rows_are_what_h5py_writes_in_every_type_the_file_converts_to(tmp_path):
    """hdf5.append writes numbers through HDF5's own calls: the file holds what h5py's slicing would have written,
    converted by HDF5 alike (float64 rows into a float32 column, int64 into int32), compressed or not, in 1 and 2
    dimensions; other types (strings) take h5py's way."""
    rng = np.random.default_rng(3)
    blocks = {
        "f4": [rng.standard_normal((k, 5)) * 1e3 for k in (3, 0, 1, 7)],
        "i4": [rng.integers(-(2**20), 2**20, (k,)) for k in (2, 5, 0, 1)],
        "f8": [rng.standard_normal(k) for k in (4, 1, 9)],
        "u1": [np.frombuffer(b"a row of json", dtype=np.uint8), np.zeros(0, dtype=np.uint8)],
        "S8": [np.array([b"one", b"two"]), np.array([b"three"])],
    }
    files = {way: h5py.File(tmp_path / f"{way}.h5", "w", libver="latest") for way in ("append", "h5py")}
    for name, parts in blocks.items():
        for way, f in files.items():
            ds = f.create_dataset(
                name,
                shape=(0,) + parts[0].shape[1:],
                maxshape=(None,) + parts[0].shape[1:],
                dtype=name,
                chunks=(4,) + parts[0].shape[1:],
                **({"compression": "gzip", "shuffle": True} if name == "f4" else {}),
            )
            for block in parts:
                if way == "append":
                    hdf5.append(ds, block)
                else:
                    n = ds.shape[0]
                    ds.resize(n + len(block), axis=0)
                    ds[n:] = block
    for name, parts in blocks.items():
        got, expected = files["append"][name][()], files["h5py"][name][()]
        assert got.dtype == expected.dtype and got.shape == (sum(len(p) for p in parts),) + parts[0].shape[1:]
        np.testing.assert_array_equal(got, expected)
        assert got.tobytes() == expected.tobytes()
    for f in files.values():
        f.close()


def test_a_copy_takes_whole_chunks_as_stored_and_the_rest_row_by_row(tmp_path):
    """copy_prefix (resume, compaction, upgrade) copies the chunks wholly within the rows it keeps byte for byte
    where source and copy store them alike, and every other row decoded and encoded again: a chunk never written
    (fill), another filter (gzip 9), a chunk cut by the rows kept. The copy holds the source's values either way."""
    rng = np.random.default_rng(5)
    source = tmp_path / "source.h5"
    with h5py.File(source, "w", libver=hdf5.LIBVER) as f:
        g = f.create_group("queries")
        alike = g.create_dataset("alike", data=rng.standard_normal((1000, 7)), maxshape=(None, 7), chunks=(128, 7),
                                 **hdf5.ROW_FILTER)  # fmt: skip
        g.create_dataset("other_filter", data=rng.standard_normal(1000), maxshape=(None,), chunks=(128,),
                         compression="gzip", compression_opts=9)  # fmt: skip
        sparse = g.create_dataset(
            "sparse", shape=(1000,), maxshape=(None,), chunks=(128,), dtype="f8", **hdf5.ROW_FILTER
        )
        sparse[:128], sparse[384:] = 1.0, 2.0  # chunks 1 and 2 never written
        # chunk 0 of "alike" as another writer may have stored it: shuffled, deflated at level 1 (decoding does not
        # care), so that bytes copied as stored differ from bytes encoded again at the pipeline's level 4
        shuffled = alike[:128].view(np.uint8).reshape(-1, 8).T.tobytes()
        alike.id.write_direct_chunk((0, 0), zlib.compress(shuffled, 1))
    copy = tmp_path / "copy.h5"
    with h5py.File(source, "r") as src:
        hdf5.copy_prefix(src, copy, {"queries": 900})
        with h5py.File(copy, "r") as dst:
            for name in ("alike", "other_filter", "sparse"):
                np.testing.assert_array_equal(dst["queries"][name][()], src["queries"][name][:900])
                assert hdf5.is_compressed(dst["queries"][name]) and dst["queries"][name].compression_opts == 4
            stored = lambda ds, row: ds.id.read_direct_chunk((row,) + (0,) * (ds.ndim - 1))[1]  # noqa: E731
            for row in range(0, 896, 128):  # the whole chunks of the rows kept: as stored
                assert stored(dst["queries/alike"], row) == stored(src["queries/alike"], row)
            assert stored(src["queries/alike"], 0) == zlib.compress(shuffled, 1)
            assert stored(dst["queries/other_filter"], 0) != stored(src["queries/other_filter"], 0)  # encoded again
            assert stored(dst["queries/sparse"], 0) == stored(src["queries/sparse"], 0)
