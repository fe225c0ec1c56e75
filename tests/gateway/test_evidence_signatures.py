"""Signed evidence manifests (issue 14 on issue 12's uploads).

The intake's decisions first (real file system, Kafka and MQTT replaced by the recorders of
test_evidence_intake.py): forged, unsigned where required, unknown key, re-signed with another
drone's key -> dead letter `bad_signature`, REJECTED, nothing staged; a valid one is stored and
its record carries the signed manifest, which `presacop verify` checks offline. Then one run on
the real parts: an agent process with a key -> Mosquitto -> a gateway requiring signatures ->
store + Kafka, and `presacop verify` over the Kafka topics.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gateway_testlib import Publisher, read_topic, topic_names, unique

import protocol
from backoffice import verify as verify_cli
from backoffice.verify import BAD, UNSIGNED, VERIFIED, verify_evidence_record
from common.signing import KeyRegistry, Signer, generate_key
from gateway.evidence.config import StoreConfig
from gateway.evidence.intake import EvidenceIntake
from gateway.evidence.store import open_store
from presacop.stack import Stack
from protocol import EvidenceManifest, ReceiptState
from tests.gateway.test_evidence_intake import (
    DRONE,
    FlakyStore,
    Recorder,
    chunks,
    feed,
    image,
    make_env,
    manifest_of,
)
from tests.gateway.test_evidence_system import agent_config, evidence_section, start_agent, uploads
from tests.support import wait_until


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Signer, Signer]:
    """A key directory with one key of DRONE and one of another drone."""
    directory = tmp_path / "keys"
    mine, theirs = generate_key(directory, DRONE), generate_key(directory, "d-2")
    return directory, Signer.from_file(mine.private), Signer.from_file(theirs.private)


def make_intake(tmp_path: Path, directory: Path, required: bool
                ) -> tuple[EvidenceIntake, Recorder, FlakyStore, bytes, EvidenceManifest]:
    """An intake checking signatures against `directory`, and an image with its manifest."""
    intake, rec, store = make_env(tmp_path, verifier=KeyRegistry(directory).check,
                                  require_signatures=required)
    data = image()
    return intake, rec, store, data, manifest_of(data)


def dead(rec: Recorder) -> list[tuple[str, str, str]]:
    values = [json.loads(r.value) for r in rec.records if r.kind == "deadletter"]
    return [(v["reason"], v["detail"], v["path"]) for v in values]


def test_bad_manifest_signatures_are_dead_lettered_and_nothing_is_staged(
        tmp_path: Path, keys: tuple[Path, Signer, Signer]) -> None:
    directory, mine, theirs = keys
    intake, rec, store, data, m = make_intake(tmp_path, directory, required=True)
    good = mine.encode_manifest(m)
    size_at = good.index(b"\xcd" + m.size.to_bytes(2, "big")) + 1
    forged = good[:size_at] + bytes([good[size_at] + 1]) + good[size_at + 1:]  # 256 bytes more
    assert protocol.decode_evidence(forged, protocol.evidence_topic(DRONE)).size == m.size + 256
    unknown = Signer(Ed25519PrivateKey.generate(), 9).encode_manifest(m)  # no key 9 on file
    cases = [("forged", forged, "invalid_signature"),
             ("unsigned", protocol.encode_evidence(m), "unsigned"),
             ("unknown key", unknown, "unknown_key"),
             ("re-signed by d-2", theirs.encode_manifest(m), "invalid_signature")]
    for n, (name, payload, why) in enumerate(cases):
        feed(intake, rec, payload, n)
        assert dead(rec)[-1] == ("bad_signature", why, "$.signature"), name
        assert rec.receipts[-1].state is ReceiptState.REJECTED, name
        assert rec.receipts[-1].reason == "bad_signature"
        assert intake.staging.manifest(DRONE, m.evidence_id) is None, name  # nothing staged
        assert intake.staging.outcome(DRONE, m.evidence_id) is None, name  # nor recorded
    assert rec.acked == [0, 1, 2, 3]  # each dead letter durable, then acknowledged
    # The forgeries did not end the drone's own upload of that image.
    feed(intake, rec, good, 10)
    assert rec.receipts[-1].state is ReceiptState.RECEIVING
    for n, c in enumerate(chunks(m, data), 11):
        feed(intake, rec, c, n)
    assert rec.receipts[-1].state is ReceiptState.STORED and store.get(m.sha256) == data


def test_a_stored_signed_manifest_is_verifiable_from_its_record(
        tmp_path: Path, keys: tuple[Path, Signer, Signer]) -> None:
    directory, mine, _ = keys
    intake, rec, store, data, m = make_intake(tmp_path, directory, required=True)
    m = dataclasses.replace(m, violation_seq=42)
    payload = mine.encode_manifest(m)
    feed(intake, rec, payload)
    for c in chunks(m, data):
        feed(intake, rec, c)
    (record,) = [json.loads(r.value) for r in rec.records if r.kind == "evidence"]
    assert base64.b64decode(record["manifest_b64"]) == payload and record["key_id"] == 0
    assert hashlib.sha256(store.get(record["sha256"])).hexdigest() == record["sha256"]
    registry = KeyRegistry(directory)
    assert verify_evidence_record(record, registry) == (VERIFIED, "")
    for edit in ({"sha256": hashlib.sha256(b"another image").hexdigest()}, {"size": 1},
                 {"violation_message_id": f"{DRONE}:43"}, {"drone_id": "d-2"}):
        assert verify_evidence_record({**record, **edit}, registry)[0] == BAD, edit
    # `presacop verify` over an archive of evidence records (no `kind` field: told by shape).
    archive = tmp_path / "evidence.jsonl"
    archive.write_text(json.dumps(record) + "\n")
    assert _verify(["--keys", str(directory), "--archive", str(archive),
                    "--require-signatures"]) == 0
    archive.write_text(json.dumps({**record, "size": 1}) + "\n")
    assert _verify(["--keys", str(directory), "--archive", str(archive)]) == 1


def test_without_the_switch_an_unsigned_manifest_is_stored_unsigned(
        tmp_path: Path, keys: tuple[Path, Signer, Signer]) -> None:
    directory, _, theirs = keys
    intake, rec, _, data, m = make_intake(tmp_path, directory, required=False)
    feed(intake, rec, theirs.encode_manifest(m))  # a bad signature is refused all the same
    assert dead(rec) == [("bad_signature", "invalid_signature", "$.signature")]
    feed(intake, rec, protocol.encode_evidence(m))
    for c in chunks(m, data):
        feed(intake, rec, c)
    (record,) = [json.loads(r.value) for r in rec.records if r.kind == "evidence"]
    assert "manifest_b64" not in record and "signature" not in record
    assert verify_evidence_record(record, KeyRegistry(directory))[0] == UNSIGNED


def test_a_resume_signed_with_a_rotated_key_is_the_same_upload(
        tmp_path: Path, keys: tuple[Path, Signer, Signer]) -> None:
    directory, old, _ = keys
    new = Signer.from_file(generate_key(directory, DRONE).private)
    assert new.key_id == 1
    intake, rec, _, data, m = make_intake(tmp_path, directory, required=True)
    feed(intake, rec, old.encode_manifest(m))
    first = chunks(m, data)[0]
    feed(intake, rec, first)
    feed(intake, rec, new.encode_manifest(m))  # the drone moved to key 1 mid-upload
    assert rec.receipts[-1].state is ReceiptState.RECEIVING and rec.receipts[-1].next_index == 1
    changed = new.encode_manifest(dataclasses.replace(m, violation_seq=8))
    feed(intake, rec, changed)  # well signed, but other fields: still a changed manifest
    assert dead(rec)[-1][0] == "evidence_manifest_changed"


def _verify(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    verify_cli.add_arguments(parser)
    return verify_cli.run(parser.parse_args(argv))


# -- the real parts ------------------------------------------------------------------------------


def test_a_signing_agent_uploads_to_a_gateway_requiring_signatures_and_verify_accepts_it(
        tmp_path: Path, stack: Stack, gateway_factory: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    drone, prefix = unique("sg-"), unique("sg")
    directory = tmp_path / "keys"
    key = generate_key(directory, drone)
    topics = {**topic_names(prefix), "evidence": f"{prefix}.evidence"}
    gw = gateway_factory(stack.mqtt_port, stack.kafka_bootstrap, topics, drone=drone,
                         extra=evidence_section(tmp_path) + (
                             f"[security]\nrequire_signatures = true\n"
                             f"keys_dir = {json.dumps(str(directory))}\n")).start()
    gw.wait_ready()
    config = agent_config(tmp_path, drone, stack.mqtt_port)
    text = config.read_text()  # the same key signs violations and manifests
    config.write_text(text + f"\n[signing]\nkey_file = {json.dumps(str(key.private))}\n")
    agent = start_agent(config, tmp_path / "agent.log")
    try:
        wait_until(lambda: len(uploads(tmp_path)) >= 2 and all(
            s == "confirmed" for s, *_ in uploads(tmp_path).values()), 90,
            "two uploads confirmed", ignoring=(sqlite3.OperationalError,))  # no db yet
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
    # An attacker with the drone's broker account announces an image the drone never signed.
    sha = hashlib.sha256(b"not from the drone").hexdigest()
    fake = protocol.EvidenceManifest(drone, sha[:16], sha, 2000, 1024, "image/jpeg", 1)
    pub = Publisher("127.0.0.1", stack.mqtt_port)
    try:
        pub.publish(protocol.evidence_topic(drone), protocol.encode_evidence(fake))
        pub.flush()
    finally:
        pub.close()
    done = {ident: sha for ident, (state, sha, _) in uploads(tmp_path).items()
            if state == "confirmed"}
    records = read_topic(stack.kafka_bootstrap, topics["evidence"],
                         until=lambda rs: {r.value["evidence_id"] for r in rs} >= set(done))
    store = open_store(StoreConfig(path=str(tmp_path / "store")))
    for r in records:  # the images confirmed, and any whose STORED came after the SIGTERM
        assert r.value["key_id"] == key.key_id and "manifest_b64" in r.value
        assert hashlib.sha256(store.get(r.value["sha256"])).hexdigest() == r.value["sha256"]
        assert done.get(r.value["evidence_id"], r.value["sha256"]) == r.value["sha256"]
    dead = read_topic(stack.kafka_bootstrap, topics["deadletter"], until=lambda rs: len(rs) >= 1)
    assert [(r.value["reason"], r.value["detail"]) for r in dead] == [("bad_signature",
                                                                      "unsigned")]
    assert sha not in {o.sha256 for o in store.objects()}
    # Offline: the violations topic and the evidence topic, every record signed and verified.
    capsys.readouterr()
    assert _verify(["--keys", str(directory), "--config", str(gw.config_path),
                    "--require-signatures"]) == 0
    *_, evidence, total = capsys.readouterr().out.splitlines()
    verified, rest = evidence.removeprefix("evidence: ").split(" verified, ")
    assert int(verified) >= len(done) and rest == "0 unsigned, 0 bad", evidence
    assert total.endswith(" unsigned, 0 bad") and len(done) >= 2
