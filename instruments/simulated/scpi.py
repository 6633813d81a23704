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
* Numeric suffixes (SCPI-99 vol. 1 §6.2.5.2 and §7.3): a node declared ``MARKer<n>`` (any suffix
  1 … 99) or ``MARKer<1-12>`` (that range) accepts ``MARK``, ``MARK1``, ``MARKER12`` …; an omitted
  suffix is 1, as the standard says, and a suffix out of range is -114. The suffixes of a header,
  one per suffixed node in pattern order (1 for an optional node left out), are passed to the
  handler before its parameters: ``table.add(":CALCulate:MARKer<n>:X", query=lambda n: ...)``.
  A header without digits is still one dict lookup; one with digits is split and looked up again.
* Program messages of several ``;``-separated units, with the header-path rule: after ``;``
  a header without a leading ``:`` continues at the level of the previous header (its
  mnemonics minus the last); a leading ``:`` restarts at the root; common commands (``*IDN?``)
  do not change the level. Empty units (a trailing ``;``) are ignored.
* Parameters: decimal numbers with units and SI prefixes (Hz kHz MHz GHz, dBm, dB, s ms us ns,
  mT T, rad mrad deg) and ``MINimum``/``MAXimum``/``DEFault`` where a setting has limits, booleans
  ``ON|OFF|1|0``, character data matched like mnemonics, quoted strings, several
  comma-separated parameters (``:FORM REAL,32``).
* Query responses of one message are joined with ``;`` and terminated by ``\\n``.
* An error queue (30 entries; on overflow the newest entry becomes ``-350,"Queue overflow"``)
  read by ``:SYSTem:ERRor[:NEXT]?``, cleared by ``*CLS``. On an error the rest of the program
  message is discarded (IEEE 488.2 §6.1.6.1.1); the parser keeps serving the next message.
* A failed query is answered. A real instrument queues the error, sets the event-status bit
  (CME -1xx, EXE -2xx, DDE -3xx) and sends nothing, so a client reading the answer waits out its
  whole timeout before it can look at ``:SYST:ERR?``. Here a program message that holds a query
  and fails is answered with what it produced before the error (often nothing), terminated by
  ``\\n`` as usual: the client's read returns at once, its parse of the short answer fails, and
  the queue says why. Set :attr:`ScpiInstrument.answer_failed_queries` to ``False`` for the
  hardware's silence (e.g. to test a client's timeout handling).
* The IEEE 488.2 / SCPI status model (IEEE 488.2 §11, SCPI-99 vol. 1 ch. 9): the status byte
  ``*STB?`` (bit 2 error queue not empty, 3 QUEStionable summary, 4 MAV, 5 ESB, 6 MSS, 7 OPERation
  summary), its enable ``*SRE``, the standard event register ``*ESR?`` (read and cleared; bit 0
  OPC set by ``*OPC``, 2 query error, 3 DDE, 4 EXE, 5 CME) and its enable ``*ESE``, and the
  ``:STATus:OPERation`` and ``:STATus:QUEStionable`` registers (``[:EVENt]?`` read and cleared,
  ``:CONDition?``, ``:ENABle``, ``:PTRansition``, ``:NTRansition``; ``:STATus:PRESet``). There is
  no service request over a socket; MAV is 1 when an earlier query of the same message answered.

Errors used: -100 Command error, -102 Syntax error, -104 Data type error, -108 Parameter not
allowed, -109 Missing parameter, -113 Undefined header, -114 Header suffix out of range, -131 Invalid
suffix, -200 Execution error (injected faults), -221 Settings conflict, -222 Data out of range,
-224 Illegal parameter value, -230 Data corrupt or stale, -300 Device-specific error, -350 Queue overflow,
and the Keysight analyzers' device-specific 202 No peak found.

Common commands every :class:`ScpiInstrument` answers: ``*IDN?``, ``*OPT?``, ``*RST``, ``*CLS``,
``*OPC``, ``*OPC?``, ``*WAI``, ``*ESR?``, ``*ESE``, ``*SRE``, ``*STB?``, ``*TST?``,
``:SYSTem:ERRor[:NEXT]?``, ``:SYSTem:ERRor:COUNt?`` and the ``:STATus`` subsystem.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

