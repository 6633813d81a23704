"""Every query a run made until its held-out accuracy first reached a level, read from its session.

    python benchmarks/queries_to_accuracy.py SESSION.h5 [...] [--accuracy 0.85 --accuracy 0.90]

For each session (complete, or interrupted: read up to its last checkpoint): the method (``+warm`` when it
started from earlier sessions' pairs; ``[setting=value]`` for the settings that differ among the sessions of that
method given, seed and device aside), the seed, the queries of every role (evaluation included) up to
the first evaluation of the **whole** held-out split at each level (an evaluation of part of it reaches
nothing; ``never`` if none did), the amortised figure with the reused pairs, the last whole-split
accuracy, the queries in all and the steps done. Then per method the mean over seeds that all reached
a level, and its factor over the first method's. The same count as ``labpgt benchmark``'s
``incl_evaluation_to_target`` and ``summarise.py --accuracy``, for runs that a benchmark did not finish.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from summarise import first_whole_reaching  # noqa: E402

from labpgt.session import SessionReader  # noqa: E402


def read_run(path) -> dict | None:
    with SessionReader(path) as r:
        if not r.n_checkpoints:
            return None
        last = r.last_checkpoint()
        train, prior = r.config["train"], r.prior()
    state = last.trainer_state
    holdout = train.get("holdout", "test")
    key = f"{holdout}_accuracy"
    whole = [e[key] for e in state["history"] if f"{holdout}_samples" not in e and key in e]
    return {
        "method": train["method"] + ("+warm" if prior is not None else ""),
        "config": train,
        "seed": train["seed"],
        "history": state["history"],
        "key": key,
        "prior": 0 if prior is None else len(prior[0]),
        "queries": sum(int(v) for v in state["queries"].values()),
        "last_whole": whole[-1] if whole else None,
        "steps": f"{last.step + 1}/{train['steps']}",
    }


IDENTITY = ("seed", "ring_device")  # what tells runs of one variant apart


def label_variants(runs: list[dict]) -> None:
    """Name each run's variant: its method, with the settings that differ among the runs of that method."""
    for method in sorted({run["method"] for run in runs}):
        mine = [run for run in runs if run["method"] == method]
        keys = sorted({key for run in mine for key in run["config"]} - set(IDENTITY))
        varying = [key for key in keys if len({repr(run["config"].get(key)) for run in mine}) > 1]
        for run in mine if varying else []:
            run["method"] += "[" + ",".join(f"{key}={run['config'].get(key)}" for key in varying) + "]"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sessions", nargs="+")
    parser.add_argument("--accuracy", type=float, action="append", default=[])
    args = parser.parse_args(argv)
    levels = args.accuracy or [0.85, 0.90]
    runs = [run for run in map(read_run, args.sessions) if run is not None]
    label_variants(runs)
    width = max([12, *(len(run["method"]) + 1 for run in runs)])
    print(
        f"{'method':<{width}}{'seed':>5}"
        + "".join(f"{f'to {level:.2f}':>10}{'amortised':>11}" for level in levels)
        + f"{'last whole':>12}{'queries':>9}{'steps':>11}"
    )
    by_method: dict[str, list] = {}
    for run in sorted(runs, key=lambda r: (r["method"], r["seed"])):
        reached = [first_whole_reaching(run["history"], run["key"], level) for level in levels]
        by_method.setdefault(run["method"], []).append(reached)
        cells = "".join(
            f"{'never' if q is None else q:>10}{'-' if q is None else q + run['prior']:>11}" for q in reached
        )
        last = "-" if run["last_whole"] is None else f"{run['last_whole']:.4f}"
        print(f"{run['method']:<{width}}{run['seed']:>5}{cells}{last:>12}{run['queries']:>9}{run['steps']:>11}")
    base = next(iter(by_method.values()), None)
    for i, level in enumerate(levels):
        base_values = [r[i] for r in base] if base else [None]
        base_mean = None if None in base_values else np.mean(base_values)
        for method, reached in by_method.items():
            values = [r[i] for r in reached]
            if None in values:
                print(f"{level:.2f} {method}: reached by {sum(q is not None for q in values)} of {len(values)} seeds")
                continue
            factor = f", {np.mean(values) / base_mean:.1f}x the first method's" if base_mean else ""
            print(f"{level:.2f} {method}: mean {np.mean(values):,.0f} over {len(values)} seeds{factor}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
