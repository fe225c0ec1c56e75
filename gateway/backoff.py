"""Jittered exponential backoff, shared by the MQTT reconnect loop and the produce retries."""

from __future__ import annotations

import random


class Backoff:
    """Delays that double from `lo` up to `hi`, each drawn uniformly below its cap ("full
    jitter"), so many gateways or drones restarting together do not retry in lockstep."""

    def __init__(self, lo: float, hi: float) -> None:
        if not 0 < lo <= hi:
            raise ValueError(f"need 0 < lo <= hi, got lo={lo} hi={hi}")
        self.lo, self.hi, self.attempt = lo, hi, 0

    def next(self) -> float:
        """The delay before the next attempt."""
        self.attempt += 1
        return self.delay(self.lo, self.hi, self.attempt)

    def reset(self) -> None:
        self.attempt = 0

    @staticmethod
    def delay(lo: float, hi: float, attempt: int) -> float:
        """The delay before attempt number `attempt` (1-based)."""
        cap = min(hi, lo * 2 ** min(max(attempt, 1) - 1, 60))
        return random.uniform(lo, cap)
