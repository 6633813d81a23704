"""HDF5 plumbing of the session file: the library version and filters every file is written with, growing row and
ragged datasets, JSON in bytes, copying a valid prefix, and opening a file read-only without trusting it.

It knows nothing of the schema's columns (:mod:`labpgt.session.schema` does). What it owns:

* *what a reader needs*: every file is written with the library version bounds :data:`LIBVER`
  (HDF5 1.10's format, the oldest with SWMR: any HDF5 1.10 or later reads it) and compressed
  with HDF5's built-in filters only (:data:`ROW_FILTER`), which :data:`READER_NEEDS` states in the
  file itself; files written before (Blosc2 through ``hdf5plugin``) are still read, which is why
  ``hdf5plugin`` is imported here;
* *row datasets*: chunked, resizable along the first axis, appended a block at a time (one resize
  per block: amortised O(1) per row), compressed with :data:`ROW_FILTER` when asked (the queries:
  see ``docs/session-format.md``, Storage); *ragged* columns: a value dataset plus ``NAME_end``;
* :func:`copy_prefix`: a new file holding the first rows of every row dataset of another (whole chunks copied as
  they are stored where both files store them alike: a 226 MB session in 0.3 s instead of 8 s);
* :func:`open_read_only`: mode "r" only, so reading never modifies a file; a closed file through
  HDF5's own checks, a live or killed writer's file (its "open for writing" flag set) in SWMR read
  mode, with a bounded number of metadata read attempts (HDF5's default makes a corrupt file hang
  the reader). SWMR reads skip HDF5's check of the superblock's end-of-file address against the
  file's size, so a killed writer's file is checked here; a live writer's is not, because its
  superblock may run ahead of its data for a moment (HDF5's own check refuses a plain open of it then).
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import time
from pathlib import Path

import h5py
import numpy as np

#: Blosc2 compresses a session's small chunks faster on one thread than on several (measured: 3x on 2 cores)
os.environ.setdefault("BLOSC_NTHREADS", "1")
import hdf5plugin  # noqa: E402,F401  (registers Blosc2 for h5py: files written before labpgt-session/3 need it)

from labpgt.errors import UserError
from labpgt.session.liveness import marked_open_for_write, writer_holds_lock

#: the library version bounds of every file written: HDF5 1.10's file format, the oldest that has SWMR (a
#: version 3 superblock). "latest" on the HDF5 2.0 h5py bundles writes layout messages no HDF5 1.x can read.
LIBVER = ("v110", "v110")
LIBVER_BOUNDS = {"v110": h5py.h5f.LIBVER_V110}
#: the filter of compressed row datasets: deflate (gzip) level 4 after a byte shuffle, both built into every
#: HDF5 library (benchmarks/session_compression.py, benchmarks/RESULTS.md section 13: on the default run's
#: queries as small as Blosc2/Zstd, which needs a plugin to read; level 4 is as small as 6 and 9 and faster)
ROW_FILTER = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
ROW_FILTER_NAME = "gzip4"
#: what a reader needs, written into every file (root attribute ``reader_needs``) and said in the README
READER_NEEDS = (
    "HDF5 1.10 or later; compressed datasets use only HDF5's built-in shuffle and deflate (gzip) "
    "filters: nothing to install. Files written before labpgt-session/3 compressed their queries "
    "with Blosc2 (filter 32026): read those with h5py after `import hdf5plugin`, or set "
    "HDF5_PLUGIN_PATH to hdf5plugin's plugin directory"
)
#: rows per chunk of a compressed row dataset (measured on the default run, all query columns: 1,030 bytes a
#: query at 32 rows, 970 at 64, 939 at 128, 923 at 256).
COMPRESSED_CHUNK_ROWS = 128
RAGGED_CHUNK = 1 << 16
COPY_BLOCK_ROWS = 1 << 16
NUMBER_KINDS = frozenset("biuf")  # numpy dtype kinds HDF5 converts between itself
LOCKED_RETRIES, LOCKED_RETRY_S = 40, 0.05  # how long a reader waits for a writer to finish laying a file out

#: SWMR readers retry a metadata read whose checksum fails, sleeping 1, 2, 4, … ns between tries;
#: HDF5's default of 100 tries makes a corrupt file hang the reader for ~2^100 ns (forever).
#: 24 tries wait ~17 ms in all, ample for a live writer's metadata flush to land.
SWMR_METADATA_READ_ATTEMPTS = 24


# --------------------------------------------------------------------------- row and ragged datasets
def row_dataset(group, name, dtype, width=(), *, chunk_rows: int, compress=False, rows=0) -> h5py.Dataset:
    """An empty (or ``rows``-long) dataset of rows of shape ``width`` that grows along its first axis, in
    chunks of ``chunk_rows``, or with ``compress`` through :data:`ROW_FILTER` in chunks of
    :data:`COMPRESSED_CHUNK_ROWS`."""
    width = tuple(int(w) for w in width)
    if any(w == 0 for w in width):  # HDF5 chunks cannot have a zero dimension
        return group.create_dataset(name, shape=(rows,) + width, maxshape=(None,) * (1 + len(width)), dtype=dtype)
    filters = ROW_FILTER if compress else {}
    return group.create_dataset(
        name,
        shape=(rows,) + width,
        maxshape=(None,) + width,
        dtype=dtype,
        chunks=(COMPRESSED_CHUNK_ROWS if compress else chunk_rows,) + width,
        **filters,
    )


def is_compressed(ds) -> bool:
    """Whether ``ds`` goes through a filter (a compressed row dataset)."""
    return ds.chunks is not None and ds.id.get_create_plist().get_nfilters() > 0


def ragged_dataset(group, name, dtype, chunk_rows) -> None:
    values = group.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(RAGGED_CHUNK,))
    values.attrs["ragged_end"] = f"{name}_end"
    row_dataset(group, f"{name}_end", "int64", chunk_rows=chunk_rows)


def append(ds, block: np.ndarray) -> None:
    """Rows ``block`` after the last of ``ds``. Numbers go through HDF5's own calls (extend, select, write: a
    quarter of the time h5py's ``resize`` and slicing take to make the same calls, per write of every column of
    every step); anything else through h5py's."""
    block = np.asarray(block)
    if block.shape[0] == 0:
        return
    space = ds.id.get_space()
    shape = space.shape
    if block.dtype.kind not in NUMBER_KINDS or ds.dtype.kind not in NUMBER_KINDS or block.shape[1:] != shape[1:]:
        n = shape[0]
        ds.resize(n + block.shape[0], axis=0)
        ds[n:] = block
        return
    ds.id.set_extent((shape[0] + block.shape[0],) + shape[1:])
    space = ds.id.get_space()
    space.select_hyperslab((shape[0],) + (0,) * (len(shape) - 1), block.shape)
    ds.id.write(h5py.h5s.create_simple(block.shape), space, np.ascontiguousarray(block))  # HDF5 converts the type


