"""The ``labpgt`` command line: each subcommand's arguments, wired to the function that does its work.

What a command does lives in the module that owns it (the run engine, the benchmark, inspection, export,
replay, the simulated instruments); a training's settings and their options are derived from their
declarations (:mod:`labpgt.commandline`); the terminal display is :mod:`labpgt.display`, the process
signals :mod:`labpgt.signals`. A :class:`UserError` anywhere becomes ``labpgt: <message>`` on stderr with
exit status 2 and no traceback; a run stopped by a signal exits with 128 + its number (Ctrl+C 130, SIGTERM
143) once RF is off and the session flushed.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from labpgt import signals
from labpgt.commandline import (
    DEFAULT_KINDS,
    OneLineParser,
    add_ring_parts_options,
    add_sweep_ranges,
    add_training_options,
    behaviour_list,
    chosen_kinds,
    fault_spec,
    generator_models,
    number,
    ring_parts,
    swept_setting,
    training_settings,
    unit_vector,
)
from labpgt.errors import UserError

POSITIVE_INT, NONNEGATIVE_INT = number(int, minimum=1), number(int, minimum=0)
POSITIVE_FLOAT = number(float, above=0)


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
        "--levels",
        type=accuracy_levels,
        default=None,
        metavar="A1,A2,...",
        help="held-out accuracy levels of the queries-to-level table (0.5,0.6,0.7,0.8,0.85,0.9)",
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
    from labpgt.benchmark import Variant, format_table, parse_steps, plan_benchmark, run_plan, write_json
    from labpgt.display import BenchmarkProgress
    from labpgt.levels import levels_report
    from labpgt.references import digital_references
    from labpgt.runs import default_session_path
    from labpgt.settings import default_of
    from labpgt.trainer import TrainConfig

    variants = [Variant.parse(m) for m in args.methods.split(",") if m.strip()]
    settings = training_settings(args, args.settings)
    task = settings.pop("task", default_of(TrainConfig, "task"))
    sessions = args.out_dir or default_session_path("benchmark").with_suffix("")
    plan = plan_benchmark(
        task,
        settings.pop("reservoir"),
        variants,
        sessions_dir=sessions,
        seeds=range(args.first_seed, args.first_seed + args.seeds),
        tuning_seeds=args.tuning_seeds,
        steps_by_method=parse_steps(args.steps_by_method),
        grid=args.grid,
        target=args.target,
        **settings,
    )
    workers = plan.workers(args.workers)
    plan.check_placement(workers, args.scheduler)
    print(
        f"{len(plan.runs)} runs on {workers or 'no'} worker processes; sessions in {sessions}",
        file=sys.stderr,
        flush=True,
    )
    with BenchmarkProgress(len(plan.runs)) as report:
        result = run_plan(plan, workers=workers, scheduler=args.scheduler, progress=report)
    result["references"] = digital_references(plan.task, plan.seeds)
    print(format_table(result))
    print(levels_report(result, args.levels))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        from labpgt.plots import plot_benchmark

        print(f"wrote {plot_benchmark(result, args.plot)}")
    return 0


def seed_list(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` or ``"0-2"`` (argparse type)."""
    from labpgt.levels import parse_seeds

    try:
        return parse_seeds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def accuracy_levels(text: str) -> tuple[float, ...]:
    from labpgt.levels import parse_levels

    try:
        return parse_levels(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# --------------------------------------------------------------------------- sessions
def add_session_commands(sub, kinds):
    p = sub.add_parser(
        "replay",
        help="rerun a recorded session offline and check it reproduces",
        description="Rerun the training of a session file through a replay reservoir that "
        "serves the recorded responses. Exit 0 if the trajectory reproduces, 1 "
        "naming the first divergence. Each step is recomputed from the recorded "
        "state before it and must agree within 1e-8 of the step (another machine's "
        "rounding); the largest deviation is reported. With --readout ridge, refit a "
        "readout on the recorded features instead. The file is never modified.",
    )
    p.add_argument("session", type=Path)
    p.add_argument("--exact", action="store_true", help="demand bit-identical results (the recording machine)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--readout", choices=("ridge",), help="offline re-analysis: refit this readout")
    p.set_defaults(run=run_replay)
    p = sub.add_parser("inspect", help="summarise a session file")
    p.add_argument("session", type=Path)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run_inspect)
    p = sub.add_parser("export", help="export a session to netCDF (.nc), MATLAB (.mat), or CSV and .npy files")
    p.add_argument("session", type=Path)
    p.add_argument("--to", type=Path, required=True, metavar="FILE.nc|FILE.mat|DIR")
    p.set_defaults(run=run_export)


