r"""Physics of the simulated magnonic auto-oscillation ring, as a spectrum analyzer would see it.

This module owns the one physical model behind every simulated instrument: the signal generators'
tones go into the ring, the ring controller sets its loop gain, amplifier and bias field, and the
analyzer displays what comes out. Everything is vectorised over a batch of B settings, and all
randomness comes from one seeded ``numpy.random.Generator`` (same seed, same spectra, bit for bit).
The equations, every parameter's value and where it comes from are in **docs/ring-physics.md**; the
section numbers (§) below are that document's. In short:

* **The plane (§1).** Every power of the model is referred to one plane, the YIG delay line's input
  connector ("the film plane"). The generators reach it through the input coupler
  (``input_coupling_db``); the analyzer sees it through the delay line (``delay_line_loss_db``:
  two transducers and the spin-wave propagation loss, 76.4 dB/µs per oersted of linewidth) and the
  output coupler (``output_coupling_db``). The analyzer adds its own floor at its input, where the
  real one is (:mod:`.detector`, :mod:`.analyzer`).
* **The delay line (§2-3).** Kittel's band edges, the MSSW passband, and the round-trip phase from
  the Damon-Eshbach dispersion of the film (thickness, Ms, transducer spacing): a comb of ring modes
  whose spacing changes across the passband.
* **Loop, threshold, saturation, competition (§4-5).** Loop gain g (dB) is the net round-trip gain
  at the passband maximum; each mode saturates on the amplifier, four-magnon damping and, where
  allowed, three-magnon splitting; strong competition keeps one mode above the three-magnon band,
  weak competition lets several oscillate in it (§6: noisy, auto-modulated, chaotic).
* **Driven ring (§7).** The tones circulate with the loop's Airy gain at resonances the nonlinear
  shift moves: a strong tone folds its resonance over (bistable below threshold); intermodulation
  products are regenerated where they land on a resonance; the generators' broadband noise
  circulates with the amplifier's.
* **Locking (§8)** by Adler's phase balance, asymmetric, never beyond half a mode spacing.
* **Noise and the analyzer (§9):** the amplifier's noise referred to the film plane, the RBW filter's
  response (4-pole or Gaussian, :mod:`.detector`) and the detectors' statistics.
* Time and drift are :mod:`.laboratory`'s (§10); a device's parameters are drawn by :mod:`.spread` (§11).

:class:`Behaviours` switches each of a real ring's unkind behaviours; ``Behaviours.ideal()`` leaves
the kind ring: no drift, memory, nonlinear shift, partition noise, splitting or nonlinear damping,
pulling sidebands, dispersion, and Adler's symmetric locking. The plane, the analyzer's floor and
filters are the bench's and the instrument's, in either.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property

import numpy as np

from .detector import PRESET, Display, display_levels_dbm, resolved_regeneration

GAMMA_HZ_PER_T = 28.0e9
KT_DBM_PER_HZ = -173.9  # thermal noise kT at 295 K
PROPAGATION_LOSS_DB_PER_US_OE = 76.4
LN10_10 = np.log(10.0) / 10.0
FOLDOVER_GRID = 24  # log-spaced loop powers searched for a driven resonance's branches


@dataclass(frozen=True)
class RingParameters:
    """One simulated ring device and its bench (SI units unless named otherwise; docs/ring-physics.md
    gives each value's source). :func:`~labpgt.instruments.simulated.spread.device_parameters` draws
    other devices' values from their documented ranges."""

    # -- film and delay line (§2-3)
    gamma_hz_per_t: float = GAMMA_HZ_PER_T
    mu0_ms_t: float = 0.1750  # at the reference (room) temperature
    ms_temperature_coefficient_per_k: float = -2.0e-3
    film_thickness_m: float = 5.5e-6
    transducer_spacing_m: float = 9.7e-3
    linewidth_oe: float = 0.5
    transducer_loss_db: float = 5.0
    electrical_delay_s: float = 20e-9
    loop_phase_rad: float = 0.0
    edge_offset_hz: float = 8e6
    edge_width_hz: float = 2e6
    rolloff_start_hz: float = 25e6
    rolloff_scale_hz: float = 35e6
    rolloff_db: float = 3.0
    ripple_db: float = 0.3
    ripple_period_hz: float = 23e6
    isolation_db: float = -70.0
    # -- the bench around it (§1, §9)
    input_coupling_db: float = 10.0
    output_coupling_db: float = 10.0
    amplifier_gain_db: float = 40.0
    amplifier_noise_figure_db: float = 5.0
    amplifier_saturation_mw: float = 40.0
    generator_noise_dbc_per_hz: float = -145.0
    # -- nonlinearity at the film plane (§5-8)
    four_magnon_saturation_mw: float = 20.0
    four_magnon_slope_hz: float = 40e6
    three_magnon_saturation_mw: float = 0.3
    three_magnon_edge_hz: float = 10e6
    three_magnon_slope_hz: float = 20e6
    auto_modulation_hz: float = 200e3
    chaos_width_hz: float = 2e6
    chaos_jitter_db: float = 3.0
    nonlinear_shift_hz_per_mw: float = -0.08e6
    intercept_dbm: float = 10.0
    cross_saturation: float = 0.8
    strong_cross_saturation: float = 1.5
    tone_saturation: float = 1.0
    max_round_trip: float = 0.97
    nonisochronicity: float = 3.0
    pulling_sidebands: int = 3
    mode_partition_db: float = 0.15
    tone_jitter_db: float = 0.05
    mode_jitter_db: float = 0.2
    oscillating_lines: int = 8
    mixing_modes: int = 3
    settling_iterations: int = 5
    # -- the operating point and the analyzer's preset view (§12)
    operating_fmr_hz: float = 3.70e9
    default_loop_gain_db: float = 2.0
    default_span_hz: float = 200e6
    default_rbw_hz: float = 1e6
    default_points: int = 401
    sweep_time_factor: float = 2.5
    min_sweep_time_s: float = 1e-3
    min_point_time_s: float = 5e-6
    # -- time (§10)
    generator_settling_s: float = 10e-3
    field_settling_s: float = 50e-3
    gain_settling_s: float = 1e-3
    # -- the laboratory and its drifts (§10)
    room_temperature_c: float = 22.0
    temperature_sigma_k: float = 1.0
    temperature_correlation_s: float = 7200.0
    temperature_steps_per_hour: float = 0.5
    temperature_step_k: float = 0.3
    hvac_amplitude_k: float = 0.3
    hvac_period_s: float = 1200.0
    warmup_rise_k: float = 2.0
    warmup_time_s: float = 1800.0
    film_time_constant_s: float = 300.0
    magnet_time_constant_s: float = 1200.0
    magnet_tempco_per_k: float = -1.2e-3
    magnet_calibration: float = 1.0
    sensor_time_constant_s: float = 30.0
    sensor_noise_k: float = 0.01
    gain_tempco_db_per_k: float = -0.02
    field_sigma_mt: float = 0.02
    field_correlation_s: float = 3600.0
    field_steps_per_hour: float = 0.2
    field_step_mt: float = 0.03
    # -- the ring built from a lab's parts (§13): attenuator, electromagnet, Hall probe
    unattenuated_loop_gain_db: float = 12.0
    coil_mt_per_a: float = 20.0
    remanence_mt: float = 0.4
    coil_resistance_ohm: float = 2.0
    hall_offset_mt: float = 0.01
    hall_noise_mt: float = 0.005
    vca_curve: tuple = ((0.0, 2.0), (1.0, 5.5), (2.0, 10.5), (3.0, 17.0), (4.0, 24.0), (5.0, 31.0), (6.0, 36.0))

    # ---- derived quantities
    def ms_t(self, temperature_c=None):
        """μ0·Ms (T) at the film's temperature (°C; the room's if None)."""
        if temperature_c is None:
            return self.mu0_ms_t
        offset = np.asarray(temperature_c, dtype=float) - self.room_temperature_c
        return self.mu0_ms_t * (1.0 + self.ms_temperature_coefficient_per_k * offset)

    def field_for_fmr_mt(self, f_fmr_hz: float, ms_t: float | None = None) -> float:
        """The bias field (mT, in the film) that puts Kittel's f_FMR at ``f_fmr_hz``."""
        ms = self.mu0_ms_t if ms_t is None else ms_t
        h = f_fmr_hz / self.gamma_hz_per_t
        return float(1e3 * (-ms + np.sqrt(ms * ms + 4.0 * h * h)) / 2.0)

    @property
    def default_field_mt(self) -> float:
        """The controller's field set point for the operating point: f_FMR = ``operating_fmr_hz`` at room
        temperature, through the magnet's calibration, to 0.01 mT (§12)."""
        return round(self.field_for_fmr_mt(self.operating_fmr_hz) / self.magnet_calibration, 2)

    @property
    def default_center_hz(self) -> float:
        return self.operating_fmr_hz + 60e6

    def group_delay_s(self, f_hz, f_fmr_hz, ms_t=None):
        """The spin waves' group delay (s) across the transducer spacing, Damon-Eshbach (§3)."""
        half = 0.5 * self.gamma_hz_per_t * (self.mu0_ms_t if ms_t is None else ms_t)
        u = np.minimum((np.asarray(f_hz) ** 2 - np.asarray(f_fmr_hz) ** 2) / half**2, 1.0 - 1e-9)
        return self.transducer_spacing_m * f_hz / (2 * np.pi * self.film_thickness_m * half**2 * (1.0 - u))

    def reference_group_delay_s(self, f_fmr_hz=None, ms_t=None):
        """The group delay at the passband's reference point, ``rolloff_start_hz`` above f_FMR."""
        f_fmr = self.operating_fmr_hz if f_fmr_hz is None else f_fmr_hz
        return self.group_delay_s(np.asarray(f_fmr) + self.rolloff_start_hz, f_fmr, ms_t)

    @cached_property
    def round_trip_s(self) -> float:
        """The round-trip time at the operating point's passband reference."""
        return self.electrical_delay_s + float(self.reference_group_delay_s())

    @cached_property
    def free_spectral_range_hz(self) -> float:
        return 1.0 / self.round_trip_s

    def delay_line_loss_db(self, group_delay_s=None) -> float:
        """The delay line's insertion loss at the passband maximum: two transducers plus the spin
        waves' propagation loss, 76.4 dB/µs per oersted of FMR linewidth (§1)."""
        delay = self.reference_group_delay_s() if group_delay_s is None else group_delay_s
        return 2 * self.transducer_loss_db + PROPAGATION_LOSS_DB_PER_US_OE * self.linewidth_oe * delay * 1e6

    @property
    def amplifier_noise_dbm_per_hz(self) -> float:
        """The amplifier's noise at the film plane, kT·F·G (the attenuator before it adds as much as it takes)."""
        return KT_DBM_PER_HZ + self.amplifier_noise_figure_db + self.amplifier_gain_db


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
    """Delay-line transmission relative to its maximum (dB), broadcasting f against f_FMR (§2)."""
    x = f_hz - f_fmr_hz
    lower_edge = -np.logaddexp(0.0, -(x - params.edge_offset_hz) / params.edge_width_hz) * (10 / np.log(10))
    over = np.maximum(0.0, x - params.rolloff_start_hz) / params.rolloff_scale_hz
    t = lower_edge - params.rolloff_db * over**2
    t = t + params.ripple_db * (np.cos(2 * np.pi * x / params.ripple_period_hz) - 1.0)
    t = np.where(f_hz > f_top_hz, params.isolation_db, t)
    return np.maximum(t, params.isolation_db)


def open_loop_level_dbm(tone_dbm, tone_hz, field_mt, params: RingParameters = RingParameters(), ms_t=None):
    """Where the analyzer (no reference-level offset) shows a tone with the loop amplifier off: through
    the input coupler, the delay line and the output coupler (§1)."""
    f_fmr, f_top = fmr_frequency_hz(field_mt, params, ms_t), band_top_hz(field_mt, params, ms_t)
    return (
        tone_dbm
        - params.input_coupling_db
        + transmission_db(tone_hz, f_fmr, f_top, params)
        - params.delay_line_loss_db()
        - params.output_coupling_db
    )


def _db_to_mw(dbm):
    return 10.0 ** (np.asarray(dbm) / 10.0)


def _mw_to_db(mw):
    return 10.0 * np.log10(mw)


@dataclass(frozen=True)
class Behaviours:
    """Which of a real ring's unkind behaviours the model has; all on by default.

    :meth:`ideal` switches every one off: the kind ring (constant group delay, no memory, symmetric
    Adler locking, nothing drifts).
    """

    three_magnon: bool = True  # §6 splitting where allowed, its auto-modulation, chaos and multimode
    four_magnon: bool = True  # §5 nonlinear damping, at every field
    nonlinear_shift: bool = True  # §7 the modes and resonances move with the circulating power: foldover
    memory: bool = True  # §5 strong competition, the oscillating state carried between queries
    mode_partition: bool = True  # §5 seeded gain noise of each mode (hops near a tie)
    locking: bool = True  # §8 asymmetric locking without double-counted power
    sidebands: bool = True  # §8 pulling sidebands just outside the locking range
    dispersion: bool = True  # §3 the mode spacing changes across the passband
    drift: bool = True  # §10 the laboratory's temperatures, the magnet, the supply, the gain

    @classmethod
    def ideal(cls) -> Behaviours:
        return cls(**{name: False for name in cls.names()})

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


class RingModel:
    """The ring and the analyzer's view of it; see the module docstring and docs/ring-physics.md.

    ``spectra`` takes a batch of settings and returns displayed traces in dBm. ``noise=False``
    turns off the random parts (measurement noise, mode-partition noise, jitter; the physics stays),
    for exact comparisons. ``behaviours`` picks the real ring's unkind behaviours (all by default,
    :meth:`Behaviours.ideal` for none). With ``memory`` the ring's oscillating mode, its power and the
    tones' circulating powers carry from one call to the next: the rows of a batch all start from
    the carried state (B rings in the same past), and the last row's state is carried on. ``lab``
    is the bench's clock and drift (the simulated instruments advance it; ``spectra`` takes no time).
    """

    def __init__(
        self,
        params: RingParameters | None = None,
        seed: int = 0,
        noise: bool = True,
        behaviours: Behaviours | None = None,
    ):
        from .laboratory import Laboratory

        self.params = params or RingParameters()
        self.behaviours = behaviours if behaviours is not None else Behaviours()
        self.seed = seed
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self.lab = Laboratory(self.params, seed, drifting=self.behaviours.drift)
        self.oscillating_mode = -1  # mode number n of the carried oscillation, -1: none
        self.mode_power_mw = 0.0  # its power at the film plane
        self.tone_power_mw: list[float] = []  # each generator's circulating power at the last query
        self._mode_cache: dict = {}
        self._grid_cache: dict = {}

    # ----------------------------------------------------------------- state
    def get_state(self) -> dict:
        """Everything random or remembered, as JSON (noise RNG, clock and drift, oscillating state)."""
        return {
            "rng": self.rng.bit_generator.state,
            "lab": self.lab.get_state(),
            "oscillating_mode": int(self.oscillating_mode),
            "mode_power_mw": float(self.mode_power_mw),
            "tone_power_mw": [float(p) for p in self.tone_power_mw],
        }

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.lab.set_state(state["lab"])
        self.oscillating_mode = int(state["oscillating_mode"])
        self.mode_power_mw = float(state["mode_power_mw"])
        self.tone_power_mw = [float(p) for p in state.get("tone_power_mw", [])]

    # ----------------------------------------------------------------- public
    def sweep_time_s(self, span_hz: float, rbw_hz: float, points: int | None = None) -> float:
        """Auto-coupled sweep time of a swept analyzer: k·span/RBW², at least the minimum and, given
        the display points, at least their minimum dwell each."""
        p = self.params
        floor = p.min_sweep_time_s if points is None else max(p.min_sweep_time_s, p.min_point_time_s * int(points))
        return max(p.sweep_time_factor * float(span_hz) / float(rbw_hz) ** 2, floor)

    def threshold_gain_db(self, field_mt: float | None = None, temperature_c: float | None = None) -> float:
        """Loop gain (dB) above which the ring self-oscillates at this field in the film."""
        field = self.params.default_field_mt if field_mt is None else field_mt
        ms = float(self.params.ms_t(temperature_c))
        trans = self._mode_table(float(field), ms)[2]
        return float(-10 * np.log10(trans.max()))

    def spectra(
        self,
        tone_freq_hz,
        tone_power_dbm,
        tone_on,
        loop_gain_db,
        field_mt,
        amplifier_on,
        frequencies_hz,
        rbw_hz,
        display: Display | None = None,
        temperature_c=None,
    ) -> np.ndarray:
        """Displayed traces (B, P) in dBm at the analyzer's input for B settings of N generators, the ring
        and the analyzer.

        ``tone_*`` are (B, N) (``tone_on`` bool; powers as the generators put out), ``loop_gain_db``,
        ``field_mt`` and ``amplifier_on`` are (B,), ``frequencies_hz`` is the analyzer's (P,) display
        axis and ``rbw_hz`` its resolution bandwidth. ``display`` is the analyzer's detector, filter and
        floor (:class:`~labpgt.instruments.simulated.detector.Display`; the preset if None).
        ``field_mt`` is the field in the film, ``loop_gain_db`` the net loop gain and ``temperature_c``
        (scalar or (B,), °C) the film's temperature: the simulated bench adds the laboratory's drifts.
        """
        p = self.params
        tone_f = np.atleast_2d(np.asarray(tone_freq_hz, dtype=float))
        tone_in = np.where(np.atleast_2d(tone_on), _db_to_mw(np.atleast_2d(tone_power_dbm) - p.input_coupling_db), 0.0)
        batch = tone_f.shape[0]
        gain_db = np.broadcast_to(np.asarray(loop_gain_db, dtype=float), (batch,))
        field = np.broadcast_to(np.asarray(field_mt, dtype=float), (batch,))
        ms = np.broadcast_to(np.asarray(p.ms_t(temperature_c), dtype=float), (batch,))
        amp_on = np.broadcast_to(np.asarray(amplifier_on, dtype=bool), (batch,))
        freqs = np.asarray(frequencies_hz, dtype=float)
        display = display or PRESET

        state = self._steady_state(tone_f, tone_in, gain_db, field, ms, amp_on)
        line_f, line_p, pedestals = self._lines(tone_f, tone_in, state)
        line_p = line_p * self._to_analyzer(line_f, state)
        noise_psd = self._noise_psd(freqs, tone_in, state, amp_on, pedestals, display, float(rbw_hz))
        return display_levels_dbm(
            freqs, float(rbw_hz), line_f, line_p, noise_psd, display, self.rng if self.noise else None
        )

    # ------------------------------------------------------------ the delay line
    def _phase(self, f, f_fmr, ms):
        """The loop's round-trip phase (rad) at f: electrical delay plus the spin waves' k(f)·L (§3)."""
        p = self.params
        if not self.behaviours.dispersion:
            tau_sw = p.reference_group_delay_s(f_fmr, ms)
            return 2 * np.pi * (f * p.electrical_delay_s + (f - f_fmr) * tau_sw) + p.loop_phase_rad
        half = 0.5 * p.gamma_hz_per_t * ms
        u = np.minimum((f * f - f_fmr * f_fmr) / (half * half), 1.0 - 1e-9)
        k = -np.log1p(-u) / (2.0 * p.film_thickness_m)
        return 2 * np.pi * f * p.electrical_delay_s + k * p.transducer_spacing_m + p.loop_phase_rad

    def _round_trip_s(self, f, f_fmr, ms):
        p = self.params
        if not self.behaviours.dispersion:
            return p.electrical_delay_s + p.reference_group_delay_s(f_fmr, ms)
        return p.electrical_delay_s + p.group_delay_s(f, f_fmr, ms)

    def _mode_table(self, field_mt: float, ms_t: float):
        """Numbers, frequencies and linear transmissions of the ``oscillating_lines`` ring modes of largest
        transmission at one (field, Ms), sorted by it (cached). The modes solve φ(f) = 2πn (Newton)."""
        key = (field_mt, ms_t)
        table = self._mode_cache.get(key)
        if table is None:
            if len(self._mode_cache) > 256:
                self._mode_cache.clear()
            p = self.params
            f_fmr = float(fmr_frequency_hz(field_mt, p, ms_t))
            f_top = float(band_top_hz(field_mt, p, ms_t))
            low = f_fmr - 10e6
            high = min(f_fmr + p.rolloff_start_hz + 4 * p.rolloff_scale_hz, f_top - 1e6)
            n = np.arange(
                np.ceil(self._phase(low, f_fmr, ms_t) / (2 * np.pi)),
                np.floor(self._phase(high, f_fmr, ms_t) / (2 * np.pi)) + 1,
            )
            f = low + (n * 2 * np.pi - self._phase(low, f_fmr, ms_t)) / (2 * np.pi) / self._round_trip_s(
                low, f_fmr, ms_t
            )
            for _ in range(6):
                f = f - (self._phase(f, f_fmr, ms_t) - 2 * np.pi * n) / (2 * np.pi * self._round_trip_s(f, f_fmr, ms_t))
            trans_db = transmission_db(f, f_fmr, f_top, p)
            slope = (transmission_db(f + 1e4, f_fmr, f_top, p) - transmission_db(f - 1e4, f_fmr, f_top, p)) / 2e4
            order = np.argsort(-trans_db, kind="stable")[: p.oscillating_lines]
            table = self._mode_cache.setdefault(key, (n[order], f[order], _db_to_mw(trans_db[order]), slope[order]))
        return table

    def _candidate_modes(self, field_mt, ms_t):
        """The mode tables (B, K) of every row, grouped by (field, Ms)."""
        if field_mt.size == 1:
            return tuple(t[None, :] for t in self._mode_table(float(field_mt[0]), float(ms_t[0])))
        keys, row = np.unique(np.stack([field_mt, ms_t], axis=1), axis=0, return_inverse=True)
        tables = [self._mode_table(float(b), float(m)) for b, m in keys]
        row = row.reshape(-1)
        return tuple(np.stack([t[i] for t in tables])[row] for i in range(4))

    def _to_analyzer(self, f, state):
        """Linear factor from the film plane to the analyzer's input at frequencies f (B, L)."""
        col = lambda v: v[:, None]  # noqa: E731
        t = _db_to_mw(transmission_db(f, col(state["f_fmr"]), col(state["f_top"]), self.params))
        return t * col(state["out_loss"])

    # ------------------------------------------------------------ saturation
    def _three_magnon_share(self, field, mode_f):
        """How far three-magnon splitting is allowed for each mode (0 … 1): its half-frequency above the
        bottom of the spin-wave band, γ'B (§6)."""
        p = self.params
        return 0.5 * (1.0 + np.tanh((mode_f / 2 - p.gamma_hz_per_t * field[:, None] * 1e-3) / p.three_magnon_edge_hz))

    def _saturation_mw(self, x, share):
        """Saturation powers (B, K) at the film plane: (all, all but three-magnon splitting) — the
        amplifier, four-magnon damping, three-magnon splitting where allowed, the last two falling or
        rising across the band (§5-6)."""
        p, on = self.params, self.behaviours
        inverse = np.full(x.shape, 1.0 / p.amplifier_saturation_mw)
        over = x - p.rolloff_start_hz
        if on.four_magnon:
            inverse = inverse + np.exp(np.clip(over / p.four_magnon_slope_hz, -20, 20)) / p.four_magnon_saturation_mw
        without_splitting = 1.0 / inverse
        if on.three_magnon:
            inverse = inverse + share / self._three_magnon_threshold_mw(x)
        return 1.0 / inverse, without_splitting

    def _three_magnon_threshold_mw(self, x):
        p = self.params
        return p.three_magnon_saturation_mw * np.exp(
            np.clip((x - p.rolloff_start_hz) / p.three_magnon_slope_hz, -20, 20)
        )

    # ------------------------------------------------------------ the steady state
    def _steady_state(self, tone_f, tone_in, gain_db, field, ms, amp_on):
        p, on = self.params, self.behaviours
        col = lambda v: v[:, None]  # noqa: E731 - broadcast a (B,) column against (B, X)
        f_fmr = fmr_frequency_hz(field, p, ms)
        f_top = band_top_hz(field, p, ms)
        tau_ref = p.reference_group_delay_s(f_fmr, ms)
        loop_gain = np.where(amp_on, 10 ** (gain_db / 10), 0.0)
        mode_n, mode_f0, mode_t0, mode_slope = self._candidate_modes(field, ms)
        share = self._three_magnon_share(field, mode_f0) if on.three_magnon else np.zeros(mode_f0.shape)
        saturation, unsplit = self._saturation_mw(mode_f0 - col(f_fmr), share)
        loop_saturation = saturation[:, 0]
        weak = ~np.full(share.shape[0], on.memory) | (share[:, 0] > 0.5)  # the three-magnon regime: multimode
        prior = mode_n == self.oscillating_mode
        partition = self._partition_noise(mode_n.shape)
        shift_per_mw = p.nonlinear_shift_hz_per_mw if on.nonlinear_shift else 0.0
        base_g = col(loop_gain) * mode_t0 * partition

        tone_t = _db_to_mw(transmission_db(tone_f, col(f_fmr), col(f_top), p))
        tone_phase = self._phase(tone_f, col(f_fmr), col(ms))
        tone_tau = self._round_trip_s(tone_f, col(f_fmr), col(ms))
        carried = self._carried_tones(tone_in.shape)
        modes = np.where(prior, self.mode_power_mw, 0.0) if on.memory else np.zeros(mode_n.shape)
        tones = np.maximum(carried, tone_in)
        shift = np.zeros(field.shape)
        for _ in range(p.settling_iterations):
            mode_g = base_g * np.exp(np.minimum(mode_slope * col(shift), 30.0) * LN10_10) if shift_per_mw else base_g
            modes = 0.5 * modes + 0.5 * self._competition(mode_g, (tones * tone_t).sum(axis=1), saturation, prior, weak)
            a = self._tone_round_trip(loop_gain, tone_t, modes.sum(axis=1), tones * tone_t, loop_saturation)
            cos = np.cos(tone_phase - 2 * np.pi * tone_tau * col(shift)) if shift_per_mw else np.cos(tone_phase)
            # damped in the logarithm: a saturating loop overshoots by up to 1/(1 - a)² otherwise
            tones = np.sqrt(tones * (tone_in / (1.0 - 2.0 * a * cos + a**2)))
            shift = self._shift_hz(shift_per_mw, modes, tones * tone_t)
        if shift_per_mw and self._may_fold(tone_in, a, tone_tau, shift_per_mw):
            tones = self._foldover(
                tone_in, tone_t, tone_phase, tone_tau, loop_gain, modes, tones, carried, loop_saturation, shift_per_mw
            )
            shift = self._shift_hz(shift_per_mw, modes, tones * tone_t)
        mode_f = mode_f0 + col(shift)
        mode_g = col(loop_gain) * _db_to_mw(transmission_db(mode_f, col(f_fmr), col(f_top), p)) * partition
        modes = self._competition(mode_g, (tones * tone_t).sum(axis=1), saturation, prior, weak)
        saturating = modes.sum(axis=1) + p.tone_saturation * (tones * tone_t).sum(axis=1)
        if on.memory:
            winner = np.argmax(modes[-1])
            self.oscillating_mode = int(mode_n[-1, winner]) if modes[-1, winner] > 0 else -1
            self.mode_power_mw = float(modes[-1, winner])
            self.tone_power_mw = [float(v) for v in tones[-1]]
        return {
            "f_fmr": f_fmr,
            "f_top": f_top,
            "ms": ms,
            "tau": p.electrical_delay_s + tau_ref,
            "loop_gain": loop_gain,
            "saturating": saturating,
            "saturation_mw": loop_saturation,
            "shift_hz": shift,
            "tone_loop": tones,
            "mode_f": mode_f,
            "mode_p": modes,
            "mode_gain": mode_g,
            "mode_share": share,
            "mode_unsplit_mw": unsplit,
            "out_loss": _db_to_mw(-p.delay_line_loss_db(tau_ref) - p.output_coupling_db),
        }

    def _shift_hz(self, shift_per_mw, modes, tones):
        """The nonlinear shift N·P of everything circulating (§7), within one free spectral range."""
        if not shift_per_mw:
            return np.zeros(modes.shape[0])
        limit = self.params.free_spectral_range_hz
        return np.maximum(np.minimum(shift_per_mw * (modes.sum(axis=1) + tones.sum(axis=1)), limit), -limit)

    def _carried_tones(self, shape):
        """The tones' circulating powers the ring starts this query from (the last query's, per generator)."""
        carried = np.zeros(shape)
        if self.behaviours.memory and len(self.tone_power_mw) == shape[1]:
            carried[:] = np.asarray(self.tone_power_mw)[None, :]
        return carried

    def _tone_round_trip(self, loop_gain, tone_t, mode_mw, tone_mw, loop_saturation):
        """The loop's amplitude round-trip gain at each tone, saturated by everything circulating
        (``tone_mw``: the tones' power that passes the delay line, P·T; a tone outside the spin-wave band
        excites nothing and never reaches the amplifier)."""
        p = self.params
        saturating = mode_mw + p.tone_saturation * tone_mw.sum(axis=1)
        a = np.sqrt(loop_gain[:, None] * tone_t / (1.0 + (saturating / loop_saturation)[:, None]))
        return np.minimum(a, p.max_round_trip)

    def _may_fold(self, tone_in, a, tau, shift_per_mw) -> bool:
        """Whether any tone's resonance could fold over: the nonlinear phase at its largest circulating
        power beats the resonance's half-width in phase."""
        largest = tone_in / (1.0 - a) ** 2
        return bool(
            np.any(2 * np.pi * tau * abs(shift_per_mw) * largest > 0.5 * (1.0 - a) / np.sqrt(np.maximum(a, 1e-3)))
        )

    def _foldover(self, tone_in, tone_t, phase, tau, loop_gain, modes, tones, carried, loop_saturation, shift_per_mw):
        """Each tone's circulating power on the branch nearest the one the ring was on (§7).

        With the resonances moved by N·P, P = P_in / |1 - a e^{i(θ - 2πτN·P_total)}|² can have three
        roots (a folded resonance); the stable ones are where P - P_in·Airy(P) crosses zero upward.
        Each tone's is searched on a log grid (the other lines held), the one nearest the carried
        power chosen (the lowest when nothing was carried), then refined by bisection."""
        p = self.params
        mode_mw = modes.sum(axis=1)[:, None, None]
        spin = tones * tone_t  # what of each tone propagates in the film and reaches the amplifier
        others = (spin.sum(axis=1, keepdims=True) - spin)[:, :, None]
        t = tone_t[:, :, None]
        lo = tone_in / 4.0
        hi = tone_in / (1.0 - p.max_round_trip) ** 2
        grid = lo[:, :, None] * np.power(
            np.maximum(hi / np.maximum(lo, 1e-300), 1.0)[:, :, None],
            np.linspace(0.0, 1.0, FOLDOVER_GRID)[None, None, :],
        )

        def excess(power):
            saturating = mode_mw + p.tone_saturation * (others + t * power)
            a = np.sqrt(
                loop_gain[:, None, None] * tone_t[:, :, None] / (1.0 + saturating / loop_saturation[:, None, None])
            )
            a = np.minimum(a, p.max_round_trip)
            cos = np.cos(
                phase[:, :, None] - 2 * np.pi * tau[:, :, None] * shift_per_mw * (mode_mw + others + t * power)
            )
            return power - tone_in[:, :, None] / (1.0 - 2.0 * a * cos + a**2)

        h = excess(grid)
        upward = (h[:, :, :-1] < 0) & (h[:, :, 1:] >= 0)
        if not upward.any():
            return tones
        mid = np.sqrt(grid[:, :, :-1] * grid[:, :, 1:])
        start = np.where(carried > 0, carried, tone_in * 1e-3)
        distance = np.where(upward, np.abs(np.log(mid / np.maximum(start, 1e-300)[:, :, None])), np.inf)
        pick = np.argmin(distance, axis=2)[:, :, None]
        low = np.take_along_axis(grid[:, :, :-1], pick, axis=2)
        high = np.take_along_axis(grid[:, :, 1:], pick, axis=2)
        for _ in range(6):
            middle = np.sqrt(low * high)
            below = excess(middle) < 0
            low, high = np.where(below, middle, low), np.where(below, high, middle)
        found = np.sqrt(low * high)[:, :, 0]
        return np.where(upward.any(axis=2) & (tone_in > 0), found, tones)

    def _partition_noise(self, shape):
        """Each candidate mode's gain factor for this query: log-normal mode-partition noise (§5)."""
        if not (self.noise and self.behaviours.mode_partition):
            return 1.0
        return 10 ** (self.rng.standard_normal(shape) * self.params.mode_partition_db / 10)

    def _competition(self, gain, tone_loop_mw, saturation_mw, prior, weak):
        """Steady-state mode powers (mW): weak competition's closed form where ``weak`` (the three-magnon
        regime, or no memory), else strong competition's single survivor chosen by the ring's history."""
        p = self.params
        drive = saturation_mw * (gain - 1.0) - p.tone_saturation * tone_loop_mw[:, None]
        if weak.all():
            return self._weak_competition(drive)
        c = p.strong_cross_saturation
        rows = np.arange(drive.shape[0])
        has_prior = prior.any(axis=1)
        held = np.argmax(prior, axis=1)
        held_drive = drive[rows, held]
        invaders = np.where(prior, -np.inf, drive).max(axis=1)
        stays = has_prior & (held_drive > 0) & (invaders < c * held_drive)
        winner = np.where(stays, held, np.argmax(drive, axis=1))
        strong_power = np.zeros_like(drive)
        strong_power[rows, winner] = np.maximum(drive[rows, winner], 0.0)
        if not weak.any():
            return strong_power
        return np.where(weak[:, None], self._weak_competition(drive), strong_power)

    def _weak_competition(self, drive):
        """Uniform Lotka-Volterra with cross-saturation c < 1 for modes sorted by gain (§5)."""
        c = self.params.cross_saturation
        order = np.argsort(-drive, axis=1, kind="stable")
        sorted_drive = np.take_along_axis(drive, order, axis=1)
        k = np.arange(1, drive.shape[1] + 1)[None, :]
        total_k = np.cumsum(sorted_drive, axis=1) / (1.0 - c + k * c)
        weakest = (sorted_drive - c * total_k) / (1.0 - c)
        survivors = np.cumprod(weakest > 0, axis=1).sum(axis=1)
        total = total_k[np.arange(total_k.shape[0]), np.maximum(survivors - 1, 0)][:, None]
        power = np.where(k <= survivors[:, None], (sorted_drive - c * total) / (1.0 - c), 0.0)
        result = np.empty_like(drive)
        np.put_along_axis(result, order, np.maximum(power, 0.0), axis=1)
        return result

    # ------------------------------------------------------------ the lines
    def _lines(self, tone_f, tone_in, state):
        """Spectral lines (frequency, mW at the film plane) — tones, pulled or locked modes and their
        sidebands, three-magnon auto-modulation, regenerated intermodulation products — and the chaotic
        pedestals (centre, width, power) of modes driven past the three-magnon threshold."""
        p = self.params
        mode_p, tone_p = state["mode_p"], state["tone_loop"]
        chaos = self._chaos_index(mode_p, state)
        if self.noise and self.behaviours.three_magnon:
            mode_p = mode_p * 10 ** (self.rng.standard_normal(mode_p.shape) * p.chaos_jitter_db * chaos / 10)
        pedestal_p = mode_p * 0.5 * chaos**2
        mode_p = mode_p - pedestal_p
        pedestals = (state["mode_f"], p.chaos_width_hz * np.maximum(chaos, 0.1), pedestal_p)
        if self.behaviours.locking:
            line_f, line_p, tone_p = self._injected(state["mode_f"], mode_p, tone_f, tone_in, tone_p, state)
        else:
            line_f, line_p = self._pulled(state["mode_f"], mode_p, tone_f, tone_in, state)
        line_f, line_p = self._auto_modulated(line_f, line_p, chaos)
        mode_f = line_f.reshape(line_f.shape[0], -1)
        mode_p = line_p.reshape(line_p.shape[0], -1)
        if self.noise:
            tone_p = tone_p * self._jitter(tone_p.shape, p.tone_jitter_db)
            mode_p = mode_p * self._jitter(mode_p.shape, p.mode_jitter_db)
        strongest = np.argsort(-mode_p, axis=1, kind="stable")[:, : p.mixing_modes]
        mix_f = np.concatenate([tone_f, np.take_along_axis(mode_f, strongest, axis=1)], axis=1)
        mix_p = np.concatenate([tone_p, np.take_along_axis(mode_p, strongest, axis=1)], axis=1)
        im_f, im_p = self._intermodulation(mix_f, mix_p, state, injected=tone_f.shape[1])
        return (
            np.concatenate([tone_f, mode_f, im_f], axis=1),
            np.concatenate([tone_p, mode_p, im_p], axis=1),
            pedestals,
        )

    def _chaos_index(self, mode_p, state):
        """How far past the three-magnon threshold the loop drives each oscillating mode (§6): the power
        it would reach without splitting, (G - 1)·P_sat', over the threshold, 0 at 1 and 1 at 20 dB."""
        if not self.behaviours.three_magnon:
            return np.zeros(mode_p.shape)
        x = state["mode_f"] - state["f_fmr"][:, None]
        past = np.maximum(state["mode_gain"] - 1.0, 0.0) * state["mode_unsplit_mw"] / self._three_magnon_threshold_mw(x)
        index = np.clip(np.log10(np.maximum(past, 1.0)) / 2.0, 0.0, 1.0)
        return np.where((mode_p > 0) & (state["mode_share"] > 0.5), index, 0.0)

    def _auto_modulated(self, line_f, line_p, chaos):
        """A mode past the three-magnon threshold is auto-modulated at the parametric magnons'
        relaxation frequency: sidebands ±1, ±2 of depth growing with the chaos index, power conserved."""
        if not chaos.any():
            return line_f, line_p
        side = (chaos / 2) ** 2
        main_f, main_p = line_f[:, :, :1], line_p[:, :, :1] / (1 + 2 * side + 2 * side**2)[:, :, None]
        comb_f = main_f + self.params.auto_modulation_hz * np.array([-2.0, -1.0, 1.0, 2.0])
        comb_p = main_p * np.stack([side**2, side, side, side**2], axis=2)
        return (
            np.concatenate([main_f, line_f[:, :, 1:], comb_f], axis=2),
            np.concatenate([main_p, line_p[:, :, 1:], comb_p], axis=2),
        )

    def _lock_half_width(self, tone_in, mode_p, state):
        """Adler's half-width from the phase balance of a delay-line loop, asin(ρ)/(2πτ), ρ² the
        injected over the oscillating power at the film plane (§8)."""
        rho = np.sqrt(tone_in[:, None, :] / np.maximum(mode_p[:, :, None], 1e-30))
        return np.arcsin(np.minimum(rho, 1.0)) / (2 * np.pi * state["tau"][:, None, None])

    def _pulled(self, mode_f, mode_p, tone_f, tone_in, state):
        """Adler's symmetric pulling and locking of each oscillating mode by its most effective tone (§8)."""
        if tone_f.shape[1] == 0:
            return mode_f[:, :, None], mode_p[:, :, None]
        detuning = mode_f[:, :, None] - tone_f[:, None, :]
        half = np.minimum(self._lock_half_width(tone_in, mode_p, state), 0.5 / state["tau"][:, None, None])
        best = np.argmax(half / np.maximum(np.abs(detuning), 1e-3), axis=2)
        rows, modes = np.arange(best.shape[0])[:, None], np.arange(best.shape[1])[None, :]
        d, lock = detuning[rows, modes, best], half[rows, modes, best]
        beat = np.sqrt(np.maximum(d**2 - lock**2, 0.0))
        return (tone_f[rows, best] + np.sign(d) * beat)[:, :, None], mode_p[:, :, None]

    def _injected(self, mode_f, mode_p, tone_f, tone_in, tone_p, state):
        """Asymmetric locking and pulling, with sidebands if they are on (§8): lines (B, K, S) of each
        mode, and the tones' powers with a locked mode's share taken out (one line, not two)."""
        p = self.params
        batch, k = mode_f.shape
        if tone_f.shape[1] == 0:
            return mode_f[:, :, None], mode_p[:, :, None], tone_p
        detuning = mode_f[:, :, None] - tone_f[:, None, :]
        half = self._lock_half_width(tone_in, mode_p, state)
        wide = np.sqrt(1.0 + p.nonisochronicity**2)
        # the nonlinear shift lowers the frequency with power, so tones below the mode lock further out;
        # past half a mode spacing the neighbouring mode is nearer and takes the tone over
        side = half * np.where((detuning > 0) == (p.nonlinear_shift_hz_per_mw < 0), wide, 1.0)
        side = np.minimum(side, 0.5 / state["tau"][:, None, None])
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
        line_f = np.concatenate(
            [f_tone[:, :, None] + np.sign(d)[:, :, None] * beat[:, :, None] * order, f_tone[:, :, None]], axis=2
        )
        line_p = np.concatenate([shares, (r**2)[:, :, None]], axis=2) * mode_p[:, :, None]
        line_f[:, :, 0] = np.where(locked, f_tone, line_f[:, :, 0])
        tone_power = np.take_along_axis(tone_p, best, axis=1)
        line_p[:, :, 0] = np.where(locked, np.maximum(mode_p, tone_power), line_p[:, :, 0])
        taken = np.zeros_like(tone_p)
        np.add.at(taken, (np.broadcast_to(rows, best.shape), best), np.where(locked, 1.0, 0.0))
        return line_f, line_p, np.where(taken > 0, 0.0, tone_p)

    def _intermodulation(self, f, power, state, injected: int):
        """Third-order products 2f_i - f_j of the strongest lines at the film plane, P_i²P_j/IP3² while
        small, saturating at a quarter of the weaker pump (§7).

        A product that involves one of the ``injected`` tones (the first lines) is regenerated by the loop
        where it lands, on the shifted comb, like an injected tone: its circulating power saturates the
        gain it is regenerated with (a few log-damped steps). Products of oscillating modes alone land
        on the comb the modes compete on and are not regenerated again."""
        p = self.params
        i, j = np.nonzero(~np.eye(f.shape[1], dtype=bool))
        im_f = 2 * f[:, i] - f[:, j]
        col = lambda v: v[:, None]  # noqa: E731
        small_signal = power[:, i] ** 2 * power[:, j] / _db_to_mw(p.intercept_dbm) ** 2
        pumps = np.minimum(power[:, i], power[:, j]) / 4.0  # a product saturates below its pumps
        made = small_signal / (1.0 + small_signal / np.maximum(pumps, 1e-30))
        regenerated = (i < injected) | (j < injected)
        if not regenerated.any():
            return im_f, made
        t = _db_to_mw(transmission_db(im_f, col(state["f_fmr"]), col(state["f_top"]), p))
        phase = self._phase(im_f, col(state["f_fmr"]), col(state["ms"])) - 2 * np.pi * col(
            state["tau"] * state["shift_hz"]
        )
        cos = np.cos(phase)
        gain = col(state["loop_gain"]) * t
        circulating = made
        for _ in range(4):
            a = np.minimum(
                np.sqrt(gain / (1.0 + (col(state["saturating"]) + t * circulating) / col(state["saturation_mw"]))),
                p.max_round_trip,
            )
            circulating = np.sqrt(circulating * made / (1.0 - 2.0 * a * cos + a**2))
        return im_f, np.where(regenerated[None, :], circulating, made)

    # ------------------------------------------------------------ noise
    def _noise_psd(self, freqs, tone_in, state, amp_on, pedestals, display, rbw):
        """Noise power spectral density (mW/Hz) at the analyzer's input from the ring: the amplifier's and
        the generators' broadband noise circulating with the loop's regeneration as the RBW filter sees
        it, and the chaotic pedestals (§6, §9). The analyzer's own floor is :mod:`.detector`'s."""
        p = self.params
        col = lambda v: v[:, None]  # noqa: E731
        source = np.where(amp_on, _db_to_mw(p.amplifier_noise_dbm_per_hz), 0.0) + tone_in.sum(axis=1) * _db_to_mw(
            p.generator_noise_dbc_per_hz
        )
        transmission, cos_phase, sin_phase = self._grid_terms(freqs, state)
        theta = col(2 * np.pi * state["tau"] * state["shift_hz"])
        if np.any(theta):
            cos_phase, sin_phase = (
                cos_phase * np.cos(theta) + sin_phase * np.sin(theta),
                sin_phase * np.cos(theta) - cos_phase * np.sin(theta),
            )
        g = transmission * col(state["loop_gain"] / (1.0 + state["saturating"] / state["saturation_mw"]))
        a = np.minimum(np.sqrt(g), p.max_round_trip)
        film = np.broadcast_to(col(source), a.shape).copy()
        # the regeneration only where it could show: at most 1/(1 - a)², against the analyzer's floor
        reaching = col(source * state["out_loss"]) * transmission / (1.0 - a) ** 2
        shown = np.flatnonzero((reaching > 1e-3 * 10 ** (display.floor_dbm_per_hz / 10)).any(axis=0))
        if shown.size:
            film[:, shown] *= resolved_regeneration(
                a[:, shown], cos_phase[:, shown], sin_phase[:, shown], state["tau"], rbw, display
            )
        centre, width, power = pedestals
        if np.any(power > 0):
            offset = freqs[None, None, :] - centre[:, :, None]
            half = (width / 2)[:, :, None]
            film = film + (power[:, :, None] * half / np.pi / (offset**2 + half**2)).sum(axis=1)
        return film * transmission * col(state["out_loss"])

    def _grid_terms(self, freqs, state):
        """Linear transmission and the cosine and sine of the round-trip phase on the display axis (B, P),
        per (field, Ms) (cached)."""
        f_fmr, ms = state["f_fmr"], state["ms"]
        axis_key = (float(freqs[0]), float(freqs[-1]), freqs.size)
        if f_fmr.size == 1:
            return tuple(
                t[None, :]
                for t in self._grid_table(axis_key, freqs, float(f_fmr[0]), float(state["f_top"][0]), float(ms[0]))
            )
        keys, row = np.unique(np.stack([f_fmr, ms], axis=1), axis=0, return_inverse=True)
        tops = state["f_top"][np.unique(row.reshape(-1), return_index=True)[1]]
        terms = [self._grid_table(axis_key, freqs, float(f), float(t), float(m)) for (f, m), t in zip(keys, tops)]
        row = row.reshape(-1)
        return tuple(np.stack([t[i] for t in terms])[row] for i in range(3))

    def _grid_table(self, axis_key, freqs, f_fmr, f_top, ms):
        key = (axis_key, f_fmr, ms)
        table = self._grid_cache.get(key)
        if table is None:
            if len(self._grid_cache) > 256:
                self._grid_cache.clear()
            transmission = _db_to_mw(transmission_db(freqs, f_fmr, f_top, self.params))
            phase = self._phase(freqs, f_fmr, ms)
            table = self._grid_cache.setdefault(key, (transmission, np.cos(phase), np.sin(phase)))
        return table

    def _jitter(self, shape, sigma_db):
        return 10 ** (self.rng.standard_normal(shape) * sigma_db / 10)


__all__ = [
    "RingParameters",
    "RingModel",
    "Behaviours",
    "fmr_frequency_hz",
    "band_top_hz",
    "transmission_db",
    "open_loop_level_dbm",
    "GAMMA_HZ_PER_T",
]
