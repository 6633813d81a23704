"""Small session files for tests: a synthetic loop-gain sweep, and files as labpgt-session/1 and /2 wrote them."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

from labpgt.recording import Checkpoint, QueryLabels
from labpgt.reservoir import Measurement
from labpgt.session import SessionWriter, SweepWriter

#: a training recorded by labpgt-session/1 and the numpy engine (iris, node, ring-sim, 2 steps): the example
#: data/ shipped until labpgt-session/3
V1_EXAMPLE = Path(__file__).resolve().parent / "data" / "session-v1.h5"
SWEEP_BINS, SWEEP_POINTS = 16, 101
SWEEP_FREQUENCIES = np.linspace(2.9e9, 3.1e9, SWEEP_POINTS)
GAINS = np.linspace(-2.0, 2.0, 9)
MARGINS = np.where(GAINS <= 0.0, 10.0, 60.0)  # jumps between 0 and 0.5 dB
THRESHOLD = 0.2  # where the margin rises through 30 dB, linearly interpolated


def sweep_description(points: int) -> dict:
    return {
        "instrument": "ring",
        "setting": "loop_gain_db",
        "start": -2.0,
        "stop": 2.0,
        "points": points,
        "tones": False,
        "margin_db": 30.0,
        "fixed": {"ring.field_mt": 50.0},
    }


def sweep_config(points: int = len(GAINS)) -> dict:
    return {
        "sweep": sweep_description(points),
        "bench": {"bench": {"name": "test bench"}},
        "reservoir": {"input_width": 1, "feature_width": SWEEP_BINS, "setting_names": ["ring.loop_gain_db"]},
    }


def sweep_trace(rng, i: int) -> np.ndarray:
    trace = rng.normal(-90.0, 0.5, SWEEP_POINTS)
    trace[40 + i] = np.median(trace) + MARGINS[i]  # a line that stands MARGINS[i] above the median
    return trace.astype(np.float32)


def one_point(rng, i: int):
    """``(labels, U, measurement, point values)`` of point i of the synthetic sweep."""
    trace = sweep_trace(rng, i)
    measurement = Measurement(
        features=rng.random((1, SWEEP_BINS)),
        spectra=trace[None, :],
        frequencies=SWEEP_FREQUENCIES,
        settings=np.array([[GAINS[i]]]),
        started=None,
        attempts=np.ones(1, dtype=np.int32),
    )
    values = {
        "value": float(GAINS[i]),
        "peak_frequency_hz": float(SWEEP_FREQUENCIES[40 + i]),
        "peak_power_dbm": float(trace[40 + i]),
        "margin_db": float(trace[40 + i] - np.median(trace)),
    }
    return QueryLabels.of(i, "sweep", 1, layer=-1), np.array([[i / (len(GAINS) - 1)]]), measurement, values


def write_sweep(path, points: int = len(GAINS), seed: int = 0) -> list[dict]:
    """A loop-gain sweep of ``points`` of the 9 planned points, as :class:`SweepWriter` records it."""
    rng = np.random.default_rng(seed)
    recorded = []
    with SweepWriter.create(
        path, sweep_config(), frequencies=SWEEP_FREQUENCIES, instruments={"ring": "SIM,RING,0,1"}
    ) as writer:
        for i in range(points):
            labels, U, measurement, values = one_point(rng, i)
            writer.record_queries(labels, U, measurement)
            writer.record_point(i, values)
            recorded.append(values)
    return recorded


def write_v1_ring_sweep(path, points: int = len(GAINS), seed: int = 0) -> list[dict]:
    """A sweep as the ring sweep of labpgt-session/1 recorded it: a fake training config, one step (the
    point's summary in its extra) and one empty checkpoint per point."""
    rng = np.random.default_rng(seed)
    config = {
        "train": {
            "task": "sweep",
            "method": "sweep",
            "reservoir": "ring-sim",
            "steps": len(GAINS),
            "seed": 0,
            "bench": None,
            "sweep": {k: v for k, v in sweep_description(len(GAINS)).items() if k != "fixed"},
        },
        "bench": sweep_config()["bench"],
        "reservoir": sweep_config()["reservoir"],
    }
    recorded = []
    with SessionWriter.create(
        path, config, params_template={}, optimizer_template={}, frequencies=SWEEP_FREQUENCIES
    ) as writer:
        for i in range(points):
            labels, U, measurement, values = one_point(rng, i)
            writer.record_queries(labels, U, measurement)
            extra = dict(values, threshold_gain_db=THRESHOLD) if i == len(GAINS) - 1 else values
            writer.record_step(i, extra)
            writer.checkpoint(Checkpoint(i, {}, {}, {}, {"value": values["value"]}))
            recorded.append(values)
    downgrade_to_v1(path)
    return recorded


#: how labpgt-session/2 compressed its query rows and wrote its files
V2_ROW_FILTER = hdf5plugin.Blosc2(cname="zstd", clevel=3, filters=hdf5plugin.Blosc2.SHUFFLE)
V3_ONLY_ATTRIBUTES = {
    "reader_needs",
    "NX_class",
    "default",
    "units",
    "long_name",
    "CLASS",
    "NAME",
    "REFERENCE_LIST",
    "DIMENSION_LIST",
}


def downgrade_to_v2(path) -> None:
    """Rewrite a /3 file as labpgt-session/2 wrote it: HDF5's latest format (``libver="latest"``), the compressed
    datasets through Blosc2/Zstd (a plugin), and none of queries/index, units, dimension scales, NeXus plots, the
    record of pauses."""
    path = Path(path)
    old = path.with_name(path.name + ".v2-tmp")
    with h5py.File(path, "r") as src, h5py.File(old, "w", libver="latest") as dst:
        _copy_v2_attributes(src, dst)

        def visit(name, obj):
            if name.split("/")[0] in ("plots", "suspensions", "checks") or name == "queries/index":
                return
            if isinstance(obj, h5py.Group):
                _copy_v2_attributes(obj, dst.require_group(name))
                return
            compressed = obj.chunks is not None and obj.id.get_create_plist().get_nfilters() > 0
            ds = dst.create_dataset(
                name,
                shape=obj.shape,
                maxshape=obj.maxshape,
                chunks=obj.chunks,
                dtype=obj.dtype,
                **(V2_ROW_FILTER if compressed else {}),
            )
            if obj.size:
                ds[()] = obj[()]
            _copy_v2_attributes(obj, ds)

        src.visititems(visit)
        dst.attrs["schema"] = "labpgt-session/2"
    os.replace(old, path)


def _copy_v2_attributes(src, dst) -> None:
    for key in src.attrs:
        if key not in V3_ONLY_ATTRIBUTES:
            dst.attrs[key] = src.attrs[key]


def downgrade_to_v1(path) -> None:
    """Make a /3 training file what labpgt-session/1 wrote: a /2 file (:func:`downgrade_to_v2`) without kind,
    queries/layer and /token, steps/validation_*, checkpoints/method and query times."""
    downgrade_to_v2(path)
    with h5py.File(path, "r+") as f:
        del f.attrs["kind"]
        del f["queries/layer"], f["queries/token"], f["checkpoints/method"]
        del f["queries/wall_seconds"], f["queries/sim_time"], f["queries/temperature_c"], f["queries/field_mt"]
        del f["steps/validation_loss"], f["steps/validation_accuracy"]
        f.attrs["schema"] = "labpgt-session/1"


def dataset_names(path) -> set[str]:
    names = set()
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: names.add(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def train_until(step: int, config, path) -> None:
    """Train ``config`` into a session at ``path`` and stop it through the run engine once step ``step`` is
    recorded (before the next measurement, so that its checkpoint is written) — a run lost with its worker, or
    stopped by Ctrl+C."""
    from labpgt.engine import RunEngine, StepEnded, StopReason

    engine = RunEngine()

    def stop_after(event):
        if isinstance(event, StepEnded) and event.step == step:
            engine.request_stop(StopReason(f"the test stops after step {step}"))

    outcome = engine.subscribe(stop_after).train(config, path)
    assert outcome.stopped is not None, "the run ended before the step it was to stop after"


def config_for(method: str, **settings):
    """The config of ``method`` with those of ``settings`` that apply to it (a readout takes no steps), as a
    benchmark gives one setting to every method that has it."""
    from labpgt.benchmark import applies_to
    from labpgt.trainer import TrainConfig

    return TrainConfig.of(method=method, **{k: v for k, v in settings.items() if applies_to(k, method)})
