"""Signed violation, evidence-manifest and evidence-receipt vectors (schema 1.1) for
docs/protocol-vectors.json, `signature_vectors`.

The key is RFC 8032's test key 1 (section 7.1), so another implementation can check both the
signing input and the signature. Each vector: {"name", "topic", "hex" (the payload),
"public_key_hex" (32 raw bytes), "signing_input_hex" (what the signature covers, computed for
`topic`), "valid" (whether the signature verifies for `topic`)}.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import protocol
from common.signing import Signer, verify

RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")


def signer(key_id: int = 0) -> Signer:
    return Signer(Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET), key_id)


def signed(msg: protocol.Violation, key_id: int = 0) -> tuple[protocol.Violation, bytes]:
    """The message as signed, and its payload."""
    payload = signer(key_id).encode(msg)
    return protocol.decode(payload, _topic(msg.header.drone_id)), payload


Frame = TypeVar("Frame", protocol.EvidenceManifest, protocol.EvidenceReceipt)


def signed_frame(frame: Frame, key_id: int = 0) -> tuple[Frame, bytes]:
    """An evidence manifest (signed as its drone would) or receipt (as the back office would),
    as signed, and its payload."""
    if isinstance(frame, protocol.EvidenceReceipt):
        payload = signer(key_id).encode_receipt(frame)
        topic = protocol.receipt_topic(frame.drone_id)
    else:
        payload = signer(key_id).encode_manifest(frame)
        topic = protocol.evidence_topic(frame.drone_id)
    decoded = protocol.decode_evidence(payload, topic)
    assert isinstance(decoded, type(frame))
    return decoded, payload


def _topic(drone_id: str) -> str:
    return protocol.topic(drone_id, protocol.Kind.VIOLATION)


def build(violation: protocol.Violation, manifest: protocol.EvidenceManifest
          ) -> list[dict[str, Any]]:
    key = Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET).public_key()
    public = key.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    _, payload = signed(violation)
    other = dataclasses.replace(violation.header, drone_id="nyc-0008")
    tampered = bytearray(payload)
    tampered[payload.index(b"ABC1234")] = ord("X")  # the plate, still a valid plate
    _, signed_m = signed_frame(manifest)
    evidence = protocol.evidence_topic(manifest.drone_id)
    bigger = bytearray(signed_m)
    bigger[signed_m.index(b"\xcd" + manifest.size.to_bytes(2, "big")) + 1] += 1  # size + 256
    stored = protocol.EvidenceReceipt(manifest.drone_id, manifest.evidence_id,
                                      protocol.ReceiptState.STORED, manifest.chunks)
    _, signed_r = signed_frame(stored)
    receipts = protocol.receipt_topic(manifest.drone_id)
    rejected = bytearray(signed_r)
    rejected[3 + 10] = protocol.ReceiptState.REJECTED  # the state after the evidence id
    cases = [
        ("signed violation, key 0", _topic("nyc-0007"), payload),
        ("the same payload on another drone's topic", _topic(other.drone_id), payload),
        ("a signed payload with one plate letter changed", _topic("nyc-0007"), bytes(tampered)),
        ("signed evidence manifest, key 0", evidence, signed_m),
        ("the same manifest on another drone's evidence topic",
         protocol.evidence_topic("nyc-0008"), signed_m),
        ("a signed manifest declaring 256 more bytes", evidence, bytes(bigger)),
        ("evidence receipt STORED signed by the back office, key 0", receipts, signed_r),
        ("the same receipt on another drone's receipt topic",
         protocol.receipt_topic("nyc-0008"), signed_r),
        ("a signed STORED receipt changed to REJECTED", receipts, bytes(rejected)),
    ]
    vectors = []
    for name, topic, data in cases:
        sig = protocol.decode_evidence(data, topic) if "/evidence" in topic \
            else protocol.decode(data, topic)
        assert isinstance(sig, (protocol.Violation, protocol.EvidenceManifest,
                                protocol.EvidenceReceipt))
        assert sig.signature is not None
        vectors.append({"name": name, "topic": topic, "hex": data.hex(), "public_key_hex": public,
                        "signing_input_hex": protocol.signing_input(topic, data).hex(),
                        "valid": verify(key, topic, data, sig.signature)})
    return vectors
