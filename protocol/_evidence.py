"""Evidence upload messages (schema 1.1): a JPEG moves from a drone to the back office in chunks.

    drone -> gateway   presacop/v1/drones/<drone_id>/evidence            manifest, chunk
    gateway -> drone   presacop/v1/drones/<drone_id>/evidence/receipt    receipt

    manifest  [schema, 0, evidence_id bin8, sha256 bin32, size, chunk_size, content_type,
               violation_seq, key_id?, signature bin8(64)?]
    chunk     [schema, 1, evidence_id bin8, index, data bin]
    receipt   [schema, 2, evidence_id bin8, state, next_index, reason str|nil, key_id?,
               signature bin8(64)?]

These are transfer frames, not drone messages: no seq, no time, no message id. The evidence id is
the first 8 bytes of the SHA-256 the manifest declares, as in the violation that names it.
Chunk `index` covers bytes [index * chunk_size, min(size, (index + 1) * chunk_size)).
A manifest may be signed by its drone like a violation (`key_id`, `signature`: both or neither;
the signed bytes are `protocol.signing_input`): the SHA-256 it declares then binds the image to
the drone's key, and the chunks need no signature of their own. A receipt may be signed the
same way by the back office's receipt key (the gateway signs, the drone checks): then only the
back office, not whoever can publish on the receipt topic, can tell a drone to delete an image.
Decoding follows the 1.x rules (docs/protocol.md section 14): the topic first, then the schema,
then the form, the array length and the fields in order; only ProtocolError leaves
`decode_evidence`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

import msgpack

from protocol import _validate as v
from protocol._errors import ErrorClass, LocalProtocolError, RemoteProtocolError, TopicError

EVIDENCE_SCHEMA = 0x11  # 1.1: the first minor with evidence frames
# Bytes of image data in one chunk: the largest chunk PUBLISH (61,765 bytes with its topic and
# MQTT framing) stays under the deployed broker's max_packet_size of 65,536.
MAX_CHUNK_SIZE = 61440
MIN_CHUNK_SIZE = 1024
MAX_EVIDENCE_SIZE = 16 * 1024 * 1024  # one object; a 1080p JPEG at q85 is ~220 KB
# A chunk payload is its data plus at most 23 bytes of framing; the rest is room for appended
# fields of later minors (e.g. a signature on the manifest).
MAX_EVIDENCE_MESSAGE = MAX_CHUNK_SIZE + 256
MANIFEST_SIGNATURE_INDEX = 9  # the signed bytes leave out this element's 64 value bytes
RECEIPT_SIGNATURE_INDEX = 7
CONTENT_TYPE_RE = re.compile(r"[a-z]{1,16}/[a-z0-9.+-]{1,47}")
REASON_RE = re.compile(r"[a-z0-9_]{1,64}")
_PREFIX = "presacop/v1/drones/"
_LIMITS = {"max_str_len": 255, "max_bin_len": MAX_CHUNK_SIZE, "max_array_len": 64,
           "max_map_len": 32, "max_ext_len": 255}


class Form(enum.IntEnum):
    MANIFEST = 0
    CHUNK = 1
    RECEIPT = 2


class ReceiptState(enum.IntEnum):
    """What the back office holds of an upload, as its receipt tells the drone."""

    RECEIVING = 0  # chunks [0, next_index) are staged durably: send from next_index on
    STORED = 1  # the object is stored, its SHA-256 checked, its record in Kafka: delete it
    REJECTED = 2  # the upload was dead-lettered (`reason`): keep the file, do not resend
    BUSY = 3  # the store is unavailable or staging is full: try again later


@dataclass(frozen=True)
class EvidenceManifest:
    drone_id: str
    evidence_id: str  # 16 lowercase hex: sha256[:16]
    sha256: str  # 64 lowercase hex
    size: int  # bytes, 1 .. MAX_EVIDENCE_SIZE
    chunk_size: int  # MIN_CHUNK_SIZE .. MAX_CHUNK_SIZE
    content_type: str  # e.g. "image/jpeg"
    violation_seq: int  # seq of the (first) violation naming this evidence
    # 1.1: which of the drone's keys signed it and the Ed25519 signature (common.signing)
    key_id: int | None = None
    signature: bytes | None = None

    @property
    def chunks(self) -> int:
        return chunk_count(self.size, self.chunk_size)


@dataclass(frozen=True)
class EvidenceChunk:
    drone_id: str
    evidence_id: str
    index: int
    data: bytes


@dataclass(frozen=True)
class EvidenceReceipt:
    drone_id: str
    evidence_id: str
    state: ReceiptState
    next_index: int = 0
    reason: str | None = None
    # 1.1: which back-office receipt key signed it and the Ed25519 signature (common.signing)
    key_id: int | None = None
    signature: bytes | None = None


EvidenceFrame = EvidenceManifest | EvidenceChunk | EvidenceReceipt
_FIELDS = {
    Form.MANIFEST: ("schema", "form", "evidence_id", "sha256", "size", "chunk_size",
                    "content_type", "violation_seq", "key_id", "signature"),
    Form.CHUNK: ("schema", "form", "evidence_id", "index", "data"),
    Form.RECEIPT: ("schema", "form", "evidence_id", "state", "next_index", "reason", "key_id",
                   "signature"),
}
_OPTIONAL = {Form.MANIFEST: 2, Form.CHUNK: 0, Form.RECEIPT: 3}


def chunk_count(size: int, chunk_size: int) -> int:
    """Chunks of an object of `size` bytes."""
    return -(-size // chunk_size)


def chunk_span(manifest: EvidenceManifest, index: int) -> tuple[int, int]:
    """(offset, length) of chunk `index`; raises ValueError past the declared size."""
    if not 0 <= index < manifest.chunks:
        raise ValueError(f"chunk {index} is outside 0..{manifest.chunks - 1}")
    offset = index * manifest.chunk_size
    return offset, min(manifest.chunk_size, manifest.size - offset)


# --- topics -------------------------------------------------------------------------------------


def evidence_topic(drone_id: str) -> str:
    """Where a drone publishes manifests and chunks. Raises TopicError for a bad id."""
    return _PREFIX + _drone(drone_id, TopicError) + "/evidence"


def receipt_topic(drone_id: str) -> str:
    """Where the gateway publishes receipts for a drone. Raises TopicError for a bad id."""
    return evidence_topic(drone_id) + "/receipt"


def parse_evidence_topic(name: object) -> tuple[str, Form | None]:
    """(drone_id, None) for an evidence topic, (drone_id, Form.RECEIPT) for a receipt topic.
    Raises TopicError for anything else."""
    if not isinstance(name, str) or not name.startswith(_PREFIX):
        raise TopicError(f"{v.show(name)} is not {_PREFIX}<drone_id>/evidence[/receipt]")
    levels = name[len(_PREFIX):].split("/")
    if levels[1:] not in (["evidence"], ["evidence", "receipt"]):
        raise TopicError(f"{v.show(name)} is not {_PREFIX}<drone_id>/evidence[/receipt]")
    drone = _drone(levels[0], TopicError)
    return drone, Form.RECEIPT if len(levels) == 3 else None


def is_evidence_topic(name: object) -> bool:
    """True for a drone's evidence topic (not a receipt topic); a cheap test for routers."""
    return isinstance(name, str) and name.endswith("/evidence") and name.startswith(_PREFIX)