ERROR_TEXTS = {
    0: "No error",
    -100: "Command error",
    -102: "Syntax error",
    -104: "Data type error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -113: "Undefined header",
    -114: "Header suffix out of range",
    -131: "Invalid suffix",
    -200: "Execution error",
    -221: "Settings conflict",
    -222: "Data out of range",
    -224: "Illegal parameter value",
    -230: "Data corrupt or stale",
    -300: "Device-specific error",
    -350: "Queue overflow",
    202: "No peak found",
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


_NODE = re.compile(r"(\[)?:?([A-Za-z][A-Za-z0-9]*(?:\|:?[A-Za-z][A-Za-z0-9]*)*)(<(?:n|\d+-\d+)>)?(\])?")
SUFFIX_MARK = "#"  # a suffixed node's mnemonic in a table key: "MARK#"
DEFAULT_SUFFIX_RANGE = (1, 99)


@dataclass(frozen=True)
class Header:
    """One expansion of a pattern: the table key and, per suffixed node, its position in the key
    (``None`` where an optional node is left out) and its allowed range."""

    key: tuple[str, ...]
    suffix_positions: tuple[int | None, ...] = ()
    suffix_ranges: tuple[tuple[int, int], ...] = ()


def _suffix_range(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    if text == "<n>":
        return DEFAULT_SUFFIX_RANGE
    low, high = text[1:-1].split("-")
    return int(low), int(high)


def expand_headers(pattern: str) -> list[Header]:
    """Every header a pattern accepts, with where its numeric suffixes sit (see :class:`Header`)."""
    return list(_expanded_headers(pattern))


@functools.cache
def _pattern_headers(pattern: str) -> dict[tuple[str, ...], tuple[str, Header]]:
    """A table's entries for ``pattern``, by key (shared by the tables: :meth:`CommandTable.add` copies them)."""
    return {header.key: (pattern, header) for header in _expanded_headers(pattern)}


@functools.cache
def _expanded_headers(pattern: str) -> tuple[Header, ...]:
    nodes: list[tuple[bool, list[str], tuple[int, int] | None]] = []
    position = 0
    body = pattern.strip()
    while position < len(body):
        match = _NODE.match(body, position)
        if not match or bool(match.group(1)) != bool(match.group(4)):
            raise ValueError(f"bad SCPI pattern {pattern!r} at {position}")
        aliases = [alias.lstrip(":") for alias in match.group(2).split("|")]
        spellings = [form for alias in aliases for form in mnemonic_forms(alias)]
        nodes.append((bool(match.group(1)), spellings, _suffix_range(match.group(3))))
        position = match.end()
    ranges = tuple(suffix for _, _, suffix in nodes if suffix is not None)
    choices = [([None] + spellings) if optional else spellings for optional, spellings, _ in nodes]
    headers = []
    for combo in itertools.product(*choices):
        key, positions = [], []
        for (_, _, suffix), mnemonic in zip(nodes, combo):
            if suffix is not None:
                positions.append(len(key) if mnemonic is not None else None)
            if mnemonic is not None:
                key.append(mnemonic)
        positions_t = tuple(positions)
        headers.append(Header(tuple(key), positions_t, ranges))
        marked = [p for p in positions_t if p is not None]
        for count in range(1, len(marked) + 1):  # the same header with explicit suffixes
            for chosen in itertools.combinations(marked, count):
                explicit = tuple(m + SUFFIX_MARK if i in chosen else m for i, m in enumerate(key))
                headers.append(Header(explicit, positions_t, ranges))
    return tuple(headers)


def expand_pattern(pattern: str) -> list[tuple[str, ...]]:
    """All headers (tuples of upper-case mnemonics) a pattern like ``[:SENSe]:BWIDth[:RES]`` accepts."""
    return [header.key for header in expand_headers(pattern) if SUFFIX_MARK not in "".join(header.key)]


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
    "V": {"V": 1.0, "MV": 1e-3},
    "A": {"A": 1.0, "MA": 1e-3},
    "RAD": {"RAD": 1.0, "MRAD": 1e-3, "URAD": 1e-6, "DEG": 3.141592653589793 / 180.0},
    "": {},
}

_NUMBER = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)\Z")
_CHARACTER = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_LIMIT_WORDS = {
    "MIN": "minimum",
    "MINIMUM": "minimum",
    "MAX": "maximum",
    "MAXIMUM": "maximum",
    "DEF": "default",
    "DEFAULT": "default",
}


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
                self.maximum is not None and value > self.maximum
            ):
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
    """Commands by header. ``add`` expands a pattern once per process (every instrument of a kind declares the
    same patterns); ``resolve`` is two dict lookups (three for a header with numeric suffixes)."""

    def __init__(self):
        self._headers: dict[tuple[str, ...], tuple[str, Header]] = {}  # key -> (its pattern, how it expands)
        self._by_pattern: dict[str, Command] = {}
        self._common: dict[str, Command] = {}

    def add(
        self,
        pattern: str,
        setter=None,
        query=None,
        parameters: Sequence[Parameter] = (),
        query_parameters: Sequence[Parameter] = (),
    ) -> Command:
        """Declare a command. ``pattern`` may end with ``?`` for a query-only header."""
        if pattern.endswith("?"):
            pattern = pattern[:-1]
        command = Command(pattern, setter, query, tuple(parameters), tuple(query_parameters))
        if pattern.startswith("*"):
            self._common[pattern.upper()] = command
            return command
        headers = _pattern_headers(pattern)
        for key in self._headers.keys() & headers.keys():
            if self._headers[key][0] != pattern:
                raise ValueError(f"{pattern!r} collides with {self._headers[key][0]!r} on {':'.join(key)}")
        self._headers.update(headers)
        self._by_pattern[pattern] = command
        return command

    def resolve(self, mnemonics: tuple[str, ...]) -> Command | None:
        found = self.resolve_with_suffixes(mnemonics)
        return found[0] if found else None

    def resolve_with_suffixes(self, mnemonics: tuple[str, ...]) -> tuple[Command, tuple[int, ...]] | None:
        """The command of a header and its numeric suffixes (1 where omitted); -114 if out of range."""
        entry = self._headers.get(mnemonics)
        given: dict[int, int] = {}
        if entry is None:
            key = []
            for position, mnemonic in enumerate(mnemonics):
                base = mnemonic.rstrip("0123456789")
                if base and base != mnemonic:
                    given[position] = int(mnemonic[len(base) :])
                    base += SUFFIX_MARK
                key.append(base)
            if not given:
                return None
            entry = self._headers.get(tuple(key))
            if entry is None:
                return None
        pattern, header = entry
        command = self._by_pattern[pattern]
        suffixes = []
        for position, (low, high) in zip(header.suffix_positions, header.suffix_ranges):
            value = given.get(position, 1) if position is not None else 1
            if not low <= value <= high:
                raise ScpiError(-114, ":".join(mnemonics))
            suffixes.append(value)
        return command, tuple(suffixes)

    def resolve_common(self, name: str) -> Command | None:
        return self._common.get(name)

    def __len__(self):
        return len(self._headers) + len(self._common)


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


