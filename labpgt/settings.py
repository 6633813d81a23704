"""Settings declared once, and everything derived from the declaration.

A *setting* is a field of a frozen settings dataclass, declared with :func:`setting` where it is used:
the run's own in :class:`labpgt.trainer.TrainConfig`, the network's in
:class:`labpgt.architectures.ModelSpec`, the evaluation policy's in :class:`labpgt.evaluation.Evaluation`,
each training method's on the method (``Method.Settings``, :mod:`labpgt.methods`) and each reservoir
kind's on the kind (:mod:`labpgt.reservoirs`). The declaration holds the default, the help, the bounds
and the choices; a subclass may give a field another default by redeclaring it with a plain value
(``lr: float = 0.002``), and keeps the rest of the declaration (:func:`spec_of` looks it up the MRO).

From that one declaration this module derives

* :func:`check` — type, bounds and choices of every field, each refusal one line (:class:`UserError`);
* :func:`parse` — a value typed from text (a command line, ``--set``, a benchmark variant);
* :func:`requirement` — what a value must be, in words ("must be a positive integer"), for both;
* :func:`fields_of` — the declared fields of a settings class, in order, with their resolved types.

The command line (:mod:`labpgt.commandline`), the GUI's Parameters (:mod:`labpgt.procedures.training`)
and the session's recorded config (:meth:`labpgt.trainer.TrainConfig.to_dict`) are built from these.
A default of ``None`` means *derived*: the setting follows from others when the run is resolved, and
its declaration says how (``derived="steps // 20"``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labpgt.errors import UserError

SPEC_KEY = "labpgt.setting"


@dataclass(frozen=True)
class Spec:
    """What a setting is: its help, its bounds (``minimum``/``maximum`` inclusive, ``above``/``below``
    exclusive), its ``choices``, its ``unit``, how a ``None`` default is ``derived``, the command-line
    ``flag`` (default ``--name-with-dashes``; a bool defaulting to True gets ``--no-…``), ``parse`` (text to
    value, for paths that must exist), whether the command line and the GUI show it, and the ``key`` it has in
    the flat namespace (default: its field name)."""

    help: str
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    below: float | None = None
    choices: tuple | None = None
    unit: str = ""
    derived: str | None = None
    flag: str | None = None
    parse: Callable[[str], Any] | None = None
    cli: bool = True
    gui: bool = True
    key: str | None = None
    label: str | None = None
    only: str | None = None
    typical: Any = None


def setting(default: Any, help: str, **spec: Any) -> Any:
    """A dataclass field with its declaration (see :class:`Spec`); ``default`` may be a tuple (immutable)."""
    return dataclasses.field(default=default, metadata={SPEC_KEY: Spec(help, **spec)})


@dataclass(frozen=True)
class Declared:
    """One declared field of a settings class: its name, flat key, resolved type, default and :class:`Spec`."""

    name: str
    key: str
    type: Any
    default: Any
    spec: Spec

    @property
    def kind(self) -> type:
        """The value's Python type: bool, int, float, str or tuple (of strings)."""
        return _base_type(self.type)

    @property
    def optional(self) -> bool:
        return type(None) in typing.get_args(self.type)

    @property
    def flag(self) -> str:
        if self.spec.flag:
            return self.spec.flag
        dashed = self.key.replace("_", "-")
        return f"--no-{dashed}" if self.kind is bool and self.default is True else f"--{dashed}"

    @property
    def label(self) -> str:
        label = self.spec.label or self.key.replace("_", " ").capitalize()
        return f"{label} ({self.spec.only})" if self.spec.only else label

    @property
    def help(self) -> str:
        return f"{self.spec.only}: {self.spec.help}" if self.spec.only else self.spec.help


def spec_of(cls: type, name: str) -> Spec:
    """The declaration of field ``name`` of ``cls``: the nearest class in the MRO that declared it with
    :func:`setting` (a subclass that only changes the default keeps its base's declaration)."""
    for klass in cls.__mro__:
        field = klass.__dict__.get("__dataclass_fields__", {}).get(name)
        if field is not None and SPEC_KEY in field.metadata:
            return field.metadata[SPEC_KEY]
    raise TypeError(f"{cls.__name__}.{name} is not declared with labpgt.settings.setting")


@functools.cache
def fields_of(cls: type) -> tuple[Declared, ...]:
    """The declared fields of the settings dataclass ``cls``, in order (fields without a declaration, such as
    nested groups, are left out)."""
    hints = typing.get_type_hints(cls)
    out = []
    for field in dataclasses.fields(cls):
        try:
            spec = spec_of(cls, field.name)
        except TypeError:
            continue
        out.append(Declared(field.name, spec.key or field.name, hints[field.name], field.default, spec))
    return tuple(out)


def declared(cls: type, key: str) -> Declared | None:
    """The field of ``cls`` whose flat key is ``key``, or None."""
    return next((d for d in fields_of(cls) if d.key == key), None)


def default_of(cls: type, key: str):
    """The declared default of the setting ``key`` of ``cls``."""
    found = declared(cls, key)
    if found is None:
        raise KeyError(f"{cls.__name__} declares no setting {key!r}")
    return found.default


