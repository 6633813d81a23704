"""Whether a session file is being written right now: the writer's lock, and what a reader concludes from it.

A writer holds an advisory lock (``flock``) on a file beside its session, ``<session>.lock``, for as
long as the session is open, and removes it on a clean close. The operating system drops the lock
with the process, however the process ends, so a reader that asks for the lock without waiting
learns the truth: refused — a writer has the session open now; granted (and given back at once),
or no lock file — nobody is writing it. The lock is on a file of its own because HDF5 itself locks
the session file, readers included, for as long as they have it open.

The file's own state comes first: HDF5 marks a file "open for writing" in its superblock while a
writer has it and clears the mark on a clean close. A file without the mark is not being written
whatever else is found; a file with it and no writer's lock was left by a writer that died (killed,
crashed), and a lock file left beside it means nothing.

Where ``flock`` does not exist (Windows) or the filesystem refuses it, the rule is the heartbeat: a
file still marked open whose last row was written less than :data:`STALE_AFTER_S` ago (or ten of
its own intervals between rows, if longer) counts as in progress.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: no flock; the heartbeat rule decides
    fcntl = None  # type: ignore[assignment]

STALE_AFTER_S = 600.0
SUPERBLOCK_OPEN_FOR_WRITE = 0x01  # HDF5 file consistency flags, superblock versions 2 and 3


def lock_path(path) -> Path:
    """The writer's lock file of the session at ``path``."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


class WriterLock:
    """The lock a writer holds while its session file is open (see the module docstring)."""

    def __init__(self, path):
        self.path, self._handle = lock_path(path), None
        if fcntl is None:
            return
        try:
            self._handle = open(self.path, "wb")
        except OSError:  # a directory the writer may not add to: readers fall back to the heartbeat
            return
        try:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another writer's: leave it to that one
            self._handle.close()
            self._handle = None
        except OSError:  # no flock here: the file stays, so readers know to use the heartbeat
            pass

    def release(self) -> None:
        """Remove the lock file and drop the lock (closing the descriptor drops it)."""
        if self._handle is not None:
            self.path.unlink(missing_ok=True)
            self._handle.close()
            self._handle = None


def marked_open_for_write(path) -> bool:
    """Whether HDF5's superblock says a writer has the file open (or died with it open)."""
    with open(path, "rb") as handle:
        head = handle.read(12)
    return len(head) == 12 and head[8] in (2, 3) and bool(head[11] & SUPERBLOCK_OPEN_FOR_WRITE)


def writer_holds_lock(path) -> bool | None:
    """True if a writer holds the lock of the session at ``path`` now, False if none does, None where it
    cannot be asked."""
    if fcntl is None:
        return None
    try:
        handle = open(lock_path(path), "rb")
    except FileNotFoundError:
        return False
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return None  # no flock on this filesystem
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False


def heartbeat_is_fresh(wall_times, now: float | None = None) -> bool:
    """The stale-heartbeat rule: the last row's wall time is younger than STALE_AFTER_S, or than ten of the
    run's median intervals between rows if that is longer."""
    times = np.asarray(wall_times, dtype=np.float64)
    times = times[np.isfinite(times)]
    if times.size == 0:
        return False
    limit = STALE_AFTER_S
    if times.size > 1:
        limit = max(limit, 10.0 * float(np.median(np.diff(times))))
    return bool((time.time() if now is None else now) - times[-1] < limit)


def being_written(path, wall_times=()) -> bool:
    """Whether a writer is writing ``path`` right now (``wall_times``: its rows' wall times, for the heartbeat
    where the lock cannot be asked)."""
    path = Path(path)
    if not marked_open_for_write(path):
        return False
    locked = writer_holds_lock(path)
    return heartbeat_is_fresh(wall_times) if locked is None else locked
