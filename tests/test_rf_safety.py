"""RF is off after every way a run can end; faults are retried whole and recorded once."""

import dataclasses
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from servedbench import generator_outputs, served_bench

from labpgt.bench import Bench, BenchFault, embedded_bench, simulated_bench_config
from labpgt.instruments.simulated.timing import UNCHARGED
from labpgt.runs import start_training
from labpgt.session import SessionReader
from labpgt.trainer import TrainConfig


def simulated_outputs(bench):
    """RF state straight from the simulated generators (not through the drivers)."""
    return [bool(g.output_on) for g in bench.simulator.generators]


def quick_config(**overrides):
    values = dict(
        task="iris", method="node", reservoir="ring-sim", steps=2, batch_size=4, eval_every=2, eval_train_samples=8
    )
    values.update(overrides)
    return TrainConfig.of(**values).resolved()


def test_rf_off_after_a_normal_end(tmp_path):
    bench = embedded_bench(seed=1)
    start_training(quick_config(), tmp_path / "run.h5", reservoir=bench)
    assert simulated_outputs(bench) == [False] * 4


def test_rf_off_after_an_exception_mid_run(tmp_path):
    bench = embedded_bench(seed=1)
    real_measure, calls = bench.measure, []

    def failing_measure(U):
        calls.append(len(U))
        if len(calls) == 3:
            assert simulated_outputs(bench) == [True] * 4  # measuring: RF on
            raise RuntimeError("something broke in the middle of a step")
        return real_measure(U)

    bench.measure = failing_measure
    with pytest.raises(RuntimeError):
        start_training(quick_config(), tmp_path / "run.h5", reservoir=bench)
    assert simulated_outputs(bench) == [False] * 4
    with SessionReader(tmp_path / "run.h5") as session:  # the record is still a valid session
        assert session.last_complete_step is None or session.last_complete_step >= -1


def test_a_failed_query_is_retried_whole_and_recorded_once_with_its_attempts():
    """The retried query measures what the clean one did. Its clock is left uncharged: on the charged clock
    the reconnection and the state read back take bench time, and the laboratory drifts meanwhile."""
    u = np.random.default_rng(3).random((3, 8))
    with embedded_bench(seed=2, noise=False) as clean:
        clean.simulator.timing = UNCHARGED
        expected = clean.measure(u)
    with embedded_bench(seed=2, noise=False) as bench:
        bench.simulator.timing = UNCHARGED
        analyzer = bench.instruments["analyzer"]
        real, failures = analyzer.sweep_and_read, iter([ValueError("garbled block"), None, None, None])

        def flaky(*args):
            failure = next(failures, None)
            if failure is not None:
                raise failure
            trace = real(*args)
            return trace

        analyzer.sweep_and_read = flaky
        got = bench.measure(u)
    np.testing.assert_array_equal(got.spectra, expected.spectra)
    assert list(got.attempts) == [2, 1, 1]


def test_an_identity_read_that_fails_at_connection_is_retried():
    """Found by the reliability soak: a fault while the identities were read reconnected the instrument
    before the bench knew its field loops, and the run died of an AttributeError instead of retrying."""
    from labpgt.bench.connect import embedded_simulator, prepared
    from labpgt.instruments.simulated import SimulatedAdapter

    config = dataclasses.replace(simulated_bench_config(embedded=True, seed=0), backoff_s=0.0)
    simulator = embedded_simulator(config)
    instruments = {  # opened elsewhere, as a test or a script would: the bench asks their identities itself
        name: prepared(inst, inst.kind.driver_class(SimulatedAdapter(simulator[inst.simulated_name])))
        for name, inst in config.instruments.items()
    }
    generator = instruments["gen1"]
    real_ask, failures = generator.ask, [TimeoutError("VI_ERROR_TMO (-1073807339): Timeout expired")]

    def flaky_ask(command, *args, **kwargs):
        if command.strip() == "*IDN?" and failures:
            raise failures.pop()
        return real_ask(command, *args, **kwargs)

    generator.ask = flaky_ask
    with Bench(config, instruments) as bench:
        assert not failures  # the fault happened, during the identity read
        assert bench.measure(np.full((1, 8), 0.5)).attempts[0] == 1


def test_nan_or_short_traces_are_never_accepted_as_data():
    with embedded_bench(seed=2, noise=False) as bench:
        analyzer = bench.instruments["analyzer"]
        real = analyzer.sweep_and_read
        bad = [np.full(401, np.nan, np.float32), np.zeros(400, np.float32)]
        analyzer.sweep_and_read = lambda *a: bad.pop(0) if bad else real(*a)
        m = bench.measure(np.full((1, 8), 0.5))
    assert m.attempts[0] == 3 and np.all(np.isfinite(m.spectra))


def test_exhausted_retries_stop_cleanly_with_rf_off():
    config = dataclasses.replace(simulated_bench_config(embedded=True, seed=0), max_attempts=3, backoff_s=0.0)
    bench = Bench(config)
    bench.measure(np.full((1, 8), 0.5))
    assert simulated_outputs(bench) == [True] * 4

    def dead(*args):
        raise TimeoutError("VI_ERROR_TMO (-1073807339): Timeout expired before operation completed.")

    bench.instruments["analyzer"].sweep_and_read = dead
    with pytest.raises(BenchFault, match="after 3 attempts .*RF is off on every generator"):
        bench.measure(np.full((1, 8), 0.4))
    assert simulated_outputs(bench) == [False] * 4
    bench.close()


# ------------------------------------------------------------------ signals, over TCP like the lab
@pytest.fixture
def served(tmp_path):
    with served_bench(tmp_path) as bench:
        yield bench


@pytest.mark.slow
@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_rf_off_after_sigint_and_sigterm(served, tmp_path, signum, status):
    bench_path, resources = served
    out = tmp_path / "run.h5"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "labpgt",
            "train",
            "--bench",
            str(bench_path),
            "--task",
            "iris",
            "--steps",
            "200",
            "--batch-size",
            "8",
            "--quiet",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and generator_outputs(resources) != ["1"] * 4:
        time.sleep(0.2)
    assert generator_outputs(resources) == ["1"] * 4, "the run never started measuring"
    time.sleep(0.5)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert "Traceback" not in err and "--resume" in err
    assert generator_outputs(resources) == ["0"] * 4
    with SessionReader(out) as session:
        assert not session.completed
