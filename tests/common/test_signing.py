"""common.signing: key files, the drone's signer and the verifiers' key registry (real Ed25519),
the back office's receipt key (`presacop keys gen --backoffice`), and the reserved drone ids of
common.accounts."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest

import protocol
from common.accounts import check_drone_id, reserved_drone_id
from common.signing import (
    INVALID,
    UNKNOWN_KEY,
    UNSIGNED,
    KeyFileError,
    KeyRegistry,
    ReceiptKeys,
    Signer,
    generate_key,
    private_key_error,
    verify,
)

HEADER = protocol.Header("drone-a", 42, 1_748_779_200_120, protocol.TimeSource.GPS)
VIO = protocol.Violation(HEADER, protocol.Position(40.7, -73.9, 10), "ABC1234", "NY", 0.9, 21,
                         "0123456789abcdef")
TOPIC_A = protocol.topic("drone-a", protocol.Kind.VIOLATION)
TOPIC_B = protocol.topic("drone-b", protocol.Kind.VIOLATION)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def check(registry: KeyRegistry, topic: str, payload: bytes) -> str | None:
    msg = protocol.decode(payload, topic)
    assert isinstance(msg, protocol.Violation)
    return registry.check(topic, payload, msg)


def test_keys_gen_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    first, second = generate_key(tmp_path, "drone-a"), generate_key(tmp_path, "drone-a")
    assert (first.key_id, second.key_id) == (0, 1)  # rotation: the next free id
    for files in (first, second):
        assert stat.S_IMODE(files.private.stat().st_mode) == 0o600
        assert files.public.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    first.public.unlink()
    first.private.unlink()
    assert generate_key(tmp_path, "drone-a").key_id == 0  # a freed id is reused


@pytest.mark.parametrize("drone_id", ["presacop-gateway", "PresaCop-x", "a/b", "", "x" * 33])
def test_keys_gen_refuses_reserved_and_invalid_drone_ids(tmp_path: Path, drone_id: str) -> None:
    with pytest.raises(KeyFileError):
        generate_key(tmp_path, drone_id)


def test_reserved_names_are_never_drone_ids() -> None:
    assert reserved_drone_id("presacop-gateway") and reserved_drone_id("PRESACOP")
    assert not reserved_drone_id("drone-presacop")
    assert check_drone_id("presacop-console") is not None and check_drone_id("nyc-1") is None


def test_a_signed_violation_verifies_and_forgeries_do_not(tmp_path: Path) -> None:
    a = generate_key(tmp_path, "drone-a")
    b = generate_key(tmp_path, "drone-b")
    registry = KeyRegistry(tmp_path)
    payload = Signer.from_file(a.private).encode(VIO)
    assert check(registry, TOPIC_A, payload) is None
    # Replayed on drone B's topic (B's broker password, or a drone B that copies A's messages).
    assert check(registry, TOPIC_B, payload) in (INVALID, UNKNOWN_KEY)
    # Re-signed: drone B's key signs a message for drone A's topic, claiming A's key id.
    resigned = Signer.from_file(b.private).encode(VIO)
    assert check(registry, TOPIC_A, resigned) == INVALID
    # Forged: any field changed after signing.
    forged = payload.replace(b"ABC1234", b"XBC1234")
    assert check(registry, TOPIC_A, forged) == INVALID
    # A key id the drone does not have.
    other = Signer.from_file(a.private)
    other.key_id = 9
    assert check(registry, TOPIC_A, other.encode(VIO)) == UNKNOWN_KEY
    assert check(registry, TOPIC_A, protocol.encode(VIO)) == UNSIGNED


def test_keys_are_added_and_revoked_without_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    registry = KeyRegistry(tmp_path, reload_s=5.0, clock=clock)
    old = generate_key(tmp_path, "drone-a")
    old_payload = Signer.from_file(old.private).encode(VIO)
    assert check(registry, TOPIC_A, old_payload) is None
    new = generate_key(tmp_path, "drone-a")  # rotation: both keys active
    new_payload = Signer.from_file(new.private).encode(dataclasses.replace(
        VIO, header=dataclasses.replace(HEADER, seq=43)))
    clock.now += 0.5
    assert check(registry, TOPIC_A, new_payload) == UNKNOWN_KEY  # unknown: reread at most 1/s
    clock.now += 0.6
    assert check(registry, TOPIC_A, new_payload) is None  # ... and found
    assert check(registry, TOPIC_A, old_payload) is None
    old.public.unlink()  # revoked
    assert check(registry, TOPIC_A, old_payload) is None  # until the reload interval passes
    clock.now += 5.0
    assert check(registry, TOPIC_A, old_payload) == UNKNOWN_KEY
    assert check(registry, TOPIC_A, new_payload) is None


def test_unreadable_key_files_are_errors_not_crashes(tmp_path: Path) -> None:
    (tmp_path / "drone-a").mkdir()
    (tmp_path / "drone-a" / "0.pub").write_text("not a key")
    registry = KeyRegistry(tmp_path)
    assert registry.keys("drone-a") == {} and registry.load_errors == 1
    with pytest.raises(KeyFileError):
        Signer.from_file(tmp_path / "drone-a" / "0.pub")
    with pytest.raises(KeyFileError):
        Signer.from_file(tmp_path / "missing" / "0.key")


def test_verify_is_false_for_a_payload_without_a_signature_field(tmp_path: Path) -> None:
    files = generate_key(tmp_path, "drone-a")
    key = KeyRegistry(tmp_path).keys("drone-a")[files.key_id]
    assert not verify(key, TOPIC_A, protocol.encode(VIO), bytes(64))


def test_keys_gen_backoffice_writes_the_receipt_key_pair(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    import argparse

    from presacop import keys as keys_cli

    parser = argparse.ArgumentParser()
    keys_cli.add_arguments(parser)
    out = tmp_path / "bo"
    for _ in range(2):  # a second key for a rotation gets the next id
        assert keys_cli.run(parser.parse_args(["gen", "--backoffice", "--out", str(out)])) == 0
    assert sorted(p.name for p in out.iterdir()) == ["0.key", "0.pub", "1.key", "1.pub"]
    assert stat.S_IMODE((out / "1.key").stat().st_mode) == 0o600
    assert "evidence.receipt_key_file" in capsys.readouterr().out
    receipt = protocol.EvidenceReceipt("drone-a", "0123456789abcdef",
                                       protocol.ReceiptState.STORED, 3)
    payload = Signer.from_file(out / "1.key").encode_receipt(receipt)
    topic = protocol.receipt_topic("drone-a")
    signed = protocol.decode_evidence(payload, topic)
    assert isinstance(signed, protocol.EvidenceReceipt) and signed.key_id == 1
    with pytest.raises(KeyFileError, match=r"private key 0\.key"):  # never on a drone
        ReceiptKeys.from_dir(out)
    drone = tmp_path / "drone"
    drone.mkdir()
    for name in ("0.pub", "1.pub"):
        (drone / name).write_bytes((out / name).read_bytes())
    assert ReceiptKeys.from_dir(drone).check(topic, payload, signed) is None
    with pytest.raises(SystemExit):  # --drone and --backoffice exclude each other
        parser.parse_args(["gen", "--backoffice", "--drone", "d-1"])
    (out / "1.key").chmod(0o640)
    assert "must be 0600" in (private_key_error(out / "1.key") or "")
    assert private_key_error(out / "0.key") is None
