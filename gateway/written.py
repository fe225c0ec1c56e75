"""Alert and evidence records already in Kafka, as the dedupe seed read them back: a record with
the same identity is not produced again (docs/gateway.md, "Duplicates").

Why: a violation's records (the violation, its alert) and an upload's evidence record are
produced one by one. A gateway killed after Kafka took the alert but before the violation (or
after the evidence record but before the upload's `.done` mark) leaves half of it written; the
restarted gateway handles the redelivered violation (or the drone's next manifest) again and
would write the alert (the evidence record) a second time. The seed reads the tail of the alerts
and evidence topics too; `RetryingProducer` reports a record whose identity is here as produced
without sending it.

Identity: an alert is (alert, alert_id, state) (its key and the state in its value: a later
state of the same alert is a new record); an evidence record is (evidence, drone_id,
evidence_id). Other record kinds have none (their dedupe is the message id's, seed.py).
Bounded: the newest `cap` identities (oldest forgotten first). Thread-safe.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable

KINDS = frozenset({"alert", "evidence"})
Identity = tuple[str, str, str]


def identity(kind: str, key: bytes | None, value: bytes) -> Identity | None:
    """The identity of a record of `kind` (None for other kinds or an unreadable value)."""
    if kind not in KINDS:
        return None
    try:
        doc = json.loads(value)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    if kind == "alert":
        aid = key.decode("utf-8", "replace") if key else doc.get("alert_id")
        state = doc.get("state")
        return ("alert", aid, state) if isinstance(aid, str) and isinstance(state, str) else None
    drone, ident = doc.get("drone_id"), doc.get("evidence_id")
    if isinstance(drone, str) and isinstance(ident, str):
        return ("evidence", drone, ident)
    return None


class Written:
    """The identities known to be in Kafka (at most `cap`, newest kept)."""

    def __init__(self, cap: int = 200_000) -> None:
        self.cap = cap
        self._ids: dict[Identity, None] = {}
        self._lock = threading.Lock()

    def add_all(self, idents: Iterable[Identity]) -> None:
        with self._lock:
            for ident in idents:
                self._ids.pop(ident, None)
                self._ids[ident] = None
            while len(self._ids) > self.cap:
                del self._ids[next(iter(self._ids))]

    def __contains__(self, ident: object) -> bool:
        with self._lock:
            return ident in self._ids

    def __len__(self) -> int:
        return len(self._ids)
