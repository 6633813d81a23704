r"""The analyzer's resolution filter, detector and video filter: how the input becomes trace points.

This module owns *what a displayed trace point is*, given what reaches the analyzer's input: the
resolution-bandwidth filter's shape, the analyzer's own noise floor, and the statistics of each
detector (docs/ring-physics.md §9). The ring model (:mod:`labpgt.instruments.simulated.ring`) owns
what reaches the input; the analyzer (:mod:`labpgt.instruments.simulated.analyzer`) owns the settings
that choose a :class:`Display`.

Resolution filter. ``four-pole``: the analog filter of the Keysight/Agilent swept analyzers (ESA, for
RBW ≥ 1 kHz), four synchronously tuned poles, power response :math:`[1 + (\Delta/f_0)^2]^{-4}` with
:math:`f_0 = \mathrm{RBW}/(2\sqrt{2^{1/4}-1})`: −30 dB at 2.5 RBW, −52 dB at 5 RBW, 60:3 dB
selectivity 12.7:1, noise bandwidth 1.128 RBW (Keysight AN 150, *Spectrum Analysis Basics*).
``gaussian``: the digital filters (X-series; the ESA's ≤ 300 Hz; R&S), :math:`e^{-4\ln 2(\Delta/\mathrm{RBW})^2}`,
noise bandwidth 1.064 RBW. A line is rendered with the filter's response at the display points
within reach of it; the ring's regenerative noise comb is seen through the same filter
(:func:`resolved_regeneration`).

Noise. The displayed noise is the ring's noise in the filter's noise bandwidth plus the analyzer's
own: its displayed average noise level (``floor_dbm_per_hz``, referred to its input, with its input
attenuation and preamplifier) and the IF's noise at a fixed distance under the reference level
(``if_noise_dbm``). Behind the filter, noise has a Rayleigh envelope: its power is exponentially
distributed about the mean :math:`\bar P`. A video filter narrower than the RBW averages
:math:`m = \mathrm{RBW}/\mathrm{VBW}` envelope powers (:math:`\Gamma(m)/m`). A display point ("bucket")
spans :math:`n` independent video samples, :math:`n` = (sweep time per bucket) × min(RBW, VBW).

=============  ==========================================================================
``SAMPle``     one video sample: :math:`\Gamma(m)/m`; with m = 1 its mean in dB is −2.51 dB
               under :math:`\bar P` and its standard deviation 5.57 dB.
``POSitive``   the largest of n samples: quantile :math:`F^{-1}(U^{1/n})`.
``NEGative``   the smallest of n samples: quantile :math:`F^{-1}(1-(1-U)^{1/n})`.
``AVERage``    the power average of the n samples: :math:`\Gamma(nm)/(nm)`.
``NORMal``     Keysight's normal ("rosenfell") detector: where the signal only rises or only falls
               across a bucket, its peak; where it rises and falls (noise, or a line narrower than
               the bucket), odd-numbered points show the bucket's maximum — or the previous even
               bucket's, if larger — and even-numbered points its minimum (AN 150, Figs. 2-24,
               2-25). In noise with n = 5 the points alternate about +3.6 and −7 dB about
               :math:`\bar P`.
=============  ==========================================================================

Lines. A CW line's filter response is sampled over the bucket: ``POSitive`` shows its maximum over
the bucket, ``SAMPle`` its value at the bucket's centre, ``NEGative`` its minimum, ``AVERage`` its
mean. A signal "only rises or only falls" across a bucket where the lines' response changes across
it by more than the mean noise power and no line's centre inside the bucket stands above the
noise. Line power and detected noise power add (a simplification: the detector sees their sum's
envelope).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import erf, gammaincinv

DETECTORS = ("NORMal", "POSitive", "SAMPle", "NEGative", "AVERage")
FILTERS = ("four-pole", "gaussian")
LN2_4 = 4.0 * np.log(2.0)
FOUR_POLE_F0 = 1.0 / (2.0 * np.sqrt(2.0**0.25 - 1.0))  # f0 / RBW
NOISE_BANDWIDTH = {
    "four-pole": 15 * np.pi / 48 * FOUR_POLE_F0,  # 1.128 × RBW
    "gaussian": float(np.sqrt(np.pi / LN2_4)),
}  # 1.064 × RBW
KERNEL_REACHES = (6, 12, 24)  # half-widths (display points) of the kernels lines are rendered with
VISIBLE_BELOW_FLOOR = 1e-3  # lines 30 dB under the analyzer's own floor change no displayed digit
ESA_FLOOR_DBM_PER_HZ = -145.0


@dataclass(frozen=True)
class Display:
    """What the analyzer's front end does to its input (see the module docstring)."""

    detector: str = "NORMal"
    video_averages: float = 1.0  # m = max(1, RBW/VBW)
    samples_per_point: int = 5  # n independent video samples per display point (the preset sweep's)
    floor_dbm_per_hz: float = ESA_FLOOR_DBM_PER_HZ + 10.0  # the analyzer's own noise at its input
    if_noise_dbm: float = -100.0  # the IF's noise in the RBW, a fixed distance under the reference level
    rbw_filter: str = "four-pole"


