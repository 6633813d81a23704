"""A real ring's unkind behaviours (docs/ring-physics.md), each seen through the instruments' SCPI.

Every test talks to a SimulatedBench only through ``handle`` (the bytes a VISA client would send),
with the behaviours it is not about switched off so that it sees one thing at a time.
"""

import dataclasses
import socket
import time

import numpy as np
import pytest

from labpgt.instruments.simulated import SimulatedBench, serve
from labpgt.instruments.simulated.ring import Behaviours, RingParameters
from labpgt.instruments.simulated.timing import UNCHARGED

QUIET = Behaviours(drift=False)  # everything a real ring does but drift
CENTER = RingParameters().default_center_hz


def bench_with(behaviours=QUIET, noise=False, seed=0, **kwargs):
    return SimulatedBench(n_generators=1, seed=seed, noise=noise, behaviours=behaviours, **kwargs)


def send(bench, name, message):
    return bench[name].handle(message).decode().strip()


def view(bench, center_hz, span_hz, rbw_hz, points):
    send(bench, "analyzer", f":FREQ:CENT {center_hz};:FREQ:SPAN {span_hz};:BAND {rbw_hz};:SWE:POIN {points}")
    return np.linspace(center_hz - span_hz / 2, center_hz + span_hz / 2, points)


def trace(bench):
    return np.array([float(v) for v in send(bench, "analyzer", ":TRAC?").split(",")])


def lines(axis, tr, above_db=40.0):
    """Frequencies of the local maxima more than ``above_db`` over the trace's median (lines, not the
    regenerative noise humps, which stay some 30 dB over the floor)."""
    i = np.flatnonzero((tr[1:-1] > tr[:-2]) & (tr[1:-1] >= tr[2:])) + 1
    return axis[i[tr[i] > np.median(tr) + above_db]]


def oscillating(bench, gain_db=2.0):
    send(bench, "ring", f":AMPL ON;:LOOP:GAIN {gain_db} dB")


# --------------------------------------------------------------------------- memory
def field_sweep(bench, fields):
    """The oscillation's frequency at each field, sweeping up then down (a wide view follows the band)."""
    f_fmr = RingParameters().operating_fmr_hz
    axis = view(bench, f_fmr, 400e6, 100e3, 4001)
    send(bench, "ring", ":AMPL ON;:LOOP:GAIN 2 dB")
    seen = {}
    for direction, sweep in (("up", fields), ("down", fields[::-1])):
        for field in sweep:
            send(bench, "ring", f":FIEL {field} mT")
            seen[direction, field] = axis[trace(bench).argmax()]
    return np.array([seen["up", f] for f in fields]), np.array([seen["down", f] for f in fields])


def test_a_field_sweep_up_and_down_shows_hysteresis():
    """Strong competition keeps the oscillating mode while the comb slides through the passband (it moves
    with τ_sw/τ of f_FMR, the passband with all of it) until a neighbour's drive beats it by the
    cross-saturation: the mode hops at different fields up and down."""
    fields = RingParameters().default_field_mt + np.arange(-3.5, 3.51, 0.25)
    up, down = field_sweep(bench_with(), fields)
    moved = np.abs(up - down) > 2e6
    assert moved.sum() >= 4, "the same field gives the same oscillation whatever the history"
    assert not moved[0] and not moved[-1]  # the ends of the sweep agree: it is a loop
    spacings = np.abs(up - down)[moved] / RingParameters().free_spectral_range_hz
    assert np.all(np.abs(spacings - np.round(spacings)) < 0.15)  # whole mode spacings apart
    # and without memory (weak competition) there is no loop
    up, down = field_sweep(bench_with(dataclasses.replace(QUIET, memory=False)), fields)
    assert np.array_equal(up, down)


def test_the_oscillating_mode_is_carried_between_queries_and_restored_from_a_checkpoint():
    bench = bench_with(noise=True, seed=4)
    view(bench, CENTER, 200e6, 300e3, 1001)
    oscillating(bench, 7.0)
    trace(bench)
    state = bench.get_state()
    after = [trace(bench) for _ in range(3)]
    again = bench_with(noise=True, seed=99)
    view(again, CENTER, 200e6, 300e3, 1001)
    oscillating(again, 7.0)
    again.set_state(state)
    assert all(np.array_equal(a, trace(again)) for a in after)


