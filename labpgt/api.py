"""The library API: what ``import labpgt`` gives a notebook.

* :func:`open_session` — a recorded session (any schema, live or finished) as a :class:`Session`:
  ``.steps`` (pandas), ``.queries`` and ``.spectra`` (xarray, with coordinates and units), ``.config``;
* :func:`inspect` — the summary ``labpgt inspect`` prints, as a dict;
* :func:`replay` — rerun a recorded training and check it reproduces (``labpgt replay``);
* :func:`train` — train and record a session (``labpgt train``);
* :func:`sweep` — a characterisation sweep of the ring (``labpgt sweep``).

Every function takes what the command line takes and returns plain objects; a file that is not a
session, or is damaged, raises :class:`~labpgt.errors.UserError` and is never modified. The heavy
libraries (pandas, xarray, JAX) are imported when first needed, not by ``import labpgt``.

    >>> import labpgt
    >>> with labpgt.open_session(EXAMPLE) as session:
    ...     print(session.kind, session.n_queries, session.spectra.dims, session.spectra.frequency.units)
    training 226 ('query', 'frequency') Hz
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labpgt.errors import UserError

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

    from labpgt.recording import Checkpoint
    from labpgt.replay import ReplayReport
    from labpgt.runs import RunResult
    from labpgt.session import SessionReader
    from labpgt.sweeps import SweepResult

PathLike = str | Path


class Session:
    """A session file opened read-only (see :func:`open_session`); close it, or use it in a ``with`` block.

    ``path``, ``schema``, ``kind`` ("training" or "sweep"), ``config`` (everything needed to rerun the
    run), ``created``, ``versions`` and ``instruments`` are the file's. Lengths count the valid rows
    only; :meth:`refresh` sees rows a live writer appended since.

        >>> session = labpgt.open_session(EXAMPLE)
        >>> session.steps[["training_queries", "loss"]].round(4)
              training_queries    loss
        step
        0                   40  1.0986
        1                   76  0.9772
        >>> session.queries.setting_units.sel(setting="gen1.frequency_hz").item()
        'Hz'
        >>> session.close()
    """

    def __init__(self, path: PathLike):
        from labpgt.session import SessionReader

        self._reader: SessionReader = SessionReader(path)
        self._queries: xr.Dataset | None = None
        self.path = self._reader.path
        self.schema, self.kind, self.config = self._reader.schema, self._reader.kind, self._reader.config
        self.created, self.versions, self.instruments = (
            self._reader.created,
            self._reader.versions,
            self._reader.instruments,
        )

    # ---- sizes
    @property
    def n_queries(self) -> int:
        """Query rows recorded (valid rows)."""
        return self._reader.n_queries

    @property
    def n_steps(self) -> int:
        """Step rows recorded (0 for a sweep)."""
        return self._reader.n_steps

    @property
    def completed(self) -> bool:
        """A training: its last planned step is recorded; a sweep: every planned point."""
        return self._reader.completed

    # ---- tables
    @property
    def steps(self) -> pd.DataFrame:
        """One row per optimizer step, indexed by step (a training); ``steps.attrs["units"]`` has the units."""
        if self.kind != "training":
            raise UserError(f"{self.path.name} records a {self.kind}: it has no steps (see .points)")
        from labpgt.tables import rows_frame

        return rows_frame(self._reader)

    @property
    def points(self) -> pd.DataFrame:
        """One row per swept point, indexed by point (a sweep): value, peak frequency and power, margin."""
        if self.kind != "sweep":
            raise UserError(f"{self.path.name} records a {self.kind}: it has no points (see .steps)")
        from labpgt.tables import rows_frame

        return rows_frame(self._reader)

    @property
    def queries(self) -> xr.Dataset:
        """Every query row as an xarray Dataset over ``query``, ``frequency`` (Hz), ``setting``, ``input`` and
        ``feature``, with units (read once, then kept; :meth:`query_rows` reads a part)."""
        if self._queries is None:
            self._queries = self.query_rows()
        return self._queries

    def query_rows(self, start: int = 0, stop: int | None = None) -> xr.Dataset:
        """Query rows ``start:stop`` as :attr:`queries` holds them, read now."""
        from labpgt.tables import queries_dataset

        return queries_dataset(self._reader, start, stop)

    @property
    def spectra(self) -> xr.DataArray:
        """Every trace, ``spectrum(query, frequency)`` in dBm, with each query's step and role as coordinates."""
        from labpgt.tables import spectra

        return spectra(self.queries)

    @property
    def frequencies(self) -> xr.DataArray:
        """The frequency axis of every spectrum, in Hz."""
        return self.queries.frequency

    # ---- checkpoints
    def checkpoint(self, index: int = -1) -> Checkpoint:
        """Checkpoint row ``index`` (default: the last valid one): params, optimizer and method state, RNG states."""
        if self.kind != "training" or not self._reader.n_checkpoints:
            raise UserError(f"{self.path.name} holds no checkpoint")
        if not -self._reader.n_checkpoints <= index < self._reader.n_checkpoints:
            raise UserError(f"{self.path.name} has {self._reader.n_checkpoints} checkpoints, not {index}")
        return self._reader.checkpoint(index)

    def params(self, index: int = -1) -> dict[str, Any]:
        """The network's arrays after checkpoint ``index`` (default: the last)."""
        return self.checkpoint(index).params

    # ---- the rest
    def inspect(self) -> dict[str, Any]:
        """What ``labpgt inspect --json`` prints for this file."""
        return inspect(self.path)

    def refresh(self) -> None:
        """See rows a live writer has appended since (the cached :attr:`queries` are read again when next asked)."""
        self._reader.refresh()
        self._queries = None

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<labpgt.Session {self.path.name}: {self.schema}, {self.kind}, {self.n_queries} queries, "
            f"{self.n_steps} steps>"
        )


