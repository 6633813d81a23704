"""The characterisation sweep outside any window: planning against a bench config, measuring, recording, RF safety."""

import math

import numpy as np
import pytest

from labpgt.bench import SafetyError, simulated_bench_config
from labpgt.engine import Connected, Measured, PointEnded, RunEngine, StopReason
from labpgt.errors import UserError
from labpgt.inspection import inspect_session
from labpgt.runs import default_session_path
from labpgt.session import SessionReader
from labpgt.sweeps import SweepSpec, plan_sweep

CONFIG = simulated_bench_config(embedded=True, seed=3)


class Watcher:
    """A subscriber of the engine's sweep: the bench it connected (``on_connect(bench)``, once), each trace
    (``on_trace(trace)``) and each point (``on_point(point, total)``)."""

    def __init__(self, on_connect=None, on_trace=None, on_point=None):
        self.bench = None
        self.on_connect, self.on_trace, self.on_point = on_connect, on_trace, on_point

    def __call__(self, event):
        if isinstance(event, Connected):
            self.bench = event.reservoir
            if self.on_connect:
                self.on_connect(self.bench)
        elif isinstance(event, Measured) and self.on_trace:
            self.on_trace(event.measurement.spectra[0])
        elif isinstance(event, PointEnded) and self.on_point:
            self.on_point(event.point, event.points)


def sweep(spec, path, watcher=None, engine=None):
    """``spec`` on CONFIG's bench through the run engine, recorded at ``path``: ``(outcome, watcher)``."""
    watcher = watcher or Watcher()
    engine = (engine or RunEngine()).subscribe(watcher)
    return engine.sweep(spec, CONFIG, path), watcher


def simulated_outputs(bench):
    """RF state straight from the simulated generators (not through the drivers)."""
    return [bool(g.output_on) for g in bench.simulator.generators]


def test_a_ring_sweep_is_free_running_and_a_generator_sweep_has_its_tones():
    gain = plan_sweep(CONFIG, "loop_gain_db", -1, 1, 5)
    assert (gain.instrument, gain.tones) == ("ring", False)
    assert plan_sweep(CONFIG, "field_mt", 40, 60, 3, tones=True).tones
    power = plan_sweep(CONFIG, "power_dbm", -30, -10, 3, instrument="gen3")
    assert (power.instrument, power.tones) == ("gen3", True)
    assert plan_sweep(CONFIG, "frequency_hz", 3e9, 3.01e9, 3).instrument == "gen1"  # none named: the first
    np.testing.assert_array_equal(gain.values, [-1, -0.5, 0, 0.5, 1])


@pytest.mark.parametrize(
    "setting, name, fragment",
    [
        (
            "frequency_hz",
            "gen9",
            "no instrument 'gen9' with a frequency_hz to sweep; those with one are gen1, gen2, gen3, gen4",
        ),
        ("power_dbm", "ring", "no instrument 'ring' with a power_dbm to sweep"),
        ("loop_gain_db", "gen1", "those with one are ring"),
    ],
)
def test_an_instrument_the_bench_cannot_sweep_is_one_line_naming_those_it_can(setting, name, fragment):
    with pytest.raises(UserError, match=fragment):
        plan_sweep(CONFIG, setting, 0, 1, 3, instrument=name)


def test_a_bench_without_a_ring_has_no_gain_to_sweep():
    instruments = {n: c for n, c in CONFIG.instruments.items() if n != "ring"}
    no_ring = type(CONFIG)(**{**CONFIG.__dict__, "instruments": instruments})
    with pytest.raises(UserError, match="no instrument whose loop_gain_db can be swept"):
        plan_sweep(no_ring, "loop_gain_db", 0, 1, 3)


@pytest.mark.parametrize(
    "values, fragment",
    [
        (dict(points=1), "at least 2 points"),
        (dict(stop=math.nan), "finite"),
        (dict(start=-math.inf), "finite"),
        (dict(margin_db=0.0), "positive number of dB"),
    ],
)
def test_a_spec_refuses_what_is_not_a_sweep(values, fragment):
    with pytest.raises(UserError, match=fragment):
        SweepSpec(**{**dict(instrument="ring", setting="loop_gain_db", start=-1.0, stop=1.0, points=3), **values})


@pytest.mark.parametrize(
    "setting, name, start, stop, fragment",
    [
        ("loop_gain_db", None, -3, 12, r"ring.loop_gain_db = 12 outside \[-20, 10\]"),
        ("power_dbm", "gen2", -30, 10, "gen2: 10 dBm exceeds max_power_dbm 5"),
    ],
)
def test_a_value_out_of_limits_is_refused_before_anything_is_sent_or_written(
    tmp_path, setting, name, start, stop, fragment
):
    spec = plan_sweep(CONFIG, setting, start, stop, 3, instrument=name)
    sent = []

    def listen(bench):  # from the moment the bench is connected
        for driver in bench.instruments.values():
            driver.write = lambda command, **kwargs: sent.append(command)

    with pytest.raises(SafetyError, match=fragment):
        sweep(spec, tmp_path / "runs" / "sweep.h5", Watcher(on_connect=listen))
    assert sent == []
    assert list(tmp_path.iterdir()) == []


