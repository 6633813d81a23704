"""Command-line options derived from the settings' declarations, argument types, and argparse that errs in one line.

This module owns how a declared setting (:mod:`labpgt.settings`) becomes an option: its flag, its type
(parsed and checked by the declaration), its help with the default, and which are shown. A training's
options come from the run's own settings, the chosen method's, the model's, the chosen reservoir kind's
and the evaluation policy's; the settings of the kinds *not* chosen are accepted but hidden, so that
``labpgt train --method pgt --twin-check-every 5`` is refused by the config in one line that says whose
setting it is, and ``labpgt train --method twin --help`` lists twin's. It also holds the types of the commands' own
arguments (bounded numbers, a list of simulator behaviours, a fault specification, generator models, a vector of
inputs, seeds, accuracy levels): text to a value, or argparse's one-line error.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from collections.abc import Callable, Iterable
from typing import Any

from labpgt.errors import UserError
from labpgt.settings import Declared, Spec, described_default, fields_of, parse

KIND_OPTIONS = ("method", "model", "reservoir")
DEFAULT_KINDS = {"method": "node", "model": "dense", "reservoir": "ring-sim"}


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (and exit status 2) instead of a usage block."""

    def error(self, message):
        raise UserError(f"{self.prog}: {message} (see --help)")


def option_type(declared: Declared):
    """The argparse ``type`` of a setting: its text parsed and checked by its declaration."""

    def convert(text: str):
        try:
            if declared.kind is tuple:  # one item of a list option
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


POSITIVE_INT, NONNEGATIVE_INT = number(int, minimum=1), number(int, minimum=0)
POSITIVE_FLOAT = number(float, above=0)


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


def add_settings(
    parser,
    title: str,
    classes: Iterable[type],
    shown: bool = True,
    skip: Iterable[str] = (),
    defaults: dict | None = None,
    known: set | None = None,
    several: bool = False,
) -> None:
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


# --------------------------------------------------------------------------- a training's options
def add_training_options(p, kinds: dict, benchmark: bool = False) -> list[str]:
    """The options of a training's settings (``benchmark``: without the method's, which its variants give, and
    the seed); returns every key they set. The chosen kinds' settings are shown, the others accepted hidden."""
    from labpgt.architectures import ModelSpec
    from labpgt.benchmark import EVALUATION_DEFAULTS
    from labpgt.evaluation import Evaluation
    from labpgt.methods import METHODS
    from labpgt.reservoirs import NAMES, RESERVOIRS, reservoir_kind
    from labpgt.trainer import TrainConfig

    if not benchmark:
        p.add_argument(
            "--method",
            default=None,
            help=f"{' | '.join(METHODS)} ({DEFAULT_KINDS['method']}); "
            f"labpgt train --method METHOD --help lists its settings",
        )
    p.add_argument("--reservoir", default=None, help=f"{NAMES.replace(', ', ' | ')} (ring-sim)")
    known: set[str] = set()
    add_settings(p, "the run", [TrainConfig], skip=("seed",) if benchmark else (), known=known)
    chosen_method = METHODS[kinds["method"]] if kinds["method"] in METHODS else None
    if chosen_method is not None and not benchmark:
        add_settings(p, f"method {chosen_method.name}", [chosen_method.Settings], known=known)
    add_settings(p, "the network", [ModelSpec], known=known)
    try:
        chosen_reservoir = reservoir_kind(kinds["reservoir"]).Settings
    except UserError:
        chosen_reservoir = None  # refused with one line when the config is made
    add_settings(p, f"reservoir {kinds['reservoir']}", [chosen_reservoir] if chosen_reservoir else [], known=known)
    add_settings(p, "evaluation", [Evaluation], known=known, defaults=EVALUATION_DEFAULTS if benchmark else None)
    if benchmark:
        add_settings(
            p,
            "settings of the methods (each goes to every method that has it; one method's: --set METHOD.KEY=V)",
            [m.Settings for m in METHODS.values()],
            skip=("steps",),
            known=known,
            several=True,
        )
    else:
        add_settings(p, "", [m.Settings for m in METHODS.values()], shown=False, known=known)
    add_settings(p, "", [k.Settings for k in RESERVOIRS.values()], shown=False, known=known)
    return sorted(known)


def training_settings(args, keys) -> dict:
    """The flat training settings the command line gave, the reservoir named as a run records it."""
    from labpgt.reservoirs import resolved_reservoir_name

    values = given_settings(args, keys)
    reservoir = resolved_reservoir_name(args.reservoir or DEFAULT_KINDS["reservoir"])
    values["reservoir"] = reservoir
    if getattr(args, "method", None):
        values["method"] = args.method
    return values


# --------------------------------------------------------------------------- the commands' own argument types
def argument_type(convert):
    """A converter whose UserError becomes argparse's one-line error for the option."""
    import argparse

    def wrapped(text):
        try:
            return convert(text)
        except UserError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return wrapped


@argument_type
def behaviour_list(text: str) -> tuple[str, ...]:
    from labpgt.instruments.simulated.ring import Behaviours

    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in Behaviours.names()]
    if unknown:
        raise UserError(f"unknown behaviour {unknown[0]!r}; expected {', '.join(Behaviours.names())}")
    return names


@argument_type
def fault_spec(text: str):
    from labpgt.instruments.simulated.faults import FaultSpec

    return FaultSpec.parse(text)


