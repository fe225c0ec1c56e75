"""Kafka records the gateway writes: pure builders, no I/O and no clock (times are passed in).

The formats are the contract with the data team and are documented in docs/kafka-records.md;
tests check the documented fields against what these functions build. Evolution rule: fields are
only added (with a meaning that older readers may ignore), never renamed or re-typed; a breaking
change bumps `RECORD_VERSION` and the `record-version` header.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import protocol

from .frozen import fast_init

# Version of the gateway's record envelope (the fields added around the protocol's JSON, the alert
# and dead-letter formats). The message's own schema is `protocol.SCHEMA_VERSION`.
RECORD_VERSION = "1"
CONTENT_TYPE = b"application/json"

# uuid5 namespace for alert ids: alert_id = uuid5(ALERT_NAMESPACE, message_id), so a redelivered
# violation yields the same alert id and consumers can drop the copy.
ALERT_NAMESPACE = uuid.UUID("5d0c5a8e-3f0e-4a53-9a57-3d1b0c6f4a11")

# Gateway fields added to every message record (documented in docs/kafka-records.md).
# The protocol's JSON already carries "schema" (its version), "kind" and "message_id"; the
# envelope repeats the last two only as a consistency check.
ENVELOPE_FIELDS = (
    "message_id", "kind", "record_version", "received_ms", "gateway_id", "delay_ms",
    "clock_suspect", "retained",
)
# Added to violation records only: who set the code and which revision of the violation this is
# (the officer console writes revisions >= 1; the current state is the highest revision).
VIOLATION_FIELDS = ("code_status", "revision")
# code_status: the drone's code or pending an officer (revision 0), officer-set or -changed (>= 1).
CODE_STATUSES = ("drone", "pending", "officer_set", "officer_changed")


@fast_init
@dataclass(frozen=True)
class OutRecord:
    """One record to produce. `kind` is the record type (telemetry, violation, status, alert,
    deadletter), used for metrics and the `record-type` header."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    kind: str

    def header(self, name: str) -> str:
        """The value of header `name`, decoded ("" if absent)."""
        return next((v.decode() for k, v in self.headers if k == name), "")


@fast_init
@dataclass(frozen=True)
class Receipt:
    """What the gateway knew when a message arrived."""

    mqtt_topic: str
    received_ms: int
    gateway_id: str
    qos: int = 1
    retained: bool = False


def alert_id(message_id: str) -> str:
    """The alert id of a violation: deterministic, so redeliveries give the same id."""
    return str(uuid.uuid5(ALERT_NAMESPACE, message_id))


def clock_suspect(msg: protocol.Message, received_ms: int, max_skew_ms: int) -> bool:
    """True when the drone's time cannot be trusted: unsynced clock, or ahead of the gateway's.

    A drone time far *behind* is normal (the outbox replays messages after a link loss), so only
    the future direction is suspect.
    """
    header = msg.header
    if header.time_source == protocol.TimeSource.UNSYNCED:
        return True
    return header.time_ms - received_ms > max_skew_ms


def message_record(msg: protocol.Message, topic: str, receipt: Receipt,
                   max_skew_ms: int, wire: bytes | None = None) -> OutRecord:
    """The record of a decoded message: protocol JSON plus the gateway's envelope fields (and,
    for a signed violation, `wire_b64`: the payload `wire` as received).

    The hot path: `to_json` reuses the array `decode` validated (no second validation), returns
    a fresh dict (filled in place, no copy), and one prebuilt encoder serialises it.
    """
    header = msg.header
    value = protocol.to_json(msg)
    kind = value["kind"]
    mid = value["message_id"]
    # The protocol's JSON already has "message_id" and "kind" (the envelope's first two fields,
    # built from the same fields); the rest is appended in ENVELOPE_FIELDS order.
    received = receipt.received_ms
    value["record_version"] = RECORD_VERSION
    value["received_ms"] = received
    value["gateway_id"] = receipt.gateway_id
    value["delay_ms"] = received - header.time_ms
    value["clock_suspect"] = clock_suspect(msg, received, max_skew_ms)
    value["retained"] = receipt.retained
    if kind == "violation":
        value["code_status"] = "pending" if value["code"] is None else "drone"
        value["revision"] = 0
        if wire is not None and value["signature"] is not None:
            # The signed bytes as received: `presacop verify` checks the signature and that
            # the record's fields are what they say, offline (docs/security.md).
            value["wire_b64"] = base64.b64encode(wire).decode("ascii")
    return OutRecord(topic, header.drone_id.encode(), _dumps(value), _headers(kind, mid), kind)


