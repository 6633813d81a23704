"""Benchmarks: training methods × seeds on one task and reservoir, fanned out over dask.distributed.

This module owns the comparison: which runs make a benchmark, running them (in-process, on a
``LocalCluster`` of worker processes, or on an existing cluster by address), and the table of what
they reached with how many reservoir queries. Training itself is :mod:`labpgt.runs`.

* A **variant** is a method with the settings it changes from its defaults, written
  ``pgt:optimizer=adam:lr=0.01`` (labelled ``pgt[optimizer=adam,lr=0.01]``), so an ablation is a list
  of variants, each tuned and reported on its own.
* A **grid** multiplies variants: each :class:`GridAxis` (``pgt.lr=0.002,0.004``, or ``lr=...`` for
  every method) gives the settings one method takes in turn, and every variant of that method is run
  with every combination of its axes (:func:`expand_grid`). A fairness check of a baseline is one
  command line.
* Every run is **its own session** in the benchmark's directory, named by task, variant and seed. A
  run whose session is complete is read back, not run again; one that is incomplete (its worker
  died, the machine went down) is resumed from its file — bit-identically, so a benchmark survives
  losing a worker and can be rerun to fill its gaps. dask retries a task whose worker was lost, until it has
  died ``distributed.scheduler.allowed-failures`` + 1 times; then the command says so in one line (exit status
  75) and the same command resumes the run. A session of the same name recorded with other settings is refused
  before anything runs.
  Only simulated reservoirs fan out: runs through a ``--bench`` run here, one after another, on the
  machine that owns the instruments.
* **Devices and seeds are the units** a method is replicated over: ``--set ring_device=0,1,2`` runs every
  variant on each simulated ring device (the device is no part of the variant's label; its session is named
  ``…-device2-seed3.h5``), and each row of the JSON records its ``seed`` and ``device``. Runs are *tuning*
  runs unless the benchmark is told the seeds the settings were tuned on (``tuning_seeds``): then they are
  *reported* runs, on seeds disjoint from those (refused otherwise), and the JSON records both. Reported runs
  may take their settings frozen from tuning benchmarks' JSONs (:class:`Tuning`: each method's variant with the
  best mean validation accuracy, every other setting as it was tuned).
* Each row records every query its run made: ``queries_by_role`` (the trainer's count by role, test
  included) and ``other_queries`` (a suspender's check queries and the queries a pause discarded, by step),
  from which :mod:`labpgt.levels` counts the queries including evaluation to fixed accuracy levels.
* Runs evaluate on the **validation** split by default (tuning and the target never see the test
  split) and end with one look at the test split, reported apart (``final_test_accuracy``).
* The **target** is the mean final held-out accuracy of one variant, ``pgt`` (the paper's estimator)
  unless ``target`` names another, added when it is not among the variants; each run reports the
  training queries it needed to first reach it on the whole held-out split, and every query it had made by
  then, the evaluations' own included (``incl_evaluation_to_target``; ``queries_incl_evaluation``: the whole
  run's, the final test included), the figure of merit when evaluations decide their own cost
  (``eval_target``, :mod:`labpgt.evaluation`). A comparison that needs no pgt (node against
  backprop) names one of its own variants and pays for no run it did not ask for. Unless told
  otherwise a run evaluates every 1 % of its steps (:data:`EVALUATIONS_PER_RUN`), so that count is
  resolved to about 1 % of the run; each row reports the resolution it had (the largest gap between
  evaluations, in training queries, over the run's training queries).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from labpgt.architectures import ModelSpec
from labpgt.errors import UserError
from labpgt.evaluation import Evaluation
from labpgt.methods import METHODS, method_class
from labpgt.reservoirs import RESERVOIRS
from labpgt.settings import Declared, declared, parse
from labpgt.trainer import TrainConfig

TARGET_METHOD = "pgt"
EVALUATIONS_PER_RUN = 100
#: the evaluation a benchmark makes unless told otherwise: on validation (tuning and the target never see the
#: test split), every evaluation of the whole split (queries to target keep their resolution); every 1 % of a
#: run's steps (:data:`EVALUATIONS_PER_RUN`)
EVALUATION_DEFAULTS = {"holdout": "validation", "eval_fraction": 0.0}
FIXED_PER_RUN = ("method", "seed", "task", "reservoir")  # what a variant or an axis cannot change
#: the setting that picks a simulated ring device: ``--set ring_device=0,1,2`` makes devices units a run is
#: replicated over (like seeds), not variants of a method
DEVICE_KEY = "ring_device"
PURPOSES = ("tuning", "reported")


def setting_declaration(key: str, method: str | None) -> Declared | None:
    """The declaration of the setting ``key`` a benchmark may vary: ``method``'s own (any method's when None), or
    one every run has (the network's, the evaluation's, a reservoir kind's, the run's); None if there is none."""
    if key in FIXED_PER_RUN:
        return None
    shared = [TrainConfig, ModelSpec, Evaluation, *(k.Settings for k in RESERVOIRS.values())]
    methods = [method_class(method).Settings] if method else [m.Settings for m in METHODS.values()]
    return next((d for d in (declared(cls, key) for cls in [*shared, *methods]) if d is not None), None)


def applies_to(key: str, method: str) -> bool:
    """Whether a setting varied for every method applies to ``method``: one every run has, or its own."""
    own = declared(method_class(method).Settings, key) is not None
    return own or not any(declared(m.Settings, key) for m in METHODS.values())


@dataclass(frozen=True)
class Variant:
    """A training method and the settings it changes from the method's defaults."""

    method: str
    overrides: tuple = ()

    @property
    def label(self) -> str:
        if not self.overrides:
            return self.method
        return f"{self.method}[{','.join(f'{k}={v}' for k, v in self.overrides)}]"

    @classmethod
    def parse(cls, text: str) -> Variant:
        """``METHOD[:KEY=VALUE]...``, e.g. ``pgt-enc:optimizer=adam:lr=0.01``; values typed and checked by the
        settings' declarations."""
        method, *pairs = [part.strip() for part in text.split(":")]
        method_class(method)
        overrides = []
        for pair in pairs:
            key, sep, value = pair.partition("=")
            d = setting_declaration(key, method) if sep else None
            if d is None:
                raise UserError(f"variant {text!r}: {pair!r} is not KEY=VALUE of a setting of {method}")
            overrides.append((key, _typed(d, value, text)))
        return cls(method, tuple(overrides))


