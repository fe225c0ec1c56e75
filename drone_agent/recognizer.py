"""The recognizer plug-in interface: a frame in, plate reads out.

The real model is another team's; the default is a stub (`drone_agent.stub_recognizer`) that
recognizes nothing, and the simulator has its own (`hw_sim.recognizer`). A plug-in is any object
with `recognize(frame)`, built by a factory named in config as a dotted path
(`package.module:factory`) or an entry point in the `presacop.recognizers` group; the factory
receives the `[recognizer.options]` table as keyword arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from drone_agent.hardware import Frame


@dataclass(frozen=True)
class PlateRead:
    text: str  # [A-Z0-9]{1,8}
    region: str  # two letters
    confidence: float  # 0..1
    box: tuple[int, int, int, int]  # x, y, w, h in pixels
    in_violation: bool  # the recognizer saw a violation involving this vehicle
    code: int | None = None  # violation code; None with in_violation: unqualified (human needed)
    make: str | None = None
    colour: str | None = None
    body: str | None = None


@runtime_checkable
class Recognizer(Protocol):
    def recognize(self, frame: Frame) -> list[PlateRead]:
        """Plate reads in `frame`. May be slow; the agent samples frames so it is not overrun."""
