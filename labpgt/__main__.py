"""``python -m labpgt`` and the ``labpgt`` script: the command of :mod:`labpgt.cli`, its stop signals answered
from the process's first instant.

Its modules take tens of milliseconds to import, seconds on a busy machine; a Ctrl+C meanwhile exits 130 with one
line, as one does later, not with Python's traceback. The first handler is set through ``_signal``, the C module
under :mod:`signal` (whose own import builds enums for milliseconds), before :mod:`labpgt.signals` is imported;
before this module runs, the interpreter's own start (its ``site``, tens of milliseconds) and ``labpgt``'s
``__init__`` (a few imports of the interpreter's own modules) are Python's.
"""

import _signal
import sys

from labpgt import STOP_SIGNAL_NAMES

#: :data:`labpgt.signals.STOP_SIGNALS`, as numbers of the C module
EARLY_STOP_SIGNALS = tuple(getattr(_signal, name) for name in STOP_SIGNAL_NAMES if hasattr(_signal, name))


class EarlyInterrupt(KeyboardInterrupt):
    """A stop signal before :mod:`labpgt.signals` answers them (a subclass: see :class:`labpgt.signals.Interrupted`)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.exit_status = 128 + signum


def interrupt_early(signum, frame):
    raise EarlyInterrupt(signum)


def main() -> int:
    for signum in EARLY_STOP_SIGNALS:
        _signal.signal(signum, interrupt_early)
    try:
        from labpgt import signals

        signals.interrupt_from_now()
        from labpgt.cli import main as command
    except KeyboardInterrupt as exc:  # EarlyInterrupt, or signals.Interrupted once it answers
        for signum in EARLY_STOP_SIGNALS:  # the exit status is decided: see signals.ignore_from_now
            _signal.signal(signum, _signal.SIG_IGN)
        try:
            print("labpgt: interrupted", file=sys.stderr, flush=True)
        except (OSError, ValueError):  # after SIGHUP the terminal is gone
            pass
        return getattr(exc, "exit_status", 130)
    return command()


if __name__ == "__main__":
    sys.exit(main())