def _drone(drone_id: object, err: type[TopicError]) -> str:
    if not isinstance(drone_id, str) or v.DRONE_ID_RE.fullmatch(drone_id) is None:
        raise err(f"drone id {v.show(drone_id)} does not match {v.DRONE_ID_RE.pattern}",
                  "$.drone_id")
    return drone_id


# --- encode -------------------------------------------------------------------------------------


def encode_evidence(frame: EvidenceFrame) -> bytes:
    """The frame's payload; publish it on `evidence_topic` (manifest, chunk) or `receipt_topic`
    (receipt) of its drone. Raises LocalProtocolError if the frame is invalid."""
    err = LocalProtocolError
    v.text(frame.drone_id, "$.drone_id", v.DRONE_ID_RE, err)
    head = [EVIDENCE_SCHEMA, 0, v.evidence_from_hex(frame.evidence_id, "$.evidence_id", err)]
    if isinstance(frame, EvidenceManifest):
        head[1] = Form.MANIFEST
        body = _manifest_body(frame, err)
    elif isinstance(frame, EvidenceChunk):
        head[1] = Form.CHUNK
        body = [v.int_in(frame.index, "$.index", 0, MAX_EVIDENCE_SIZE, err),
                _data(frame.data, err)]
    elif isinstance(frame, EvidenceReceipt):
        head[1] = Form.RECEIPT
        body = _receipt_body(frame, err)
    else:
        raise err("bad_type", f"not an evidence frame: {type(frame).__name__}", "$")
    return msgpack.packb([int(head[0]), int(head[1]), head[2], *body], use_bin_type=True)


