r"""Process signals: the one place they are handled, for the command line and the GUI alike.

Every signal by which a lab PC asks a process to end (:data:`STOP_SIGNALS`) becomes a stop request to the
run engine (:mod:`labpgt.engine`): the run stops before its next measurement, RF goes off, the session is
flushed, and the process exits with 128 + the signal's number (the shell's convention). They are:

=========  ======  ======================================================================================
signal     exit    who sends it
=========  ======  ======================================================================================
SIGINT     130     Ctrl+C in the terminal
SIGTERM    143     ``kill``, a service manager stopping the service (systemd), an orderly shutdown of the
                   machine, a session manager logging out
SIGHUP     129     the terminal or the SSH session closed (the run's lines then go nowhere: ``labpgt
                   inspect`` says the session is interrupted, and ``--resume`` continues it)
SIGQUIT    131     Ctrl+\ in the terminal
SIGPWR     158     the UPS daemon, on a power failure (Linux)
SIGXCPU    152     the CPU-time limit of a batch system or ``ulimit -t``
=========  ======  ======================================================================================

A second one interrupts at once (:class:`Interrupted`, a KeyboardInterrupt): every ``finally`` still runs,
RF off included. SIGKILL and a power cut cannot be caught: the session file then holds every complete step,
as it does at every moment (:mod:`labpgt.session`).

* :func:`stopping_runs` — while a run of the command line is measuring: the first signal stops it;
* :func:`interrupting` — outside runs (a benchmark, a server, an import): a signal raises at once;
* :class:`SignalSocket` — for the GUI: the signals are written to a socket that the Qt event loop
  watches, so that no Python code of the window is ever interrupted half-way;
* :func:`deferred` — signals held back while the numerical libraries import.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from labpgt import STOP_SIGNAL_NAMES

if TYPE_CHECKING:
    from labpgt.engine import StopReason

#: the signals that ask a run to stop (those of this platform)
STOP_SIGNALS = tuple(getattr(signal, name) for name in STOP_SIGNAL_NAMES if hasattr(signal, name))


def say(line: str) -> None:
    """A line on stderr, if there still is one to write to (after SIGHUP the terminal is gone)."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


class Interrupted(KeyboardInterrupt):
    """A signal that interrupts at once, as a KeyboardInterrupt of its own type. CPython marks a plain
    KeyboardInterrupt that leaves any ``exec`` or ``eval`` of a string (how dataclasses and namedtuples are
    made, inside imports too) as never handled, even when it is caught later, and ``python -m labpgt`` then
    kills itself with SIGINT at exit instead of returning 130; it compares the exact type, so a subclass is
    not marked (seen in CI)."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def reason(signum: int) -> StopReason:
    """The stop reason of a signal: its name, and its exit status 128 + its number."""
    from labpgt.engine import StopReason

    return StopReason(signal.Signals(signum).name, signum)


def ignore_from_now() -> None:
    """The command has ended (RF off, its session saved) and its exit status is decided: a stop signal arriving
    while the interpreter shuts down (a Ctrl+C repeated by an impatient user) is ignored, so it neither raises
    inside a library's exit handler (a traceback) nor kills the process (status -2 instead of 130).

    Ignored, not handled: Python resets every handler of its own to the default action part-way through its
    finalisation (``_PySignal_Fini``), and a signal after that point killed the process; only ``SIG_IGN`` is
    kept to the end."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def interrupt_from_now() -> None:
    """The process has just started: from now on every stop signal raises :class:`Interrupted`, before the command's
    modules are imported (which takes a while on a busy machine) and until the command handles signals itself."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, interrupt)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def interrupt(signum, frame):
    """The handler that interrupts at once."""
    raise Interrupted(signum)


def _unraisable(unraisable) -> None:
    """``sys.unraisablehook``: an interrupt raised inside a finalizer or a GC callback (JAX has one) is not a
    fault to print a traceback for; the run engine's stop request, made first, still stops the run."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        return
    sys.__unraisablehook__(unraisable)


@contextlib.contextmanager
def interrupting():
    """Every stop signal raises :class:`Interrupted` at once (outside runs: a benchmark, an inspection)."""
    if not _main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, interrupt) for signum in STOP_SIGNALS}
    hook, sys.unraisablehook = sys.unraisablehook, _unraisable
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.unraisablehook = hook


@contextlib.contextmanager
def stopping_runs(engine, announce: Callable[[str], None] | None = None):
    """While inside: the first stop signal asks ``engine`` to stop its run between two measurements (and
    ``announce`` says so); a second one interrupts at once."""
    if not _main_thread():
        yield
        return

    def request(signum, frame):
        for other in STOP_SIGNALS:
            signal.signal(other, interrupt)
        engine.request_stop(reason(signum))
        if announce is not None:
            announce(
                f"{signal.Signals(signum).name}: stopping after the measurement in progress, RF off, the "
                f"session saved (again to interrupt at once)"
            )

    previous = {signum: signal.signal(signum, request) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def deferred():
    """Stop signals held back while the numerical libraries import (an import interrupted half-way has
    crashed the interpreter at exit); one received meanwhile is acted on right after."""
    if not hasattr(signal, "pthread_sigmask") or not _main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, set(STOP_SIGNALS))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _ignore_in_python(signum, frame) -> None:
    """The Python-level handler does nothing: the wakeup socket carries the signal to the event loop."""


class SignalSocket:
    """The stop signals delivered through a socket instead of Python handlers, for an event loop to watch.

    Python runs a signal handler between two bytecodes of whatever the main thread is doing; a handler
    that raises there, inside Qt callbacks (a slot, a paint, pyqtgraph's update), left PySide's objects
    half-updated and crashed the interpreter at exit (``Fatal Python error: none_dealloc``, or a
    segfault). So the Python handlers do nothing; the C handler writes the signal number to a socket
    (``signal.set_wakeup_fd``), the event loop watches :meth:`fileno` and reads :meth:`received`.
    """

    def __init__(self):
        self._reader, self._writer = socket.socketpair()
        for end in (self._reader, self._writer):
            end.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._previous = {signum: signal.signal(signum, _ignore_in_python) for signum in STOP_SIGNALS}

    def fileno(self) -> int:
        return self._reader.fileno()

    def received(self) -> list[int]:
        """The stop signals delivered since the last call."""
        try:
            data = self._reader.recv(64)
        except BlockingIOError:
            return []
        return [signum for signum in data if signum in STOP_SIGNALS]

    def restore(self, ignore: bool = False) -> None:
        """Give the signals their previous handlers back — or, with ``ignore`` (a signal already decided how the
        process ends), ignore them from now on: Python's finalisation resets its own handlers to the default,
        and a repeated Ctrl+C would kill the exiting process."""
        signal.set_wakeup_fd(self._previous_fd)
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_IGN if ignore else handler)
        self._reader.close()
        self._writer.close()