def append_ragged(group, name, values: np.ndarray) -> None:
    values_ds, end_ds = group[name], group[f"{name}_end"]
    end = int(end_ds[-1]) if end_ds.shape[0] else 0
    if end_ds.shape[0] and values_ds.shape[0] != end:  # tolerate nothing but a consistent file
        values_ds.resize(end, axis=0)
    if values.size:
        append(values_ds, values)
    append(end_ds, np.asarray([end + values.size], dtype=np.int64))


def ragged_row(group, name, row: int) -> np.ndarray:
    ends = group[f"{name}_end"]
    start = int(ends[row - 1]) if row else 0
    return group[name][start : int(ends[row])]


def ragged_rows(group, name) -> int:
    """Rows of a ragged column whose values are all present."""
    ends = group[f"{name}_end"][()]
    return int(np.searchsorted(ends, group[name].shape[0], side="right"))


def group_length(group, names) -> int:
    """The rows every dataset ``names`` of ``group`` has (a writer killed mid-flush leaves them uneven)."""
    return min(group[name].shape[0] for name in names)


class Handles:
    """A group's datasets looked up once: h5py's by-name lookup costs more than a small write."""

    def __init__(self, group: h5py.Group):
        self.group = group
        self._cache: dict = {}

    def __getitem__(self, name: str):
        handle = self._cache.get(name)
        if handle is None:
            handle = self.group[name]
            if isinstance(handle, h5py.Group):
                handle = Handles(handle)
            self._cache[name] = handle
        return handle

    def __iter__(self):
        return iter(self.group)


# --------------------------------------------------------------------------- JSON as bytes
def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def dumps(value) -> str:
    return json.dumps(value, default=_json_default, sort_keys=True)


def json_bytes(value) -> np.ndarray:
    return np.frombuffer(dumps(value).encode("utf-8"), dtype=np.uint8)


def json_value(values: np.ndarray):
    return json.loads(values.tobytes().decode("utf-8"))


# --------------------------------------------------------------------------- copying a valid prefix
#: attributes of HDF5 dimension scales: they hold references to objects of their own file, so a copy leaves
#: them out and its ``finish`` attaches the scales again
DIMENSION_SCALE_ATTRIBUTES = frozenset({"CLASS", "NAME", "REFERENCE_LIST", "DIMENSION_LIST"})


