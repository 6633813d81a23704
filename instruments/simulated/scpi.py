"""An instrument-side SCPI parser: command tables, parameter types, error queue.

This module owns *how a simulated instrument understands SCPI*; it knows nothing about
transports (sockets, adapters) or physics. A device subclasses :class:`ScpiInstrument`,
declares its commands in a :class:`CommandTable`, and answers
``instrument.handle(message) -> bytes`` (the response, terminated by ``\\n``, or ``b""``).

Why write one: we looked for a maintained instrument-side SCPI parser for Python and found
none that fits — ``scpipy`` couples parsing to its own asyncio server, ``scpilib`` has been
unmaintained since 2019 — so this is a small, table-driven one.

What it implements (SCPI-1999 vol. 1 ch. 6–7, IEEE 488.2 ch. 7–8):

* Patterns such as ``[:SOURce]:FREQuency[:CW|:FIXed]``, ``[:SENSe]:BANDwidth|BWIDth[:RESolution]``,
  ``:TRACe[:DATA]``: upper-case letters are the short form, the whole word the long form;
  either is accepted in any case; ``[...]`` nodes are optional; ``A|B`` are aliases.
  Patterns are expanded once, at declaration, into a dict keyed by the tuple of upper-cased
  mnemonics, so resolving a header is one dict lookup.
* Program messages of several ``;``-separated units, with the header-path rule: after ``;``
  a header without a leading ``:`` continues at the level of the previous header (its
  mnemonics minus the last); a leading ``:`` restarts at the root; common commands (``*IDN?``)
  do not change the level. Empty units (a trailing ``;``) are ignored.
* Parameters: decimal numbers with units and SI prefixes (Hz kHz MHz GHz, dBm, dB, s ms us ns,
  mT T) and ``MINimum``/``MAXimum``/``DEFault`` where a setting has limits, booleans
  ``ON|OFF|1|0``, character data matched like mnemonics, quoted strings, several
  comma-separated parameters (``:FORM REAL,32``).
* Query responses of one message are joined with ``;`` and terminated by ``\\n``.
* An error queue (30 entries; on overflow the newest entry becomes ``-350,"Queue overflow"``)
  read by ``:SYSTem:ERRor[:NEXT]?``, cleared by ``*CLS``. On an error the rest of the program
  message is discarded (IEEE 488.2 §6.1.6.1.1); the parser keeps serving the next message.

Errors used: -100 Command error, -102 Syntax error, -104 Data type error, -108 Parameter not
allowed, -109 Missing parameter, -113 Undefined header, -131 Invalid suffix, -200 Execution error
(injected faults), -222 Data out of range, -224 Illegal parameter value, -300 Device-specific error, -350 Queue overflow.

Common commands every :class:`ScpiInstrument` answers: ``*IDN?``, ``*RST``, ``*CLS``, ``*OPC``,
``*OPC?``, ``*WAI``, ``*ESR?``, ``*TST?``, ``:SYSTem:ERRor[:NEXT]?``, ``:SYSTem:ERRor:COUNt?``.
"""

from __future__ import annotations

import itertools
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

ERROR_TEXTS = {
    0: "No error",
    -100: "Command error",
    -102: "Syntax error",
    -104: "Data type error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -113: "Undefined header",
    -131: "Invalid suffix",
    -200: "Execution error",
    -222: "Data out of range",
    -224: "Illegal parameter value",
    -300: "Device-specific error",
    -350: "Queue overflow",
    -410: "Query INTERRUPTED",
}
ERROR_QUEUE_LENGTH = 30


class ScpiError(Exception):
    """A SCPI error with its standard number; the parser turns it into an error-queue entry."""

    def __init__(self, code: int, detail: str = ""):
        self.code = code
        self.detail = detail
        super().__init__(f"{code},{ERROR_TEXTS.get(code, 'Error')}" + (f"; {detail}" if detail else ""))


# ---------------------------------------------------------------------------------------------
# Mnemonics and patterns
# ---------------------------------------------------------------------------------------------

def mnemonic_forms(mnemonic: str) -> tuple[str, ...]:
    """Accepted upper-case spellings of a mnemonic: ``FREQuency`` -> ``("FREQ", "FREQUENCY")``."""
    short = "".join(c for c in mnemonic if c.isupper() or c.isdigit())
    long = mnemonic.upper()
    return (short,) if short == long else (short, long)


_NODE = re.compile(r"(\[)?:?([A-Za-z][A-Za-z0-9]*(?:\|:?[A-Za-z][A-Za-z0-9]*)*)(\])?")


