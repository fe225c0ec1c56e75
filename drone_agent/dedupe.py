"""One violation per (plate, code) per window: a parked car stays in view for many frames.

Times are `time.monotonic()` seconds, not wall-clock: the Pi's clock jumps when NTP or GPS sets it
after boot, and a jump must neither re-emit nor suppress violations. The state survives a restart:
the agent stores each key with its wall-clock time in the outbox, in the transaction that queues
the violation (`reported_key`), and gives the recent ones back with `restore` at start, so a car
still in view after a reboot is not reported again. Across a restart only wall-clock time exists:
an age that came out negative (the clock went back) counts as 0, so a clock jump can at worst
suppress a key for one window after a restart, never longer.
"""

from __future__ import annotations

from collections.abc import Hashable


class Dedupe:
    """When each key was last emitted; `suppressed` says whether a key is inside its window."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._emitted: dict[Hashable, float] = {}
        self._last_prune = float("-inf")

    def suppressed(self, key: Hashable, now: float) -> bool:
        """True if `key` was emitted less than `window_s` before `now`."""
        at = self._emitted.get(key)
        return at is not None and now - at < self.window_s

    def emitted(self, key: Hashable, now: float) -> None:
        """Record that `key` was emitted at `now` (call only once the violation is queued)."""
        self._emitted[key] = now
        if now - self._last_prune >= self.window_s:
            self._prune(now)

    def restore(self, key: Hashable, age_s: float, now: float) -> None:
        """Take back a key emitted `age_s` seconds ago (before a restart): suppressed for the
        rest of its window. A negative age (a clock that went back) counts as 0."""
        age = max(0.0, age_s)
        if age < self.window_s:
            self._emitted[key] = now - age

    def __len__(self) -> int:
        return len(self._emitted)

    def _prune(self, now: float) -> None:
        # Bounded memory: forget keys whose window has passed (at most once per window).
        self._last_prune = now
        self._emitted = {k: t for k, t in self._emitted.items() if now - t < self.window_s}


REPORTED_PREFIX = "reported:"  # outbox `kept` names: reported:<plate>:<code or ->


def reported_key(key: tuple[str, int | None]) -> str:
    """The outbox name under which the (plate, code) key's emission time is kept."""
    plate, code = key
    return f"{REPORTED_PREFIX}{plate}:{'-' if code is None else code}"


def parse_reported(name: str) -> tuple[str, int | None]:
    """The (plate, code) key of a `reported_key` name. Raises ValueError."""
    plate, _, code = name[len(REPORTED_PREFIX):].rpartition(":")
    return plate, None if code == "-" else int(code)
