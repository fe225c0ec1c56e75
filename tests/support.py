"""Shared test support: the one way to wait for observable state, and the one writer of test
gateway configs.

Waiting: `wait_until(predicate, timeout, message)` polls `predicate` every 50 ms until it returns
something truthy and returns that value; on timeout it raises AssertionError naming what was
awaited and the last value (or exception) observed. Tests never sleep to prove something: they wait
on a state the system exposes (Kafka offsets, metrics, PUBACK counts, a log line).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

POLL_S = 0.05


def wait_until(predicate: Callable[[], T], timeout: float, message: str = "the condition", *,
               interval: float = POLL_S,
               ignoring: tuple[type[BaseException], ...] = ()) -> T:
    """Poll `predicate` until it returns a truthy value, and return that value.

    `message` says what is awaited ("3 records in presacop.violations"). Exceptions of the types in
    `ignoring` (e.g. OSError while a server starts) count as "not yet" and are shown as the last
    observation. Raises AssertionError after `timeout` seconds.
    """
    give_up = time.monotonic() + timeout
    last: object = "(never evaluated)"
    while True:
        try:
            value = predicate()
        except ignoring as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= give_up:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {message}; "
                                 f"last observed: {_short(last)}")
        time.sleep(interval)


def _short(value: object, limit: int = 500) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"
