"""One violation per (plate, code) per window: a parked car stays in view for many frames.

Times are `time.monotonic()` seconds, not wall-clock: the Pi's clock jumps when NTP or GPS sets it
after boot, and a jump must neither re-emit nor suppress violations. The state is in memory only:
after a restart a car still in view is reported once more (a new message id; the back office can
match it by plate, code and time).
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

    def __len__(self) -> int:
        return len(self._emitted)

    def _prune(self, now: float) -> None:
        # Bounded memory: forget keys whose window has passed (at most once per window).
        self._last_prune = now
        self._emitted = {k: t for k, t in self._emitted.items() if now - t < self.window_s}
