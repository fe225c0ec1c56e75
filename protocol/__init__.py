"""PresaCop's wire protocol: compact msgpack messages between drones and the gateway (sans-I/O).

Bytes in, messages out; messages in, bytes out. No sockets, clocks, threads or logging: the agent
and the gateway own all I/O. The byte-level spec is docs/protocol.md, with test vectors in
docs/protocol-vectors.json.

    encode(msg) -> payload          decode(payload, topic) -> msg
                                    (the topic carries the drone id and the kind)
    to_json(msg) -> dict            from_json(d) -> msg
    topic(drone_id, kind) -> str    parse_topic(topic) -> (drone_id, kind)
    message_id(msg) -> "<drone_id>:<seq>"
    signing_input(topic, payload) -> bytes  what the signature of a violation, evidence
                                            manifest or evidence receipt covers (1.1)
    with_signature(topic, payload, sig)     the payload with its signature put in place

Evidence upload frames (schema 1.1; their own topics, see docs/protocol.md section 14):

    encode_evidence(frame) -> payload       decode_evidence(payload, topic) -> frame
    evidence_topic(drone_id), receipt_topic(drone_id), parse_evidence_topic(topic)

Error tree (each error has .code, a key of ERROR_CODES, and .path, e.g. "$.plate", or None):

    ProtocolError
    ├── LocalProtocolError     encode / to_json were given an invalid message (our bug)
    ├── RemoteProtocolError    decode / from_json were given invalid input (theirs: dead-letter it)
    └── TopicError             a malformed MQTT topic (code "bad_topic")
"""

from protocol._codec import MAX_MESSAGE_SIZE, SCHEMA_VERSION, decode, encode
from protocol._codes import VIOLATION_CODES
from protocol._errors import (
    ERROR_CODES,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    TopicError,
)
from protocol._evidence import (
    MAX_CHUNK_SIZE,
    MAX_EVIDENCE_MESSAGE,
    MAX_EVIDENCE_SIZE,
    EvidenceChunk,
    EvidenceFrame,
    EvidenceManifest,
    EvidenceReceipt,
    ReceiptState,
    chunk_count,
    chunk_span,
    decode_evidence,
    encode_evidence,
    evidence_topic,
    is_evidence_topic,
    parse_evidence_topic,
    receipt_topic,
)
from protocol._json import from_json, to_json
from protocol._messages import (
    Header,
    Kind,
    Message,
    Position,
    Status,
    StatusFlags,
    Telemetry,
    TimeSource,
    Vehicle,
    Violation,
    kind_of,
    message_id,
)
from protocol._signature import KEY_ID_MAX, SIGNATURE_SIZE, signing_input, with_signature
from protocol._topics import SUBSCRIPTION, parse_topic, topic

__all__ = [
    "ERROR_CODES",
    "KEY_ID_MAX",
    "MAX_CHUNK_SIZE",
    "MAX_EVIDENCE_MESSAGE",
    "MAX_EVIDENCE_SIZE",
    "MAX_MESSAGE_SIZE",
    "SCHEMA_VERSION",
    "SIGNATURE_SIZE",
    "SUBSCRIPTION",
    "VIOLATION_CODES",
    "EvidenceChunk",
    "EvidenceFrame",
    "EvidenceManifest",
    "EvidenceReceipt",
    "Header",
    "Kind",
    "LocalProtocolError",
    "Message",
    "Position",
    "ProtocolError",
    "ReceiptState",
    "RemoteProtocolError",
    "Status",
    "StatusFlags",
    "Telemetry",
    "TimeSource",
    "TopicError",
    "Vehicle",
    "Violation",
    "chunk_count",
    "chunk_span",
    "decode",
    "decode_evidence",
    "encode",
    "encode_evidence",
    "evidence_topic",
    "from_json",
    "is_evidence_topic",
    "kind_of",
    "message_id",
    "parse_evidence_topic",
    "parse_topic",
    "receipt_topic",
    "signing_input",
    "to_json",
    "topic",
    "with_signature",
]
