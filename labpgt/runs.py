"""Runs recorded in a session file: start a training with its recorder, or continue an interrupted one.

* :func:`record_training` — run a :class:`~labpgt.trainer.Trainer` with a
  :class:`~labpgt.session.SessionWriter` as its recorder (``labpgt train --out``);
* :func:`resume_training` — continue an interrupted session after its last complete step
  (``labpgt train --resume``).
"""

from __future__ import annotations

import time

from labpgt.session import SessionWriter


def record_training(config, path, reservoir=None, instruments: dict | None = None, progress=None):
    """Train ``config`` (a TrainConfig) and record the session at ``path``; returns the TrainResult.

    ``reservoir`` defaults to the one the config names; it is closed at the end.
    ``instruments`` is stored as the root ``instruments`` attribute (e.g. ``*IDN?`` answers).
    """
    from labpgt.experiments import reservoir_factory_for, result_from_trainer
    from labpgt.trainer import Trainer

    reservoir = reservoir if reservoir is not None else reservoir_factory_for(config)()
    try:
        trainer = Trainer(config, reservoir)
        with SessionWriter.for_trainer(path, trainer, instruments=instruments) as writer:
            trainer.recorder = writer
            t0 = time.perf_counter()
            trainer.run(progress=progress)
        return result_from_trainer(trainer, time.perf_counter() - t0)
    finally:
        reservoir.close()


def resume_training(path, reservoir=None, progress=None):
    """Continue the interrupted session at ``path`` after its last complete step; returns the TrainResult.

    The queries of the half-done step are dropped from the file and measured again (see
    :meth:`SessionWriter.open_for_resume`). The continuation is bit-identical because the checkpoint
    holds every RNG state: the batches', the estimator's and the reservoir's (the digital
    reservoir's noise, and the simulated ring's through :meth:`labpgt.bench.Bench.get_rng_state`).
    """
    from labpgt.experiments import reservoir_factory_for, result_from_trainer
    from labpgt.trainer import TrainConfig, Trainer

    writer, checkpoint = SessionWriter.open_for_resume(path)
    with writer:
        config = TrainConfig(**writer.config["train"])
        reservoir = reservoir if reservoir is not None else reservoir_factory_for(config)()
        try:
            if checkpoint is None:
                trainer = Trainer(config, reservoir, recorder=writer)
            else:
                trainer = Trainer.restore(config, reservoir, checkpoint, recorder=writer)
            t0 = time.perf_counter()
            trainer.run(progress=progress)
            return result_from_trainer(trainer, time.perf_counter() - t0)
        finally:
            reservoir.close()


# --------------------------------------------------------------------------- a characterisation sweep
def record_sweep(spec, bench, path, progress=None, should_stop=None, on_trace=None):
    """Measure the sweep ``spec`` (a :class:`labpgt.sweeps.SweepSpec`) on ``bench`` and record it in a new
    session of kind ``sweep`` at ``path``; returns the :class:`~labpgt.sweeps.SweepResult`.

    Every value passes the bench's safety checks before the file is made: a value out of limits
    leaves nothing written. The record is closed however the sweep ends (a stopped one is a valid,
    incomplete session) and RF is off when this returns or raises. ``progress``, ``should_stop``
    and ``on_trace`` are those of :func:`labpgt.sweeps.run_sweep`. The bench stays open for its owner.
    """
    from pathlib import Path

    from labpgt.session import SweepWriter, sweep_session_config
    from labpgt.sweeps import check_sweep_safe, run_sweep

    check_sweep_safe(spec, bench)
    identities = bench.identities()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = sweep_session_config(spec.description(bench.config), bench.config)
    with SweepWriter.create(path, config, frequencies=bench.frequencies, instruments=identities) as writer:
        return run_sweep(spec, bench, writer, progress=progress, should_stop=should_stop, on_trace=on_trace)


def default_sweep_path(setting: str, runs_dir="data/runs"):
    """``<runs_dir>/<time>-sweep-<setting>.h5``, numbered ``-2``, ``-3`` … rather than name an existing file."""
    from pathlib import Path

    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-sweep-{setting}"
    path, n = Path(runs_dir) / f"{stem}.h5", 1
    while path.exists():
        n += 1
        path = path.with_name(f"{stem}-{n}.h5")
    return path
