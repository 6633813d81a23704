"""What one does with a session file besides replay: record a training into one, resume it, inspect it, export it.

* :func:`record_training` / :func:`resume_training` — run a :class:`~labpgt.trainer.Trainer` with a
  :class:`~labpgt.session.SessionWriter` as its recorder (``labpgt train --out`` / ``--resume``);
* :func:`inspect_session` / :func:`format_inspection` — a summary as plain data and as text;
* :func:`export_session` — CSV and ``.npy`` files for tools that do not read HDF5.

Inspect and export open the file read-only and never modify it. The schema itself is owned by
:mod:`labpgt.session`.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

from labpgt.session import STEP_FLOAT_COLUMNS, STEP_INT_COLUMNS, SessionReader, SessionWriter, params_sha256


# --------------------------------------------------------------------------- recording and resuming
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
    :meth:`SessionWriter.open_for_resume`). Bit-identical continuation needs every RNG state in the
    checkpoint — the digital reservoir's noise is; the simulated ring's noise is not (yet).
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


# --------------------------------------------------------------------------- inspect
def inspect_session(path) -> dict:
    """A summary of a session file as JSON-able data.

    ``final_params_sha256`` is :func:`labpgt.session.params_sha256` of the last checkpoint's
    parameters (SHA-256 of every array of ``Model.state_dict()`` as little-endian float64 bytes,
    concatenated in sorted name order), ``None`` before the first checkpoint. ``steps`` counts
    complete steps; ``queries`` the valid query rows.
    """
    path = Path(path)
    with SessionReader(path) as session:
        train = session.config["train"]
        bench = session.config.get("bench") or {}
        roles = session.queries(fields=("role",))["role"]
        counts = np.bincount(roles, minlength=len(session.role_names))
        steps = session.steps()
        evaluated = steps["test_accuracy"][~np.isnan(steps["test_accuracy"])]
        last = session.last_checkpoint()
        size = path.stat().st_size
        return {
            "path": str(path),
            "schema": session.schema,
            "task": train.get("task"),
            "method": train.get("method"),
            "reservoir": train.get("reservoir"),
            "bench": (bench.get("bench") or {}).get("name"),
            "created": session.created,
            "versions": session.versions,
            "instruments": session.instruments,
            "steps": 0 if session.last_complete_step is None else session.last_complete_step + 1,
            "planned_steps": session.planned_steps,
            "completed": session.completed,
            "queries": int(session.n_queries),
            "queries_by_role": {session.role_name(code): int(n) for code, n in enumerate(counts) if n},
            "test_accuracy": float(evaluated[-1]) if evaluated.size else None,
            "final_params_sha256": params_sha256(last.params) if last is not None else None,
            "spectrum_points": int(session.frequencies.size),
            "size_bytes": int(size),
            "bytes_per_query": size / session.n_queries if session.n_queries else None,
        }


def format_inspection(info: dict) -> str:
    """A human summary of :func:`inspect_session`'s dict."""
    accuracy = "not evaluated" if info["test_accuracy"] is None else f"{info['test_accuracy']:.4f}"
    state = "complete" if info["completed"] else "interrupted"
    reservoir = info["reservoir"] + (f" ({info['bench']})" if info.get("bench") else "")
    per_query = "-" if info["bytes_per_query"] is None else f"{info['bytes_per_query']:.0f} B/query"
    lines = [
        f"{info['path']}  [{info['schema']}]  created {info['created']}",
        f"  task {info['task']}, method {info['method']}, reservoir {reservoir}",
        f"  steps {info['steps']} of {info['planned_steps']} ({state}); last test accuracy {accuracy}",
        f"  queries {info['queries']}: " + ", ".join(f"{k} {v}" for k, v in info["queries_by_role"].items()),
        f"  size {info['size_bytes'] / 1e6:.2f} MB ({per_query}), spectra of {info['spectrum_points']} points",
        f"  final params sha256 {info['final_params_sha256'] or '-'}",
    ]
    if info["instruments"]:
        lines += [f"  {name}: {idn}" for name, idn in info["instruments"].items()]
    return "\n".join(lines)


# --------------------------------------------------------------------------- export
EXPORT_README = """\
Exported from the labpgt session {source} (schema {schema}).

steps.csv        one row per optimizer step: {step_columns};
                 NaN where the trainer reported nothing (accuracies between evaluations).
queries.csv      one row per reservoir measurement: index, step, role, direction (-1: none),
                 sample (training-split index; n_train + i for test sample i), timestamp (Unix s),
                 attempts, then the instrument settings sent, one column per setting.
u.npy            float64 (n, d): the reservoir inputs, row i = query i.
features.npy     float64 (n, m): the features the model saw.
spectra.npy      float32 (n, P): the traces in dBm (P = 0 without instruments).
frequencies.npy  float64 (P,): the frequency axis of every spectrum, in Hz.
config.json      the training and bench configuration of the run.
"""


def export_session(path, out_dir) -> list[Path]:
    """Write steps.csv, queries.csv, u/features/spectra/frequencies .npy, config.json and README.txt
    into ``out_dir`` (created if needed); returns the paths written."""
    out = Path(out_dir)
    with SessionReader(path) as session:  # a file that is no session is refused before anything is made
        out.mkdir(parents=True, exist_ok=True)
        written = [_export_steps(session, out / "steps.csv"), _export_queries(session, out / "queries.csv")]
        n = session.n_queries
        for name, column in (("u.npy", "u"), ("features.npy", "features"), ("spectra.npy", "spectrum")):
            written.append(_export_array(session, column, n, out / name))
        np.save(out / "frequencies.npy", session.frequencies)
        (out / "config.json").write_text(json.dumps(session.config, indent=2, sort_keys=True) + "\n")
        (out / "README.txt").write_text(EXPORT_README.format(
            source=Path(path).name, schema=session.schema,
            step_columns=", ".join(STEP_INT_COLUMNS + STEP_FLOAT_COLUMNS)))
    return written + [out / "frequencies.npy", out / "config.json", out / "README.txt"]


def _export_steps(session, target: Path) -> Path:
    steps = session.steps()
    names = list(STEP_INT_COLUMNS + STEP_FLOAT_COLUMNS)
    with open(target, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for row in range(session.n_steps):
            writer.writerow([repr(steps[name][row].item()) if name in STEP_FLOAT_COLUMNS else int(steps[name][row])
                             for name in names])
    return target


def _export_queries(session, target: Path) -> Path:
    fields = ("step", "role", "direction", "sample", "timestamp", "attempts", "settings")
    with open(target, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "step", "role", "direction", "sample", "timestamp", "attempts",
                         *session.setting_names])
        for start, q in session.iter_queries(fields):
            roles = [session.role_name(code) for code in q["role"]]
            for i in range(len(q["step"])):
                writer.writerow([start + i, int(q["step"][i]), roles[i], int(q["direction"][i]), int(q["sample"][i]),
                                 repr(float(q["timestamp"][i])), int(q["attempts"][i]),
                                 *(repr(float(v)) for v in q["settings"][i])])
    return target


def _export_array(session, column: str, n: int, target: Path) -> Path:
    dataset = session.dataset(f"queries/{column}")
    if n == 0 or 0 in dataset.shape[1:]:
        np.save(target, np.zeros((n,) + dataset.shape[1:], dtype=dataset.dtype))
        return target
    array = np.lib.format.open_memmap(target, mode="w+", dtype=dataset.dtype, shape=(n,) + dataset.shape[1:])
    for start in range(0, n, 1 << 14):
        stop = min(n, start + (1 << 14))
        array[start:stop] = dataset[start:stop]
    array.flush()
    del array
    return target
