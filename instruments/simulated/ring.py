r"""Physics of the simulated magnonic auto-oscillation ring, as a spectrum analyzer would see it.

This module owns the one physical model behind every simulated instrument: the signal generators'
tones go into the ring, the ring controller sets its loop gain, amplifier and bias field, and the
analyzer displays what comes out. Everything is vectorised over a batch of B settings, and all
randomness comes from one seeded ``numpy.random.Generator`` (same seed, same spectra, bit for bit).

The ring
--------
An active ring resonator: a YIG-film magnetostatic-surface-wave (MSSW) delay line closed by a
microwave amplifier. The generators inject through a coupler; the analyzer reads an output coupler.
Powers are referred to the analyzer input with the couplers' and the delay line's minimum insertion
loss calibrated out (a lab's reference-level offset), so that with the amplifier off a tone at the
passband maximum is displayed at its set power.

1. **Spin-wave passband (Kittel).** For an in-plane magnetised film the MSSW band runs from
   :math:`f_\mathrm{FMR} = \gamma'\sqrt{B(B+\mu_0 M_s)}` to :math:`f_\mathrm{top} = \gamma'(B + \mu_0 M_s/2)`
   with :math:`\gamma' = 28` GHz/T and :math:`\mu_0 M_s = 0.175` T (YIG). At B = 50 mT:
   f_FMR = 2.970 GHz, f_top = 3.850 GHz. The transducers excite only long waves, so the
   delay line's transmission (dB, relative to its maximum) is

   .. math:: T(f) = 10\log_{10}\sigma\!\left(\frac{x - x_0}{w_0}\right)
                   - a_2\,\max(0, x - x_1)^2/x_2^2 + r\cos(2\pi x/x_r) - r,
             \quad x = f - f_\mathrm{FMR},

   a sharp lower edge just above f_FMR (x_0 = 8 MHz, w_0 = 2 MHz), a roll-off above x_1 = 25 MHz
   (a_2 = 3 dB at x_2 = 35 MHz further), a small transducer ripple (r = 0.3 dB, x_r = 23 MHz),
   floored at ``isolation_db`` (−70 dB) and cut off above f_top. Moving the bias field moves the
   whole band as Kittel says.

2. **Ring modes.** The round-trip phase is :math:`2\pi[f\tau_e + (f - f_\mathrm{FMR})\tau_{sw}]`
   (electrical delay τ_e = 20 ns, spin-wave group delay τ_sw = 180 ns), so the eigenmodes are
   :math:`f_n = (n + f_\mathrm{FMR}\tau_{sw})/\tau` with τ = τ_e + τ_sw = 200 ns: a comb spaced by
   the free spectral range 1/τ = 5 MHz that slides by τ_sw/τ of any shift of f_FMR.

3. **Loop gain, threshold, auto-oscillation.** The controller's loop gain g (dB) is the net
   round-trip gain at the passband maximum, so a mode's small-signal round-trip power gain is
   :math:`G_n = 10^{(g + T(f_n))/10}` and the ring self-oscillates when some G_n > 1: the
   threshold is g_th = −max_n T(f_n) ≈ 0 dB (a mode need not sit on the maximum).

4. **Gain saturation and mode competition.** The amplifier and the spin-wave nonlinearity saturate
   with the power in the loop. Mode n sees :math:`G_n/(1 + S_n/P_\mathrm{sat})`, with
   :math:`S_n = P_n + c\sum_{m\ne n}P_m + c_t P_T` (cross-saturation c = 0.8 between modes,
   c_t = 1 from the injected tones' loop power P_T, P_sat = 1 mW). The steady state of these
   Lotka–Volterra equations has the modes of largest gain as survivors; with k survivors
   :math:`\Sigma_k = \sum_{j\le k}[P_\mathrm{sat}(G_j-1) - c_tP_T]/(1-c+kc)` and
   :math:`P_n = [P_\mathrm{sat}(G_n-1) - c_tP_T - c\Sigma_k]/(1-c)`, k the largest for which all
   are positive. Strong tones thus quench the free-running modes: the ring's nonlinearity.

5. **Injected tones and regeneration.** Tone t (set power P_t, frequency f_t) appears with
   power :math:`P_t\,10^{T(f_t)/10}\,A(f_t)`, where :math:`A = 1/|1 - a e^{i\phi(f)}|^2` is the
   regenerative (Airy) gain of the loop with amplitude round-trip gain
   :math:`a = \min(\sqrt{G(f)/(1+S/P_\mathrm{sat})}, a_\mathrm{max})`. With the amplifier off the
   loop is open (a = 0, A = 1). The tones' and modes' powers are solved together by a few damped
   fixed-point iterations.

6. **Injection pulling and locking (Adler).** An oscillating mode at detuning Δ = f_n − f_t from
   a tone locks to it when |Δ| < Δ_L = (1/2πτ)·sqrt(P_t/P_n) (its line moves onto the tone);
   outside it is pulled to f_t + sign(Δ)·sqrt(Δ² − Δ_L²). Each mode answers to the tone with the
   largest Δ_L/|Δ|.

7. **Intermodulation.** Every pair (i, j) of the strongest lines (tones and the three strongest
   modes) mixes in the third-order nonlinearity into :math:`2f_i - f_j` with power
   :math:`P_i^2 P_j/\mathrm{OIP3}^2` (OIP3 = +5 dBm), filtered by the passband.

8. **Noise.** The analyzer's displayed average noise level is −152 dBm/Hz; with the amplifier on,
   its noise (−146 dBm/Hz at the analyzer) circulates and is shaped by the passband and by the
   Airy gain (amplitude round-trip gain capped at 0.97), so a comb of regenerative noise humps
   grows as the gain approaches threshold. Humps narrower than the RBW are displayed as the RBW
   filter integrates them: with the Poisson-kernel form of the Airy function, the filter damps
   its k-th harmonic by d^k, d = exp(−(2πτσ)²/2), σ the filter's standard deviation.

9. **The analyzer.** Gaussian resolution filter (3 dB width = RBW, noise bandwidth 1.06·RBW);
   at the preset, each of the P display points shows a line's maximum over its bucket of width
   span/(P−1), so a line anywhere in a bucket is displayed at its full power. Measurement
   noise: at the preset the noise part of every point fluctuates as a Gamma(8)/8 variable (video
   filtering, about ±1.5 dB); the other detectors (sample, peak, negative, average: the Rayleigh
   envelope's statistics), the video bandwidth and the input attenuation are :mod:`.detector`'s,
   chosen by the analyzer's settings. Every line's power jitters log-normally (0.05 dB for
   tones, 0.2 dB for modes, as source and oscillator amplitude noise). Sweep time ≈ k·span/RBW²
   with k = 2.5, at least 1 ms.

Simplifications a magnonics reader should know: the group delay is taken as constant across the
band (no MSSW dispersion of the FSR); pulling sidebands, four-magnon instabilities and thermal drift
are not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .detector import PRESET, Display, line_response, noise_fluctuation

GAMMA_HZ_PER_T = 28.0e9
VISIBLE_BELOW_DANL = 1e-3  # lines 30 dB under the analyzer's noise floor change no displayed digit


@dataclass(frozen=True)
class RingParameters:
    """Physical constants of the simulated ring and analyzer (SI units unless named otherwise)."""

    gamma_hz_per_t: float = GAMMA_HZ_PER_T
    mu0_ms_t: float = 0.175
    electrical_delay_s: float = 20e-9
    spin_wave_delay_s: float = 180e-9
    edge_offset_hz: float = 8e6
    edge_width_hz: float = 2e6
    rolloff_start_hz: float = 25e6
    rolloff_scale_hz: float = 35e6
    rolloff_db: float = 3.0
    ripple_db: float = 0.3
    ripple_period_hz: float = 23e6
    isolation_db: float = -70.0
    saturation_power_mw: float = 1.0
    cross_saturation: float = 0.8
    tone_saturation: float = 1.0
    oip3_dbm: float = 5.0
    max_tone_round_trip: float = 0.95
    max_noise_round_trip: float = 0.97
    danl_dbm_per_hz: float = -152.0
    amplifier_noise_dbm_per_hz: float = -146.0
    noise_averages: float = 8.0
    tone_jitter_db: float = 0.05
    mode_jitter_db: float = 0.2
    sweep_time_factor: float = 2.5
    min_sweep_time_s: float = 1e-3
    n_modes: int = 64
    modes_below_fmr_hz: float = 10e6
    oscillating_lines: int = 8
    mixing_modes: int = 3
    settling_iterations: int = 4
    default_field_mt: float = 50.0
    default_loop_gain_db: float = 2.0
    default_center_hz: float = 3.03e9
    default_span_hz: float = 200e6
    default_rbw_hz: float = 1e6
    default_points: int = 401

    @property
    def round_trip_s(self) -> float:
        return self.electrical_delay_s + self.spin_wave_delay_s

    @property
    def free_spectral_range_hz(self) -> float:
        return 1.0 / self.round_trip_s


def fmr_frequency_hz(field_mt, params: RingParameters = RingParameters()):
    """Kittel's in-plane FMR frequency, the bottom of the MSSW band, for a bias field in mT."""
    b = np.asarray(field_mt, dtype=float) * 1e-3
    return params.gamma_hz_per_t * np.sqrt(b * (b + params.mu0_ms_t))


