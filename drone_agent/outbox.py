"""The durable outbox: every message is on disk before it is published.

SQLite (stdlib) in WAL mode. Each `put` is one transaction that allocates the sequence number,
builds the payload with it, enforces the bounds and stores the row; the next sequence number is
persisted in the same transaction, so a number is never handed out twice, not even across
restarts or after the rows that used it were delivered and deleted.

Durability: ``synchronous=FULL``: the WAL is fsync'ed at every commit, so a `put` that returned
survives kill -9 *and* power loss. `ack` commits are batched by the caller (losing an ack only
re-sends a message, which the message id makes harmless). The cost per put is one fsync: measure
it with `measure_put_rate` (docs/agent.md lists figures).

Order: `pending` returns violations before telemetry, each in sequence order, i.e. ORDER BY
(priority, seq): after an outage the violations go out ahead of the telemetry backlog. Rows the
broker refused are moved behind both (`hold`), so one refused row cannot block the rest.

Bounds (rows and bytes; a row is counted as its payload plus `ROW_OVERHEAD`):
- telemetry that does not fit replaces the oldest telemetry; if there is none to replace it is
  dropped (counted in `telemetry_dropped`);
- a violation may use all but `telemetry_reserve_rows` rows (and as many rows' worth of bytes),
  so telemetry carrying the OUTBOX_FULL flag still fits; to make room it drops the oldest telemetry;
  if only violations are left, `put` raises `OutboxFull` (counted in `refused`).

Full disk: SQLite in WAL mode needs new pages even to delete a row, so on a full file system the
acks would fail (delivery stops, the queue never shrinks) and so would every new violation. The
outbox keeps `disk_reserve_bytes` allocated in a file beside the database (`<outbox>.reserve`);
the first write that fails with "disk full" gives that space back and runs once more, logged as an
error and counted in `disk_full_events` (the agent raises DISK_LOW in telemetry while
`reserve_released`). The reserve is taken again once the disk has twice its size free. A write
that fails even then raises OutboxError, which the agent logs and counts: never silent.

Thread-safe: one connection guarded by a lock.

Raises: `OutboxFull` (no room for a violation), `OutboxError` (database unusable or sequence
space exhausted).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from drone_agent.errors import OutboxError, OutboxFull

log = logging.getLogger("drone_agent.outbox")
T = TypeVar("T")

ROW_OVERHEAD = 64  # rough per-row cost in SQLite (key, columns, index entry)
DISK_RESERVE_BYTES = 8 * 1024 * 1024  # room for acks and violations when the disk is full
SEQ_MAX = 2**32 - 1  # the wire's seq is a uint32
TELEMETRY_SIZE_ESTIMATE = 96  # bytes reserved per reserved telemetry row
SCHEMA_VERSION = 1

# Lower sorts first: violations leave before the telemetry backlog; rows the broker refused
# (HELD) go last so they cannot block the queue.
PRIORITY = {"violation": 0, "status": 0, "telemetry": 1}
HELD = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    priority INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload BLOB NOT NULL,
    evidence_id TEXT,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_order ON messages (priority, seq);
CREATE INDEX IF NOT EXISTS messages_evidence ON messages (evidence_id)
    WHERE evidence_id IS NOT NULL;
"""


@dataclass(frozen=True)
class Entry:
    """A queued message."""

    seq: int
    kind: str  # "violation" | "telemetry" | "status"
    payload: bytes
    created_ms: int


