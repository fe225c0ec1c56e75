"""Link faults for a simulated fleet: the random cut schedule (`LinkFaults`, `fault_schedule`),
the record of what was applied (`FaultEvent`), and the thread that applies timed actions
(`Scheduler`). `hw_sim.fleet.Fleet` uses them; the schedule is a pure function of the seed.

Raises: `ValueError` from `LinkFaults(...)` / `LinkFaults.parse` naming the bad part.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("hw_sim.fleet")


@dataclass(frozen=True)
class LinkFaults:
    """Random link cuts for every drone: about every `every_s` seconds (+- `jitter` of it), each
    lasting `down_s`, of kind `mode` ("reset" or "stall", see `LinkProxy.cut`). The schedule
    is drawn from the fleet's seed."""

    every_s: float = 30.0
    down_s: float = 5.0
    mode: str = "reset"
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not self.every_s > 0:
            raise ValueError(f"link faults: every must be > 0 seconds, got {self.every_s}")
        if not self.down_s > 0:
            raise ValueError(f"link faults: down must be > 0 seconds, got {self.down_s}")
        if self.mode not in ("reset", "stall"):
            raise ValueError(f"link faults: mode must be reset or stall, got {self.mode!r}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"link faults: jitter must be in [0, 1), got {self.jitter}")

    @classmethod
    def parse(cls, spec: str) -> LinkFaults | None:
        """Parse "none" or "every=30,down=5[,mode=stall][,jitter=0.5]" (seconds).

        Raises:
            ValueError: naming the bad part.
        """
        spec = spec.strip()
        if spec.lower() in ("", "none", "off"):
            return None
        values: dict[str, Any] = {}
        names = {"every": "every_s", "down": "down_s", "mode": "mode", "jitter": "jitter"}
        for part in spec.split(","):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or key not in names:
                raise ValueError(f"link faults: bad part {part!r} in {spec!r}; expected "
                                 "every=SECONDS,down=SECONDS[,mode=reset|stall][,jitter=0..1]")
            if key == "mode":
                values["mode"] = value.strip()
                continue
            try:
                values[names[key]] = float(value)
            except ValueError:
                raise ValueError(f"link faults: {key}={value!r} is not a number") from None
        return cls(**values)


@dataclass(frozen=True)
class FaultEvent:
    """A link fault applied: `at_s` seconds after the fleet started."""

    at_s: float
    drone_id: str
    action: str  # "cut", "stall", "restore", "slow"


def fault_schedule(seed: int, drones: Mapping[str, int], faults: LinkFaults,
                   horizon_s: float = 24 * 3600.0) -> list[tuple[float, str, str]]:
    """The random link faults of a fleet: (seconds after start, action, drone id), in time order.

    Each drone's times come from (seed, drone number) alone, so they do not change when the
    fleet grows or is split over processes."""
    action = "cut" if faults.mode == "reset" else "stall"
    events: list[tuple[float, str, str]] = []
    for drone_id, number in drones.items():
        rng = random.Random(f"hw_sim.fleet.faults:{seed}:{number}")
        t = faults.every_s * (1 + rng.uniform(-faults.jitter, faults.jitter))
        while t <= horizon_s:
            events.append((t, action, drone_id))
            events.append((t + faults.down_s, "restore", drone_id))
            t += faults.down_s + faults.every_s * (1 + rng.uniform(-faults.jitter, faults.jitter))
    return sorted(events)


class Scheduler:
    """One thread running timed link actions in time order."""

    def __init__(self, apply: Callable[[str, str], None]) -> None:
        self._apply = apply
        self._heap: list[tuple[float, int, str, str]] = []
        self._ids = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="fleet-faults", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def at(self, when: float, action: str, drone_id: str) -> None:
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._ids), action, drone_id))
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(5.0)
            if self._thread.is_alive():  # an action is stuck (a proxy call): say so, go on
                log.error("fleet: the fault scheduler did not stop within 5 s")

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (
                        not self._heap or self._heap[0][0] > time.monotonic()):
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(wait)
                if self._stopping:
                    return
                _, _, action, drone_id = heapq.heappop(self._heap)
            try:
                self._apply(action, drone_id)
            except Exception:  # one failed action must not end the schedule
                log.exception("fleet: link action %s on %s failed", action, drone_id)