# Fields of the violation copied into its alert (names as in the protocol's JSON).
ALERT_VIOLATION_FIELDS = (
    "message_id", "drone_id", "seq", "time_ms", "time", "time_source", "lat_deg", "lon_deg",
    "alt_m", "plate", "region", "confidence", "evidence_id", "vehicle",
)


def alert_record(msg: protocol.Violation, topic: str, receipt: Receipt) -> OutRecord:
    """The open alert for an unqualified violation: what an operator needs to set the code.

    Keyed by alert id, so every state of one alert (open, then resolved by the review step) lands
    in one partition in order, and the topic can be compacted to the latest state per alert.
    """
    violation = protocol.to_json(msg)
    mid = violation["message_id"]
    aid = alert_id(mid)
    value: dict[str, Any] = {"alert_id": aid, "state": "open", "record_version": RECORD_VERSION}
    value.update((k, violation[k]) for k in ALERT_VIOLATION_FIELDS)
    value.update(code=None, code_set_by=None, received_ms=receipt.received_ms,
                 gateway_id=receipt.gateway_id, updated_ms=receipt.received_ms)
    return OutRecord(topic, aid.encode(), _dumps(value), _headers("alert", mid), "alert")


def resolved_alert(open_alert: Mapping[str, Any], code: int, officer: str,
                   now_ms: int) -> dict[str, Any]:
    """The review step's record: the same alert id, state resolved, the officer's code.

    Raises ValueError if `code` is not a known violation code or the alert is not open.
    """
    if open_alert.get("state") != "open":
        raise ValueError(f"alert {open_alert.get('alert_id')} is not open")
    _check_code(code)
    resolved = dict(open_alert)
    resolved.update(state="resolved", code=code, code_set_by="officer", officer=officer,
                    updated_ms=now_ms, decided_ms=now_ms)
    return resolved


def corrected_violation(current: Mapping[str, Any], code: int, officer: str,
                        now_ms: int) -> dict[str, Any]:
    """The next revision of a violation whose code an officer set or changed.

    `current` is the violation's latest revision (the gateway's record is revision 0). The copy
    keeps every field and gets `code`, `qualified`, `code_status` ("officer_set" when the drone
    left it unqualified, else "officer_changed"), `original_code` (the drone's code, null when
    it had none), `officer`, `decided_ms` and `revision` + 1. Raises ValueError if `code` is not
    a known violation code or is the code the violation already has.
    """
    _check_code(code)
    if current.get("code") == code:
        raise ValueError(f"violation {current.get('message_id')} already has code {code}")
    revision = int(current.get("revision") or 0)
    first = "original_code" not in current  # the drone's own record, or an older gateway's
    original = current.get("code") if first else current["original_code"]
    status = "officer_set" if original is None else "officer_changed"
    corrected = dict(current)
    corrected.update(code=code, qualified=True, code_status=status, original_code=original,
                     officer=officer, decided_ms=now_ms, revision=revision + 1)
    return corrected


def revision_record(violation: Mapping[str, Any], topic: str) -> OutRecord:
    """The OutRecord of a corrected violation: keyed by drone id, `revision` header added."""
    mid = violation["message_id"]
    headers = (*_headers("violation", mid), ("revision", str(violation["revision"]).encode()))
    return OutRecord(topic, violation["drone_id"].encode(), _dumps(violation), headers,
                     "violation")