def copy_prefix(src: h5py.File, dst_path: Path, keep: dict | None, finish=None) -> None:
    """Copy every dataset of ``src`` into a new file, the row datasets of top-level group G cut to
    ``keep[G]`` rows (the values of a ragged column to those of its kept rows); ``keep`` None copies
    every row, and so does a group ``keep`` does not name. Attributes come along except those of dimension
    scales; soft links do not: ``finish``
    (called with the new file, open for writing) makes those again."""
    with h5py.File(dst_path, "w", libver=LIBVER) as dst:
        _copy_attributes(src, dst)

        def visit(name, obj):
            if isinstance(obj, h5py.Group):
                _copy_attributes(obj, dst.require_group(name))
                return
            if obj.maxshape[0] is not None:  # fixed-size (frequencies): copy whole
                ds = dst.create_dataset(name, data=obj[()])
            else:
                ds = _copy_rows(dst, name, obj, _rows_to_keep(src, name, obj, keep))
            _copy_attributes(obj, ds)

        src.visititems(visit)
        if finish is not None:
            finish(dst)


def _copy_attributes(src, dst) -> None:
    for key in src.attrs:
        if key not in DIMENSION_SCALE_ATTRIBUTES:
            dst.attrs[key] = src.attrs[key]


def _copy_rows(dst, name, obj, rows) -> h5py.Dataset:
    # compressed (ROW_FILTER, whatever filter the source used) where the source was compressed at all, in its chunks
    ds = dst.create_dataset(
        name,
        shape=(rows,) + obj.shape[1:],
        maxshape=obj.maxshape,
        dtype=obj.dtype,
        chunks=obj.chunks,
        **(ROW_FILTER if is_compressed(obj) else {}),
    )
    copied = _copy_whole_chunks(obj, ds, rows)
    for start in range(copied, rows, COPY_BLOCK_ROWS):
        stop = min(rows, start + COPY_BLOCK_ROWS)
        ds[start:stop] = obj[start:stop]
    return ds


def _copy_whole_chunks(src, dst, rows) -> int:
    """Copy the chunks of ``src`` that lie wholly within its first ``rows`` rows into ``dst`` as they are stored,
    compressed bytes and all (nothing decoded, nothing encoded again: a resume of a long session in a second,
    not minutes), where both store them alike (the same chunks, each a band of whole rows, and the same filters);
    the rows copied (0: none, the caller copies every row)."""
    chunk_rows = src.chunks[0] if src.chunks is not None else 0
    if not chunk_rows or src.chunks[1:] != src.shape[1:] or _filters(src) != _filters(dst):
        return 0
    rest = (0,) * (src.ndim - 1)
    for start in range(0, rows - rows % chunk_rows, chunk_rows):
        try:
            mask, data = src.id.read_direct_chunk((start,) + rest)
        except (OSError, RuntimeError):  # a chunk never written (all fill): the rows from here are copied row by row
            return start
        dst.id.write_direct_chunk((start,) + rest, data, mask)
    return rows - rows % chunk_rows


def _filters(ds) -> list:
    plist = ds.id.get_create_plist()
    return [plist.get_filter(i)[:3] for i in range(plist.get_nfilters())]  # (code, flags, values)


def _rows_to_keep(src, name, obj, keep) -> int:
    group = name.split("/")[0]
    if keep is None or group not in keep:  # a group not cut to steps (the pauses' record) is copied whole
        return obj.shape[0]
    rows = keep[group]
    if "ragged_end" in obj.attrs:
        ends = src[f"{name.rsplit('/', 1)[0]}/{obj.attrs['ragged_end']}"]
        return int(ends[rows - 1]) if rows else 0
    return rows


def dead_fraction(f: h5py.File) -> float:
    """The part of an open file's size that holds no dataset's data: mostly the old copies of
    compressed chunks that SWMR rewrote without reusing their space (plus metadata, a few kB)."""
    used = []
    f.visititems(lambda name, obj: used.append(obj.id.get_storage_size()) if isinstance(obj, h5py.Dataset) else None)
    size = os.path.getsize(f.filename)
    return max(0.0, 1.0 - sum(used) / size) if size else 0.0


def compact(path: Path, finish=None) -> None:
    """Rewrite a closed file without its dead space: every row copied into a fresh file that then
    atomically replaces it (until then the original stands whole; a leftover ``.compact-tmp`` is junk);
    ``finish`` as for :func:`copy_prefix`."""
    path = Path(path)
    tmp = path.with_name(path.name + ".compact-tmp")
    with h5py.File(path, "r") as src:
        copy_prefix(src, tmp, None, finish)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- opening without trusting