# --------------------------------------------------------------------------- drift
@pytest.mark.parametrize("drift", [True, False])
def test_a_query_an_hour_later_differs_by_more_than_the_noise_only_with_drift(drift):
    bench = bench_with(Behaviours(drift=drift), noise=True, seed=5)
    axis = view(bench, CENTER - 40e6, 40e6, 100e3, 401)
    oscillating(bench)
    first, repeat = trace(bench), trace(bench)
    t0 = float(send(bench, "ring", ":TEMP?"))
    send(bench, "analyzer", ":SWE:TIME 2000 s")  # two long sweeps: over an hour on the bench's clock
    trace(bench), trace(bench)
    send(bench, "analyzer", ":SWE:TIME:AUTO ON")
    assert bench.clock_s > 3600.0
    later = trace(bench)
    line = (first > np.median(first) + 20) | (later > np.median(later) + 20)  # the oscillation, not the floor
    noise = np.sqrt(np.mean((repeat - first)[line] ** 2))
    change = np.sqrt(np.mean((later - first)[line] ** 2))
    t1 = float(send(bench, "ring", ":TEMP?"))
    if drift:
        assert change > 2 * noise
        assert abs(axis[later.argmax()] - axis[first.argmax()]) >= axis[1] - axis[0]  # the mode moved
        assert t1 != t0
    else:
        assert change < 1.5 * noise
        assert t1 == t0 == 22.0


def test_drift_is_seeded():
    def hour(seed):
        bench = bench_with(Behaviours(), noise=True, seed=seed)
        send(bench, "analyzer", ":SWE:TIME 1800 s")
        return [send(bench, "analyzer", ":INIT") + send(bench, "ring", ":TEMP?") for _ in range(4)]

    assert hour(1) == hour(1)
    assert hour(1) != hour(2)


# --------------------------------------------------------------------------- nonlinear shift
def test_the_mode_frequency_falls_with_the_circulating_power():
    def peaks(behaviours):
        bench = bench_with(behaviours)
        oscillating(bench, 0.5)
        axis, _ = zoom_on_mode(bench, 4e6, 10e3, 801)
        found = []
        for gain in (0.5, 1.5, 2.5, 3.5):
            send(bench, "ring", f":LOOP:GAIN {gain} dB")
            tr = trace(bench)
            found.append((axis[tr.argmax()], tr.max()))
        return np.array(found)

    shifting = peaks(QUIET)
    assert np.all(np.diff(shifting[:, 1]) > 0)  # more gain, more circulating power ...
    assert np.all(np.diff(shifting[:, 0]) < 0)  # ... and a lower frequency (N < 0)
    steady = peaks(dataclasses.replace(QUIET, nonlinear_shift=False))
    assert np.ptp(steady[:, 0]) <= 5e3  # one display bucket
    assert shifting[0, 0] - shifting[-1, 0] > 0.2e6


# --------------------------------------------------------------------------- locking and pulling
def zoom_on_mode(bench, span_hz, rbw_hz, points):
    """Find the oscillating mode on a wide view, then look at it closely: (axis, mode frequency)."""
    wide = view(bench, CENTER, 200e6, 100e3, 2001)
    center = wide[trace(bench).argmax()]
    axis = view(bench, center, span_hz, rbw_hz, points)
    return axis, axis[trace(bench).argmax()]


STEADY = dataclasses.replace(QUIET, nonlinear_shift=False)  # locking without the comb moving under the tone


def test_a_tone_just_outside_the_locking_range_pulls_sidebands_inside_it_locks():
    # +10 dBm from the generator is 1 mW in the film against the mode's 5.3 mW (the tone saturates it):
    # ρ = 0.43, a half-width of 0.35 MHz on the narrow side (docs/ring-physics.md §8)
    bench = bench_with(STEADY)
    oscillating(bench)
    axis, mode = zoom_on_mode(bench, 6e6, 10e3, 1201)
    tone = mode + 0.5e6
    send(bench, "gen1", f":FREQ {tone} Hz;:POW 10 dBm;:OUTP ON")  # above the mode: the narrow side
    outside = lines(axis, trace(bench))
    assert np.any(np.abs(outside - tone) < 15e3)  # the tone
    pulled = outside[(outside > mode - 20e3) & (outside < tone - 30e3)]
    assert pulled.size == 1 and mode < pulled[0] < mode + 0.25e6  # the mode, pulled toward the tone
    beat = tone - pulled[0]
    # the pulled oscillator's series runs on: f_t - 2Ω coincides with an intermodulation product, f_t - 3Ω does not
    assert np.any(np.abs(outside - (tone - 3 * beat)) < 30e3)
    plain = bench_with(dataclasses.replace(STEADY, sidebands=False))
    oscillating(plain)
    assert zoom_on_mode(plain, 6e6, 10e3, 1201)[1] == mode
    send(plain, "gen1", f":FREQ {tone} Hz;:POW 10 dBm;:OUTP ON")
    assert not np.any(np.abs(lines(axis, trace(plain)) - (tone - 3 * beat)) < 30e3)

    send(bench, "gen1", f":FREQ {mode + 0.1e6} Hz")  # well inside
    inside = lines(axis, trace(bench))
    assert np.all(np.abs(inside - (mode + 0.1e6)) < 15e3)  # one line, on the tone


