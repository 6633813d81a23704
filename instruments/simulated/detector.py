r"""The analyzer's detector and video filter: how the RBW filter's output becomes trace points.

This module owns the *statistics of a displayed trace point*; the ring model
(:mod:`labpgt.instruments.simulated.ring`) owns what reaches the analyzer, and the analyzer
(:mod:`labpgt.instruments.simulated.analyzer`) owns the settings that choose a :class:`Display`.

Noise. Behind the resolution filter, noise has a Rayleigh-distributed envelope: its power is
exponentially distributed about the mean :math:`\bar P` (noise density × noise bandwidth). A video
filter narrower than the RBW averages :math:`m = \mathrm{RBW}/\mathrm{VBW}` independent envelope
powers, so each video sample is :math:`\bar P\,\Gamma(m)/m`. A display point ("bucket") spans
:math:`n` independent video samples, :math:`n` = (sweep time per bucket) × min(RBW, VBW). The
detector then shows:

=============  ==========================================================================
``SAMPle``     one video sample: :math:`\Gamma(m)/m`. With m = 1 its mean on the dB scale
               is :math:`10\log_{10}e^{-\gamma} = -2.51` dB under :math:`\bar P` (the
               Rayleigh envelope's log-average), and its standard deviation 5.57 dB.
``POSitive``   the largest of n samples: quantile :math:`F^{-1}(U^{1/n})` of the sample's
               distribution, raised above the sample detector's floor and skewed upward.
``NEGative``   the smallest of n samples: quantile :math:`F^{-1}(1-(1-U)^{1/n})`.
``AVERage``    the power average of the n samples: :math:`\Gamma(nm)/(nm)`.
``NORMal``     the model's preset rendering, kept bit for bit: :math:`\Gamma(km)/(km)` with
               k = ``RingParameters.noise_averages`` (8; about ±1.5 dB).
=============  ==========================================================================

Lines. A CW line's RBW response is sampled over the bucket: ``POSitive`` and ``NORMal`` show its
maximum over the bucket (a line anywhere in a bucket is displayed at its full power), ``SAMPle``
its value at the bucket's centre, ``NEGative`` its minimum, ``AVERage`` its mean over the bucket.
Line power and detected noise power add (a simplification: the detector sees their sum's envelope).

Input attenuation. The analyzer's own noise floor (its DANL, referred to the input) rises dB for
dB with input attenuation above the reference attenuation the model's DANL is specified at.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import erf, gammaincinv

DETECTORS = ("NORMal", "POSitive", "SAMPle", "NEGative", "AVERage")
LN2_4 = 4.0 * np.log(2.0)


@dataclass(frozen=True)
class Display:
    """What the analyzer's front end does to the trace (see the module docstring)."""

    detector: str = "NORMal"
    video_averages: float = 1.0      # m = max(1, RBW/VBW)
    samples_per_point: int = 1       # n independent video samples per display point
    danl_scale: float = 1.0          # the analyzer's noise floor relative to the model's DANL (linear)


PRESET = Display()


def noise_fluctuation(shape, display: Display, preset_averages: float, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative fluctuation of the detected noise power at each point (mean-power units)."""
    m = float(display.video_averages)
    n = max(int(display.samples_per_point), 1)
    detector = display.detector
    if detector == "NORMal":
        k = preset_averages * m
        return rng.standard_gamma(k, size=shape, dtype=np.float32) / np.float32(k)
    if detector == "AVERage":
        return rng.standard_gamma(n * m, size=shape) / (n * m)
    if detector == "SAMPle":
        return rng.standard_gamma(m, size=shape) / m
    u = rng.random(shape)
    quantile = u ** (1.0 / n) if detector == "POSitive" else -np.expm1(np.log1p(-u) / n)
    if m == 1.0:
        return -np.log1p(-quantile)              # exponential power: a Rayleigh envelope
    return gammaincinv(m, quantile) / m


def line_response(distance_hz: np.ndarray, rbw_hz: float, step_hz: float, detector: str) -> np.ndarray:
    """The displayed fraction of a line's power at display points ``distance_hz`` from it."""
    half = step_hz / 2.0
    if detector == "SAMPle":
        return np.exp(-LN2_4 * (distance_hz / rbw_hz) ** 2)
    if detector == "NEGative":
        return np.exp(-LN2_4 * ((distance_hz + half) / rbw_hz) ** 2)
    if detector == "AVERage" and step_hz > 0:
        a = np.sqrt(LN2_4) / rbw_hz
        return (erf(a * (distance_hz + half)) - erf(a * (distance_hz - half))) * np.sqrt(np.pi) / (4 * a * half)
    return np.exp(-LN2_4 * (np.maximum(distance_hz - half, 0.0) / rbw_hz) ** 2)


__all__ = ["DETECTORS", "Display", "PRESET", "noise_fluctuation", "line_response"]
