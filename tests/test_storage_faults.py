"""Storage faults while a run writes its session: a full disk (before and inside HDF5's own writes), a write
error, a read-only file system, the file deleted or moved, its file system gone. Each time: RF off (asked over
SCPI of a served bench), one line, exit 74, no traceback and no crash of the interpreter; the file holds whole
steps only, and ``--resume`` then ``labpgt replay`` exit 0 (these two in the test's own process).

The runs start ``python -m labpgt`` (a crash would show as a signal, not a line); the disks are small tmpfs
mounts the tests make (they need root; otherwise they are skipped, saying so).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from servedbench import generator_outputs, served_bench

from labpgt.cli import main
from labpgt.inspection import inspect_session

pytestmark = pytest.mark.slow  # runs over TCP in processes of their own, on disks the tests mount
# long enough to outlast the faults (at step 3-6, or the default disk full near step 10), short enough to resume quickly
RUN = ["--task", "iris", "--batch-size", "8", "--directions", "2", "--steps", "24", "--eval-every", "24", "--quiet"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with served_bench(tmp_path_factory.mktemp("bench")) as bench:
        yield bench


@pytest.fixture
def disk(tmp_path):
    """A 2.2 MB tmpfs of the test's own (``mount(size)`` for another size)."""
    mounted = []

    def mount(size="2200k", options=""):
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}{options}", "tmpfs", str(point)], capture_output=True, text=True
        )
        if done.returncode != 0:
            pytest.skip(f"mounting a tmpfs needs root: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def labpgt(*args, prelude: str = "", timeout=300, cwd=None):
    """``python -m labpgt ARGS`` in a process of its own, after ``prelude`` (a fault injected into it)."""
    code = textwrap.dedent(prelude) + "\nimport sys\nfrom labpgt.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def assert_one_line_74(result, *fragments, measured=True):
    assert result.returncode == 74, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len([line for line in lines if not line.startswith("labpgt: warning")]) == 1, result.stderr
    assert "Traceback" not in result.stderr and "Fatal Python error" not in result.stderr
    assert ("RF is off" in result.stderr) == measured and all(f in result.stderr for f in fragments), result.stderr


def assert_resumes_and_replays(session: Path, tmp_path: Path, bench) -> None:
    """Whole steps only; then, on a disk with room, ``--resume`` completes it and ``labpgt replay`` exits 0."""
    here = tmp_path / "continued.h5"
    shutil.copyfile(session, here)
    info = inspect_session(here)
    assert info["steps"] >= 1 and not info["completed"], info
    assert main(["train", "--resume", str(here), "--quiet"]) == 0  # in this process: its crash is not the point
    assert inspect_session(here)["completed"]
    assert main(["replay", str(here)]) == 0


def test_a_disk_that_fills_stops_the_run_before_a_step_it_cannot_hold(served, disk, tmp_path):
    bench, resources = served
    out = disk() / "run.h5"
    result = labpgt("train", "--bench", bench, *RUN, "--out", out)
    assert_one_line_74(result, "is full", f"--resume {out}")
    assert "labpgt: warning: the disk holding" in result.stderr  # said before the run began
    assert generator_outputs(resources) == ["0"] * 4
    assert_resumes_and_replays(out, tmp_path, bench)


def test_a_disk_filled_inside_hdf5s_own_write_leaves_whole_steps_only(served, disk, tmp_path):
    """Another process takes the last space between the check and the write: HDF5's write fails half-way
    (extents written in place, the new chunks not: zeros); no crash, and no zero row is a step's."""
    bench, resources = served
    out = disk() / "run.h5"
    racing = """
        import os
        from labpgt.session import storage
        checks = []
        def taken_right_after(self, needed):        # the third check passes; right after it, all but 16 kB is taken
            checks.append(needed)
            if len(checks) == 3:
                free = os.statvfs(self.path.parent)
                (self.path.parent / "taken").write_bytes(bytes(max(0, free.f_bavail * free.f_frsize - 16384)))
        storage.Storage.check = taken_right_after
    """
    result = labpgt("train", "--bench", bench, *RUN, "--out", out, prelude=racing)
    assert_one_line_74(result, "the disk is full")
    assert generator_outputs(resources) == ["0"] * 4
    assert_resumes_and_replays(out, tmp_path, bench)


def test_a_write_error_stops_the_run_and_the_file_closes_as_it_was(served, tmp_path):
    bench, resources = served
    out = tmp_path / "run.h5"
    eio = """
        import errno, os
        from labpgt.session import writer
        real, calls = os.fsync, []
        def failing(fd):                                    # the disk answers EIO at the fourth step's sync
            calls.append(fd)
            if len(calls) == 4:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            real(fd)
        writer.os.fsync = failing
    """
    result = labpgt("train", "--bench", bench, *RUN, "--out", out, prelude=eio)
    assert_one_line_74(result, "a write error (EIO)")
    assert generator_outputs(resources) == ["0"] * 4
    assert inspect_session(out)["steps"] == 3
    assert_resumes_and_replays(out, tmp_path, bench)


def test_a_file_system_turned_read_only_stops_the_run(served, tmp_path):
    """A file system remounted read-only under a writer (ext4's errors=remount-ro); the kernel refuses to do it
    to a tmpfs with a file open for writing, so the turn is injected where the writer asks."""
    bench, resources = served
    out = tmp_path / "run.h5"
    read_only = """
        from labpgt.session import storage
        asked = []
        storage._read_only = lambda directory: asked.append(1) or len(asked) > 5
    """
    result = labpgt("train", "--bench", bench, *RUN, "--out", out, prelude=read_only)
    assert_one_line_74(result, "turned read-only")
    assert generator_outputs(resources) == ["0"] * 4
    assert_resumes_and_replays(out, tmp_path, bench)


def test_a_read_only_or_full_disk_is_refused_before_anything_is_measured(served, disk, tmp_path):
    bench, resources = served
    read_only = disk(options=",ro")
    result = labpgt("train", "--bench", bench, *RUN, "--out", read_only / "run.h5")
    assert_one_line_74(result, "is read-only", "nothing was measured", measured=False)
    full = disk(size="1m")
    (full / "filler").write_bytes(b"\0" * ((1 << 20) - 8192))
    result = labpgt("train", "--bench", bench, *RUN, "--out", full / "run.h5")
    assert_one_line_74(result, "not enough for one step", "nothing was measured", measured=False)
    assert not (full / "run.h5").exists() and generator_outputs(resources) == ["0"] * 4


def _run_then(action, bench, out: Path, after_steps: int = 3, cwd=None):
    """Start a run writing ``out`` (in ``cwd``); once it has ``after_steps`` steps, ``action()``; the finished
    process."""
    process = subprocess.Popen(
        [sys.executable, "-m", "labpgt", "train", "--bench", str(bench), *RUN, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if out.exists() and inspect_session(out)["steps"] >= after_steps:
                break
        except Exception:  # noqa: BLE001 - a file being laid out
            pass
        time.sleep(0.05)
    action()
    _, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, "", err)


def test_a_session_deleted_under_the_run_is_rescued(served, tmp_path):
    bench, resources = served
    out = tmp_path / "run.h5"
    result = _run_then(out.unlink, bench, out)
    rescued = tmp_path / "run.rescued.h5"
    assert_one_line_74(result, "was deleted", f"--resume {rescued}")
    assert generator_outputs(resources) == ["0"] * 4
    assert_resumes_and_replays(rescued, tmp_path, bench)


def test_a_session_moved_under_the_run_is_followed(served, tmp_path):
    bench, resources = served
    out, moved = tmp_path / "run.h5", tmp_path / "archive" / "kept.h5"
    moved.parent.mkdir()
    result = _run_then(lambda: os.rename(out, moved), bench, out)
    assert_one_line_74(result, f"was moved to {moved}", f"--resume {moved}")
    assert generator_outputs(resources) == ["0"] * 4
    assert_resumes_and_replays(moved, tmp_path, bench)


def test_a_file_system_that_goes_away_under_the_run_is_rescued(served, disk, tmp_path):
    """The disk unmounted under the run (a USB disk pulled, lazily): the data still reachable through the run's
    descriptor is copied out; the mount point left behind is a directory of the disk beneath, and takes it."""
    bench, resources = served
    mounted = disk(size="20m")
    out = mounted / "run.h5"
    result = _run_then(lambda: subprocess.run(["umount", "-l", str(mounted)], check=True), bench, out)
    rescued = mounted / "run.rescued.h5"
    assert_one_line_74(result, "went away", f"rescued in {rescued}")
    assert generator_outputs(resources) == ["0"] * 4
    assert_resumes_and_replays(rescued, tmp_path, bench)
