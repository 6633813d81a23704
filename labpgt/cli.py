"""The ``labpgt`` command line: argument parsing, and turning bad input into one line and exit 2.

Every subcommand is a thin shell over a function call; what it does lives in the module that owns
it (bench, benchmark, runs, inspection, export, replay, the simulated instruments). A
:class:`UserError` anywhere becomes ``labpgt: <message>`` on stderr with exit status 2 and no
traceback; Ctrl+C exits 130 and SIGTERM 143 (128 + the signal's number, the shell's convention), each
after RF is off and the session flushed.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import sys
import threading
import time
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


def _fraction(text: str) -> float:
    value = _number(text, float)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], not {text}")
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
    p.add_argument("--analyzer", default="esa", choices=("esa", "x-series", "fsx"),
                   help="the analyzer's model and SCPI dialect: esa (Agilent E4408B), x-series (Keysight "
                        "N9030B) or fsx (R&S FSL6) (esa)")
    p.add_argument("--generator", type=generator_models, default=["psg"], metavar="MODEL[,MODEL...]",
                   help="the generators' models, one for all or one per generator: psg (Agilent E8257D), "
                        "e8267c, mxg (Keysight N5183B), exg (N5173B), mg369x (Anritsu MG3692C) (psg)")
    p.add_argument("--write-bench", type=Path, metavar="FILE.toml",
                   help="also write the bench config of what is served (with its actual ports) to this file")
    p.add_argument("--faults", type=fault_spec, metavar="SPEC",
                   help="inject seeded faults per program message, e.g. drop=0.02,delay=0.01,garble=0.02,"
                        "error=0.01,reboot=0.001,seed=7 (also delay_s=6, reboot_s=0); "
                        "see labpgt.instruments.simulated.faults")
    p.add_argument("--ideal", action="store_true",
                   help="the kind ring: no drift, memory, nonlinear shift, sidebands, three-magnon loss, "
                        "mode-partition noise, wide locking (default: a real ring's behaviours, all on)")
    p.add_argument("--without", type=behaviour_list, default=(), metavar="NAMES",
                   help="switch these behaviours off, comma-separated: three_magnon, nonlinear_shift, memory, "
                        "mode_partition, locking, sidebands, drift")
    p.add_argument("--realtime", action="store_true",
                   help="each sweep takes its simulated duration (settling + sweep time) in the wall clock too")
    p.add_argument("--device", type=nonnegative_int, default=0, metavar="N",
                   help="which simulated ring: 0 the nominal one, N >= 1 drawn from the documented device spread (0)")
    p.set_defaults(run=run_sim)


def behaviour_list(text: str) -> tuple[str, ...]:
    from labpgt.instruments.simulated.ring import Behaviours

    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in Behaviours.names()]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown behaviour {unknown[0]!r}; expected {', '.join(Behaviours.names())}")
    return names


def fault_spec(text: str):
    from labpgt.instruments.simulated.faults import FaultSpec

    try:
        return FaultSpec.parse(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def generator_models(text: str) -> list[str]:
    models = [name.strip() for name in text.split(",")]
    known = ("psg", "e8267c", "mxg", "exg", "mg369x")
    unknown = [name for name in models if name not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown generator model {unknown[0]!r}; expected {', '.join(known)}")
    return models


def sim_ports(base: int, generators: int) -> dict[str, int] | None:
    if base == 0:
        return None
    return {"analyzer": base, "ring": base + 1, **{f"gen{i}": base + 10 + i for i in range(1, generators + 1)}}


def run_sim(args) -> int:
    from labpgt.bench.connect import simulator_behaviours
    from labpgt.instruments.simulated import SimulatedBench, serve

    models = args.generator * args.generators if len(args.generator) == 1 else args.generator
    if len(models) != args.generators:
        raise UserError(f"--generator names {len(models)} models for {args.generators} generators: give one, "
                        f"or one per generator")
    behaviours = simulator_behaviours({"preset": "ideal" if args.ideal else "real", **dict.fromkeys(args.without, False)})
    bench = SimulatedBench(n_generators=args.generators, seed=args.seed, noise=bool(args.noise),
                           analyzer_model=args.analyzer, generator_models=models, behaviours=behaviours,
                           realtime=args.realtime, device=args.device)
    try:
        server = serve(bench, host=args.host, ports=sim_ports(args.port, args.generators), faults=args.faults)
    except OSError as exc:
        raise UserError(f"cannot serve on {args.host} port {args.port}: {exc.strerror or exc}") from None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with server:
        if args.write_bench is not None:
            write_served_bench(args.write_bench, server.resources, args.generators, args.analyzer, models, args.device)
        if server.faults is not None:
            print(f"labpgt sim: injecting faults {server.faults.spec}", file=sys.stderr, flush=True)
        for name, resource in server.resources.items():
            print(f"{name} {resource}", flush=True)
        stop.wait()
    if server.faults is not None:
        print(f"labpgt sim: faults injected: {server.faults.summary()}", file=sys.stderr, flush=True)
    return 0


def write_served_bench(path: Path, resources: dict, generators: int, analyzer: str = "esa",
                       models: list[str] | None = None, device: int = 0) -> None:
    from labpgt.bench import bench_config_toml, simulated_bench_config

    config = simulated_bench_config(embedded=False, generators=generators, analyzer_model=analyzer,
                                    generator_models=models or "psg",
                                    physics={"device": device}).with_resources(resources)
    path.write_text(bench_config_toml(config))


# --------------------------------------------------------------------------- spectrum
def add_spectrum(sub):
    p = sub.add_parser("spectrum", help="measure one spectrum of the ring and save it as a PNG",
                       description="Set the generators from --u (or the bench's fixed settings), take "
                                   "one sweep, list every line that stands --margin-db above the trace's median "
                                   "and --prominence-db above its surroundings, and save the trace as a PNG with "
                                   "those lines and the threshold marked.")
    p.add_argument("--bench", type=Path, help="bench TOML (default: the embedded simulated bench)")
    p.add_argument("--u", type=_unit_vector, help="comma-separated inputs in [0,1], one per encoded setting")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("spectrum.png"))
    p.add_argument("--margin-db", type=positive_float, default=30.0,
                   help="a line is listed when it stands this far above the trace's median (30, as for sweep)")
    p.add_argument("--prominence-db", type=positive_float, default=6.0,
                   help="... and this far above the lowest point between it and any higher line (6)")
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
        for line in connection_lines(bench):
            print(line, flush=True)
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
    threshold = float(np.median(trace)) + args.margin_db
    peaks = spectral_lines(trace, threshold, args.prominence_db)
    print(f"{len(peaks)} lines at least {args.margin_db:g} dB above the median ({threshold:.1f} dBm) and "
          f"{args.prominence_db:g} dB above their surroundings:")
    for i in peaks:
        print(f"  peak {freqs[i] / 1e9:.4f} GHz  {trace[i]:6.1f} dBm")
    plot_spectrum(freqs, trace, args.out, title=f"{bench.config.name}", peaks=peaks, threshold_dbm=threshold)
    print(f"saved {args.out}")
    return 0


def spectral_lines(trace, threshold_dbm: float, prominence_db: float):
    """Indices (ascending frequency) of every local maximum at or above ``threshold_dbm`` that stands
    ``prominence_db`` above its surroundings (scipy's topographic prominence)."""
    from scipy.signal import find_peaks

    peaks, _ = find_peaks(trace, height=threshold_dbm, prominence=prominence_db)
    return [int(i) for i in peaks]


# --------------------------------------------------------------------------- train
def add_training_settings(p, single_run: bool) -> None:
    """The settings of a training, shared by ``train`` and ``benchmark`` (method defaults where unset)."""
    p.add_argument("--task", default="digits", help="digits | iris | wine | waveforms (digits)")
    p.add_argument("--reservoir", default=None,
                   help="ring-sim | digital | twin:FILE.h5 (ring-sim; ring-sim with --bench)")
    p.add_argument("--bench", type=Path, help="bench TOML: train through these instruments (real or served)")
    p.add_argument("--model", default="dense", help="dense | transformer (dense)")
    p.add_argument("--hidden", type=nonnegative_int, default=0,
                   help="dense: width of a hidden digital layer after the reservoir (0: none)")
    p.add_argument("--width", type=positive_int, default=16, help="transformer: model width (16)")
    p.add_argument("--heads", type=positive_int, default=2, help="transformer: attention heads (2)")
    p.add_argument("--blocks", type=positive_int, default=2,
                   help="transformer: blocks, each with the reservoir as its feed-forward layer (2)")
    p.add_argument("--tokens", type=nonnegative_int, default=0,
                   help="transformer: tokens per sample (0: the task's own, digits 8 rows of 8 pixels)")
    if single_run:
        p.add_argument("--steps", type=positive_int, help="optimizer steps (method default)")
    p.add_argument("--batch-size", type=positive_int, help="samples per step (32)")
    p.add_argument("--eval-every", type=positive_int,
                   help="evaluate every N steps, each time on the whole held-out split (default: every steps/20 "
                        "steps within the evaluation budget of --eval-fraction)" if single_run else
                        "evaluate every N steps (default steps/100: every 1 %%)")
    p.add_argument("--eval-fraction", type=_fraction, metavar="F",
                   help="evaluation budget: an evaluation between the first and the last step measures a fixed 100 "
                        "held-out and 100 training samples, and is made only while evaluation has spent at most F of "
                        "the training queries; the last step is evaluated on the whole held-out split; 0: no budget "
                        + ("(default 0.1 without --eval-every)" if single_run else
                           "(default 0 for a benchmark: every evaluation of the whole split, so that the training "
                           "queries to reach the target keep their resolution)"))
    if single_run:
        p.add_argument("--holdout", default="test", help="test | validation: what evaluations measure; tune on "
                                                         "validation, a split of the training data, which ends "
                                                         "with one look at the test split (test)")
    else:
        p.add_argument("--holdout", default="validation",
                       help="test | validation: what evaluations, the target and queries to target measure; "
                            "each validation run ends with one look at the test split, reported apart "
                            "(validation)")
    p.add_argument("--follow-ring", type=nonnegative_int, metavar="N",
                   help="every N steps move the feature standardisation to running feature moments, the loss "
                        "unchanged (for a drifting ring; 0: frozen at calibration)")
    p.add_argument("--no-drift", dest="ring_drift", action="store_false", default=None,
                   help="the embedded simulated ring without temperature and field drift (it drifts by default)")
    p.add_argument("--ring-device", dest="ring_device", type=nonnegative_int, metavar="N",
                   help="the embedded simulated ring's device: 0 the nominal ring, N >= 1 one drawn from the "
                        "documented device-to-device spread (0)")


def add_train(sub):
    p = sub.add_parser("train", help="train a network through the reservoir, recording an HDF5 session",
                       description="Train the digital parts of a network around the reservoir. Default: "
                                   "digits, the dense network, through the embedded simulated ring with node "
                                   "perturbation. Every query is recorded in an HDF5 session (--out, default "
                                   "data/runs/...); an interrupted run continues with --resume FILE.h5.")
    add_training_settings(p, single_run=True)
    p.add_argument("--method", default="node", help="node | twin | pgt | pgt-enc | spsa | backprop | readout (node)")
    p.add_argument("--lr", type=positive_float, help="learning rate (method default)")
    p.add_argument("--optimizer", help="sgd | momentum | adam (method default)")
    p.add_argument("--delta", type=positive_float, help="perturbation size δ (method default)")
    p.add_argument("--r", type=positive_int, help="pgt: perturbation entries uniform in {-r..r} (1)")
    p.add_argument("--p", type=probability, help="pgt: probability an entry is zeroed (0.5)")
    p.add_argument("--directions", type=positive_int, help="perturbation directions per step (method default)")
    p.add_argument("--twin-from", type=Path, nargs="+", metavar="SESSION.h5",
                   help="twin: start from the measurements of earlier sessions of the same bench")
    p.add_argument("--twin-check-every", type=positive_int, help="twin: probe steps between twin checks (25)")
    p.add_argument("--twin-tolerance", type=positive_float,
                   help="twin: largest relative squared gradient error the twin may have, checked on probes (1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="session file to write (default data/runs/<time>-<task>-<model>-<method>.h5)")
    p.add_argument("--resume", type=Path, metavar="FILE.h5", help="continue this interrupted session")
    p.add_argument("--plot", type=Path, help="loss/accuracy PNG (default: beside the session)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_train)


def training_settings(args) -> dict:
    """TrainConfig values from the shared arguments (validated by TrainConfig itself)."""
    from labpgt.reservoirs import reservoir_kind, resolved_reservoir_name

    reservoir = resolved_reservoir_name(args.reservoir or "ring-sim")
    if args.bench is not None:
        if not reservoir_kind(reservoir).takes_bench:
            raise UserError(f"--bench measures through instruments; it cannot go with --reservoir {args.reservoir}")
        if not args.bench.is_file():
            raise UserError(f"bench config {args.bench} does not exist")
    values = dict(task=args.task, reservoir=reservoir, model=args.model, hidden=args.hidden, width=args.width,
                  heads=args.heads, blocks=args.blocks, tokens=args.tokens, batch_size=args.batch_size,
                  eval_every=args.eval_every, eval_fraction=args.eval_fraction, holdout=args.holdout,
                  follow_ring=args.follow_ring, ring_drift=args.ring_drift, ring_device=args.ring_device,
                  bench=str(args.bench.resolve()) if args.bench else None)
    return {k: v for k, v in values.items() if v is not None}


def train_config_from(args):
    from labpgt.trainer import TrainConfig

    for path in args.twin_from or ():
        if not path.is_file():
            raise UserError(f"--twin-from {path} does not exist")
    optional = dict(steps=args.steps, lr=args.lr, optimizer=args.optimizer, delta=args.delta, r=args.r, p=args.p,
                    directions=args.directions, twin_check_every=args.twin_check_every,
                    twin_tolerance=args.twin_tolerance,
                    twin_from=tuple(str(p.resolve()) for p in args.twin_from) if args.twin_from else None)
    return TrainConfig(method=args.method, seed=args.seed, **training_settings(args),
                       **{k: v for k, v in optional.items() if v is not None}).resolved()


def run_train(args) -> int:
    with _signals_deferred():
        from labpgt.bench import BenchFault
        from labpgt.plots import plot_history
        from labpgt.runs import default_session_path, machine_change, resume_training, start_training

    if args.resume is not None:
        if not args.resume.is_file():
            raise UserError(f"cannot resume: {args.resume} does not exist")
        session = args.resume
        note = machine_change(session)
        if note:
            print(f"labpgt: {note}", file=sys.stderr)
        start = lambda display: resume_training(session, progress=display.progress,  # noqa: E731
                                                wrap_reservoir=display.wrap)
        display = _RunDisplay(args.quiet, f"resume {session.name}", *_steps_of(session))
    else:
        config = train_config_from(args)
        session = args.out or default_session_path(config.task, config.model, config.method)
        if session.exists():
            raise UserError(f"{session} exists; choose another --out, or continue it with --resume {session}")
        start = lambda display: start_training(config, session, progress=display.progress,  # noqa: E731
                                               wrap_reservoir=display.wrap)
        display = _RunDisplay(args.quiet, f"{config.task} {config.model} {config.method} {config.reservoir}",
                              config.steps)
    try:
        with display:
            result = start(display)
    except BenchFault as exc:
        raise UserError(f"{exc}{_saved_session_hint(session)}") from None
    except KeyboardInterrupt as exc:
        print(f"labpgt: interrupted; RF is off{_saved_session_hint(session)}", file=sys.stderr)
        raise SystemExit(interrupt_status(exc)) from None
    plot = args.plot or session.with_suffix(".png")
    plot_history(result, plot)
    q = result.queries
    print(f"final {result.holdout} accuracy {result.final_accuracy:.4f} (train {result.final_train_accuracy:.4f})")
    print(f"reservoir queries: {result.training_queries} for training "
          f"({', '.join(f'{k} {v}' for k, v in q.items() if k != 'eval' and v)}), {result.eval_queries} for evaluation")
    print(f"wall time {result.wall_seconds:.1f} s, of which measuring {result.measure_seconds:.1f} s "
          f"(both over the whole session{', every run of it' if args.resume is not None else ''})")
    print(f"session {session}")
    print(f"plot {plot}")
    return 0


def _saved_session_hint(session: Path) -> str:
    """The end of the line after a run stopped early: how to continue, only if ``session`` holds at least its
    config (a run stopped while connecting has written nothing)."""
    from labpgt.session import SessionReader

    if not session.exists():
        return f"; nothing was recorded ({session} was not created)"
    try:
        with SessionReader(session):
            pass
    except UserError:
        return f"; {session} holds no session to continue"
    return f" and the session is saved up to the last complete step: continue with labpgt train --resume {session}"


def _steps_of(session: Path) -> tuple[int, int]:
    """(planned steps, complete steps) of a recorded training."""
    from labpgt.session import SessionReader

    with SessionReader(session) as reader:
        done = 0 if reader.last_complete_step is None else reader.last_complete_step + 1
        return reader.planned_steps, done


def connection_lines(reservoir) -> list[str]:
    """Which instruments of a bench reached over VISA answered ``*IDN?``, and what each said (none for
    an embedded simulated bench or a reservoir without instruments)."""
    from labpgt.bench.config import BenchConfig

    config = getattr(reservoir, "config", None)
    if not isinstance(config, BenchConfig) or all(i.simulated_name is not None for i in config.instruments.values()):
        return []
    identities = reservoir.identities()
    width = max(len(name) for name in identities)
    return [f"connected to {config.name}: {len(identities)} instruments answered *IDN?",
            *(f"  {name:<{width}}  {config.instruments[name].resource}  {identity}"
              for name, identity in identities.items())]


class _CountedReservoir:
    """A reservoir that reports the rows of every measurement to ``measured(rows)`` and stops before one once
    a signal has been received; all else is the inner one's."""

    def __init__(self, inner, measured):
        self._inner, self._measured = inner, measured

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def measure(self, U):
        raise_if_interrupted()
        measurement = self._inner.measure(U)
        self._measured(len(measurement))
        return measurement


class _RunDisplay:
    """What ``labpgt train`` shows while it runs: the connection lines once the instruments answered, then
    (unless quiet) a tqdm bar on stderr from the first query on — steps done of ``total``, queries so far."""

    REFRESH_S = 0.5

    def __init__(self, quiet: bool, label: str, total: int, done: int = 0):
        self.quiet, self.label, self.total, self.done = quiet, label, total, done
        self.bar, self.queries, self._shown = None, 0, 0.0

    def __enter__(self):
        return self

    def wrap(self, reservoir):
        """``wrap_reservoir`` of :func:`labpgt.runs.start_training`: called once the reservoir is connected."""
        for line in connection_lines(reservoir):
            print(line, flush=True)
        return _CountedReservoir(reservoir, self._measured)

    def _measured(self, rows: int) -> None:
        self.queries += rows
        if self.quiet:
            return
        bar = self._bar()
        if time.monotonic() - self._shown >= self.REFRESH_S:
            self._shown = time.monotonic()
            bar.set_postfix_str(f"{self.queries} queries", refresh=False)
            bar.refresh()

    def progress(self, step: int, total: int) -> None:
        if self.quiet:
            return
        bar = self._bar()
        bar.total = total
        bar.set_postfix_str(f"{self.queries} queries", refresh=False)
        bar.update(step - bar.n)

    def _bar(self):
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=self.done, desc=self.label, unit="step", file=sys.stderr,
                            dynamic_ncols=True)
        return self.bar

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------- benchmark
def add_benchmark(sub):
    p = sub.add_parser("benchmark", help="compare training methods by accuracy and reservoir queries",
                       description="Train each method with each seed, each run its own session (a complete one is "
                                   "read back, an interrupted one resumed), fanned out over dask worker "
                                   "processes. The target is the mean final held-out accuracy of pgt (or of "
                                   "--target) in the same benchmark; each run reports the training queries it "
                                   "needed to reach it.")
    add_training_settings(p, single_run=False)
    p.add_argument("--methods", default="pgt,node,readout",
                   help="comma-separated variants METHOD[:KEY=VALUE...], e.g. pgt,pgt:optimizer=adam:lr=0.01,node")
    p.add_argument("--seeds", type=positive_int, default=1, help="seeds 0..N-1 per method (1)")
    p.add_argument("--target", default="pgt", metavar="VARIANT",
                   help="the variant whose mean final held-out accuracy is the target, run too if it is not "
                        "among --methods, e.g. --target node for --methods backprop,node (pgt)")
    p.add_argument("--steps", action="append", default=[], metavar="METHOD=N",
                   help="steps for one method or variant label, e.g. --steps pgt=3000 (repeatable)")
    p.add_argument("--set", action="append", default=[], dest="grid", metavar="[METHOD.]KEY=V1,V2",
                   help="run every variant of METHOD (every method without it) with each value of a training "
                        "setting, e.g. --set pgt.lr=0.002,0.004 --set node.optimizer=sgd,adam --set "
                        "digital_noise=0,0.05; several --set make a grid (repeatable)")
    p.add_argument("--out-dir", "--sessions", type=Path, dest="out_dir",
                   help="directory of the runs' sessions, one file per run (data/runs/benchmark-<time>); "
                        "give an existing one to complete an interrupted benchmark")
    p.add_argument("--workers", type=nonnegative_int, default=None,
                   help="dask worker processes on this machine (its core count); 0 runs in this process")
    p.add_argument("--scheduler", metavar="ADDRESS", help="an existing dask cluster, e.g. tcp://10.0.0.5:8786")
    p.add_argument("--json", type=Path, metavar="OUT", help="write the results as JSON here")
    p.add_argument("--plot", type=Path, metavar="PNG", help="accuracy against training queries per method")
    p.set_defaults(run=run_benchmark_command)


class _runs_bar:
    """A tqdm bar on stderr counting finished runs, with a line per run above it."""

    def __init__(self, total: int):
        self.total, self.bar = total, None

    def __enter__(self):
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, desc="benchmark", unit="run", file=sys.stderr, dynamic_ncols=True)
        return self.finished

    def finished(self, label, seed, outcome) -> None:
        self.bar.write(f"  {label} seed {seed}: {outcome['holdout']} accuracy {outcome['final_accuracy']:.4f} "
                       f"after {outcome['training_queries']} training queries ({outcome['wall_seconds']:.0f} s)",
                       file=sys.stderr)
        self.bar.update(1)

    def __exit__(self, *exc):
        self.bar.close()


def _steps_by_method(items):
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


def run_benchmark_command(args) -> int:
    import os

    from labpgt.benchmark import Variant, format_table, plan_benchmark, run_plan, write_json
    from labpgt.runs import default_session_path

    variants = [Variant.parse(m) for m in args.methods.split(",") if m.strip()]
    settings = training_settings(args)
    sessions = args.out_dir or default_session_path("benchmark").with_suffix("")
    plan = plan_benchmark(settings.pop("task"), settings.pop("reservoir"), variants, seeds=range(args.seeds),
                          sessions_dir=sessions, steps_by_method=_steps_by_method(args.steps), grid=args.grid,
                          target=args.target, **settings)
    workers = args.workers if args.workers is not None else 0 if plan.on_bench else min(len(plan.runs), os.cpu_count() or 1)
    plan.check_placement(workers, args.scheduler)
    print(f"{len(plan.runs)} runs on {workers or 'no'} worker processes; sessions in {sessions}",
          file=sys.stderr, flush=True)
    with _runs_bar(len(plan.runs)) as report:
        result = run_plan(plan, workers=workers, scheduler=args.scheduler, progress=report)
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        from labpgt.plots import plot_benchmark

        print(f"wrote {plot_benchmark(result, args.plot)}")
    return 0


# --------------------------------------------------------------------------- sessions
def add_session_commands(sub):
    p = sub.add_parser("replay", help="rerun a recorded session offline and check it reproduces",
                       description="Rerun the training of a session file through a replay reservoir that "
                                   "serves the recorded responses. Exit 0 if the trajectory reproduces, 1 "
                                   "naming the first divergence. Each step is recomputed from the recorded "
                                   "state before it and must agree within 1e-8 of the step (another machine's "
                                   "rounding); the largest deviation is reported. With --readout ridge, refit a "
                                   "readout on the recorded features instead. The file is never modified.")
    p.add_argument("session", type=Path)
    p.add_argument("--exact", action="store_true", help="demand bit-identical results (the recording machine)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--readout", choices=("ridge",), help="offline re-analysis: refit this readout")
    p.set_defaults(run=run_replay)
    p = sub.add_parser("inspect", help="summarise a session file")
    p.add_argument("session", type=Path)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run_inspect)
    p = sub.add_parser("export", help="export a session to CSV and .npy files")
    p.add_argument("session", type=Path)
    p.add_argument("--to", type=Path, required=True, metavar="DIR")
    p.set_defaults(run=run_export)


