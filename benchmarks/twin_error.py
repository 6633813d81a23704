"""A twin run's own log: its held-out error over the run, when it probed, and how its checks went.

    python benchmarks/twin_error.py SESSION.h5 [SESSION.h5 ...] [--plot twin-error.png] [--buckets 6]

For each ``twin`` session: per slice of the run, the mean held-out error of the twin (measured on
each step's fresh queries before it was fitted on them), the share of steps that used the twin's
VJP, and the mean twin gradient error of its probe steps. With ``--plot``, the held-out error of
every step against the training queries, probe steps marked.
"""

from __future__ import annotations

import argparse

import numpy as np

from labpgt.session import SessionReader


def twin_log(path) -> dict:
    with SessionReader(path) as session:
        steps = session.steps()
        extras = [session.step_extra(i) for i in range(session.n_steps)]
        seed = session.config["train"]["seed"]
    return {
        "seed": seed,
        "queries": steps["training_queries"],
        "error": np.array([e["twin_error"] for e in extras]),
        "used": np.array([e["twin_used"] for e in extras]),
        "gradient_error": np.array([e.get("twin_gradient_error", np.nan) for e in extras]),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sessions", nargs="+")
    parser.add_argument("--plot")
    parser.add_argument("--buckets", type=int, default=6)
    args = parser.parse_args(argv)
    logs = [twin_log(path) for path in args.sessions]
    print(f"{'seed':>4}{'steps':>12}{'queries':>16}{'held-out error':>16}{'twin used':>11}{'gradient error':>16}")
    for log in logs:
        for chunk in np.array_split(np.arange(len(log["error"])), args.buckets):
            g = log["gradient_error"][chunk]
            probe = f"{np.nanmean(g):.3f} ({np.sum(~np.isnan(g))})" if np.any(~np.isnan(g)) else "-"
            span, queries = f"{chunk[0]}-{chunk[-1]}", f"{log['queries'][chunk[-1]]:,}"
            print(
                f"{log['seed']:>4}{span:>12}{queries:>16}"
                f"{log['error'][chunk].mean():>16.3f}{log['used'][chunk].mean():>11.2f}{probe:>16}"
            )
    if args.plot:
        from labpgt.plots import _figure, _save

        fig = _figure(figsize=(8, 4))
        ax = fig.subplots()
        for log in logs:
            (line,) = ax.plot(log["queries"], log["error"], lw=1, label=f"seed {log['seed']}")
            probes = log["used"] == 0
            ax.plot(log["queries"][probes], log["error"][probes], "o", ms=4, color=line.get_color())
        ax.set_xlabel("training queries")
        ax.set_ylabel("twin's held-out error (standardised RMS)")
        ax.set_title("twin error on each step's fresh queries (dots: probe steps)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
        print(f"wrote {_save(fig, args.plot)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