@dataclass(frozen=True)
class GridAxis:
    """Values one setting takes in turn, for one method (``method`` None: every method)."""

    method: str | None
    key: str
    values: tuple

    @classmethod
    def parse(cls, text: str) -> GridAxis:
        """``[METHOD.]KEY=V1,V2,...``, e.g. ``pgt.lr=0.002,0.004`` or ``digital_noise=0,0.05``."""
        target, sep, listed = text.partition("=")
        method, dot, key = target.strip().rpartition(".")
        key = key.strip()
        if not sep or not listed.strip():
            raise UserError(f"--set {text!r}: expected [METHOD.]KEY=V1,V2,...")
        if dot:
            method_class(method)
        d = setting_declaration(key, method if dot else None)
        if d is None:
            raise UserError(
                f"--set {text!r}: {key!r} is not a training setting a benchmark can vary"
                + (f" for {method}" if dot else "")
            )
        values = tuple(_typed(d, v.strip(), text) for v in listed.split(","))
        if len(set(values)) != len(values):
            raise UserError(f"--set {text!r}: a value is listed twice")
        return cls(method if dot else None, key, values)


def expand_grid(variants, axes) -> list[Variant]:
    """Every variant with every combination of the axes that apply to its method, in order; a setting
    on an axis replaces the variant's own value of it. An axis whose method is in no variant is refused."""
    methods = {v.method for v in variants}
    for axis in axes:
        if axis.method is not None and axis.method not in methods:
            raise UserError(f"--set {axis.method}.{axis.key}: {axis.method} is not among the benchmark's methods")
    for axis in axes:
        if axis.method is None and not any(applies_to(axis.key, v.method) for v in variants):
            raise UserError(f"--set {axis.key}: no method among the benchmark's has the setting {axis.key}")
    expanded = []
    for variant in variants:
        grid: list[list] = [[]]
        mine = (
            a for a in axes if a.method == variant.method or (a.method is None and applies_to(a.key, variant.method))
        )
        for axis in mine:
            grid = [chosen + [(axis.key, value)] for chosen in grid for value in axis.values]
        for chosen in grid:
            keys = {k for k, _ in chosen}
            overrides = tuple(kv for kv in variant.overrides if kv[0] not in keys) + tuple(chosen)
            candidate = Variant(variant.method, overrides)
            if candidate not in expanded:
                expanded.append(candidate)
    return expanded


