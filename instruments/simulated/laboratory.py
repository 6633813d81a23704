r"""The simulated bench's clock and the laboratory's slow drifts (docs/ring-physics.md §10).

This module owns *time* and *temperature*: a virtual clock that every sweep advances, the room's air
temperature (a slow wander, Poisson-timed steps and the air conditioning's cycle), the ring box's
warm-up after power-on, the film's and the magnet's thermal lag behind the air, the temperature
sensor the ring controller reads (its own lag and noise), and the magnet supply's slow wander. It
turns the instruments' set points into what the ring model sees — the film's temperature, the field
in the film, the net loop gain — so that other sources (a temperature controller, a current supply
and a gaussmeter, a step attenuator) can feed the same model inputs later.

Every random draw comes from the laboratory's own seeded generator, drawn only when the clock
advances (a sweep), never when a sensor is read: how often a client asks ``:TEMPerature?`` changes
nothing. With ``drifting=False`` nothing wanders and the clock still runs.

**Conditions on demand** (:meth:`Laboratory.command`): a temperature excursion (the room's air conditioning
failing, a door left open) and a loop-gain drop (an amplifier losing gain, so that the ring stops
auto-oscillating) that last a given number of seconds of *wall* time — what a run's suspenders must ride
out. They are the commands of a test or a rehearsal (``:SIMulate:…`` on the ring controller), draw
nothing, and are not part of the laboratory's saved state (a wall-clock event is not the bench's history).
"""

from __future__ import annotations

import math
import time

import numpy as np

MAX_SUBSTEP_S = 30.0  # the lags are integrated in steps no longer than this (exact within a step)
MAX_SUBSTEPS = 2000