def run_replay(args) -> int:
    from labpgt.replay import refit_readout, replay_session

    if args.readout:
        print(refit_line(refit_readout(args.session, kind=args.readout)))
        return 0
    report = replay_session(args.session, exact=args.exact)
    if args.json:
        import json

        print(json.dumps(dict(report.to_dict(), summary=report.summary()), indent=2))
    else:
        print(report.summary())
    return 0 if report.ok else 1


def refit_line(refit: dict) -> str:
    """:func:`labpgt.replay.refit_readout`'s result in one sentence, as replay and inspect report."""
    return (f"readout {refit['kind']} refitted on the recorded features of step {refit['step']} "
            f"({refit['source']} queries): {refit['n_train']} training rows, {refit['n_test']} test rows, "
            f"alpha {refit['alpha']:g}; train accuracy {refit['train_accuracy']:.4f}, "
            f"test accuracy {refit['test_accuracy']:.4f}")


def run_inspect(args) -> int:
    import json

    from labpgt.inspection import format_inspection, inspect_session

    info = inspect_session(args.session)
    print(json.dumps(info, indent=2) if args.json else format_inspection(info))
    return 0


def run_export(args) -> int:
    from labpgt.export import export_session

    if args.to.exists() and not args.to.is_dir():
        raise UserError(f"--to {args.to} exists and is not a directory")
    for path in export_session(args.session, args.to):
        print(path)
    return 0


