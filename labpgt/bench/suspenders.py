"""Suspenders: conditions a bench config declares, under which a run pauses and from which it resumes by itself.

In the spirit of bluesky's suspenders: while a condition is out of its range the run engine
(:mod:`labpgt.engine`) pauses the run — RF off (or held, as the config says), nothing measured counted as
training — and resumes it by itself once the condition has been back in range for its ``hold_s``, the
instruments' whole state re-applied and the step it was in measured again from its start. A bench TOML
declares them::

    [[suspend]]
    condition = "temperature"      # the ring's temperature sensor, °C (read with every query)
    min = 20.0
    max = 24.0
    hold_s = 60                    # back in range this long before the run goes on
    rf = "off"                     # off (default) | hold: the generators as they were while paused

    [[suspend]]
    condition = "oscillation"      # the free-running ring's strongest line above the trace's median, dB:
    min = 20                       # a check query (RF off) every `every_steps` steps, recorded
    every_steps = 10

    [[suspend]]
    condition = "instrument"       # every instrument answers (after a reconnect): a query that ran out of
    hold_s = 5                     # its retries pauses the run instead of ending it; `max_s` gives up

    [[suspend]]
    condition = "free_space"       # MB free on the disk of the session
    min = 500

Anything wrong in a table is one line of :class:`~labpgt.errors.UserError` when the config is read, before
anything is sent. :func:`read_condition` reads a condition off a connected bench.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labpgt.errors import UserError

if TYPE_CHECKING:
    from labpgt.reservoir import Measurement

CONDITIONS = {
    "temperature": "°C",
    "oscillation": "dB",
    "instrument": "",
    "free_space": "MB",
}
RF_WHILE_PAUSED = ("off", "hold")


@dataclass(frozen=True)
class Suspender:
    """One declared condition: its range [``minimum``, ``maximum``], how long it must hold, RF while paused, how
    often it is checked (``every_steps``: the oscillation's check query), when to give up (``max_s``, None:
    never)."""

    condition: str
    minimum: float = -math.inf
    maximum: float = math.inf
    hold_s: float = 0.0
    rf: str = "off"
    every_steps: int = 1
    max_s: float | None = None

    def in_range(self, value: float) -> bool:
        return self.minimum <= value <= self.maximum

    def describe(self, value: float | None = None) -> str:
        unit = CONDITIONS[self.condition]
        if self.condition == "instrument":
            return "an instrument stopped answering" if value is None else "every instrument answers"
        limits = " to ".join(f"{x:g} {unit}".strip() for x in (self.minimum, self.maximum) if math.isfinite(x))
        now = "" if value is None else f" {value:.2f} {unit}".rstrip()
        return f"{self.condition.replace('_', ' ')}{now} (its range {limits or 'any'})"

    def to_dict(self) -> dict:
        out = {"condition": self.condition, "hold_s": self.hold_s, "rf": self.rf}
        out.update({k: v for k, v in (("min", self.minimum), ("max", self.maximum)) if math.isfinite(v)})
        if self.condition == "oscillation":
            out["every_steps"] = self.every_steps
        if self.max_s is not None:
            out["max_s"] = self.max_s
        return out


def parse_suspenders(tables, where: str) -> tuple[Suspender, ...]:
    """The ``[[suspend]]`` tables of a bench config, checked (one UserError line for the first problem)."""
    if not isinstance(tables, list):
        raise UserError(f"{where}: [[suspend]] must be a list of tables")
    return tuple(_suspender(i, table, where) for i, table in enumerate(tables))


def _suspender(index: int, table, where: str) -> Suspender:
    at = f"{where}: suspend #{index + 1}"
    if not isinstance(table, dict):
        raise UserError(f"{at} is not a table")
    known = {"condition", "min", "max", "hold_s", "rf", "every_steps", "max_s"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise UserError(f"{at}: unknown key {unknown[0]!r}; a suspender has {', '.join(sorted(known))}")
    condition = table.get("condition")
    if condition not in CONDITIONS:
        raise UserError(f"{at}: unknown condition {condition!r}; expected {', '.join(CONDITIONS)}")

    def number(key, default):
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise UserError(f"{at}: {key} must be a number, not {value!r}")
        return float(value)

    minimum, maximum = number("min", -math.inf), number("max", math.inf)
    if minimum > maximum:
        raise UserError(f"{at}: the range is the wrong way round (min {minimum:g} > max {maximum:g})")
    if condition != "instrument" and not (math.isfinite(minimum) or math.isfinite(maximum)):
        raise UserError(f"{at}: {condition} needs a min or a max")
    hold = number("hold_s", 0.0)
    if hold < 0 or not math.isfinite(hold):
        raise UserError(f"{at}: hold_s must be zero or a positive number of seconds, not {hold:g}")
    rf = table.get("rf", "off")
    if rf not in RF_WHILE_PAUSED:
        raise UserError(f"{at}: rf must be off or hold, not {rf!r}")
    every = table.get("every_steps", 1)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise UserError(f"{at}: every_steps must be a positive integer, not {every!r}")
    max_s = table.get("max_s")
    if max_s is not None:
        max_s = number("max_s", None)
        if max_s <= 0:
            raise UserError(f"{at}: max_s must be a positive number of seconds, not {max_s:g}")
    return Suspender(condition, minimum, maximum, hold, rf, every, max_s)


def read_condition(suspender: Suspender, bench, session: Path | None) -> tuple[float, Measurement | None]:
    """``(value, check)`` of a suspender's condition now: the temperature sensor, the free-running ring's margin
    (``check``: the measurement of its check query, to record), 1.0 when every instrument answers (0.0 when
    not), the MB free on the session's disk."""
    if suspender.condition == "temperature":
        return bench.temperature_c(), None
    if suspender.condition == "oscillation":
        return bench.oscillation_margin()
    if suspender.condition == "instrument":
        return (1.0 if bench.answering() else 0.0), None
    stats = os.statvfs(Path(session).parent if session is not None else Path.cwd())
    return stats.f_bavail * stats.f_frsize / 1e6, None
