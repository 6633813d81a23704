"""``labpgt train`` and ``labpgt benchmark``: a training's arguments (derived from the settings' declarations of
the kinds chosen, :mod:`labpgt.commandline`), wired to the run engine and to the benchmark.
"""

from __future__ import annotations

import sys
from pathlib import Path

from labpgt import signals
from labpgt.commandline import (
    NONNEGATIVE_INT,
    POSITIVE_INT,
    accuracy_levels,
    add_training_options,
    seed_list,
    training_settings,
)
from labpgt.errors import UserError
from labpgt.references import CEILING_STEPS


# --------------------------------------------------------------------------- train
def add_train(sub, kinds, full=True):
    p = sub.add_parser(
        "train",
        help="train a network through the reservoir, recording an HDF5 session",
        description="Train the digital parts of a network around the reservoir. Default: digits, "
        "the dense network, through the embedded simulated ring with node perturbation. "
        "Every query is recorded in an HDF5 session (--out, default data/runs/...); an "
        "interrupted run continues with --resume FILE.h5. The settings shown are those "
        "of the method, model and reservoir chosen.",
    )
    p.set_defaults(run=run_train, settings=add_training_options(p, kinds) if full else [])
    p.add_argument(
        "--out", type=Path, help="session file to write (default data/runs/<time>-<task>-<model>-<method>.h5)"
    )
    p.add_argument("--resume", type=Path, metavar="FILE.h5", help="continue this interrupted session")
    p.add_argument("--plot", type=Path, help="loss/accuracy PNG (default: beside the session)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def train_config_from(args):
    from labpgt.trainer import TrainConfig

    return TrainConfig.of(**training_settings(args, args.settings)).resolved()


def run_train(args) -> int:
    with signals.deferred():
        from labpgt.bench import BenchFault
        from labpgt.display import TrainingDisplay, saved_session_hint, stopped_line, training_lines
        from labpgt.engine import RunEngine
        from labpgt.plots import plot_history
        from labpgt.runs import default_session_path, machine_change

    if args.resume is not None:
        if not args.resume.is_file():
            raise UserError(f"cannot resume: {args.resume} does not exist")
        session = args.resume
        note = machine_change(session)
        if note:
            print(f"labpgt: {note}", file=sys.stderr)
    else:
        config = train_config_from(args)
        session = args.out or default_session_path(config.task, config.model.architecture, config.method.name)
        if session.exists():
            raise UserError(f"{session} exists; choose another --out, or continue it with --resume {session}")
    display = TrainingDisplay(args.quiet)
    engine = RunEngine().subscribe(display)
    try:
        with signals.stopping_runs(engine, announce=lambda line: signals.say(f"labpgt: {line}")):
            outcome = engine.resume(session) if args.resume is not None else engine.train(config, session)
    except BenchFault as exc:
        raise UserError(f"{exc}{saved_session_hint(session)}") from None
    except KeyboardInterrupt as exc:  # a second signal, or one before the run could stop
        signals.say(f"labpgt: interrupted; RF is off{saved_session_hint(session)}")
        return exc.exit_status if isinstance(exc, signals.Interrupted) else 130
    finally:
        display.close()
    if outcome.stopped is not None:
        signals.say(stopped_line(outcome.stopped, session))
        return outcome.stopped.exit_status
    plot = args.plot or session.with_suffix(".png")
    plot_history(outcome.result, plot)
    print(*training_lines(outcome.result, args.resume is not None), f"session {session}", f"plot {plot}", sep="\n")
    return 0


# --------------------------------------------------------------------------- benchmark
def add_benchmark(sub, kinds, full=True):
    p = sub.add_parser(
        "benchmark",
        help="compare training methods by accuracy and reservoir queries",
        description="Train each method with each seed, each run its own session (a complete one is "
        "read back, an interrupted one resumed), fanned out over dask worker "
        "processes. The target is the mean final held-out accuracy of pgt (or of "
        "--target) in the same benchmark; each run reports the training queries it "
        "needed to reach it.",
    )
    p.set_defaults(run=run_benchmark_command, settings=add_training_options(p, kinds, benchmark=True) if full else [])
    p.add_argument(
        "--methods",
        default="pgt,node,readout",
        help="comma-separated variants METHOD[:KEY=VALUE...], e.g. pgt,pgt:optimizer=adam:lr=0.01,node",
    )
    p.add_argument("--seeds", type=POSITIVE_INT, default=1, help="seeds 0..N-1 per method (1); from --first-seed")
    p.add_argument("--first-seed", type=NONNEGATIVE_INT, default=0, help="the first of the --seeds seeds (0)")
    p.add_argument(
        "--tuning-seeds",
        type=seed_list,
        metavar="S1,S2|A-B",
        help="the seeds the settings were tuned on: these runs are reported runs, on other seeds "
        "(refused otherwise); without it the runs are recorded as tuning runs",
    )
    p.add_argument(
        "--tuned",
        type=Path,
        nargs="+",
        metavar="TUNING.json",
        help="freeze each method's settings to its variant that did best on validation in these tuning "
        "benchmarks' JSONs (pooled, e.g. one per method): these are reported runs on seeds other than theirs "
        "(--first-seed), and the JSON records each file's sha256 and the choice",
    )
    p.add_argument(
        "--levels",
        type=accuracy_levels,
        default=None,
        metavar="A1,A2,...",
        help="held-out accuracy levels of the queries-to-level table (0.5,0.6,0.7,0.8,0.85,0.9)",
    )
    p.add_argument(
        "--ceiling-steps",
        type=NONNEGATIVE_INT,
        default=CEILING_STEPS,
        help="training steps of the digital ceiling reported beside the runs, per learning rate and seed "
        f"(the network with its reservoir a digital layer trained by backprop; 0: none) ({CEILING_STEPS})",
    )
    p.add_argument(
        "--target",
        default="pgt",
        metavar="VARIANT",
        help="the variant whose mean final held-out accuracy is the target, run too if it is not "
        "among --methods, e.g. --target node for --methods backprop,node (pgt)",
    )
    p.add_argument(
        "--steps",
        action="append",
        default=[],
        dest="steps_by_method",
        metavar="METHOD=N",
        help="steps for one method or variant label, e.g. --steps pgt=3000 (repeatable)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        dest="grid",
        metavar="[METHOD.]KEY=V1,V2",
        help="run every variant of METHOD (every method without it) with each value of a training "
        "setting, e.g. --set pgt.lr=0.002,0.004 --set node.optimizer=sgd,adam --set "
        "digital_noise=0,0.05; several --set make a grid (repeatable)",
    )
    p.add_argument(
        "--out-dir",
        "--sessions",
        type=Path,
        dest="out_dir",
        help="directory of the runs' sessions, one file per run (data/runs/benchmark-<time>); "
        "give an existing one to complete an interrupted benchmark",
    )
    p.add_argument(
        "--workers",
        type=NONNEGATIVE_INT,
        default=None,
        help="dask worker processes on this machine (its core count); 0 runs in this process",
    )
    p.add_argument("--scheduler", metavar="ADDRESS", help="an existing dask cluster, e.g. tcp://10.0.0.5:8786")
    p.add_argument("--json", type=Path, metavar="OUT", help="write the results as JSON here")
    p.add_argument("--plot", type=Path, metavar="PNG", help="accuracy against training queries per method")


def run_benchmark_command(args) -> int:
    from labpgt.benchmark import (
        Tuning,
        Variant,
        format_table,
        parse_steps,
        plan_benchmark,
        run_plan,
        write_json,
    )
    from labpgt.display import BenchmarkProgress
    from labpgt.levels import levels_report
    from labpgt.references import digital_references
    from labpgt.runs import default_session_path
    from labpgt.settings import default_of
    from labpgt.trainer import TrainConfig

    variants = [Variant.parse(m) for m in args.methods.split(",") if m.strip()]
    settings = training_settings(args, args.settings)
    task = settings.pop("task", default_of(TrainConfig, "task"))
    reservoir = settings.pop("reservoir")
    tuning_seeds, target, tuned = args.tuning_seeds, Variant.parse(args.target), None
    tuning = Tuning.read(*args.tuned) if args.tuned is not None else None
    if tuning is not None:
        if args.tuning_seeds is not None:
            raise UserError("--tuned gives the tuning seeds (its own); leave out --tuning-seeds")
        variants, target, tuned = tuning.freeze(variants, target, task, reservoir, args.grid)
        tuning_seeds = tuning.seeds
    sessions = args.out_dir or default_session_path("benchmark").with_suffix("")
    plan = plan_benchmark(
        task,
        reservoir,
        variants,
        sessions_dir=sessions,
        seeds=range(args.first_seed, args.first_seed + args.seeds),
        tuning_seeds=tuning_seeds,
        steps_by_method=parse_steps(args.steps_by_method),
        grid=args.grid,
        target=target,
        **settings,
    )
    if tuning is not None:
        tuning.check(plan)
    workers = plan.workers(args.workers)
    plan.check_placement(workers, args.scheduler)
    print(
        f"{len(plan.runs)} runs on {workers or 'no'} worker processes; sessions in {sessions}",
        file=sys.stderr,
        flush=True,
    )
    with BenchmarkProgress(len(plan.runs)) as report:
        result = run_plan(plan, workers=workers, scheduler=args.scheduler, progress=report)
    result["references"] = digital_references(plan.task, plan.seeds, plan.runs[0][2].model, args.ceiling_steps)
    if tuned is not None:
        result["tuned_from"] = tuned
    print(format_table(result))
    print(levels_report(result, args.levels))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        from labpgt.plots import plot_benchmark

        print(f"wrote {plot_benchmark(result, args.plot)}")
    return 0
