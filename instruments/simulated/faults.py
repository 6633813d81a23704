"""Seeded, reproducible fault injection for the simulated bench's TCP server (``labpgt sim --faults``).

Real LAN instruments drop connections, answer late, send corrupt bytes, refuse a command and
reboot. A client that is to survive a night of training must be tested against all of that;
this module decides *which* fault hits *which* program message, and how a response is garbled.
:mod:`labpgt.instruments.simulated.transport` applies the decisions at the TCP server only; the
in-process adapter stays fault-free.

SPEC grammar (``labpgt sim --faults SPEC``)::

    SPEC  := ITEM ("," ITEM)*
    ITEM  := KEY "=" VALUE                 (spaces around either are ignored; each key at most once)
    KEY   := drop | delay | garble | error | reboot     probability per program message, in [0, 1]
           | seed                                       integer >= 0 (default 0)
           | delay_s                                    seconds a delayed answer is late, > 0 (default 6)
           | reboot_s                                   seconds a rebooted instrument refuses
                                                        connections, >= 0 (default 0)

e.g. ``drop=0.02,delay=0.01,garble=0.02,error=0.01,reboot=0.001,seed=7``. The five kinds are
mutually exclusive per message (one uniform draw per message picks at most one), so their sum
must be <= 1; each kind then happens with exactly its probability. Blank messages draw nothing.

What each fault does to the program message it hits (one ``\\n``-terminated line):

* ``drop`` — the connection is reset (RST) before the message is executed; the message and
  anything else the client had sent on that connection are lost. The client sees a reset (or
  EOF) and must reconnect; it cannot know whether a lost setting was applied, so it must send
  its settings again.
* ``delay`` — the message is executed and its response (if it has one) is sent ``delay_s`` late
  (default 6 s, past the bench's 5 s timeout). Honestly: the late answer then sits in the
  client's receive buffer and would be misread as the answer to the *next* query. A client
  must, after any read timeout, close the connection and open a new one (that discards the
  stale bytes), then repeat its query.
* ``garble`` — the message is executed and its response (if any) is corrupted. ASCII: bytes
  flipped, truncated (still ``\\n``-terminated), a number replaced by non-numeric text, or a
  value replaced by ``NaN``. IEEE 488.2 binary block (also after a ``1;`` from a joined
  ``*OPC?``): a ``NaN`` written into the payload, the length field too short (surplus bytes stay
  in the stream) or too long (the client waits for bytes that never come), the payload
  truncated, or the header mangled. Flipped payload bits that still read as plausible floats
  are not simulated: TCP's checksums stop those on a real LAN, and no client could tell them
  from data (an ASCII number flipped into another number is caught by a read-back).
  A client must validate every answer (parse it, check the point count and finiteness) and on
  any doubt reconnect and ask again.
* ``error`` — the message is *not executed* and ``-200,"Execution error"`` is pushed to the
  error queue. As on a real instrument a failed query puts nothing in the output queue, so a
  message holding a query (``*OPC?`` included — it is part of the rejected message) gets no
  answer and the client times out; a pure setting message fails *silently*: the client only
  learns of it by reading ``:SYSTem:ERRor?`` (or reading the setting back). A client must
  check the error queue after its settings (e.g. ``:SYST:ERR?`` next to ``*OPC?``).
* ``reboot`` — the instrument reboots: its state returns to the ``*RST`` defaults (generators
  RF OFF, preset frequency and power; ring amplifier OFF, default gain and field; analyzer
  defaults), its error queue and event status are cleared, the message is not executed, and
  *every* connection to that instrument is reset. For ``reboot_s`` seconds new connections are
  accepted and closed at once. A client must reconnect and restore every setting (and must not
  assume RF is still on).

Determinism: one :class:`FaultInjector` (its own ``numpy.random.Generator(seed)``, never the
ring model's) serves all instruments of one server, so the faults are a function of the seed
and of the order in which the server handles messages. With ``--noise 0`` every trace that
does arrive intact is the noise-free trace, faults or not.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from dataclasses import dataclass, fields

import numpy as np

from labpgt.errors import UserError

#: fault kinds, in the order they share the [0, 1) interval of the per-message draw
KINDS = ("drop", "delay", "garble", "error", "reboot")
EXECUTION_ERROR = -200


@dataclass(frozen=True)
class FaultSpec:
    """Probabilities per program message of each fault kind, the seed and the timings."""

    drop: float = 0.0
    delay: float = 0.0
    garble: float = 0.0
    error: float = 0.0
    reboot: float = 0.0
    seed: int = 0
    delay_s: float = 6.0
    reboot_s: float = 0.0

    @property
    def active(self) -> bool:
        return any(getattr(self, kind) > 0 for kind in KINDS)

    def __str__(self) -> str:
        parts = [f"{kind}={getattr(self, kind):g}" for kind in KINDS if getattr(self, kind) > 0]
        parts += [f"seed={self.seed}", f"delay_s={self.delay_s:g}"]
        if self.reboot_s:
            parts.append(f"reboot_s={self.reboot_s:g}")
        return ",".join(parts)

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """Parse ``key=value,...`` strictly; any problem is one :class:`UserError` line."""
        known = [f.name for f in fields(cls)]
        if not text or not text.strip():
            raise UserError(f"empty fault spec; expected key=value,... with keys {', '.join(known)}")
        values: dict = {}
        for item in text.split(","):
            key, sep, raw = item.partition("=")
            key, raw = key.strip(), raw.strip()
            if not sep or not key or not raw:
                raise UserError(f"fault spec item {item.strip()!r} is not key=value")
            if key not in known:
                raise UserError(f"unknown fault {key!r} (known: {', '.join(known)})")
            if key in values:
                raise UserError(f"fault {key!r} is given twice")
            values[key] = _spec_value(key, raw)
        spec = cls(**values)
        total = sum(getattr(spec, kind) for kind in KINDS)
        if total > 1.0 + 1e-12:
            raise UserError(f"fault probabilities add up to {total:g} > 1 (at most one fault per message)")
        return spec


def _spec_value(key: str, raw: str):
    if key == "seed":
        try:
            value = int(raw)
        except ValueError:
            raise UserError(f"fault seed must be a whole number, not {raw!r}") from None
        if value < 0:
            raise UserError(f"fault seed must be >= 0, not {raw}")
        return value
    try:
        value = float(raw)
    except ValueError:
        raise UserError(f"fault {key} must be a number, not {raw!r}") from None
    if not math.isfinite(value):
        raise UserError(f"fault {key} must be finite, not {raw}")
    if key in KINDS and not 0.0 <= value <= 1.0:
        raise UserError(f"fault probability {key}={raw} is outside [0, 1]")
    if key == "delay_s" and value <= 0:
        raise UserError(f"delay_s must be > 0 seconds, not {raw}")
    if key == "reboot_s" and value < 0:
        raise UserError(f"reboot_s must be >= 0 seconds, not {raw}")
    return value


class FaultInjector:
    """Draws the fault (or none) for each program message and garbles responses; thread-safe.

    ``decide(instrument)`` -> one of :data:`KINDS` or ``None``; ``garble(response)`` -> the
    corrupted bytes. ``counts`` and ``events`` (the last 1000 ``(instrument, kind, detail)``)
    record what was injected.
    """

    def __init__(self, spec: FaultSpec):
        self.spec = spec
        self.rng = np.random.Generator(np.random.PCG64(spec.seed))
        self.lock = threading.Lock()
        self.counts: Counter = Counter()
        self.events: deque = deque(maxlen=1000)
        edges = np.cumsum([getattr(spec, kind) for kind in KINDS])
        self._edges = [float(e) for e in edges]

    def decide(self, instrument: str = "") -> str | None:
        """The fault for the next program message: one uniform draw, at most one kind."""
        with self.lock:
            draw = float(self.rng.random())
            for kind, edge in zip(KINDS, self._edges):
                if draw < edge:
                    self.counts[kind] += 1
                    self.events.append((instrument, kind, ""))
                    return kind
            return None

    def garble(self, response: bytes, instrument: str = "") -> bytes:
        """A corrupted copy of ``response`` (drawn from the same seeded RNG)."""
        with self.lock:
            garbled, how = garble_response(response, self.rng)
            self.events.append((instrument, "garble", how))
            return garbled

    def summary(self) -> str:
        return ", ".join(f"{kind} {self.counts[kind]}" for kind in KINDS) if self.counts else "none"


# --------------------------------------------------------------------------- garbling
_NON_NUMERIC = (b"ERR", b"?", b"--", b"garbage", b"1.2.3", b"+INF", b"")


def _block_header(body: bytes) -> tuple[int, int] | None:
    """``(header_length, payload_length)`` if ``body`` starts with a definite-length IEEE block."""
    if len(body) < 2 or body[:1] != b"#" or body[1:2] not in b"123456789":
        return None
    digits = int(body[1:2])
    length_text = body[2 : 2 + digits]
    if len(length_text) != digits or not length_text.isdigit():
        return None
    return 2 + digits, int(length_text)


def _flip(data: bytearray, rng, start: int, end: int, avoid_newline: bool) -> int:
    """XOR 1-8 random bytes in ``data[start:end]`` with non-zero masks; returns how many."""
    if end <= start:
        return 0
    count = int(rng.integers(1, 9))
    for _ in range(count):
        at = int(rng.integers(start, end))
        mask = int(rng.integers(1, 256))
        if avoid_newline and data[at] ^ mask == 0x0A:
            mask ^= 0x01
        data[at] ^= mask
    return count


def garble_response(response: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """Corrupt one response; returns ``(bytes, description)``. Keeps the final ``\\n`` where there was one."""
    if not response:
        return response, "empty"
    terminated = response.endswith(b"\n")
    body = response[:-1] if terminated else response
    tail = b"\n" if terminated else b""
    start = 0 if body[:1] == b"#" else body.find(b";#") + 1  # a block may follow a joined "1;"
    block = _block_header(body[start:]) if start >= 0 and (start == 0 or body[start : start + 1] == b"#") else None
    if block is not None:
        prefix, body = body[:start], body[start:]
        header_length, payload_length = block
        payload = bytearray(body[header_length : header_length + payload_length])
        rest = body[header_length + payload_length :]
        mode = ("nan", "short_length", "long_length", "truncate", "header")[int(rng.integers(5))]
        if mode == "nan" and len(payload) >= 8:
            at = 8 * int(rng.integers(len(payload) // 8))
            payload[at : at + 8] = b"\xff" * 8  # NaN as float32 pair or float64, either byte order
        elif mode in ("short_length", "long_length", "nan"):
            mode = mode if mode != "nan" else "short_length"
            change = int(rng.integers(1, max(2, payload_length // 4 + 1)))
            claimed = max(payload_length - change, 0) if mode == "short_length" else payload_length + change
            digits = str(claimed).encode()
            return prefix + b"#" + str(len(digits)).encode() + digits + bytes(payload) + rest + tail, mode
        elif mode == "truncate" and payload:
            payload = payload[: int(rng.integers(0, max(len(payload), 1)))]
        else:
            mode = "header"
            return prefix + b"#" + b"A" + body[2:] + tail, mode
        return prefix + body[:header_length] + bytes(payload) + rest + tail, mode
    data = bytearray(body)
    mode = ("flip", "truncate", "text", "nan")[int(rng.integers(4))]
    if mode == "flip" and data:
        _flip(data, rng, 0, len(data), avoid_newline=True)
        return bytes(data) + tail, mode
    if mode == "truncate" or not data:
        return bytes(data[: int(rng.integers(0, max(len(data), 1)))]) + tail, "truncate"
    fields_ = bytes(data).split(b",")
    at = int(rng.integers(len(fields_)))
    fields_[at] = b"NaN" if mode == "nan" else _NON_NUMERIC[int(rng.integers(len(_NON_NUMERIC)))]
    return b",".join(fields_) + tail, mode


__all__ = ["KINDS", "EXECUTION_ERROR", "FaultSpec", "FaultInjector", "garble_response"]
