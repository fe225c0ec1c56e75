"""Signed evidence receipts on the drone (drone_agent/uploader.py `check_receipt`, the back
office's keys from `evidence.receipt_keys_dir`): a STORED receipt that is unsigned, signed by an
unknown key or whose signature does not verify deletes nothing and is counted; a good one deletes
the file. Without keys, every receipt is believed (the weaker mode, as before). Through the real
broker and gateway: tests/gateway/test_evidence_receipts.py."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import protocol
from common.signing import KeyFileError, ReceiptKeys, Signer, generate_backoffice_key
from drone_agent.encoders import upload_options
from protocol import EvidenceReceipt, ReceiptState
from tests.agent.agent_helpers import make_config
from tests.agent.test_agent_uploader import DRONE, Client, add, make

TOPIC = protocol.receipt_topic(DRONE)


def new_key(tmp_path: Path) -> Signer:
    """A new back-office receipt key; its .pub installed in the drone's directory."""
    files = generate_backoffice_key(tmp_path / "backoffice-keys")
    (tmp_path / "receipt-keys").mkdir(exist_ok=True)
    shutil.copy(files.public, tmp_path / "receipt-keys")
    return Signer.from_file(files.private)


@pytest.fixture
def backoffice(tmp_path: Path) -> tuple[Path, Signer]:
    """The drone's receipt key directory (0.pub only) and the back office's signer."""
    return tmp_path / "receipt-keys", new_key(tmp_path)


def forgeries(good: Signer, receipt: EvidenceReceipt) -> dict[str, bytes]:
    """A STORED receipt as whoever holds the broker account could make it."""
    flipped = bytearray(good.encode_receipt(receipt))
    flipped[-1] ^= 0x01  # one bit of the signature
    other = Signer(Ed25519PrivateKey.generate(), good.key_id)  # the right key id, another key
    return {"unsigned": protocol.encode_evidence(receipt),
            "unknown key": Signer(Ed25519PrivateKey.generate(), 9).encode_receipt(receipt),
            "bit-flipped signature": bytes(flipped),
            "another key under the same id": other.encode_receipt(receipt)}


def test_a_forged_stored_receipt_deletes_nothing_and_is_counted(
        tmp_path: Path, backoffice: tuple[Path, Signer],
        caplog: pytest.LogCaptureFixture) -> None:
    directory, signer = backoffice
    up, store = make(tmp_path, check_receipt=ReceiptKeys.from_dir(directory).check)
    ident = add(up, store)
    client = Client()
    up.on_connect(client)
    up.fill(client, events_idle=True)  # the manifest is out, the upload awaits its answer
    stored = EvidenceReceipt(DRONE, ident, ReceiptState.STORED, 4)
    with caplog.at_level(logging.ERROR, "drone_agent.uploader"):
        for name, payload in forgeries(signer, stored).items():
            up.on_receipt(payload, TOPIC)
            assert store.path(ident).exists(), name
            assert up.unconfirmed() == {ident}, name
    assert up.stats()["receipts_bad_signature"] == 4
    assert up.stats()["uploads_confirmed"] == 0
    assert len(caplog.records) == 1  # logged once, not once per forgery
    assert "unsigned" in caplog.records[0].getMessage()
    # Forged REJECTED and BUSY do not end or pause the upload either.
    for state in (ReceiptState.REJECTED, ReceiptState.BUSY):
        up.on_receipt(protocol.encode_evidence(EvidenceReceipt(DRONE, ident, state, 0, "x")),
                      TOPIC)
    assert up.stats()["upload_busy"] == 0 and up.stats()["uploads_rejected"] == 0
    up.on_receipt(signer.encode_receipt(EvidenceReceipt(DRONE, ident, ReceiptState.RECEIVING, 0)),
                  TOPIC)
    client.puback(up)
    up.fill(client, events_idle=True)
    assert client.chunks() == [0, 1]  # a signed RECEIVING moves the upload on
    up.on_receipt(signer.encode_receipt(stored), TOPIC)
    assert not store.path(ident).exists() and up.unconfirmed() == set()
    assert up.stats()["uploads_confirmed"] == 1 and up.stats()["receipts_bad_signature"] == 6