# --------------------------------------------------------------------------- sweep
SWEEP_OPTIONS = {  # option: (the setting swept, whether the option names a generator before the range)
    "gain": ("loop_gain_db", False), "field": ("field_mt", False),
    "frequency": ("frequency_hz", True), "power": ("power_dbm", True),
}
RANGE = "START:STOP:POINTS"


def add_sweep(sub):
    p = sub.add_parser("sweep", help="characterise the ring: sweep one setting, record every spectrum, "
                                     "find the threshold",
                       description="Sweep one setting over POINTS evenly spaced values from START to STOP, one "
                                   "spectrum per point, recorded in a session of kind sweep. Prints the strongest "
                                   "line of each point (injected tones excluded) and, when the loop gain is swept, "
                                   "the auto-oscillation threshold; saves a PNG. Ring sweeps run with the "
                                   "generators off unless --tones. Ctrl+C or SIGTERM stops after the point being "
                                   "measured, RF off, the session valid.")
    # a range may start with a minus sign (--gain -3:3:25); argparse would take it for an unknown option
    p._negative_number_matcher = re.compile(r"^-\.?\d")
    swept = p.add_mutually_exclusive_group(required=True)
    swept.add_argument("--gain", metavar=RANGE, help="the ring's loop gain, dB")
    swept.add_argument("--field", metavar=RANGE, help="the ring's bias field, mT")
    swept.add_argument("--frequency", nargs=2, metavar=("GEN", RANGE),
                       help="generator GEN's frequency, Hz (GEN as the bench config names it)")
    swept.add_argument("--power", nargs=2, metavar=("GEN", RANGE), help="generator GEN's power, dBm")
    p.add_argument("--bench", type=Path, help="bench TOML (default: the embedded simulated bench)")
    p.add_argument("--seed", type=int, default=0, help="seed of the embedded simulator (0)")
    p.add_argument("--tones", action="store_true",
                   help="generators on (at the bench's fixed settings) during a ring sweep")
    p.add_argument("--margin-db", type=positive_float, default=30.0,
                   help="the threshold is where the strongest line first stands this far above the median (30)")
    p.add_argument("--out", type=Path, metavar="FILE.h5",
                   help="session file to write (default data/runs/<time>-sweep-<setting>.h5); never overwritten")
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="the sweep's PNG (default: beside the session)")
    p.add_argument("--quiet", action="store_true", help="no line per point")
    p.set_defaults(run=run_sweep_command)