def test_a_generator_sweep_measures_with_rf_on_and_leaves_it_off(tmp_path):
    spec = plan_sweep(CONFIG, "frequency_hz", 3.00e9, 3.02e9, 3, instrument="gen2")
    during = []
    watcher = Watcher(on_trace=lambda trace: during.append(simulated_outputs(watcher.bench)))
    outcome, _ = sweep(spec, tmp_path / "g.h5", watcher)
    result, bench = outcome.result, watcher.bench
    assert during == [[True] * 4] * 3
    assert simulated_outputs(bench) == [False] * 4
    assert [bench.instruments[name].read_state()[2] for name in CONFIG.generators] == [False] * 4  # read back
    rbw = CONFIG.instruments["analyzer"].settings["rbw_hz"]
    for point in result.points:  # the strongest line is never an injected tone
        tones = [
            point.value if name == "gen2" else CONFIG.instruments[name].settings["frequency_hz"]
            for name in CONFIG.generators
        ]
        assert min(abs(point.peak_frequency_hz - tone) for tone in tones) > 5 * rbw
    with SessionReader(tmp_path / "g.h5") as reader:
        assert reader.sweep["instrument"] == "gen2" and reader.sweep["tones"] is True
        np.testing.assert_array_equal(reader.queries(fields=("settings",))["settings"][:, 0], spec.values)


def test_a_ring_sweep_measures_with_every_generator_off(tmp_path):
    spec = plan_sweep(CONFIG, "loop_gain_db", -1, 1, 3)
    during = []
    watcher = Watcher(
        on_connect=lambda bench: bench.query({}, rf=True),  # the generators were on before it
        on_trace=lambda trace: during.append(simulated_outputs(watcher.bench)),
    )
    sweep(spec, tmp_path / "r.h5", watcher)
    assert during == [[False] * 4] * 3 and simulated_outputs(watcher.bench) == [False] * 4


def test_a_stopped_sweep_is_a_valid_incomplete_session_with_rf_off(tmp_path):
    spec = plan_sweep(CONFIG, "power_dbm", -30, -10, 8, instrument="gen1")
    reported = []
    engine = RunEngine()
    engine.stop_when(lambda: len(reported) >= 3, StopReason("the test stops it"))
    outcome, watcher = sweep(
        spec, tmp_path / "s.h5", Watcher(on_point=lambda point, total: reported.append(total)), engine
    )
    result = outcome.result
    assert outcome.stopped.why == "the test stops it" and simulated_outputs(watcher.bench) == [False] * 4
    assert not result.completed and [p.index for p in result.points] == [0, 1, 2] and reported == [8] * 3
    info = inspect_session(tmp_path / "s.h5")
    assert info["kind"] == "sweep" and not info["completed"] and info["points"] == 3 and info["queries"] == 3


def test_an_error_mid_sweep_turns_rf_off_and_keeps_the_points_measured(tmp_path):
    spec = plan_sweep(CONFIG, "power_dbm", -30, -10, 5, instrument="gen1")
    traces = []

    def failing(trace):
        traces.append(trace)
        if len(traces) == 3:
            raise RuntimeError("the live view broke")

    watcher = Watcher(on_trace=failing)
    with pytest.raises(RuntimeError, match="live view"):
        sweep(spec, tmp_path / "e.h5", watcher)
    assert simulated_outputs(watcher.bench) == [False] * 4
    with SessionReader(tmp_path / "e.h5") as reader:  # the point measured when the view broke is kept too
        assert reader.n_points == 3 and not reader.completed


def test_each_point_records_its_query_with_role_sweep(tmp_path):
    spec = plan_sweep(CONFIG, "loop_gain_db", -1, 1, 4)
    result = sweep(spec, tmp_path / "q.h5")[0].result
    with SessionReader(tmp_path / "q.h5") as reader:
        q = reader.queries()
        assert [reader.role_name(c) for c in q["role"]] == ["sweep"] * 4 and list(q["step"]) == [0, 1, 2, 3]
        assert list(q["layer"]) == [-1] * 4 and list(q["attempts"]) == [1] * 4 and np.all(np.isfinite(q["timestamp"]))
        np.testing.assert_allclose(q["u"][:, 0], [0, 1 / 3, 2 / 3, 1])
        points = reader.points()
        for name, column in result.columns().items():
            np.testing.assert_array_equal(points[name], column)
        assert reader.sweep["fixed"] == spec.description(CONFIG)["fixed"]


def test_a_sweeps_default_session_path_never_names_an_existing_file(tmp_path):
    first = default_session_path("sweep", "field_mt", runs_dir=tmp_path)
    assert first.parent == tmp_path and first.name.endswith("-sweep-field_mt.h5")
    first.write_bytes(b"taken")
    second = default_session_path("sweep", "field_mt", runs_dir=tmp_path)
    assert (
        second != first and not second.exists() and second.name.endswith(("-sweep-field_mt.h5", "-sweep-field_mt-2.h5"))
    )