def _typed(d: Declared, value: str, where: str):
    try:
        return parse(d, value)
    except ValueError as exc:
        kind = {float: "float", int: "int", bool: "bool"}.get(d.kind, "value")
        reason = f"is not a {kind}" if "is not a" in str(exc) else str(exc)
        raise UserError(f"variant {where!r}: {d.key}={value!r} {reason}") from None


def parse_steps(items) -> dict[str, int]:
    """``--steps METHOD=N`` (repeatable) as ``{method or variant label: N}``."""
    steps = {}
    for item in items:
        method, _, value = item.rpartition("=")
        try:
            steps[method] = int(value)
        except ValueError:
            raise UserError(f"--steps takes METHOD=N, not {item!r}") from None
        if steps[method] < 1:
            raise UserError(f"--steps {item}: N must be positive")
    return steps


def benchmark_runs(
    task: str, reservoir: str, variants, seeds, sessions_dir, steps_by_method=None, devices=(None,), **settings
) -> list[tuple[Variant, int, TrainConfig, Path]]:
    """Every (variant, device, seed) as a validated config and the session it is recorded in (``devices``: the
    simulated ring devices every variant runs on, None: the reservoir's own)."""
    steps_by_method = steps_by_method or {}
    runs = []
    for variant, device, seed in ((v, d, s) for v in variants for d in devices for s in seeds):
        steps = steps_by_method.get(variant.label, steps_by_method.get(variant.method))
        shared = {k: v for k, v in settings.items() if applies_to(k, variant.method)}
        values = {
            **shared,
            "task": task,
            "reservoir": reservoir,
            "method": variant.method,
            "seed": int(seed),
            **({"steps": steps} if steps is not None else {}),
            **dict(variant.overrides),
            **({DEVICE_KEY: device} if device is not None else {}),
        }
        config = TrainConfig.of(**values).resolved()
        if settings.get("eval_every") is None and config.evaluation.eval_target is None:
            every = max(1, config.steps // EVALUATIONS_PER_RUN)
            config = dataclasses.replace(config, evaluation=dataclasses.replace(config.evaluation, eval_every=every))
        on = "" if device is None else f"-device{device}"
        name = f"{task}-{config.model.architecture}-{variant.label}{on}-seed{int(seed)}.h5".replace("[", "_").replace(
            "]", ""
        )
        runs.append((variant, int(seed), config, Path(sessions_dir) / name.replace(",", "_").replace("=", "-")))
    return runs


#: settings that follow from others when not given (see TrainConfig.resolved, and the benchmark's eval_every)
DERIVED_SETTINGS = ("spsa_A", "eval_every", "eval_fraction")


def settings_differing(recorded: TrainConfig, planned: TrainConfig, shown: int = 3) -> str:
    """``"steps 3000, not 1; ..."`` for the first ``shown`` settings in which two configs differ once
    both are resolved; empty if they are the same run."""
    a, b = recorded.resolved().to_dict(), planned.resolved().to_dict()
    keys = [k for k in a if a[k] != b[k]]
    given = [k for k in keys if k not in DERIVED_SETTINGS]
    keys = given or keys  # "steps 3, not 5" says it; the spsa_A that follows is noise
    text = "; ".join(f"{k} {a[k]}, not {b[k]}" for k in keys[:shown])
    return text + (f"; and {len(keys) - shown} more" if len(keys) > shown else "")


def run_one(config: dict, session: str) -> dict:
    """One benchmark run: read back if its session is complete, resumed if interrupted, else started."""
    from labpgt.runs import RunResult, resume_training, start_training

    path = Path(session)
    if path.exists():
        finished = RunResult.from_session(path)
        if finished is not None:
            return with_other_queries(finished.to_dict(), path)
        return with_other_queries(resume_training(path).to_dict(), path)
    return with_other_queries(start_training(TrainConfig.from_dict(config), path).to_dict(), path)


def with_other_queries(outcome: dict, session: Path) -> dict:
    """``outcome`` with ``other_queries``: the ``(step, queries)`` its session records besides its query rows (a
    suspender's check queries, one each; the queries a pause discarded), in the order measured."""
    from labpgt.session import SessionReader

    with SessionReader(session) as reader:
        other = [(int(c["step"]), 1) for c in reader.checks()]
        other += [(int(p["step"]), int(p.get("discarded_queries", 0))) for p in reader.suspensions()]
    return {**outcome, "other_queries": sorted(other)}


@dataclass
class Plan:
    """A validated benchmark, not yet run: every (variant, seed) with its config and session."""

    task: str
    reservoir: str
    sessions_dir: Path
    runs: list
    target: Variant = Variant(TARGET_METHOD)
    seeds: tuple = (0,)
    devices: tuple = (None,)
    tuning_seeds: tuple | None = None  # given: the runs are reported runs on seeds disjoint from these

    @property
    def purpose(self) -> str:
        """ "reported" for runs on fresh seeds after tuning on ``tuning_seeds``, else "tuning"."""
        return "tuning" if self.tuning_seeds is None else "reported"

    @property
    def on_bench(self) -> bool:
        """Whether the runs measure instruments (a bench), which only this machine owns."""
        return any(getattr(config.reservoir, "bench", None) for _, _, config, _ in self.runs)

    def workers(self, asked: int | None) -> int:
        """The worker processes to run on: those asked, else none for a bench (its instruments are this
        machine's) and one per core, at most one per run, for simulated reservoirs."""
        import os

        if asked is not None:
            return asked
        return 0 if self.on_bench else min(len(self.runs), os.cpu_count() or 1)

    def check_placement(self, workers: int, scheduler: str | None) -> None:
        if self.on_bench and (workers or scheduler):
            raise UserError(
                "runs through --bench measure this machine's instruments: they run here, one after "
                "another (leave out --workers and --scheduler)"
            )

    def check_recorded_sessions(self) -> None:
        """A session already in the directory is read back or resumed only if it records this plan's run:
        the same name with other settings (``--steps``, ``--holdout``, ``--batch-size``…) is refused, in one
        line, before anything runs — never reported as the run asked for, nor continued with its own."""
        from labpgt.session import SessionReader

        for _, _, config, session in self.runs:
            if not session.exists():
                continue
            with SessionReader(session) as reader:
                recorded = reader.config.get("train") if reader.kind == "training" else None
            if recorded is None:
                raise UserError(f"{session} is not a training session; choose another --out-dir")
            differs = settings_differing(TrainConfig.from_dict(recorded), config)
            if differs:
                raise UserError(
                    f"{session} was recorded with other settings ({differs}); choose another "
                    f"--out-dir, or remove it to run it again"
                )


def plan_benchmark(
    task: str,
    reservoir: str,
    variants,
    seeds=(0,),
    *,
    sessions_dir,
    steps_by_method=None,
    grid=(),
    target=TARGET_METHOD,
    tuning_seeds=None,
    **settings,
) -> Plan:
    """Validate every run of a benchmark (one-line UserError otherwise) before anything is made;
    ``grid`` is a list of :class:`GridAxis` (or their ``[METHOD.]KEY=V1,V2`` texts), ``target`` the
    variant (or its ``METHOD[:KEY=VALUE]`` text) whose mean final accuracy is the target. An axis of
    ``ring_device`` for every method gives the devices each run is replicated on. ``tuning_seeds``: the seeds
    the settings were tuned on, which makes these reported runs (their seeds must be others)."""
    variants = [v if isinstance(v, Variant) else Variant.parse(v) for v in variants]
    axes = [a if isinstance(a, GridAxis) else GridAxis.parse(a) for a in grid]
    devices = device_units(axes)
    variants = expand_grid(variants, [a for a in axes if not (a.method is None and a.key == DEVICE_KEY)])
    target = target if isinstance(target, Variant) else Variant.parse(target)
    settings = {**EVALUATION_DEFAULTS, **settings}
    seeds = tuple(int(s) for s in seeds)
    check_fresh_seeds(seeds, tuning_seeds)
    if target not in variants:
        variants.insert(0, target)
    runs = benchmark_runs(task, reservoir, variants, seeds, sessions_dir, steps_by_method, devices, **settings)
    plan = Plan(
        task,
        reservoir,
        Path(sessions_dir),
        runs,
        target,
        seeds,
        devices,
        None if tuning_seeds is None else tuple(int(s) for s in tuning_seeds),
    )
    plan.check_recorded_sessions()
    return plan


@dataclass(frozen=True)
class Tuning:
    """The tuning benchmarks (their JSONs, ``--tuned``; several are pooled, e.g. one per method) whose best variants
    reported runs take, frozen: each method's variant with the best mean final validation accuracy over its runs
    (ties: the fewer mean queries including evaluation), every setting nobody varied as it was tuned, on seeds the
    tuning did not use."""

    files: tuple  # ((name, sha256), ...) of each JSON read
    benchmark: dict  # the first JSON, its results those of all

    @classmethod
    def read(cls, *paths) -> Tuning:
        files: list[tuple[str, str]] = []
        benchmarks: list[dict] = []
        for path in map(Path, paths):
            try:
                raw = path.read_bytes()
                benchmark = json.loads(raw)
            except (OSError, ValueError) as exc:
                raise UserError(f"--tuned {path}: cannot read a benchmark's JSON ({exc})") from None
            if not isinstance(benchmark, dict) or benchmark.get("holdout") != "validation":
                raise UserError(
                    f"--tuned {path.name} is not a benchmark evaluated on validation (settings are chosen there)"
                )
            if benchmarks and (benchmark.get("task"), benchmark.get("reservoir")) != _task_of(benchmarks[0]):
                raise UserError(f"--tuned {path.name} is not of the task and reservoir of {files[0][0]}")
            files.append((path.name, hashlib.sha256(raw).hexdigest()))
            benchmarks.append(benchmark)
        pooled: dict[tuple, dict] = {}  # each run once: a file given twice holds it twice
        for row in (row for benchmark in benchmarks for row in benchmark.get("results", [])):
            pooled.setdefault((row.get("method"), row.get("seed"), row.get("device")), row)
        return cls(tuple(files), {**benchmarks[0], "results": list(pooled.values())})

    @property
    def where(self) -> str:
        return "--tuned " + " ".join(name for name, _ in self.files)

    def freeze(self, variants, target: Variant, task: str, reservoir: str, grid=()) -> tuple[list, Variant, dict]:
        """``(variants, target, record)``: the tuned variant of each method of ``variants`` and of ``target``, and
        what the benchmark's JSON records of the choice (``tuned_from``); a one-line UserError for what would tune
        again (a variant's own settings, a ``--set`` axis other than the devices) or another benchmark."""
        if _task_of(self.benchmark) != (task, reservoir):
            raise UserError(f"{self.where} is not a benchmark of task {task} on reservoir {reservoir}")
        axes = [a if isinstance(a, GridAxis) else GridAxis.parse(a) for a in grid]
        if any(a.method is not None or a.key != DEVICE_KEY for a in axes):
            raise UserError("--tuned freezes the settings: --set may only replicate the runs over ring_device")
        if any(v.overrides for v in (*variants, target)):
            raise UserError("--tuned chooses each method's settings: give --methods and --target as method names only")
        methods = list(dict.fromkeys([v.method for v in variants] + [target.method]))
        try:
            chosen = {method: self._best(method) for method in methods}
        except (KeyError, TypeError) as exc:
            raise UserError(f"{self.where}: not a benchmark's JSON (no {exc})") from None
        frozen = {method: _variant_of_label(choice["variant"]) for method, choice in chosen.items()}
        files = [{"file": name, "sha256": sha256} for name, sha256 in self.files]
        record = {"files": files, "seeds": list(self.seeds), "chosen": chosen}
        return [frozen[v.method] for v in variants], frozen[target.method], record

    @property
    def seeds(self) -> tuple:
        return tuple(sorted({int(r["seed"]) for r in self._rows()}))

    def _rows(self) -> list:
        return [r for r in self.benchmark.get("results", []) if r.get("purpose", "tuning") == "tuning"]

    def _best(self, method: str) -> dict:
        scores: dict[str, list] = {}
        for row in self._rows():
            if row["config"]["method"] == method:
                scores.setdefault(row["method"], []).append(
                    (row["final_validation_accuracy"], row["queries_incl_evaluation"])
                )
        if not scores:
            raise UserError(f"{self.where} has no tuning run of {method}")

        def mean(label, i):
            return float(np.mean([score[i] for score in scores[label]]))

        best = min(scores, key=lambda label: (-mean(label, 0), mean(label, 1)))
        return {
            "variant": best,
            "validation_accuracy": mean(best, 0),
            "runs": len(scores[best]),
            "variants_tried": len(scores),
        }

    def check(self, plan: Plan) -> None:
        """Every run of ``plan`` is its variant's tuning run but for its seed and device: the settings nobody varied
        while tuning are frozen too (a one-line UserError names those that differ)."""
        tuned = {row["method"]: row["config"] for row in self.benchmark["results"]}
        for variant, _, config, _ in plan.runs:
            recorded = {**tuned[variant.label], "seed": config.seed}
            if DEVICE_KEY in recorded:
                recorded[DEVICE_KEY] = config.to_dict()[DEVICE_KEY]
            differing = settings_differing(TrainConfig.from_dict(recorded), config)
            if differing:
                raise UserError(f"{self.where}: these runs of {variant.label} would not be the tuned ones: {differing}")


def _task_of(benchmark: dict) -> tuple:
    return benchmark.get("task"), benchmark.get("reservoir")


def _variant_of_label(label: str) -> Variant:
    """The variant a label names: ``pgt[optimizer=adam,lr=0.01]`` is ``pgt:optimizer=adam:lr=0.01``."""
    method, _, listed = label.partition("[")
    return Variant.parse(":".join([method, *filter(None, listed.rstrip("]").split(","))]))


def device_units(axes) -> tuple:
    """The simulated devices an axis ``ring_device=...`` (of every method) replicates the runs on; (None,) if none."""
    axis = next((a for a in axes if a.method is None and a.key == DEVICE_KEY), None)
    return (None,) if axis is None else tuple(int(v) for v in axis.values)


def check_fresh_seeds(seeds, tuning_seeds) -> None:
    """Reported runs' seeds must be none of the tuning seeds (one-line UserError)."""
    shared = sorted(set(seeds) & set(tuning_seeds or ()))
    if shared:
        raise UserError(
            f"seeds {', '.join(map(str, shared))} were tuning seeds; reported runs need fresh seeds (--first-seed)"
        )


def run_benchmark(
    task: str,
    reservoir: str,
    variants,
    seeds=(0,),
    *,
    sessions_dir,
    steps_by_method=None,
    grid=(),
    workers: int = 0,
    scheduler: str | None = None,
    progress=None,
    **settings,
) -> dict:
    """Plan and run a benchmark (see :func:`run_plan`)."""
    plan = plan_benchmark(
        task,
        reservoir,
        variants,
        seeds,
        sessions_dir=sessions_dir,
        steps_by_method=steps_by_method,
        grid=grid,
        **settings,
    )
    return run_plan(plan, workers=workers, scheduler=scheduler, progress=progress)


def run_plan(plan: Plan, workers: int = 0, scheduler: str | None = None, progress=None) -> dict:
    """Run every variant with every seed; ``workers`` 0 runs in this process, N on a LocalCluster of N
    worker processes, ``scheduler`` on an existing dask cluster. Returns the benchmark as plain data:
    ``{"task", "reservoir", "model", "holdout", "target_method", "target_accuracy", "results": [...]}``."""
    runs = plan.runs
    plan.check_placement(workers, scheduler)
    plan.sessions_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(config.to_dict(), str(session)) for _, _, config, session in runs]
    outcomes = _fan_out(jobs, workers, scheduler, progress, [(_shown(v, c), s) for v, s, c, _ in runs])
    holdout = runs[0][2].evaluation.holdout
    key = f"final_{holdout}_accuracy"
    finals = [o["final_accuracy"] for (v, _, _, _), o in zip(runs, outcomes) if v == plan.target]
    target = float(np.mean(finals))
    results = []
    for (variant, seed, config, session), outcome in zip(runs, outcomes):
        results.append(
            {
                "method": variant.label,
                "seed": seed,
                "device": _device(config),
                "purpose": plan.purpose,
                "config": config.to_dict(),
                "queries_by_role": outcome["queries"],
                "other_queries": outcome.get("other_queries", []),
                key: outcome["final_accuracy"],
                "queries": outcome["training_queries"],
                "queries_to_target": queries_to_target(outcome["history"], target, holdout),
                "queries_incl_evaluation": outcome["training_queries"]
                + outcome["eval_queries"]
                + outcome["test_queries"],
                "prior_queries": outcome.get("prior_queries", 0),
                "incl_evaluation_to_target": queries_to_target(outcome["history"], target, holdout, True),
                "resolution": resolution(outcome["history"]),
                "final_test_accuracy": outcome["final_test_accuracy"],
                "test_queries": outcome["test_queries"],
                "final_params_sha256": outcome["final_params_sha256"],
                "wall_seconds": outcome["wall_seconds"],
                "measure_seconds": outcome["measure_seconds"],
                "bench_hours": bench_hours(session),
                "session": str(session),
                "history": outcome["history"],
            }
        )
    return {
        "task": plan.task,
        "reservoir": plan.reservoir,
        "model": runs[0][2].model.architecture,
        "holdout": holdout,
        "target_method": plan.target.label,
        "target_accuracy": target,
        "seeds": list(plan.seeds),
        "devices": [d for d in plan.devices if d is not None] or sorted({r["device"] for r in results} - {None}),
        "tuning_seeds": None if plan.tuning_seeds is None else list(plan.tuning_seeds),
        "results": results,
    }


