"""``labpgt spectrum``: one spectrum of the ring measured, its lines listed and plotted."""

from __future__ import annotations

from pathlib import Path

from labpgt.commandline import POSITIVE_FLOAT, unit_vector
from labpgt.errors import UserError


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
