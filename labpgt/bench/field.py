"""The bias field's closed loop: a coil current supply, ramped within its limits, trimmed on a gaussmeter.

A bench whose field is set by a current supply (``driver = "coil-supply"``) reaches each field set point
through :class:`FieldLoop`:

1. the current for the set point from the table's calibration, ``(field - offset_mt) / mt_per_a``;
2. a ramp to it from the present current in steps of at most ``max_slew_a_per_s × RAMP_STEP_S``, each
   step checked against ``max_current_a`` before it is sent and waited out (the coil's inductive kick),
   always *from below*: a lower current is first passed by :data:`APPROACH_A` and then approached going up,
   so that the magnet's iron is on the same branch of its hysteresis loop whatever the current was before
   (the same set point gives the same field, a resumed run the same as an uninterrupted one);
3. ``settle_s`` later the gaussmeter is read; the loop corrects the current by the error over the
   calibration's slope, ramps again and reads again, until ``settle_readings`` consecutive readings are
   within ``field_tolerance_mt`` of the set point (the *settling criterion*), or :data:`MAX_ITERATIONS`
   corrections did not get there (:class:`FieldNotReached`);
4. a correction that would need more than ``max_current_a`` is refused before it is sent (:class:`SafetyError`).

:meth:`FieldLoop.ramp_to` alone sets a current open loop (a calibration sweep, ``labpgt sweep --current``)
and ramps to ``safe_current_a`` on every exit (:meth:`labpgt.bench.Bench.safe_state_best_effort`). Waits
go to the ``wait`` the bench gives (the wall clock, or an embedded simulator's clock).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from labpgt.bench.safety import SafetyError
from labpgt.errors import UserError
from labpgt.instruments.drivers import read_confirmation

RAMP_STEP_S = 0.1  # the ramp's step: at most max_slew_a_per_s × this per message
APPROACH_A = 0.1  # a current below the one wanted is reached this far under it first
MAX_ITERATIONS = 12  # corrections of the current before the field counts as not reached


class FieldNotReached(UserError):
    """The gaussmeter never read the set point within its tolerance: one line, the run stops (RF off, current safe)."""


@dataclass(frozen=True)
class FieldReading:
    """What reaching a set point took: the current left on the coil, the last field read, the readings taken."""

    current_a: float
    field_mt: float
    readings: int


class FieldLoop:
    """One coil supply and its gaussmeter (see the module docstring); ``options`` is the supply's table."""

    def __init__(self, name: str, options: dict, wait: Callable[[float], None]):
        self.name = name
        self.options = options
        self.wait = wait
        self.current_a: float | None = None  # what the supply was last set to (None: not known yet)

    # ---- the calibration and the limits
    def current_for(self, field_mt: float) -> float:
        return (field_mt - self.options["offset_mt"]) / self.options["mt_per_a"]

    def check_current(self, current_a: float) -> None:
        top = self.options["max_current_a"]
        if not (math.isfinite(current_a) and abs(current_a) <= top + 1e-12):
            raise SafetyError(f"{self.name}: {current_a:.4g} A is beyond max_current_a {top:g}; nothing was sent")

    # ---- setting the current
    def ramp_to(self, supply, current_a: float, output_on: bool = True) -> None:
        """Ramp the coil from the present current to ``current_a`` within the slew limit; every step checked first."""
        self.check_current(current_a)
        start = self.current_a if self.current_a is not None else supply.read_output()[0]
        step = self.options["max_slew_a_per_s"] * RAMP_STEP_S
        steps = max(1, math.ceil(abs(current_a - start) / step - 1e-9))
        for k in range(1, steps + 1):
            value = start + (current_a - start) * k / steps if k < steps else current_a
            supply.send_current(value, output_on)
            read_confirmation(supply)
            self.current_a = value
            if k < steps:
                self.wait(RAMP_STEP_S)

    def approach(self, supply, current_a: float) -> None:
        """Ramp to ``current_a`` from below (see the module docstring)."""
        present = self.current_a if self.current_a is not None else supply.read_output()[0]
        if current_a < present:
            below = max(current_a - APPROACH_A, -self.options["max_current_a"])
            self.ramp_to(supply, below)
        self.ramp_to(supply, current_a)

    def reach(self, supply, gaussmeter, field_mt: float) -> FieldReading:
        """Bring the field the gaussmeter reads to ``field_mt`` (see the module docstring)."""
        options = self.options
        current = self.current_for(field_mt)
        self.check_current(current)
        self.approach(supply, current)
        in_tolerance, readings, measured = 0, 0, math.nan
        for _ in range(MAX_ITERATIONS * int(options["settle_readings"])):
            self.wait(options["settle_s"])
            measured = float(gaussmeter.field_mt)
            readings += 1
            if abs(measured - field_mt) <= options["field_tolerance_mt"]:
                in_tolerance += 1
                if in_tolerance >= options["settle_readings"]:
                    return FieldReading(current, measured, readings)  # approach() left the coil at current
                continue
            in_tolerance = 0
            current += (field_mt - measured) / options["mt_per_a"]
            self.check_current(current)
            self.approach(supply, current)
        raise FieldNotReached(
            f"{self.name}: the field read {measured:.4f} mT after {readings} readings, not "
            f"{field_mt:.4f} ± {options['field_tolerance_mt']:g} mT"
        )


__all__ = ["FieldLoop", "FieldReading", "FieldNotReached", "RAMP_STEP_S", "MAX_ITERATIONS"]