def _shown(variant: Variant, config: TrainConfig):
    """What the progress calls a run's variant: its label, and its device when it ran on a simulated one."""
    device = _device(config)
    return variant if device is None else SimpleNamespace(label=f"{variant.label} device {device}")


def _device(config: TrainConfig) -> int | None:
    """The simulated ring device of a run (None: a digital reservoir, a twin, or a bench's instruments)."""
    device = getattr(config.reservoir, DEVICE_KEY, None)
    return None if device is None or getattr(config.reservoir, "bench", None) else int(device)


def bench_hours(session) -> float | None:
    """A run's hours on a simulated bench's clock (what its queries would have taken a real bench: settling,
    sweeps, messages, the analyzer's processing, transfers, attenuator moves), as ``labpgt inspect`` reports
    them; None for a bench without that clock."""
    from labpgt.inspection import inspect_session

    return inspect_session(session)["time"]["bench_hours"]


def _fan_out(jobs, workers: int, scheduler, progress, labels) -> list[dict]:
    if workers == 0 and scheduler is None:
        outcomes = []
        for (config, session), (variant, seed) in zip(jobs, labels):
            outcomes.append(run_one(config, session))
            if progress is not None:
                progress(variant.label, seed, outcomes[-1])
        return outcomes
    from distributed import Client, LocalCluster

    # a run that fails says so through its future (one line, from the CLI); the workers' own logs would
    # repeat it as a traceback
    cluster = None
    if not scheduler:
        with warnings.catch_warnings():  # another cluster's HTTP port in use: it takes a free one, fine
            warnings.filterwarnings("ignore", message="Port .* is already in use")
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                host="127.0.0.1",
                silence_logs=logging.ERROR,
            )
    try:
        with Client(scheduler or cluster) as client:
            return _run_in_flight(client, jobs, progress, labels)
    finally:
        if cluster is not None:
            cluster.close()