def model_name(models: Callable[[], Iterable[str]]):
    """An option's type that accepts the names ``models()`` gives: the table behind it (the simulator's) is imported
    when the option is given, not when the parser is built, so ``labpgt --help`` stays quick."""

    @argument_type
    def name(text: str) -> str:
        names = tuple(models())
        if text not in names:
            raise UserError(f"invalid choice: {text!r} (choose from {', '.join(names)})")
        return text

    return name


def simulated_models(module: str, table: str) -> Callable[[], Iterable[str]]:
    """The names of the simulator's model table ``table`` in ``labpgt.instruments.simulated`` + ``module``,
    imported when asked."""
    return lambda: getattr(importlib.import_module(f"labpgt.instruments.simulated{module}"), table)


analyzer_model = model_name(simulated_models("", "ANALYZER_MODELS"))


@argument_type
def generator_models(text: str) -> list[str]:
    from labpgt.instruments.simulated import GENERATOR_MODELS

    models = [name.strip() for name in text.split(",")]
    unknown = [name for name in models if name not in GENERATOR_MODELS]
    if unknown:
        raise UserError(f"unknown generator model {unknown[0]!r}; expected {', '.join(GENERATOR_MODELS)}")
    return models


@argument_type
def unit_vector(text):
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"{text!r} is not a comma-separated list of numbers") from None
    if not all(0.0 <= v <= 1.0 for v in values):
        raise UserError("every input must be in [0, 1]")
    return values


def seed_list(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` or ``"0-2"`` (argparse type)."""
    from labpgt.levels import parse_seeds

    try:
        return parse_seeds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def accuracy_levels(text: str) -> tuple[float, ...]:
    from labpgt.levels import parse_levels

    try:
        return parse_levels(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# --------------------------------------------------------------------------- labpgt sim's ring
def add_ring_parts_options(p) -> None:
    """``labpgt sim``'s choice of ring: the controller box, or the parts a lab builds it from."""
    p.add_argument(
        "--ring",
        choices=("controller", "parts"),
        default="controller",
        help="controller: the ring controller box; parts: the ring a lab builds, a loop --attenuator, a Kepco "
        "coil supply, a --gaussmeter and a Lake Shore 336 temperature controller (controller)",
    )
    p.add_argument(
        "--attenuator",
        type=model_name(simulated_models(".controls", "ATTENUATOR_MODELS")),
        metavar="MODEL",
        default="hp11713",
        help="with --ring parts: the loop attenuator: hp11713 (Agilent 11713C with an 8494 and an 8496), weinschel "
        "(Weinschel/API 8320), rcdat (Mini-Circuits RCDAT-6000-90 over LAN), vca (a Keysight E3631A driving a "
        "voltage-controlled attenuator) (hp11713)",
    )
    p.add_argument(
        "--gaussmeter",
        type=model_name(simulated_models(".controls", "GAUSSMETER_MODELS")),
        metavar="MODEL",
        default="ls421",
        help="with --ring parts: the gaussmeter: ls421 (Lake Shore 421) or ls425 (Lake Shore 425) (ls421)",
    )


def ring_parts(args) -> tuple[str, str] | None:
    return (args.attenuator, args.gaussmeter) if args.ring == "parts" else None


# --------------------------------------------------------------------------- a sweep's range
SWEEP_OPTIONS = {  # option: (the setting swept, whether the option names an instrument before the range)
    "gain": ("loop_gain_db", False),
    "field": ("field_mt", False),
    "current": ("current_a", False),
    "attenuation": ("attenuation_db", False),
    "frequency": ("frequency_hz", True),
    "power": ("power_dbm", True),
}
RANGE = "START:STOP:POINTS"


def add_sweep_ranges(swept) -> None:
    """``labpgt sweep``'s options, one for each setting it sweeps (a mutually exclusive, required group)."""
    swept.add_argument("--gain", metavar=RANGE, help="the ring's loop gain, dB")
    swept.add_argument(
        "--field", metavar=RANGE, help="the ring's bias field, mT (a coil supply: through its gaussmeter)"
    )
    swept.add_argument("--current", metavar=RANGE, help="a coil supply's current, A, open loop: its field calibration")
    swept.add_argument("--attenuation", metavar=RANGE, help="the loop attenuator's attenuation, dB")
    swept.add_argument(
        "--frequency",
        nargs=2,
        metavar=("GEN", RANGE),
        help="generator GEN's frequency, Hz (GEN as the bench config names it)",
    )
    swept.add_argument("--power", nargs=2, metavar=("GEN", RANGE), help="generator GEN's power, dBm")


def swept_setting(args) -> tuple[str, str | None, tuple[float, float, int]]:
    """``(setting, generator or None, (start, stop, points))`` of the one sweep option given."""
    option = next(name for name in SWEEP_OPTIONS if getattr(args, name) is not None)
    setting, names_generator = SWEEP_OPTIONS[option]
    given = getattr(args, option)
    generator, text = given if names_generator else (None, given)
    return setting, generator, sweep_range(f"--{option}", text)


def sweep_range(option: str, text: str) -> tuple[float, float, int]:
    """``START:STOP:POINTS`` as (start, stop, points); anything else is a one-line UserError."""
    parts = text.split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        start, stop, points = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise UserError(f"{option} {text!r}: a range is {RANGE}, e.g. -3:3:25") from None
    return start, stop, points
