"""The fault schedule of a chaos run, from its seed. Pure: no I/O, no clock.

One fault at a time, so each one's recovery can be timed: a warm-up, then faults separated by
irregular gaps, each kind used once (in a seeded order) before any is used again, and the last
one ending a while before the run does.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

# kind -> (shortest, longest) seconds the fault lasts (kills: until the restart).
KINDS: dict[str, tuple[float, float]] = {
    "gateway-kill": (0.5, 3.0),  # kill -9, then a restart with the same client id
    "gateway-pause": (5.0, 20.0),  # SIGSTOP ... SIGCONT
    "mosquitto-kill": (1.0, 4.0),  # kill -9, then a restart (persistence: its last autosave)
    "mosquitto-restart": (0.5, 3.0),  # SIGTERM (saves its state), then a restart
    "kafka-stop": (5.0, 15.0),  # SIGTERM, then a restart
    "kafka-pause": (5.0, 30.0),  # SIGSTOP ... SIGCONT
    "agent-kill": (0.5, 4.0),  # kill -9 of one drone's process, then a restart
    "link-cut": (2.0, 15.0),  # one drone's link reset (RST) and refused
    "link-stall": (3.0, 20.0),  # one drone's link silent, sockets open
}
DRONE_KINDS = frozenset({"agent-kill", "link-cut", "link-stall"})
GATEWAY_KINDS = frozenset({"gateway-kill", "gateway-pause"})
WARMUP_S = 10.0
GAP_S = (4.0, 12.0)  # between the end of one fault's recovery budget and the next fault
TAIL_S = 15.0  # no fault starts after duration - TAIL_S - its length


@dataclass(frozen=True)
class Fault:
    at_s: float  # when it starts, seconds after the drones started
    kind: str
    length_s: float
    target: int | None = None  # index of the drone (drone kinds) or of the gateway


def plan_faults(duration_s: float, drones: int, seed: int,
                kinds: Sequence[str] = tuple(KINDS), gateways: int = 1) -> list[Fault]:
    """The seeded schedule. Raises ValueError for an unknown kind or an empty list."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(KINDS)}"
                         if unknown else "no fault kinds")
    rng = random.Random(f"presacop.chaos:{seed}")
    out: list[Fault] = []
    t = WARMUP_S
    bag: list[str] = []
    while True:
        if not bag:
            bag = list(kinds)
            rng.shuffle(bag)
        kind = bag.pop()
        lo, hi = KINDS[kind]
        length = round(rng.uniform(lo, hi), 1)
        if t + length > duration_s - TAIL_S:
            return out
        target = rng.randrange(drones) if kind in DRONE_KINDS else \
            rng.randrange(gateways) if kind in GATEWAY_KINDS and gateways > 1 else None
        out.append(Fault(round(t, 1), kind, length, target))
        t += length + rng.uniform(*GAP_S)
