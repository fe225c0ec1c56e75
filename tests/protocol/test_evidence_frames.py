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
        return EvidenceManifest(**value)
    if form == "chunk":
        return EvidenceChunk(data=bytes.fromhex(value.pop("data_hex")), **value)
    value["state"] = ReceiptState[value["state"].upper()]
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
