"""What the command line shows while a run measures and once it has ended.

This module owns the terminal: who answered ``*IDN?`` (:func:`connection_lines`), the progress bar of a
training (:class:`TrainingDisplay`) and the row per point of a sweep (:class:`SweepDisplay`) — both
subscribers of the run engine (:mod:`labpgt.engine`), which they only watch — and the lines that end a run:
its result (:func:`training_lines`), or how to continue it (:func:`stopped_line`). stdout carries results,
stderr the bar and the notes.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from labpgt.engine import Connected, Measured, Notice, PointEnded, Resumed, StepEnded, Suspended
from labpgt.errors import UserError
from labpgt.signals import say


def connection_lines(reservoir) -> list[str]:
    """Which instruments of a bench reached over VISA answered ``*IDN?``, what each said, and the bench's notes
    (a generator's step attenuator held); none for an embedded simulated bench or a reservoir without instruments."""
    from labpgt.bench.config import BenchConfig

    config = getattr(reservoir, "config", None)
    if not isinstance(config, BenchConfig) or all(i.simulated_name is not None for i in config.instruments.values()):
        return []
    identities = reservoir.identities()
    width = max(len(name) for name in identities)
    return [
        f"connected to {config.name}: {len(identities)} instruments answered *IDN?",
        *(
            f"  {name:<{width}}  {config.instruments[name].resource}  {identity}"
            for name, identity in identities.items()
        ),
        *getattr(reservoir, "notes", []),
    ]  # what the bench chose for the instruments (an attenuator held)


class TrainingDisplay:
    """A training on the terminal: the connection lines once the instruments answered, then (unless quiet) a
    tqdm bar on stderr from the first query on — steps done of the run's, queries the run measured so far."""

    REFRESH_S = 0.5

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.bar = None
        self.queries = 0
        self._shown = 0.0

    def __call__(self, event) -> None:
        if isinstance(event, Connected):
            self.queries = event.queries  # a resumed run's bar counts the run's queries, as its steps
            for line in connection_lines(event.reservoir):
                print(line, flush=True)
            if not self.quiet:
                from tqdm import tqdm

                self.bar = tqdm(
                    total=event.total,
                    initial=event.done,
                    desc=event.label,
                    unit="step",
                    file=sys.stderr,
                    dynamic_ncols=True,
                )
        elif isinstance(event, Measured):
            self.queries += len(event.measurement)
            if self.bar is not None and time.monotonic() - self._shown >= self.REFRESH_S:
                self._shown = time.monotonic()
                self.bar.set_postfix_str(f"{self.queries} queries", refresh=False)
                self.bar.refresh()
        elif isinstance(event, StepEnded) and self.bar is not None:
            self.bar.set_postfix_str(f"{self.queries} queries", refresh=False)
            self.bar.update(event.step + 1 - self.bar.n)
        elif isinstance(event, Notice):
            say(f"labpgt: warning: {event.text}")
        elif isinstance(event, Suspended):
            self._note(f"labpgt: paused at step {event.step + 1}: {event.why}; RF off until it is back in range")
        elif isinstance(event, Resumed):
            self._note(
                f"labpgt: going on after {event.seconds:.0f} s, step {event.step + 1} measured again "
                f"({event.discarded} of its queries dropped unrecorded)"
            )

    def _note(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            say(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class SweepDisplay:
    """A sweep on the terminal: the connection lines, what is swept, then one row per point as it is measured
    (unless quiet); the traces are kept for the sweep's plot."""

    def __init__(self, heading: str, quiet: bool = False):
        self.heading, self.quiet = heading, quiet
        self.traces: list = []

    def __call__(self, event) -> None:
        from labpgt.inspection import PEAK_TITLE, peak_line

        if isinstance(event, Connected):
            self.queries = event.queries  # a resumed run's bar counts the run's queries, as its steps
            for line in connection_lines(event.reservoir):
                print(line, flush=True)
        elif isinstance(event, Measured):
            if event.measurement.spectra is not None:
                self.traces.append(event.measurement.spectra[0])
        elif isinstance(event, PointEnded) and not self.quiet:
            if event.point.index == 0:
                print(self.heading, PEAK_TITLE, sep="\n")
            print(peak_line(event.point.index, event.point.recorded()), flush=True)


def training_lines(result, resumed: bool) -> list[str]:
    """What a finished training prints: its accuracy, its queries by role, its times."""
    q = result.queries
    by_role = ", ".join(f"{k} {v}" for k, v in q.items() if k not in ("eval", "test") and v)
    train = "" if result.final_train_accuracy is None else f" (train {result.final_train_accuracy:.4f})"
    test = f", {result.test_queries} for the final test" if result.test_queries else ""
    reused = (
        f"; with the {result.prior_queries} pairs reused from earlier sessions, "
        f"{result.queries_incl_evaluation + result.prior_queries} amortised"
        if result.prior_queries
        else ""
    )
    return [
        f"final {result.holdout} accuracy {result.final_accuracy:.4f}{train}",
        f"reservoir queries: {result.training_queries} for training ({by_role}), {result.eval_queries} for "
        f"evaluation{test}: {result.queries_incl_evaluation} in all{reused}",
        f"wall time {result.wall_seconds:.1f} s, of which measuring {result.measure_seconds:.1f} s "
        f"(both over the whole session{', every run of it' if resumed else ''})",
    ]


def saved_session_hint(session: Path) -> str:
    """The end of the line after a training ended early: how to continue, only if ``session`` holds at least
    its config (a run stopped while connecting has written nothing)."""
    from labpgt.session import SessionReader

    if not session.exists():
        return f"; nothing was recorded ({session} was not created)"
    try:
        with SessionReader(session):
            pass
    except UserError:
        return f"; {session} holds no session to continue"
    return f" and the session is saved up to the last complete step: continue with labpgt train --resume {session}"


def stopped_line(reason, session: Path) -> str:
    """The one line of a training stopped before its end."""
    return f"labpgt: stopped ({reason.why}); RF is off{saved_session_hint(session)}"


def sweep_description(spec, bench_name: str) -> str:
    """A sweep in words: what, from where to where, with the generators on or off, on which bench."""
    return (
        f"{spec.label} from {spec.start:g} to {spec.stop:g} in {spec.points} points "
        f"({'generators on' if spec.tones else 'generators off'}) on {bench_name}"
    )


class BenchmarkProgress:
    """A tqdm bar on stderr counting a benchmark's finished runs, with a line per run above it."""

    def __init__(self, total: int):
        self.total = total

    def __enter__(self):
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, desc="benchmark", unit="run", file=sys.stderr, dynamic_ncols=True)
        return self.finished

    def finished(self, label, seed, outcome) -> None:
        self.bar.write(
            f"  {label} seed {seed}: {outcome['holdout']} accuracy {outcome['final_accuracy']:.4f} "
            f"after {outcome['training_queries']} training queries ({outcome['wall_seconds']:.0f} s)",
            file=sys.stderr,
        )
        self.bar.update(1)

    def __exit__(self, *exc):
        self.bar.close()


def twin_fit_lines(fit) -> list[str]:
    """What ``labpgt twin fit`` prints of a fit: its pairs, its held-out error overall and per feature."""
    return [
        f"fitted on {fit.rows_fitted} measured pairs, {fit.iterations} Adam steps; held out {fit.rows_held_out}",
        f"held-out error {fit.heldout_error:.4f} (standardised RMS: 0 perfect, 1 = each feature's mean); "
        f"on the fitted pairs {fit.train_error:.4f}",
        "feature  held-out error  residual std",
        *(
            f"{i:7d}  {error:14.4f}  {residual:12.5f}"
            for i, (error, residual) in enumerate(zip(fit.heldout_error_per_feature, fit.residual_std))
        ),
    ]


def spectrum_lines(
    bench, measurement, peaks, threshold_dbm: float, margin_db: float, prominence_db: float
) -> list[str]:
    """What ``labpgt spectrum`` prints of one measured trace: the settings sent, the trace, its lines."""
    import numpy as np

    trace, freqs = measurement.spectra[0], measurement.frequencies
    return [
        f"bench: {bench.config.name}",
        *(f"  {name:>18} = {value:.6g}" for name, value in zip(bench.setting_names, measurement.settings[0])),
        f"trace: {freqs.size} points, {freqs[0] / 1e9:.4f}-{freqs[-1] / 1e9:.4f} GHz, "
        f"median {np.median(trace):.1f} dBm",
        f"{len(peaks)} lines at least {margin_db:g} dB above the median ({threshold_dbm:.1f} dBm) and "
        f"{prominence_db:g} dB above their surroundings:",
        *(f"  peak {freqs[i] / 1e9:.4f} GHz  {trace[i]:6.1f} dBm" for i in peaks),
    ]
