"""The agent's thread plumbing: the one-frame mailbox between capture and recognition, named
threads that log their death instead of dying silently, and closing parts quietly.

Raises nothing of its own: `start_thread`'s thread logs what its target raises (CRITICAL), and
`close_quietly` logs a failed close (WARNING); both log as ``drone_agent.agent``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from drone_agent.hardware import Frame

log = logging.getLogger("drone_agent.agent")  # the agent's lines, wherever the code lives


class LatestFrame:
    """A one-frame mailbox: `put` replaces an untaken frame (counted in `replaced`)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self.replaced = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            if self._frame is not None:
                self.replaced += 1
            self._frame = frame
            self._cond.notify()

    def take(self, timeout: float) -> Frame | None:
        """The newest frame, waiting up to `timeout`; None if none came."""
        with self._cond:
            self._cond.wait_for(lambda: self._frame is not None, timeout)
            frame, self._frame = self._frame, None
            return frame


def start_thread(name: str, target: Callable[[], None]) -> threading.Thread:
    """A started daemon thread called `name` running `target`; an exception ends it with a
    CRITICAL log line naming the thread."""

    def run() -> None:
        try:
            target()
        except Exception:
            log.critical("thread %s died", name, exc_info=True)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def close_quietly(thing: Any) -> None:
    """`thing.close()` if it has one; a failure is logged, not raised (the others still close)."""
    close = getattr(thing, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception as exc:
        log.warning("closing %s failed: %s", type(thing).__name__, exc)