def _base_type(annotation) -> type:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is tuple:
        return tuple
    if args:
        return _base_type(args[0])
    return annotation


# --------------------------------------------------------------------------- what a value must be
def requirement(d: Declared) -> str:
    """What a value of ``d`` must be, in words: "must be a positive integer", "must be in [0, 1)", ..."""
    spec = d.spec
    if spec.choices is not None:
        return f"must be one of {', '.join(map(str, spec.choices))}"
    if d.kind is bool:
        return "must be true or false"
    if d.kind is int:
        if spec.maximum is None and spec.minimum == 1:
            return "must be a positive integer"
        if spec.maximum is None and spec.minimum == 0:
            return "must be zero or a positive integer"
        if spec.minimum is not None and spec.maximum is not None:
            return f"must be a whole number in [{spec.minimum:g}, {spec.maximum:g}]"
        return "must be a whole number"
    if d.kind is float:
        upper = (
            f" at most {spec.maximum:g}"
            if spec.maximum is not None
            else f" below {spec.below:g}"
            if spec.below is not None
            else ""
        )
        if spec.above == 0:
            return f"must be a positive finite number{upper}"
        if spec.minimum == 0 and not upper:
            return "must be zero or a positive finite number"
        low = spec.above if spec.above is not None else spec.minimum
        if low is None and not upper:
            return "must be a finite number"
        opening = "(" if spec.above is not None else "["
        closing = ")" if spec.below is not None else "]"
        high = spec.below if spec.below is not None else spec.maximum
        return (
            f"must be in {opening}{'-inf' if low is None else f'{low:g}'}, "
            f"{'inf' if high is None else f'{high:g}'}{closing}"
        )
    return "must be text"


def _within(d: Declared, value) -> bool:
    spec = d.spec
    if spec.choices is not None:
        return value in spec.choices
    if d.kind in (int, float):
        if d.kind is float and not math.isfinite(value):
            return False
        return not (
            (spec.minimum is not None and value < spec.minimum)
            or (spec.maximum is not None and value > spec.maximum)
            or (spec.above is not None and value <= spec.above)
            or (spec.below is not None and value >= spec.below)
        )
    return True


def _typed(d: Declared, value):
    """``value`` as the field's type (numpy scalars and JSON's lists accepted), or raise ValueError."""
    import numpy as np  # here: the command line imports this module before it needs numpy

    kind = d.kind
    if kind is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise ValueError
    if kind is int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise ValueError
        return int(value)
    if kind is float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError
        return float(value)
    if kind is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ValueError
        return tuple(value)
    if not isinstance(value, str):
        raise ValueError
    return value


def refusal(d: Declared, value) -> str:
    """Why ``value`` (of the right type) is refused, in one line naming the setting."""
    if d.spec.choices is not None:
        return f"unknown {d.key} {value!r}; valid: {', '.join(map(str, d.spec.choices))}"
    return f"{d.key} {requirement(d)}, not {value!r}"


def check(settings) -> None:
    """Check every declared field of the settings dataclass instance ``settings`` (type, bounds, choices),
    converting numbers to their declared type in place; the first refusal is one line."""
    kind: type = type(settings)
    for d in fields_of(kind):
        value = getattr(settings, d.name)
        if value is None:
            if d.optional:
                continue
            raise UserError(f"{d.key} must be given ({requirement(d)[5:]})")
        try:
            typed = _typed(d, value)
        except ValueError:
            raise UserError(f"{d.key} {requirement(d)}, not {value!r}") from None
        if not _within(d, typed):
            raise UserError(refusal(d, value))
        if typed is not value:
            object.__setattr__(settings, d.name, typed)


def parse(d: Declared, text: str):
    """The value of ``d`` written as ``text`` (a command line, ``--set``); ValueError with what it must be."""
    if d.spec.parse is not None:
        return d.spec.parse(text)
    kind = d.kind
    try:
        if kind is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError
            value: Any = lowered in ("true", "1", "yes", "on")
        elif kind is int:
            value = int(text)
        elif kind is float:
            value = float(text)
        elif kind is tuple:
            value = tuple(part.strip() for part in text.split(",") if part.strip())
        else:
            value = text
    except ValueError:
        article = {int: "whole number", float: "number", bool: "true or false"}.get(kind, "value")
        raise ValueError(f"{text!r} is not a {article}") from None
    if not _within(d, value):
        raise ValueError(refusal(d, value) if d.spec.choices is not None else f"{requirement(d)}, not {text}")
    return value


def described_default(d: Declared, default=dataclasses.MISSING) -> str:
    """The default as help shows it: the value, or how it is derived."""
    value = d.default if default is dataclasses.MISSING else default
    if value is None:
        return d.spec.derived or "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ", ".join(value) or "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def existing_file(what: str) -> Callable[[str], str]:
    """A ``parse`` for a setting that names a file which must exist: its absolute path."""

    def parse_path(text: str) -> str:
        path = Path(text)
        if not path.is_file():
            raise ValueError(f"{what} {text} does not exist")
        return str(path.resolve())

    return parse_path
