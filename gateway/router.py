"""Routing: one MQTT message in, the Kafka records it becomes out. Pure: no I/O, no clock.

    telemetry            -> topics.telemetry   (key: drone id)
    status               -> topics.telemetry   (key: drone id; `kind` = "status")
    violation            -> topics.violations  (key: drone id)
    violation, code None -> topics.violations  + an open alert in topics.alerts (key: alert id)
    anything that fails  -> topics.deadletter  (key: the topic's drone id when it has a valid one)

Violations are checked by `RouteSettings.verifier` when one is set (the gateway's key registry,
common.signing): a signature that does not verify (unknown key, invalid), or a missing one when
`require_signatures`, is dead-lettered as `bad_signature` (detail: which). Telemetry and status
are not signed: the broker's login vouches for them (docs/security.md).

`route` never raises: bad input is data. A failure of our own code while routing becomes a
dead letter with reason `internal_error` rather than an exception in the MQTT loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import protocol

from .config import TopicsConfig
from .frozen import fast_init
from .records import OutRecord, Receipt, alert_record, dead_letter_record, message_record

# Dead-letter reasons of the gateway's own (the protocol's `ProtocolError.code`s are the others).
# The drone id and kind come from the topic alone (the payload does not repeat them), so there is
# no topic/payload mismatch to detect: the broker's ACL is what ties a client to its topic.
BAD_TOPIC_ENCODING = "bad_topic"  # the MQTT topic is not UTF-8
INTERNAL_ERROR = "internal_error"  # a bug in the gateway while routing; the input is kept
BAD_SIGNATURE = "bad_signature"  # unsigned where required, unknown key, or invalid signature
SEQ_JUMP = "seq_jump"  # seq beyond the replay bound (gateway.dedupe); set by the service
UNSIGNED = "unsigned"  # what a verifier returns for a message without a signature

# (topic, payload, violation or evidence manifest) -> None when its signature is good, else why
# not (UNSIGNED, ...); gateway.evidence.intake checks manifests with the same one
Verifier = Callable[[str, bytes, protocol.Violation | protocol.EvidenceManifest], str | None]


@dataclass(frozen=True)
class RouteSettings:
    topics: TopicsConfig
    max_clock_skew_ms: int = 300_000
    deadletter_max_bytes: int = 65536
    verifier: Verifier | None = None
    require_signatures: bool = False


@fast_init
@dataclass(frozen=True)
class Routed:
    """The outcome for one MQTT message.

    `drone_id`/`seq` are set for accepted messages (used for dedupe); `reason` for dead letters.
    """

    records: tuple[OutRecord, ...]
    drone_id: str | None = None
    seq: int | None = None
    message_id: str | None = None
    reason: str | None = None
    drone_time_ms: int | None = None
    time_trusted: bool = False


def route(topic: str | bytes, payload: bytes, receipt: Receipt, settings: RouteSettings) -> Routed:
    """Turn one MQTT message into records. Never raises."""
    try:
        return _route(topic, payload, receipt, settings)
    except Exception as exc:  # keep the input and the gateway alive, whatever went wrong
        return _dead(INTERNAL_ERROR, f"{type(exc).__name__}: {exc}", payload, receipt, settings,
                     drone_id=None)


def _route(topic: str | bytes, payload: bytes, receipt: Receipt, settings: RouteSettings) -> Routed:
    if isinstance(topic, bytes):
        return _dead(BAD_TOPIC_ENCODING, "MQTT topic is not valid UTF-8", payload, receipt,
                     settings, drone_id=None)
    try:
        topic_drone, topic_kind = protocol.parse_topic(topic)  # memoized: once per topic
    except protocol.ProtocolError as exc:
        return _dead(exc.code, str(exc), payload, receipt, settings,
                     drone_id=_drone_segment(topic), path=exc.path)
    try:
        msg = protocol.decode(payload, topic)  # the topic's parse is a cache hit here
    except protocol.ProtocolError as exc:
        return _dead(exc.code, str(exc), payload, receipt, settings, drone_id=topic_drone,
                     path=exc.path)
    if isinstance(msg, protocol.Violation) and settings.verifier is not None:
        why = settings.verifier(topic, payload, msg)
        if why is not None and (why != UNSIGNED or settings.require_signatures):
            return _dead(BAD_SIGNATURE, why, payload, receipt, settings, drone_id=topic_drone,
                         path="$.signature")
    return _accept(msg, topic_kind, receipt, settings, payload)


def _accept(msg: protocol.Message, kind: protocol.Kind, receipt: Receipt,
            settings: RouteSettings, payload: bytes) -> Routed:
    topics = settings.topics
    target = topics.violations if kind == protocol.Kind.VIOLATION else topics.telemetry
    records = [message_record(msg, target, receipt, settings.max_clock_skew_ms, payload)]
    if isinstance(msg, protocol.Violation) and msg.code is None:
        records.append(alert_record(msg, topics.alerts, receipt))
    header = msg.header
    trusted = header.time_source != protocol.TimeSource.UNSYNCED
    return Routed(tuple(records), drone_id=header.drone_id, seq=header.seq,
                  message_id=protocol.message_id(msg), drone_time_ms=header.time_ms,
                  time_trusted=trusted)


def _dead(reason: str, detail: str, payload: bytes, receipt: Receipt, settings: RouteSettings,
          *, drone_id: str | None, path: str | None = None) -> Routed:
    record = dead_letter_record(reason, detail, payload, settings.topics.deadletter, receipt,
                                path=path, drone_id=drone_id,
                                max_bytes=settings.deadletter_max_bytes)
    return Routed((record,), reason=reason)


def seq_jump(routed: Routed, payload: bytes, receipt: Receipt, settings: RouteSettings,
             top: int) -> Routed:
    """The dead letter of an accepted message whose seq the dedupe refused as a jump."""
    detail = f"seq {routed.seq} is beyond the replay bound above the highest seen, {top}"
    return _dead(SEQ_JUMP, detail, payload, receipt, settings, drone_id=routed.drone_id,
                 path="$.seq")


def _drone_segment(topic: str) -> str | None:
    """The drone id named by a bad topic (unknown kind, extra levels), if that part is valid."""
    parts = topic.split("/")
    if len(parts) < 4:
        return None
    probe = "/".join([*parts[:4], protocol.Kind.TELEMETRY.value])
    try:
        drone_id, _ = protocol.parse_topic(probe)
    except protocol.ProtocolError:
        return None
    return drone_id
