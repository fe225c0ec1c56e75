"""The default recognizer (`factory = "stub"`): a placeholder until the real model is installed.

The plate model is another team's. Until it is plugged in (``recognizer.factory =
"their_package.module:make_recognizer"``), the stub reads nothing: every frame gives no plate
reads, so the drone flies, sends telemetry and status, and reports no violations. It says so once,
as a warning, when it is built, so a drone left on the stub is visible in its log. It never looks
at pixels and has no notion of a simulator: the simulator's recognizer, which reports what
`hw_sim` drew, is `hw_sim.recognizer.SimRecognizer`.

The options `misread_rate`, `unqualified_rate` and `seed` are the simulator recognizer's; the stub
accepts and checks them so that configs written for either load unchanged, and ignores them.

Raises: `ValueError` from the constructor for rates outside 0..1.
"""

from __future__ import annotations

import logging

from drone_agent.hardware import Frame
from drone_agent.recognizer import PlateRead

log = logging.getLogger(__name__)


def check_rates(**rates: float) -> None:
    """Raises `ValueError` naming the first rate outside 0..1."""
    for name, rate in rates.items():
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {rate}")


class StubRecognizer:
    """A `Recognizer` that recognizes nothing."""

    def __init__(self, misread_rate: float = 0.0, unqualified_rate: float = 0.01,
                 seed: int | None = None) -> None:
        check_rates(misread_rate=misread_rate, unqualified_rate=unqualified_rate)
        log.warning("recognizer 'stub': no plate model installed, this drone reports no "
                    "violations (set recognizer.factory to the real model; the simulator's is "
                    "hw_sim.recognizer:SimRecognizer)")

    def recognize(self, frame: Frame) -> list[PlateRead]:
        """No reads, for any frame."""
        return []
