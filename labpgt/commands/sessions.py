"""``labpgt replay``, ``inspect`` and ``export``: a recorded session file's arguments, wired to replay, inspection
and export. None of them modifies the file.
"""

from __future__ import annotations

from pathlib import Path


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