def short_form(word: str) -> str:
    """Character response data: a mnemonic's short form, upper case (``MAXHold`` -> ``MAXH``)."""
    return mnemonic_forms(word)[0]


@dataclass
class StatusRegister:
    """A SCPI status register (SCPI-99 vol. 1 §9.3): condition, event, enable and transition filters.

    A condition bit that rises (PTR) or falls (NTR) latches the event bit; the summary is
    ``event & enable``. Defaults as after ``:STATus:PRESet``: PTR all ones, NTR and ENABle zero.
    """

    condition: int = 0
    event: int = 0
    enable: int = 0
    positive: int = 0x7FFF
    negative: int = 0

    def set_condition(self, value: int) -> None:
        rising = value & ~self.condition
        falling = self.condition & ~value
        self.event |= (rising & self.positive) | (falling & self.negative)
        self.condition = value

    def pulse(self, bits: int) -> None:
        """A condition that rose and fell within one command (an instantaneous sweep)."""
        self.set_condition(self.condition | bits)
        self.set_condition(self.condition & ~bits)

    def read_event(self) -> str:
        event, self.event = self.event, 0
        return str(event)

    @property
    def summary(self) -> bool:
        return bool(self.event & self.enable)

    def preset(self) -> None:
        self.enable, self.positive, self.negative = 0, 0x7FFF, 0


