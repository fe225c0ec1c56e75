"""Evidence upload: each violation's JPEG goes to the back office in chunks, behind every event.

The queue of uploads is durable (``uploads.sqlite3`` in the data directory: WAL, synchronous
FULL), so an upload survives link cuts, broker and gateway restarts and an agent kill -9. The
uploader runs inside the publisher's thread, on its MQTT connection (`fill`, `on_publish`,
`on_receipt` are called there), sending one upload at a time, oldest first (while up to
`MAX_AWAITING` fully sent ones await their receipt, so the gateway's verify-and-store round trip
does not idle the link):

    announce   publish the manifest (size, SHA-256, chunk size, violation seq), signed with the
               violations' key when the agent has one (`encode_manifest`)
    receipt    the gateway answers with what it holds durably: RECEIVING(next_index)
    send       chunks next_index.. : at most `window` awaiting the broker's PUBACK, within the
               byte budget, and only while no event (violation, telemetry, status) is waiting in
               the outbox: a violation never queues behind image bytes for more than `window`
               chunks already on the air
    confirm    receipt STORED: the object is stored, its SHA-256 checked and its record in
               Kafka. Only now is the file deleted.

The broker's PUBACK of a chunk only paces the sending: it says nothing about the gateway. What
the back office holds comes from receipts alone, so after a reconnect, an agent restart or a
receipt that does not come (`reply_timeout_s`, `confirm_timeout_s`), the manifest is sent again
and the gateway's answer says where to resume: never from zero unless it holds nothing.
REJECTED (the gateway dead-lettered the upload: hash mismatch, chunk out of range, ...) ends the
upload with the file kept; BUSY (store down, staging full) pauses uploads, doubling to
`BUSY_MAX_S`, and then asks again.

Receipts are checked first when the agent holds the back office's public receipt keys
(`check_receipt`, `evidence.receipt_keys_dir`): an unsigned receipt, one of an unknown key or
one that does not verify is ignored (counted in `receipts_bad_signature`, logged once every
`BAD_RECEIPT_LOG_EVERY`), so nothing is deleted, ended or paused on it; the upload goes on as if
it had not come (its timeouts ask the gateway again). Without keys every receipt on the
drone's receipt topic is acted on (the weaker mode: the gateway's broker account can forge one).

Until confirmed, an evidence file is protected from the store's quota eviction (`unconfirmed`).

Raises: `UploadError` (database unusable) from the constructor and `enqueue`; nothing from the
publisher-thread hooks (errors are logged and the upload retried).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import protocol
from drone_agent.errors import OutboxError
from protocol import EvidenceChunk, EvidenceManifest, EvidenceReceipt, ReceiptState

log = logging.getLogger(__name__)

CONTENT_TYPE = "image/jpeg"
BUSY_MIN_S = 1.0
BUSY_MAX_S = 30.0
REFUSED_PAUSE_S = 300.0  # the broker refused a chunk (ACL): try again after this long
# Uploads fully sent and awaiting their receipt while the next one is sent: the gateway's
# verify-store-record round trip overlaps the next image's bytes instead of idling the link.
MAX_AWAITING = 8
BAD_RECEIPT_LOG_EVERY = 100  # a flood of forged receipts: log the first and every 100th
Policy = Literal["all", "unqualified", "none"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    evidence_id TEXT PRIMARY KEY,
    violation_seq INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    chunk_size INTEGER NOT NULL,    -- fixed per upload: a resumed manifest must not change
    state TEXT NOT NULL,            -- queued | confirmed | rejected
    sent_upto INTEGER NOT NULL DEFAULT 0,   -- chunks ever sent: a resend below it is counted
    reason TEXT,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
COUNTERS = ("upload_bytes", "upload_resent_bytes", "upload_chunks", "uploads_confirmed",
            "uploads_rejected", "uploads_missing", "upload_announces", "upload_busy",
            "receipts_bad_signature")


class UploadError(OutboxError):
    """The upload database cannot be used."""


class _Current:
    """The upload in progress (publisher thread only)."""

    def __init__(self, manifest: EvidenceManifest, path: Path, sent_upto: int) -> None:
        self.ident, self.path, self.sent_upto = manifest.evidence_id, path, sent_upto
        self.manifest = manifest
        self.payload: bytes | None = None  # the encoded (signed) manifest, made once
        self.phase = "announce"  # announce | wait | send | confirm
        self.deadline = 0.0
        self.next_index = 0


class Uploader:
    """See the module docstring. `file_for(ident)` is where evidence `ident` lives;
    `delete(ident)` removes it once confirmed."""

    def __init__(self, db_path: Path, drone_id: str, *, file_for: Callable[[str], Path],
                 delete: Callable[[str], None], policy: Policy = "all", chunk_size: int = 16384,
                 window: int = 2, budget_bps: int = 0, reply_timeout_s: float = 10.0,
                 confirm_timeout_s: float = 30.0,
                 encode_manifest: Callable[[EvidenceManifest], bytes] = protocol.encode_evidence,
                 check_receipt: Callable[[str, bytes, EvidenceReceipt], str | None] | None = None
                 ) -> None:
        self.drone_id = drone_id
        self._encode_manifest = encode_manifest
        self._check_receipt = check_receipt  # None: every receipt is believed (weaker mode)
        self.policy = policy
        self.chunk_size, self.window, self.budget_bps = chunk_size, window, budget_bps
        self.reply_timeout_s, self.confirm_timeout_s = reply_timeout_s, confirm_timeout_s
        self._file_for, self._delete = file_for, delete
        self._topic = protocol.evidence_topic(drone_id)
        self.receipt_topic = protocol.receipt_topic(drone_id)
        self._lock = threading.Lock()
        self._inflight: dict[int, int] = {}  # mid -> chunk bytes
        self._current: _Current | None = None
        self._awaiting: dict[str, _Current] = {}  # fully sent, receipt not yet here
        self._ahead: _Current | None = None  # the next upload, announced before its turn
        self._busy_streak = 0
        self._paused_until = 0.0
        self._tokens = 0.0
        self._tokens_at = time.monotonic()
        try:
            self._db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._queued = {r[0] for r in self._db.execute(
                "SELECT evidence_id FROM uploads WHERE state='queued'")}
            self.counters = dict.fromkeys(COUNTERS, 0) | dict(
                self._db.execute("SELECT name, value FROM counters").fetchall())
        except sqlite3.Error as exc:
            raise UploadError(f"upload queue {db_path}: {exc}") from exc

    # -- any thread ----------------------------------------------------------------------------

    def wanted(self, qualified: bool) -> bool:
        """Whether the policy uploads the evidence of a violation (qualified or not)."""
        return self.policy == "all" or (self.policy == "unqualified" and not qualified)

    def enqueue(self, ident: str, violation_seq: int, data: bytes) -> bool:
        """Queue the upload of evidence `ident` (its JPEG bytes `data`) durably. False if it is
        queued or done already (an image the back office confirmed before is deleted again).
        Raises `UploadError`."""
        sha = hashlib.sha256(data).hexdigest()
        with self._lock:
            if ident in self._queued:
                return False
            try:
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO uploads (evidence_id, violation_seq, sha256, size, "
                    "chunk_size, state, created_ms) VALUES (?, ?, ?, ?, ?, 'queued', ?)",
                    (ident, violation_seq, sha, len(data), self.chunk_size,
                     int(time.time() * 1000)))
            except sqlite3.Error as exc:
                raise UploadError(f"upload queue: {exc}") from exc
            if cur.rowcount:
                self._queued.add(ident)
                return True
            row = self._db.execute("SELECT state FROM uploads WHERE evidence_id=?",
                                   (ident,)).fetchone()
        if row is not None and row[0] == "confirmed":
            # The same image again (content-addressed): the back office has it already.
            with contextlib.suppress(FileNotFoundError):
                self._delete(ident)
        return False

    def sweep(self) -> int:
        """Delete files of confirmed uploads still on disk (a crash between the confirmation's
        commit and the unlink). Returns how many; call once at start."""
        with self._lock:
            rows = self._db.execute(
                "SELECT evidence_id FROM uploads WHERE state='confirmed'").fetchall()
        gone = 0
        for (ident,) in rows:
            if self._file_for(ident).exists():
                with contextlib.suppress(FileNotFoundError):
                    self._delete(ident)
                    gone += 1
        return gone

    def unconfirmed(self) -> set[str]:
        """Evidence ids queued for upload and not confirmed: never to be evicted."""
        with self._lock:
            return set(self._queued)

    def pending(self) -> int:
        return len(self._queued)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counters) | {"uploads_pending": len(self._queued)}

    def close(self) -> None:
        with self._lock:
            self._save_counters()
            self._db.close()

    # -- publisher thread ------------------------------------------------------------------------

    def on_connect(self, client: Any) -> None:
        """A new session: subscribe to receipts; the upload in progress announces itself again
        (chunks in flight on the old connection may be lost)."""
        client.subscribe(self.receipt_topic, qos=1)
        self._inflight.clear()
        for pending in (self._current, self._ahead):
            if pending is not None:
                pending.phase = "announce"
        for waiting in self._awaiting.values():
            waiting.deadline = 0.0  # ask again once the current one is sent

    def fill(self, client: Any, events_idle: bool) -> bool:
        """Publish what the upload may send now. True if something is in flight."""
        now = time.monotonic()
        if now < self._paused_until:
            return bool(self._inflight)
        self._retry_unanswered(now)
        cur = self._current or self._promote()
        if cur is None:
            return bool(self._inflight)
        if cur.phase == "wait" and now >= cur.deadline:
            cur.phase = "announce"  # no receipt came: ask again where the gateway stands
        if cur.phase == "announce":
            self._announce(client, cur, now)
        elif cur.phase == "send" and events_idle:
            self._send_chunks(client, cur, now)
        return bool(self._inflight)

    def on_publish(self, mid: int, reason_code: Any) -> bool:
        """A PUBACK. True if it was one of ours."""
        size = self._inflight.pop(mid, None)
        if size is None:
            return False
        if getattr(reason_code, "is_failure", False):
            log.error("uploader: the broker refused a chunk (%s): is the evidence topic in the "
                      "ACL? uploads paused %.0f s", reason_code, REFUSED_PAUSE_S)
            self._paused_until = time.monotonic() + REFUSED_PAUSE_S
            if self._current is not None:
                self._current.phase = "announce"
        return True

    def on_receipt(self, payload: bytes, topic: str) -> None:
        """A receipt from the gateway."""
        try:
            receipt = protocol.decode_evidence(payload, topic)
        except protocol.ProtocolError as exc:
            log.warning("uploader: bad receipt ignored: %s", exc)
            return
        if not isinstance(receipt, EvidenceReceipt) or receipt.drone_id != self.drone_id:
            return
        if self._check_receipt is not None and not self._genuine(topic, payload, receipt):
            return
        ident = receipt.evidence_id
        cur = next((c for c in (self._current, self._ahead) if c is not None and c.ident == ident),
                   self._awaiting.get(ident))
        if receipt.state is ReceiptState.STORED:
            self._finish(receipt.evidence_id, "confirmed", None)
        elif receipt.state is ReceiptState.REJECTED:
            log.error("uploader: evidence %s rejected by the back office (%s); file kept",
                      receipt.evidence_id, receipt.reason)
            self._finish(receipt.evidence_id, "rejected", receipt.reason)
        elif cur is None:
            return  # an old answer about an upload no longer in progress
        elif receipt.state is ReceiptState.BUSY:  # no upload until the pause is over
            self._busy_streak += 1
            self._count("upload_busy")
            self._paused_until = time.monotonic() + min(
                BUSY_MAX_S, BUSY_MIN_S * 2 ** (self._busy_streak - 1))
            cur.phase, cur.deadline = "announce", 0.0
        elif ident in self._awaiting:
            cur.deadline = 0.0  # the gateway lacks chunks of a sent upload: ask again, resend
        elif cur.phase == "wait":  # RECEIVING: resume where the gateway stands
            self._busy_streak = 0
            cur.next_index = min(receipt.next_index, cur.manifest.chunks)
            cur.phase = "send"

    # -- internals -------------------------------------------------------------------------------

    def _genuine(self, topic: str, payload: bytes, receipt: EvidenceReceipt) -> bool:
        """Whether the back office signed `receipt`; else it is counted and ignored."""
        assert self._check_receipt is not None
        why = self._check_receipt(topic, payload, receipt)
        if why is None:
            return True
        self._count("receipts_bad_signature")
        bad = self.counters["receipts_bad_signature"]
        if bad % BAD_RECEIPT_LOG_EVERY == 1:
            log.error("uploader: %s receipt for evidence %s ignored: %s (%d so far): not "
                      "signed by a back-office receipt key", receipt.state.name,
                      receipt.evidence_id, why, bad)
        return False

    def _retry_unanswered(self, now: float) -> None:
        """A sent upload whose receipt is overdue becomes the current one again: its manifest
        asks where the gateway stands."""
        if self._current is not None:
            return
        for ident, waiting in self._awaiting.items():
            if now >= waiting.deadline:
                del self._awaiting[ident]
                waiting.phase, self._current = "announce", waiting
                return

    def _promote(self) -> _Current | None:
        """The upload announced ahead, else the oldest queued one, becomes the current one."""
        self._current, self._ahead = self._ahead or self._next_upload(), None
        return self._current

    def _next_upload(self) -> _Current | None:
        """The oldest queued upload not in progress (None at MAX_AWAITING)."""
        if len(self._awaiting) >= MAX_AWAITING:
            return None
        busy = {*self._awaiting, *(c.ident for c in (self._current, self._ahead) if c)}
        with self._lock:
            rows = self._db.execute(
                "SELECT evidence_id, violation_seq, sha256, size, chunk_size, sent_upto "
                "FROM uploads WHERE state='queued' ORDER BY created_ms, evidence_id LIMIT ?",
                (len(busy) + 1,)).fetchall()
        row = next((r for r in rows if r[0] not in busy), None)
        if row is None:
            return None
        path = self._file_for(row[0])
        if not path.is_file():
            log.error("uploader: evidence %s is gone from disk; upload dropped", row[0])
            self._count("uploads_missing")
            self._finish(row[0], "missing", "file_missing")
            return None
        ident, seq, sha, size, chunk_size, sent_upto = row
        manifest = EvidenceManifest(self.drone_id, ident, sha, size, chunk_size, CONTENT_TYPE,
                                    seq)
        return _Current(manifest, path, sent_upto)

    def _announce(self, client: Any, cur: _Current, now: float) -> None:
        if cur.payload is None:
            cur.payload = self._encode_manifest(cur.manifest)
        info = client.publish(self._topic, cur.payload, qos=1)
        if info.rc != 0:
            return  # connection trouble: the publisher notices
        self._inflight[info.mid] = 0
        self._count("upload_announces")
        cur.phase, cur.deadline = "wait", now + self.reply_timeout_s

    def _send_chunks(self, client: Any, cur: _Current, now: float) -> None:
        m = cur.manifest
        while len(self._inflight) < self.window and cur.next_index < m.chunks \
                and self._take_budget(now):
            offset, length = protocol.chunk_span(m, cur.next_index)
            data = _read(cur.path, offset, length)
            frame = EvidenceChunk(self.drone_id, cur.ident, cur.next_index, data)
            info = client.publish(self._topic, protocol.encode_evidence(frame), qos=1)
            if info.rc != 0:
                return
            self._inflight[info.mid] = length
            self._tokens -= length
            self._count("upload_bytes", length)
            self._count("upload_chunks")
            if cur.next_index < cur.sent_upto:
                self._count("upload_resent_bytes", length)
            cur.next_index += 1
            if cur.next_index > cur.sent_upto:
                cur.sent_upto = cur.next_index
                self._write("UPDATE uploads SET sent_upto=? WHERE evidence_id=?",
                            (cur.sent_upto, cur.ident))
        with self._lock:
            self._save_counters()  # resent bytes are counted across an agent kill -9 too
        if self._ahead is None and m.chunks - cur.next_index <= self.window:
            # Ask about the next upload now: its receipt comes back while these chunks go out.
            self._ahead = self._next_upload()
            if self._ahead is not None:
                self._announce(client, self._ahead, now)
        if cur.next_index >= m.chunks:  # all sent: the next upload may start meanwhile
            cur.phase, cur.deadline = "confirm", now + self.confirm_timeout_s
            self._awaiting[cur.ident] = cur
            self._current = None

    def _take_budget(self, now: float) -> bool:
        """Token bucket of `budget_bps` bytes/s, one second deep; 0 = no budget."""
        if not self.budget_bps:
            return True
        self._tokens = min(float(self.budget_bps),
                           self._tokens + (now - self._tokens_at) * self.budget_bps)
        self._tokens_at = now
        return self._tokens >= 0  # a chunk may overdraw: the next waits until paid back

    def _finish(self, ident: str, state: str, reason: str | None) -> None:
        with self._lock:
            if ident not in self._queued:
                return
            self._write_locked("UPDATE uploads SET state=?, reason=? WHERE evidence_id=?",
                               (state, reason, ident))
            self._queued.discard(ident)
            if state == "confirmed":
                self.counters["uploads_confirmed"] += 1
            elif state == "rejected":
                self.counters["uploads_rejected"] += 1
            self._save_counters()
        self._awaiting.pop(ident, None)
        if self._current is not None and self._current.ident == ident:
            self._current = None
        if self._ahead is not None and self._ahead.ident == ident:
            self._ahead = None
        if state == "confirmed":
            with contextlib.suppress(FileNotFoundError):
                self._delete(ident)

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        with self._lock:
            self._write_locked(sql, args)

    def _write_locked(self, sql: str, args: tuple[Any, ...]) -> None:
        try:
            self._db.execute(sql, args)
        except sqlite3.Error as exc:
            log.error("uploader: database write failed: %s", exc)

    def _save_counters(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.executemany(
                "INSERT INTO counters (name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value=excluded.value",
                list(self.counters.items()))


def _read(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(length)
