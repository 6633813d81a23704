"""The ``labpgt`` command line: the list of subcommands, the parser made of them, and the process's exit status.

Each subcommand's arguments, wired to the function that does its work, are a module of :mod:`labpgt.commands`;
a training's settings and their options are derived from their declarations (:mod:`labpgt.commandline`); the
terminal display is :mod:`labpgt.display`, the process signals :mod:`labpgt.signals`. A :class:`UserError`
anywhere becomes ``labpgt: <message>`` on stderr with exit status 2 and no traceback; a run stopped by a signal
exits with 128 + its number (Ctrl+C 130, SIGTERM 143) once RF is off and the session flushed.
"""

from __future__ import annotations

import sys

from labpgt import signals
from labpgt.commandline import DEFAULT_KINDS, OneLineParser, chosen_kinds
from labpgt.commands.gui import add_gui
from labpgt.commands.sessions import add_session_commands
from labpgt.commands.sim import add_sim
from labpgt.commands.spectrum import add_spectrum
from labpgt.commands.sweep import add_sweep
from labpgt.commands.train import add_benchmark, add_train
from labpgt.commands.twin import add_twin
from labpgt.errors import UserError

COMMANDS = [add_train, add_benchmark, add_session_commands, add_sim, add_spectrum, add_sweep, add_twin, add_gui]


TRAINING_COMMANDS = {add_train: "train", add_benchmark: "benchmark"}


def build_parser(argv: list[str] | None = None) -> OneLineParser:
    """The parser of ``labpgt``; a training's options are those of the kinds ``argv`` chooses, and are made (which
    imports the modules that declare them) only for the command ``argv`` names."""
    parser = OneLineParser(
        prog="labpgt",
        description="Train neural networks through a physical reservoir "
        "(a magnonic auto-oscillation ring) with perturbative "
        "gradient training.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    argv = list(argv or [])
    kinds = chosen_kinds(argv, DEFAULT_KINDS)
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    for add in COMMANDS:
        if add in TRAINING_COMMANDS:
            add(sub, kinds, full=TRAINING_COMMANDS[add] == command)
        else:
            add(sub, kinds)
    return parser


def main(argv=None) -> int:
    """The ``labpgt`` command; with ``argv`` None it is this process's command and owns its signals to the end."""
    status = _command(list(sys.argv[1:] if argv is None else argv))
    if argv is None:
        signals.ignore_from_now()
    return status


def _command(argv: list[str]) -> int:
    try:
        with signals.interrupting():
            with signals.deferred():  # the settings' modules import numpy and JAX: not half-way
                parser = build_parser(argv)
            args = parser.parse_args(argv)
            return args.run(args)
    except UserError as exc:
        print(f"labpgt: {exc}" if not str(exc).startswith("labpgt") else str(exc), file=sys.stderr)
        return exc.exit_status
    except signals.Interrupted as exc:
        signals.say("labpgt: interrupted")
        return exc.exit_status
    except KeyboardInterrupt:
        signals.say("labpgt: interrupted")
        return 130
    except BrokenPipeError:  # the reader went away (`labpgt inspect … | head`): not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