def run_replay(args) -> int:
    import json

    from labpgt.inspection import refit_line
    from labpgt.replay import refit_readout, replay_session

    if args.readout:
        print(refit_line(refit_readout(args.session, kind=args.readout)))
        return 0
    report = replay_session(args.session, exact=args.exact)
    print(json.dumps(dict(report.to_dict(), summary=report.summary()), indent=2) if args.json else report.summary())
    return 0 if report.ok else 1


def run_inspect(args) -> int:
    import json

    from labpgt.inspection import format_inspection, inspect_session

    info = inspect_session(args.session)
    print(json.dumps(info, indent=2) if args.json else format_inspection(info))
    return 0


def run_export(args) -> int:
    from labpgt.export import export_session

    for path in export_session(args.session, args.to):
        print(path)
    return 0


# --------------------------------------------------------------------------- sim
def add_sim(sub, kinds):
    from labpgt.instruments.simulated import ANALYZER_MODELS

    p = sub.add_parser(
        "sim",
        help="serve the simulated bench over loopback TCP (raw-socket SCPI)",
        description="Serve each simulated instrument on its own TCP port, reachable as "
        "TCPIP::HOST::PORT::SOCKET through any VISA. Prints one line per "
        "instrument, NAME RESOURCE, then serves until interrupted.",
    )
    p.add_argument("--generators", type=POSITIVE_INT, default=4, help="number of signal generators (4)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1: this machine only)")
    p.add_argument(
        "--port",
        type=NONNEGATIVE_INT,
        default=15025,
        help="base port: analyzer = PORT, ring = PORT+1, generator i = PORT+10+i (15025); "
        "0 lets the system choose free ports",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the simulator's noise (0)")
    p.add_argument("--noise", type=int, choices=(0, 1), default=1, help="1: measurement noise on; 0: off")
    p.add_argument(
        "--analyzer",
        default="esa",
        choices=tuple(ANALYZER_MODELS),
        help="the analyzer's model and SCPI dialect: esa (Agilent E4408B), x-series (Keysight "
        "N9030B) or fsx (R&S FSL6) (esa)",
    )
    p.add_argument(
        "--generator",
        type=generator_models,
        default=["psg"],
        metavar="MODEL[,MODEL...]",
        help="the generators' models, one for all or one per generator: psg (Agilent E8257D), "
        "e8267c, mxg (Keysight N5183B), exg (N5173B), mg369x (Anritsu MG3692C), tabor (Tabor Lucid "
        "LS6081B), tabor-x (Lucid X LSX6081B) (psg)",
    )
    p.add_argument(
        "--write-bench",
        type=Path,
        metavar="FILE.toml",
        help="also write the bench config of what is served (with its actual ports) to this file",
    )
    p.add_argument(
        "--faults",
        type=fault_spec,
        metavar="SPEC",
        help="inject seeded faults per program message, e.g. drop=0.02,delay=0.01,garble=0.02,"
        "error=0.01,reboot=0.001,seed=7 (also delay_s=6, reboot_s=0); "
        "see labpgt.instruments.simulated.faults",
    )
    p.add_argument(
        "--ideal",
        action="store_true",
        help="the kind ring: no drift, memory, nonlinear shift, sidebands, three-magnon loss, "
        "mode-partition noise, wide locking (default: a real ring's behaviours, all on)",
    )
    p.add_argument(
        "--without",
        type=behaviour_list,
        default=(),
        metavar="NAMES",
        help="switch these behaviours off, comma-separated: three_magnon, nonlinear_shift, memory, "
        "mode_partition, locking, sidebands, drift",
    )
    p.add_argument(
        "--realtime",
        action="store_true",
        help="each sweep takes its simulated duration (settling + sweep time) in the wall clock too",
    )
    p.add_argument(
        "--device",
        type=NONNEGATIVE_INT,
        default=0,
        metavar="N",
        help="which simulated ring: 0 the nominal one, N >= 1 drawn from the documented device spread (0)",
    )
    add_ring_parts_options(p)
    p.set_defaults(run=run_sim)


def run_sim(args) -> int:
    from labpgt.bench.served import serve_simulated_bench

    models = args.generator * args.generators if len(args.generator) == 1 else args.generator
    if len(models) != args.generators:
        raise UserError(
            f"--generator names {len(models)} models for {args.generators} generators: give one, or one per generator"
        )
    with serve_simulated_bench(
        generators=args.generators,
        host=args.host,
        port=args.port,
        seed=args.seed,
        noise=bool(args.noise),
        analyzer=args.analyzer,
        models=models,
        faults=args.faults,
        behaviours={"preset": "ideal" if args.ideal else "real", **dict.fromkeys(args.without, False)},
        realtime=args.realtime,
        device=args.device,
        bench_file=args.write_bench,
        ring_parts=ring_parts(args),
    ) as served:
        with signals.stopping_runs(served):  # before the lines: a client may signal as soon as it has read them
            for name, resource in served.resources.items():
                print(f"{name} {resource}", flush=True)
            served.stopped.wait()
    return 0


# --------------------------------------------------------------------------- spectrum
def add_spectrum(sub, kinds):
    p = sub.add_parser(
        "spectrum",
        help="measure one spectrum of the ring and save it as a PNG",
        description="Set the generators from --u (or the bench's fixed settings), take "
        "one sweep, list every line that stands --margin-db above the trace's median "
        "and --prominence-db above its surroundings, and save the trace as a PNG with "
        "those lines and the threshold marked.",
    )
    p.add_argument("--bench", type=Path, help="bench TOML (default: the embedded simulated bench)")
    p.add_argument("--u", type=unit_vector, help="comma-separated inputs in [0,1], one per encoded setting")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("spectrum.png"))
    p.add_argument(
        "--margin-db",
        type=POSITIVE_FLOAT,
        default=30.0,
        help="a line is listed when it stands this far above the trace's median (30, as for sweep)",
    )
    p.add_argument(
        "--prominence-db",
        type=POSITIVE_FLOAT,
        default=6.0,
        help="... and this far above the lowest point between it and any higher line (6)",
    )
    p.set_defaults(run=run_spectrum)