def swept_setting(args) -> tuple[str, str | None, tuple[float, float, int]]:
    """``(setting, generator or None, (start, stop, points))`` of the one sweep option given."""
    option = next(name for name in SWEEP_OPTIONS if getattr(args, name) is not None)
    setting, names_generator = SWEEP_OPTIONS[option]
    given = getattr(args, option)
    generator, text = given if names_generator else (None, given)
    return setting, generator, sweep_range(f"--{option}", text)


def sweep_range(option: str, text: str) -> tuple[float, float, int]:
    """``START:STOP:POINTS`` as (start, stop, points); anything else is a one-line UserError."""
    parts = text.split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        start, stop, points = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise UserError(f"{option} {text!r}: a range is {RANGE}, e.g. -3:3:25") from None
    return start, stop, points


def run_sweep_command(args) -> int:
    from labpgt.bench import Bench, load_bench_config, simulated_bench_config
    from labpgt.inspection import threshold_line
    from labpgt.runs import default_session_path, record_sweep
    from labpgt.sweeps import THRESHOLD_SETTING, plan_sweep

    setting, generator, (start, stop, points) = swept_setting(args)
    config = load_bench_config(args.bench) if args.bench else simulated_bench_config(embedded=True, seed=args.seed)
    spec = plan_sweep(config, setting, start, stop, points, instrument=generator, tones=args.tones,
                      margin_db=args.margin_db)
    session = args.out or default_session_path("sweep", setting)
    if session.exists():
        raise UserError(f"{session} exists: a session is never overwritten; choose another --out")
    traces = []
    with Bench(config) as bench, _StopOnSignal() as stop_signal:
        for line in connection_lines(bench):
            print(line, flush=True)
        result = record_sweep(spec, bench, session, progress=None if args.quiet else _PointPrinter(spec, config.name),
                              should_stop=stop_signal.requested.is_set, on_trace=traces.append)
        frequencies = bench.frequencies
    if setting == THRESHOLD_SETTING:
        print(threshold_line(result.threshold_db, spec.margin_db).strip())
    print(f"session {session}")
    if result.points:
        plot = args.plot or session.with_suffix(".png")
        _plot_sweep(result, frequencies, traces, plot, config.name)
        print(f"plot {plot}")
    if not result.completed:
        print(f"labpgt: stopped after {len(result.points)} of {spec.points} points; RF is off and the session "
              f"holds them", file=sys.stderr)
        return interrupt_status(signum=stop_signal.signum)
    return 0


