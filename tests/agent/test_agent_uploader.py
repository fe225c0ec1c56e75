"""The uploader's decisions (drone_agent/uploader.py) with a recording stand-in for paho's client:
policy, events first, resume from the receipt, resend accounting, confirmation deletes, a durable
queue. Delivery through the real brokers is tests/gateway/test_evidence_system.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import protocol
from drone_agent.evidence import EvidenceStore
from drone_agent.uploader import Uploader
from protocol import EvidenceChunk, EvidenceManifest, EvidenceReceipt, ReceiptState

DRONE = "up-1"


class Info:
    def __init__(self, mid: int) -> None:
        self.rc, self.mid = 0, mid


class Client:
    """Records publishes; `puback()` acknowledges everything outstanding."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.subscribed: list[str] = []
        self._mids: list[int] = []

    def publish(self, topic: str, payload: bytes, qos: int) -> Info:
        self.sent.append(protocol.decode_evidence(payload, topic))
        self._mids.append(len(self.sent))
        return Info(len(self.sent))

    def subscribe(self, topic: str, qos: int) -> None:
        self.subscribed.append(topic)

    def puback(self, up: Uploader) -> None:
        for mid in self._mids:
            up.on_publish(mid, None)
        self._mids = []

    def chunks(self) -> list[int]:
        return [f.index for f in self.sent if isinstance(f, EvidenceChunk)]


def make(tmp_path: Path, **kw: Any) -> tuple[Uploader, EvidenceStore]:
    store = EvidenceStore(tmp_path / "evidence", quota_bytes=10**8)
    up = Uploader(tmp_path / "uploads.sqlite3", DRONE, file_for=store.path, delete=store.remove,
                  chunk_size=1024, **kw)
    return up, store


def receipt(up: Uploader, ident: str, state: ReceiptState, next_index: int = 0) -> None:
    topic = protocol.receipt_topic(DRONE)
    up.on_receipt(protocol.encode_evidence(EvidenceReceipt(DRONE, ident, state, next_index)),
                  topic)


def add(up: Uploader, store: EvidenceStore, size: int = 4000) -> str:
    data = os.urandom(size)
    ident = store.put(data)
    assert up.enqueue(ident, 7, data)
    return ident


@pytest.mark.parametrize("policy, qualified, unqualified", [
    ("all", True, True), ("unqualified", False, True), ("none", False, False)])
def test_policy(tmp_path: Path, policy: Any, qualified: bool, unqualified: bool) -> None:
    up, _ = make(tmp_path, policy=policy)
    assert (up.wanted(True), up.wanted(False)) == (qualified, unqualified)


def test_events_first_resume_from_the_receipt_and_delete_on_stored(tmp_path: Path) -> None:
    up, store = make(tmp_path)
    ident = add(up, store)
    client = Client()
    up.on_connect(client)
    assert client.subscribed == [protocol.receipt_topic(DRONE)]
    up.fill(client, events_idle=True)
    assert isinstance(client.sent[0], EvidenceManifest) and client.sent[0].chunks == 4
    receipt(up, ident, ReceiptState.RECEIVING, 1)  # the gateway holds chunk 0 already
    client.puback(up)
    up.fill(client, events_idle=False)  # an event waits: no image bytes
    assert client.chunks() == []
    for _ in range(3):
        up.fill(client, events_idle=True)
        client.puback(up)
    assert client.chunks() == [1, 2, 3]  # from where the gateway stands, window of 2
    assert store.path(ident).exists() and up.unconfirmed() == {ident}
    receipt(up, ident, ReceiptState.STORED)
    assert not store.path(ident).exists() and up.unconfirmed() == set()
    assert up.stats()["uploads_confirmed"] == 1 and up.stats()["upload_resent_bytes"] == 0


def test_a_reconnect_asks_again_and_counts_what_is_sent_twice(tmp_path: Path) -> None:
    up, store = make(tmp_path)
    ident = add(up, store)
    client = Client()
    up.fill(client, events_idle=True)
    receipt(up, ident, ReceiptState.RECEIVING, 0)
    client.puback(up)
    up.fill(client, events_idle=True)  # chunks 0 and 1 on the air, then the link drops
    up.on_connect(client)
    up.fill(client, events_idle=True)
    assert isinstance(client.sent[-1], EvidenceManifest)
    receipt(up, ident, ReceiptState.RECEIVING, 1)  # only chunk 0 reached the gateway
    up.fill(client, events_idle=True)  # one slot: the manifest awaits its PUBACK
    assert client.chunks() == [0, 1, 1]
    assert up.stats()["upload_resent_bytes"] == 1024


def test_the_queue_survives_a_restart_and_rejected_files_stay(tmp_path: Path) -> None:
    up, store = make(tmp_path)
    first, second = add(up, store), add(up, store)
    up.close()
    again, store = make(tmp_path)
    assert again.unconfirmed() == {first, second}
    receipt(again, first, ReceiptState.REJECTED)
    assert store.path(first).exists() and again.unconfirmed() == {second}
    assert again.stats()["uploads_rejected"] == 1


def test_an_image_confirmed_before_is_not_uploaded_again(tmp_path: Path) -> None:
    up, store = make(tmp_path)
    data = os.urandom(3000)
    ident = store.put(data)
    up.enqueue(ident, 1, data)
    receipt(up, ident, ReceiptState.STORED)
    assert store.put(data) == ident  # the same frame again, later
    assert not up.enqueue(ident, 2, data)
    assert not store.path(ident).exists()


def test_busy_pauses_uploads(tmp_path: Path) -> None:
    up, store = make(tmp_path)
    ident = add(up, store)
    client = Client()
    up.fill(client, events_idle=True)
    receipt(up, ident, ReceiptState.BUSY)
    client.puback(up)
    up.fill(client, events_idle=True)
    assert len(client.sent) == 1 and up.stats()["upload_busy"] == 1  # nothing until the pause ends
