"""Audit records: every login, failed login, logout, decision, code change and account change.

They are written first into the console's sqlite outbox, in the same transaction as what they
record, and a forwarder thread (kafka_io.AuditForwarder) produces them to the audit topic: a
Kafka outage delays audit records, it never loses them or blocks a login. The supervisor's audit
page reads the outbox. Format: docs/kafka-records.md, "Audit records".
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any

from gateway.records import CONTENT_TYPE, RECORD_VERSION, OutRecord

EVENTS = ("login", "login_failed", "logout", "decision", "code_change", "account_added",
          "account_disabled", "password_set")


def add(conn: sqlite3.Connection, event: str, account: str, at_ms: int, console_id: str,
        address: str = "", **detail: Any) -> dict[str, Any]:
    """Queue one audit record (inside the caller's transaction) and return it."""
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r}")
    record = {"record_version": RECORD_VERSION, "audit_id": str(uuid.uuid4()), "event": event,
              "account": account, "at_ms": at_ms, "console_id": console_id,
              "address": address, "detail": detail}
    conn.execute("INSERT INTO audit(at_ms, event, account, record) VALUES (?,?,?,?)",
                 (at_ms, event, account, json.dumps(record, separators=(",", ":"))))
    return record


def unsent(conn: sqlite3.Connection, limit: int = 500) -> list[tuple[int, str]]:
    return [(r["id"], r["record"]) for r in
            conn.execute("SELECT id, record FROM audit WHERE sent=0 ORDER BY id LIMIT ?", (limit,))]


def mark_sent(conn: sqlite3.Connection, ids: list[int]) -> None:
    conn.executemany("UPDATE audit SET sent=1 WHERE id=?", [(i,) for i in ids])


def out_record(raw: str, topic: str) -> OutRecord:
    """The Kafka record of one queued audit record: keyed by account name."""
    account = json.loads(raw)["account"]
    headers = (("content-type", CONTENT_TYPE), ("record-type", b"audit"),
               ("record-version", RECORD_VERSION.encode()))
    return OutRecord(topic, account.encode(), raw.encode(), headers, "audit")