def _described(spec, bench_name: str) -> str:
    return (f"{spec.label} from {spec.start:g} to {spec.stop:g} in {spec.points} points "
            f"({'generators on' if spec.tones else 'generators off'}) on {bench_name}")


class _PointPrinter:
    """The ``progress`` of a sweep on the terminal: what is swept, then one row per point as it is measured."""

    def __init__(self, spec, bench_name: str):
        self.heading = f"sweep of {_described(spec, bench_name)}"

    def __call__(self, point, total: int) -> None:
        from labpgt.inspection import PEAK_TITLE, peak_line

        if point.index == 0:
            print(self.heading, PEAK_TITLE, sep="\n")
        print(peak_line(point.index, point.recorded()), flush=True)


def _plot_sweep(result, frequencies, traces, plot: Path, bench_name: str) -> None:
    import numpy as np

    from labpgt.plots import plot_sweep

    from labpgt.sweeps import THRESHOLD_SETTING

    spec = result.spec
    plot_sweep(result.columns(), frequencies, np.stack(traces), plot, value_label=spec.label,
               margin_level_db=spec.margin_db if spec.setting == THRESHOLD_SETTING else None,
               threshold=result.threshold_db, title=_described(spec, bench_name))


class _StopOnSignal:
    """Ctrl+C or SIGTERM sets ``requested`` (the sweep stops after the point being measured); a second one
    interrupts at once, as without this handler."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = threading.Event()
        self.signum = signal.SIGINT
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._request) for signum in self.SIGNALS}
        return self

    def _request(self, signum, frame):
        print("labpgt: stopping after the point being measured (again to interrupt at once)", file=sys.stderr,
              flush=True)
        self.signum = signum
        self.requested.set()
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def __exit__(self, *exc):
        self._restore()


# --------------------------------------------------------------------------- gui
def add_gui(sub):
    p = sub.add_parser("gui", help="the PyMeasure window: queue training runs, watch the ring live",
                       description="Queue training runs (or, with --sweep, ring characterisation sweeps), "
                                   "watch loss, accuracy and the live spectrum, open recorded sessions. Quit, "
                                   "Ctrl+C or SIGTERM stop the running run between two measurements (RF off, "
                                   "session saved), then close: exit status 0, 130 or 143.")
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
        from labpgt.procedures.window import main as gui_main
    except ImportError as exc:
        raise UserError(f"the GUI needs the gui extra (pip install 'labpgt[gui]'): {exc}") from None
    argv = [*(["--bench", str(args.bench)] if args.bench else []), *(["--sweep"] if args.sweep else []),
            *(["--runs-dir", str(args.runs_dir)] if args.runs_dir else []),
            *(["--open", str(args.open)] if args.open else []), *(["--start"] if args.start else [])]
    return gui_main(argv)


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


# --------------------------------------------------------------------------- twin
def add_twin(sub):
    p = sub.add_parser("twin", help="twins of the ring: fit one from recorded sessions",
                       description="A twin is a differentiable model of the ring (u -> features) learned from "
                                   "measured pairs. Rehearse against it with --reservoir twin:FILE.h5.")
    twin = p.add_subparsers(dest="twin_command", metavar="ACTION", parser_class=_Parser)
    twin.required = True
    fit = twin.add_parser("fit", help="fit a twin on every query of recorded sessions of one bench layout",
                          description="Fit a twin on the measured (u, features) pairs of the sessions (training "
                                      "or sweep, one bench layout), holding out a fifth of them to measure it; "
                                      "print its held-out error per feature, write the twin and a plot of "
                                      "predicted against measured features.")
    fit.add_argument("sessions", type=Path, nargs="+", metavar="SESSION.h5")
    fit.add_argument("--out", type=Path, required=True, metavar="TWIN.h5")
    fit.add_argument("--width", type=positive_int, default=64, help="width of its two hidden layers (64)")
    fit.add_argument("--iterations", type=positive_int, default=20_000, help="most Adam steps (20000)")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--plot", type=Path, help="predicted against measured PNG (default: beside the twin)")
    fit.set_defaults(run=run_twin_fit)


def run_twin_fit(args) -> int:
    from labpgt.plots import plot_twin_fit
    from labpgt.twin import fit_twin

    for path in args.sessions:
        if not path.is_file():
            raise UserError(f"{path} does not exist")
    if args.out.exists() and not args.out.is_file():
        raise UserError(f"--out {args.out} is not a file")
    fit = fit_twin(args.sessions, args.out, hidden=(args.width, args.width), iterations=args.iterations,
                   seed=args.seed)
    print(f"fitted on {fit.rows_fitted} measured pairs, {fit.iterations} Adam steps; "
          f"held out {fit.rows_held_out}")
    print(f"held-out error {fit.heldout_error:.4f} (standardised RMS: 0 perfect, 1 = each feature's mean); "
          f"on the fitted pairs {fit.train_error:.4f}")
    print("feature  held-out error  residual std")
    for i, (error, residual) in enumerate(zip(fit.heldout_error_per_feature, fit.residual_std)):
        print(f"{i:7d}  {error:14.4f}  {residual:12.5f}")
    plot = args.plot or args.out.with_suffix(".png")
    plot_twin_fit(fit, plot)
    print(f"twin {args.out}")
    print(f"plot {plot}")
    return 0


COMMANDS = [add_train, add_benchmark, add_session_commands, add_sim, add_spectrum, add_sweep, add_twin, add_gui]


class Interrupted(KeyboardInterrupt):
    """Ctrl+C, as a KeyboardInterrupt of its own type. CPython marks a plain KeyboardInterrupt that leaves any
    ``exec`` or ``eval`` of a string (how dataclasses and namedtuples are made, inside imports too) as never
    handled, even when it is caught later, and ``python -m labpgt`` then kills itself with SIGINT at exit
    instead of returning 130; it compares the exact type, so a subclass is not marked (seen in CI)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl+C raises KeyboardInterrupt, so every ``finally`` runs (RF off, session flushed)."""


_SIGNALS_RECEIVED: list[int] = []


def _interrupt(signum, frame):
    """SIGINT and SIGTERM: raise at once, and remember it (see :func:`raise_if_interrupted`)."""
    _SIGNALS_RECEIVED.append(signum)
    raise Terminated if signum == signal.SIGTERM else Interrupted


def _unraisable(unraisable) -> None:
    """``sys.unraisablehook``: an interrupt raised inside a finalizer or a GC callback (JAX has one) is not a
    fault to print a traceback for — :func:`raise_if_interrupted` raises it again at the next measurement."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _SIGNALS_RECEIVED:
        return
    sys.__unraisablehook__(unraisable)