def run_spectrum(args) -> int:
    import numpy as np

    from labpgt.bench import embedded_bench, load_bench
    from labpgt.display import connection_lines, spectrum_lines
    from labpgt.plots import plot_spectrum
    from labpgt.sweeps import spectral_lines

    bench = load_bench(args.bench) if args.bench else embedded_bench(seed=args.seed)
    with bench:
        for line in connection_lines(bench):
            print(line, flush=True)
        u = np.full(bench.input_width, 0.5) if args.u is None else np.asarray(args.u)
        if u.shape != (bench.input_width,):
            raise UserError(f"--u needs {bench.input_width} values for this bench, got {u.size}")
        m = bench.measure(u[None, :])
    threshold = float(np.median(m.spectra[0])) + args.margin_db
    peaks = spectral_lines(m.spectra[0], threshold, args.prominence_db)
    print(*spectrum_lines(bench, m, peaks, threshold, args.margin_db, args.prominence_db), sep="\n")
    plot_spectrum(
        m.frequencies, m.spectra[0], args.out, title=f"{bench.config.name}", peaks=peaks, threshold_dbm=threshold
    )
    print(f"saved {args.out}")
    return 0


# --------------------------------------------------------------------------- sweep
def add_sweep(sub, kinds):
    p = sub.add_parser(
        "sweep",
        help="characterise the ring: sweep one setting, record every spectrum, find the threshold",
        description="Sweep one setting over POINTS evenly spaced values from START to STOP, one "
        "spectrum per point, recorded in a session of kind sweep. Prints the strongest "
        "line of each point (injected tones excluded) and, when the loop gain is swept, "
        "the auto-oscillation threshold; saves a PNG. Ring sweeps run with the "
        "generators off unless --tones. Ctrl+C or SIGTERM stops after the point being "
        "measured, RF off, the session valid.",
    )
    # a range may start with a minus sign (--gain -3:3:25); argparse would take it for an unknown option
    p._negative_number_matcher = re.compile(r"^-\.?\d")
    add_sweep_ranges(p.add_mutually_exclusive_group(required=True))
    p.add_argument("--bench", type=Path, help="bench TOML (default: the embedded simulated bench)")
    p.add_argument("--seed", type=int, default=0, help="seed of the embedded simulator (0)")
    p.add_argument(
        "--tones", action="store_true", help="generators on (at the bench's fixed settings) during a ring sweep"
    )
    p.add_argument(
        "--margin-db",
        type=POSITIVE_FLOAT,
        default=30.0,
        help="the threshold is where the strongest line first stands this far above the median (30)",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="FILE.h5",
        help="session file to write (default data/runs/<time>-sweep-<setting>.h5); never overwritten",
    )
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="the sweep's PNG (default: beside the session)")
    p.add_argument("--quiet", action="store_true", help="no line per point")
    p.set_defaults(run=run_sweep_command)


