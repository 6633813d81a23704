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

A real ring is not that kind. Sections 10-16 are its unkind behaviours, each switched by a field
of :class:`Behaviours` (``Behaviours.ideal()`` switches them all off and leaves the kind ring of
1-9, which the oldest tests describe).

10. **Three-magnon splitting** (``three_magnon``). A spin wave at f may split into two at f/2 when
    f/2 lies in the spin-wave band, whose bottom for an in-plane film is about γ'B: allowed for
    f ≥ 2γ'B, which covers the whole MSSW band for B ≤ μ0Ms/3 = 58.3 mT (f_FMR = 2γ'B there) and
    so at the default 50 mT (Ordóñez-Romero et al., Phys. Rev. B 79, 144428 (2009); Chernyshev,
    arXiv:1208.0831). Where allowed (a tanh step of width 10 MHz at f/2 = γ'B) it is a low-threshold,
    power-limiting loss: mode n saturates at :math:`1/P_{\mathrm{sat},n} = 1/P_\mathrm{sat} +
    a_n/P_{3}(f_n)` with :math:`P_3(f) = 0.3\,\mathrm{mW}\cdot\exp((f - f_\mathrm{FMR} - 25\,\mathrm{MHz})/20\,\mathrm{MHz})`.
    The threshold's rise across the band is phenomenological (the density and coupling of the
    f/2 pairs change across it); it is what makes the ring's preferred mode depend on its power
    (12). Above ~60 mT the loss is gone.

