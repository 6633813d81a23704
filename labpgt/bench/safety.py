"""The safety limits of a bench, checked before anything is sent: the hardware is never hurt.

Two kinds of limit apply:

* **the bench's own**, from its TOML: each generator's ``max_power_dbm`` and ``[safety]
  max_total_power_dbm``, the power of all generators summed in milliwatts; each loop attenuator's
  ``min_attenuation_db`` (the loop amplifier's saturation, the ring's rating); each coil supply's
  ``max_current_a`` (the magnet's heating; with its calibration, the field it can reach) and
  ``max_slew_a_per_s`` (the coil's inductive kick), and the ``safe_current_a`` every exit ramps it to;
* **the instruments' ranges**, which the driver classes declare (see :mod:`labpgt.bench.kinds`):
  a generator's power and frequency, the ring's loop gain and bias field, an attenuator's range.

:func:`check_config_safe` refuses a config whose encoding or fixed settings could ever leave them;
:func:`check_state_safe` checks one complete wanted state of the bench before any of it is sent.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from labpgt.bench.kinds import AttenuatorState, GeneratorState, Role, State, state_of
from labpgt.errors import UserError

if TYPE_CHECKING:
    from labpgt.bench.config import BenchConfig


class SafetyError(UserError):
    """A setting would exceed a safety limit of the bench; nothing was sent."""


def total_dbm(powers_dbm) -> float:
    """The sum of powers given in dBm, in dBm (-inf for none)."""
    return 10 * math.log10(sum(10 ** (p / 10) for p in powers_dbm)) if len(powers_dbm) else -math.inf


def check_config_safe(config: BenchConfig) -> None:
    """Refuse a config whose encoding or fixed settings could ever exceed a limit."""
    where = f"bench config {config.source}"
    reach = reachable_ranges(config)
    worst = {name: reach[(name, "power_dbm")][1] for name in config.generators if (name, "power_dbm") in reach}
    for name, power in worst.items():
        limit = _max_power_dbm(config, name)
        if power > limit:
            raise SafetyError(f"{where}: {name} could be set to {power:g} dBm, above its max_power_dbm {limit:g}")
    total = total_dbm(list(worst.values()))
    if total > config.max_total_power_dbm + 1e-9:
        raise SafetyError(
            f"{where}: the generators could together reach {total:.2f} dBm, "
            f"above max_total_power_dbm {config.max_total_power_dbm:g}"
        )
    _check_ring_controls(config, reach, where)
    for (name, setting), (low, high) in reach.items():
        allowed_low, allowed_high = config.instruments[name].kind.limits(config.instruments[name])[setting]
        if low < allowed_low or high > allowed_high:
            reach_text = f"{low:g}" if low == high else f"[{low:g}, {high:g}]"
            raise SafetyError(
                f"{where}: {name}.{setting} could be set to {reach_text}, "
                f"outside the allowed [{allowed_low:g}, {allowed_high:g}]"
            )


def _check_ring_controls(config: BenchConfig, reach: dict, where: str) -> None:
    """A loop attenuator never below its ``min_attenuation_db``; a coil supply's limits themselves sane."""
    for name, inst in config.instruments.items():
        options = inst.options
        if inst.kind.role is Role.ATTENUATOR:
            low = reach.get((name, "attenuation_db"), (math.inf, math.inf))[0]
            if low < options["min_attenuation_db"]:
                raise SafetyError(
                    f"{where}: {name} could be set to {low:g} dB, below its min_attenuation_db "
                    f"{options['min_attenuation_db']:g}"
                )
        if inst.kind.role is Role.MAGNET:
            top = inst.kind.limits()["current_a"][1]  # the driver class's MAX_CURRENT_A
            if not 0 < options["max_current_a"] <= top:
                raise SafetyError(f"{where}: {name}.max_current_a must be in (0, {top:g}] A")
            if not options["max_slew_a_per_s"] > 0:
                raise SafetyError(f"{where}: {name}.max_slew_a_per_s must be above 0 A/s")
            if abs(options["safe_current_a"]) > options["max_current_a"]:
                raise SafetyError(
                    f"{where}: {name}.safe_current_a {options['safe_current_a']:g} A is beyond its "
                    f"max_current_a {options['max_current_a']:g}"
                )
            if options["mt_per_a"] == 0 or options["field_tolerance_mt"] <= 0 or options["settle_readings"] < 1:
                raise SafetyError(
                    f"{where}: {name} needs mt_per_a != 0, field_tolerance_mt > 0 and settle_readings >= 1"
                )


def reachable_ranges(config: BenchConfig) -> dict[tuple[str, str], tuple[float, float]]:
    """(lowest, highest) that each limited setting can take: its fixed value and its encoding's ends."""
    values: dict[tuple[str, str], list[float]] = {}
    for name, inst in config.instruments.items():
        for setting in inst.kind.limits(inst):
            if setting in inst.settings:
                values.setdefault((name, setting), []).append(float(inst.settings[setting]))
    for e in config.encoding:
        values.setdefault((e.instrument, e.setting), []).extend((e.low, e.high))
    return {key: (min(v), max(v)) for key, v in values.items()}


def _max_power_dbm(config: BenchConfig, name: str) -> float:
    """Generator ``name``'s ``max_power_dbm`` (reading a config requires it of every generator)."""
    limit = config.instruments[name].max_power_dbm
    if limit is None:
        raise SafetyError(f"{name} has no max_power_dbm; nothing was sent")
    return limit


def check_state_safe(config: BenchConfig, wanted: dict[str, State]) -> None:
    """Check one complete wanted state of every instrument before anything of it is sent."""
    powers = []
    for name in config.generators:
        power, limit = state_of(wanted, name, GeneratorState).power_dbm, _max_power_dbm(config, name)
        if not math.isfinite(power) or power > limit:
            raise SafetyError(f"{name}: {power:g} dBm exceeds max_power_dbm {limit:g}; nothing was sent")
        powers.append(power)
    total = total_dbm(powers)
    if total > config.max_total_power_dbm + 1e-9:
        raise SafetyError(
            f"total generator power {total:.2f} dBm exceeds max_total_power_dbm "
            f"{config.max_total_power_dbm:g}; nothing was sent"
        )
    for name, state in wanted.items():
        inst = config.instruments[name]
        for setting, (low, high) in inst.kind.limits(inst).items():
            value = getattr(state, setting)
            if value is None:
                continue
            if not low <= value <= high:
                raise SafetyError(f"{name}.{setting} = {value:g} outside [{low:g}, {high:g}]; nothing was sent")
        floor = inst.options.get("min_attenuation_db")  # an attenuator's
        if floor is None:
            continue
        attenuation = state_of(wanted, name, AttenuatorState).attenuation_db
        if attenuation < floor:
            raise SafetyError(
                f"{name}.attenuation_db = {attenuation:g} is below its min_attenuation_db {floor:g}; nothing was sent"
            )