def test_the_same_signed_receipt_for_another_drone_is_refused(
        tmp_path: Path, backoffice: tuple[Path, Signer]) -> None:
    directory, signer = backoffice
    up, store = make(tmp_path, check_receipt=ReceiptKeys.from_dir(directory).check)
    ident = add(up, store)
    theirs = signer.encode_receipt(EvidenceReceipt("up-2", ident, ReceiptState.STORED, 4))
    up.on_receipt(theirs, TOPIC)  # replayed on this drone's topic: the topic is signed
    assert store.path(ident).exists() and up.stats()["receipts_bad_signature"] == 1


def test_a_malformed_signature_deletes_nothing(tmp_path: Path,
                                              backoffice: tuple[Path, Signer]) -> None:
    directory, signer = backoffice
    up, store = make(tmp_path, check_receipt=ReceiptKeys.from_dir(directory).check)
    ident = add(up, store)
    good = signer.encode_receipt(EvidenceReceipt(DRONE, ident, ReceiptState.STORED, 4))
    for payload, code in ((good[:-1], "truncated"),  # 63 bytes under a 64-byte header
                          (good[:-66] + b"\xc4\x3f" + good[-64:-1], "bad_type"),  # bin 63
                          (good[:-66] + b"\xc0", "missing_field"),  # key id, nil signature
                          (b"\x99" + good[1:] + b"\x00", "extra_field"),  # 9 elements at 1.1
                          (good + b"\x00", "trailing_bytes")):
        with pytest.raises(protocol.RemoteProtocolError) as info:
            protocol.decode_evidence(payload, TOPIC)
        assert info.value.code == code
        up.on_receipt(payload, TOPIC)  # refused by the decoder (logged), never acted on
    assert store.path(ident).exists() and up.unconfirmed() == {ident}


def test_rotation_any_installed_key_is_accepted(tmp_path: Path,
                                                backoffice: tuple[Path, Signer]) -> None:
    directory, old = backoffice
    new = new_key(tmp_path)
    assert new.key_id == 1
    up, store = make(tmp_path, check_receipt=ReceiptKeys.from_dir(directory).check)
    first, second = add(up, store), add(up, store)
    for signer, ident in ((old, first), (new, second)):
        up.on_receipt(signer.encode_receipt(EvidenceReceipt(DRONE, ident, ReceiptState.STORED)),
                      TOPIC)
        assert not store.path(ident).exists()


def test_without_keys_every_receipt_is_believed(tmp_path: Path) -> None:
    up, store = make(tmp_path)  # the weaker mode: no receipt_keys_dir
    ident = add(up, store)
    up.on_receipt(protocol.encode_evidence(EvidenceReceipt(DRONE, ident, ReceiptState.STORED)),
                  TOPIC)
    assert not store.path(ident).exists() and up.stats()["receipts_bad_signature"] == 0


def test_the_config_loads_the_keys_or_names_what_is_wrong(
        tmp_path: Path, backoffice: tuple[Path, Signer]) -> None:
    directory, signer = backoffice
    cfg = make_config(tmp_path / "d", 1883, evidence={"receipt_keys_dir": str(directory)})
    check = upload_options(cfg)["check_receipt"]
    receipt = EvidenceReceipt("drone-t1", "0" * 16, ReceiptState.STORED)
    assert check(protocol.receipt_topic("drone-t1"), signer.encode_receipt(receipt),
                 protocol.decode_evidence(signer.encode_receipt(receipt),
                                          protocol.receipt_topic("drone-t1"))) is None
    assert upload_options(make_config(tmp_path / "d", 1883))["check_receipt"] is None
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "0.pub").write_text("not a key")
    for where, expected in ((tmp_path / "missing", "No such file"), (empty, "no <key_id>.pub"),
                            (bad, "cannot read a public key")):
        cfg = make_config(tmp_path / "d", 1883, evidence={"receipt_keys_dir": str(where)})
        with pytest.raises(KeyFileError, match=r"evidence\.receipt_keys_dir") as info:
            upload_options(cfg)
        assert expected in str(info.value) and str(where) in str(info.value)


def test_a_drone_refuses_to_hold_the_back_offices_private_key(
        tmp_path: Path, backoffice: tuple[Path, Signer]) -> None:
    directory, _ = backoffice
    assert set(ReceiptKeys.from_dir(directory).keys) == {0}
    private = tmp_path / "backoffice-keys" / "0.key"
    assert private.stat().st_mode & 0o777 == 0o600
    shutil.copy(private, directory)  # the whole key directory copied onto the drone
    cfg = make_config(tmp_path / "d", 1883, evidence={"receipt_keys_dir": str(directory)})
    with pytest.raises(KeyFileError, match=r"private key 0\.key"):
        upload_options(cfg)
