"""What a session file holds, in brief: :func:`inspect_session` as plain data (``labpgt inspect --json``) and
:func:`format_inspection` as text (``labpgt inspect``), for each kind of session.

A training is described by its task, method, steps and final parameters; a sweep by what was
swept over which range, the points done of those planned, the peak of each point, and — when the
loop gain was swept — the auto-oscillation threshold (:func:`labpgt.sweeps.sweep_threshold`).
The file is opened read-only and never modified. ``labpgt sweep`` prints its points as they are
measured in the same rows (:func:`peak_line`, :func:`threshold_line`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from labpgt.session import SessionReader, params_sha256
from labpgt.session.liveness import being_written
from labpgt.session.schema import QUERY_TIME_COLUMNS
from labpgt.sweeps import THRESHOLD_SETTINGS, sweep_threshold

PEAK_COLUMNS = ("value", "peak_frequency_hz", "peak_power_dbm", "margin_db")
MAX_PEAK_LINES = 20
PEAK_TITLE = "  point        value   peak GHz   peak dBm  margin dB"


def inspect_session(path) -> dict:
    """A summary of a session file as JSON-able data (NaN is given as None).

    Both kinds: ``path``, ``schema``, ``kind``, ``created``, ``versions``, ``instruments``,
    ``completed``, ``in_progress`` (not complete, and a writer has it open now — see
    :mod:`labpgt.session.liveness`; incomplete and not in progress is interrupted), ``queries`` (valid
    query rows), ``queries_by_role``, ``spectrum_points``, ``size_bytes``, ``bytes_per_query``, ``time``
    (``measured_hours``: the queries' wall-clock time; ``bench_hours``: a simulated bench's clock at
    the last query, and ``bench_ms_per_query`` that over the queries; ``temperature_c``: the ring's
    lowest and highest recorded temperature; ``field_mt``: the lowest and highest field a gaussmeter
    read; each None where not recorded). A training also has ``task``, ``method``, ``reservoir``,
    ``bench``, ``steps`` (complete steps), ``planned_steps``, ``test_accuracy`` and
    ``final_params_sha256`` — :func:`labpgt.session.params_sha256` of the last checkpoint's
    parameters (SHA-256 of every array as little-endian float64 bytes, concatenated in sorted name
    order), ``None`` before the first checkpoint. A sweep has ``bench``, ``sweep`` (what was swept,
    as recorded), ``points``, ``planned_points``, ``peaks`` (one row per point: value, peak
    frequency and power, margin), ``strongest`` (the row of the highest peak) and ``threshold``
    (loop-gain sweeps: the auto-oscillation threshold in dB, None if not reached; else None).
    """
    path = Path(path)
    with SessionReader(path) as session:
        describe = _describe_sweep if session.kind == "sweep" else _describe_training
        info = {"path": str(path), "schema": session.schema, "kind": session.kind, **describe(session)}
        info["in_progress"] = not info["completed"] and being_written(path, _row_wall_times(session))
        size = path.stat().st_size
        info.update(
            {
                "spectrum_points": int(session.frequencies.size),
                "size_bytes": int(size),
                "bytes_per_query": size / session.n_queries if session.n_queries else None,
                "time": _query_time(session),
            }
        )
    return info


def _row_wall_times(session: SessionReader):
    """When each step (a sweep: each point) was written: the heartbeat of its writer."""
    return session.points()["wall_time"] if session.kind == "sweep" else session.steps()["wall_time"]


def _run_state(info: dict) -> str:
    if info["completed"]:
        return "complete"
    return "in progress" if info.get("in_progress") else "interrupted"


def _describe_training(session: SessionReader) -> dict:
    train = session.config["train"]
    steps = session.steps()
    last = session.last_checkpoint()
    prior = session.prior()
    info = {
        "task": train.get("task"),
        "method": train.get("method"),
        "reservoir": train.get("reservoir"),
        "bench": _bench_name(session),
        **_provenance(session),
        "steps": 0 if session.last_complete_step is None else session.last_complete_step + 1,
        "planned_steps": session.planned_steps,
        "completed": session.completed,
        **_query_counts(session),
        "test_accuracy": _last_evaluated(steps["test_accuracy"]),
        "final_params_sha256": params_sha256(last.params) if last is not None else None,
        "suspensions": session.suspensions(),
        "check_queries": len(session.checks()),
    }
    if "engine" in session.config:  # written by the JAX engine: the network, what was held out, what the method logged
        info.update(
            {
                "model": (session.config.get("model") or {}).get("model", "dense"),
                "holdout": train.get("holdout", "test"),
                "engine": session.config["engine"],
                "validation_accuracy": _last_evaluated(steps["validation_accuracy"]),
                "method_log": _method_log(session),
                "prior_rows": 0 if prior is None else int(len(prior[0])),
            }
        )
    return info


def _last_evaluated(column) -> float | None:
    evaluated = column[~np.isnan(column)]
    return float(evaluated[-1]) if evaluated.size else None


def _method_log(session: SessionReader) -> dict:
    """What the training method reported per step besides the standard columns (e.g. a twin's held-out
    error): for each numeric value, its last, mean, minimum and maximum and on how many steps."""
    series: dict[str, list] = {}
    for row in range(session.n_steps):
        extra = session.step_extra(row)
        for key, value in extra.items() if isinstance(extra, dict) else ():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                series.setdefault(key, []).append(float(value))
    return {
        key: {
            "last": values[-1],
            "mean": float(np.mean(values)),
            "min": min(values),
            "max": max(values),
            "steps": len(values),
        }
        for key, values in series.items()
    }


def _describe_sweep(session: SessionReader) -> dict:
    points = session.points()
    peaks = [{name: _finite_or_none(points[name][i]) for name in PEAK_COLUMNS} for i in range(session.n_points)]
    ranked = [row for row in peaks if row["peak_power_dbm"] is not None]
    return {
        "bench": _bench_name(session),
        **_provenance(session),
        "sweep": session.sweep,
        "points": session.n_points,
        "planned_points": session.planned_points,
        "completed": session.completed,
        **_query_counts(session),
        "peaks": peaks,
        "strongest": max(ranked, key=lambda row: float(row["peak_power_dbm"] or 0.0)) if ranked else None,
        "threshold": _threshold(session.sweep, points),
    }


def _threshold(sweep: dict | None, points: dict) -> float | None:
    """The loop gain where the margin first rises through ``margin_db``; None if never, or not a gain sweep."""
    if sweep is None:
        return None
    return _finite_or_none(sweep_threshold(sweep["setting"], points["value"], points["margin_db"], sweep["margin_db"]))


def _provenance(session: SessionReader) -> dict:
    return {"created": session.created, "versions": session.versions, "instruments": session.instruments}


def _query_counts(session: SessionReader) -> dict:
    roles = session.queries(fields=("role",))["role"]
    counts = np.bincount(roles, minlength=len(session.role_names))
    return {
        "queries": int(session.n_queries),
        "queries_by_role": {session.role_name(code): int(n) for code, n in enumerate(counts) if n},
    }


def _query_time(session: SessionReader) -> dict:
    """How long the queries took (wall clock, and on a simulated bench's clock) and the ring's temperature range."""
    times = session.queries(fields=QUERY_TIME_COLUMNS)
    wall, sim, temperature, field = (times[name][np.isfinite(times[name])] for name in QUERY_TIME_COLUMNS)
    return {
        "measured_hours": float(wall.sum() / 3600) if wall.size else None,
        "bench_hours": float(sim.max() / 3600) if sim.size else None,
        "bench_ms_per_query": float(1e3 * sim.max() / sim.size) if sim.size else None,
        "temperature_c": [float(temperature.min()), float(temperature.max())] if temperature.size else None,
        "field_mt": [float(field.min()), float(field.max())] if field.size else None,
    }


def _bench_name(session: SessionReader):
    bench = session.config.get("bench")
    described = bench.get("bench") if isinstance(bench, dict) else None
    return described.get("name") if isinstance(described, dict) else None


def _finite_or_none(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------- as text
def format_inspection(info: dict) -> str:
    """A human summary of :func:`inspect_session`'s dict."""
    lines = _training_lines(info) if info.get("kind", "training") == "training" else _sweep_lines(info)
    per_query = "-" if info["bytes_per_query"] is None else f"{info['bytes_per_query']:.0f} B/query"
    lines += [
        f"  queries {info['queries']}: " + ", ".join(f"{k} {v}" for k, v in info["queries_by_role"].items()),
        f"  size {info['size_bytes'] / 1e6:.2f} MB ({per_query}), spectra of {info['spectrum_points']} points",
    ]
    lines += _time_lines(info.get("time") or {})
    if info.get("kind") == "sweep":
        lines += _peak_lines(info["peaks"])
    else:
        lines.append(f"  final params sha256 {info['final_params_sha256'] or '-'}")
    if info["instruments"]:
        lines += [f"  {name}: {idn}" for name, idn in info["instruments"].items()]
    return "\n".join(lines)


def _training_lines(info: dict) -> list[str]:
    holdout = info.get("holdout", "test")
    accuracy = info.get(f"{holdout}_accuracy")
    accuracy = "not evaluated" if accuracy is None else f"{accuracy:.4f}"
    state = _run_state(info)
    reservoir = f"{info['reservoir']}" + (f" ({info['bench']})" if info.get("bench") else "")
    model = f"model {info['model']}, " if "model" in info else ""
    lines = [
        f"{info['path']}  [{info['schema']}]  created {info['created']}",
        f"  task {info['task']}, {model}method {info['method']}, reservoir {reservoir}",
        f"  steps {info['steps']} of {info['planned_steps']} ({state}); last {holdout} accuracy {accuracy}",
    ]
    if holdout != "test" and info.get("test_accuracy") is not None:
        lines.append(f"  test accuracy {info['test_accuracy']:.4f} (measured once, after the last step)")
    if info.get("prior_rows"):
        lines.append(f"  learned also from {info['prior_rows']} pairs of earlier sessions")
    for key, log in info.get("method_log", {}).items():
        lines.append(
            f"  {key}: last {log['last']:.4g}, mean {log['mean']:.4g} (min {log['min']:.4g}, "
            f"max {log['max']:.4g}) over {log['steps']} steps"
        )
    if info.get("check_queries"):
        lines.append(f"  {info['check_queries']} check queries of the suspenders (recorded apart, in checks)")
    for pause in info.get("suspensions", []):
        lines.append(
            f"  paused at step {pause['step'] + 1} for {pause['ended'] - pause['started']:.0f} s: "
            f"{pause['why']}; the step measured again ({pause['discarded_queries']} of its queries "
            f"dropped unrecorded)"
        )
    return lines


def _sweep_lines(info: dict) -> list[str]:
    sweep = info["sweep"]
    state = _run_state(info)
    tones = "generators on" if sweep["tones"] else "generators off"
    bench = f" on {info['bench']}" if info.get("bench") else ""
    lines = [
        f"{info['path']}  [{info['schema']}, sweep]  created {info['created']}",
        f"  sweep of {sweep['instrument']}.{sweep['setting']} from {sweep['start']:g} to {sweep['stop']:g} "
        f"({tones}){bench}",
        f"  points {info['points']} of {info['planned_points']} ({state})",
    ]
    if sweep["setting"] in THRESHOLD_SETTINGS:
        lines.append(threshold_line(info["threshold"], sweep["margin_db"], sweep["setting"]))
    return lines


def threshold_line(threshold: float | None, margin_db: float, setting: str = "loop_gain_db") -> str:
    """The auto-oscillation threshold of a loop-gain (or loop-attenuation) sweep, in words (None or NaN: not
    reached)."""
    reached = threshold is not None and math.isfinite(threshold)
    what = "loop attenuation" if setting == "attenuation_db" else "loop gain"
    text = f"{what} {threshold:.3f} dB" if reached else "not reached"
    return f"  auto-oscillation threshold: {text} (margin {margin_db:g} dB over the median)"


def _peak_lines(peaks: list) -> list[str]:
    """The peak of each point (at most MAX_PEAK_LINES of them, evenly spaced, the last always shown)."""
    if not peaks:
        return []
    stride = math.ceil(len(peaks) / MAX_PEAK_LINES)
    shown = sorted(set(range(0, len(peaks), stride)) | {len(peaks) - 1})
    every = f"   (one point in {stride})" if stride > 1 else ""
    return [PEAK_TITLE + every] + [peak_line(i, peaks[i]) for i in shown]


def peak_line(index: int, peak: dict) -> str:
    """Point ``index`` of a sweep as a row under :data:`PEAK_TITLE` (``peak``: value, peak frequency and
    power, margin; None where unknown)."""
    return (
        f"  {index:5d} {_cell(peak['value'], 12, 'g')} {_cell(peak['peak_frequency_hz'], 10, 'ghz')}"
        f" {_cell(peak['peak_power_dbm'], 10, '.1f')} {_cell(peak['margin_db'], 10, '.1f')}"
    )


def _cell(value, width: int, style: str) -> str:
    if value is None:
        return "-".rjust(width)
    if style == "ghz":
        return f"{value / 1e9:{width}.4f}"
    return f"{value:{width}{style}}"


def _time_lines(time: dict) -> list[str]:
    parts = []
    if time.get("measured_hours") is not None:
        parts.append(f"{time['measured_hours']:.3g} h measuring")
    if time.get("bench_hours") is not None:
        parts.append(
            f"{time['bench_hours']:.3g} h on the simulated bench's clock ({time['bench_ms_per_query']:.1f} ms a query)"
        )
    if time.get("temperature_c") is not None:
        low, high = time["temperature_c"]
        parts.append(f"ring at {low:.2f}-{high:.2f} °C")
    if time.get("field_mt") is not None:
        low, high = time["field_mt"]
        parts.append(f"field read {low:.3f}-{high:.3f} mT")
    return [f"  time: {', '.join(parts)}"] if parts else []


def refit_line(refit: dict) -> str:
    """:func:`labpgt.replay.refit_readout`'s result in one sentence."""
    return (
        f"readout {refit['kind']} refitted on the recorded features of step {refit['step']} "
        f"({refit['source']} queries): {refit['n_train']} training rows, {refit['n_test']} test rows, "
        f"alpha {refit['alpha']:g}; train accuracy {refit['train_accuracy']:.4f}, "
        f"test accuracy {refit['test_accuracy']:.4f}"
    )