PRESET = Display()


def noise_bandwidth_hz(rbw_hz: float, shape: str) -> float:
    return NOISE_BANDWIDTH[shape] * rbw_hz


def filter_response(distance_hz, rbw_hz: float, shape: str):
    """The filter's power response (peak 1) at ``distance_hz`` from its centre."""
    if shape == "four-pole":
        q = distance_hz / (FOUR_POLE_F0 * rbw_hz)
        q = 1.0 + q * q
        q = q * q
        return 1.0 / (q * q)
    return np.exp(-LN2_4 * (distance_hz / rbw_hz) ** 2)


def filter_reach_hz(rbw_hz: float, shape: str, dynamic_range):
    """How far from a line its response stays above 1/``dynamic_range`` of its peak (elementwise)."""
    dynamic_range = np.maximum(dynamic_range, 1.0)
    if shape == "four-pole":
        return FOUR_POLE_F0 * rbw_hz * np.sqrt(np.maximum(dynamic_range**0.25 - 1.0, 0.0))
    return rbw_hz * np.sqrt(np.log(dynamic_range) / LN2_4)


def _four_pole_integral(u):
    """∫ (1 + u²)^-4 du."""
    q = 1.0 + u * u
    return u / (6 * q**3) + 5 * u / (24 * q**2) + 5 * u / (16 * q) + 5 / 16 * np.arctan(u)


def line_response(
    distance_hz: np.ndarray, rbw_hz: float, step_hz: float, detector: str, shape: str = "gaussian"
) -> np.ndarray:
    """The displayed fraction of a line's power at display points ``distance_hz`` (≥ 0) from it."""
    half = step_hz / 2.0
    if detector == "SAMPle":
        return filter_response(distance_hz, rbw_hz, shape)
    if detector == "NEGative":
        return filter_response(distance_hz + half, rbw_hz, shape)
    if detector == "AVERage" and step_hz > 0:
        if shape == "four-pole":
            f0 = FOUR_POLE_F0 * rbw_hz
            return (
                (_four_pole_integral((distance_hz + half) / f0) - _four_pole_integral((distance_hz - half) / f0))
                * f0
                / step_hz
            )
        a = np.sqrt(LN2_4) / rbw_hz
        return (erf(a * (distance_hz + half)) - erf(a * (distance_hz - half))) * np.sqrt(np.pi) / (4 * a * half)
    return filter_response(np.maximum(distance_hz - half, 0.0), rbw_hz, shape)


