"""The default recognizer: reports a simulator's ground truth, with configurable mistakes.

The real model is another team's. This stub reads `frame.truth` (set by `hw_sim.camera.SimCamera`)
and returns one `PlateRead` per plate: `in_violation=True` with the truth's code for cars in
violation, `in_violation=False` for legal ones. A real camera's frames carry no truth, so on real
hardware the stub returns nothing: no plates, no violations (install the real recognizer).

Mistakes are decided once per vehicle (seeded by the vehicle's plate and code), not per frame: a
parked car appears in many frames and the agent emits it once, so per-frame rolls would multiply
the rates by the number of frames a car is seen in. With ``unqualified_rate=0.01`` about 1% of
emitted violations are unqualified (code None: a human must set it), as the customer observes.
"""

from __future__ import annotations

import random
import string

from drone_agent.hardware import Frame, TruthPlate
from drone_agent.recognizer import PlateRead

_PLATE_CHARS = string.ascii_uppercase + string.digits


class StubRecognizer:
    """A `Recognizer` reading ground truth. Raises `ValueError` for rates outside 0..1."""

    def __init__(self, misread_rate: float = 0.0, unqualified_rate: float = 0.01,
                 seed: int | None = None) -> None:
        for name, rate in (("misread_rate", misread_rate), ("unqualified_rate", unqualified_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {rate}")
        self.misread_rate = misread_rate
        self.unqualified_rate = unqualified_rate
        # No seed: a random salt, so different drones make different mistakes.
        self._salt = random.getrandbits(64) if seed is None else seed

    def recognize(self, frame: Frame) -> list[PlateRead]:
        """One read per truth plate in `frame`; [] for frames without truth (real cameras)."""
        return [self._read(t) for t in frame.truth]

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
