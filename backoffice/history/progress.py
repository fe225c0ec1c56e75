"""A one-line progress bar (rows, rows/s, percent, ETA) drawn only on a terminal.

On a pipe or a log file it draws nothing: logs get the summary at the end, not a line per second.
Never raises on its own; writes to the stream it is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

_EVERY_ROWS = 2048  # look at the clock this often: time.monotonic() per row would cost ~2%
_EVERY_S = 0.25


class Progress:
    def __init__(self, total_bytes: int, stream: TextIO | None) -> None:
        self.total = max(total_bytes, 1)
        self.stream = stream if stream is not None and _is_tty(stream) else None
        self.started = time.monotonic()
        self.next_draw = 0.0
        self.calls = 0
        self.drawn = False

    def update(self, done_bytes: Callable[[], int], rows: int) -> None:
        """Note progress: `done_bytes()` of the file consumed (asked only when drawing: a
        file's tell() is a system call), `rows` read by this run."""
        if self.stream is None:
            return
        self.calls += 1
        if self.calls % _EVERY_ROWS:
            return
        now = time.monotonic()
        if now < self.next_draw:
            return
        self.next_draw = now + _EVERY_S
        self.stream.write("\r" + line(done_bytes(), self.total, rows, now - self.started))
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.stream is not None and self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def line(done: int, total: int, rows: int, elapsed: float) -> str:
    """The bar's text, e.g. `[#####-----]  50.0%  1,234,567 rows  45,210 rows/s  ETA 0:01:12`."""
    frac = min(done / total, 1.0)
    filled = int(frac * 30)
    rate = rows / elapsed if elapsed > 0 else 0.0
    eta = elapsed * (1 - frac) / frac if frac > 0 else 0.0
    return (f"[{'#' * filled}{'-' * (30 - filled)}] {frac * 100:5.1f}%  {rows:,} rows  "
            f"{rate:,.0f} rows/s  ETA {_hms(eta)}")


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