def locking_range(bench, axis, mode, power_dbm, step_hz=0.1e6, reach_hz=25e6):
    """(below, above): how far under and over the free mode a tone of ``power_dbm`` still locks it."""
    send(bench, "gen1", f":POW {power_dbm} dBm;:OUTP ON")
    edges = []
    for sign in (-1, 1):
        offset = 0.0
        while offset < reach_hz:
            tone = mode + sign * (offset + step_hz)
            send(bench, "gen1", f":FREQ {tone} Hz")
            found = lines(axis, trace(bench))
            if np.any(np.abs(found - tone) > 2 * (axis[1] - axis[0])):  # another line: not locked
                break
            offset += step_hz
        edges.append(offset)
    return tuple(edges)


def test_the_locking_range_at_plus_10_dbm_is_megahertz_wide_and_asymmetric():
    # +10 dBm from the generator is 1 mW in the film against the mode's 7.7 mW: ρ = 0.36, asin(ρ)/(2πτ)
    # = 0.29 MHz over the mode and √(1 + ν²) = 3.2 times that under it (docs/ring-physics.md §8)
    bench = bench_with(dataclasses.replace(STEADY, sidebands=False))
    oscillating(bench)
    axis, mode = zoom_on_mode(bench, 14e6, 10e3, 1401)
    below, above = locking_range(bench, axis, mode, 10.0, step_hz=0.05e6)
    assert 0.8e6 <= below + above <= 2e6  # MHz, and within a mode spacing
    assert below > 1.5 * above  # wider under the mode, since N < 0
    # the kind ring's Adler range is symmetric and far narrower (its mode oscillates at 23 mW)
    kind = bench_with(Behaviours.ideal())
    oscillating(kind)
    kind_axis, kind_mode = zoom_on_mode(kind, 14e6, 10e3, 1401)
    kind_below, kind_above = locking_range(kind, kind_axis, kind_mode, 10.0, step_hz=0.05e6)
    assert kind_below + kind_above < 0.5 * (below + above)


# --------------------------------------------------------------------------- time
@pytest.mark.parametrize(
    "span_hz, rbw_hz, points", [(200e6, 1e6, 401), (20e6, 30e3, 1001), (2e6, 3e3, 8192), (500e6, 3e6, 101)]
)
def test_the_bench_clock_advances_by_the_sweep_time_the_analyzer_reports(span_hz, rbw_hz, points):
    bench = bench_with()
    bench.timing = UNCHARGED  # the messages' own costs: tests/test_ring_parts.py
    view(bench, 3.0e9, span_hz, rbw_hz, points)
    send(bench, "analyzer", ":INIT")  # settle whatever the setup changed
    reported = float(send(bench, "analyzer", ":SWE:TIME?"))
    before = bench.clock_s
    send(bench, "analyzer", ":INIT")
    assert bench.clock_s - before == pytest.approx(reported, rel=1e-12)
    send(bench, "gen1", ":POW -20 dBm")  # a changed generator settles before the sweep
    before = bench.clock_s
    send(bench, "analyzer", ":INIT")
    assert bench.clock_s - before == pytest.approx(reported + bench.model.params.generator_settling_s, rel=1e-12)


@pytest.mark.slow
def test_realtime_sweeps_take_their_simulated_duration_in_the_wall_clock():
    bench = bench_with(realtime=True)
    view(bench, 3.0e9, 20e6, 30e3, 1001)
    send(bench, "analyzer", ":INIT")
    reported = float(send(bench, "analyzer", ":SWE:TIME?"))
    assert reported > 0.05
    with serve(bench) as server:
        connection = socket.create_connection(("127.0.0.1", server.ports["analyzer"]), timeout=5)
        started = time.monotonic()
        connection.sendall(b":INIT;*OPC?\n")
        assert connection.recv(64).strip() == b"1"
        took = time.monotonic() - started
        connection.close()
    assert took >= reported
    fast = bench_with()
    view(fast, 3.0e9, 20e6, 30e3, 1001)
    started = time.monotonic()
    send(fast, "analyzer", ":INIT;*OPC?")
    assert time.monotonic() - started < reported


