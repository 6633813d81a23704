"""``labpgt sweep``: a ring characterisation's arguments (one setting's range, :mod:`labpgt.commandline`), wired to
the run engine; the threshold and calibration lines it prints, the plot it saves.
"""

from __future__ import annotations

import re
from pathlib import Path

from labpgt import signals
from labpgt.commandline import POSITIVE_FLOAT, add_sweep_ranges, swept_setting
from labpgt.errors import UserError


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
