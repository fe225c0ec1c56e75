"""The link cuts a demo run injects: planned up front from the seed."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Cut:
    """Drone `drone` (index) loses its link from `at_s` for `length_s` seconds."""

    at_s: float
    drone: int
    length_s: float

    @property
    def end_s(self) -> float:
        return self.at_s + self.length_s


def plan_cuts(count: int, drones: int, duration_s: float, rng: random.Random) -> list[Cut]:
    """`count` link cuts, in time order: one on drone 0 at 20% of the flight, others at random.

    Every cut ends by 80% of the flight, so each drone reconnects and keeps flying before the
    drain. Cuts of one drone never overlap (an overlap would be one fault, not two).
    """
    if count == 0:
        return []
    last_end = 0.8 * duration_s
    longest = max(1.0, min(6.0, 0.15 * duration_s))
    cuts = [Cut(0.2 * duration_s, 0, longest)]
    attempts = 0
    while len(cuts) < count and attempts < 100 * count:
        attempts += 1
        length = rng.uniform(min(1.5, longest), longest)
        candidate = Cut(rng.uniform(0.1 * duration_s, last_end - length),
                        rng.randrange(drones), length)
        if not any(c.drone == candidate.drone and c.at_s < candidate.end_s + 1.0
                   and candidate.at_s < c.end_s + 1.0 for c in cuts):
            cuts.append(candidate)
    return sorted(cuts, key=lambda c: c.at_s)