def band_top_hz(field_mt, params: RingParameters = RingParameters()):
    """Top of the MSSW band, γ'(B + μ0 Ms/2), for a bias field in mT."""
    b = np.asarray(field_mt, dtype=float) * 1e-3
    return params.gamma_hz_per_t * (b + params.mu0_ms_t / 2.0)


def transmission_db(f_hz, f_fmr_hz, f_top_hz, params: RingParameters = RingParameters()):
    """Delay-line transmission relative to its maximum (dB), broadcasting f against f_FMR."""
    x = f_hz - f_fmr_hz
    lower_edge = -np.logaddexp(0.0, -(x - params.edge_offset_hz) / params.edge_width_hz) * (10 / np.log(10))
    over = np.maximum(0.0, x - params.rolloff_start_hz) / params.rolloff_scale_hz
    t = lower_edge - params.rolloff_db * over**2
    t = t + params.ripple_db * (np.cos(2 * np.pi * x / params.ripple_period_hz) - 1.0)
    t = np.where(f_hz > f_top_hz, params.isolation_db, t)
    return np.maximum(t, params.isolation_db)


def _db_to_mw(dbm):
    return 10.0 ** (np.asarray(dbm) / 10.0)


def _mw_to_db(mw):
    return 10.0 * np.log10(mw)


