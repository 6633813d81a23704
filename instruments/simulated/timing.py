"""What the simulated bench's clock charges besides settling and sweeping: messages, the analyzer, moves.

This module owns the *rates* (:class:`BenchTiming`) at which a bench spends time talking to its
instruments; the clock itself is the laboratory's (:mod:`.laboratory`), advanced once per sweep by
:class:`~labpgt.instruments.simulated.devices.SimulatedBench`. docs/ring-physics.md §10 lists each rate,
its default and where the default comes from. In short, between two sweeps every instrument runs up its
own *busy time*:

* each program message it receives: ``message_s`` (the instrument's parser and the LAN's one way);
* each program message that asks a question: ``round_trip_s`` more (the answer's way back, read by the
  client before it goes on), and each ``*OPC?`` in it ``opc_s`` (the instrument's check that every
  operation before it completed);
* each answer: its bytes at ``transfer_bytes_per_s`` (a 401-point float32 trace is 1.6 kB);
* a mechanical step attenuator that moves (a generator whose power step crosses an attenuator range,
  with its attenuator on auto): ``attenuator_move_s``.

A sweep then advances the clock by the slowest instrument's busy time plus the slowest settling (the
bench sets its instruments in parallel and waits for every ``*OPC?``), then the analyzer's own busy
time, ``analyzer_processing_s`` per sweep (retrace, display and trace processing) and the sweeps' time.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class BenchTiming:
    """The rates a simulated bench's clock charges (docs/ring-physics.md §10 gives each default's source)."""

    message_s: float = 0.5e-3
    round_trip_s: float = 1.0e-3
    opc_s: float = 0.5e-3
    transfer_bytes_per_s: float = 400e3
    analyzer_processing_s: float = 30e-3
    attenuator_move_s: float = 20e-3

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, (int, float)) and value >= 0) or (
                f.name == "transfer_bytes_per_s" and value <= 0
            ):
                raise ValueError(f"bench timing {f.name} must be a number >= 0 (a rate > 0), not {value!r}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def message_cost_s(self, message: str, answer_bytes: int) -> float:
        """What one program message and its answer cost the instrument that receives it."""
        cost = self.message_s
        if answer_bytes:
            cost += self.round_trip_s + answer_bytes / self.transfer_bytes_per_s
        opcs = message.upper().count("*OPC?")
        return cost + opcs * self.opc_s


#: no time for anything but settling and sweeping: the clock of labpgt before issue 27 (for comparisons)
UNCHARGED = BenchTiming(
    message_s=0.0,
    round_trip_s=0.0,
    opc_s=0.0,
    transfer_bytes_per_s=float("inf"),
    analyzer_processing_s=0.0,
    attenuator_move_s=0.0,
)

__all__ = ["BenchTiming", "UNCHARGED"]
