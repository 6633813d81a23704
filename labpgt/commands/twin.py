"""``labpgt twin fit``: a twin's arguments, wired to fitting it from recorded sessions."""

from __future__ import annotations

from pathlib import Path

from labpgt.commandline import POSITIVE_INT, OneLineParser
from labpgt.errors import UserError


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