def _run_in_flight(client, jobs, progress, labels) -> list[dict]:
    """Submit runs as the cluster frees threads, never more at once than it has threads.

    Submitting every run up front leaves dask to place runs whose length it cannot know (hours, each
    unlike the last): measured on two workers, both long runs queued on one worker while the other
    idled, and work stealing did not move them. A run submitted only when a thread is free goes to
    the idle worker. A run whose worker dies is retried by dask and resumes from its session."""
    from distributed import as_completed

    outcomes: list[dict] = [{} for _ in jobs]
    pending = list(range(len(jobs)))
    running = as_completed()
    where = {}

    def submit_next():
        i = pending.pop(0)
        config, session = jobs[i]
        future = client.submit(run_one, config, session, pure=False, retries=2, key=f"labpgt-{Path(session).stem}")
        where[future.key] = i
        running.add(future)

    for _ in range(min(len(pending), _threads(client))):
        submit_next()
    for future in running:
        i = where[future.key]
        outcomes[i] = _outcome(future, jobs[i][1])
        if progress is not None:
            progress(labels[i][0].label, labels[i][1], outcomes[i])
        while pending and running.count() < _threads(client):
            submit_next()
    return outcomes


class RunLostItsWorkers(UserError):
    """A run whose worker process died more often than dask runs a task again (an out-of-memory kill, a machine
    paused or suspended): its session holds every whole step, so the same command again resumes it. Exit status
    75, EX_TEMPFAIL of sysexits.h: a temporary failure, to be retried."""

    exit_status = 75


