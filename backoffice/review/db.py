"""The console's one sqlite file: accounts, sessions, the view of open alerts, violations and
evidence fed from Kafka, the consumed offsets, and the audit outbox.

One file so that the view, its offsets and a decision's bookkeeping change in one transaction.
WAL mode lets the web workers, the Kafka feeder and the `presacop review user` CLI use it at once.
Raises: sqlite3.Error only for a broken or unwritable file.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS users(
  name TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL,
  disabled INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,
  locked_until_ms INTEGER NOT NULL DEFAULT 0, changed_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sessions(
  id_hash TEXT PRIMARY KEY, user TEXT NOT NULL, csrf TEXT NOT NULL,
  created_ms INTEGER NOT NULL, seen_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS alerts(
  alert_id TEXT PRIMARY KEY, message_id TEXT NOT NULL, state TEXT NOT NULL,
  received_ms INTEGER NOT NULL, drone_id TEXT NOT NULL, evidence_id TEXT NOT NULL,
  record TEXT NOT NULL, code INTEGER, officer TEXT,
  decided_ms INTEGER, claimed_by TEXT, claimed_ms INTEGER);
CREATE INDEX IF NOT EXISTS alerts_queue ON alerts(state, received_ms);
CREATE TABLE IF NOT EXISTS violations(
  message_id TEXT PRIMARY KEY, drone_id TEXT NOT NULL, plate TEXT, day TEXT NOT NULL,
  revision INTEGER NOT NULL, code INTEGER, code_status TEXT NOT NULL, record TEXT NOT NULL,
  claimed_by TEXT);
CREATE INDEX IF NOT EXISTS violations_day ON violations(day, code_status);
CREATE INDEX IF NOT EXISTS violations_plate ON violations(plate);
CREATE TABLE IF NOT EXISTS evidence(
  drone_id TEXT NOT NULL, evidence_id TEXT NOT NULL, sha256 TEXT NOT NULL,
  content_type TEXT NOT NULL, size INTEGER NOT NULL, stored_ms INTEGER NOT NULL,
  PRIMARY KEY(drone_id, evidence_id));
CREATE TABLE IF NOT EXISTS offsets(
  topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
  PRIMARY KEY(topic, partition));
CREATE TABLE IF NOT EXISTS audit(
  id INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, event TEXT NOT NULL,
  account TEXT NOT NULL, record TEXT NOT NULL, sent INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS audit_unsent ON audit(sent, id);
"""


class Database:
    """Opens short-lived connections to the state file (one per unit of work: thread-safe)."""

    def __init__(self, state_dir: str | Path) -> None:
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = self.dir / "review.sqlite"
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)  # IF NOT EXISTS: safe while others use the file
        finally:
            conn.close()
        os.chmod(self.path, 0o600)  # password hashes and session ids live here

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in one transaction: committed on success, rolled back on an exception.
        `BEGIN IMMEDIATE` takes the write lock up front, so read-then-write is atomic."""
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def cookie_key(self) -> bytes:
        """The key that signs session cookies: 32 random bytes made once, readable by us only."""
        path = self.dir / "cookie.key"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes()
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
        return path.read_bytes()
