"""Command-line options derived from the settings' declarations, and argparse that errs in one line.

This module owns how a declared setting (:mod:`labpgt.settings`) becomes an option: its flag, its type
(parsed and checked by the declaration), its help with the default, and which are shown. A training's
options come from the run's own settings, the chosen method's, the model's, the chosen reservoir kind's
and the evaluation policy's; the settings of the kinds *not* chosen are accepted but hidden, so that
``labpgt train --method pgt --twin-check-every 5`` is refused by the config in one line that says whose
setting it is, and ``labpgt train --method twin --help`` lists twin's.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Iterable

from labpgt.errors import UserError
from labpgt.settings import Declared, Spec, described_default, fields_of, parse

KIND_OPTIONS = ("method", "model", "reservoir")


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (and exit status 2) instead of a usage block."""

    def error(self, message):
        raise UserError(f"{self.prog}: {message} (see --help)")


def option_type(declared: Declared):
    """The argparse ``type`` of a setting: its text parsed and checked by its declaration."""
    def convert(text: str):
        try:
            if declared.kind is tuple:          # one item of a list option
                return declared.spec.parse(text) if declared.spec.parse else text
            return parse(declared, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = declared.key
    return convert


def number(kind: type, **bounds: Any):
    """The argparse ``type`` of a command's own numeric option (not a training setting), e.g.
    ``number(float, above=0)``: its errors read as a setting's do."""
    return option_type(Declared("value", "value", kind, None, Spec("", **bounds)))


def add_setting(parser, declared: Declared, shown: bool = True, default=None) -> None:
    """One option for ``declared`` (dest: its flat key; absent: None); ``default`` overrides the declared one
    in the help (a command with its own default, which it gives the config itself)."""
    help_text = argparse.SUPPRESS
    if shown:
        shown_default = described_default(declared, declared.default if default is None else default)
        help_text = f"{declared.help} ({shown_default})".replace("%", "%%")
    kwargs: dict[str, Any] = dict(dest=declared.key, default=None, help=help_text)
    if declared.kind is bool:
        parser.add_argument(declared.flag, action="store_const", const=not declared.default, **kwargs)
        return
    if declared.spec.choices is not None:
        kwargs["metavar"] = "|".join(map(str, declared.spec.choices))
    if declared.kind is tuple:
        kwargs.update(nargs="+", metavar="FILE")
    parser.add_argument(declared.flag, type=option_type(declared), **kwargs)


def add_settings(parser, title: str, classes: Iterable[type], shown: bool = True, skip: Iterable[str] = (),
                 defaults: dict | None = None, known: set | None = None, several: bool = False) -> None:
    """An option for every declared setting of ``classes`` not yet among ``known`` (the flat keys already
    added, updated here), under ``title``; hidden unless ``shown``; ``skip``: keys the command sets itself.
    ``several``: the classes are several kinds' (every method's) and a setting goes to each that has it, with
    its bounds (which differ between kinds) checked by the config, not here."""
    known = set() if known is None else known
    target = parser.add_argument_group(title) if shown else parser
    defaults = defaults or {}
    for cls in classes:
        for d in fields_of(cls):
            if d.key in known or d.key in skip or not d.spec.cli:
                continue
            known.add(d.key)
            if several:
                spec = dataclasses.replace(d.spec, minimum=None, maximum=None, above=None, below=None)
                d = dataclasses.replace(d, spec=spec)
            add_setting(target, d, shown, defaults.get(d.key))


def chosen_kinds(argv: list[str], defaults: dict[str, str]) -> dict[str, str]:
    """The method, model and reservoir an argument list names (before it is parsed whole, so that its
    help and options can be those of the kinds chosen); ``defaults`` where it names none."""
    pre = argparse.ArgumentParser(add_help=False)
    for name in KIND_OPTIONS:
        pre.add_argument(f"--{name}")
    known, _ = pre.parse_known_args(argv)
    return {name: getattr(known, name) or defaults[name] for name in KIND_OPTIONS}


def given_settings(args: argparse.Namespace, keys: Iterable[str]) -> dict:
    """The settings among ``keys`` that the command line gave (a list option as a tuple)."""
    values = {}
    for key in keys:
        value = getattr(args, key, None)
        if value is not None:
            values[key] = tuple(value) if isinstance(value, list) else value
    return values