def expand_pattern(pattern: str) -> list[tuple[str, ...]]:
    """All headers (tuples of upper-case mnemonics) a pattern like ``[:SENSe]:BWIDth[:RES]`` accepts."""
    nodes: list[tuple[bool, list[str]]] = []
    position = 0
    body = pattern.strip()
    while position < len(body):
        match = _NODE.match(body, position)
        if not match or bool(match.group(1)) != bool(match.group(3)):
            raise ValueError(f"bad SCPI pattern {pattern!r} at {position}")
        aliases = [alias.lstrip(":") for alias in match.group(2).split("|")]
        spellings = [form for alias in aliases for form in mnemonic_forms(alias)]
        nodes.append((bool(match.group(1)), spellings))
        position = match.end()
    choices = [([None] + spellings) if optional else spellings for optional, spellings in nodes]
    return [tuple(m for m in combo if m is not None) for combo in itertools.product(*choices)]


# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------

#: unit name -> {accepted suffix (upper case): multiplier to the unit}
UNIT_SUFFIXES: dict[str, dict[str, float]] = {
    "HZ": {"HZ": 1.0, "KHZ": 1e3, "MHZ": 1e6, "MAHZ": 1e6, "GHZ": 1e9},
    "DBM": {"DBM": 1.0},
    "DB": {"DB": 1.0},
    "S": {"S": 1.0, "MS": 1e-3, "US": 1e-6, "NS": 1e-9, "PS": 1e-12},
    "MT": {"MT": 1.0, "T": 1e3, "UT": 1e-3},
    "VP": {"VP": 1.0, "MVP": 1e-3, "V": 1.0, "MV": 1e-3},
    "": {},
}

_NUMBER = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)\Z")
_CHARACTER = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_LIMIT_WORDS = {"MIN": "minimum", "MINIMUM": "minimum", "MAX": "maximum", "MAXIMUM": "maximum",
                "DEF": "default", "DEFAULT": "default"}


class Parameter:
    """A parameter type: ``parse(text) -> value`` or raise :class:`ScpiError`."""

    optional = False

    def parse(self, text: str) -> Any:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class Numeric(Parameter):
    """A decimal number with an optional unit suffix, range-checked (-222) if limits are given.

    ``unit`` is a key of :data:`UNIT_SUFFIXES` ("HZ", "DBM", "DB", "S", "MT" or "" for none).
    ``MIN``/``MAX``/``DEF`` are accepted when the corresponding limit/default is set.
    """

    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    default: float | None = None
    integer: bool = False
    optional: bool = False

    def parse(self, text: str) -> float | int:
        match = _NUMBER.match(text)
        if match:
            value = float(match.group(1))
            suffix = match.group(2).upper()
            if suffix:
                multipliers = UNIT_SUFFIXES[self.unit]
                if suffix not in multipliers:
                    raise ScpiError(-131, text)
                value *= multipliers[suffix]
            if (self.minimum is not None and value < self.minimum) or (
                    self.maximum is not None and value > self.maximum):
                raise ScpiError(-222, text)
        else:
            limit = _LIMIT_WORDS.get(text.upper())
            value = getattr(self, limit) if limit else None
            if value is None:
                raise ScpiError(-104, text)
        return int(round(value)) if self.integer else value


@dataclass
class Boolean(Parameter):
    """``ON``/``OFF`` or a number (non-zero after rounding is ON)."""

    optional: bool = False

    def parse(self, text: str) -> bool:
        word = text.upper()
        if word == "ON":
            return True
        if word == "OFF":
            return False
        match = _NUMBER.match(text)
        if match and not match.group(2):
            return round(float(match.group(1))) != 0
        if _CHARACTER.match(text):
            raise ScpiError(-224, text)
        raise ScpiError(-104, text)


@dataclass
class Choice(Parameter):
    """Character data matched like mnemonics; returns the canonical choice as declared."""

    choices: Sequence[str] = ()
    optional: bool = False
    default: str | None = None
    _lookup: dict[str, str] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self):
        self._lookup = {form: choice for choice in self.choices for form in mnemonic_forms(choice)}

    def parse(self, text: str) -> str:
        if not _CHARACTER.match(text):
            raise ScpiError(-104, text)
        try:
            return self._lookup[text.upper()]
        except KeyError:
            raise ScpiError(-224, text) from None


@dataclass
class QuotedString(Parameter):
    """A string in single or double quotes (doubled quotes inside are one quote)."""

    optional: bool = False

    def parse(self, text: str) -> str:
        if len(text) >= 2 and text[0] in "'\"" and text[-1] == text[0]:
            quote = text[0]
            return text[1:-1].replace(quote * 2, quote)
        raise ScpiError(-104, text)


# ---------------------------------------------------------------------------------------------
# Command table
# ---------------------------------------------------------------------------------------------

@dataclass
class Command:
    """One header with its setter and/or query handler and parameter types.

    ``setter(*values)`` returns nothing; ``query(*values)`` returns ``str`` or ``bytes``.
    """

    pattern: str
    setter: Callable[..., None] | None = None
    query: Callable[..., str | bytes] | None = None
    parameters: Sequence[Parameter] = ()
    query_parameters: Sequence[Parameter] = ()


