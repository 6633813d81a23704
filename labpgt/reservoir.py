"""The reservoir interface: anything that turns encoder outputs ``U`` into measured features.

A reservoir knows nothing about training or storage. Each row of ``U`` is one *query*: on the
bench, one setting of the instruments, one analyzer sweep and one trace read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Measurement:
    """What one call of :meth:`Reservoir.measure` returns, one row per query.

    ``features`` (B, m) float64 is what the model sees. ``spectra`` (B, P) float32 in dBm on the
    shared ``frequencies`` axis (P,) in Hz, and ``settings`` (B, S) float64 (the instrument
    settings sent, columns named by the reservoir's ``setting_names``) are ``None`` for
    reservoirs without instruments. ``started`` holds each query's start time (Unix seconds)
    and ``attempts`` how many tries each query took (1 when nothing went wrong). A bench also gives
    ``wall_seconds`` (each query's wall-clock duration), ``sim_time`` (a simulated bench's virtual
    clock at the end of each query, s), ``temperature_c`` (the ring's sensor, when it is read) and
    ``field_mt`` (the field a gaussmeter reads after the query, on a bench that has one);
    ``None`` where a reservoir has none (the session stores NaN).
    """

    features: np.ndarray
    spectra: np.ndarray | None = None
    frequencies: np.ndarray | None = None
    settings: np.ndarray | None = None
    started: np.ndarray | None = None
    attempts: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    wall_seconds: np.ndarray | None = None
    sim_time: np.ndarray | None = None
    temperature_c: np.ndarray | None = None
    field_mt: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @classmethod
    def concatenate(cls, parts: list[Measurement]) -> Measurement:
        """The measurements of consecutive calls as one (a column is kept where every part has it)."""

        def joined(name):
            values = [getattr(part, name) for part in parts]
            return None if any(v is None for v in values) else np.concatenate(values)

        first = parts[0]
        return cls(
            features=np.concatenate([p.features for p in parts]),
            spectra=joined("spectra"),
            frequencies=first.frequencies,
            settings=joined("settings"),
            started=joined("started"),
            attempts=joined("attempts"),
            extra=dict(first.extra),
            wall_seconds=joined("wall_seconds"),
            sim_time=joined("sim_time"),
            temperature_c=joined("temperature_c"),
            field_mt=joined("field_mt"),
        )


@runtime_checkable
class Reservoir(Protocol):
    """``measure(U)`` for U in [0, 1]^(B, input_width) gives ``Measurement`` with (B, feature_width) features.

    ``get_rng_state``/``set_rng_state`` capture the reservoir's own randomness as JSON (a simulator's
    noise, ``{}`` for real physics) so a resumed run measures what the uninterrupted run would have.
    """

    input_width: int
    feature_width: int
    setting_names: tuple[str, ...]

    def measure(self, U: np.ndarray) -> Measurement: ...

    def get_rng_state(self) -> dict: ...

    def set_rng_state(self, state: dict) -> None: ...

    def identities(self) -> dict[str, str]:
        """Each instrument's identity (``*IDN?``), recorded in the session; ``{}`` without instruments."""

    def close(self) -> None: ...


def measures_each_query_apart(reservoir) -> bool:
    """Whether ``reservoir`` measures the rows of a call one after another (instruments: each row a sweep), so
    that a run may stop between two of them; a computed reservoir measures a call at once."""
    return bool(getattr(reservoir, "each_query_apart", False))