def _outcome(future, session) -> dict:
    """A run's row from its future; a run given up because its workers kept dying says so in one line."""
    from distributed.scheduler import KilledWorker

    try:
        return future.result()
    except KilledWorker as lost:
        deaths = "once" if lost.allowed_failures == 0 else f"{lost.allowed_failures + 1} times"
        raise RunLostItsWorkers(
            f"the worker process running {Path(session).stem} died {deaths}, and dask gives a task up after that"
            " (distributed.scheduler.allowed-failures); its session "
            f"{session} holds every whole step: run the same command again to resume it"
        ) from None


def _threads(client) -> int:
    """The cluster's worker threads now (workers may come and go); at least one."""
    return max(1, sum(client.nthreads().values()))


def queries_to_target(
    history: list[dict], target: float, holdout: str = "test", incl_evaluation: bool = False
) -> int | None:
    """Training queries (with ``incl_evaluation``, every query up to it, the evaluations' own included) at the
    first evaluation of the whole held-out split whose accuracy reaches ``target`` (None if never); an
    evaluation of part of the split (``<holdout>_samples``) reaches nothing."""
    for entry in history:
        if f"{holdout}_samples" not in entry and entry[f"{holdout}_accuracy"] >= target - 1e-12:
            return int(entry["training_queries"]) + (int(entry["eval_queries"]) if incl_evaluation else 0)
    return None


