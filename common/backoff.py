"""Jittered exponential backoff ("full jitter"), one implementation for every retry loop.

The cap doubles per attempt from `lo` up to `hi`; each delay is drawn uniformly from `[lo, cap]`,
so a fleet of drones or gateways that lost the same broker spreads its retries instead of coming
back in lockstep, and the `lo` floor keeps a single client from spinning. The first delay is
already jittered: its cap is `min(hi, 2 * lo)`, not `lo`.

Raises: `ValueError` from `Backoff(...)` and `delay(...)` when not `0 < lo <= hi`.
"""

from __future__ import annotations

import random
from collections.abc import Callable

Rand = Callable[[float, float], float]


def delay(attempt: int, lo: float, hi: float, rand: Rand = random.uniform) -> float:
    """The delay before retry number `attempt` (1-based; below 1 counts as 1):
    `rand(lo, min(hi, lo * 2**attempt))`."""
    _check(lo, hi)
    cap = min(hi, lo * 2 ** min(max(attempt, 1), 60))
    return rand(lo, cap)


class Backoff:
    """Successive delays for one retry loop: `next()` after each failure, `reset()` after a
    success. `rand(a, b)` draws the jitter (tests pass a fixed one)."""

    def __init__(self, lo: float, hi: float, rand: Rand = random.uniform) -> None:
        _check(lo, hi)
        self.lo, self.hi, self.rand = lo, hi, rand
        self.attempt = 0

    def next(self) -> float:
        """The delay before the next attempt; each call counts one more failure."""
        self.attempt += 1
        return delay(self.attempt, self.lo, self.hi, self.rand)

    def reset(self) -> None:
        """Start again from the shortest delay (the operation succeeded)."""
        self.attempt = 0


def _check(lo: float, hi: float) -> None:
    if not 0 < lo <= hi:
        raise ValueError(f"backoff needs 0 < lo <= hi, got lo={lo} hi={hi}")
