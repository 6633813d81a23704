"""The driver-kind table: each kind's send and read, and safety limits that follow the driver classes."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import labpgt.bench
from labpgt.bench import (
    KINDS,
    AnalyzerState,
    GeneratorState,
    RingState,
    SafetyError,
    connect_instruments,
    embedded_bench,
    load_bench_config,
    simulated_bench_config,
)
from labpgt.bench.connect import close_quietly
from labpgt.bench.kinds import RING_CONTROLLER, AttenuatorState, Role, state_of
from labpgt.bench.safety import check_config_safe, check_state_safe
from labpgt.instruments import RingController, SignalGenerator
from labpgt.instruments.drivers import read_confirmation

DATA = Path(__file__).resolve().parents[1] / "data"

SAMPLE_STATES = {  # away from the simulated bench's defaults, so a round trip proves something
    "signal-generator": GeneratorState(power_dbm=-12.5, frequency_hz=3.0015e9, output_on=True),
    "ring-controller": RingState(loop_gain_db=-3.5, field_mt=62.0, amplifier_on=False),
    "spectrum-analyzer": AnalyzerState(center_hz=3.01e9, span_hz=150e6, rbw_hz=3e5, points=201),
    "anritsu-signal-generator": GeneratorState(power_dbm=-12.5, frequency_hz=3.0015e9, output_on=True),
    "rs-spectrum-analyzer": AnalyzerState(center_hz=3.01e9, span_hz=150e6, rbw_hz=3e5, points=201),
    "tabor-signal-generator": GeneratorState(power_dbm=-12.5, frequency_hz=3.0015e9, output_on=True),
    "step-attenuator": AttenuatorState(attenuation_db=17.0),
    "weinschel-attenuator": AttenuatorState(attenuation_db=18.0),
    "minicircuits-attenuator": AttenuatorState(attenuation_db=17.25),
    "vca-attenuator": AttenuatorState(attenuation_db=17.5),
}
SIMULATED_MODELS = {  # the embedded bench that serves each kind's instruments
    "anritsu-signal-generator": dict(generator_models="mg369x"),
    "rs-spectrum-analyzer": dict(analyzer_model="fsx"),
    "tabor-signal-generator": dict(generator_models="tabor"),
    "step-attenuator": dict(ring_parts=("hp11713", "ls421")),
    "weinschel-attenuator": dict(ring_parts=("weinschel", "ls421")),
    "minicircuits-attenuator": dict(ring_parts=("rcdat", "ls421")),
    "vca-attenuator": dict(ring_parts=("vca", "ls421")),
}
#: kinds with no state message of their own: the coil supply's field is reached by the closed loop
#: (tests/test_ring_parts.py), sensors are only read
NOT_SENT = {name for name, kind in KINDS.items() if not kind.settable or kind.role is Role.MAGNET}


def test_importing_the_features_module_loads_no_instrument_library():
    code = (
        "import sys, labpgt.bench, labpgt.bench.features; "
        "print(sorted(m for m in ('pymeasure', 'pyvisa', 'h5py') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_public_name_imports_from_the_package():
    for name in labpgt.bench.__all__:
        assert getattr(labpgt.bench, name) is not None
    with pytest.raises(AttributeError):
        labpgt.bench.no_such_name  # noqa: B018


def test_every_kind_sent_a_state_has_a_sample_state():
    assert set(SAMPLE_STATES) == set(KINDS) - NOT_SENT
    assert NOT_SENT == {"coil-supply", "gaussmeter-421", "gaussmeter-425", "temperature-controller"}


@pytest.mark.parametrize("driver", sorted(set(KINDS) - NOT_SENT))
def test_send_then_read_round_trips_the_state_on_the_embedded_bench(driver):
    kind, sent = KINDS[driver], SAMPLE_STATES[driver]
    config = simulated_bench_config(embedded=True, **SIMULATED_MODELS.get(driver, {}))
    instruments = connect_instruments(config)
    try:
        name = next(n for n, inst in config.instruments.items() if inst.kind is kind)
        kind.send(instruments[name], sent)
        read_confirmation(instruments[name])
        got = kind.read(instruments[name])
    finally:
        for instrument in instruments.values():
            close_quietly(instrument)
    assert type(got) is kind.state_type and got == sent


@pytest.mark.parametrize(
    "driver_class, attribute, value, message",
    [
        (
            SignalGenerator,
            "MAX_FREQUENCY_HZ",
            3.78e9,
            r"gen4\.frequency_hz could be set to \[3\.77e\+09, 3\.79e\+09\], "
            r"outside the allowed \[250000, 3\.78e\+09\]",
        ),
        (SignalGenerator, "MIN_POWER_DBM", -20.0, r"gen1\.power_dbm could be set to \[-30, 0\], outside the allowed"),
        (RingController, "MAX_LOOP_GAIN_DB", 1.0, r"ring\.loop_gain_db could be set to 2, outside the allowed"),
    ],
)
def test_a_range_declared_on_a_driver_class_is_what_reading_a_config_enforces(
    monkeypatch, driver_class, attribute, value, message
):
    load_bench_config(DATA / "bench-sim.toml")
    monkeypatch.setattr(driver_class, attribute, value)
    with pytest.raises(SafetyError, match=message):
        load_bench_config(DATA / "bench-sim.toml")


def test_a_range_declared_on_a_driver_class_is_what_the_bench_enforces_before_sending(monkeypatch):
    with embedded_bench() as bench:
        bench.measure(np.zeros((1, 8)))
        monkeypatch.setattr(RingController, "MAX_FIELD_MT", 60.0)
        bench.apply({("ring", "field_mt"): 59.0})
        assert bench.instruments["ring"].field == pytest.approx(59.0)
        with pytest.raises(SafetyError, match=r"ring\.field_mt = 61 outside \[0, 60\]; nothing was sent"):
            bench.apply({("ring", "field_mt"): 61.0})
        assert bench.instruments["ring"].field == pytest.approx(59.0)


def test_a_state_looked_up_by_name_is_the_type_its_role_gives_it_or_refused():
    states = {"gen1": SAMPLE_STATES["signal-generator"], "att": SAMPLE_STATES["step-attenuator"]}
    assert state_of(states, "gen1", GeneratorState) is states["gen1"]
    with pytest.raises(TypeError, match="the state of att is AttenuatorState, not GeneratorState"):
        state_of(states, "att", GeneratorState)


def test_a_generator_without_max_power_is_refused_before_anything_is_sent():
    config = simulated_bench_config()
    wanted = {name: inst.starting_state(SAMPLE_STATES[inst.kind.name]) for name, inst in config.instruments.items()}
    check_state_safe(config, wanted)
    gen = config.generators[0]
    unlimited = dataclasses.replace(config.instruments[gen], max_power_dbm=None)
    config = dataclasses.replace(config, instruments={**config.instruments, gen: unlimited})
    with pytest.raises(SafetyError, match=f"{gen} has no max_power_dbm; nothing was sent"):
        check_state_safe(config, wanted)


def test_a_driver_subclass_narrowing_a_range_narrows_the_limit():
    class CautiousRing(RingController):
        MAX_LOOP_GAIN_DB = 0.0

    config = simulated_bench_config(embedded=True)
    cautious = dataclasses.replace(RING_CONTROLLER, driver_class=CautiousRing)
    ring = dataclasses.replace(config.instruments["ring"], kind=cautious)
    narrowed = dataclasses.replace(config, instruments={**config.instruments, "ring": ring})
    with pytest.raises(SafetyError, match=r"ring\.loop_gain_db .* outside the allowed \[-20, 0\]"):
        check_config_safe(narrowed)


def measure_with(analyzer_model, generator_models, U):
    config = simulated_bench_config(
        embedded=True, seed=5, analyzer_model=analyzer_model, generator_models=generator_models
    )
    with labpgt.bench.Bench(config) as bench:
        return bench.measure(U).spectra


@pytest.mark.parametrize("analyzer_model", ["esa", "x-series", "fsx"])
@pytest.mark.parametrize("generator_models", ["psg", "mg369x", ["psg", "mg369x", "exg", "e8267c"]])
def test_every_vendor_combination_measures_the_same_ring(analyzer_model, generator_models):
    """Each vendor's drivers and dialect in front of the same ring: the same seed gives the same spectra
    whoever made the generators; another analyzer shows the same ring's lines through its own filter,
    detector and floor (docs/ring-physics.md §9)."""
    U = np.random.default_rng(0).random((3, 8))
    spectra = measure_with(analyzer_model, generator_models, U)
    assert np.array_equal(spectra, measure_with(analyzer_model, "psg", U))
    reference = measure_with("esa", "psg", U)
    assert np.array_equal(spectra.argmax(axis=1), reference.argmax(axis=1))  # the same strongest line ...
    np.testing.assert_allclose(spectra.max(axis=1), reference.max(axis=1), atol=1.5)  # ... at the same power
    assert spectra.max() > -40  # the oscillation and the tones are there