def test_the_ideal_preset_is_the_kind_ring():
    kind = Behaviours.ideal()
    assert not any(dataclasses.astuple(kind))
    a, b = bench_with(kind, seed=2), bench_with(kind, seed=2)
    for bench in (a, b):
        view(bench, CENTER, 200e6, 1e6, 401)
        oscillating(bench)
    send(a, "analyzer", ":SWE:TIME 2000 s;:INIT;:SWE:TIME:AUTO ON")  # time passes on a, nothing drifts
    assert send(a, "ring", ":TEMP?") == send(b, "ring", ":TEMP?")
    assert np.array_equal(trace(a), trace(b))  # the same ring (noise off), whenever


# --------------------------------------------------------------------------- switches
def test_every_behaviour_switches_from_the_bench_config_and_labpgt_sim(tmp_path):
    from labpgt.bench import bench_config_toml, load_bench_config, simulated_bench_config
    from labpgt.bench.connect import embedded_simulator
    from labpgt.cli import build_parser
    from labpgt.errors import UserError

    path = tmp_path / "bench.toml"
    for physics, expected in (
        ({}, Behaviours()),
        ({"preset": "ideal"}, Behaviours.ideal()),
        ({"preset": "ideal", "drift": True}, dataclasses.replace(Behaviours.ideal(), drift=True)),
        ({"memory": False, "locking": False}, Behaviours(memory=False, locking=False)),
    ):
        path.write_text(bench_config_toml(simulated_bench_config(physics=physics)))
        config = load_bench_config(path)
        assert embedded_simulator(config).model.behaviours == expected
    path.write_text(bench_config_toml(simulated_bench_config(physics={"realtime": True})))
    assert embedded_simulator(load_bench_config(path)).realtime
    for bad in ('preset = "kind"', "drift = 1", "wobble = true"):
        path.write_text(
            f"{bench_config_toml(simulated_bench_config())}\n".replace("[simulator]\n", f"[simulator]\n{bad}\n")
        )
        with pytest.raises(UserError, match=r"\[simulator\]"):
            load_bench_config(path)
    args = build_parser().parse_args(["sim", "--ideal", "--realtime", "--without", "drift,sidebands"])
    assert args.ideal and args.realtime and args.without == ("drift", "sidebands")
    with pytest.raises(UserError, match="unknown behaviour 'wobble'"):
        build_parser().parse_args(["sim", "--without", "wobble"])


def test_a_simulated_device_is_chosen_from_the_bench_config_labpgt_sim_and_a_training_run(tmp_path):
    from labpgt.bench import bench_config_toml, load_bench_config, simulated_bench_config
    from labpgt.bench.connect import embedded_simulator
    from labpgt.cli import build_parser
    from labpgt.errors import UserError
    from labpgt.instruments.simulated.spread import DEVICE_RANGES, device_parameters
    from labpgt.reservoirs import make_reservoir
    from labpgt.trainer import TrainConfig

    nominal, drawn = device_parameters(0), device_parameters(2)
    assert nominal == RingParameters() and drawn == device_parameters(2) != nominal  # device 2 is one ring
    for name, (low, high, _) in DEVICE_RANGES.items():
        assert low <= getattr(drawn, name) <= high
    path = tmp_path / "bench.toml"
    path.write_text(bench_config_toml(simulated_bench_config(physics={"device": 2})))
    config = load_bench_config(path)
    assert config.simulator["device"] == 2 and embedded_simulator(config).model.params == drawn
    # the lab's set-up of a new ring: the field that puts its f_FMR at the design frequency
    assert config.instruments["ring"].settings["field_mt"] == drawn.default_field_mt != nominal.default_field_mt
    path.write_text(
        f"{bench_config_toml(simulated_bench_config())}\n".replace("[simulator]\n", "[simulator]\ndevice = -1\n")
    )
    with pytest.raises(UserError, match=r"\[simulator\]: device must be a whole number"):
        load_bench_config(path)
    assert build_parser().parse_args(["sim", "--device", "3"]).device == 3
    assert build_parser(["train"]).parse_args(["train", "--ring-device", "3"]).ring_device == 3
    with make_reservoir(TrainConfig.of(task="iris", reservoir="ring-sim", method="readout", ring_device=2)) as bench:
        assert bench.simulator.model.params == drawn and bench.config.simulator["device"] == 2
    for bad in (dict(ring_device=-1), dict(ring_device=1, reservoir="digital")):
        with pytest.raises(UserError, match="ring_device"):
            TrainConfig.of(**{"task": "iris", "reservoir": "ring-sim", "method": "readout", **bad})