class RingModel:
    """The ring and the analyzer's view of it; see the module docstring for the physics.

    ``spectra`` takes a batch of settings and returns displayed traces in dBm. ``noise=False``
    turns off measurement noise (the physics stays), for exact comparisons.
    """

    def __init__(self, params: RingParameters | None = None, seed: int = 0, noise: bool = True):
        self.params = params or RingParameters()
        self.seed = seed
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self._mode_cache: dict = {}
        self._grid_cache: dict = {}

    # ----------------------------------------------------------------- public
    def sweep_time_s(self, span_hz: float, rbw_hz: float) -> float:
        """Auto-coupled sweep time of a swept analyzer: k·span/RBW², at least the minimum."""
        p = self.params
        return max(p.sweep_time_factor * float(span_hz) / float(rbw_hz) ** 2, p.min_sweep_time_s)

    def threshold_gain_db(self, field_mt: float | None = None) -> float:
        """Loop gain (dB) above which the ring self-oscillates at this bias field."""
        field = self.params.default_field_mt if field_mt is None else field_mt
        f_fmr = fmr_frequency_hz(field, self.params)
        modes = self._mode_frequencies(np.atleast_1d(f_fmr))
        t = transmission_db(modes, f_fmr, band_top_hz(field, self.params), self.params)
        return float(-t.max())

    def spectra(self, tone_freq_hz, tone_power_dbm, tone_on, loop_gain_db, field_mt,
                amplifier_on, frequencies_hz, rbw_hz, display: Display | None = None) -> np.ndarray:
        """Displayed traces (B, P) in dBm for B settings of N generators, the ring and the analyzer.

        ``tone_*`` are (B, N) (``tone_on`` bool), ``loop_gain_db``, ``field_mt`` and
        ``amplifier_on`` are (B,), ``frequencies_hz`` is the analyzer's (P,) display axis and
        ``rbw_hz`` its resolution bandwidth. ``display`` is the analyzer's detector, video filter
        and attenuation (:class:`~labpgt.instruments.simulated.detector.Display`; the preset if None).
        """
        tone_f = np.atleast_2d(np.asarray(tone_freq_hz, dtype=float))
        tone_in = np.where(np.atleast_2d(tone_on), _db_to_mw(np.atleast_2d(tone_power_dbm)), 0.0)
        batch = tone_f.shape[0]
        gain_db = np.broadcast_to(np.asarray(loop_gain_db, dtype=float), (batch,))
        field = np.broadcast_to(np.asarray(field_mt, dtype=float), (batch,))
        amp_on = np.broadcast_to(np.asarray(amplifier_on, dtype=bool), (batch,))
        freqs = np.asarray(frequencies_hz, dtype=float)

        state = self._steady_state(tone_f, tone_in, gain_db, field, amp_on)
        line_f, line_p = self._lines(tone_f, state)
        noise_psd = self._noise_psd(freqs, state, amp_on, float(rbw_hz))
        return self._display(freqs, float(rbw_hz), line_f, line_p, noise_psd, display or PRESET)

    # ------------------------------------------------------------ the physics
    def _mode_frequencies(self, f_fmr):
        p = self.params
        tau = p.round_trip_s
        offset = f_fmr * p.spin_wave_delay_s
        n_low = np.ceil((f_fmr - p.modes_below_fmr_hz) * tau - offset)
        n = n_low[:, None] + np.arange(p.n_modes)[None, :]
        return (n + offset[:, None]) / tau

    def _strongest_modes(self, field_mt):
        """Frequencies and transmissions (B, K) of the K = ``oscillating_lines`` ring modes of
        largest transmission, sorted by it, per bias field (cached: they depend on nothing else).

        Survivors of the mode competition are always the modes of largest gain, and the loop gain
        scales every mode alike, so the K best by transmission are the only candidates.
        """
        fields, row = np.unique(field_mt, return_inverse=True)
        tables = [self._mode_table(float(b)) for b in fields]
        freqs = np.stack([t[0] for t in tables])[row]
        trans = np.stack([t[1] for t in tables])[row]
        return freqs, trans

    def _mode_table(self, field_mt: float):
        table = self._mode_cache.get(field_mt)
        if table is None:
            if len(self._mode_cache) > 256:
                self._mode_cache.clear()
            p = self.params
            f_fmr = fmr_frequency_hz(np.array([field_mt]), p)
            freqs = self._mode_frequencies(f_fmr)[0]
            trans = _db_to_mw(transmission_db(freqs, f_fmr[0], band_top_hz(field_mt, p), p))
            order = np.argsort(-trans, kind="stable")[: p.oscillating_lines]
            table = self._mode_cache.setdefault(field_mt, (freqs[order], trans[order]))
        return table

    def _round_trip_phase(self, f, f_fmr):
        p = self.params
        return 2 * np.pi * (f * p.round_trip_s - f_fmr * p.spin_wave_delay_s)

    def _steady_state(self, tone_f, tone_in, gain_db, field, amp_on):
        p = self.params
        f_fmr = fmr_frequency_hz(field, p)
        f_top = band_top_hz(field, p)
        col = lambda v: v[:, None]  # noqa: E731 - broadcast a (B,) column against (B, X)
        loop_gain = np.where(amp_on, 10 ** (gain_db / 10), 0.0)

        tone_t = _db_to_mw(transmission_db(tone_f, col(f_fmr), col(f_top), p))
        tone_g = col(loop_gain) * tone_t
        mode_f, mode_t = self._strongest_modes(field)
        mode_g = col(loop_gain) * mode_t
        tone_cos = np.cos(self._round_trip_phase(tone_f, col(f_fmr)))

        modes = np.zeros_like(mode_g)
        tone_out = tone_in * tone_t
        for _ in range(p.settling_iterations):
            tone_loop = tone_out.sum(axis=1)
            modes = 0.5 * modes + 0.5 * self._competition(mode_g, tone_loop)
            saturating = modes.sum(axis=1) + p.tone_saturation * tone_loop
            a = np.sqrt(tone_g / (1.0 + col(saturating) / p.saturation_power_mw))
            a = np.minimum(a, p.max_tone_round_trip)
            tone_out = 0.5 * tone_out + 0.5 * tone_in * tone_t / (1.0 - 2.0 * a * tone_cos + a**2)
        modes = self._competition(mode_g, tone_out.sum(axis=1))
        saturating = modes.sum(axis=1) + p.tone_saturation * tone_out.sum(axis=1)
        return {"f_fmr": f_fmr, "f_top": f_top, "loop_gain": loop_gain, "saturating": saturating,
                "tone_out": tone_out, "mode_f": mode_f, "mode_p": modes}

    def _competition(self, gain_sorted, tone_loop_mw):
        """Steady-state powers (mW) of modes sorted by gain, uniform Lotka-Volterra; docstring (4).

        Only the ``oscillating_lines`` modes of largest gain are kept: with cross-saturation c the
        k-th survivor needs G_k - 1 > c·Σ_k/P_sat, which the weaker modes never reach.
        """
        p = self.params
        c = p.cross_saturation
        drive = p.saturation_power_mw * (gain_sorted - 1.0) - p.tone_saturation * tone_loop_mw[:, None]
        k = np.arange(1, gain_sorted.shape[1] + 1)[None, :]
        total_k = np.cumsum(drive, axis=1) / (1.0 - c + k * c)
        weakest = (drive - c * total_k) / (1.0 - c)
        survivors = (weakest > 0).sum(axis=1)
        total = total_k[np.arange(total_k.shape[0]), np.maximum(survivors - 1, 0)][:, None]
        power = np.where(k <= survivors[:, None], (drive - c * total) / (1.0 - c), 0.0)
        return np.maximum(power, 0.0)

    def _lines(self, tone_f, state):
        """Spectral lines (frequency, mW): tones, pulled or locked modes, intermodulation products."""
        p = self.params
        mode_p = state["mode_p"]
        mode_f = self._pulled(state["mode_f"], mode_p, tone_f, state["tone_out"])
        tone_p = state["tone_out"]
        if self.noise:
            tone_p = tone_p * self._jitter(tone_p.shape, p.tone_jitter_db)
            mode_p = mode_p * self._jitter(mode_p.shape, p.mode_jitter_db)
        mix_f = np.concatenate([tone_f, mode_f[:, : p.mixing_modes]], axis=1)
        mix_p = np.concatenate([tone_p, mode_p[:, : p.mixing_modes]], axis=1)
        im_f, im_p = self._intermodulation(mix_f, mix_p, state)
        return (np.concatenate([tone_f, mode_f, im_f], axis=1),
                np.concatenate([tone_p, mode_p, im_p], axis=1))

    def _pulled(self, mode_f, mode_p, tone_f, tone_p):
        """Adler pulling and locking of each oscillating mode by its most effective tone."""
        detuning = mode_f[:, :, None] - tone_f[:, None, :]
        ratio = np.sqrt(tone_p[:, None, :] / np.maximum(mode_p[:, :, None], 1e-30))
        lock_range = ratio / (2 * np.pi * self.params.round_trip_s)
        strength = lock_range / np.maximum(np.abs(detuning), 1e-3)
        best = np.argmax(strength, axis=2)
        rows, modes = np.arange(best.shape[0])[:, None], np.arange(best.shape[1])[None, :]
        d = detuning[rows, modes, best]
        lock = lock_range[rows, modes, best]
        f_tone = tone_f[rows, best]
        beat = np.sqrt(np.maximum(d**2 - lock**2, 0.0))
        return np.where(tone_f.shape[1] == 0, mode_f, f_tone + np.sign(d) * beat)

    def _intermodulation(self, f, power, state):
        p = self.params
        i, j = np.nonzero(~np.eye(f.shape[1], dtype=bool))
        im_f = 2 * f[:, i] - f[:, j]
        oip3 = _db_to_mw(p.oip3_dbm)
        col = lambda v: v[:, None]  # noqa: E731
        t = _db_to_mw(transmission_db(im_f, col(state["f_fmr"]), col(state["f_top"]), p))
        return im_f, power[:, i] ** 2 * power[:, j] / oip3**2 * t

    def _resolved_airy(self, a, cos_phase, rbw):
        """The loop's Airy noise gain as seen through the RBW filter (power preserving).

        Airy(φ) = P_a(φ)/(1 - a²) with the Poisson kernel P_r = 1 + 2Σ r^k cos kφ; the RBW filter
        damps harmonic k by d^k, d = exp(-(2πτσ)²/2) (σ the filter's standard deviation), so the
        displayed gain is P_(a·d)(φ)/(1 - a²): humps narrower than the RBW are spread, not lost.
        """
        sigma = rbw / (2.0 * np.sqrt(2.0 * np.log(2.0)))
        r = a * np.exp(-0.5 * (2 * np.pi * self.params.round_trip_s * sigma) ** 2)
        return (1.0 - r**2) / ((1.0 - a**2) * (1.0 - 2.0 * r * cos_phase + r**2))

    def _noise_psd(self, freqs, state, amp_on, rbw):
        """Noise power spectral density (mW/Hz) at the analyzer: DANL plus the ring's amplified noise."""
        p = self.params
        col = lambda v: v[:, None]  # noqa: E731
        transmission, cos_phase = self._grid_terms(freqs, state["f_fmr"], state["f_top"])
        g = transmission * col(state["loop_gain"] / (1.0 + state["saturating"] / p.saturation_power_mw))
        a = np.minimum(np.sqrt(g), p.max_noise_round_trip)
        ring = _db_to_mw(p.amplifier_noise_dbm_per_hz) * transmission * self._resolved_airy(a, cos_phase, rbw)
        return _db_to_mw(p.danl_dbm_per_hz) + np.where(col(amp_on), ring, 0.0)

    def _grid_terms(self, freqs, f_fmr, f_top):
        """Linear transmission and cos(round-trip phase) on the display axis, per field (cached)."""
        fields, row = np.unique(f_fmr, return_inverse=True)
        tops = f_top[np.unique(row, return_index=True)[1]]
        axis_key = (float(freqs[0]), float(freqs[-1]), freqs.size)
        terms = [self._grid_table(axis_key, freqs, float(f), float(t)) for f, t in zip(fields, tops)]
        return np.stack([t[0] for t in terms])[row], np.stack([t[1] for t in terms])[row]

    def _grid_table(self, axis_key, freqs, f_fmr, f_top):
        key = (axis_key, f_fmr)
        table = self._grid_cache.get(key)
        if table is None:
            if len(self._grid_cache) > 256:
                self._grid_cache.clear()
            transmission = _db_to_mw(transmission_db(freqs, f_fmr, f_top, self.params))
            cos_phase = np.cos(self._round_trip_phase(freqs, f_fmr))
            table = self._grid_cache.setdefault(key, (transmission, cos_phase))
        return table

    # ------------------------------------------------------------ the analyzer
    def _display(self, freqs, rbw, line_f, line_p, noise_psd, display: Display = PRESET):
        """Detected noise plus lines, in dBm; the detector statistics are :mod:`.detector`'s."""
        p = self.params
        if display.danl_scale != 1.0:
            noise_psd = noise_psd + _db_to_mw(p.danl_dbm_per_hz) * (display.danl_scale - 1.0)
        noise = noise_psd * 1.06 * rbw
        if self.noise:
            noise = noise * noise_fluctuation(noise.shape, display, p.noise_averages, self.rng)
        visible = VISIBLE_BELOW_DANL * _db_to_mw(p.danl_dbm_per_hz) * rbw
        return _mw_to_db(noise + _render_lines(freqs, rbw, line_f, line_p, visible, display.detector))

    def _jitter(self, shape, sigma_db):
        return 10 ** (self.rng.standard_normal(shape) * sigma_db / 10)


