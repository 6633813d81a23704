"""The ``labpgt`` command line: argument parsing, and turning bad input into one line and exit 2.

Every subcommand is a thin shell over a function call; what it does lives in the module that owns
it (bench, experiments, session, replay, the simulated instruments). A :class:`UserError` anywhere
becomes ``labpgt: <message>`` on stderr with exit status 2 and no traceback; Ctrl+C exits 130.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from labpgt.errors import UserError


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (and exit status 2) instead of a usage block."""

    def error(self, message):
        raise UserError(f"{self.prog}: {message} (see --help)")


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def nonnegative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or a positive integer, not {text}")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, not {text}")
    return value


def probability(text: str) -> float:
    value = _number(text, float)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), not {text}")
    return value


def _number(text, kind):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None


# --------------------------------------------------------------------------- sim
def add_sim(sub):
    p = sub.add_parser("sim", help="serve the simulated bench over loopback TCP (raw-socket SCPI)",
                       description="Serve each simulated instrument on its own TCP port, reachable as "
                                   "TCPIP::HOST::PORT::SOCKET through any VISA. Prints one line per "
                                   "instrument, NAME RESOURCE, then serves until interrupted.")
    p.add_argument("--generators", type=positive_int, default=4, help="number of signal generators (4)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1: this machine only)")
    p.add_argument("--port", type=nonnegative_int, default=15025,
                   help="base port: analyzer = PORT, ring = PORT+1, generator i = PORT+10+i (15025); "
                        "0 lets the system choose free ports")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulator's noise (0)")
    p.add_argument("--noise", type=int, choices=(0, 1), default=1, help="1: measurement noise on; 0: off")
    p.set_defaults(run=run_sim)


def sim_ports(base: int, generators: int) -> dict[str, int] | None:
    if base == 0:
        return None
    return {"analyzer": base, "ring": base + 1, **{f"gen{i}": base + 10 + i for i in range(1, generators + 1)}}


def run_sim(args) -> int:
    from labpgt.instruments.simulated import SimulatedBench, serve

    bench = SimulatedBench(n_generators=args.generators, seed=args.seed, noise=bool(args.noise))
    try:
        server = serve(bench, host=args.host, ports=sim_ports(args.port, args.generators))
    except OSError as exc:
        raise UserError(f"cannot serve on {args.host} port {args.port}: {exc.strerror or exc}") from None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with server:
        for name, resource in server.resources.items():
            print(f"{name} {resource}", flush=True)
        stop.wait()
    return 0


# --------------------------------------------------------------------------- spectrum
def add_spectrum(sub):
    p = sub.add_parser("spectrum", help="measure one spectrum of the ring and save it as a PNG",
                       description="Set the generators from --u (or the bench's fixed settings), take "
                                   "one sweep, print the strongest lines and save the trace as a PNG.")
    p.add_argument("--bench", type=Path, help="bench TOML (default: the embedded simulated bench)")
    p.add_argument("--u", type=_unit_vector, help="comma-separated inputs in [0,1], one per encoded setting")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("spectrum.png"))
    p.set_defaults(run=run_spectrum)


def _unit_vector(text):
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not all(0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError("every input must be in [0, 1]")
    return values


def run_spectrum(args) -> int:
    import numpy as np

    from labpgt.bench import embedded_bench, load_bench
    from labpgt.plots import plot_spectrum

    bench = load_bench(args.bench) if args.bench else embedded_bench(seed=args.seed)
    with bench:
        u = np.full(bench.input_width, 0.5) if args.u is None else np.asarray(args.u)
        if u.shape != (bench.input_width,):
            raise UserError(f"--u needs {bench.input_width} values for this bench, got {u.size}")
        m = bench.measure(u[None, :])
    trace, freqs = m.spectra[0], m.frequencies
    print(f"bench: {bench.config.name}")
    for name, value in zip(bench.setting_names, m.settings[0]):
        print(f"  {name:>18} = {value:.6g}")
    print(f"trace: {freqs.size} points, {freqs[0] / 1e9:.4f}-{freqs[-1] / 1e9:.4f} GHz, "
          f"median {np.median(trace):.1f} dBm")
    for i in _strongest_peaks(trace, 6):
        print(f"  peak {freqs[i] / 1e9:.4f} GHz  {trace[i]:6.1f} dBm")
    plot_spectrum(freqs, trace, args.out, title=f"{bench.config.name}")
    print(f"saved {args.out}")
    return 0


def _strongest_peaks(trace, count):
    import numpy as np

    local = np.flatnonzero((trace[1:-1] > trace[:-2]) & (trace[1:-1] >= trace[2:])) + 1
    return sorted(local[np.argsort(trace[local])[::-1][:count]])


# --------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="labpgt", description="Train neural networks through a physical reservoir "
                                                "(a magnonic auto-oscillation ring) with perturbative "
                                                "gradient training.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


COMMANDS = [add_sim, add_spectrum]


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except UserError as exc:
        print(f"labpgt: {exc}" if not str(exc).startswith("labpgt") else str(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("labpgt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
