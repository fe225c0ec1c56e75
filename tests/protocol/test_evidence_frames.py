"""Evidence frames (schema 1.1): the committed vectors both ways, and any bytes -> ProtocolError."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import protocol
from protocol import EvidenceChunk, EvidenceManifest, EvidenceReceipt, ReceiptState

DOC = json.loads((Path(__file__).resolve().parents[2] / "docs" / "protocol-vectors.json")
                 .read_text())
VECTORS = DOC["evidence_vectors"]
TOPIC = protocol.evidence_topic("d-1")


def _frame(value: dict[str, Any]) -> protocol.EvidenceFrame:
    value = dict(value)
    form = value.pop("form")
    if form == "manifest":
        if value.get("signature") is not None:
            value["signature"] = bytes.fromhex(value["signature"])
        return EvidenceManifest(**value)
    if form == "chunk":
        return EvidenceChunk(data=bytes.fromhex(value.pop("data_hex")), **value)
    value["state"] = ReceiptState[value["state"].upper()]
    if value.get("signature") is not None:
        value["signature"] = bytes.fromhex(value["signature"])
    return EvidenceReceipt(**value)


@pytest.mark.parametrize("vector", [v for v in VECTORS if v["valid"]], ids=lambda v: v["name"])
def test_valid_vectors_decode_and_encode(vector: dict[str, Any]) -> None:
    frame = protocol.decode_evidence(bytes.fromhex(vector["hex"]), vector["topic"])
    assert frame == _frame(vector["frame"])
    assert protocol.encode_evidence(frame).hex() == vector.get("canonical_hex", vector["hex"])


@pytest.mark.parametrize("vector", [v for v in VECTORS if not v["valid"]],
                         ids=lambda v: v["name"])
def test_invalid_vectors_fail_with_their_code(vector: dict[str, Any]) -> None:
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.decode_evidence(bytes.fromhex(vector["hex"]), vector["topic"])
    assert (info.value.code, info.value.path) == (vector["code"], vector["path"])


def test_topics() -> None:
    assert protocol.evidence_topic("d-1") == "presacop/v1/drones/d-1/evidence"
    assert protocol.receipt_topic("d-1") == "presacop/v1/drones/d-1/evidence/receipt"
    assert protocol.parse_evidence_topic(protocol.receipt_topic("d-1"))[0] == "d-1"
    assert protocol.is_evidence_topic(TOPIC)
    assert not protocol.is_evidence_topic(protocol.receipt_topic("d-1"))
    for bad in ("presacop/v1/drones/a+b/evidence", "presacop/v1/drones/d-1/violation", 7):
        with pytest.raises(protocol.TopicError):
            protocol.parse_evidence_topic(bad)


def test_encoder_refuses_what_the_decoder_rejects() -> None:
    sha = hashlib.sha256(b"x").hexdigest()
    with pytest.raises(protocol.LocalProtocolError) as info:
        protocol.encode_evidence(EvidenceManifest("d-1", "0" * 16, sha, 1, 1024, "image/jpeg", 1))
    assert info.value.code == "inconsistent"
    with pytest.raises(protocol.LocalProtocolError) as info:
        too_long = b"x" * (protocol.MAX_CHUNK_SIZE + 1)
        protocol.encode_evidence(EvidenceChunk("d-1", sha[:16], 0, too_long))
    assert (info.value.code, info.value.path) == ("out_of_range", "$.data")


def test_chunk_span_covers_the_object_exactly() -> None:
    m = EvidenceManifest("d-1", "0" * 16, "0" * 64, 2562, 1024, "image/jpeg", 1)
    spans = [protocol.chunk_span(m, i) for i in range(m.chunks)]
    assert spans == [(0, 1024), (1024, 1024), (2048, 514)]
    with pytest.raises(ValueError):
        protocol.chunk_span(m, 3)


@given(st.binary(max_size=300))
def test_any_bytes_give_a_frame_or_a_protocol_error(data: bytes) -> None:
    with contextlib.suppress(protocol.ProtocolError):
        protocol.decode_evidence(data, TOPIC)


def test_payload_over_the_limit_is_oversized() -> None:
    full = EvidenceChunk("d-1", "0" * 16, 0, b"x" * protocol.MAX_CHUNK_SIZE)
    big = protocol.encode_evidence(full) + b"x" * 300
    with pytest.raises(protocol.RemoteProtocolError) as info:
        protocol.decode_evidence(big, TOPIC)
    assert info.value.code == "oversized"


# -- signed manifests (1.1) ----------------------------------------------------------------------


def _manifest(drone: str = "d-1", **kw: Any) -> EvidenceManifest:
    sha = hashlib.sha256(b"image").hexdigest()
    return EvidenceManifest(drone, sha[:16], sha, 220_000, 16384, "image/jpeg", 7, **kw)


@given(st.integers(0, protocol.KEY_ID_MAX), st.binary(min_size=64, max_size=64),
       st.sampled_from(["d-1", "nyc-0007", "x" * 32]))
def test_a_signed_manifest_round_trips_and_its_signing_input_is_the_violations_rule(
        key_id: int, sig: bytes, drone: str) -> None:
    m = _manifest(drone, key_id=key_id, signature=sig)
    payload = protocol.encode_evidence(m)
    topic = protocol.evidence_topic(drone)
    assert protocol.decode_evidence(payload, topic) == m
    assert len(payload) <= 140  # docs/protocol.md section 14.2: a signed manifest's size
    at = payload.index(b"\xc4\x40" + sig)
    assert protocol.signing_input(topic, payload) == (
        b"presacop-sig-1\x00" + topic.encode() + b"\x00" + payload[:at + 2] +
        payload[at + 66:])
    other = bytes(64) if sig != bytes(64) else b"\x01" * 64
    assert protocol.with_signature(topic, payload, other) == \
        protocol.encode_evidence(_manifest(drone, key_id=key_id, signature=other))


def test_chunks_and_unsigned_manifests_have_no_signing_input() -> None:
    chunk = protocol.encode_evidence(EvidenceChunk("d-1", "0" * 16, 0, b"x" * 200))
    for payload, path in ((chunk, "$.form"), (protocol.encode_evidence(_manifest()),
                                              "$.signature")):
        with pytest.raises(protocol.RemoteProtocolError) as info:
            protocol.signing_input(TOPIC, payload)
        assert (info.value.code, info.value.path) == ("bad_type", path)
    with pytest.raises(protocol.RemoteProtocolError) as info:  # receipts only, on that topic
        protocol.signing_input(protocol.receipt_topic("d-1"), chunk)
    assert (info.value.code, info.value.path) == ("bad_type", "$.form")
    with pytest.raises(protocol.TopicError):
        protocol.signing_input("presacop/v1/drones/d 1/evidence/receipt", chunk)


# -- signed receipts (1.1): the back office's key -------------------------------------------------


@given(st.sampled_from(list(ReceiptState)), st.integers(0, protocol.MAX_EVIDENCE_SIZE),
       st.one_of(st.none(), st.from_regex(r"[a-z0-9_]{1,64}", fullmatch=True)),
       st.integers(0, protocol.KEY_ID_MAX), st.binary(min_size=64, max_size=64))
def test_a_signed_receipt_round_trips_within_its_size_and_signs_like_a_manifest(
        state: ReceiptState, next_index: int, reason: str | None, key_id: int,
        sig: bytes) -> None:
    r = EvidenceReceipt("x" * 32, "0" * 16, state, next_index, reason, key_id, sig)
    topic = protocol.receipt_topic(r.drone_id)
    payload = protocol.encode_evidence(r)
    assert protocol.decode_evidence(payload, topic) == r
    assert 83 <= len(payload) <= 154  # docs/protocol.md section 14.2
    at = payload.index(b"\xc4\x40" + sig)
    assert at == len(payload) - 66  # the signature is the last element
    assert protocol.signing_input(topic, payload) == (
        b"presacop-sig-1\x00" + topic.encode() + b"\x00" + payload[:at + 2])
    assert protocol.with_signature(topic, payload, b"\x07" * 64) == protocol.encode_evidence(
        EvidenceReceipt(r.drone_id, r.evidence_id, state, next_index, reason, key_id,
                        b"\x07" * 64))


def test_a_signed_receipt_writes_its_reason_nil_and_an_unsigned_one_has_no_signing_input(
        ) -> None:
    topic = protocol.receipt_topic("d-1")
    unsigned = protocol.encode_evidence(EvidenceReceipt("d-1", "0" * 16, ReceiptState.STORED, 3))
    signed = protocol.encode_evidence(EvidenceReceipt("d-1", "0" * 16, ReceiptState.STORED, 3,
                                                      None, 0, bytes(64)))
    assert signed[:15] == b"\x98" + unsigned[1:]  # 8 elements, then the same 5 fields
    assert signed[15:17] == b"\xc0\x00"  # reason nil (kept: position 5), key id 0
    with pytest.raises(protocol.RemoteProtocolError) as info:
        protocol.signing_input(topic, unsigned)
    assert (info.value.code, info.value.path) == ("bad_type", "$.signature")
    with pytest.raises(protocol.RemoteProtocolError) as info:  # a receipt topic's rule
        protocol.signing_input(protocol.evidence_topic("d-1"), signed)
    assert (info.value.code, info.value.path) == ("bad_type", "$.form")


def test_the_encoder_refuses_half_a_receipt_signature() -> None:
    for kw, path in (({"key_id": 1}, "$.signature"), ({"signature": bytes(64)}, "$.key_id"),
                     ({"key_id": 1, "signature": bytes(65)}, "$.signature"),
                     ({"key_id": 65536, "signature": bytes(64)}, "$.key_id")):
        with pytest.raises(protocol.LocalProtocolError) as info:
            protocol.encode_evidence(EvidenceReceipt("d-1", "0" * 16, ReceiptState.STORED, 3,
                                                     **kw))
        assert info.value.path == path, kw


def test_the_encoder_refuses_half_a_signature() -> None:
    for kw, path in (({"key_id": 1}, "$.signature"), ({"signature": bytes(64)}, "$.key_id"),
                     ({"key_id": 1, "signature": bytes(63)}, "$.signature")):
        with pytest.raises(protocol.LocalProtocolError) as info:
            protocol.encode_evidence(_manifest(**kw))
        assert info.value.path == path


@given(st.binary(max_size=300))
def test_signing_input_of_any_bytes_on_the_evidence_topic_raises_only_protocol_errors(
        data: bytes) -> None:
    with contextlib.suppress(protocol.ProtocolError):
        protocol.signing_input(TOPIC, data)