@contextlib.contextmanager
def _signals_deferred():
    """SIGINT and SIGTERM held back while the numerical libraries import (an import interrupted half-way
    has crashed the interpreter at exit); a signal received meanwhile is acted on right after."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def raise_if_interrupted() -> None:
    """Raise again for a signal already received: an interrupt raised where Python can only print it (inside
    a finalizer or a callback) is swallowed there, and the run must still stop at its next measurement."""
    if _SIGNALS_RECEIVED:
        raise Terminated if _SIGNALS_RECEIVED[-1] == signal.SIGTERM else Interrupted


def interrupt_status(exc: BaseException | None = None, signum: int = signal.SIGINT) -> int:
    """The exit status of a run stopped by a signal: 128 + its number (Ctrl+C 130, SIGTERM 143)."""
    return 128 + int(signal.SIGTERM if isinstance(exc, Terminated) else signum)


def main(argv=None) -> int:
    if threading.current_thread() is threading.main_thread():
        _SIGNALS_RECEIVED.clear()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _interrupt)
        sys.unraisablehook = _unraisable
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except UserError as exc:
        print(f"labpgt: {exc}" if not str(exc).startswith("labpgt") else str(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print("labpgt: interrupted", file=sys.stderr)
        return interrupt_status(exc)
    except BrokenPipeError:  # the reader went away (`labpgt inspect … | head`): not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
