"""The console's local view, fed from Kafka: open alerts, violations (latest revision) and
evidence, and the queries the pages make. Pages read only this; they never read a topic.

`apply` is idempotent (the feeder may re-apply a batch after a crash): an alert never goes back
from resolved to open, a violation keeps its highest revision, evidence is keyed by violation.
Raises: ValueError from `apply` for a record it cannot use (the feeder logs and skips it).
"""

from __future__ import annotations

import datetime
import json
import sqlite3
from collections.abc import Mapping
from typing import Any

ALERT, VIOLATION, EVIDENCE = "alert", "violation", "evidence"


def apply(conn: sqlite3.Connection, kind: str, rec: Mapping[str, Any]) -> None:
    """Fold one record of the alerts, violations or evidence topic into the view."""
    try:
        {ALERT: _alert, VIOLATION: _violation, EVIDENCE: _evidence}[kind](conn, rec)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a usable {kind} record: missing or bad {exc}") from None


def _alert(conn: sqlite3.Connection, rec: Mapping[str, Any]) -> None:
    row = (rec["alert_id"], rec["message_id"], rec["state"], int(rec["received_ms"]),
           rec["drone_id"], rec["evidence_id"], json.dumps(rec), rec.get("code"),
           rec.get("officer"), rec.get("decided_ms"))
    conn.execute(
        "INSERT INTO alerts(alert_id, message_id, state, received_ms, drone_id, evidence_id, "
        "record, code, officer, decided_ms) VALUES (?,?,?,?,?,?,?,?,?,?) "
        "ON CONFLICT(alert_id) DO UPDATE SET "
        "state=excluded.state, record=excluded.record, code=excluded.code, "
        "officer=excluded.officer, decided_ms=excluded.decided_ms, claimed_by=NULL "
        "WHERE alerts.state='open' AND excluded.state!='open'", row)


def _violation(conn: sqlite3.Connection, rec: Mapping[str, Any]) -> None:
    code = rec["code"]
    status = rec.get("code_status") or ("pending" if code is None else "drone")
    row = (rec["message_id"], rec["drone_id"], rec.get("plate"), day_of(int(rec["received_ms"])),
           int(rec.get("revision") or 0), code, status, json.dumps(rec))
    conn.execute(
        "INSERT INTO violations(message_id, drone_id, plate, day, revision, code, code_status, "
        "record) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(message_id) DO UPDATE SET "
        "revision=excluded.revision, code=excluded.code, code_status=excluded.code_status, "
        "record=excluded.record WHERE excluded.revision > violations.revision", row)


def _evidence(conn: sqlite3.Connection, rec: Mapping[str, Any]) -> None:
    """Keyed by (drone, evidence id): the violations of one frame share one image and one
    record (docs/kafka-records.md), and each alert names its image by `evidence_id`."""
    sha = str(rec["sha256"])
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ValueError(f"evidence record with a bad sha256 {sha[:80]!r}")
    if rec["evidence_id"] != sha[:16]:
        raise ValueError(f"evidence id {str(rec['evidence_id'])[:20]!r} is not the first 8 "
                         "bytes of its sha256")
    conn.execute("INSERT OR IGNORE INTO evidence(drone_id, evidence_id, sha256, content_type, "
                 "size, stored_ms) VALUES (?,?,?,?,?,?)",
                 (rec["drone_id"], rec["evidence_id"], sha, rec.get("content_type", "image/jpeg"),
                  int(rec["size"]), int(rec["stored_ms"])))


def day_of(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).date().isoformat()


def open_alerts(conn: sqlite3.Connection, limit: int = 50) -> list[dict[str, Any]]:
    """Open alerts, oldest first, each with `evidence` (its sha256 or None) and `claimed_by`."""
    rows = conn.execute(
        "SELECT a.record, a.claimed_by, e.sha256 FROM alerts a LEFT JOIN evidence e "
        "ON e.drone_id = a.drone_id AND e.evidence_id = a.evidence_id WHERE a.state='open' "
        "ORDER BY a.received_ms, a.alert_id LIMIT ?", (limit,)).fetchall()
    return [dict(json.loads(r["record"]), evidence=r["sha256"], claimed_by=r["claimed_by"])
            for r in rows]


def queue_depth(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM alerts WHERE state='open'").fetchone()[0]


def alert_row(conn: sqlite3.Connection, alert_id: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM alerts WHERE alert_id=?", (alert_id,)).fetchone()


def violation_row(conn: sqlite3.Connection, message_id: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM violations WHERE message_id=?", (message_id,)).fetchone()


def evidence_of_alert(conn: sqlite3.Connection, alert_id: str) -> sqlite3.Row | None:
    return conn.execute(
        "SELECT e.* FROM alerts a JOIN evidence e ON e.drone_id = a.drone_id "
        "AND e.evidence_id = a.evidence_id WHERE a.alert_id=?", (alert_id,)).fetchone()


def find_violations(conn: sqlite3.Connection, query: str, limit: int = 50) -> list[dict[str, Any]]:
    """Violations whose message id or plate is `query` (newest first), latest revision each."""
    rows = conn.execute(
        "SELECT record FROM violations WHERE message_id=? OR plate=? "
        "ORDER BY json_extract(record, '$.received_ms') DESC LIMIT ?",
        (query, query.upper(), limit)).fetchall()
    return [json.loads(r["record"]) for r in rows]


def audit_log(conn: sqlite3.Connection, limit: int = 200) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT record, sent FROM audit ORDER BY id DESC LIMIT ?",
                        (limit,)).fetchall()
    return [dict(json.loads(r["record"]), sent=bool(r["sent"])) for r in rows]
