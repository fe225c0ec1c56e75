"""Evidence intake: manifests and chunks in, staged files, stored objects and Kafka records out.

One owned thread (``gateway-evidence``) takes the frames the MQTT thread hands over (`offer`),
so file system and store latency never stall the events on the same connection. Per frame:

    manifest  first its signature (`verifier`, the gateway's key registry, as for violations):
              unknown key, invalid, or none where `require_signatures`: dead letter
              `bad_signature`, receipt REJECTED, nothing staged or recorded (a forgery cannot
              end the drone's genuine upload of that image)
              new: staged durably, receipt RECEIVING(next = first chunk not staged)
              the same again (a resume; a new signature of the same fields counts as the same):
              receipt RECEIVING(next) from what is on disk
              different from the staged one: dead letter `evidence_manifest_changed`, REJECTED
              finished before: the recorded receipt again (STORED or REJECTED)
              store down or staging full: receipt BUSY, nothing staged
    chunk     staged durably (fsync) then acknowledged; beyond the declared size or of the
              wrong length: dead letter `evidence_chunk_out_of_range`, REJECTED; no manifest
              staged and no outcome known: dead letter `evidence_unknown`
    last chunk staged: assembled (streamed through SHA-256), checked against the manifest
              (mismatch: dead letter `evidence_hash_mismatch`, REJECTED, nothing stored),
              moved into the store, its record produced to `presacop.evidence` (with the
              staged manifest's signed bytes when it was signed), and only when
              Kafka has it: the outcome recorded, the chunks removed, receipt STORED to the drone,
              and the MQTT acknowledgement of that last chunk sent.

Receipts go to presacop/v1/drones/<drone>/evidence/receipt (QoS 1). They are the drone's only
evidence of what the back office holds: a broker's PUBACK says nothing about the gateway. With
`evidence.receipt_key_file` every receipt is signed with the back office's key (protocol section
14.4), so a drone holding its public key ignores receipts forged by whoever else can publish on
the receipt topic.

Backpressure: a store failure (S3 down, disk full) keeps the staged chunks, answers BUSY and
refuses new uploads for `busy_retry_s`; the drone asks again later with its manifest. Frames are
queued at most `max_queued` deep (the service stops reading MQTT at the limit), so memory holds
at most that many chunks whatever the number of uploads in progress.

Raises: nothing from the thread (an unexpected error is logged and the frame dropped: the drone's
next manifest finds out what is staged).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import protocol
from common.signing import Signer
from gateway.evidence.config import EvidenceConfig
from gateway.evidence.staging import Staging
from gateway.evidence.store import EvidenceStore, StoreUnavailable
from gateway.records import RECORD_VERSION, OutRecord, Receipt, dead_letter_record
from gateway.router import BAD_SIGNATURE, UNSIGNED, Verifier
from protocol import EvidenceChunk, EvidenceManifest, EvidenceReceipt, ReceiptState

log = logging.getLogger("gateway.evidence")

MANIFEST_CHANGED = "evidence_manifest_changed"
CHUNK_OUT_OF_RANGE = "evidence_chunk_out_of_range"
UNKNOWN = "evidence_unknown"
HASH_MISMATCH = "evidence_hash_mismatch"

# A finished upload whose record is on its way to Kafka (marked `storing`) is not finished again
# for this long: a re-sent manifest or another gateway of the group would write a second record.
STORING_GRACE_S = 120.0

Submit = Callable[[OutRecord, Callable[[object | None], None]], None]


@dataclass
class Frame:
    topic: str
    payload: bytes
    receipt: Receipt
    ack: Callable[[], None]


def evidence_record(manifest: EvidenceManifest, uri: str, stored_ms: int, gateway_id: str,
                    topic: str, payload: bytes | None = None) -> OutRecord:
    """The presacop.evidence record of a stored object (docs/kafka-records.md). A signed
    manifest's `payload` (as received) goes in `manifest_b64`, for `presacop verify`."""
    value: dict[str, object] = {
        "record_version": RECORD_VERSION, "drone_id": manifest.drone_id,
        "violation_message_id": f"{manifest.drone_id}:{manifest.violation_seq}",
        "evidence_id": manifest.evidence_id, "sha256": manifest.sha256, "size": manifest.size,
        "content_type": manifest.content_type, "uri": uri, "stored_ms": stored_ms,
        "gateway_id": gateway_id,
    }
    if manifest.signature is not None and payload is not None:
        value["key_id"] = manifest.key_id
        value["signature"] = manifest.signature.hex()
        value["manifest_b64"] = base64.b64encode(payload).decode("ascii")
    headers = (("content-type", b"application/json"), ("record-type", b"evidence"),
               ("record-version", RECORD_VERSION.encode()))
    return OutRecord(topic, manifest.drone_id.encode(),
                     json.dumps(value, separators=(",", ":")).encode(), headers, "evidence")