def _manifest_body(m: EvidenceManifest, err: ErrorClass) -> list[Any]:
    digest = _sha256(m.sha256, err)
    if digest[:8].hex() != m.evidence_id:
        raise err("inconsistent", "evidence_id is not the first 8 bytes of sha256",
                  "$.evidence_id")
    body = [digest, v.int_in(m.size, "$.size", 1, MAX_EVIDENCE_SIZE, err),
            v.int_in(m.chunk_size, "$.chunk_size", MIN_CHUNK_SIZE, MAX_CHUNK_SIZE, err),
            v.text(m.content_type, "$.content_type", CONTENT_TYPE_RE, err),
            v.int_in(m.violation_seq, "$.violation_seq", 0, v.UINT32_MAX, err)]
    if m.key_id is not None or m.signature is not None:
        body += v.signature_fields(m.key_id, m.signature, err)
    return body


def _receipt_body(r: EvidenceReceipt, err: ErrorClass) -> list[Any]:
    body = [v.int_in(r.state, "$.state", 0, max(ReceiptState), err),
            v.int_in(r.next_index, "$.next_index", 0, MAX_EVIDENCE_SIZE, err),
            None if r.reason is None else v.text(r.reason, "$.reason", REASON_RE, err)]
    if r.key_id is not None or r.signature is not None:
        return body + list(v.signature_fields(r.key_id, r.signature, err))  # reason nil stays
    return body if body[-1] is not None else body[:-1]  # canonical: an absent reason left out


def _sha256(value: object, err: ErrorClass) -> bytes:
    if not isinstance(value, str) or re.fullmatch(r"[0-9a-f]{64}", value) is None:
        raise err("bad_text", f"{v.show(value)} is not 64 lowercase hex digits", "$.sha256")
    return bytes.fromhex(value)


def _data(value: object, err: ErrorClass) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise err("bad_type", f"expected bytes, got {type(value).__name__}", "$.data")
    if not 1 <= len(value) <= MAX_CHUNK_SIZE:
        raise err("out_of_range", f"{len(value)} bytes is outside [1, {MAX_CHUNK_SIZE}]",
                  "$.data")
    return bytes(value)


# --- decode -------------------------------------------------------------------------------------


def decode_evidence(data: bytes | bytearray | memoryview, topic: str) -> EvidenceFrame:
    """The frame in `data` received on `topic`. Raises TopicError or RemoteProtocolError
    (code, path), and nothing else whatever the bytes."""
    drone, topic_form = parse_evidence_topic(topic)
    fields = _unpack(data)
    form = _envelope(fields, topic_form)
    fields = _fit(fields, form)
    err = RemoteProtocolError
    ident = v.evidence_bytes(fields[2], "$.evidence_id", err)
    if form is Form.CHUNK:
        index = v.int_in(fields[3], "$.index", 0, MAX_EVIDENCE_SIZE, err)
        if not isinstance(fields[4], bytes):
            raise err("bad_type", f"expected bin, got {type(fields[4]).__name__}", "$.data")
        return EvidenceChunk(drone, ident, index, _data(fields[4], err))
    if form is Form.RECEIPT:
        state = ReceiptState(v.int_in(fields[3], "$.state", 0, max(ReceiptState), err))
        next_index = v.int_in(fields[4], "$.next_index", 0, MAX_EVIDENCE_SIZE, err)
        reason = v.optional_text(fields[5] if len(fields) > 5 else None, "$.reason", REASON_RE,
                                 err)
        return EvidenceReceipt(drone, ident, state, next_index, reason,
                               *_signature(fields, RECEIPT_SIGNATURE_INDEX))
    if not isinstance(fields[3], bytes) or len(fields[3]) != 32:
        raise err("bad_type", "expected bin 32 (a SHA-256)", "$.sha256")
    key_id, signature = _signature(fields, MANIFEST_SIGNATURE_INDEX)
    manifest = EvidenceManifest(
        drone, ident, fields[3].hex(), v.int_in(fields[4], "$.size", 1, MAX_EVIDENCE_SIZE, err),
        v.int_in(fields[5], "$.chunk_size", MIN_CHUNK_SIZE, MAX_CHUNK_SIZE, err),
        v.text(fields[6], "$.content_type", CONTENT_TYPE_RE, err),
        v.int_in(fields[7], "$.violation_seq", 0, v.UINT32_MAX, err), key_id, signature)
    if not manifest.sha256.startswith(ident):
        raise err("inconsistent", "evidence_id is not the first 8 bytes of sha256",
                  "$.evidence_id")
    return manifest


