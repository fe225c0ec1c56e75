"""Evidence intake logic on a real file system, with Kafka and MQTT replaced by recorders.

Delivery through the real brokers is tests/system/test_evidence_upload.py; here: what the intake
decides for each frame (receipts, dead letters, what is stored and when the ack goes).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

import protocol
from gateway.evidence.config import EvidenceConfig, StoreConfig
from gateway.evidence.intake import EvidenceIntake, Frame
from gateway.evidence.store import DirStore, StoreUnavailable
from gateway.records import OutRecord, Receipt
from protocol import EvidenceChunk, EvidenceManifest, ReceiptState

DRONE = "d-1"
TOPIC = protocol.evidence_topic(DRONE)
CHUNK = 1024


class Recorder:
    """Kafka and MQTT stand-ins: records are 'durable' at once unless `kafka_down`."""

    def __init__(self) -> None:
        self.records: list[OutRecord] = []
        self.receipts: list[protocol.EvidenceReceipt] = []
        self.acked: list[int] = []

    def submit(self, record: OutRecord, done: Any) -> None:
        self.records.append(record)
        done(None)

    def publish(self, topic: str, payload: bytes) -> None:
        receipt = protocol.decode_evidence(payload, topic)
        assert isinstance(receipt, protocol.EvidenceReceipt)
        self.receipts.append(receipt)

    def kinds(self) -> list[str]:
        return [r.kind for r in self.records]

    def reasons(self) -> list[str]:
        return [json.loads(r.value)["reason"] for r in self.records if r.kind == "deadletter"]


class FlakyStore(DirStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.down = False

    def put_file(self, sha256_hex: str, path: Path, content_type: str) -> str:
        if self.down:
            raise StoreUnavailable("down for the test")
        return super().put_file(sha256_hex, path, content_type)


def make_env(tmp_path: Path, **options: Any) -> tuple[EvidenceIntake, Recorder, FlakyStore]:
    """An intake on tmp_path with recorders; `options` go to EvidenceIntake (e.g. a verifier)."""
    rec = Recorder()
    cfg = EvidenceConfig(staging_dir=str(tmp_path / "staging"), busy_retry_s=0.01,
                         store=StoreConfig(path=str(tmp_path / "store")))
    store = FlakyStore(tmp_path / "store")
    intake = EvidenceIntake(cfg, store, gateway_id="gw-test", evidence_topic="presacop.evidence",
                            deadletter_topic="presacop.deadletter", submit=rec.submit,
                            publish=rec.publish, **options)
    return intake, rec, store


@pytest.fixture
def env(tmp_path: Path) -> tuple[EvidenceIntake, Recorder, FlakyStore]:
    return make_env(tmp_path)


def image(size: int = 3 * CHUNK + 100) -> bytes:
    return os.urandom(size)


def manifest_of(data: bytes, seq: int = 7) -> EvidenceManifest:
    sha = hashlib.sha256(data).hexdigest()
    return EvidenceManifest(DRONE, sha[:16], sha, len(data), CHUNK, "image/jpeg", seq)


def feed(intake: EvidenceIntake, rec: Recorder, frame: Any, n: int = 0) -> None:
    payload = frame if isinstance(frame, bytes) else protocol.encode_evidence(frame)
    intake._handle(Frame(TOPIC, payload, Receipt(TOPIC, 1, "gw-test"),
                         lambda: rec.acked.append(n)))


def chunks(m: EvidenceManifest, data: bytes) -> list[EvidenceChunk]:
    out = []
    for i in range(m.chunks):
        offset, length = protocol.chunk_span(m, i)
        out.append(EvidenceChunk(DRONE, m.evidence_id, i, data[offset:offset + length]))
    return out


def test_upload_stores_verifies_records_then_confirms(env: Any) -> None:
    intake, rec, store = env
    data = image()
    m = manifest_of(data)
    feed(intake, rec, m, 0)
    assert rec.receipts[-1].state is ReceiptState.RECEIVING and rec.receipts[-1].next_index == 0
    for n, c in enumerate(chunks(m, data), 1):
        feed(intake, rec, c, n)
    assert store.get(m.sha256) == data
    assert rec.kinds() == ["evidence"]
    value = json.loads(rec.records[0].value)
    assert value["violation_message_id"] == f"{DRONE}:7" and value["size"] == len(data)
    assert value["uri"] == store.uri(m.sha256) and value["sha256"] == m.sha256
    assert rec.receipts[-1].state is ReceiptState.STORED
    assert rec.acked == [0, 1, 2, 3, 4]
    assert not intake.staging.upload_dir(DRONE, m.evidence_id).exists()  # chunks cleaned up
    feed(intake, rec, m, 5)  # a manifest re-sent after the receipt was lost: same answer
    assert rec.receipts[-1].state is ReceiptState.STORED and rec.kinds() == ["evidence"]


def test_resume_reports_the_first_missing_chunk(env: Any) -> None:
    intake, rec, _ = env
    data = image()
    m = manifest_of(data)
    feed(intake, rec, m)
    parts = chunks(m, data)
    feed(intake, rec, parts[0])
    feed(intake, rec, parts[1])
    feed(intake, rec, parts[3])
    feed(intake, rec, m)  # the drone restarted: where do I resume?
    assert rec.receipts[-1].next_index == 2
    feed(intake, rec, parts[1])  # a redelivery changes nothing
    feed(intake, rec, parts[2])
    assert rec.receipts[-1].state is ReceiptState.STORED


def test_bit_flip_is_dead_lettered_and_nothing_stored(env: Any) -> None:
    intake, rec, store = env
    data = image()
    m = manifest_of(data)
    feed(intake, rec, m)
    parts = chunks(m, data)
    flipped = bytearray(parts[1].data)
    flipped[10] ^= 0x04
    parts[1] = EvidenceChunk(DRONE, m.evidence_id, 1, bytes(flipped))
    for c in parts:
        feed(intake, rec, c)
    assert rec.reasons() == ["evidence_hash_mismatch"] and "evidence" not in rec.kinds()
    assert not store.exists(m.sha256) and list(store.objects()) == []
    assert rec.receipts[-1].state is ReceiptState.REJECTED
    assert rec.receipts[-1].reason == "evidence_hash_mismatch"


@pytest.mark.parametrize("index, size, reason", [
    (4, 10, "evidence_chunk_out_of_range"),   # past the declared size
    (1, CHUNK + 1, "evidence_chunk_out_of_range"),  # longer than its slot
    (3, 99, "evidence_chunk_out_of_range"),   # the last chunk, one byte short
])
def test_chunk_that_does_not_fit_is_dead_lettered(env: Any, index: int, size: int,
                                                  reason: str) -> None:
    intake, rec, _ = env
    m = manifest_of(image())
    feed(intake, rec, m)
    feed(intake, rec, EvidenceChunk(DRONE, m.evidence_id, index, b"x" * size))
    assert rec.reasons() == [reason]
    assert rec.receipts[-1].state is ReceiptState.REJECTED


def test_manifest_changed_mid_upload_is_dead_lettered(env: Any) -> None:
    intake, rec, _ = env
    data = image()
    m = manifest_of(data)
    feed(intake, rec, m)
    feed(intake, rec, manifest_of(data, seq=8))
    assert rec.reasons() == ["evidence_manifest_changed"]
    assert rec.receipts[-1].state is ReceiptState.REJECTED


def test_chunk_of_an_unknown_upload_is_dead_lettered(env: Any) -> None:
    intake, rec, _ = env
    feed(intake, rec, EvidenceChunk(DRONE, "00" * 8, 0, b"x" * 10), 1)
    assert rec.reasons() == ["evidence_unknown"] and rec.acked == [1]


def test_undecodable_frame_is_dead_lettered_with_the_protocol_code(env: Any) -> None:
    intake, rec, _ = env
    feed(intake, rec, b"\x93\x10\x01\x02", 1)
    assert rec.reasons() == ["out_of_range"] and rec.acked == [1]


def test_store_down_answers_busy_keeps_chunks_and_finishes_later(env: Any) -> None:
    intake, rec, store = env
    data = image()
    m = manifest_of(data)
    feed(intake, rec, m)
    store.down = True
    for c in chunks(m, data):
        feed(intake, rec, c)
    assert rec.receipts[-1].state is ReceiptState.BUSY and rec.kinds() == []
    assert intake.staging.next_missing(DRONE, m.evidence_id, m.chunks) == m.chunks
    store.down = False
    intake._busy_until = 0.0
    feed(intake, rec, m)  # the drone asks again after its pause
    assert rec.receipts[-1].state is ReceiptState.STORED and store.get(m.sha256) == data


def test_new_upload_while_the_store_is_down_is_told_busy(env: Any) -> None:
    intake, rec, store = env
    first, second = image(), image()
    store.down = True
    m1 = manifest_of(first)
    feed(intake, rec, m1)
    for c in chunks(m1, first):
        feed(intake, rec, c)
    intake._busy_until = float("inf")
    feed(intake, rec, manifest_of(second))
    assert rec.receipts[-1].state is ReceiptState.BUSY
    assert intake.staging.manifest(DRONE, manifest_of(second).evidence_id) is None


def test_unusable_staging_answers_busy_and_acknowledges(tmp_path: Path) -> None:
    rec = Recorder()
    blocker = tmp_path / "staging"
    blocker.write_text("a file where the staging directory should be")
    intake = EvidenceIntake(EvidenceConfig(staging_dir=str(blocker)), DirStore(tmp_path / "s"),
                            gateway_id="gw-test", evidence_topic="presacop.evidence",
                            deadletter_topic="presacop.deadletter", submit=rec.submit,
                            publish=rec.publish)
    feed(intake, rec, manifest_of(image()), 1)
    assert rec.receipts[-1].state is ReceiptState.BUSY and rec.acked == [1]


def test_a_manifest_resent_while_the_record_is_on_its_way_writes_no_second_record(
        env: Any) -> None:
    intake, rec, store = env
    held: list[Any] = []
    intake._submit = lambda record, done: held.append((record, done))  # Kafka is slow
    data = image()
    m = manifest_of(data)
    feed(intake, rec, m)
    for c in chunks(m, data):
        feed(intake, rec, c)
    feed(intake, rec, m, 99)  # the drone's confirm timeout: it asks again
    assert [r.kind for r, _ in held] == ["evidence"] and 99 in rec.acked
    held[0][1](None)  # Kafka acknowledges the one record
    assert rec.receipts[-1].state is ReceiptState.STORED and store.exists(m.sha256)


def test_a_full_queue_sheds_frames_with_busy_and_never_holds_the_intake(tmp_path: Path) -> None:
    """Frames beyond `max_queued` (the thread not started: nothing drains) are acknowledged
    unstaged with a BUSY receipt; a frame that does not decode still queues for its dead letter."""
    rec = Recorder()
    cfg = EvidenceConfig(staging_dir=str(tmp_path / "staging"), max_queued=2,
                         store=StoreConfig(path=str(tmp_path / "store")))
    intake = EvidenceIntake(cfg, DirStore(tmp_path / "store"), gateway_id="gw-test",
                            evidence_topic="presacop.evidence",
                            deadletter_topic="presacop.deadletter", submit=rec.submit,
                            publish=rec.publish)
    data = image()
    m = manifest_of(data)
    frames = [protocol.encode_evidence(f) for f in [m, *chunks(m, data)[:2]]] + [b"\xc1"]
    for n, payload in enumerate(frames):
        intake.offer(Frame(TOPIC, payload, Receipt(TOPIC, 1, "gw-test"),
                           lambda n=n: rec.acked.append(n)))
    assert rec.acked == [2]  # the third frame found two waiting: shed
    assert [(r.state, r.evidence_id) for r in rec.receipts] == [(ReceiptState.BUSY,
                                                                  m.evidence_id)]
    assert intake.counts["shed"] == 1
    assert intake._queue.qsize() == 3  # two queued + the undecodable one, for its dead letter
