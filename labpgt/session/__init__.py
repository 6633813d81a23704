"""The session file: one HDF5 file per run (a training or a sweep), the record of everything it measured.

This package owns the file. Nothing else in labpgt reads or writes its layout: runs write through
the writers (recorders of :mod:`labpgt.recording`), and replay, inspection, export and the GUI read
through :class:`SessionReader`.

* :mod:`~labpgt.session.schema` — versions, kinds, roles, the column tables, their units, what a
  valid file holds (``docs/session-format.md`` describes the format);
* :mod:`~labpgt.session.nexus` — the file's description of itself: units, dimension scales, NeXus plots;
* :mod:`~labpgt.session.writer` — :class:`SessionWriter` (a training), :class:`SweepWriter` (a sweep),
  the resume copy;
* :mod:`~labpgt.session.reader` — :class:`SessionReader`;
* :mod:`~labpgt.session.hdf5` — the HDF5 plumbing underneath, and what a reader needs (HDF5 1.10, built-in
  filters).
"""

from labpgt.session.reader import SessionReader
from labpgt.session.schema import KINDS, ROLES, SCHEMA, SCHEMA_V1, params_sha256
from labpgt.session.writer import SessionWriter, SweepWriter, session_config, sweep_session_config

__all__ = [
    "KINDS",
    "ROLES",
    "SCHEMA",
    "SCHEMA_V1",
    "SessionReader",
    "SessionWriter",
    "SweepWriter",
    "params_sha256",
    "session_config",
    "sweep_session_config",
]
