"""Bench config, encoding, safety limits and features; the embedded bench as a reservoir."""

import dataclasses
import re
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from labpgt.bench import (
    KINDS,
    SafetyError,
    bench_config_toml,
    embedded_bench,
    load_bench_config,
    simulated_bench_config,
    trace_features,
)
from labpgt.bench.config import parse_bench_config, tomllib
from labpgt.cli import main
from labpgt.errors import UserError

DATA = Path(__file__).resolve().parents[1] / "data"


def test_bench_sim_toml_is_exactly_what_labpgt_sim_serves():
    from_file = load_bench_config(DATA / "bench-sim.toml").to_dict()
    built_in = simulated_bench_config(embedded=False).to_dict()
    from_file["bench"].pop("name"), built_in["bench"].pop("name")
    assert from_file == built_in


def test_lab_example_config_is_valid_and_shows_every_driver_kind():
    config = load_bench_config(DATA / "bench-lab-example.toml")
    assert config.generators == ["gen1", "gen2", "gen3"] and config.analyzer == "analyzer"
    text = (DATA / "bench-lab-example.toml").read_text()
    assert all(f'driver = "{kind}"' in text for kind in KINDS)
    # the commented-out R&S analyzer is a valid replacement for the active one
    block = text.split("use this table instead of the one above.\n")[1].split("\n\n")[0]
    raw = tomllib.loads(text)
    raw["instruments"]["analyzer"] = tomllib.loads("\n".join(line[2:] for line in block.splitlines()))["instruments"][
        "analyzer"
    ]
    assert parse_bench_config(raw).instruments["analyzer"].kind is KINDS["rs-spectrum-analyzer"]


def test_the_tabor_example_is_a_bench_of_a_labs_parts_with_lucid_generators():
    config = load_bench_config(DATA / "bench-tabor-example.toml")
    kinds = {inst.kind.name for inst in config.instruments.values()}
    assert {config.instruments[name].kind.name for name in config.generators} == {"tabor-signal-generator"}
    assert {"coil-supply", "temperature-controller"} <= kinds and config.ring is None and config.gaussmeter
    assert any(config.instruments[name].kind.role.value == "attenuator" for name in config.ring_controls)


def write(tmp_path, text):
    path = tmp_path / "bench.toml"
    path.write_text(textwrap.dedent(text))
    return path


VALID = """
    [instruments.sa]
    driver = "spectrum-analyzer"
    resource = "sim::analyzer"
    [instruments.g]
    driver = "signal-generator"
    resource = "sim::gen1"
    max_power_dbm = 0.0
    [safety]
    max_total_power_dbm = 0.0
    [[encoding]]
    instrument = "g"
    setting = "power_dbm"
    min = -30.0
    max = -5.0
"""


@pytest.mark.parametrize(
    "text, message",
    [
        ("[instruments\n", "not valid TOML"),
        (VALID.replace('"spectrum-analyzer"', '"oscilloscope"'), "unknown driver 'oscilloscope'"),
        (VALID.replace('resource = "sim::gen1"', ""), "missing resource"),
        (VALID.replace("max = -5.0", "max = 3.0"), "above its max_power_dbm"),
        (VALID.replace('setting = "power_dbm"', 'setting = "phase"'), "no encodable setting 'phase'"),
        (VALID.replace("max_total_power_dbm = 0.0", ""), "missing max_total_power_dbm"),
        (VALID.replace("min = -30.0", 'min = "low"'), "must be a finite number"),
        (VALID + "\n[extras]\nx = 1\n", "unknown table(s) extras"),
        (VALID.replace('driver = "signal-generator"', 'driver = ["signal-generator"]'), "unknown driver ['signal-gen"),
        (VALID.replace('instrument = "g"', 'instrument = ["g"]'), "instrument ['g'] is not in [instruments]"),
        (
            VALID.replace("max_power_dbm = 0.0", "max_power_dbm = 0.0\nfrequency_hz = 30e9"),
            "g.frequency_hz could be set to 3e+10, outside the allowed [250000, 2e+10]",
        ),
        (VALID.replace("max_power_dbm = 0.0", 'max_power_dbm = 0.0\noutput = "off"'), "output must be true or false"),
        (
            VALID.replace('resource = "sim::analyzer"', 'resource = "sim::analyzer"\noutput = true'),
            "unknown setting 'output' for a spectrum-analyzer",
        ),
    ],
)
def test_malformed_bench_configs_give_one_clear_message(tmp_path, text, message):
    with pytest.raises(UserError, match=re.escape(message)):
        load_bench_config(write(tmp_path, text))


def test_written_toml_reads_back_to_the_same_config_whatever_the_names(tmp_path):
    config = simulated_bench_config(embedded=False).with_resources({"gen1": 'TCPIP::lab\\"2"::5025::SOCKET'})
    config = dataclasses.replace(config, name='YIG "ring",\nlab 2.14 [β]')
    path = tmp_path / "bench.toml"
    path.write_text(bench_config_toml(config), encoding="utf-8")
    assert load_bench_config(path).to_dict() == config.to_dict()