def resolved_regeneration(a, cos_phase, sin_phase, tau_s, rbw_hz: float, display: Display = PRESET):
    r"""The loop's regenerative (Airy) gain :math:`1/|1 - a e^{i\phi}|^2` as the RBW filter sees it.

    Airy(φ) = [1 + 2 Σ_k a^k cos kφ]/(1 - a²); the filter damps harmonic k by its normalised lag
    response d_k at lag kτ: for the 4-pole filter exactly :math:`d_k = e^{-\lambda k}(\lambda^3k^3 +
    6\lambda^2k^2 + 15\lambda k + 15)/15` with λ = 2π f0 τ, which sums in closed form; the Gaussian's
    :math:`e^{-\beta k^2}` is replaced by the same form with λ = √(10β), equal to it to second order.
    Power preserving: humps narrower than the RBW are spread, not lost.
    """
    tau = np.asarray(tau_s, dtype=float)[:, None]
    if display.rbw_filter == "four-pole":
        lam = 2 * np.pi * FOUR_POLE_F0 * rbw_hz * tau
    else:
        sigma = rbw_hz / np.sqrt(2 * LN2_4)
        lam = np.sqrt(10 * 0.5 * (2 * np.pi * sigma * tau) ** 2)
    z = (a * np.exp(-lam)) * (cos_phase + 1j * sin_phase)
    w = 1.0 / (1.0 - z)
    s0 = z * w
    s1 = s0 * w
    s2 = s1 * (1.0 + z) * w
    s3 = s1 * (1.0 + 4.0 * z + z * z) * w * w
    harmonics = (lam**3 * s3 + 6 * lam**2 * s2 + 15 * lam * s1 + 15 * s0) / 15.0
    return (1.0 + 2.0 * harmonics.real) / (1.0 - a * a)


# ----------------------------------------------------------------------------------- the trace
def display_levels_dbm(freqs, rbw_hz: float, line_f, line_p, noise_psd, display: Display = PRESET, rng=None):
    """The displayed trace (B, P) in dBm from lines (frequency, mW at the input), the ring's noise
    density (mW/Hz at the input) and the analyzer's own floor; ``rng`` None for noise-free traces."""
    bandwidth = noise_bandwidth_hz(rbw_hz, display.rbw_filter)
    floor_mw = 10 ** (display.floor_dbm_per_hz / 10) * bandwidth + 10 ** (display.if_noise_dbm / 10)
    noise = noise_psd * bandwidth + floor_mw
    visible = VISIBLE_BELOW_FLOOR * floor_mw
    if display.detector != "NORMal":
        if rng is not None:
            noise = noise * noise_fluctuation(noise.shape, display, rng)
        lines = render_lines(freqs, rbw_hz, line_f, line_p, visible, display.rbw_filter, (display.detector,))[0]
        return 10.0 * np.log10(noise + lines)
    highest, lowest, inside = render_lines(
        freqs, rbw_hz, line_f, line_p, visible, display.rbw_filter, ("POSitive", "NEGative", "inside")
    )
    if rng is not None:
        top = noise * _extreme_fluctuation(noise.shape, display, rng, largest=True)
        bottom = np.minimum(noise * _extreme_fluctuation(noise.shape, display, rng, largest=False), top)
    else:
        top = bottom = noise
    return 10.0 * np.log10(rosenfell(top + highest, bottom + lowest, (highest - lowest > noise) & ~(inside > noise)))


def rosenfell(peak, pit, monotonic):
    """The normal detector's choice per point (points numbered from 1): a bucket where the signal only
    rises or falls shows its peak; otherwise odd points show the larger of their peak and the previous
    even bucket's remembered peak, even points their pit."""
    even = (np.arange(peak.shape[-1]) % 2) == 1
    remembered = np.zeros_like(peak)
    remembered[..., 1:] = np.where(even[:-1] & ~monotonic[..., :-1], peak[..., :-1], 0.0)
    return np.where(monotonic, peak, np.where(even, pit, np.maximum(peak, remembered)))


