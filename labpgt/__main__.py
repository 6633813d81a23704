"""``python -m labpgt`` and the ``labpgt`` script: the command of :mod:`labpgt.cli`, its stop signals answered
from the process's first instant.

Its modules take tens of milliseconds to import, seconds on a busy machine; a Ctrl+C meanwhile exits 130 with one
line, as one does later, not with Python's traceback. (Before this module runs, the interpreter's own start is
Python's.)
"""

import sys

from labpgt import signals


def main() -> int:
    signals.interrupt_from_now()
    try:
        from labpgt.cli import main as command
    except signals.Interrupted as exc:
        signals.say("labpgt: interrupted")
        signals.ignore_from_now()
        return exc.exit_status
    return command()


if __name__ == "__main__":
    sys.exit(main())