def test_total_power_limit_is_checked_at_load(tmp_path):
    text = (
        VALID
        + """
    [instruments.g2]
    driver = "signal-generator"
    resource = "sim::gen2"
    max_power_dbm = 0.0
    [[encoding]]
    instrument = "g2"
    setting = "power_dbm"
    min = -30.0
    max = -1.0
    """
    )
    with pytest.raises(SafetyError, match="together reach"):
        load_bench_config(write(tmp_path, text))


@pytest.fixture
def run_cli(capsys):
    """``labpgt ARGS`` in this process (as ``python -m labpgt`` runs it): its exit status and stderr."""

    def run(*args):
        capsys.readouterr()
        status = main(list(args))
        return SimpleNamespace(returncode=status, stderr=capsys.readouterr().err)

    return run


@pytest.mark.parametrize("content", ["[instruments\n", VALID.replace('"spectrum-analyzer"', '"dmm"')])
def test_cli_bad_bench_is_one_line_exit_2(run_cli, tmp_path, content):
    path = write(tmp_path, content)
    before = path.read_bytes()
    result = run_cli("spectrum", "--bench", str(path), "--out", str(tmp_path / "s.png"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("labpgt: ")
    assert "Traceback" not in result.stderr and not (tmp_path / "s.png").exists()
    assert path.read_bytes() == before


def test_cli_unreachable_resource_is_one_line_exit_2(run_cli, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write(tmp_path, VALID.replace('"sim::analyzer"', f'"TCPIP::127.0.0.1::{port}::SOCKET"'))
    result = run_cli("spectrum", "--bench", str(path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "cannot reach sa at TCPIP::127.0.0.1" in result.stderr


def test_features_normalise_and_pool():
    trace = np.concatenate([np.full(10, -100.0), np.full(10, 0.0), np.full(5, -50.0)])
    features = trace_features(trace, bins=5, floor_dbm=-100.0, ceiling_dbm=0.0)
    np.testing.assert_allclose(features, [[0.0, 0.0, 1.0, 1.0, 0.5]])
    assert trace_features(np.zeros((3, 401)), 32, -100, 0).shape == (3, 32)


def generator_states(bench):
    return [bool(bench.instruments[n].output_enabled) for n in bench.config.generators]


def test_embedded_bench_measures_and_keeps_rf_off_when_not_measuring():
    bench = embedded_bench(seed=4)
    assert generator_states(bench) == [False] * 4  # off until the first settings are applied
    m = bench.measure(np.random.default_rng(0).random((3, bench.input_width)))
    assert m.features.shape == (3, 32) and m.spectra.shape == (3, 401) and m.spectra.dtype == np.float32
    assert m.settings.shape == (3, 8) and np.all(m.attempts == 1)
    assert generator_states(bench) == [True] * 4
    bench.close()
    assert generator_states(bench) == [False] * 4


def test_embedded_bench_is_bit_identical_for_a_seed():
    u = np.random.default_rng(1).random((4, 8))
    runs = []
    for _ in range(2):
        with embedded_bench(seed=9) as bench:
            runs.append(bench.measure(u))
    assert np.array_equal(runs[0].spectra, runs[1].spectra)
    assert np.array_equal(runs[0].features, runs[1].features)


def test_unsafe_setting_is_refused_before_anything_is_sent():
    with embedded_bench() as bench:
        bench.measure(np.zeros((1, 8)))
        sent = bench.instruments["gen1"].power
        with pytest.raises(SafetyError, match="exceeds max_power_dbm"):
            bench.apply({("gen1", "power_dbm"): 6.0, ("gen2", "power_dbm"): -20.0})
        assert bench.instruments["gen1"].power == sent
        assert bench.instruments["gen2"].power == pytest.approx(-30.0)
        with pytest.raises(SafetyError, match="total generator power"):
            bench.apply({(g, "power_dbm"): 4.0 for g in bench.config.generators})
        assert bench.instruments["gen1"].power == sent


def test_encoding_maps_unit_inputs_onto_settings():
    with embedded_bench() as bench:
        settings = bench.settings_for(np.array([0, 1, 0.5, 0, 0, 0, 0, 1.0]))
        assert settings[("gen1", "power_dbm")] == -30.0 and settings[("gen2", "power_dbm")] == 0.0
        assert settings[("gen3", "power_dbm")] == -15.0
        assert settings[("gen4", "frequency_hz")] == pytest.approx(3.79e9)
        m = bench.measure(np.array([[0, 0, 1, 0, 0, 0, 0.5, 0]]))
        peak = bench.frequencies[
            np.argmax(m.spectra[0][bench.frequencies > 3.75e9]) + np.argmax(bench.frequencies > 3.75e9)
        ]
        assert peak == pytest.approx(3.76e9, abs=1e6)  # gen3 at 0 dBm in the middle of its band