def noise_fluctuation(shape, display: Display, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative fluctuation of the detected noise power at each point (mean-power units)."""
    m = float(display.video_averages)
    n = max(int(display.samples_per_point), 1)
    if display.detector == "AVERage":
        return rng.standard_gamma(n * m, size=shape) / (n * m)
    if display.detector == "SAMPle":
        return rng.standard_gamma(m, size=shape) / m
    return _extreme_fluctuation(shape, display, rng, largest=display.detector == "POSitive")


def _extreme_fluctuation(shape, display: Display, rng, largest: bool):
    """The largest (or smallest) of n video samples, each Γ(m)/m, by its quantile."""
    m = float(display.video_averages)
    n = max(int(display.samples_per_point), 1)
    u = rng.random(shape)
    quantile = u ** (1.0 / n) if largest else -np.expm1(np.log1p(-u) / n)
    if m == 1.0:
        return -np.log1p(-quantile)  # exponential power: a Rayleigh envelope
    return gammaincinv(m, quantile) / m


def render_lines(freqs, rbw_hz, line_f, line_p, visible_mw, shape, kinds):
    """The lines' detected filter response on the display axis, (B, P) in mW for each of ``kinds`` (a
    detector name, or ``inside``: the power of the lines centred in each bucket).

    Each line only reaches the display points within the filter's reach of it, which grows with its
    power over the visible level; the visible lines are scattered into the trace with kernels of
    2K+1 points, K the reach of the strongest line of each group of lines of similar reach, rather
    than evaluated on the whole axis.
    """
    batch, n_points = line_f.shape[0], freqs.size
    rendered = [np.zeros(batch * n_points) for _ in kinds]
    shows = line_p > visible_mw
    if n_points < 2 or not shows.any():
        return [r.reshape(batch, n_points) for r in rendered]
    start, step = freqs[0], (freqs[-1] - freqs[0]) / (n_points - 1)
    row = np.broadcast_to(np.arange(batch)[:, None], line_f.shape)[shows]
    f, power = line_f[shows], line_p[shows]
    reach = np.minimum(n_points, np.ceil(filter_reach_hz(rbw_hz, shape, power / visible_mw) / step) + 2).astype(
        np.int64
    )
    tier = np.searchsorted(KERNEL_REACHES, reach)  # a few kernel sizes: most lines reach a few points
    for level in np.unique(tier):
        chosen = tier == level
        size = KERNEL_REACHES[level] if level < len(KERNEL_REACHES) else reach.max()
        _scatter(
            rendered,
            kinds,
            f[chosen],
            power[chosen],
            row[chosen],
            int(min(size, n_points)),
            start,
            step,
            n_points,
            rbw_hz,
            shape,
        )
    return [r.reshape(batch, n_points) for r in rendered]


def _scatter(rendered, kinds, f, power, row, reach, start, step, n_points, rbw_hz, shape):
    idx = np.rint((f - start) / step).astype(np.int64)[:, None] + np.arange(-reach, reach + 1)[None, :]
    distance = np.abs(start + idx * step - f[:, None])
    on_axis = (idx >= 0) & (idx < n_points)
    flat = (np.clip(idx, 0, n_points - 1) + (row * n_points)[:, None]).ravel()
    weight_on = power[:, None] * on_axis
    for out, kind in zip(rendered, kinds):
        if kind == "inside":
            weight = weight_on * (distance <= step / 2)
        else:
            weight = weight_on * line_response(distance, rbw_hz, step, kind, shape)
        out += np.bincount(flat, weights=weight.ravel(), minlength=out.size)


__all__ = [
    "DETECTORS",
    "FILTERS",
    "Display",
    "PRESET",
    "noise_bandwidth_hz",
    "filter_response",
    "line_response",
    "resolved_regeneration",
    "display_levels_dbm",
    "rosenfell",
    "noise_fluctuation",
    "render_lines",
]
