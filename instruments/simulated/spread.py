"""Simulated ring devices: a device number draws one ring's physical parameters from documented ranges.

This module owns the device-to-device spread (docs/ring-physics.md §11). Device 0 is the nominal
ring (:class:`~labpgt.instruments.simulated.ring.RingParameters`' defaults); device N ≥ 1 draws every
parameter of :data:`DEVICE_RANGES` from its range with a generator seeded by N alone, so device 3 is
the same ring on every machine and in every run, whatever the noise seed. The bench around each
device is set up as a lab sets up a new ring: the field set point is the one that puts the device's
f_FMR at the design frequency (``RingParameters.default_field_mt``), and the generators' bands and
the analyzer's view stay where the lab's design put them.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from .ring import RingParameters

#: parameter: (low, high, how it is drawn: "uniform" or "log" (log-uniform)); see docs/ring-physics.md §11
DEVICE_RANGES: dict[str, tuple[float, float, str]] = {
    "mu0_ms_t": (0.1715, 0.1785, "uniform"),
    "film_thickness_m": (4.0e-6, 8.0e-6, "uniform"),
    "transducer_spacing_m": (7.0e-3, 12.0e-3, "uniform"),
    "linewidth_oe": (0.3, 0.8, "uniform"),
    "transducer_loss_db": (3.0, 7.0, "uniform"),
    "electrical_delay_s": (12e-9, 30e-9, "uniform"),
    "loop_phase_rad": (0.0, 2 * math.pi, "uniform"),
    "edge_offset_hz": (6e6, 10e6, "uniform"),
    "rolloff_start_hz": (20e6, 32e6, "uniform"),
    "rolloff_scale_hz": (28e6, 45e6, "uniform"),
    "ripple_db": (0.15, 0.6, "uniform"),
    "ripple_period_hz": (15e6, 30e6, "uniform"),
    "input_coupling_db": (10.0, 20.0, "uniform"),
    "output_coupling_db": (10.0, 20.0, "uniform"),
    "amplifier_gain_db": (34.0, 46.0, "uniform"),
    "amplifier_noise_figure_db": (3.0, 7.0, "uniform"),
    "amplifier_saturation_mw": (20.0, 80.0, "log"),
    "four_magnon_saturation_mw": (10.0, 40.0, "log"),
    "three_magnon_saturation_mw": (0.15, 0.6, "log"),
    "nonlinear_shift_hz_per_mw": (-0.12e6, -0.05e6, "uniform"),
    "magnet_tempco_per_k": (-1.2e-3, -0.3e-3, "uniform"),
    "magnet_calibration": (0.985, 1.015, "uniform"),
    "magnet_time_constant_s": (600.0, 2400.0, "uniform"),
    "gain_tempco_db_per_k": (-0.03, -0.01, "uniform"),
    "warmup_rise_k": (1.0, 3.0, "uniform"),
    "warmup_time_s": (1200.0, 3600.0, "uniform"),
    "film_time_constant_s": (120.0, 600.0, "uniform"),
    "hvac_amplitude_k": (0.1, 0.5, "uniform"),
    "hvac_period_s": (600.0, 1800.0, "uniform"),
}


def device_parameters(device: int = 0, base: RingParameters | None = None) -> RingParameters:
    """The parameters of simulated device ``device`` (0: ``base``, the nominal ring; N ≥ 1 drawn)."""
    base = base if base is not None else RingParameters()
    device = int(device)
    if device < 0:
        raise ValueError(f"a device number is a whole number >= 0, not {device}")
    if device == 0:
        return base
    rng = np.random.default_rng([device, 0xDE71CE])
    drawn = {}
    for name, (low, high, how) in DEVICE_RANGES.items():
        u = float(rng.random())
        drawn[name] = low * (high / low) ** u if how == "log" else low + (high - low) * u
    return replace(base, **drawn)


__all__ = ["DEVICE_RANGES", "device_parameters"]