class Laboratory:
    """The bench's virtual clock and slow drifts; see the module docstring and docs/ring-physics.md §10.

    ``params`` is the ring's :class:`~labpgt.instruments.simulated.ring.RingParameters` (its drift,
    thermal and magnet fields). ``advance(seconds)`` moves the clock.
    """

    def __init__(self, params, seed: int = 0, drifting: bool = True):
        self.params = params
        self.drifting = drifting
        self.rng = np.random.default_rng([int(seed), 0x1AB])
        self.time_s = 0.0
        self.air_offset_k = 0.0  # the slow wander and steps of the room's air (not the HVAC cycle)
        self.box_k = 0.0  # film and amplifier box temperature above room temperature
        self.magnet_k = 0.0  # the magnet's temperature above room temperature
        self.sensor_k = 0.0  # what the sensor's lagged element holds, above room temperature
        self.sensor_noise_k = 0.0  # its readout noise, drawn once per sweep
        self.field_offset_mt = 0.0  # the magnet supply's wander
        self.hvac_phase = float(self.rng.random()) if drifting else 0.0
        self.commanded: dict[str, tuple[float, float]] = {}  # condition: (size, until, in time.monotonic())

    # -- conditions on demand --------------------------------------------------------------------
    def command(self, condition: str, size: float, seconds: float) -> None:
        """Produce ``condition`` — ``temperature`` (an excursion of ``size`` K of the film and its sensor) or
        ``gain`` (a drop of ``size`` dB of the net loop gain) — for ``seconds`` of wall time."""
        self.commanded[condition] = (float(size), time.monotonic() + float(seconds))

    def commanded_now(self, condition: str) -> float:
        """The size of ``condition`` now (0 when it is not commanded, or over)."""
        size, until = self.commanded.get(condition, (0.0, 0.0))
        return size if time.monotonic() < until else 0.0

    # -- what the ring model and the instruments see --------------------------------------------
    @property
    def temperature_c(self) -> float:
        """The temperature sensor's reading (°C): the film's, through the sensor's lag, with its noise."""
        return self.params.room_temperature_c + self.sensor_k + self.sensor_noise_k + self.commanded_now("temperature")

    @property
    def film_temperature_c(self) -> float:
        return self.params.room_temperature_c + self.box_k + self.commanded_now("temperature")

    def film_field_mt(self, setpoint_mt: float) -> float:
        """The field in the film for the controller's set point: the magnet's calibration and
        temperature coefficient, plus the supply's wander."""
        return self.gap_field_mt(setpoint_mt * self.params.magnet_calibration)

    def gap_field_mt(self, cold_field_mt: float) -> float:
        """The field in the magnet's gap (the film's, and the Hall probe's beside it) for the field the magnet
        would give at room temperature: its temperature coefficient, plus the supply's wander."""
        p = self.params
        return cold_field_mt * (1.0 + p.magnet_tempco_per_k * self.magnet_k) + self.field_offset_mt

    def loop_gain_db(self, setpoint_db: float) -> float:
        """The net loop gain for the controller's set point: the amplifiers' gain drifts with the box."""
        return setpoint_db + self.params.gain_tempco_db_per_k * self.box_k - self.commanded_now("gain")

    # -- time ------------------------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        seconds = max(float(seconds), 0.0)
        if seconds == 0.0:
            return
        if not self.drifting:
            self.time_s += seconds
            return
        steps = min(MAX_SUBSTEPS, max(1, math.ceil(seconds / MAX_SUBSTEP_S)))
        dt = seconds / steps
        for _ in range(steps):
            self._step(dt)
        self.sensor_noise_k = self.params.sensor_noise_k * float(self.rng.standard_normal())

    def _step(self, dt: float) -> None:
        p = self.params
        self.time_s += dt
        self.air_offset_k = self._wander(
            self.air_offset_k,
            dt,
            p.temperature_sigma_k,
            p.temperature_correlation_s,
            p.temperature_steps_per_hour,
            p.temperature_step_k,
        )
        self.field_offset_mt = self._wander(
            self.field_offset_mt, dt, p.field_sigma_mt, p.field_correlation_s, p.field_steps_per_hour, p.field_step_mt
        )
        air = self.air_offset_k + self._hvac_k()
        warm = p.warmup_rise_k * (1.0 - math.exp(-self.time_s / p.warmup_time_s))
        self.box_k = _lag(self.box_k, air + warm, dt, p.film_time_constant_s)
        self.magnet_k = _lag(self.magnet_k, air, dt, p.magnet_time_constant_s)
        self.sensor_k = _lag(self.sensor_k, self.box_k, dt, p.sensor_time_constant_s)

    def _hvac_k(self) -> float:
        """The air conditioning's cycle: a triangle wave of the documented amplitude and period."""
        p = self.params
        cycle = (self.time_s / p.hvac_period_s + self.hvac_phase) % 1.0
        return p.hvac_amplitude_k * (4.0 * abs(cycle - 0.5) - 1.0)

    def _wander(self, value, dt, sigma, correlation_s, steps_per_hour, step):
        """An Ornstein-Uhlenbeck walk (exact update) plus Poisson-timed Gaussian steps."""
        keep = math.exp(-dt / correlation_s)
        value = value * keep + sigma * math.sqrt(1.0 - keep**2) * float(self.rng.standard_normal())
        jumps = self.rng.poisson(steps_per_hour * dt / 3600.0)
        return float(value + step * self.rng.standard_normal(jumps).sum())

    # -- checkpoints -----------------------------------------------------------------------------
    STATE = (
        "time_s",
        "air_offset_k",
        "box_k",
        "magnet_k",
        "sensor_k",
        "sensor_noise_k",
        "field_offset_mt",
        "hvac_phase",
    )

    def get_state(self) -> dict:
        return {"rng": self.rng.bit_generator.state, **{name: getattr(self, name) for name in self.STATE}}

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        for name in self.STATE:
            setattr(self, name, float(state.get(name, 0.0)))
        if "temperature_offset_k" in state:  # a checkpoint from before the thermal model: its film offset
            self.box_k = self.sensor_k = float(state["temperature_offset_k"])


def _lag(value: float, target: float, dt: float, time_constant_s: float) -> float:
    """A first-order lag's exact update for a target held over the step."""
    return target + (value - target) * math.exp(-dt / time_constant_s)


__all__ = ["Laboratory"]
