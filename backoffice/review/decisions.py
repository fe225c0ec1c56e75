"""Decisions: an officer sets the code of an open alert; a supervisor changes the code of a
violation the drone qualified. Each is claimed atomically in sqlite first, so two officers can
never both decide one alert: the second gets a clear message and nothing is written.

A decision writes, acknowledged by Kafka before it counts: the corrected violation (next
revision, `code_status` officer_set/officer_changed) and, for an alert, its resolved state; then
the view and the audit outbox change in one transaction. If Kafka fails, the claim is released
and the officer is told to retry (a repeated revision is a duplicate that readers drop).
Raises: DecisionRefused (bad input, missing, already decided, stale form; nothing written),
PublishFailed (Kafka did not acknowledge).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from typing import Any

import protocol
from gateway.records import (
    OutRecord,
    alert_state_record,
    corrected_violation,
    resolved_alert,
    revision_record,
)

from . import audit, view
from .accounts import Account, now_ms
from .db import Database
from .errors import DecisionRefused, PublishFailed

CODE_RANGE = (min(protocol.VIOLATION_CODES), max(protocol.VIOLATION_CODES))
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_MESSAGE_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}:[0-9]{1,20}$")


def parse_code(text: object) -> int:
    """The DOF code typed by an officer. Raises DecisionRefused: not a number ("bad_code"),
    outside 1..99 ("code_out_of_range"), or a number DOF does not assign ("unknown_code")."""
    raw = text.strip() if isinstance(text, str) else ""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 6:
        raise DecisionRefused(f"the code must be a number, got {str(text)[:20]!r}", "bad_code")
    code = int(raw)
    lo, hi = CODE_RANGE
    if not lo <= code <= hi:
        raise DecisionRefused(f"code {code} is out of range: DOF codes are {lo}..{hi}",
                              "code_out_of_range")
    if code not in protocol.VIOLATION_CODES:
        raise DecisionRefused(f"{code} is not a DOF violation code (unassigned)", "unknown_code")
    return code


class Decisions:
    def __init__(self, db: Database, send: Callable[[list[OutRecord]], None], *,
                 violations_topic: str, alerts_topic: str, console_id: str,
                 clock: Callable[[], int] = now_ms) -> None:
        self.db = db
        self.send = send
        self.violations_topic = violations_topic
        self.alerts_topic = alerts_topic
        self.console_id = console_id
        self.clock = clock

    def decide_alert(self, who: Account, alert_id: object, code_text: object,
                     address: str = "") -> dict[str, Any]:
        """Set the code of an open alert; returns the corrected violation record."""
        code = parse_code(code_text)
        aid = _checked(alert_id, _UUID, "alert id")
        now = self.clock()
        with self.db.connect() as conn:
            row = view.alert_row(conn, aid)
            _alert_open(row, aid)
            alert = json.loads(row["record"])
            current = _current_violation(conn, alert["message_id"])
            resolved = _built(resolved_alert, alert, code, who.name, now)
            corrected = _built(corrected_violation, current, code, who.name, now)
            conn.execute("UPDATE alerts SET claimed_by=?, claimed_ms=? WHERE alert_id=?",
                         (who.name, now, aid))
        out = [revision_record(corrected, self.violations_topic),
               alert_state_record(resolved, self.alerts_topic)]
        self._publish(out, "UPDATE alerts SET claimed_by=NULL WHERE alert_id=?", aid)
        with self.db.connect() as conn:
            view.apply(conn, view.ALERT, resolved)
            view.apply(conn, view.VIOLATION, corrected)
            audit.add(conn, "decision", who.name, now, self.console_id, address, alert_id=aid,
                      message_id=alert["message_id"], code=code,
                      code_status=corrected["code_status"], revision=corrected["revision"])
        return corrected

    def change_code(self, who: Account, message_id: object, revision_text: object,
                    code_text: object, address: str = "") -> dict[str, Any]:
        """A supervisor changes the code of a qualified violation. `revision_text` is the revision
        the supervisor saw: if it changed since, the form is stale and nothing is written."""
        if not who.supervisor:
            raise DecisionRefused("only a supervisor may change a qualified violation's code",
                                  "forbidden")
        code = parse_code(code_text)
        mid = _checked(message_id, _MESSAGE_ID, "violation message id")
        seen = _checked(revision_text, re.compile(r"^[0-9]{1,9}$"), "revision")
        now = self.clock()
        with self.db.connect() as conn:
            row = view.violation_row(conn, mid)
            current = _changeable(row, mid, int(seen))
            corrected = _built(corrected_violation, current, code, who.name, now)
            conn.execute("UPDATE violations SET claimed_by=? WHERE message_id=?", (who.name, mid))
        release = "UPDATE violations SET claimed_by=NULL WHERE message_id=?"
        self._publish([revision_record(corrected, self.violations_topic)], release, mid)
        with self.db.connect() as conn:
            view.apply(conn, view.VIOLATION, corrected)
            conn.execute(release, (mid,))
            audit.add(conn, "code_change", who.name, now, self.console_id, address,
                      message_id=mid, code=code, original_code=corrected["original_code"],
                      previous_code=current["code"], revision=corrected["revision"])
        return corrected

    def _publish(self, out: list[OutRecord], release_sql: str, key: str) -> None:
        try:
            self.send(out)
        except PublishFailed:
            with self.db.connect() as conn:
                conn.execute(release_sql, (key,))
            raise


def release_all_claims(db: Database) -> None:
    """At start: claims left by a crash mid-decision (their records may or may not be in
    Kafka; a retry writes the same revision again, a duplicate readers drop)."""
    with db.connect() as conn:
        conn.execute("UPDATE alerts SET claimed_by=NULL WHERE claimed_by IS NOT NULL")
        conn.execute("UPDATE violations SET claimed_by=NULL WHERE claimed_by IS NOT NULL")


def _checked(value: object, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise DecisionRefused(f"not a valid {what}: {str(value)[:60]!r}", "bad_form")
    return value


def _alert_open(row: sqlite3.Row | None, aid: str) -> None:
    if row is None:
        raise DecisionRefused(f"no alert {aid}", "no_alert")
    if row["state"] != "open":
        raise DecisionRefused(f"alert {aid} was already decided by {row['officer']} "
                              f"(code {row['code']})", "already_decided")
    if row["claimed_by"]:
        raise DecisionRefused(f"alert {aid} is being decided by {row['claimed_by']} right now",
                              "being_decided")


def _current_violation(conn: sqlite3.Connection, mid: str) -> dict[str, Any]:
    row = view.violation_row(conn, mid)
    if row is None:
        raise DecisionRefused(f"the violation record {mid} has not reached the console yet; "
                              "try again in a moment", "violation_missing")
    return json.loads(row["record"])


def _changeable(row: sqlite3.Row | None, mid: str, seen: int) -> dict[str, Any]:
    if row is None:
        raise DecisionRefused(f"no violation {mid}", "no_violation")
    if row["code_status"] == "pending":
        raise DecisionRefused(f"violation {mid} has no code yet: decide its alert in the queue",
                              "pending")
    if row["claimed_by"]:
        raise DecisionRefused(f"violation {mid} is being changed by {row['claimed_by']}",
                              "being_decided")
    if row["revision"] != seen:
        raise DecisionRefused(f"violation {mid} changed since the page was loaded (now "
                              f"revision {row['revision']}, code {row['code']}): reload",
                              "stale")
    return json.loads(row["record"])


def _built(builder: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    try:
        return builder(*args)
    except ValueError as exc:
        raise DecisionRefused(str(exc), "refused") from None
