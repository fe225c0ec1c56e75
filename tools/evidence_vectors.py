"""Golden vectors of the evidence frames (schema 1.1, docs/protocol.md section 14).

Built by `tools/make_vectors.py` into docs/protocol-vectors.json under "evidence_vectors": each
`{"name", "topic", "hex", "frame", "valid"}` where `frame` is the decoded frame as JSON (chunk
data as `data_hex`, a manifest's or receipt's signature as hex), or, for an invalid vector, null
with the `code` and `path` the decoder fails with. Valid vectors are canonical: encoding `frame`
gives `hex` again. The signed manifest and receipt are signed with RFC 8032's test key 1
(tools/signature_vectors.py, whose "signature_vectors" also check their signing input).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import msgpack
import signature_vectors  # tools/signature_vectors.py: the RFC 8032 test key

import protocol
from protocol import EvidenceChunk, EvidenceManifest, EvidenceReceipt, ReceiptState

DRONE = "nyc-0007"
IMAGE = bytes(range(256)) * 10 + b"\xff\xd9"  # 2,562 bytes: three chunks of 1,024
SHA = hashlib.sha256(IMAGE).hexdigest()
EID = SHA[:16]
TOPIC = protocol.evidence_topic(DRONE)
RECEIPTS = protocol.receipt_topic(DRONE)
MANIFEST = EvidenceManifest(DRONE, EID, SHA, len(IMAGE), 1024, "image/jpeg", 123456)
SIGNED = signature_vectors.signed_frame(MANIFEST, key_id=3)[0]
STORED = EvidenceReceipt(DRONE, EID, ReceiptState.STORED, 3)
SIGNED_STORED = signature_vectors.signed_frame(STORED, key_id=1)[0]


def frames() -> list[tuple[str, protocol.EvidenceFrame]]:
    return [
        ("manifest: 2,562 bytes in chunks of 1,024", MANIFEST),
        ("the manifest signed with key 3 (1.1)", SIGNED),
        ("chunk 0 (full)", EvidenceChunk(DRONE, EID, 0, IMAGE[:1024])),
        ("chunk 2 (the last, 514 bytes)", EvidenceChunk(DRONE, EID, 2, IMAGE[2048:])),
        ("receipt RECEIVING from chunk 1", EvidenceReceipt(DRONE, EID, ReceiptState.RECEIVING, 1)),
        ("receipt STORED", STORED),
        ("receipt STORED signed by back-office key 1 (1.1; reason nil)", SIGNED_STORED),
        ("receipt REJECTED with a reason, signed",
         signature_vectors.signed_frame(EvidenceReceipt(
             DRONE, EID, ReceiptState.REJECTED, 0, "bad_signature"))[0]),
        ("receipt REJECTED with a reason",
         EvidenceReceipt(DRONE, EID, ReceiptState.REJECTED, 0, "evidence_hash_mismatch")),
        ("receipt BUSY", EvidenceReceipt(DRONE, EID, ReceiptState.BUSY, 0, "store_down")),
    ]


def _fields(frame: protocol.EvidenceFrame) -> list[Any]:
    return msgpack.unpackb(protocol.encode_evidence(frame))  # type: ignore[no-any-return]


def _with(frame: protocol.EvidenceFrame, index: int, value: Any) -> bytes:
    fields = _fields(frame)
    fields[index] = value
    return msgpack.packb(fields)


def invalid() -> list[tuple[str, str, bytes, str, str | None]]:
    chunk = EvidenceChunk(DRONE, EID, 0, b"\x00" * 4)
    receipt = EvidenceReceipt(DRONE, EID, ReceiptState.STORED, 3)
    newer = [0x12, *_fields(MANIFEST)[1:], None, None, "appended in 1.2"]
    return [
        ("schema 1.0: evidence frames start at 1.1", TOPIC, _with(MANIFEST, 0, 0x10),
         "out_of_range", "$.schema"),
        ("major 2", TOPIC, _with(MANIFEST, 0, 0x21), "unknown_version", "$.schema"),
        ("a receipt on the drone's topic", TOPIC, protocol.encode_evidence(receipt),
         "out_of_range", "$.form"),
        ("a chunk on the receipt topic", RECEIPTS, protocol.encode_evidence(chunk),
         "out_of_range", "$.form"),
        ("evidence id is not the start of sha256", TOPIC, _with(MANIFEST, 2, b"\x00" * 8),
         "inconsistent", "$.evidence_id"),
        ("sha256 of 31 bytes", TOPIC, _with(MANIFEST, 3, b"\x00" * 31), "bad_type", "$.sha256"),
        ("chunk size below 1,024", TOPIC, _with(MANIFEST, 5, 512), "out_of_range",
         "$.chunk_size"),
        ("size 0", TOPIC, _with(MANIFEST, 4, 0), "out_of_range", "$.size"),
        ("content type with a space", TOPIC, _with(MANIFEST, 6, "image/ jpeg"), "bad_text",
         "$.content_type"),
        ("empty chunk", TOPIC, _with(chunk, 4, b""), "out_of_range", "$.data"),
        ("chunk data as str", TOPIC, _with(chunk, 4, "abcd"), "bad_type", "$.data"),
        ("chunk without data", TOPIC, msgpack.packb(_fields(chunk)[:4]), "missing_field",
         "$.data"),
        ("1.1 signed manifest with an extra element", TOPIC,
         msgpack.packb([*_fields(SIGNED), 1]), "extra_field", "$[10]"),
        ("manifest with a key id and no signature", TOPIC,
         msgpack.packb([*_fields(MANIFEST), 3]), "missing_field", "$.signature"),
        ("manifest signature of 63 bytes", TOPIC, _with(SIGNED, 9, b"\x00" * 63), "bad_type",
         "$.signature"),
        ("manifest key id 65536", TOPIC, _with(SIGNED, 8, 65536), "out_of_range", "$.key_id"),
        ("content type str over 255 bytes", TOPIC, _with(MANIFEST, 6, "a" * 256), "oversized",
         None),
        ("receipt state 4", RECEIPTS, _with(receipt, 3, 4), "out_of_range", "$.state"),
        ("receipt with a key id and no signature", RECEIPTS,
         msgpack.packb([*_fields(receipt), None, 1]), "missing_field", "$.signature"),
        ("receipt with a signature and no key id", RECEIPTS,
         _with(SIGNED_STORED, 6, None), "missing_field", "$.key_id"),
        ("receipt signature of 63 bytes", RECEIPTS, _with(SIGNED_STORED, 7, b"\x00" * 63),
         "bad_type", "$.signature"),
        ("receipt signature as str", RECEIPTS, _with(SIGNED_STORED, 7, "sig"), "bad_type",
         "$.signature"),
        ("receipt key id -1", RECEIPTS, _with(SIGNED_STORED, 6, -1), "out_of_range",
         "$.key_id"),
        ("1.1 signed receipt with an extra element", RECEIPTS,
         msgpack.packb([*_fields(SIGNED_STORED), 1]), "extra_field", "$[8]"),
        ("not an evidence topic", "presacop/v1/drones/nyc-0007/evidence/x",
         protocol.encode_evidence(chunk), "bad_topic", None),
        ("newer minor 1.2 manifest with an appended field is read as 1.1", TOPIC,
         msgpack.packb(newer), "", None),
    ]


def frame_json(frame: protocol.EvidenceFrame) -> dict[str, Any]:
    value = dataclasses.asdict(frame)
    if isinstance(frame, EvidenceChunk):
        value["data_hex"] = value.pop("data").hex()
    if isinstance(frame, EvidenceReceipt):
        value["state"] = frame.state.name.lower()
    if isinstance(frame, (EvidenceManifest, EvidenceReceipt)) and frame.signature is not None:
        value["signature"] = frame.signature.hex()
    form = {EvidenceManifest: "manifest", EvidenceChunk: "chunk", EvidenceReceipt: "receipt"}
    return {"form": form[type(frame)], **value}


def build() -> list[dict[str, Any]]:
    out = []
    for name, frame in frames():
        topic = RECEIPTS if isinstance(frame, EvidenceReceipt) else TOPIC
        data = protocol.encode_evidence(frame)
        if protocol.decode_evidence(data, topic) != frame:
            raise SystemExit(f"evidence vector {name!r} does not round-trip")
        out.append({"name": name, "topic": topic, "hex": data.hex(), "frame": frame_json(frame),
                    "valid": True})
    for name, topic, data, code, path in invalid():
        if not code:  # valid but not canonical
            frame = protocol.decode_evidence(data, topic)
            out.append({"name": name, "topic": topic, "hex": data.hex(),
                        "frame": frame_json(frame), "valid": True,
                        "canonical_hex": protocol.encode_evidence(frame).hex()})
            continue
        try:
            protocol.decode_evidence(data, topic)
        except protocol.ProtocolError as exc:
            if (exc.code, exc.path) != (code, path):
                raise SystemExit(f"evidence vector {name!r}: got {exc.code} at {exc.path}, "
                                 f"expected {code} at {path}") from None
        else:
            raise SystemExit(f"evidence vector {name!r} decoded, expected {code}")
        out.append({"name": name, "topic": topic, "hex": data.hex(), "frame": None,
                    "valid": False, "code": code, "path": path})
    return out
