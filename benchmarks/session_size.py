"""Where the bytes of a session file go: stored bytes per dataset, per query, and how each is stored.

    python benchmarks/session_size.py SESSION.h5 [SESSION.h5 ...]

For each file: one row per dataset (stored bytes, share of the file, bytes per query, raw bytes
per query, filter), then the file's size, its bytes per query and the datasets' total (the rest is
HDF5 metadata and space left by rewritten chunks). Run it on a default ``labpgt train`` session.
"""

from __future__ import annotations

import argparse
import os

import h5py
import hdf5plugin  # noqa: F401  (registers the filters, so that compressed chunks are counted and named)


def _filter(dataset) -> str:
    plist = dataset.id.get_create_plist()
    names = [plist.get_filter(i)[3].decode() or str(plist.get_filter(i)[0]) for i in range(plist.get_nfilters())]
    return "+".join(names) or "none"


def dataset_sizes(path) -> list[tuple[str, int, int, str]]:
    """``(name, stored bytes, raw bytes, filter)`` of every dataset of ``path``, largest first."""
    rows = []
    with h5py.File(path, "r") as f:

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                rows.append((name, obj.id.get_storage_size(), obj.size * obj.dtype.itemsize, _filter(obj)))

        f.visititems(visit)
    return sorted(rows, key=lambda row: -row[1])


def table(path) -> str:
    rows = dataset_sizes(path)
    with h5py.File(path, "r") as f:
        queries = f["queries/step"].shape[0]
    size = os.path.getsize(path)
    lines = [
        f"{path}: {queries:,} queries",
        f"{'dataset':<34}{'stored bytes':>15}{'share':>8}{'B/query':>10}{'raw B/query':>13}  filter",
    ]
    for name, stored, raw, flt in rows:
        if stored < 0.001 * size:
            continue
        lines.append(
            f"{name:<34}{stored:>15,}{100 * stored / size:>7.1f}%{stored / queries:>10.1f}{raw / queries:>13.1f}  {flt}"
        )
    small = sum(stored for _, stored, _, _ in rows if stored < 0.001 * size)
    lines.append(f"{'(datasets under 0.1 % each)':<34}{small:>15,}{100 * small / size:>7.1f}%{small / queries:>10.1f}")
    total = sum(stored for _, stored, _, _ in rows)
    lines.append(f"{'datasets':<34}{total:>15,}{100 * total / size:>7.1f}%{total / queries:>10.1f}")
    lines.append(f"{'file':<34}{size:>15,}{100.0:>7.1f}%{size / queries:>10.1f}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sessions", nargs="+")
    for path in parser.parse_args().sessions:
        print(table(path) + "\n")


if __name__ == "__main__":
    main()