def first_line(exc) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def open_read_only(path: Path) -> h5py.File:
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
    for _ in range(LOCKED_RETRIES):
        try:
            return h5py.File(path, "r")  # a closed file: HDF5 checks it is whole
        except OSError as exc:
            if "unable to lock file" in str(exc):  # a writer is laying it out (before SWMR): a moment
                time.sleep(LOCKED_RETRY_S)
                continue
            if "already open for write" not in str(exc) and not marked_open_for_write(path):
                raise UserError(f"{path.name} is truncated or damaged: {first_line(exc)}") from None
            break  # a live or a killed writer's file: read it as SWMR
    else:
        raise UserError(f"{path.name} is locked by another process that is creating or rewriting it; try again")
    if writer_holds_lock(path) is not True:
        # SWMR read skips HDF5's own end-of-file check; a killed writer's copy cut short must still be refused.
        # A live writer's superblock may run ahead of its data for a moment, so its file is not checked.
        check_not_truncated(path)
    try:
        return open_swmr_read(path)
    except OSError as exc:
        raise UserError(f"{path.name} is truncated or damaged: {first_line(exc)}") from None


def open_for_writing(path: Path, mode: str) -> h5py.File:
    """``h5py.File(path, mode)`` in the session's format, for writing (:func:`_waiting_for_lock`)."""
    return _waiting_for_lock(path, lambda: h5py.File(path, mode, libver=LIBVER))


def open_swmr_write(path: Path) -> h5py.File:
    """Reopen a closed session file to write it, in SWMR mode from the moment it is open.

    HDF5 marks the superblock "open for SWMR writing" as it opens, so a writer killed at any moment leaves a file
    that SWMR readers still open. ``h5py.File(path, "r+")`` followed by ``swmr_mode = True`` left a window in
    which a kill marked it open for plain writing, a state in which HDF5 opens it for nobody (neither plainly
    nor as SWMR) until it is rewritten. New objects and attributes cannot be made in this mode: a writer makes
    them before, on a copy (:func:`copy_prefix`'s ``finish``) or a new file."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(*(LIBVER_BOUNDS[bound] for bound in LIBVER))
    flags = h5py.h5f.ACC_RDWR | h5py.h5f.ACC_SWMR_WRITE
    return _waiting_for_lock(path, lambda: h5py.File(h5py.h5f.open(os.fsencode(path), flags, fapl=fapl)))


def _waiting_for_lock(path: Path, opening) -> h5py.File:
    """``opening()``, waiting briefly while a reader holds the file (an inspector opening it for a moment), then
    refused in one line."""
    for _ in range(LOCKED_RETRIES):
        try:
            return opening()
        except OSError as exc:
            if not _held_by_a_reader(exc):
                raise
            time.sleep(LOCKED_RETRY_S)
    raise UserError(
        f"{Path(path).name} is open in another program (HDF5's file lock is held): close it there and try again"
    )


def _held_by_a_reader(exc: OSError) -> bool:
    """Another process holds HDF5's lock on the file, or this one has it open to read (HDF5 opens a file once per
    process: a window of the GUI inspecting the session a run of the same process is creating)."""
    return isinstance(exc, BlockingIOError) or "already open for read-only" in str(exc)


def open_swmr_read(path: Path) -> h5py.File:
    """``h5py.File(path, "r", libver="latest", swmr=True)`` with a bounded number of metadata read attempts."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    if not set_metadata_read_attempts(fapl, SWMR_METADATA_READ_ATTEMPTS):
        return h5py.File(path, "r", libver="latest", swmr=True)
    fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ, fapl=fapl)
    return h5py.File(fid)


def set_metadata_read_attempts(fapl, attempts: int) -> bool:
    """``H5Pset_metadata_read_attempts`` (h5py does not wrap it) on the HDF5 library h5py loaded."""
    function = _hdf5_function("H5Pset_metadata_read_attempts")
    return function is not None and function(fapl.id, attempts) >= 0


@functools.cache
def _hdf5_function(name: str):
    try:
        with open("/proc/self/maps") as maps:  # the libhdf5 h5py is linked against (Linux)
            paths = {line.split()[-1] for line in maps if "/libhdf5" in line and "_hl" not in line}
    except OSError:
        paths = set()
    # another package may bring its own libhdf5 into the process (netCDF4 does): only h5py's will do
    own = [path for path in paths if Path(path).parent.name.startswith("h5py")]
    for path in sorted(own) if own else sorted(paths) if len(paths) == 1 else ():
        try:
            function = getattr(ctypes.CDLL(path), name)
        except (OSError, AttributeError):
            continue
        function.argtypes = (ctypes.c_int64, ctypes.c_uint)
        function.restype = ctypes.c_int
        return function
    return None


def check_not_truncated(path: Path) -> None:
    """Compare the end-of-file address in a version 2/3 superblock with the file's size."""
    with open(path, "rb") as handle:
        head = handle.read(64)
    if len(head) < 12 or head[8] not in (2, 3):
        return
    size_of_offsets = head[9]
    at = 12 + 2 * size_of_offsets
    stored_eof = int.from_bytes(head[at : at + size_of_offsets], "little")
    actual = path.stat().st_size
    if stored_eof > actual:
        raise UserError(f"{path.name} is truncated or damaged: {actual} bytes, its superblock says {stored_eof}")
