"""A battery that drains with time and says when it is low."""

from __future__ import annotations

import time
from collections.abc import Callable

from drone_agent.hardware import PowerReading

# A 4S LiPo pack: 4 cells from 4.2 V (full) to 3.3 V (empty under load).
FULL_VOLTS = 16.8
EMPTY_VOLTS = 13.2


class SimBattery:
    """A `drone_agent.hardware.PowerSource` draining linearly from `start_pct`.

    Args:
        start_pct: charge at creation, 0..100.
        drain_pct_per_min: charge lost per minute (>= 0); a real quadcopter loses ~3-5 %/min.
        low_pct: `PowerReading.low` is set at or below this charge.
        clock: monotonic seconds, injectable for tests.

    Raises:
        ValueError: a value out of range (names it).
    """

    def __init__(self, start_pct: float = 100, drain_pct_per_min: float = 1.0, low_pct: float = 20,
                 clock: Callable[[], float] = time.monotonic) -> None:
        for name, value in (("start_pct", start_pct), ("low_pct", low_pct)):
            if not 0 <= value <= 100:
                raise ValueError(f"SimBattery {name} must be 0..100, got {value}")
        if not drain_pct_per_min >= 0:
            raise ValueError(f"SimBattery drain_pct_per_min must be >= 0, got {drain_pct_per_min}")
        self.start_pct = float(start_pct)
        self.drain_pct_per_min = float(drain_pct_per_min)
        self.low_pct = float(low_pct)
        self._clock = clock
        self._t0 = clock()

    def charge_pct(self) -> float:
        """Remaining charge now, 0..100, unrounded."""
        minutes = (self._clock() - self._t0) / 60.0
        return max(0.0, self.start_pct - self.drain_pct_per_min * minutes)

    def read(self) -> PowerReading:
        pct = self.charge_pct()
        volts = EMPTY_VOLTS + (FULL_VOLTS - EMPTY_VOLTS) * pct / 100.0
        return PowerReading(battery_pct=round(pct), voltage=round(volts, 2),
                            low=pct <= self.low_pct)

    def recharge(self, pct: float = 100) -> None:
        """A battery swap: charge jumps back to `pct` and drains from there."""
        if not 0 <= pct <= 100:
            raise ValueError(f"SimBattery recharge pct must be 0..100, got {pct}")
        self.start_pct = float(pct)
        self._t0 = self._clock()

    def close(self) -> None:
        """Nothing to release."""