def alert_state_record(alert: Mapping[str, Any], topic: str) -> OutRecord:
    """The OutRecord of an alert's next state (e.g. `resolved_alert`): keyed by alert id."""
    return OutRecord(topic, alert["alert_id"].encode(), _dumps(alert),
                     _headers("alert", alert["message_id"]), "alert")


def _check_code(code: int) -> None:
    if isinstance(code, bool) or code not in protocol.VIOLATION_CODES:
        raise ValueError(f"unknown violation code {code}")


def dead_letter_record(reason: str, detail: str, payload: bytes, topic: str,
                       receipt: Receipt, *, path: str | None = None,
                       drone_id: str | None = None, max_bytes: int = 65536) -> OutRecord:
    """The record of a message that could not be accepted, with the original bytes.

    Payloads larger than `max_bytes` are cut (their size and SHA-256 are kept), so an oversized
    input can never make a record Kafka refuses.
    """
    kept = payload[:max_bytes]
    value = {
        "reason": reason,
        "detail": detail,
        "path": path,
        "mqtt_topic": receipt.mqtt_topic,
        "drone_id": drone_id,
        "received_ms": receipt.received_ms,
        "gateway_id": receipt.gateway_id,
        "qos": receipt.qos,
        "retained": receipt.retained,
        "payload_b64": base64.b64encode(kept).decode("ascii"),
        "payload_size": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "payload_truncated": len(kept) < len(payload),
        "record_version": RECORD_VERSION,
    }
    headers = (
        ("content-type", CONTENT_TYPE),
        ("record-type", b"deadletter"),
        ("record-version", RECORD_VERSION.encode()),
        ("reason", reason.encode()),
    )
    key = drone_id.encode() if drone_id else None
    return OutRecord(topic, key, _dumps(value), headers, "deadletter")


# The constant part of each record type's headers, built once (only message-id varies).
_HEADER_PREFIX: dict[str, tuple[tuple[str, bytes], ...]] = {}


def _headers(kind: str, message_id: str) -> tuple[tuple[str, bytes], ...]:
    prefix = _HEADER_PREFIX.get(kind)
    if prefix is None:
        prefix = _HEADER_PREFIX[kind] = (
            ("content-type", CONTENT_TYPE),
            ("schema-version", protocol.SCHEMA_VERSION.encode()),
            ("record-version", RECORD_VERSION.encode()),
            ("record-type", kind.encode()),
        )
    return (*prefix, ("message-id", message_id.encode()))


# json.dumps with non-default options builds a new JSONEncoder per call; one prebuilt encoder
# gives the same bytes (compact, UTF-8, no NaN) for a fraction of the cost.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _c_encoder() -> Callable[[Any, int], list[str]] | None:
    """`_ENCODER`'s C encoder, built once: `JSONEncoder.encode` builds one per call (half of its
    cost for a record). Without the circular-reference check, which our values (fresh dicts of
    plain values) never need. None where CPython's C accelerator is missing or differs."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    e = _ENCODER
    try:
        encoder: Callable[[Any, int], list[str]] = make(
            None, e.default, json.encoder.encode_basestring, e.indent, e.key_separator,
            e.item_separator, e.sort_keys, e.skipkeys, e.allow_nan)
        probe = {"a": [1, 2.5, None, True, "\u00e9"], "b": {"c": -0.0}}
        if "".join(encoder(probe, 0)) != e.encode(probe):
            return None
    except TypeError:  # another signature of the private constructor
        return None
    return encoder


_C_ENCODE = _c_encoder()


def _dumps(value: Mapping[str, Any]) -> bytes:
    if _C_ENCODE is not None:
        return "".join(_C_ENCODE(value, 0)).encode()
    return _ENCODER.encode(value).encode()
