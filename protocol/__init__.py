"""PresaCop's wire protocol: compact msgpack messages between drones and the gateway (sans-I/O).

Bytes in, messages out; messages in, bytes out. No sockets, clocks, threads or logging: the agent
and the gateway own all I/O. The byte-level spec is docs/protocol.md, with test vectors in
docs/protocol-vectors.json.

    encode(msg) -> payload          decode(payload, topic) -> msg
                                    (the topic carries the drone id and the kind)
    to_json(msg) -> dict            from_json(d) -> msg
    topic(drone_id, kind) -> str    parse_topic(topic) -> (drone_id, kind)
    message_id(msg) -> "<drone_id>:<seq>"

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
from protocol._topics import SUBSCRIPTION, parse_topic, topic

__all__ = [
    "ERROR_CODES",
    "MAX_MESSAGE_SIZE",
    "SCHEMA_VERSION",
    "SUBSCRIPTION",
    "VIOLATION_CODES",
    "Header",
    "Kind",
    "LocalProtocolError",
    "Message",
    "Position",
    "ProtocolError",
    "RemoteProtocolError",
    "Status",
    "StatusFlags",
    "Telemetry",
    "TimeSource",
    "TopicError",
    "Vehicle",
    "Violation",
    "decode",
    "encode",
    "from_json",
    "kind_of",
    "message_id",
    "parse_topic",
    "to_json",
    "topic",
]