def open_session(path: PathLike) -> Session:
    """Open the session file at ``path`` read-only (a live one too); :class:`~labpgt.errors.UserError` if it is
    not a session or is damaged."""
    return Session(path)


def inspect(path: PathLike) -> dict[str, Any]:
    """The summary of a session file that ``labpgt inspect --json`` prints (:func:`labpgt.inspection.inspect_session`).

    >>> info = labpgt.inspect(EXAMPLE)
    >>> info["schema"], info["queries"], info["completed"]
    ('labpgt-session/3', 226, True)
    """
    from labpgt.inspection import inspect_session

    return inspect_session(path)


def replay(path: PathLike, *, exact: bool = False) -> ReplayReport:
    """Rerun the training recorded at ``path`` through its recorded measurements and check each step
    (``labpgt replay``); ``exact`` demands bit-identical results. ``report.ok``, ``report.summary()``.

        >>> labpgt.replay(EXAMPLE).ok
        True
    """
    from labpgt.replay import replay_session

    return replay_session(path, exact=exact)


def train(
    *, out: PathLike | None = None, progress: Callable[[int, int], None] | None = None, **settings: Any
) -> RunResult:
    """Train with ``settings`` by name, as ``labpgt train`` takes them (``task``, ``method``, ``reservoir``,
    ``steps``, ``lr``, ``seed``, …: :meth:`labpgt.trainer.TrainConfig.of`; unset ones take their declared
    defaults, the embedded simulated ring among them) and record every query in a new session at ``out``
    (default: ``data/runs/<time>-<task>-<model>-<method>.h5``, as ``labpgt train``); an existing file is never
    overwritten. ``progress(step, steps)`` is called after each step. Returns the
    :class:`~labpgt.runs.RunResult` (``final_accuracy``, ``queries``, ``history``, ``session``, …).
    """
    from labpgt.engine import RunEngine, StepEnded
    from labpgt.runs import default_session_path
    from labpgt.trainer import TrainConfig

    config = TrainConfig.of(**settings).resolved()
    session = (
        Path(out)
        if out is not None
        else default_session_path(config.task, config.model.architecture, config.method.name)
    )
    engine = RunEngine()
    if progress is not None:

        def report(event) -> None:
            if isinstance(event, StepEnded):
                progress(event.step + 1, event.steps)

        engine.subscribe(report)
    return engine.train(config, session).result_or_raise()


def sweep(
    setting: str,
    start: float,
    stop: float,
    points: int,
    *,
    out: PathLike | None = None,
    bench: PathLike | None = None,
    seed: int = 0,
    instrument: str | None = None,
    tones: bool = False,
    margin_db: float | None = None,
) -> SweepResult:
    """Sweep ``setting`` (``loop_gain_db``, ``field_mt``, ``frequency_hz``, ``power_dbm``) from ``start`` to
    ``stop`` in ``points`` points on the bench of the TOML file ``bench`` (default: the embedded simulated
    bench with ``seed``), recording each spectrum in a new session at ``out`` (default:
    ``data/runs/<time>-sweep-<setting>.h5``), as ``labpgt sweep`` does. ``instrument`` names the
    instrument (default: the first that has the setting), ``tones`` keeps the generators on during a ring
    sweep, ``margin_db`` is the line-above-noise level of the threshold. Returns the
    :class:`~labpgt.sweeps.SweepResult` (``points``, ``threshold_db``, ``columns()``).
    """
    from labpgt.bench import load_bench_config, simulated_bench_config
    from labpgt.runs import default_session_path, record_sweep
    from labpgt.sweeps import DEFAULT_MARGIN_DB, plan_sweep

    config = load_bench_config(Path(bench)) if bench is not None else simulated_bench_config(embedded=True, seed=seed)
    spec = plan_sweep(
        config,
        setting,
        start,
        stop,
        points,
        instrument=instrument,
        tones=tones,
        margin_db=DEFAULT_MARGIN_DB if margin_db is None else margin_db,
    )
    session = Path(out) if out is not None else default_session_path("sweep", setting)
    if session.exists():
        raise UserError(f"{session} exists: a session is never overwritten; choose another out")
    return record_sweep(spec, config, session)
