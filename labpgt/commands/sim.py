"""``labpgt sim``: the simulated bench's arguments (models, faults, behaviours, device, ring parts), wired to
serving it over loopback TCP until a signal stops it.
"""

from __future__ import annotations

from pathlib import Path

from labpgt import signals
from labpgt.commandline import (
    NONNEGATIVE_INT,
    POSITIVE_INT,
    add_ring_parts_options,
    analyzer_model,
    behaviour_list,
    fault_spec,
    generator_models,
    ring_parts,
)
from labpgt.errors import UserError


def add_sim(sub, kinds):
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
        type=analyzer_model,
        metavar="MODEL",
        help="the analyzer's model and SCPI dialect: esa (Agilent E4408B), x-series (Keysight "
        "N9030B) or fsx (R&S FSL6) (esa)",
    )
    p.add_argument(
        "--generator",
        type=generator_models,
        default=["psg"],
        metavar="MODEL[,MODEL...]",
        help="the generators' models, one for all or one per generator: psg (Agilent E8257D), e8267c (Agilent "
        "E8267C vector PSG), mxg (Keysight N5183B), exg (N5173B), mg369x (Anritsu MG3692C), tabor (Tabor Lucid "
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
