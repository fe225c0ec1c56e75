"""Shared test support: the one way to wait for observable state, and the one writer of test
gateway configs.

Waiting: `wait_until(predicate, timeout, message)` polls `predicate` every 50 ms until it returns
something truthy and returns that value; on timeout it raises AssertionError naming what was
awaited and the last value (or exception) observed. Tests never sleep to prove something: they wait
on a state the system exposes (Kafka offsets, metrics, PUBACK counts, a log line).

Gateway configs: `gateway_config(...)` is the tests' settings (fast reconnects, 3 partitions, JSON
logs, a quick health probe) deep-merged with a test's own, written by `gateway.config.to_toml`,
the one writer of gateway TOML that the demo and the bench use too (a bad key fails here, naming
it, rather than in a gateway that exits at start).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

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


def gateway_config(mqtt_port: int, bootstrap: str, *, topics: Mapping[str, str], client_id: str,
                   metrics_port: int, share_group: str = "presacop-gateway",
                   log_level: str = "INFO", backend: str = "kafka-python",
                   settings: Mapping[str, Any] | None = None) -> str:
    """The TOML of a test gateway on 127.0.0.1; `settings` ({"limits": {...}, "mqtt": {...}})
    deep-merged over the defaults. Raises `common.config.ConfigError` naming a bad key."""
    from common.merge import deep_merge
    from gateway.config import to_toml

    data = {
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "client_id": client_id,
                 "share_group": share_group, "reconnect_min_s": 0.2, "reconnect_max_s": 2.0},
        "kafka": {"bootstrap_servers": bootstrap, "backend": backend, "partitions": 3,
                  "health_interval_s": 0.5, "topics": dict(topics)},
        "metrics": {"address": f"127.0.0.1:{metrics_port}"},
        "log": {"format": "json", "level": log_level},
    }
    return to_toml(deep_merge(data, settings or {}), source="test gateway config")
