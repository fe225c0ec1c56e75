"""Per-drone duplicate detection and sequence-gap tracking, bounded in memory.

A drone numbers its messages with a persistent `seq` that is never reused, so `(drone_id, seq)` is
the message id. For each drone we keep the highest seq seen and a bitmap of the `window` seqs below
it. A seq inside the window that is already set is a duplicate (an MQTT redelivery). A seq below
the window is *unknown*: it is accepted (never drop what we cannot prove is a duplicate) and
counted as a window miss. The least recently seen drones are forgotten beyond `max_drones`.

Gaps: when a seq jumps above the highest + 1, the skipped seqs become *missing*. A late arrival
fills its hole. Holes that slide out of the window unfilled are counted as *lost* (from this
gateway's view: with several gateways in one share group each sees only part of every drone's
stream, so these numbers are per gateway and only meaningful with one gateway).

Pure logic, no clocks or I/O. Not thread-safe: the caller serialises access.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass


class Verdict(enum.Enum):
    NEW = "new"  # first time seen: produce it
    DUPLICATE = "duplicate"  # seen inside the window: acknowledge without producing
    UNKNOWN = "unknown"  # below the window: cannot tell, produce it (may duplicate)


@dataclass
class DroneSeqState:
    """The window of one drone. Bit i of `seen` is seq `top - i`; seqs below `first` (the first
    one seen) are not holes, since nothing says they were ever meant for this gateway."""

    top: int
    first: int
    seen: int = 1
    lost: int = 0  # holes that left the window unfilled
    gap_events: int = 0  # forward jumps that skipped at least one seq
    duplicates: int = 0


class SeqTracker:
    """Dedupe window and gap counters for many drones.

    `window` seqs are remembered per drone (1..2**20); at most `max_drones` drones are kept.
    """

    def __init__(self, window: int = 4096, max_drones: int = 100_000) -> None:
        if window < 1 or max_drones < 1:
            raise ValueError("window and max_drones must be >= 1")
        self.window = window
        self.max_drones = max_drones
        self._mask = (1 << window) - 1
        self._drones: OrderedDict[str, DroneSeqState] = OrderedDict()
        self.forgotten_drones = 0

    def observe(self, drone_id: str, seq: int) -> Verdict:
        """Record `seq` for `drone_id` and say whether it was already seen."""
        state = self._drones.get(drone_id)
        if state is None:
            self._admit(drone_id, DroneSeqState(top=seq, first=seq))
            return Verdict.NEW
        self._drones.move_to_end(drone_id)
        if seq > state.top:
            self._advance(state, seq)
            return Verdict.NEW
        offset = state.top - seq
        if offset >= self.window:
            return Verdict.UNKNOWN
        bit = 1 << offset
        if state.seen & bit:
            state.duplicates += 1
            return Verdict.DUPLICATE
        state.seen |= bit
        return Verdict.NEW

    def forget(self, drone_id: str, seq: int) -> None:
        """Undo `observe` of a seq that was not taken after all (so a redelivery is not dropped)."""
        state = self._drones.get(drone_id)
        if state is None:
            return
        offset = state.top - seq
        if 0 <= offset < self.window and state.seen & (1 << offset):
            state.seen &= ~(1 << offset)

    def state(self, drone_id: str) -> DroneSeqState | None:
        return self._drones.get(drone_id)

    def drones(self) -> dict[str, DroneSeqState]:
        return dict(self._drones)

    def missing(self, drone_id: str) -> int:
        """Holes inside the window of `drone_id`: seqs skipped and not (yet) arrived."""
        state = self._drones.get(drone_id)
        return 0 if state is None else self._holes(state, 0, self.window)

    def totals(self) -> tuple[int, int, int]:
        """(missing, lost, gap_events) summed over tracked drones."""
        missing = lost = gaps = 0
        for s in self._drones.values():
            missing += self._holes(s, 0, self.window)
            lost += s.lost
            gaps += s.gap_events
        return missing, lost, gaps

    @staticmethod
    def _holes(state: DroneSeqState, lo: int, hi: int) -> int:
        """Unseen positions in [lo, hi) whose seq is >= state.first."""
        hi = min(hi, state.top - state.first + 1)
        if hi <= lo:
            return 0
        width = hi - lo
        return width - _popcount((state.seen >> lo) & ((1 << width) - 1))

    def _admit(self, drone_id: str, state: DroneSeqState) -> None:
        self._drones[drone_id] = state
        if len(self._drones) > self.max_drones:
            self._drones.popitem(last=False)
            self.forgotten_drones += 1

    def _advance(self, state: DroneSeqState, seq: int) -> None:
        shift = seq - state.top
        if shift > 1:
            state.gap_events += 1
        if shift < self.window:
            state.lost += self._holes(state, self.window - shift, self.window)
            state.seen = ((state.seen << shift) | 1) & self._mask
        else:
            # The whole window slides out, and so do skipped seqs that never entered the new one.
            state.lost += self._holes(state, 0, self.window) + (shift - self.window)
            state.seen = 1
        state.top = seq


def _popcount(x: int) -> int:
    return x.bit_count()  # in C; bin(x).count("1") built a 4096-character string per drone