class ScpiInstrument:
    """An instrument that understands SCPI through a :class:`CommandTable`.

    Subclasses set ``identity`` (the ``*IDN?`` string) and ``options`` (the ``*OPT?`` answer),
    implement :meth:`reset` and declare their own commands in :meth:`declare_commands`. The common
    commands, the status model and the error queue are provided here.
    """

    identity = "labpgt,ScpiInstrument,0,0"
    options = "0"
    answer_failed_queries = True  # see the module docstring: a failed query answers at once

    def __init__(self):
        self.errors: deque[tuple[int, str]] = deque()
        self.event_status = 0
        self.event_status_enable = 0
        self.service_request_enable = 0
        self.operation = StatusRegister()
        self.questionable = StatusRegister()
        self.message_available = False
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
            self.event_status |= 32  # command error bit (CME)
        elif -299 <= code <= -200:
            self.event_status |= 16  # execution error bit (EXE)
        elif -399 <= code <= -300 or code > 0:
            self.event_status |= 8  # device-dependent error (DDE)
        elif -499 <= code <= -400:
            self.event_status |= 4  # query error (QYE)
        if len(self.errors) >= ERROR_QUEUE_LENGTH:
            self.errors[-1] = (-350, ERROR_TEXTS[-350])
        else:
            self.errors.append((code, text))

    def next_error(self) -> str:
        code, text = self.errors.popleft() if self.errors else (0, ERROR_TEXTS[0])
        return f'{code:+d},"{text}"' if code == 0 else f'{code:d},"{text}"'

    # -- status model ------------------------------------------------------------------------
    def status_byte(self) -> int:
        """The IEEE 488.2 status byte with the SCPI summaries (see the module docstring)."""
        byte = (4 if self.errors else 0) | (8 if self.questionable.summary else 0)
        byte |= 16 if self.message_available else 0
        byte |= 32 if self.event_status & self.event_status_enable else 0
        byte |= 128 if self.operation.summary else 0
        if byte & self.service_request_enable & ~64:
            byte |= 64
        return byte

    # -- common commands ---------------------------------------------------------------------
    def _declare_common_commands(self) -> None:
        table = self.table
        byte = Numeric("", 0, 255, integer=True)
        table.add("*IDN?", query=lambda: self.identity)
        table.add("*OPT?", query=lambda: self.options)
        table.add("*RST", setter=self.reset)
        table.add("*CLS", setter=self._clear_status)
        table.add("*OPC", setter=self._operation_complete, query=lambda: "1")
        table.add("*WAI", setter=lambda: None)
        table.add("*TST?", query=lambda: "0")
        table.add("*ESR?", query=self._read_event_status)
        add_setting(table, self, "*ESE", "event_status_enable", byte)
        add_setting(table, self, "*SRE", "service_request_enable", byte)
        table.add("*STB?", query=lambda: str(self.status_byte()))
        table.add(":SYSTem:ERRor[:NEXT]?", query=self.next_error)
        table.add(":SYSTem:ERRor:COUNt?", query=lambda: str(len(self.errors)))
        table.add(":STATus:PRESet", setter=self._preset_status)
        word = Numeric("", 0, 32767, integer=True)
        for name in ("OPERation", "QUEStionable"):
            register = self.operation if name == "OPERation" else self.questionable
            table.add(f":STATus:{name}[:EVENt]?", query=register.read_event)
            table.add(f":STATus:{name}:CONDition?", query=lambda r=register: str(r.condition))
            add_setting(table, register, f":STATus:{name}:ENABle", "enable", word)
            add_setting(table, register, f":STATus:{name}:PTRansition", "positive", word)
            add_setting(table, register, f":STATus:{name}:NTRansition", "negative", word)

    def _clear_status(self) -> None:
        self.errors.clear()
        self.event_status = 0
        self.operation.event = 0
        self.questionable.event = 0

    def _operation_complete(self) -> None:
        self.event_status |= 1  # everything before *OPC has completed: the sweep is instantaneous

    def _preset_status(self) -> None:
        self.operation.preset()
        self.questionable.preset()

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
            responses, failed_query = self._execute_message(line)
            if responses or failed_query:
                out.append(b";".join(responses) + b"\n")
        return b"".join(out)

    def _execute_message(self, message: str) -> tuple[list[bytes], bool]:
        """The responses of one program message, and whether it held a query that failed."""
        responses: list[bytes] = []
        level: tuple[str, ...] = ()
        try:
            units = split_outside_quotes(message, ";")
        except ScpiError as error:
            self.push_error(error.code, error.detail)
            return responses, self.answer_failed_queries and "?" in message
        for index, unit in enumerate(units):
            try:
                level = self._execute_unit(unit, level, responses)
            except Exception as error:  # noqa: BLE001 - a handler bug must not kill the instrument
                if isinstance(error, ScpiError):
                    self.push_error(error.code, error.detail)
                else:
                    self.push_error(-300, f"{type(error).__name__}: {error}")
                return responses, self.answer_failed_queries and _holds_query(units[index:])
        self.message_available = False
        return responses, False

    def _execute_unit(self, unit: str, level: tuple[str, ...], responses: list[bytes]) -> tuple[str, ...]:
        """Execute one program message unit; return the header level for the next unit."""
        parts = unit.split(None, 1)
        if not parts:  # empty unit, e.g. after a trailing ';'
            return level
        header = parts[0]
        arguments = parts[1].strip() if len(parts) > 1 else ""
        is_query = header.endswith("?")
        if is_query:
            header = header[:-1]
        suffixes: tuple[int, ...] = ()
        if header.startswith("*"):
            command = self.table.resolve_common(header.upper())
            new_level = level
        else:
            absolute = header.startswith(":")
            path = tuple((header[1:] if absolute else header).upper().split(":"))
            if not absolute:
                path = level + path
            found = self.table.resolve_with_suffixes(path)
            if found is None and not all(_MNEMONIC.match(m) for m in path):
                raise ScpiError(-102, header)
            command, suffixes = found if found is not None else (None, ())
            new_level = path[:-1]
        if command is None:
            raise ScpiError(-113, header)
        if is_query:
            if command.query is None:
                raise ScpiError(-113, header + "?")
            values = parse_arguments(arguments, command.query_parameters)
            self.message_available = bool(responses)
            response = command.query(*suffixes, *values)
            responses.append(response if isinstance(response, bytes) else response.encode("latin-1"))
        else:
            if command.setter is None:
                raise ScpiError(-113, header)
            values = parse_arguments(arguments, command.parameters)
            command.setter(*suffixes, *values)
        return new_level


