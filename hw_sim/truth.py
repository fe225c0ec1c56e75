"""Ground truth of simulated frames, kept beside the frames rather than inside them.

The production `drone_agent.hardware.Frame` carries pixels only: a real camera knows nothing about
plates. The simulator knows exactly what it drew, so `SimCamera` files each frame's `TruthPlate`s
here (`remember`) and the simulator's recognizer (`hw_sim.recognizer.SimRecognizer`) looks them
up (`plates_in`). The table is keyed by the frame object and forgets an entry when its frame is
garbage-collected, so it never grows with the frames a long flight makes and a recycled id() never
reads an old frame's truth. Thread-safe (the camera and recognizer threads of many drones share
it): each operation is one dict operation under the GIL.

Raises: nothing (a frame without truth, e.g. from another camera, has no plates).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from drone_agent.hardware import Frame


@dataclass(frozen=True)
class TruthPlate:
    """A plate the simulator drew, fully visible in the frame."""

    text: str  # plate text, [A-Z0-9]{1,8}
    region: str  # two letters, e.g. "NY"
    code: int | None  # NYC violation code if this car is in violation, None if parked legally
    box: tuple[int, int, int, int]  # x, y, w, h of the plate in pixels
    make: str | None = None
    colour: str | None = None
    body: str | None = None


_TRUTH: dict[int, tuple[TruthPlate, ...]] = {}


def remember(frame: Frame, plates: tuple[TruthPlate, ...]) -> Frame:
    """File `plates` as the truth of `frame` (until the frame is collected); returns the frame."""
    key = id(frame)
    _TRUTH[key] = tuple(plates)
    weakref.finalize(frame, _TRUTH.pop, key, None)
    return frame


def plates_in(frame: Frame) -> tuple[TruthPlate, ...]:
    """The truth filed for `frame`; () for a frame the simulator did not draw."""
    return _TRUTH.get(id(frame), ())