class CommandTable:
    """Commands by header. ``add`` expands a pattern once; ``resolve`` is one dict lookup."""

    def __init__(self):
        self._commands: dict[tuple[str, ...], Command] = {}
        self._common: dict[str, Command] = {}

    def add(self, pattern: str, setter=None, query=None, parameters: Sequence[Parameter] = (),
            query_parameters: Sequence[Parameter] = ()) -> Command:
        """Declare a command. ``pattern`` may end with ``?`` for a query-only header."""
        if pattern.endswith("?"):
            pattern = pattern[:-1]
        command = Command(pattern, setter, query, tuple(parameters), tuple(query_parameters))
        if pattern.startswith("*"):
            self._common[pattern.upper()] = command
            return command
        for header in expand_pattern(pattern):
            existing = self._commands.get(header)
            if existing is not None and existing.pattern != pattern:
                raise ValueError(f"{pattern!r} collides with {existing.pattern!r} on {':'.join(header)}")
            self._commands[header] = command
        return command

    def resolve(self, mnemonics: tuple[str, ...]) -> Command | None:
        return self._commands.get(mnemonics)

    def resolve_common(self, name: str) -> Command | None:
        return self._common.get(name)

    def __len__(self):
        return len(self._commands) + len(self._common)


# ---------------------------------------------------------------------------------------------
# Message splitting
# ---------------------------------------------------------------------------------------------

_MNEMONIC = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


def split_outside_quotes(text: str, separator: str) -> list[str]:
    """Split on ``separator`` except inside quoted strings (fast path when there are no quotes)."""
    if '"' not in text and "'" not in text:
        return text.split(separator)
    parts, current, quote = [], [], None
    for char in text:
        if quote:
            current.append(char)
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
            current.append(char)
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if quote:
        raise ScpiError(-102, "unterminated string")
    parts.append("".join(current))
    return parts


def parse_arguments(text: str, parameters: Sequence[Parameter]) -> list[Any]:
    """Parse comma-separated parameter text against the declared parameter types."""
    raw = [part.strip() for part in split_outside_quotes(text, ",")] if text else []
    if len(raw) > len(parameters):
        raise ScpiError(-108, text)
    values = []
    for index, parameter in enumerate(parameters):
        if index >= len(raw):
            if not parameter.optional:
                raise ScpiError(-109)
            values.append(getattr(parameter, "default", None))
            continue
        if not raw[index]:
            raise ScpiError(-102, "empty parameter")
        values.append(parameter.parse(raw[index]))
    return values


# ---------------------------------------------------------------------------------------------
# The instrument base
# ---------------------------------------------------------------------------------------------

def format_number(value: float) -> str:
    """Keysight-style NR3 response, e.g. ``+2.20000000000E+09``."""
    return "%+.11E" % value


def format_boolean(value: bool) -> str:
    return "1" if value else "0"