def _holds_query(units: Sequence[str]) -> bool:
    """Whether any of these program message units is a query (its header ends in ``?``)."""
    return any(unit.split(None, 1)[0].endswith("?") for unit in units if unit.strip())


def add_setting(
    table: CommandTable,
    owner: Any,
    pattern: str,
    attribute: str,
    parameter: Parameter,
    formatter: Callable[[Any], str] | None = None,
    on_set: Callable[[], None] | None = None,
) -> None:
    """Declare a stored setting: ``pattern <value>`` sets ``owner.<attribute>``; ``pattern?`` reads it."""
    if formatter is None:
        if isinstance(parameter, Boolean):
            formatter = format_boolean
        elif isinstance(parameter, Numeric) and parameter.integer:
            formatter = str
        elif isinstance(parameter, Numeric):
            formatter = format_number
        elif isinstance(parameter, Choice):
            formatter = short_form
        else:
            formatter = str

    def setter(value):
        setattr(owner, attribute, value)
        if on_set is not None:
            on_set()

    table.add(pattern, setter=setter, query=lambda: formatter(getattr(owner, attribute)), parameters=(parameter,))


__all__ = [
    "ERROR_TEXTS",
    "ERROR_QUEUE_LENGTH",
    "ScpiError",
    "Parameter",
    "Numeric",
    "Boolean",
    "Choice",
    "QuotedString",
    "Command",
    "CommandTable",
    "Header",
    "ScpiInstrument",
    "StatusRegister",
    "add_setting",
    "expand_headers",
    "expand_pattern",
    "mnemonic_forms",
    "short_form",
    "format_number",
    "format_boolean",
    "split_outside_quotes",
    "parse_arguments",
]
