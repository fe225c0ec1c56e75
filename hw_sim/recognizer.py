"""The simulator's recognizer: reports what `SimCamera` drew, with configurable mistakes.

It reads each frame's ground truth from the simulator (`hw_sim.truth.plates_in`) and returns one
`PlateRead` per plate: `in_violation=True` with the truth's code for cars in violation,
`in_violation=False` for legal ones. Frames from any other camera have no truth: no reads.
Plug it in with ``[recognizer] factory = "hw_sim.recognizer:SimRecognizer"``; `hw_sim.fleet`,
`presacop sim` and `presacop demo` use it.

Mistakes are decided once per vehicle (seeded by the vehicle's plate and code), not per frame: a
parked car appears in many frames and the agent emits it once, so per-frame rolls would multiply
the rates by the number of frames a car is seen in. With ``unqualified_rate=0.01`` about 1% of
emitted violations are unqualified (code None: a human must set it), as the customer observes.

Raises: `ValueError` from the constructor for rates outside 0..1.
"""

from __future__ import annotations

import random
import string

from drone_agent.hardware import Frame
from drone_agent.recognizer import PlateRead
from drone_agent.stub_recognizer import check_rates
from hw_sim.truth import TruthPlate, plates_in

_PLATE_CHARS = string.ascii_uppercase + string.digits


class SimRecognizer:
    """A `Recognizer` reading the simulator's ground truth."""

    def __init__(self, misread_rate: float = 0.0, unqualified_rate: float = 0.01,
                 seed: int | None = None) -> None:
        check_rates(misread_rate=misread_rate, unqualified_rate=unqualified_rate)
        self.misread_rate = misread_rate
        self.unqualified_rate = unqualified_rate
        # No seed: a random salt, so different drones make different mistakes.
        self._salt = random.getrandbits(64) if seed is None else seed

    def recognize(self, frame: Frame) -> list[PlateRead]:
        """One read per plate the simulator drew in `frame`; [] for frames it did not draw."""
        return [self._read(t) for t in plates_in(frame)]

    def _read(self, truth: TruthPlate) -> PlateRead:
        rng = random.Random(f"{self._salt}:{truth.text}:{truth.region}:{truth.code}")
        text = truth.text
        confidence = round(rng.uniform(0.85, 0.99), 2)
        if rng.random() < self.misread_rate:
            text = _misread(text, rng)
            confidence = round(rng.uniform(0.5, 0.8), 2)
        unqualified = rng.random() < self.unqualified_rate
        in_violation = truth.code is not None
        return PlateRead(
            text=text, region=truth.region, confidence=confidence, box=truth.box,
            in_violation=in_violation,
            code=None if (not in_violation or unqualified) else truth.code,
            make=truth.make, colour=truth.colour, body=truth.body)


def _misread(text: str, rng: random.Random) -> str:
    i = rng.randrange(len(text))
    wrong = rng.choice([c for c in _PLATE_CHARS if c != text[i]])
    return text[:i] + wrong + text[i + 1:]
