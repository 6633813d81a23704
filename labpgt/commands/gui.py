"""``labpgt gui``: the PyMeasure window's arguments, checked (bench file, session, display, the gui extra) before
Qt is loaded.
"""

from __future__ import annotations

from pathlib import Path

from labpgt.errors import UserError


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
