"""Logging setup: one JSON object per line (default) or plain text, on stderr.

JSON lines carry `ts` (ISO 8601 UTC), `level`, `logger`, `msg`, `thread`, and any `extra={...}`
fields given at the call site, so operators can filter on e.g. `reason` or `drone_id`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "thread": record.threadName,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def setup(fmt: str = "json", level: str = "INFO", stream: TextIO | None = None) -> None:
    """Configure the `gateway` logger tree (and quiet chatty libraries)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("kafka").setLevel(library_level(level))


def library_level(level: str) -> int:
    """The level for kafka-python's own logger: CRITICAL, since it logs every failed reconnect
    at WARNING/ERROR and our own logs already say Kafka is down; at DEBUG, DEBUG, so an operator
    diagnosing a problem sees the library's view too."""
    numeric = logging.getLevelName(level)
    return logging.DEBUG if numeric <= logging.DEBUG else logging.CRITICAL