class Outbox:
    """A bounded, durable, prioritised message queue. See the module docstring."""

    def __init__(self, path: str | Path, *, max_bytes: int = 64 * 1024 * 1024,
                 max_rows: int = 200_000, telemetry_reserve_rows: int = 16,
                 disk_reserve_bytes: int = DISK_RESERVE_BYTES) -> None:
        """Open (creating if needed) the outbox at `path`. Raises `OutboxError`."""
        if telemetry_reserve_rows >= max_rows:
            raise ValueError("telemetry_reserve_rows must be < max_rows")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_rows = max_rows
        self.reserve_rows = telemetry_reserve_rows
        self.reserve_bytes = telemetry_reserve_rows * (TELEMETRY_SIZE_ESTIMATE + ROW_OVERHEAD)
        if self.reserve_bytes >= max_bytes:
            raise ValueError(f"max_bytes {max_bytes} leaves nothing beyond the telemetry reserve "
                             f"({self.reserve_bytes} bytes)")
        self.telemetry_dropped = 0
        self.refused = 0
        self.disk_full_events = 0
        self.disk_reserve_bytes = disk_reserve_bytes
        self._reserve = self.path.with_name(self.path.name + ".reserve")
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._setup()
        except sqlite3.DatabaseError as exc:
            raise OutboxError(f"outbox {self.path}: {exc}") from exc
        self._take_reserve()

    def _setup(self) -> None:
        db = self._db
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise OutboxError(f"outbox {self.path}: cannot switch to WAL (got {mode})")
        db.execute("PRAGMA synchronous=FULL")
        # Truncate the WAL after checkpoints so it does not stay large after a backlog drained.
        db.execute("PRAGMA journal_size_limit=8388608")
        db.executescript(_SCHEMA)
        version = self._meta("schema_version")
        if version is None:
            with self._tx() as tx:
                self._set_meta(tx, "schema_version", SCHEMA_VERSION)
        elif version != SCHEMA_VERSION:
            raise OutboxError(
                f"outbox {self.path}: schema version {version}, expected {SCHEMA_VERSION}")
        top = db.execute("SELECT max(seq) FROM messages").fetchone()[0]
        stored = self._meta("next_seq") or 0
        # Belt and braces: never below a seq still on disk, even if meta were older.
        self._next_seq = max(stored, (top + 1) if top is not None else 0)
        rows, size = db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM messages").fetchone()
        self._rows = rows
        self._bytes = size + rows * ROW_OVERHEAD
        tel_rows, tel_bytes = db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM messages "
            "WHERE kind='telemetry'").fetchone()
        self._tel_rows = tel_rows
        self._tel_bytes = tel_bytes + tel_rows * ROW_OVERHEAD

    # -- writing ------------------------------------------------------------------------------

    def put(self, kind: str, build: Callable[[int], bytes], *, evidence_id: str | None = None,
            now_ms: int | None = None, keep: Mapping[str, int] | None = None) -> int | None:
        """Allocate a seq, store `build(seq)` durably and return the seq.

        Telemetry that cannot fit returns None (counted in `telemetry_dropped`). Raises
        `OutboxFull` for a violation that cannot fit, `OutboxError` when the database fails
        (closed, disk full, I/O error) or the seq space is exhausted; any exception from `build`
        propagates. A put that raised or returned None consumed no seq. `keep`: values stored in
        the same transaction as the row (see `kept`)."""
        if kind not in PRIORITY:
            raise ValueError(f"unknown kind {kind!r}")
        created = int(time.time() * 1000) if now_ms is None else now_ms
        with self._lock:
            seq = self._take_seq()
            payload = build(seq)
            cost = len(payload) + ROW_OVERHEAD

            def store(db: sqlite3.Connection) -> list[tuple[int, int]] | None:
                dropped = self._make_room(db, kind, cost)
                if dropped is not None:
                    db.execute(
                        "INSERT INTO messages (seq, priority, kind, payload, evidence_id, "
                        "created_ms) VALUES (?, ?, ?, ?, ?, ?)",
                        (seq, PRIORITY[kind], kind, payload, evidence_id, created))
                    self._set_meta(db, "next_seq", seq + 1)
                    for name, value in (keep or {}).items():
                        self._set_meta(db, name, value)
                return dropped

            dropped = self._write(store)
            if dropped is None:  # nothing was written: the transaction committed no change
                return self._refuse(kind)
            self._next_seq = seq + 1
            self._account(kind, cost, dropped)
            return seq

    def reserve_seq(self, count: int = 1, *, keep_as: str | None = None) -> int:
        """Allocate `count` consecutive seqs used outside the queue (status messages), persisted
        like any other; returns the first, also remembered as `keep_as` (`kept_seq`) in the same
        transaction when given. Raises `OutboxError`."""
        with self._lock:
            seq = self._take_seq()
            if seq + count - 1 > SEQ_MAX:
                raise OutboxError(f"outbox {self.path}: sequence space exhausted")
            kept = [("next_seq", seq + count)] + ([(keep_as, seq)] if keep_as else [])
            self._write(lambda db: [self._set_meta(db, k, v) for k, v in kept])
            self._next_seq = seq + count
            return seq

    def kept(self, prefix: str) -> dict[str, int]:
        """Values kept by `reserve_seq(keep_as=)` or `put(keep=)`, by name, of the names that
        start with `prefix` (e.g. "reported:"), until `forget`: they survive restarts."""
        with self._lock:
            return dict(self._conn().execute("SELECT key, value FROM meta WHERE key >= ? AND "
                                             "key < ?", (prefix, prefix + "\uffff")).fetchall())

    def forget(self, names: Iterable[str]) -> None:
        """Drop kept values. Raises `OutboxError`."""
        with self._lock:
            self._write(lambda db: db.executemany("DELETE FROM meta WHERE key=?",
                                                  [(n,) for n in names]))

    def ack(self, seqs: Iterable[int]) -> int:
        """Remove delivered messages (the broker acknowledged them). Returns how many were here.
        Raises `OutboxError`."""
        batch = list(seqs)
        if not batch:
            return 0
        def delete(db: sqlite3.Connection) -> list[tuple[str, int]]:
            gone: list[tuple[str, int]] = []
            for chunk in _chunks(batch, 500):
                marks = ",".join("?" * len(chunk))
                gone += db.execute(
                    f"SELECT kind, length(payload) FROM messages WHERE seq IN ({marks})", chunk
                ).fetchall()
                db.execute(f"DELETE FROM messages WHERE seq IN ({marks})", chunk)
            return gone

        with self._lock:
            gone = self._write(delete)
            for kind, size in gone:
                self._forget(kind, size + ROW_OVERHEAD)
            if self.reserve_released:
                self._take_reserve()
            return len(gone)

    def hold(self, seqs: Iterable[int]) -> None:
        """Move refused rows behind everything else (they stay queued). Raises `OutboxError`."""
        batch = list(seqs)

        def move(db: sqlite3.Connection) -> None:
            for chunk in _chunks(batch, 500):
                marks = ",".join("?" * len(chunk))
                db.execute(f"UPDATE messages SET priority = {HELD} WHERE seq IN ({marks})", chunk)

        with self._lock:
            self._write(move)

    # -- reading ------------------------------------------------------------------------------

    def pending(self, limit: int, exclude: Collection[int] = ()) -> list[Entry]:
        """Up to `limit` queued messages not in `exclude`, violations first, then by seq."""
        if limit <= 0:
            return []
        params: list[int] = list(exclude)
        where = f"WHERE seq NOT IN ({','.join('?' * len(params))})" if params else ""
        with self._lock:
            rows = self._conn().execute(
                f"SELECT seq, kind, payload, created_ms FROM messages {where} "
                "ORDER BY priority, seq LIMIT ?", [*params, limit]).fetchall()
        return [Entry(seq, kind, bytes(payload), created) for seq, kind, payload, created in rows]

    def referenced_evidence(self) -> set[str]:
        """Evidence ids named by queued (undelivered) violations."""
        with self._lock:
            rows = self._conn().execute(
                "SELECT DISTINCT evidence_id FROM messages WHERE evidence_id IS NOT NULL"
            ).fetchall()
        return {r[0] for r in rows}

    def oldest_created_ms(self) -> int | None:
        """When the oldest queued message was created (ms), or None if empty."""
        with self._lock:
            # The lowest seq is (nearly) the oldest; reading it by rowid avoids a full scan.
            row = self._conn().execute(
                "SELECT created_ms FROM messages ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else row[0]  # type: ignore[no-any-return]

    def full_for_violations(self, size: int = 256) -> bool:
        """True if a violation of `size` payload bytes would be refused now."""
        rows = self._rows - self._tel_rows
        used = self._bytes - self._tel_bytes
        return rows + 1 > self.max_rows - self.reserve_rows or \
            used + size + ROW_OVERHEAD > self.max_bytes - self.reserve_bytes

    @property
    def depth(self) -> int:
        """Queued messages."""
        return self._rows

    @property
    def size_bytes(self) -> int:
        """Queued bytes as the bounds count them."""
        return self._bytes

    @property
    def next_seq(self) -> int:
        """The seq the next put or reservation will get."""
        return self._next_seq

    def close(self) -> None:
        """Checkpoint and close. Safe to call twice."""
        with self._lock:
            if self._db is not None:
                try:
                    # On a full disk the checkpoint may fail: the WAL keeps the data safely.
                    with contextlib.suppress(sqlite3.OperationalError):
                        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    self._db.close()
                    self._db = None  # type: ignore[assignment]

    @property
    def reserve_released(self) -> bool:
        """True while the disk reserve is given up (the disk was full and has not recovered)."""
        return self.disk_reserve_bytes > 0 and not self._reserve_held

    # -- internals ----------------------------------------------------------------------------

    def _write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """`body` in one write transaction; on a full disk, once more after giving the reserve
        back. Raises OutboxError."""
        try:
            with self._tx() as db:
                return body(db)
        except OutboxError as exc:
            if not (_disk_full(exc.__cause__) and self._release_reserve()):
                raise
        with self._tx() as db:
            return body(db)

    def _release_reserve(self) -> bool:
        """Give the reserve's space back to the file system; False if there was none."""
        if not self._reserve_held:
            return False
        with contextlib.suppress(FileNotFoundError):
            self._reserve.unlink()
        self._reserve_held = False
        self.disk_full_events += 1
        log.error("DISK FULL under %s: released the outbox's %d-byte reserve so acks and "
                  "violations can still be written; free some space", self.path.parent,
                  self.disk_reserve_bytes)
        return True

    def _take_reserve(self) -> None:
        """Allocate the reserve file, if the disk has twice its size free."""
        self._reserve_held = False
        if not self.disk_reserve_bytes:
            return
        try:
            if not self._reserve.exists():
                if shutil.disk_usage(self._reserve.parent).free < 2 * self.disk_reserve_bytes:
                    return
                fd = os.open(self._reserve, os.O_WRONLY | os.O_CREAT, 0o600)
                try:
                    os.posix_fallocate(fd, 0, self.disk_reserve_bytes)  # blocks, not a hole
                finally:
                    os.close(fd)
            self._reserve_held = True
        except OSError as exc:
            log.warning("cannot allocate the outbox's disk reserve %s: %s", self._reserve, exc)
            with contextlib.suppress(OSError):
                self._reserve.unlink()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise OutboxError(f"outbox {self.path} is closed")
        return self._db

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; sqlite errors become `OutboxError`, and roll back."""
        db = self._conn()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise OutboxError(f"outbox {self.path}: {exc}") from exc

    def _take_seq(self) -> int:
        self._conn()
        if self._next_seq > SEQ_MAX:
            raise OutboxError(f"outbox {self.path}: sequence space exhausted")
        return self._next_seq

    def _make_room(self, db: sqlite3.Connection, kind: str,
                   cost: int) -> list[tuple[int, int]] | None:
        """Drop the oldest telemetry until a row of `cost` fits; the dropped (seq, cost) pairs,
        or None if it cannot fit (then nothing was deleted)."""
        if kind != "telemetry":
            # Violations (and status) compete only among themselves for their share; telemetry
            # beyond its reserve always yields to them.
            rows = self._rows - self._tel_rows
            size = self._bytes - self._tel_bytes
            if rows + 1 > self.max_rows - self.reserve_rows or \
                    size + cost > self.max_bytes - self.reserve_bytes:
                return None
        need_rows = max(0, self._rows + 1 - self.max_rows)
        need_bytes = max(0, self._bytes + cost - self.max_bytes)
        if not need_rows and not need_bytes:
            return []
        return self._drop_oldest_telemetry(db, need_rows, need_bytes)

    def _drop_oldest_telemetry(self, db: sqlite3.Connection, need_rows: int,
                               need_bytes: int) -> list[tuple[int, int]] | None:
        dropped: list[tuple[int, int]] = []
        freed_rows = freed_bytes = 0
        cursor = db.execute(
            "SELECT seq, length(payload) FROM messages WHERE kind='telemetry' ORDER BY seq")
        for seq, size in cursor:
            if freed_rows >= need_rows and freed_bytes >= need_bytes:
                break
            dropped.append((seq, size + ROW_OVERHEAD))
            freed_rows += 1
            freed_bytes += size + ROW_OVERHEAD
        cursor.close()
        if freed_rows < need_rows or freed_bytes < need_bytes:
            return None
        for chunk in _chunks([s for s, _ in dropped], 500):
            marks = ",".join("?" * len(chunk))
            db.execute(f"DELETE FROM messages WHERE seq IN ({marks})", chunk)
        return dropped

    def _refuse(self, kind: str) -> None:
        if kind == "telemetry":
            self.telemetry_dropped += 1
            return None
        self.refused += 1
        # The exception, the counter and the OUTBOX_FULL flag (set by the agent) make the
        # refusal loud: nothing is dropped silently.
        raise OutboxFull(
            f"outbox full: {self._rows - self._tel_rows} violations use "
            f"{self.max_rows - self.reserve_rows} rows / "
            f"{self.max_bytes - self.reserve_bytes} bytes allowed; the {kind} was refused")

    def _account(self, kind: str, cost: int, dropped: list[tuple[int, int]]) -> None:
        for _seq, c in dropped:
            self._forget("telemetry", c)
        self.telemetry_dropped += len(dropped)
        self._rows += 1
        self._bytes += cost
        if kind == "telemetry":
            self._tel_rows += 1
            self._tel_bytes += cost

    def _forget(self, kind: str, cost: int) -> None:
        self._rows -= 1
        self._bytes -= cost
        if kind == "telemetry":
            self._tel_rows -= 1
            self._tel_bytes -= cost

    def _meta(self, key: str) -> int | None:
        row = self._conn().execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else int(row[0])

    @staticmethod
    def _set_meta(db: sqlite3.Connection, key: str, value: int) -> None:
        db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))


def _disk_full(exc: BaseException | None) -> bool:
    return isinstance(exc, sqlite3.Error) and \
        getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def _chunks(items: list[int], n: int) -> Iterable[list[int]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def measure_put_rate(path: str | Path, count: int = 200, payload_size: int = 130,
                     kind: str = "violation") -> float:
    """Durable puts per second into a fresh outbox at `path` (one fsync'ed commit each).

    For the docs and the benchmark: run it on the device's real data disk (an SD card is far
    slower than an SSD). Raises `OutboxError`, `OSError`."""
    box = Outbox(path)
    try:
        body = b"x" * payload_size
        start = time.perf_counter()
        for _ in range(count):
            box.put(kind, lambda _seq: body)
        return count / (time.perf_counter() - start)
    finally:
        box.close()