def _render_lines(freqs, rbw, line_f, line_p, visible_mw, detector="POSitive"):
    """Detected Gaussian-RBW response of all lines on the display axis, (B, P) in mW (peak-detected
    by default; see :func:`~labpgt.instruments.simulated.detector.line_response`).

    Each line only touches the display points within a few RBW of it, so the lines that can show
    (above ``visible_mw``) are scattered into the trace with a kernel of 2K+1 points rather than
    evaluated on the whole axis.
    """
    batch, n_points = line_f.shape[0], freqs.size
    if n_points < 2:
        return np.zeros((batch, n_points))
    start, step = freqs[0], (freqs[-1] - freqs[0]) / (n_points - 1)
    shows = line_p > visible_mw
    row = np.broadcast_to(np.arange(batch)[:, None], line_f.shape)[shows]
    f, power = line_f[shows], line_p[shows]
    reach = int(min(n_points, np.ceil(3.0 * rbw / step) + 1))
    idx = np.rint((f - start) / step).astype(np.int64)[:, None] + np.arange(-reach, reach + 1)[None, :]
    distance = np.abs(start + idx * step - f[:, None])
    weight = power[:, None] * line_response(distance, rbw, step, detector)
    weight *= (idx >= 0) & (idx < n_points)
    flat = np.clip(idx, 0, n_points - 1) + (row * n_points)[:, None]
    return np.bincount(flat.ravel(), weights=weight.ravel(), minlength=batch * n_points).reshape(batch, n_points)