def run_sweep_command(args) -> int:
    from labpgt.bench import load_bench_config, simulated_bench_config
    from labpgt.display import SweepDisplay, sweep_description
    from labpgt.engine import RunEngine
    from labpgt.inspection import threshold_line
    from labpgt.plots import plot_sweep_result
    from labpgt.runs import default_session_path
    from labpgt.sweeps import THRESHOLD_SETTINGS, calibration_lines, plan_sweep

    setting, generator, (start, stop, points) = swept_setting(args)
    config = load_bench_config(args.bench) if args.bench else simulated_bench_config(embedded=True, seed=args.seed)
    spec = plan_sweep(
        config, setting, start, stop, points, instrument=generator, tones=args.tones, margin_db=args.margin_db
    )
    session = args.out or default_session_path("sweep", setting)
    if session.exists():
        raise UserError(f"{session} exists: a session is never overwritten; choose another --out")
    display = SweepDisplay(f"sweep of {sweep_description(spec, config.name)}", quiet=args.quiet)
    engine = RunEngine().subscribe(display)
    with signals.stopping_runs(engine, announce=lambda line: signals.say(f"labpgt: {line}")):
        outcome = engine.sweep(spec, config, session)
    result = outcome.result
    if setting in THRESHOLD_SETTINGS:
        print(threshold_line(result.threshold_db, spec.margin_db, setting).strip())
    if setting == "current_a" and len(result.points) >= 2:
        print(calibration_lines(result))
    print(f"session {session}")
    if result.points:
        plot = args.plot or session.with_suffix(".png")
        plot_sweep_result(result, display.traces, plot, sweep_description(spec, config.name))
        print(f"plot {plot}")
    if outcome.stopped is not None:
        signals.say(
            f"labpgt: stopped ({outcome.stopped.why}) after {len(result.points)} of {spec.points} points; "
            f"RF is off and the session holds them"
        )
        return outcome.stopped.exit_status
    return 0


# --------------------------------------------------------------------------- gui
def add_gui(sub, kinds):
    p = sub.add_parser(
        "gui",
        help="the PyMeasure window: queue training runs, watch the ring live",
        description="Queue training runs (or, with --sweep, ring characterisation sweeps), "
        "watch loss, accuracy and the live spectrum, open recorded sessions. Quit, "
        "Ctrl+C or SIGTERM stop the running run between two measurements (RF off, "
        "session saved), then close: exit status 0, 130 or 143.",
    )
    p.add_argument("--bench", type=Path, help="bench TOML (default: the embedded simulated bench)")
    p.add_argument("--sweep", action="store_true", help="characterise the ring (RingSweep) instead of training")
    p.add_argument("--runs-dir", type=Path, help="where sessions are written (data/runs)")
    p.add_argument("--open", type=Path, metavar="FILE.h5", help="open a recorded session at start")
    p.add_argument("--start", action="store_true", help="queue one run with the default inputs at once")
    p.set_defaults(run=run_gui)


def run_gui(args) -> int:
    if args.bench is not None:
        from labpgt.bench import load_bench_config

        load_bench_config(args.bench)  # a bad bench file is one line and exit 2, before any window opens
    if args.open is not None and not args.open.is_file():
        raise UserError(f"{args.open} does not exist")
    from labpgt.procedures.preflight import check_gui_environment

    check_gui_environment()  # missing system libraries or no display: one line, before Qt is loaded
    try:
        from labpgt.procedures.window import run_gui as show_window
    except ImportError as exc:
        raise UserError(f"the GUI needs the gui extra (pip install 'labpgt[gui]'): {exc}") from None
    return show_window(args.bench, "sweep" if args.sweep else "train", args.runs_dir, args.open, args.start)


