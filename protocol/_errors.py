"""The protocol's error tree. Every failure carries a stable `code` and, where a field is to blame,
a `path` to it in the canonical JSON form (msgspec style: "$.lat_deg", "$.vehicle.make").

    ProtocolError                 root: catch this to catch anything the package raises
    ├── LocalProtocolError        we were asked to emit something invalid (encode, to_json, topic)
    ├── RemoteProtocolError       bytes or JSON we received are invalid (decode, from_json)
    └── TopicError                an MQTT topic name is malformed (code always "bad_topic")

The split follows h11: a LocalProtocolError is a bug on our side (the agent built a bad message);
a RemoteProtocolError is bad input from the outside (the gateway dead-letters it, with `code`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

ERROR_CODES: Mapping[str, str] = MappingProxyType(
    {
        "oversized": "payload over MAX_MESSAGE_SIZE, or a str/bin/array/map over its limit",
        "truncated": "payload ends in the middle of a msgpack value",
        "trailing_bytes": "bytes left after the message's msgpack array",
        "malformed": "not valid msgpack (reserved byte 0xc1, invalid UTF-8 in a str, ...)",
        "bad_type": "a value has the wrong msgpack/JSON type (e.g. str where an int is expected)",
        "missing_field": "the array (or JSON object) lacks a field its kind requires",
        "extra_field": "more fields than the message's kind has, in a message of a known minor",
        "out_of_range": "a number outside its documented range",
        "invalid_time": "time outside the plausible window [2020-01-01, 2100-01-01) UTC",
        "bad_text": "text (drone id, region, vehicle, evidence id) outside its charset/length",
        "bad_plate": "plate text outside [A-Z0-9]{1,8}",
        "unknown_code": "violation code not in VIOLATION_CODES",
        "unknown_kind": "message kind not known to this version",
        "unknown_version": "unknown major schema version",
        "inconsistent": "a derived JSON field (message_id, time, qualified) disagrees",
        "bad_topic": "MQTT topic not of the form presacop/v1/drones/<drone_id>/<kind>",
    }
)


class ProtocolError(Exception):
    """Root of the tree. `code` is a key of ERROR_CODES; `path` names the field or is None."""

    def __init__(self, code: str, message: str, path: str | None = None) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown protocol error code {code!r}")
        self.code = code
        self.path = path
        super().__init__(f"{message} - at `{path}`" if path else message)


class LocalProtocolError(ProtocolError):
    """The message we were asked to send is invalid; sending it would make the peer reject it."""


class RemoteProtocolError(ProtocolError):
    """The bytes or JSON we received are invalid."""


class TopicError(ProtocolError):
    """An MQTT topic name is malformed."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__("bad_topic", message, path)


ErrorClass = type[LocalProtocolError] | type[RemoteProtocolError]
