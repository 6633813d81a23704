"""Shared test setup: Qt runs offscreen (set before anything imports Qt), and JAX keeps what it compiles.

JAX's persistent compilation cache is shared by the test processes (both xdist workers) and by every
``labpgt`` process a test starts: the networks are compiled once per machine instead of once per process
(a small transformer run in a fresh process: 25 s without it, 10 s with it). A compiled program is the same
program, so results stay bit-identical.

The ``labpgt`` fixture runs the command line in the test's process; the tests that need the real process
(signals, exit at interpreter shutdown, another BLAS kernel) start it themselves.
"""

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(tempfile.gettempdir()) / "labpgt-tests-jax-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker more than this process may use cores. The integration tests spend part of their
    time waiting on what they test (a served LakeShore 421's 50 ms between commands, a dropped answer's timeout,
    a suspender's hold), and meanwhile the extra worker computes."""
    return len(os.sched_getaffinity(0)) + 1


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def labpgt(capsys, monkeypatch):
    """``labpgt ARGS`` in this process (``labpgt.cli.main``, what ``python -m labpgt`` runs), from directory
    ``cwd``: its exit status and what it printed."""
    from labpgt.cli import main

    def run(*args, cwd=None):
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()
        status = main(list(args))
        return Ran(status, *capsys.readouterr())

    return run