class ScpiInstrument:
    """An instrument that understands SCPI through a :class:`CommandTable`.

    Subclasses set ``identity`` (the ``*IDN?`` string), implement :meth:`reset` and declare
    their own commands in :meth:`declare_commands`. The common commands and the error queue
    are provided here.
    """

    identity = "labpgt,ScpiInstrument,0,0"

    def __init__(self):
        self.errors: deque[tuple[int, str]] = deque()
        self.event_status = 0
        self.last_error_detail = ""
        self.table = CommandTable()
        self._declare_common_commands()
        self.declare_commands(self.table)

    # -- to override -------------------------------------------------------------------------
    def declare_commands(self, table: CommandTable) -> None:
        """Add the instrument's own commands to ``table``."""

    def reset(self) -> None:
        """``*RST``: return to the documented default state."""

    # -- error queue -------------------------------------------------------------------------
    def push_error(self, code: int, detail: str = "") -> None:
        """Append an error; when the queue is full the newest entry becomes -350.

        ``detail`` is kept in :attr:`last_error_detail` for debugging; the queue holds the
        standard text only, as ``-113,"Undefined header"``.
        """
        self.last_error_detail = detail
        text = ERROR_TEXTS.get(code, "Error")
        if -199 <= code <= -100:
            self.event_status |= 32   # command error bit (CME)
        elif -299 <= code <= -200:
            self.event_status |= 16   # execution error bit (EXE)
        elif code < 0:
            self.event_status |= 8    # device-dependent error (DDE)
        if len(self.errors) >= ERROR_QUEUE_LENGTH:
            self.errors[-1] = (-350, ERROR_TEXTS[-350])
        else:
            self.errors.append((code, text))

    def next_error(self) -> str:
        code, text = self.errors.popleft() if self.errors else (0, ERROR_TEXTS[0])
        return f'{code:+d},"{text}"' if code == 0 else f'{code:d},"{text}"'

    # -- common commands ---------------------------------------------------------------------
    def _declare_common_commands(self) -> None:
        table = self.table
        table.add("*IDN?", query=lambda: self.identity)
        table.add("*RST", setter=self.reset)
        table.add("*CLS", setter=self._clear_status)
        table.add("*OPC", setter=lambda: None, query=lambda: "1")
        table.add("*WAI", setter=lambda: None)
        table.add("*TST?", query=lambda: "0")
        table.add("*ESR?", query=self._read_event_status)
        table.add(":SYSTem:ERRor[:NEXT]?", query=self.next_error)
        table.add(":SYSTem:ERRor:COUNt?", query=lambda: str(len(self.errors)))

    def _clear_status(self) -> None:
        self.errors.clear()
        self.event_status = 0

    def _read_event_status(self) -> str:
        status, self.event_status = self.event_status, 0
        return str(status)

    # -- parsing -----------------------------------------------------------------------------
    def handle(self, message: str | bytes) -> bytes:
        """Execute one or more program messages (separated by ``\\n``); return the response.

        The response is the query results of each message joined by ``;`` and terminated by
        ``\\n``; ``b""`` if the message held no query. Never raises for bad input.
        """
        if isinstance(message, (bytes, bytearray)):
            message = bytes(message).decode("latin-1")
        out = []
        for line in message.split("\n"):
            responses = self._execute_message(line)
            if responses:
                out.append(b";".join(responses) + b"\n")
        return b"".join(out)

    def _execute_message(self, message: str) -> list[bytes]:
        responses: list[bytes] = []
        level: tuple[str, ...] = ()
        try:
            units = split_outside_quotes(message, ";")
        except ScpiError as error:
            self.push_error(error.code, error.detail)
            return responses
        for unit in units:
            try:
                level = self._execute_unit(unit, level, responses)
            except ScpiError as error:
                self.push_error(error.code, error.detail)
                break
            except Exception as error:  # a handler bug must not kill the instrument
                self.push_error(-300, f"{type(error).__name__}: {error}")
                break
        return responses

    def _execute_unit(self, unit: str, level: tuple[str, ...], responses: list[bytes]) -> tuple[str, ...]:
        """Execute one program message unit; return the header level for the next unit."""
        parts = unit.split(None, 1)
        if not parts:              # empty unit, e.g. after a trailing ';'
            return level
        header = parts[0]
        arguments = parts[1].strip() if len(parts) > 1 else ""
        is_query = header.endswith("?")
        if is_query:
            header = header[:-1]
        if header.startswith("*"):
            command = self.table.resolve_common(header.upper())
            new_level = level
        else:
            absolute = header.startswith(":")
            path = tuple((header[1:] if absolute else header).upper().split(":"))
            if not absolute:
                path = level + path
            command = self.table.resolve(path)
            if command is None and not all(_MNEMONIC.match(m) for m in path):
                raise ScpiError(-102, header)
            new_level = path[:-1]
        if command is None:
            raise ScpiError(-113, header)
        if is_query:
            if command.query is None:
                raise ScpiError(-113, header + "?")
            values = parse_arguments(arguments, command.query_parameters)
            response = command.query(*values)
            responses.append(response if isinstance(response, bytes) else response.encode("latin-1"))
        else:
            if command.setter is None:
                raise ScpiError(-113, header)
            values = parse_arguments(arguments, command.parameters)
            command.setter(*values)
        return new_level


def add_setting(table: CommandTable, owner: Any, pattern: str, attribute: str, parameter: Parameter,
                formatter: Callable[[Any], str] | None = None, on_set: Callable[[], None] | None = None) -> None:
    """Declare a stored setting: ``pattern <value>`` sets ``owner.<attribute>``; ``pattern?`` reads it."""
    if formatter is None:
        if isinstance(parameter, Boolean):
            formatter = format_boolean
        elif isinstance(parameter, Numeric) and parameter.integer:
            formatter = str
        elif isinstance(parameter, Numeric):
            formatter = format_number
        else:
            formatter = str

    def setter(value):
        setattr(owner, attribute, value)
        if on_set is not None:
            on_set()

    table.add(pattern, setter=setter, query=lambda: formatter(getattr(owner, attribute)),
              parameters=(parameter,))


__all__ = [
    "ERROR_TEXTS", "ERROR_QUEUE_LENGTH", "ScpiError", "Parameter", "Numeric", "Boolean", "Choice",
    "QuotedString", "Command", "CommandTable", "ScpiInstrument", "add_setting", "expand_pattern",
    "mnemonic_forms", "format_number", "format_boolean", "split_outside_quotes", "parse_arguments",
]