def resolution(history: list[dict]) -> float | None:
    """The largest gap between consecutive evaluations, in training queries, as a fraction of the
    run's: how finely its queries to target are resolved (None for a run evaluated once, e.g. fitted
    in closed form)."""
    queries = [int(entry["training_queries"]) for entry in history]
    if len(queries) < 2 or queries[-1] == 0:
        return None
    return float(np.max(np.diff(queries)) / queries[-1])


def format_table(benchmark: dict) -> str:
    """A fixed-width text table of a :func:`run_benchmark` result."""
    holdout = benchmark["holdout"]
    key = f"final_{holdout}_accuracy"
    width = max([10] + [len(r["method"]) + 2 for r in benchmark["results"]])
    with_test = holdout != "test" and any(r.get("final_test_accuracy") is not None for r in benchmark["results"])
    devices = any(r.get("device") is not None for r in benchmark["results"])
    lines = [
        f"task {benchmark['task']}, model {benchmark['model']}, reservoir {benchmark['reservoir']}, "
        f"target (mean {benchmark.get('target_method', TARGET_METHOD)} final {holdout} accuracy) "
        f"{benchmark['target_accuracy']:.4f}",
        f"{'method':<{width}}{'seed':>6}"
        + (f"{'device':>8}" if devices else "")
        + f"{('val' if holdout == 'validation' else holdout) + ' acc':>10}"
        + (f"{'test acc':>10}" if with_test else "")
        + f"{'queries':>12}{'to target':>12}{'resol.':>8}{'bench h':>9}{'incl. eval':>12}{'to target':>12}",
    ]
    for row in benchmark["results"]:
        to_target = "never" if row["queries_to_target"] is None else str(row["queries_to_target"])
        incl = row.get("incl_evaluation_to_target")
        incl_columns = (
            f"{row['queries_incl_evaluation']:>12}{'never' if incl is None else incl:>12}"
            if "queries_incl_evaluation" in row
            else ""
        )
        test = row.get("final_test_accuracy")
        test = (f"{test:>10.4f}" if test is not None else f"{'-':>10}") if with_test else ""
        hours = "-" if row.get("bench_hours") is None else f"{row['bench_hours']:.3f}"
        device = f"{'-' if row.get('device') is None else row['device']:>8}" if devices else ""
        lines.append(
            f"{row['method']:<{width}}{row['seed']:>6}{device}{row[key]:>10.4f}{test}{row['queries']:>12}"
            f"{to_target:>12}{'-' if row['resolution'] is None else format(row['resolution'], '.1%'):>8}"
            f"{hours:>9}{incl_columns}"
        )
    return "\n".join(lines)


def write_json(benchmark: dict, path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(benchmark, indent=2))
