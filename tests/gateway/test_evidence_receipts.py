"""Signed evidence receipts at the gateway (`evidence.receipt_key_file`, docs/protocol.md 14.4).

The config check first (the key must exist, be `<key_id>.key`, 0600 and load: errors name the
key), then the intake's receipts in every state verify against the back office's public key.
Then the real parts: a drone (the agent's real Uploader and Publisher) holding the public key
uploads through Mosquitto to a gateway signing its receipts: confirmed and deleted; a STORED
receipt forged by another broker client (unsigned, unknown key, bit-flipped) deletes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gateway_testlib import Publisher, topic_names, unique

import protocol
from common.config import ConfigError
from common.signing import ReceiptKeys, Signer, generate_backoffice_key, load_public
from gateway.config import load_config
from gateway.evidence.config import EvidenceConfig
from gateway.evidence.intake import EvidenceIntake
from presacop.stack import Stack
from protocol import EvidenceReceipt, ReceiptState
from tests.gateway.test_evidence_intake import (
    FlakyStore,
    Recorder,
    chunks,
    feed,
    image,
    manifest_of,
)
from tests.gateway.test_evidence_system import evidence_section
from tests.support import wait_until


def _load(tmp_path: Path, key: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[evidence]\nreceipt_key_file = "{key}"\n')
    load_config(config)


def test_the_receipt_key_is_checked_when_the_config_loads(tmp_path: Path) -> None:
    files = generate_backoffice_key(tmp_path / "bo")
    _load(tmp_path, files.private)  # 0600, <key_id>.key, an Ed25519 key: fine
    loose = tmp_path / "loose" / "0.key"
    loose.parent.mkdir()
    loose.write_bytes(files.private.read_bytes())
    loose.chmod(0o644)
    renamed = tmp_path / "receipt.key"
    renamed.write_bytes(files.private.read_bytes())
    renamed.chmod(0o600)
    garbage = tmp_path / "g" / "1.key"
    garbage.parent.mkdir()
    garbage.write_text("not a key")
    garbage.chmod(0o600)
    for key, why in ((loose, "mode 0644: a private key must be 0600"),
                     (renamed, "must be <key_id>.key"),
                     (garbage, "cannot read a private key"),
                     (tmp_path / "none" / "0.key", "No such file"),
                     (files.public, "must be <key_id>.key")):
        with pytest.raises(ConfigError) as info:
            _load(tmp_path, key)
        assert info.value.key == "evidence.receipt_key_file", key
        assert why in info.value.reason and str(key) in info.value.reason, info.value.reason


class RawRecorder(Recorder):
    """Keeps the receipts' payloads as published, to check their signatures."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes) -> None:
        self.raw.append((topic, payload))
        super().publish(topic, payload)


def test_every_receipt_the_intake_sends_is_signed_by_the_back_office(tmp_path: Path) -> None:
    files = generate_backoffice_key(tmp_path / "bo")
    cfg = EvidenceConfig(staging_dir=str(tmp_path / "staging"), busy_retry_s=0.01,
                         receipt_key_file=str(files.private))
    rec, store = RawRecorder(), FlakyStore(tmp_path / "store")
    intake = EvidenceIntake(cfg, store, gateway_id="gw-test", evidence_topic="presacop.evidence",
                            deadletter_topic="presacop.deadletter", submit=rec.submit,
                            publish=rec.publish)
    stored, mismatch, busy = (image() for _ in range(3))
    for data, sent in ((stored, stored), (mismatch, image(len(mismatch))), (busy, busy)):
        m = manifest_of(data)
        store.down = data is busy
        feed(intake, rec, m)
        for c in chunks(m, sent):
            feed(intake, rec, c)
    keys = ReceiptKeys({files.key_id: load_public(files.public)})
    for topic, payload in rec.raw:
        r = protocol.decode_evidence(payload, topic)
        assert isinstance(r, EvidenceReceipt) and r.key_id == files.key_id
        assert keys.check(topic, payload, r) is None, r
    assert [r.state.name for r in rec.receipts] == [
        "RECEIVING", "STORED", "RECEIVING", "REJECTED", "RECEIVING", "BUSY"]


# -- the real parts ------------------------------------------------------------------------------


def test_signed_receipts_confirm_uploads_and_a_forged_stored_is_ignored(
        tmp_path: Path, stack: Stack, gateway_factory: Any) -> None:
    from tests.gateway.evidence_drone import Drone

    drone, prefix = unique("rc-"), unique("rc")
    files = generate_backoffice_key(tmp_path / "backoffice-keys")
    topics = {**topic_names(prefix), "evidence": f"{prefix}.evidence"}
    extra = evidence_section(tmp_path).replace(
        "[evidence.store]", f'receipt_key_file = "{files.private}"\n[evidence.store]')
    gw = gateway_factory(stack.mqtt_port, stack.kafka_bootstrap, topics, drone=drone,
                         extra=extra).start()
    gw.wait_ready()
    keys = ReceiptKeys({files.key_id: load_public(files.public)})  # the drone's: no .key
    with Drone(tmp_path, drone, stack.mqtt_port, check_receipt=keys.check) as d:
        assert d.uploader is not None
        first, first_path = d.add_image(os.urandom(5000))
        d.start()
        # Deleted on a receipt the back office signed (the unlink follows the state's commit).
        wait_until(lambda: d.state(first) == "confirmed" and not first_path.exists(), 120,
                   "the first upload confirmed and deleted")
        assert d.uploader.stats()["receipts_bad_signature"] == 0
        assert gw.terminate() == 0  # no gateway: only a forger can answer now
        second, second_path = d.add_image(os.urandom(5000))
        wait_until(lambda: d.uploader.stats()["upload_announces"] >= 2, 30,
                   "the second upload announced")
        stored = EvidenceReceipt(drone, second, ReceiptState.STORED, 5)
        genuine_format = Signer(Ed25519PrivateKey.generate(), files.key_id)
        flipped = bytearray(Signer.from_file(files.private).encode_receipt(stored))
        flipped[-1] ^= 0x01
        forger = Publisher("127.0.0.1", stack.mqtt_port)  # another client of the broker
        try:
            for payload in (protocol.encode_evidence(stored),
                            Signer(Ed25519PrivateKey.generate(), 9).encode_receipt(stored),
                            genuine_format.encode_receipt(stored), bytes(flipped)):
                forger.publish(protocol.receipt_topic(drone), payload)
            forger.flush()
        finally:
            forger.close()
        wait_until(lambda: d.uploader.stats()["receipts_bad_signature"] >= 4, 60,
                   "the four forged receipts counted")
        assert d.uploader.stats()["receipts_bad_signature"] == 4
        assert second_path.exists() and d.state(second) == "queued"  # nothing deleted
        gw.start()
        gw.wait_ready()
        wait_until(lambda: d.state(second) == "confirmed" and not second_path.exists(), 120,
                   "the second upload confirmed by the real gateway and deleted")
        assert d.uploader.stats()["receipts_bad_signature"] == 4
