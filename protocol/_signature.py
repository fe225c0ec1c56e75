"""What a message signature covers (schema 1.1), without any cryptography.

Three payloads are signed: violations and evidence manifests by their drone, evidence receipts
by the back office (their topics name the drone and what they are). Each carries two appended
fields: `key_id` (which of the signer's keys) and `signature` (64 bytes, Ed25519, as msgpack
bin 8: `c4 40` + 64 bytes). The signature covers

    SIGNING_CONTEXT || topic (UTF-8) || 0x00 || payload without the signature's 64 value bytes

(the `c4 40` header stays in). The topic binds the drone id and the kind, so the same bytes on
another drone's topic do not verify; cutting the value out, rather than the field, lets later
minors append fields after the signature and keep them signed. The crypto itself (keys, sign,
verify) lives with the parties that hold keys (common.signing); this module only defines bytes.

Raises RemoteProtocolError (code "bad_type", path "$.signature") when the payload has no
signature field of that form where its kind puts it (evidence chunks are not signed: "$.form"),
or TopicError for a bad topic.
"""

from __future__ import annotations

import msgpack

from protocol._errors import RemoteProtocolError
from protocol._evidence import (
    MANIFEST_SIGNATURE_INDEX,
    RECEIPT_SIGNATURE_INDEX,
    Form,
    parse_evidence_topic,
)
from protocol._messages import Kind
from protocol._topics import parse_topic
from protocol._validate import KEY_ID_MAX, SIGNATURE_SIZE

SIGNING_CONTEXT = b"presacop-sig-1\x00"
_BIN8_64 = b"\xc4\x40"
# Payload index of the signature field, per signed kind.
SIGNATURE_INDEX: dict[Kind, int] = {Kind.VIOLATION: 16}


def signing_input(topic: str, payload: bytes | bytearray | memoryview) -> bytes:
    """The bytes the signature of `payload`, received or to be sent on `topic`, covers."""
    data = bytes(payload)
    at = signature_offset(data, *_signed_at(topic))
    return b"".join((SIGNING_CONTEXT, topic.encode(), b"\x00", data[:at + 2],
                     data[at + 2 + SIGNATURE_SIZE:]))


def _signed_at(topic: str) -> tuple[int, int | None]:
    """(payload index of the signature, the form element 1 must have or None) on `topic`."""
    if isinstance(topic, str) and topic.endswith(("/evidence", "/evidence/receipt")):
        _, form = parse_evidence_topic(topic)  # the drone id is checked like any topic's
        if form is Form.RECEIPT:
            return RECEIPT_SIGNATURE_INDEX, Form.RECEIPT
        return MANIFEST_SIGNATURE_INDEX, Form.MANIFEST
    _, kind = parse_topic(topic)
    if kind not in SIGNATURE_INDEX:
        raise RemoteProtocolError("bad_type", f"{kind.value} messages are not signed",
                                  "$.signature")
    return SIGNATURE_INDEX[kind], None


def signature_offset(data: bytes, index: int, form: int | None = None) -> int:
    """Offset in `data` (a msgpack array) of element `index`, checked to be a bin 8 of 64 bytes
    (and element 1 to be `form`, unless None)."""
    unpacker = msgpack.Unpacker(max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    try:
        length = unpacker.read_array_header()
        for at in range(min(index, length)):
            if at == 1 and form is not None:
                if unpacker.unpack() != form:
                    raise RemoteProtocolError("bad_type", "only manifests and receipts are "
                                              "signed", "$.form")
            else:
                unpacker.skip()
        if length <= index:
            raise RemoteProtocolError("bad_type", "no signature field", "$.signature")
    except RemoteProtocolError:
        raise
    except Exception:  # whatever msgpack raises on bytes that decode() would have refused
        raise RemoteProtocolError("bad_type", "not a msgpack array", "$.signature") from None
    at = unpacker.tell()
    if data[at:at + 2] != _BIN8_64 or len(data) < at + 2 + SIGNATURE_SIZE:
        raise RemoteProtocolError("bad_type", "the signature must be a bin 8 of 64 bytes",
                                  "$.signature")
    return at


def with_signature(topic: str, payload: bytes, signature: bytes) -> bytes:
    """`payload` (encoded with any 64-byte placeholder signature) with `signature` in place."""
    if len(signature) != SIGNATURE_SIZE:
        raise RemoteProtocolError("bad_type", f"expected a {SIGNATURE_SIZE}-byte signature",
                                  "$.signature")
    at = signature_offset(payload, *_signed_at(topic)) + 2
    return payload[:at] + signature + payload[at + SIGNATURE_SIZE:]


__all__ = ["KEY_ID_MAX", "SIGNATURE_SIZE", "SIGNING_CONTEXT", "signing_input", "with_signature"]