class EvidenceIntake:
    """See the module docstring. `submit(record, done)` produces a record and calls
    `done(None)` once Kafka has it (else `done(error)`); `publish(topic, payload)` sends a
    receipt with QoS 1."""

    def __init__(self, cfg: EvidenceConfig, store: EvidenceStore, *, gateway_id: str,
                 evidence_topic: str, deadletter_topic: str, submit: Submit,
                 publish: Callable[[str, bytes], None], deadletter_max_bytes: int = 65536,
                 verifier: Verifier | None = None, require_signatures: bool = False) -> None:
        self.cfg = cfg
        self._verifier, self._require = verifier, require_signatures
        self.store = store
        self.staging = Staging(Path(cfg.staging_dir))
        self.gateway_id = gateway_id
        self._topics = (evidence_topic, deadletter_topic)
        self._submit, self._publish = submit, publish
        self._encode_receipt = receipt_encoder(cfg)
        self._dl_max = deadletter_max_bytes
        self._queue: queue.Queue[Frame | None] = queue.Queue()
        self._busy_until = 0.0
        self._thread: threading.Thread | None = None
        self.counts = dict.fromkeys(("frames", "chunks", "chunk_bytes", "stored", "stored_bytes",
                                     "deadletter", "busy", "duplicates", "store_failures",
                                     "shed"), 0)

    # -- lifecycle and intake (any thread) -----------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gateway-evidence", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the queued frames (bounded by `timeout`) and join."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is None or self._thread.is_alive()

    def room(self) -> int:
        return self.cfg.max_queued - self._queue.qsize()

    def offer(self, frame: Frame) -> None:
        """Queue a frame received on an evidence topic; its `ack` runs once it is durable.

        With `max_queued` frames already waiting the frame is shed instead: acknowledged
        unstaged and the drone told BUSY, so it asks again later with its manifest and resends
        what is missing. Evidence never pauses the intake of events on the same connection."""
        if self._queue.qsize() < self.cfg.max_queued or not self._shed(frame):
            self._queue.put(frame)

    def _shed(self, frame: Frame) -> bool:
        """BUSY for a well-formed frame that finds the queue full (called on the MQTT thread);
        False for one that does not decode: it queues, and its thread dead-letters it."""
        try:
            decoded = protocol.decode_evidence(frame.payload, frame.topic)
        except protocol.ProtocolError:
            return False
        if not isinstance(decoded, (EvidenceManifest, EvidenceChunk)):
            return False
        self.counts["shed"] += 1
        self._receipt(decoded.drone_id, decoded.evidence_id, ReceiptState.BUSY, reason="busy")
        frame.ack()
        return True

    # -- the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        while (frame := self._queue.get()) is not None:
            self.counts["frames"] += 1
            try:
                self._handle(frame)
            except Exception:  # a bug or an I/O error: drop the frame, the drone asks again
                log.exception("evidence frame not handled; dropped (the drone's next manifest "
                              "finds out what is staged)", extra={"topic": frame.topic})
                # Acknowledged all the same: evidence frames share the gateway's MQTT session
                # with events, and frames left unacknowledged would fill its in-flight window.
                frame.ack()

    def _handle(self, frame: Frame) -> None:
        try:
            decoded = protocol.decode_evidence(frame.payload, frame.topic)
        except protocol.ProtocolError as exc:
            drone = _drone_of(frame.topic)
            self._dead(frame, exc.code, str(exc), drone, path=exc.path)
            return
        if isinstance(decoded, EvidenceManifest):
            if self._signed_well(frame, decoded):
                self._on_manifest(frame, decoded)
        elif isinstance(decoded, EvidenceChunk):
            self._on_chunk(frame, decoded)

    def _signed_well(self, frame: Frame, m: EvidenceManifest) -> bool:
        """The manifest's signature holds (or none is needed); else dead letter + REJECTED."""
        if self._verifier is None:
            return True
        why = self._verifier(frame.topic, frame.payload, m)
        if why is None or (why == UNSIGNED and not self._require):
            return True
        # Neither staged nor recorded as an outcome: the forger would otherwise end the
        # drone's own upload of this image. The drone keeps its file (REJECTED).
        self._receipt(m.drone_id, m.evidence_id, ReceiptState.REJECTED, reason=BAD_SIGNATURE)
        self._dead(frame, BAD_SIGNATURE, why, m.drone_id, path="$.signature")
        return False

    def _on_manifest(self, frame: Frame, m: EvidenceManifest) -> None:
        if self._answer_finished(m.drone_id, m.evidence_id):
            frame.ack()
            return
        staged = self.staging.manifest(m.drone_id, m.evidence_id)
        if staged is not None and _unsigned(_decoded(staged, frame.topic)) != _unsigned(m):
            self._reject(frame, m.drone_id, m.evidence_id, MANIFEST_CHANGED,
                         "a different manifest for an upload in progress")
            return
        if staged is None and (self._busy() or not self._begin(m, frame.payload)):
            self._receipt(m.drone_id, m.evidence_id, ReceiptState.BUSY, reason="busy")
            frame.ack()
            return
        have = self.staging.next_missing(m.drone_id, m.evidence_id, m.chunks)
        if have == m.chunks:  # everything staged before (e.g. the store was down): finish now
            self._finalize(frame, m)
            return
        self._receipt(m.drone_id, m.evidence_id, ReceiptState.RECEIVING, have)
        frame.ack()

    def _begin(self, m: EvidenceManifest, payload: bytes) -> bool:
        try:
            self.staging.begin(m.drone_id, m.evidence_id, payload)
        except OSError as exc:
            log.error("cannot stage a manifest: %s", exc, extra={"drone_id": m.drone_id})
            return False
        return True

    def _on_chunk(self, frame: Frame, c: EvidenceChunk) -> None:
        if self.staging.outcome(c.drone_id, c.evidence_id) is not None:
            self.counts["duplicates"] += 1  # a late copy of a finished upload's chunk
            frame.ack()
            return
        raw = self.staging.manifest(c.drone_id, c.evidence_id)
        if raw is None:
            self._dead(frame, UNKNOWN, f"chunk {c.index} of evidence {c.evidence_id}, for which "
                       "no upload is in progress", c.drone_id)
            return
        m = protocol.decode_evidence(raw, protocol.evidence_topic(c.drone_id))
        assert isinstance(m, EvidenceManifest)  # we staged it after decoding it
        if not self.staging.fits(m, c.index, len(c.data)):
            self._reject(frame, c.drone_id, c.evidence_id, CHUNK_OUT_OF_RANGE,
                         f"chunk {c.index} of {len(c.data)} bytes does not fit the declared "
                         f"{m.size} bytes in chunks of {m.chunk_size}")
            return
        try:
            fresh = self.staging.put_chunk(c.drone_id, c.evidence_id, c.index, c.data)
        except OSError as exc:
            log.error("cannot stage a chunk: %s", exc, extra={"drone_id": c.drone_id})
            self._receipt(c.drone_id, c.evidence_id, ReceiptState.BUSY, reason="staging_full")
            frame.ack()  # not staged: the drone resends it after BUSY, from its manifest
            return
        self.counts["chunks"] += 1
        self.counts["chunk_bytes"] += len(c.data)
        if fresh and self.staging.next_missing(c.drone_id, c.evidence_id, m.chunks) == m.chunks:
            self._finalize(frame, m)
            return
        frame.ack()

    # -- completion ------------------------------------------------------------------------------

    def _finalize(self, frame: Frame, m: EvidenceManifest) -> None:
        with self.staging.locked(m.drone_id, m.evidence_id):
            if self._answer_finished(m.drone_id, m.evidence_id):  # another gateway finished it
                frame.ack()
                return
            age = self.staging.storing_age(m.drone_id, m.evidence_id)
            if age is not None and age < STORING_GRACE_S:
                frame.ack()  # its record is on its way (here or at another gateway): STORED follows
                return
            path, digest, size = self.staging.assemble(m)
            if digest != m.sha256 or size != m.size:
                path.unlink(missing_ok=True)
                self._reject(frame, m.drone_id, m.evidence_id, HASH_MISMATCH,
                             f"the chunks hash to {digest} ({size} bytes), the manifest "
                             f"declares {m.sha256} ({m.size} bytes)")
                return
            try:
                uri = self.store.put_file(m.sha256, path, m.content_type)
            except StoreUnavailable as exc:
                path.unlink(missing_ok=True)
                self.counts["store_failures"] += 1
                self._busy_until = time.monotonic() + self.cfg.busy_retry_s
                log.error("evidence store unavailable; upload kept staged: %s", exc,
                          extra={"drone_id": m.drone_id, "evidence_id": m.evidence_id})
                self._receipt(m.drone_id, m.evidence_id, ReceiptState.BUSY, reason="store_down")
                frame.ack()  # the chunk is staged; completion is retried on the next manifest
                return
            self.staging.mark_storing(m.drone_id, m.evidence_id)
        # The staged manifest (verified when it was staged) is the one the record carries.
        raw = self.staging.manifest(m.drone_id, m.evidence_id)
        staged = _decoded(raw, frame.topic) if raw is not None else None
        record = evidence_record(staged or m, uri, _now_ms(), self.gateway_id, self._topics[0],
                                 raw if staged is not None else None)
        self._submit(record, lambda error: self._stored(frame, m, uri, error))

    def _stored(self, frame: Frame, m: EvidenceManifest, uri: str, error: object | None) -> None:
        """Kafka's answer for the evidence record (on a Kafka thread)."""
        if error is not None:
            log.error("evidence record refused by Kafka: %s; the upload stays staged", error,
                      extra={"drone_id": m.drone_id, "evidence_id": m.evidence_id})
            return  # unacknowledged: redelivered later, or finished on the next manifest
        self.staging.finish(m.drone_id, m.evidence_id,
                            {"state": "stored", "sha256": m.sha256, "uri": uri})
        self.counts["stored"] += 1
        self.counts["stored_bytes"] += m.size
        self._receipt(m.drone_id, m.evidence_id, ReceiptState.STORED, m.chunks)
        frame.ack()

    def _answer_finished(self, drone: str, ident: str) -> bool:
        outcome = self.staging.outcome(drone, ident)
        if outcome is None:
            return False
        if outcome["state"] == "stored":
            self._receipt(drone, ident, ReceiptState.STORED)
        else:
            self._receipt(drone, ident, ReceiptState.REJECTED, reason=outcome.get("reason"))
        return True

    def _busy(self) -> bool:
        if time.monotonic() < self._busy_until:
            self.counts["busy"] += 1
            return True
        if self.staging.used_bytes >= self.cfg.staging_max_bytes:
            self.counts["busy"] += 1
            return True
        return False

    # -- outputs ---------------------------------------------------------------------------------

    def _reject(self, frame: Frame, drone: str, ident: str, reason: str, detail: str) -> None:
        """Dead-letter the frame; the upload ends REJECTED and nothing of it is stored."""
        self.staging.finish(drone, ident, {"state": "rejected", "reason": reason})
        self._receipt(drone, ident, ReceiptState.REJECTED, reason=reason)
        self._dead(frame, reason, detail, drone)

    def _dead(self, frame: Frame, reason: str, detail: str, drone: str | None,
              path: str | None = None) -> None:
        self.counts["deadletter"] += 1
        log.warning("evidence dead letter: %s: %s", reason, detail, extra={"drone_id": drone})
        record = dead_letter_record(reason, detail, frame.payload, self._topics[1], frame.receipt,
                                    path=path, drone_id=drone, max_bytes=self._dl_max)
        self._submit(record, lambda error: None if error is not None else frame.ack())

    def _receipt(self, drone: str, ident: str, state: ReceiptState, next_index: int = 0,
                 reason: str | None = None) -> None:
        payload = self._encode_receipt(EvidenceReceipt(drone, ident, state, next_index, reason))
        self._publish(protocol.receipt_topic(drone), payload)


def receipt_encoder(cfg: EvidenceConfig) -> Callable[[EvidenceReceipt], bytes]:
    """protocol.encode_evidence, or the back office's receipt signer (`receipt_key_file`,
    checked when the config was loaded)."""
    if not cfg.receipt_key_file:
        return protocol.encode_evidence
    return Signer.from_file(Path(cfg.receipt_key_file)).encode_receipt


def _decoded(raw: bytes, topic: str) -> EvidenceManifest | None:
    """A staged manifest (None if the bytes are not one: staging is a shared directory)."""
    try:
        m = protocol.decode_evidence(raw, topic)
    except protocol.ProtocolError:
        return None
    return m if isinstance(m, EvidenceManifest) else None


def _unsigned(m: EvidenceManifest | None) -> EvidenceManifest | None:
    """The manifest's fields without its signature: a resume signed anew (e.g. after a key
    rotation) is still the same upload."""
    return None if m is None else dataclasses.replace(m, key_id=None, signature=None)


def _drone_of(topic: str) -> str | None:
    try:
        return protocol.parse_evidence_topic(topic)[0]
    except protocol.ProtocolError:
        return None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
