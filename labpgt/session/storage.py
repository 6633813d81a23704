"""Where a session is written, and what can go wrong there while a run writes it.

A run's record must survive what a lab PC does to its disks: the disk fills, a write fails (a USB disk
pulled, a network share gone), the file system turns read-only, the file is deleted or moved by someone
tidying up. This module owns what the writer does about each (:class:`Storage`, one per open session):

* **before a step is written** (:meth:`Storage.check`): the file is still where it was (same device and
  inode behind its path), its file system is writable, and it has room for the step's rows (their size
  uncompressed) plus :data:`MARGIN_BYTES` for the file's own metadata. A step that cannot be written is not
  started: the run stops (nothing measured is kept only in memory).
* **when a write fails anyway** (:meth:`Storage.failed`): HDF5, once a write of an open file failed, crashes
  the interpreter when it closes the file (a segmentation fault, seen with a full disk), so the file's
  descriptor is pointed at ``/dev/null``: HDF5 then closes it writing nothing more, and the file on disk
  stays as it was after the last flush that succeeded — a file written in SWMR mode is whole at every flush,
  as after a writer killed there, and holds every complete step.
* **a file deleted under the writer** still exists through the writer's descriptor until it is closed: its
  steps are copied to ``<name>.rescued.h5`` beside it (or in the working directory if that directory is gone
  too) before it is closed; a **moved** file is followed to where it now is (``/proc/self/fd``).

Each fault is a :class:`StorageFault`: one line — what happened, that RF is off and which steps are safe,
how to continue — and the exit status :data:`EXIT_STATUS` (74, ``EX_IOERR`` of sysexits.h).
:func:`room_for` tells the engine, before a run starts, whether the disk can hold it (a warning) or a single
step of it (a refusal).
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from labpgt.errors import UserError

EXIT_STATUS = 74
MARGIN_BYTES = 1 << 20  # the file's own metadata beside a step's rows (SWMR flushes write a few kB)


class StorageFault(UserError):
    """The session could not be written; ``where`` is the file that holds what was saved (None: none)."""

    exit_status = EXIT_STATUS

    def __init__(self, message: str, where: Path | None = None):
        super().__init__(message)
        self.where = where


def _device_inode(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def _free_bytes(directory: Path) -> int:
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize


def _read_only(directory: Path) -> bool:
    return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)


class Storage:
    """The checks and the fault handling of one session file open for writing at ``path`` on descriptor ``fd``."""

    def __init__(self, path: Path, fd: int):
        self.path, self.fd = Path(path), int(fd)
        self.identity = _device_inode(os.fstat(self.fd))
        self.fault: StorageFault | None = None
        self.neutralised = False

    # ---- before writing
    def check(self, needed_bytes: int) -> None:
        """Raise :class:`StorageFault` if the next ``needed_bytes`` cannot be written safely (see the module)."""
        if self.fault is not None:
            raise self.fault
        where = self.current_path()
        if where is None:
            raise self._rescue("was deleted, or the file system holding it went away,")
        if where != self.path.resolve():
            raise self._fault(
                f"{self.path} was moved to {where} while the run wrote it; RF is off and the session "
                f"there holds every complete step: continue with labpgt train --resume {where}",
                where,
            )
        directory = self.path.parent
        try:
            read_only, free = _read_only(directory), _free_bytes(directory)
        except OSError as exc:
            raise self.failed(exc) from None
        if read_only:
            raise self.failed(OSError(errno.EROFS, os.strerror(errno.EROFS)))
        if free < needed_bytes + MARGIN_BYTES:
            self.neutralise()  # closing must not write into the last of the space either
            raise self._fault(
                f"the disk holding {self.path} is full ({free / 1e6:.1f} MB free; the next step needs "
                f"{(needed_bytes + MARGIN_BYTES) / 1e6:.1f} MB); RF is off and the session holds every "
                f"complete step: free some space, then continue with labpgt train --resume {self.path}",
                self.path,
            )

    def current_path(self) -> Path | None:
        """Where the open file is now: its path, another (moved), or None (deleted, or its file system gone)."""
        try:
            if _device_inode(os.stat(self.path)) == self.identity:
                return self.path.resolve()
        except OSError:
            pass
        try:
            link = os.readlink(f"/proc/self/fd/{self.fd}")
        except OSError:  # no /proc (not Linux): nothing more is known
            return None
        if link.endswith(" (deleted)") or not os.path.exists(link):
            return None
        return Path(link)

    # ---- when writing failed
    def failed(self, exc: BaseException) -> StorageFault:
        """The fault of a write that raised ``exc`` (an OSError, or h5py's error naming the errno); the file is
        neutralised (see the module) so that closing it writes nothing more."""
        code: int | None = getattr(exc, "errno", None) or _errno_in(str(exc))
        what = {
            errno.ENOSPC: "the disk is full",
            errno.EDQUOT: "the disk quota is exhausted",
            errno.EROFS: "its file system turned read-only",
            errno.EIO: "a write error (EIO) on its disk",
            errno.ENOENT: "its file system went away",
            errno.ESTALE: "its network share went away",
        }.get(code or 0, f"writing it failed ({os.strerror(code) if code else str(exc).splitlines()[0]})")
        self.neutralise()
        return self._fault(
            f"{self.path}: {what}; RF is off and the file holds every step completed before it, "
            f"whole: once the disk is writable again, continue with labpgt train --resume "
            f"{self.path}",
            self.path,
        )

    def neutralise(self) -> None:
        """Point the file's descriptor at /dev/null: HDF5 closes it without writing (or crashing)."""
        if self.neutralised:
            return
        null = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(null, self.fd)
        finally:
            os.close(null)
        self.neutralised = True

    def _rescue(self, what: str) -> StorageFault:
        """The fault of a file deleted under the writer: its complete steps copied, through the descriptor that
        still holds them, to ``<name>.rescued.h5`` beside it (or in the working directory if that is gone)."""
        target = self.path.with_name(self.path.stem + ".rescued.h5")
        if not target.parent.is_dir():
            target = Path.cwd() / target.name
        try:
            shutil.copyfile(f"/proc/self/fd/{self.fd}", target)
        except OSError:
            return self._fault(f"{self.path} {what} while the run wrote it, and could not be rescued; RF is off", None)
        return self._fault(
            f"{self.path} {what} while the run wrote it; RF is off and its complete steps are rescued "
            f"in {target}: continue with labpgt train --resume {target}",
            target,
        )

    def _fault(self, message: str, where: Path | None) -> StorageFault:
        self.fault = StorageFault(message, where)
        return self.fault


def _errno_in(text: str) -> int | None:
    """The errno HDF5 names in its message ("errno = 28"), if it does."""
    marker = "errno = "
    at = text.find(marker)
    if at < 0:
        return None
    digits = "".join(ch for ch in text[at + len(marker) : at + len(marker) + 4] if ch.isdigit())
    return int(digits) if digits else None


def room_for(path: Path, one_step_bytes: int, run_bytes: int) -> str | None:
    """Whether the disk that will hold a session at ``path`` has room: a :class:`StorageFault` when it cannot hold
    a single step, a warning (returned) when it cannot hold the whole run as estimated, else None."""
    directory = Path(path).parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        read_only, free = _read_only(directory), _free_bytes(directory)
    except OSError as exc:
        raise StorageFault(
            f"cannot write a session in {directory}: {exc.strerror or exc}; nothing was measured"
        ) from None
    if read_only:
        raise StorageFault(f"the file system holding {directory} is read-only; nothing was measured")
    if free < one_step_bytes + 2 * MARGIN_BYTES:
        raise StorageFault(
            f"the disk holding {directory} has {free / 1e6:.1f} MB free, not enough for one step of "
            f"this run ({(one_step_bytes + 2 * MARGIN_BYTES) / 1e6:.1f} MB); nothing was measured"
        )
    if free < run_bytes + MARGIN_BYTES:
        return (
            f"the disk holding {directory} has {free / 1e6:.0f} MB free and this run is expected to write about "
            f"{run_bytes / 1e6:.0f} MB: it will stop, its complete steps saved, when the disk is full"
        )
    return None
