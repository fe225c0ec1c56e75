"""The live status line: rewritten in place on a terminal, one line every few seconds in a log."""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from typing import TextIO

from presacop.demo.ledger import ROLES

TTY_PROGRESS_S = 1.0
LOG_PROGRESS_S = 5.0  # when stdout is a file or a CI log: one full line every few seconds


class Progress:
    """One status line: rewritten in place on a terminal, a new line every few seconds else."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._next = 0.0
        self._width = 0

    def show(self, line: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + (TTY_PROGRESS_S if self.tty else LOG_PROGRESS_S)
        if self.tty:
            # A line wider than the terminal wraps, and \r would then redraw only its last row.
            line = line[:shutil.get_terminal_size().columns - 1]
            self.out.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def clear(self) -> None:
        """Erase the status line (on a terminal), so other output starts on a clean line."""
        if self.tty and self._width:
            self.out.write("\r" + " " * self._width + "\r")
            self.out.flush()
            self._width = 0

    def say(self, text: str) -> None:
        """A line of its own (events, phases)."""
        self.clear()
        self.out.write(text + "\n")
        self.out.flush()
        if self.tty:
            self._next = 0.0  # redraw the status line under the event at once


def progress_line(elapsed_s: float, total_s: float, phase: str, fleet: Mapping[str, int],
                  kafka: Mapping[str, int], cuts: int) -> str:
    """`fleet`: the fleet's totals plus "drones"; `kafka`: records per role."""
    published = fleet.get("violations", 0) + fleet.get("telemetry", 0)
    down = fleet.get("drones", 0) - fleet.get("link_up", 0)
    return (f"[{elapsed_s:3.0f}/{total_s:.0f} s {phase}] published {published} "
            f"(violations {fleet.get('violations', 0)}), acked {fleet.get('acked', 0)} | Kafka: "
            + ", ".join(f"{role} {kafka[role]}" for role in ROLES)
            + f" | link cuts {cuts}" + (f" ({down} down)" if down > 0 else ""))