def _signature(fields: list[Any], index: int) -> tuple[int | None, bytes | None]:
    """The optional (key_id, signature) pair ending at `index`: both or neither."""
    key_id, signature = [*fields[index - 1:index + 1], None, None][:2]
    if key_id is None and signature is None:
        return None, None
    return v.signature_fields(key_id, signature, RemoteProtocolError)


def _unpack(data: object) -> list[Any]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise RemoteProtocolError("bad_type", f"expected bytes, got {type(data).__name__}", "$")
    size = memoryview(data).nbytes
    if size > MAX_EVIDENCE_MESSAGE:
        raise RemoteProtocolError("oversized", f"{size} bytes > the limit {MAX_EVIDENCE_MESSAGE}")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, **_LIMITS)
    except msgpack.ExtraData:
        raise RemoteProtocolError("trailing_bytes", "bytes after the frame's array") from None
    except msgpack.OutOfData:
        raise RemoteProtocolError("truncated", "the payload ends inside a value") from None
    except ValueError as exc:
        if "incomplete input" in str(exc):
            raise RemoteProtocolError("truncated", "the payload ends inside a value") from None
        if "exceeds max" in str(exc):
            raise RemoteProtocolError("oversized", f"a value beyond the limits: {exc}") from None
        raise RemoteProtocolError("malformed", f"not valid msgpack ({exc})") from None
    except Exception as exc:  # anything else msgpack raises (reserved byte, bad key type)
        raise RemoteProtocolError("malformed", f"not valid msgpack ({type(exc).__name__})") \
            from None
    if not isinstance(obj, list):
        raise RemoteProtocolError("bad_type", f"expected an array, got {type(obj).__name__}", "$")
    return obj


def _envelope(fields: list[Any], topic_form: Form | None) -> Form:
    err = RemoteProtocolError
    if not fields:
        raise err("missing_field", "empty array", "$.schema")
    version = v.int_in(fields[0], "$.schema", -(2**63), 2**64, err)
    if version < 0 or version >> 4 != 1:
        raise err("unknown_version", f"unknown schema version {version}", "$.schema")
    if version & 0x0F < 1:
        raise err("out_of_range", "evidence frames exist from schema 1.1 on", "$.schema")
    if len(fields) < 2:
        raise err("missing_field", "no form", "$.form")
    allowed = (Form.RECEIPT,) if topic_form is Form.RECEIPT else (Form.MANIFEST, Form.CHUNK)
    form = v.int_in(fields[1], "$.form", 0, max(Form), err)
    if form not in allowed:
        raise err("out_of_range", f"form {form} does not travel on this topic", "$.form")
    return Form(form)


def _fit(fields: list[Any], form: Form) -> list[Any]:
    names = _FIELDS[form]
    required = len(names) - _OPTIONAL[form]
    if len(fields) < required:
        raise RemoteProtocolError("missing_field", f"{form.name.lower()} needs {required} "
                                  f"fields, got {len(fields)}", f"$.{names[len(fields)]}")
    if len(fields) > len(names):
        if fields[0] & 0x0F <= EVIDENCE_SCHEMA & 0x0F:
            raise RemoteProtocolError("extra_field", f"{form.name.lower()} has {len(names)} "
                                      f"fields, got {len(fields)}", f"$[{len(names)}]")
        return fields[: len(names)]  # a newer minor's appended fields, unread
    return fields