11. **Nonlinear frequency shift** (``nonlinear_shift``). The MSSW frequency at a given wavenumber
    falls with power (Priye & Tsutsumi, IEICE Trans. Electron. E77-C, 1740 (1994)); the ring's
    modes move by :math:`N(P_n + P_T)` with N = −3 MHz/mW (referred to the analyzer's powers), from
    their own power (self) and the tones' in the loop. The passband (set by the transducers) stays;
    the few-MHz shift at the saturated power is of the order observed in YIG rings. Solved
    self-consistently with the saturation (6 damped iterations).

12. **Strong competition and memory** (``memory``, ``mode_partition``). Cross-saturation c = 1.5 > 1:
    only single-mode states are stable, mode n being stable while every other mode's drive
    :math:`D_m = P_{\mathrm{sat},m}(G_m - 1) - c_tP_T` stays below c·D_n. The ring keeps the mode
    it oscillated in at the previous query as long as that mode is stable, otherwise the mode of
    largest drive takes over (and starts the ring from rest): multistability, hysteresis (a loop-gain
    sweep up and down switches modes at different gains, since D_m/D_n changes with the gain through
    10), mode hopping. Mode-partition noise: each candidate's gain fluctuates log-normally, 0.15 dB
    per query (seeded), so near a tie the ring hops. The oscillating mode and its power are
    carried from one query to the next (and checkpointed).

13. **Injection locking** (``locking``). Adler's half-width with the injection coupler's 10 dB more
    coupling than the output's, :math:`\Delta_L = \sqrt{10P_t/P_n}/(2\pi\tau)`, widened on one side
    by the non-isochronicity ν = 3 as a laser's by its linewidth-enhancement factor (Mogensen,
    Olesen & Jacobsen, IEEE J. Quantum Electron. 21, 784 (1985); the spin-wave analogue in Slavin &
    Tiberkevich, IEEE Trans. Magn. 45, 1875 (2009)): with N < 0 a mode locks to tones from
    Δ_L above it to :math:`\Delta_L\sqrt{1+\nu^2}` below it; the tone's own power in the loop also
    moves the mode (11), which skews the range further. Measured through SCPI at the default 2 dB
    loop gain and 50 mT (tests/test_ring_realism.py): a −10 dBm tone locks the mode from 5.9 MHz
    below it to 1.7 MHz above (7.6 MHz in all; the kind ring's Adler range: ±0.55 MHz). MHz-wide
    and asymmetric, as measured on spin-wave active ring oscillators (over 11 MHz at −10 dBm,
    asymmetric: Mukhopadhyay, Syvorotka & Prabhakar, arXiv:2512.08796). A locked mode and its tone are one line of power max(P_n, P_t), not two.

14. **Pulling sidebands and self-modulation** (``sidebands``). Just outside the locking range the
    Adler phase slips at the beat :math:`\Omega = \sqrt{d^2 - \Delta^2}` (d the detuning, Δ the
    range on its side) and the oscillator's spectrum is, with r = Δ/(|d| + Ω), a line of power
    :math:`P_n r^2` on the tone and lines at :math:`f_t + \mathrm{sign}(d)\,k\Omega` of power
    :math:`P_n(1-r^2)^2r^{2(k-1)}`, k = 1…3 (the exact Fourier series of e^{iψ} for Adler's
    equation; the classic pulled-oscillator spectrum). A mode driven more than 3 dB above its
    threshold self-modulates: a comb at ±1, ±2 free spectral ranges around it (soliton-train-like,
    Kalinikos, Kovshikov & Patton, Phys. Rev. Lett. 80, 4301 (1998)), modulation depth
    m = min((excess − 3 dB)/6 dB, 0.6), sidebands (m/2)² and (m/2)⁴ of the carrier, power conserved.

15. **Time.** The simulated bench keeps a virtual clock (:class:`Laboratory`): each sweep advances
    it by the settling its instruments needed since the last sweep — the slowest of a changed
    generator (10 ms: the E8257D's CW frequency switching without the fast-switching option is
    specified as under 10 ms), a changed field (50 ms, a magnet supply), a changed loop gain or
    amplifier (1 ms) — plus the analyzer's sweep time (9), which is also at least 5 µs per display
    point (2 ms at 401 points; the clock uses what ``:SWEep:TIME?`` reports, manual or auto). A
    training query is thus about 12 ms; a 192,000-query run is about 40 minutes of bench time,
    before any instrument I/O.

16. **Drift** (``drift``). On that clock the film's temperature and the bias field wander as in a
    lab without temperature control: each an Ornstein-Uhlenbeck walk (temperature σ = 1 K with a
    2 h correlation time; field σ = 0.02 mT, 1 h) plus Poisson-timed steps (temperature 0.5 per hour
    of σ 0.3 K; field 0.2 per hour of σ 0.03 mT), from a seeded RNG of their own. The temperature
    sets Ms: :math:`M_s(T) = M_s(1 - 0.002\,\mathrm{K}^{-1}\,\Delta T)` (YIG's Ms falls by about
    0.2 %/K near room temperature, 4πMs ≈ 1750 G at 295 K, Curie point 560 K; see the Ms(T) data
    compiled in arXiv:2507.18209), which at 50 mT moves f_FMR and the modes by about −2.3 MHz/K.
    The ring controller reports the temperature (``:TEMPerature?``, °C, room 22 °C).

Simplifications a magnonics reader should know: the group delay is taken as constant across the
band (no MSSW dispersion of the FSR); the nonlinear shift moves the modes, not the passband;
four-magnon instabilities, the tones' own nonlinear shift and thermal effects of the circulating
power are not modelled; the analyzer's detector statistics (9) are unchanged by 10-16.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

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
    nonlinear_iterations: int = 6
    default_field_mt: float = 50.0
    default_loop_gain_db: float = 2.0
    default_center_hz: float = 3.03e9
    default_span_hz: float = 200e6
    default_rbw_hz: float = 1e6
    default_points: int = 401
    # -- the real ring's unkind behaviours (docstring 10-16); see Behaviours for the switches
    three_magnon_saturation_mw: float = 0.3
    three_magnon_edge_hz: float = 10e6
    three_magnon_slope_hz: float = 20e6
    nonlinear_shift_hz_per_mw: float = -3e6
    strong_cross_saturation: float = 1.5
    injection_coupling_db: float = 10.0
    nonisochronicity: float = 3.0
    pulling_sidebands: int = 3
    self_modulation_onset_db: float = 3.0
    self_modulation_span_db: float = 6.0
    self_modulation_max_depth: float = 0.6
    mode_partition_db: float = 0.15
    min_point_time_s: float = 5e-6
    generator_settling_s: float = 10e-3
    field_settling_s: float = 50e-3
    gain_settling_s: float = 1e-3
    room_temperature_c: float = 22.0
    ms_temperature_coefficient_per_k: float = -2.0e-3
    temperature_sigma_k: float = 1.0
    temperature_correlation_s: float = 7200.0
    temperature_steps_per_hour: float = 0.5
    temperature_step_k: float = 0.3
    field_sigma_mt: float = 0.02
    field_correlation_s: float = 3600.0
    field_steps_per_hour: float = 0.2
    field_step_mt: float = 0.03

    @property
    def round_trip_s(self) -> float:
        return self.electrical_delay_s + self.spin_wave_delay_s

    @property
    def free_spectral_range_hz(self) -> float:
        return 1.0 / self.round_trip_s


def fmr_frequency_hz(field_mt, params: RingParameters = RingParameters(), ms_t=None):
    """Kittel's in-plane FMR frequency, the bottom of the MSSW band, for a bias field in mT
    (``ms_t``: μ0·Ms in T, the parameters' value if ``None``)."""
    b = np.asarray(field_mt, dtype=float) * 1e-3
    ms = params.mu0_ms_t if ms_t is None else np.asarray(ms_t, dtype=float)
    return params.gamma_hz_per_t * np.sqrt(b * (b + ms))


def band_top_hz(field_mt, params: RingParameters = RingParameters(), ms_t=None):
    """Top of the MSSW band, γ'(B + μ0 Ms/2), for a bias field in mT."""
    b = np.asarray(field_mt, dtype=float) * 1e-3
    ms = params.mu0_ms_t if ms_t is None else np.asarray(ms_t, dtype=float)
    return params.gamma_hz_per_t * (b + ms / 2.0)


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


@dataclass(frozen=True)
class Behaviours:
    """Which of a real ring's unkind behaviours the model has (docstring 10-16); all on by default.

    :meth:`ideal` switches every one off: the kind ring of docstring 1-9 (today's tests rely on it).
    """

    three_magnon: bool = True      # 10. splitting loss where allowed
    nonlinear_shift: bool = True   # 11. the modes move with the circulating power
    memory: bool = True            # 12. strong competition, the oscillating mode carried between queries
    mode_partition: bool = True    # 12. seeded gain noise of each mode (hops near a tie)
    locking: bool = True           # 13. asymmetric, MHz-wide locking without double-counted power
    sidebands: bool = True         # 14. pulling sidebands and self-modulation
    drift: bool = True             # 16. temperature (Ms) and field drift on the bench's clock

    @classmethod
    def ideal(cls) -> "Behaviours":
        return cls(**{name: False for name in cls.names()})

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


class Laboratory:
    """The bench's virtual clock and its slow drifts (docstring 15-16), seeded apart from the noise.

    ``advance(seconds)`` moves the clock; with drift on, the temperature offset (K) and the bias
    field offset (mT) follow an Ornstein-Uhlenbeck walk (exact update) plus Poisson-timed steps.
    """

    def __init__(self, params: RingParameters, seed: int = 0, drifting: bool = True):
        self.params = params
        self.drifting = drifting
        self.rng = np.random.default_rng([int(seed), 0x1AB])
        self.time_s = 0.0
        self.temperature_offset_k = 0.0
        self.field_offset_mt = 0.0

    @property
    def temperature_c(self) -> float:
        return self.params.room_temperature_c + self.temperature_offset_k

    def ms_t(self) -> float:
        """μ0·Ms at the present temperature (linear in the offset from room temperature)."""
        p = self.params
        return p.mu0_ms_t * (1.0 + p.ms_temperature_coefficient_per_k * self.temperature_offset_k)

    def advance(self, seconds: float) -> None:
        seconds = max(float(seconds), 0.0)
        self.time_s += seconds
        if not self.drifting or seconds == 0.0:
            return
        p = self.params
        self.temperature_offset_k = self._walk(self.temperature_offset_k, seconds, p.temperature_sigma_k,
                                               p.temperature_correlation_s, p.temperature_steps_per_hour,
                                               p.temperature_step_k)
        self.field_offset_mt = self._walk(self.field_offset_mt, seconds, p.field_sigma_mt, p.field_correlation_s,
                                          p.field_steps_per_hour, p.field_step_mt)

    def _walk(self, value, seconds, sigma, correlation_s, steps_per_hour, step):
        keep = np.exp(-seconds / correlation_s)
        value = value * keep + sigma * np.sqrt(1.0 - keep**2) * self.rng.standard_normal()
        jumps = self.rng.poisson(steps_per_hour * seconds / 3600.0)
        return float(value + step * self.rng.standard_normal(jumps).sum())

    def get_state(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "time_s": self.time_s,
                "temperature_offset_k": self.temperature_offset_k, "field_offset_mt": self.field_offset_mt}

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.time_s = float(state["time_s"])
        self.temperature_offset_k = float(state["temperature_offset_k"])
        self.field_offset_mt = float(state["field_offset_mt"])


class RingModel:
    """The ring and the analyzer's view of it; see the module docstring for the physics.

    ``spectra`` takes a batch of settings and returns displayed traces in dBm. ``noise=False``
    turns off the random parts (measurement noise and mode-partition noise; the physics stays),
    for exact comparisons. ``behaviours`` picks the real ring's unkind behaviours (all by default,
    :meth:`Behaviours.ideal` for none). With ``memory`` the ring's oscillating mode and loop power
    carry from one call to the next: the rows of a batch all start from the carried state (B
    rings in the same past), and the last row's state is carried on. ``lab`` is the bench's clock
    and drift (the simulated instruments advance it; ``spectra`` itself takes no time).
    """

    def __init__(self, params: RingParameters | None = None, seed: int = 0, noise: bool = True,
                 behaviours: Behaviours | None = None):
        self.params = params or RingParameters()
        self.behaviours = behaviours if behaviours is not None else Behaviours()
        self.seed = seed
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self.lab = Laboratory(self.params, seed, drifting=self.behaviours.drift)
        self.oscillating_mode = -1     # absolute mode number n of the carried oscillation, -1: none
        self.mode_power_mw = 0.0       # its power (sets its nonlinear shift at the next query's start)
        self._mode_cache: dict = {}
        self._grid_cache: dict = {}

    # ----------------------------------------------------------------- state
    def get_state(self) -> dict:
        """Everything random or remembered, as JSON (noise RNG, clock and drift, oscillating state)."""
        return {"rng": self.rng.bit_generator.state, "lab": self.lab.get_state(),
                "oscillating_mode": int(self.oscillating_mode), "mode_power_mw": float(self.mode_power_mw)}

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.lab.set_state(state["lab"])
        self.oscillating_mode = int(state["oscillating_mode"])
        self.mode_power_mw = float(state["mode_power_mw"])

    # ----------------------------------------------------------------- public
    def sweep_time_s(self, span_hz: float, rbw_hz: float, points: int | None = None) -> float:
        """Auto-coupled sweep time of a swept analyzer: k·span/RBW², at least the minimum and, given
        the display points, at least their minimum dwell each."""
        p = self.params
        floor = p.min_sweep_time_s if points is None else max(p.min_sweep_time_s, p.min_point_time_s * int(points))
        return max(p.sweep_time_factor * float(span_hz) / float(rbw_hz) ** 2, floor)

    def threshold_gain_db(self, field_mt: float | None = None) -> float:
        """Loop gain (dB) above which the ring self-oscillates at this bias field."""
        field = self.params.default_field_mt if field_mt is None else field_mt
        f_fmr = fmr_frequency_hz(field, self.params)
        modes = self._mode_frequencies(np.atleast_1d(f_fmr))
        t = transmission_db(modes, f_fmr, band_top_hz(field, self.params), self.params)
        return float(-t.max())

    def spectra(self, tone_freq_hz, tone_power_dbm, tone_on, loop_gain_db, field_mt,
                amplifier_on, frequencies_hz, rbw_hz, display: Display | None = None, ms_t=None) -> np.ndarray:
        """Displayed traces (B, P) in dBm for B settings of N generators, the ring and the analyzer.

        ``tone_*`` are (B, N) (``tone_on`` bool), ``loop_gain_db``, ``field_mt`` and
        ``amplifier_on`` are (B,), ``frequencies_hz`` is the analyzer's (P,) display axis and
        ``rbw_hz`` its resolution bandwidth. ``display`` is the analyzer's detector, video filter
        and attenuation (:class:`~labpgt.instruments.simulated.detector.Display`; the preset if None).
        ``field_mt`` is the field the film sees and ``ms_t`` (scalar or (B,), μ0·Ms in T) its
        magnetisation: the simulated bench adds the drifts.
        """
        tone_f = np.atleast_2d(np.asarray(tone_freq_hz, dtype=float))
        tone_in = np.where(np.atleast_2d(tone_on), _db_to_mw(np.atleast_2d(tone_power_dbm)), 0.0)
        batch = tone_f.shape[0]
        gain_db = np.broadcast_to(np.asarray(loop_gain_db, dtype=float), (batch,))
        field = np.broadcast_to(np.asarray(field_mt, dtype=float), (batch,))
        ms = np.broadcast_to(np.asarray(self.params.mu0_ms_t if ms_t is None else ms_t, dtype=float), (batch,))
        amp_on = np.broadcast_to(np.asarray(amplifier_on, dtype=bool), (batch,))
        freqs = np.asarray(frequencies_hz, dtype=float)

        state = self._steady_state(tone_f, tone_in, gain_db, field, ms, amp_on)
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

    def _strongest_modes(self, field_mt, ms_t):
        """Numbers, frequencies and transmissions (B, K) of the K = ``oscillating_lines`` ring modes
        of largest transmission, sorted by it, per (field, Ms) (cached: they depend on nothing else).

        Survivors of the mode competition are always among the modes of largest gain, and the loop
        gain scales every mode alike, so the K best by transmission are the only candidates.
        """
        if field_mt.size == 1:                       # one query: no grouping to do
            return tuple(t[None, :] for t in self._mode_table(float(field_mt[0]), float(ms_t[0])))
        keys, row = np.unique(np.stack([field_mt, ms_t], axis=1), axis=0, return_inverse=True)
        tables = [self._mode_table(float(b), float(m)) for b, m in keys]
        row = row.reshape(-1)
        return tuple(np.stack([t[i] for t in tables])[row] for i in range(3))

    def _mode_table(self, field_mt: float, ms_t: float):
        key = (field_mt, ms_t)
        table = self._mode_cache.get(key)
        if table is None:
            if len(self._mode_cache) > 256:
                self._mode_cache.clear()
            p = self.params
            f_fmr = fmr_frequency_hz(np.array([field_mt]), p, ms_t)
            freqs = self._mode_frequencies(f_fmr)[0]
            numbers = np.rint(freqs * p.round_trip_s - f_fmr[0] * p.spin_wave_delay_s)
            trans = _db_to_mw(transmission_db(freqs, f_fmr[0], band_top_hz(field_mt, p, ms_t), p))
            order = np.argsort(-trans, kind="stable")[: p.oscillating_lines]
            table = self._mode_cache.setdefault(key, (numbers[order], freqs[order], trans[order]))
        return table

    def _round_trip_phase(self, f, f_fmr):
        p = self.params
        return 2 * np.pi * (f * p.round_trip_s - f_fmr * p.spin_wave_delay_s)

    def _saturation_mw(self, field, f_fmr, mode_f):
        """Saturation power (B, K) of each candidate mode: the amplifier's, and three-magnon
        splitting where it is allowed, its threshold rising across the band (10)."""
        p = self.params
        if not self.behaviours.three_magnon:
            return np.full(mode_f.shape, p.saturation_power_mw)
        col = field[:, None] * 1e-3
        allowed = 0.5 * (1.0 + np.tanh((mode_f / 2 - p.gamma_hz_per_t * col) / p.three_magnon_edge_hz))
        above = (mode_f - f_fmr[:, None] - p.rolloff_start_hz) / p.three_magnon_slope_hz
        splitting = p.three_magnon_saturation_mw * np.exp(np.clip(above, -20.0, 20.0))
        return 1.0 / (1.0 / p.saturation_power_mw + allowed / splitting)

    def _steady_state(self, tone_f, tone_in, gain_db, field, ms, amp_on):
        p, on = self.params, self.behaviours
        f_fmr = fmr_frequency_hz(field, p, ms)
        f_top = band_top_hz(field, p, ms)
        col = lambda v: v[:, None]  # noqa: E731 - broadcast a (B,) column against (B, X)
        loop_gain = np.where(amp_on, 10 ** (gain_db / 10), 0.0)
        mode_n, mode_f0, _ = self._strongest_modes(field, ms)
        saturation = self._saturation_mw(field, f_fmr, mode_f0)
        # the tones and the noise see the loop's saturation where the ring oscillates: its best mode's
        loop_saturation = saturation[:, 0]
        prior = mode_n == self.oscillating_mode if on.memory else None
        partition = self._partition_noise(mode_n.shape)
        shift_per_mw = p.nonlinear_shift_hz_per_mw if on.nonlinear_shift else 0.0
        iterations = p.nonlinear_iterations if on.nonlinear_shift else p.settling_iterations

        modes = np.where(prior, self.mode_power_mw, 0.0) if on.memory else np.zeros(mode_n.shape)
        tone_t = _db_to_mw(transmission_db(tone_f, col(f_fmr), col(f_top), p))
        tone_g = col(loop_gain) * tone_t
        tone_cos = np.cos(self._round_trip_phase(tone_f, col(f_fmr)))
        tone_out = tone_in * tone_t
        mode_f = mode_f0
        for _ in range(iterations):
            tone_loop = tone_out.sum(axis=1)
            if shift_per_mw:      # (11): each mode moves with its own power and the tones' (not the band)
                mode_f = mode_f0 + shift_per_mw * (modes + col(tone_loop))
            mode_g = col(loop_gain) * _db_to_mw(transmission_db(mode_f, col(f_fmr), col(f_top), p)) * partition
            modes = 0.5 * modes + 0.5 * self._competition(mode_g, tone_loop, saturation, prior)
            saturating = modes.sum(axis=1) + p.tone_saturation * tone_loop
            a = np.sqrt(tone_g / (1.0 + col(saturating / loop_saturation)))
            a = np.minimum(a, p.max_tone_round_trip)
            tone_out = 0.5 * tone_out + 0.5 * tone_in * tone_t / (1.0 - 2.0 * a * tone_cos + a**2)
        modes = self._competition(mode_g, tone_out.sum(axis=1), saturation, prior)
        saturating = modes.sum(axis=1) + p.tone_saturation * tone_out.sum(axis=1)
        if on.memory:
            winner = np.argmax(modes[-1])
            self.oscillating_mode = int(mode_n[-1, winner]) if modes[-1, winner] > 0 else -1
            self.mode_power_mw = float(modes[-1, winner])
        strongest = np.argmax(modes, axis=1)[:, None]
        comb_shift = np.take_along_axis(mode_f - mode_f0, strongest, axis=1)[:, 0]
        return {"f_fmr": f_fmr, "f_top": f_top, "loop_gain": loop_gain, "saturating": saturating,
                "comb_shift_hz": comb_shift,
                "saturation_mw": loop_saturation, "tone_out": tone_out, "mode_f": mode_f, "mode_p": modes,
                "mode_gain": mode_g}

    def _partition_noise(self, shape):
        """Each candidate mode's gain factor for this query: log-normal mode-partition noise (12)."""
        if not (self.noise and self.behaviours.mode_partition):
            return 1.0
        return 10 ** (self.rng.standard_normal(shape) * self.params.mode_partition_db / 10)

    def _competition(self, gain, tone_loop_mw, saturation_mw, prior):
        """Steady-state mode powers (mW): weak competition's closed form (4), or strong
        competition's single surviving mode chosen by the ring's history (12) when ``prior`` (the
        candidate that oscillated before, (B, K) bool) is given."""
        drive = saturation_mw * (gain - 1.0) - self.params.tone_saturation * tone_loop_mw[:, None]
        if prior is None:
            return self._weak_competition(drive)
        c = self.params.strong_cross_saturation
        rows = np.arange(drive.shape[0])
        has_prior = prior.any(axis=1)
        held = np.argmax(prior, axis=1)
        held_drive = drive[rows, held]
        invaders = np.where(prior, -np.inf, drive).max(axis=1)
        stays = has_prior & (held_drive > 0) & (invaders < c * held_drive)
        winner = np.where(stays, held, np.argmax(drive, axis=1))
        power = np.zeros_like(drive)
        power[rows, winner] = np.maximum(drive[rows, winner], 0.0)
        return power

    def _weak_competition(self, drive):
        """Uniform Lotka-Volterra with cross-saturation c < 1, docstring (4), for modes sorted by gain.

        Only the ``oscillating_lines`` modes of largest gain are kept: with cross-saturation c the
        k-th survivor needs G_k - 1 > c·Σ_k/P_sat, which the weaker modes never reach.
        """
        c = self.params.cross_saturation
        k = np.arange(1, drive.shape[1] + 1)[None, :]
        total_k = np.cumsum(drive, axis=1) / (1.0 - c + k * c)
        weakest = (drive - c * total_k) / (1.0 - c)
        survivors = (weakest > 0).sum(axis=1)
        total = total_k[np.arange(total_k.shape[0]), np.maximum(survivors - 1, 0)][:, None]
        power = np.where(k <= survivors[:, None], (drive - c * total) / (1.0 - c), 0.0)
        return np.maximum(power, 0.0)

    def _lines(self, tone_f, state):
        """Spectral lines (frequency, mW): tones, pulled or locked modes and their sidebands,
        self-modulation sidebands, intermodulation products."""
        p = self.params
        mode_p, tone_p = state["mode_p"], state["tone_out"]
        if self.behaviours.locking:
            pulled_f, pulled_p, tone_p = self._injected(state["mode_f"], mode_p, tone_f, tone_p)
        else:
            pulled_f, pulled_p = self._pulled(state["mode_f"], mode_p, tone_f, tone_p)[:, :, None], mode_p[:, :, None]
        if self.behaviours.sidebands:
            pulled_f, pulled_p = self._self_modulated(pulled_f, pulled_p, state["mode_gain"])
        mode_f = pulled_f.reshape(pulled_f.shape[0], -1)
        mode_p = pulled_p.reshape(pulled_p.shape[0], -1)
        if self.noise:
            tone_p = tone_p * self._jitter(tone_p.shape, p.tone_jitter_db)
            mode_p = mode_p * self._jitter(mode_p.shape, p.mode_jitter_db)
        strongest = np.argsort(-mode_p, axis=1, kind="stable")[:, : p.mixing_modes]
        mix_f = np.concatenate([tone_f, np.take_along_axis(mode_f, strongest, axis=1)], axis=1)
        mix_p = np.concatenate([tone_p, np.take_along_axis(mode_p, strongest, axis=1)], axis=1)
        im_f, im_p = self._intermodulation(mix_f, mix_p, state)
        return (np.concatenate([tone_f, mode_f, im_f], axis=1),
                np.concatenate([tone_p, mode_p, im_p], axis=1))

    def _pulled(self, mode_f, mode_p, tone_f, tone_p):
        """Adler pulling and locking of each oscillating mode by its most effective tone (6)."""
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

    def _injected(self, mode_f, mode_p, tone_f, tone_p):
        """Asymmetric locking and pulling, with sidebands if they are on (13, 14): lines (B, K, S) of each mode, and the
        tones' powers with a locked mode's share taken out (the locked line is one line, not two)."""
        p = self.params
        batch, k = mode_f.shape
        if tone_f.shape[1] == 0:
            return mode_f[:, :, None], mode_p[:, :, None], tone_p
        detuning = mode_f[:, :, None] - tone_f[:, None, :]
        injected = _db_to_mw(p.injection_coupling_db) * tone_p[:, None, :]
        half = np.sqrt(injected / np.maximum(mode_p[:, :, None], 1e-30)) / (2 * np.pi * p.round_trip_s)
        wide = np.sqrt(1.0 + p.nonisochronicity**2)
        # the nonlinear shift lowers the frequency with power, so tones below the mode lock further out
        side = half * np.where((detuning > 0) == (p.nonlinear_shift_hz_per_mw < 0), wide, 1.0)
        best = np.argmax(side / np.maximum(np.abs(detuning), 1e-3), axis=2)
        rows, modes = np.arange(batch)[:, None], np.arange(k)[None, :]
        d, edge, f_tone = detuning[rows, modes, best], side[rows, modes, best], tone_f[rows, best]
        oscillating = mode_p > 0
        locked = oscillating & (np.abs(d) <= edge)
        beat = np.sqrt(np.maximum(d**2 - edge**2, 0.0))
        sidebands = self.behaviours.sidebands
        r = np.where(locked | ~oscillating | (not sidebands), 0.0, edge / np.maximum(np.abs(d) + beat, 1e-30))
        order = np.arange(1, (p.pulling_sidebands if sidebands else 1) + 1)
        shares = (1 - r**2)[:, :, None] ** 2 * r[:, :, None] ** (2 * (order - 1))
        line_f = np.concatenate([f_tone[:, :, None] + np.sign(d)[:, :, None] * beat[:, :, None] * order,
                                 f_tone[:, :, None]], axis=2)
        line_p = np.concatenate([shares, (r**2)[:, :, None]], axis=2) * mode_p[:, :, None]
        line_f[:, :, 0] = np.where(locked, f_tone, line_f[:, :, 0])
        tone_power = np.take_along_axis(tone_p, best, axis=1)
        line_p[:, :, 0] = np.where(locked, np.maximum(mode_p, tone_power), line_p[:, :, 0])
        taken = np.zeros_like(tone_p)
        np.add.at(taken, (np.broadcast_to(rows, best.shape), best), np.where(locked, 1.0, 0.0))
        return line_f, line_p, np.where(taken > 0, 0.0, tone_p)

    def _self_modulated(self, line_f, line_p, mode_gain):
        """Self-modulation of a mode driven far above threshold (14): a comb at the free spectral
        range around its main line, depth growing with the excess gain; power is conserved."""
        p = self.params
        excess_db = 10 * np.log10(np.maximum(mode_gain, 1e-30)) - p.self_modulation_onset_db
        depth = np.clip(excess_db / p.self_modulation_span_db, 0.0, p.self_modulation_max_depth)
        side = (depth / 2) ** 2                              # first sideband / carrier, second ~ side²
        main_f, main_p = line_f[:, :, :1], line_p[:, :, :1] / (1 + 2 * side + 2 * side**2)[:, :, None]
        fsr = p.free_spectral_range_hz
        comb_f = main_f + fsr * np.array([-2.0, -1.0, 1.0, 2.0])
        comb_p = main_p * np.stack([side**2, side, side, side**2], axis=2)
        return (np.concatenate([main_f, line_f[:, :, 1:], comb_f], axis=2),
                np.concatenate([main_p, line_p[:, :, 1:], comb_p], axis=2))

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
        transmission, cos_phase, sin_phase = self._grid_terms(freqs, state["f_fmr"], state["f_top"])
        shift = state["comb_shift_hz"]
        if np.any(shift):        # the regenerative noise follows the comb where the nonlinear shift put it (11)
            theta = col(2 * np.pi * p.round_trip_s * shift)
            cos_phase = cos_phase * np.cos(theta) + sin_phase * np.sin(theta)
        g = transmission * col(state["loop_gain"] / (1.0 + state["saturating"] / state["saturation_mw"]))
        a = np.minimum(np.sqrt(g), p.max_noise_round_trip)
        ring = _db_to_mw(p.amplifier_noise_dbm_per_hz) * transmission * self._resolved_airy(a, cos_phase, rbw)
        return _db_to_mw(p.danl_dbm_per_hz) + np.where(col(amp_on), ring, 0.0)

    def _grid_terms(self, freqs, f_fmr, f_top):
        """Linear transmission, cos and sin of the round-trip phase on the display axis, per field (cached)."""
        axis_key = (float(freqs[0]), float(freqs[-1]), freqs.size)
        if f_fmr.size == 1:
            return tuple(t[None, :] for t in self._grid_table(axis_key, freqs, float(f_fmr[0]), float(f_top[0])))
        fields, row = np.unique(f_fmr, return_inverse=True)
        tops = f_top[np.unique(row, return_index=True)[1]]
        terms = [self._grid_table(axis_key, freqs, float(f), float(t)) for f, t in zip(fields, tops)]
        return tuple(np.stack([t[i] for t in terms])[row] for i in range(3))

    def _grid_table(self, axis_key, freqs, f_fmr, f_top):
        key = (axis_key, f_fmr)
        table = self._grid_cache.get(key)
        if table is None:
            if len(self._grid_cache) > 256:
                self._grid_cache.clear()
            transmission = _db_to_mw(transmission_db(freqs, f_fmr, f_top, self.params))
            phase = self._round_trip_phase(freqs, f_fmr)
            table = self._grid_cache.setdefault(key, (transmission, np.cos(phase), np.sin(phase)))
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