# --------------------------------------------------------------------------- twin
def add_twin(sub, kinds):
    p = sub.add_parser(
        "twin",
        help="twins of the ring: fit one from recorded sessions",
        description="A twin is a differentiable model of the ring (u -> features) learned from "
        "measured pairs. Rehearse against it with --reservoir twin:FILE.h5.",
    )
    twin = p.add_subparsers(dest="twin_command", metavar="ACTION", parser_class=OneLineParser)
    twin.required = True
    fit = twin.add_parser(
        "fit",
        help="fit a twin on every query of recorded sessions of one bench layout",
        description="Fit a twin on the measured (u, features) pairs of the sessions (training "
        "or sweep, one bench layout), holding out a fifth of them to measure it; "
        "print its held-out error per feature, write the twin and a plot of "
        "predicted against measured features.",
    )
    fit.add_argument("sessions", type=Path, nargs="+", metavar="SESSION.h5")
    fit.add_argument("--out", type=Path, required=True, metavar="TWIN.h5")
    fit.add_argument("--width", type=POSITIVE_INT, default=64, help="width of its two hidden layers (64)")
    fit.add_argument("--iterations", type=POSITIVE_INT, default=20_000, help="most Adam steps (20000)")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--plot", type=Path, help="predicted against measured PNG (default: beside the twin)")
    fit.set_defaults(run=run_twin_fit)


def run_twin_fit(args) -> int:
    from labpgt.display import twin_fit_lines
    from labpgt.plots import plot_twin_fit
    from labpgt.twin import fit_twin

    for path in args.sessions:
        if not path.is_file():
            raise UserError(f"{path} does not exist")
    if args.out.exists() and not args.out.is_file():
        raise UserError(f"--out {args.out} is not a file")
    fit = fit_twin(args.sessions, args.out, hidden=(args.width, args.width), iterations=args.iterations, seed=args.seed)
    plot = args.plot or args.out.with_suffix(".png")
    plot_twin_fit(fit, plot)
    print(*twin_fit_lines(fit), f"twin {args.out}", f"plot {plot}", sep="\n")
    return 0


# --------------------------------------------------------------------------- main
COMMANDS = [add_train, add_benchmark, add_session_commands, add_sim, add_spectrum, add_sweep, add_twin, add_gui]


TRAINING_COMMANDS = {add_train: "train", add_benchmark: "benchmark"}


def build_parser(argv: list[str] | None = None) -> OneLineParser:
    """The parser of ``labpgt``; a training's options are those of the kinds ``argv`` chooses, and are made (which
    imports the modules that declare them) only for the command ``argv`` names."""
    parser = OneLineParser(
        prog="labpgt",
        description="Train neural networks through a physical reservoir "
        "(a magnonic auto-oscillation ring) with perturbative "
        "gradient training.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    argv = list(argv or [])
    kinds = chosen_kinds(argv, DEFAULT_KINDS)
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    for add in COMMANDS:
        if add in TRAINING_COMMANDS:
            add(sub, kinds, full=TRAINING_COMMANDS[add] == command)
        else:
            add(sub, kinds)
    return parser


def main(argv=None) -> int:
    """The ``labpgt`` command; with ``argv`` None it is this process's command and owns its signals to the end."""
    status = _command(list(sys.argv[1:] if argv is None else argv))
    if argv is None:
        signals.ignore_from_now()
    return status


def _command(argv: list[str]) -> int:
    try:
        with signals.interrupting():
            with signals.deferred():  # the settings' modules import numpy and JAX: not half-way
                parser = build_parser(argv)
            args = parser.parse_args(argv)
            return args.run(args)
    except UserError as exc:
        print(f"labpgt: {exc}" if not str(exc).startswith("labpgt") else str(exc), file=sys.stderr)
        return exc.exit_status
    except signals.Interrupted as exc:
        signals.say("labpgt: interrupted")
        return exc.exit_status
    except KeyboardInterrupt:
        signals.say("labpgt: interrupted")
        return 130
    except BrokenPipeError:  # the reader went away (`labpgt inspect … | head`): not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
