"""Bytes <-> messages. One msgpack array per message, fields by position (docs/protocol.md).

    payload:  [schema, seq, time_s, time_sub, <kind's fields>...]
    topic:    presacop/v1/drones/<drone_id>/<kind>

The drone id and the kind travel once, in the MQTT topic (which the broker can authenticate, and
which every PUBLISH carries anyway), not again in the payload. Inside this module a message is
handled as its *logical* array, the payload with the topic's two facts put back at 1 and 2:

    [schema, kind, drone_id, seq, time_s, time_sub, <kind's fields>...]

Decoding is bounded before anything is allocated: the payload's length is checked against
MAX_MESSAGE_SIZE, and msgpack's max_*_len limits stop a short payload from announcing a huge
str/bin/array/map. Anything msgpack raises is translated into a RemoteProtocolError, so only
ProtocolError leaves `decode`, whatever the bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack

from protocol import _validate as v
from protocol._errors import (
    ErrorClass,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from protocol._messages import (
    ALT_SCALE,
    CONFIDENCE_SCALE,
    HEADING_SCALE,
    LAT_LON_SCALE,
    SPEED_SCALE,
    TIME_TICK_MS,
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
)
from protocol._topics import parse_topic

SCHEMA_MAJOR = 1
SCHEMA_MINOR = 1
SCHEMA_VERSION = f"{SCHEMA_MAJOR}.{SCHEMA_MINOR}"
WIRE_VERSION = SCHEMA_MAJOR << 4 | SCHEMA_MINOR  # one byte on the wire: 0x11 for 1.1

MAX_MESSAGE_SIZE = 512  # bytes; the largest 1.0 message is under 100 bytes, the rest is for minors
MAX_FIELDS = 64  # top-level array length any minor of major 1 may use
_LIMITS: dict[str, int] = {  # per msgpack value, for every minor of major 1
    "max_str_len": 255,
    "max_bin_len": 255,
    "max_array_len": MAX_FIELDS,
    "max_map_len": 32,
    "max_ext_len": 255,
}

WIRE_KIND: dict[Kind, int] = {Kind.TELEMETRY: 0, Kind.VIOLATION: 1, Kind.STATUS: 2}
_KIND_OF_WIRE = {n: k for k, n in WIRE_KIND.items()}

_HEADER_FIELDS = ("schema", "kind", "drone_id", "seq", "time_ms", "time_sub")
_POSITION_FIELDS = ("lat_deg", "lon_deg", "alt_m")
# Field names by position, as paths "$.<name>" (the time's two wire fields both report "$.time_ms"
# except the time-source bits, which report "$.time_source").
FIELDS: dict[Kind, tuple[str, ...]] = {
    Kind.TELEMETRY: (*_HEADER_FIELDS, *_POSITION_FIELDS,
                     "heading_deg", "speed_mps", "battery_pct", "flags", "flags_ext"),
    Kind.VIOLATION: (*_HEADER_FIELDS, *_POSITION_FIELDS, "plate", "region", "confidence", "code",
                     "evidence_id", "vehicle.make", "vehicle.colour", "vehicle.body",
                     "key_id", "signature"),
    Kind.STATUS: (*_HEADER_FIELDS, "online"),
}
_OPTIONAL_TAIL = {Kind.TELEMETRY: 1, Kind.VIOLATION: 5, Kind.STATUS: 0}  # may be absent or nil
_VIOLATION_REQUIRED = len(FIELDS[Kind.VIOLATION]) - _OPTIONAL_TAIL[Kind.VIOLATION]
# The minor that appended each field after 1.0 (append-only: a kind's fields are in minor order).
# A payload of an older minor carrying such a field has an extra field.
_ADDED_IN: dict[tuple[Kind, str], int] = {
    (Kind.TELEMETRY, "flags_ext"): 1,
    (Kind.VIOLATION, "key_id"): 1,
    (Kind.VIOLATION, "signature"): 1,
}
# Logical fields a message of (kind, minor) may carry; newer minors than ours: every field we know.
_KNOWN_FIELDS: dict[tuple[Kind, int], int] = {
    (kind, minor): sum(1 for name in names if _ADDED_IN.get((kind, name), 0) <= minor)
    for kind, names in FIELDS.items() for minor in range(16)
}

# Wire ranges of scaled quantities, inclusive.
LAT_RANGE = (-90 * LAT_LON_SCALE, 90 * LAT_LON_SCALE)
LON_RANGE = (-180 * LAT_LON_SCALE, 180 * LAT_LON_SCALE)
ALT_RANGE = (-1000 * ALT_SCALE, 10000 * ALT_SCALE)
HEADING_RANGE = (0, 360 * HEADING_SCALE - 1)
SPEED_RANGE = (0, 200 * SPEED_SCALE)
CONFIDENCE_RANGE = (0, CONFIDENCE_SCALE)
FLAGS_MAX = sum(int(flag) for flag in StatusFlags.__members__.values())  # every defined bit
FLAGS_EXT_SHIFT = 6  # `flags` carries bits 0..5 (1.0's); `flags_ext` (1.1) the rest, shifted
FLAGS_WIRE_MAX = (1 << FLAGS_EXT_SHIFT) - 1
FLAGS_EXT_MAX = FLAGS_MAX >> FLAGS_EXT_SHIFT
SUB_SHIFT = 2  # time_sub = tick << 2 | time_source, tick = (ms % 1000) // TIME_TICK_MS
TICKS_PER_SECOND = 1000 // TIME_TICK_MS
SUB_MAX = (TICKS_PER_SECOND - 1) << SUB_SHIFT | 3
TOPIC_FIELDS = 2  # logical positions 1 and 2 (kind, drone_id) come from the topic


def _path(kind: Kind | None, index: int) -> str:
    """The path of logical position `index`; past the known fields, the payload's index."""
    names = FIELDS[kind] if kind is not None else _HEADER_FIELDS
    if index < len(names):
        name = names[index]
        return "$.time_ms" if name == "time_sub" else f"$.{name}"
    return f"$[{index - TOPIC_FIELDS}]"


def _logical(payload: list[Any], drone_id: str, kind: Kind) -> list[Any]:
    """The payload array with the topic's kind and drone id at logical positions 1 and 2."""
    if not payload:
        return payload  # no schema: _envelope says so
    return [payload[0], WIRE_KIND[kind], drone_id, *payload[1:]]


# --- encode -------------------------------------------------------------------------------------


def encode(msg: Message) -> bytes:
    """The message's payload as msgpack bytes; publish it on `topic(drone_id, kind)`, which
    carries the drone id and the kind. Raises LocalProtocolError if the message is invalid."""
    logical = to_wire(msg, LocalProtocolError)
    del logical[1 : 1 + TOPIC_FIELDS]
    return msgpack.packb(logical, use_bin_type=True)


def to_wire(msg: object, err: ErrorClass) -> list[Any]:
    """The message's logical array (plain ints/str/bytes/None), validated; raises `err`."""
    if isinstance(msg, Telemetry):
        return [*_header_to_wire(msg.header, Kind.TELEMETRY, err), *_telemetry_body(msg, err)]
    if isinstance(msg, Violation):
        return [*_header_to_wire(msg.header, Kind.VIOLATION, err), *_violation_body(msg, err)]
    if isinstance(msg, Status):
        online = v.boolean(msg.online, "$.online", err)
        return [*_header_to_wire(msg.header, Kind.STATUS, err), online]
    raise err("bad_type", f"not a protocol message: {type(msg).__name__}", "$")


def _header_to_wire(header: object, kind: Kind, err: ErrorClass) -> list[Any]:
    if not isinstance(header, Header):
        raise err("bad_type", f"expected a Header, got {type(header).__name__}", "$.header")
    drone_id = v.text(header.drone_id, "$.drone_id", v.DRONE_ID_RE, err)
    seq = v.int_in(header.seq, "$.seq", 0, v.UINT32_MAX, err)
    secs, ms = divmod(v.time_ms(header.time_ms, "$.time_ms", err), 1000)
    source = v.int_in(header.time_source, "$.time_source", 0, max(TimeSource), err)
    return [WIRE_VERSION, WIRE_KIND[kind], drone_id, seq, secs,
            ms // TIME_TICK_MS << SUB_SHIFT | source]


def _position_to_wire(pos: object, err: ErrorClass) -> list[int]:
    if not isinstance(pos, Position):
        raise err("bad_type", f"expected a Position, got {type(pos).__name__}", "$.position")
    return [
        v.scaled(pos.lat, LAT_LON_SCALE, "$.lat_deg", *LAT_RANGE, err),
        v.scaled(pos.lon, LAT_LON_SCALE, "$.lon_deg", *LON_RANGE, err),
        v.scaled(pos.alt_m, ALT_SCALE, "$.alt_m", *ALT_RANGE, err),
    ]


def _telemetry_body(msg: Telemetry, err: ErrorClass) -> list[Any]:
    flags = v.int_in(msg.flags, "$.flags", 0, FLAGS_MAX, err)
    body = [
        *_position_to_wire(msg.position, err),
        v.scaled(msg.heading_deg, HEADING_SCALE, "$.heading_deg", *HEADING_RANGE, err),
        v.scaled(msg.speed_mps, SPEED_SCALE, "$.speed_mps", *SPEED_RANGE, err),
        v.int_in(msg.battery_pct, "$.battery_pct", 0, 100, err),
        flags & FLAGS_WIRE_MAX,
    ]
    if flags >> FLAGS_EXT_SHIFT:  # canonical form: left out when no such flag is set
        body.append(flags >> FLAGS_EXT_SHIFT)
    return body


def _violation_body(msg: Violation, err: ErrorClass) -> list[Any]:
    body: list[Any] = [
        *_position_to_wire(msg.position, err),
        v.text(msg.plate, "$.plate", v.PLATE_RE, err, code="bad_plate"),
        v.text(msg.region, "$.region", v.REGION_RE, err),
        v.scaled(msg.confidence, CONFIDENCE_SCALE, "$.confidence", *CONFIDENCE_RANGE, err),
        v.violation_code(msg.code, "$.code", err),
        v.evidence_from_hex(msg.evidence_id, "$.evidence_id", err),
    ]
    if msg.vehicle is not None or msg.key_id is not None or msg.signature is not None:
        body += _vehicle_to_wire(msg.vehicle or Vehicle(), err)
    if msg.key_id is not None or msg.signature is not None:
        body += v.signature_fields(msg.key_id, msg.signature, err)
    while len(_HEADER_FIELDS) + len(body) > _VIOLATION_REQUIRED and body[-1] is None:
        body.pop()  # canonical form: trailing absent details are left out, not sent as nil
    return body


def _vehicle_to_wire(vehicle: object, err: ErrorClass) -> list[str | None]:
    if not isinstance(vehicle, Vehicle):
        raise err("bad_type", f"expected a Vehicle or None, got {type(vehicle).__name__}",
                  "$.vehicle")
    return [
        v.optional_text(vehicle.make, "$.vehicle.make", v.VEHICLE_TEXT_RE, err),
        v.optional_text(vehicle.colour, "$.vehicle.colour", v.VEHICLE_TEXT_RE, err),
        v.optional_text(vehicle.body, "$.vehicle.body", v.VEHICLE_TEXT_RE, err),
    ]


# --- decode -------------------------------------------------------------------------------------


def decode(data: bytes | bytearray | memoryview, topic: str) -> Message:
    """The message in payload `data` received on MQTT `topic`, which names its drone and kind.
    Raises TopicError for a malformed topic and RemoteProtocolError (code, path) for an invalid
    payload, and nothing else: no msgpack, Unicode or memory error escapes."""
    drone_id, kind = parse_topic(topic)
    return from_wire(_logical(unpack(data, kind), drone_id, kind))


def unpack(data: object, kind: Kind | None = None) -> list[Any]:
    """The payload's top-level msgpack array, within the size limits; raises RemoteProtocolError
    (with field paths of `kind` when it is known)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise RemoteProtocolError("bad_type", f"expected bytes, got {type(data).__name__}", "$")
    if isinstance(data, memoryview) and (data.itemsize != 1 or not data.c_contiguous):
        # msgpack raises BufferError for a view of multi-byte items: read its bytes instead.
        data = data.cast("B") if data.c_contiguous else data.tobytes()
    size = memoryview(data).nbytes
    if size > MAX_MESSAGE_SIZE:
        # The version goes first (protocol.md): another major may allow larger messages.
        raise _foreign_major(data) or RemoteProtocolError(
            "oversized", f"{size} bytes > the limit {MAX_MESSAGE_SIZE}")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, **_LIMITS)
    except msgpack.ExtraData:
        raise RemoteProtocolError("trailing_bytes", "bytes after the message's array") from None
    except Exception:  # every msgpack failure becomes a precise ProtocolError below
        raise _foreign_major(data) or _diagnose(data, kind) from None
    if not isinstance(obj, list):
        raise RemoteProtocolError("bad_type", f"expected an array, got {type(obj).__name__}", "$")
    return obj


_NEVER_USED = b"\xc1"  # the one byte msgpack reserves
_VERSION_PEEK = 16  # bytes: an array header (<= 5) and an integer (<= 9)


def _foreign_major(data: bytes | bytearray | memoryview) -> ProtocolError | None:
    """`unknown_version` when the payload starts like an array whose first item is an integer
    version of another major; None otherwise. Lets the version be judged before 1.x's limits."""
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=_VERSION_PEEK)
    unpacker.feed(bytes(memoryview(data)[:_VERSION_PEEK]))
    try:
        unpacker.read_array_header()
        version = unpacker.unpack()
    except Exception:  # not an array starting with a whole value: the 1.x rules say what it is
        return None
    if v.is_int(version) and (version < 0 or version >> 4 != SCHEMA_MAJOR):
        return RemoteProtocolError("unknown_version",
                                   f"unknown schema version {version} (major {version >> 4})",
                                   "$.schema")
    return None


def _diagnose(data: bytes | bytearray | memoryview, kind: Kind | None) -> ProtocolError:
    """Why `data` does not unpack, found by unpacking it one field at a time (slow path only)."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True,
                                max_buffer_size=MAX_MESSAGE_SIZE, **_LIMITS)
    unpacker.feed(data)
    try:
        count = unpacker.read_array_header()
    except msgpack.OutOfData:
        return RemoteProtocolError("truncated", "the payload ends before the array header")
    except Exception:  # not an array header: a reserved byte, or another type
        if bytes(data[:1]) == _NEVER_USED:
            return RemoteProtocolError("malformed", "0xc1 is not a msgpack type")
        return RemoteProtocolError("bad_type", "expected a msgpack array", "$")
    if count > MAX_FIELDS:
        return RemoteProtocolError("oversized", f"{count} fields > {MAX_FIELDS}", "$")
    for index in range(count):
        path = _path(kind, index + TOPIC_FIELDS if index else 0)
        try:
            unpacker.unpack()  # a field at a time, to name the one that fails
        except msgpack.OutOfData:
            return RemoteProtocolError("truncated", "the payload ends inside this field", path)
        except Exception as exc:  # anything else msgpack may raise, translated
            return _unpack_error(exc, path)
    return RemoteProtocolError("malformed", "not valid msgpack")


def _unpack_error(exc: Exception, path: str) -> ProtocolError:
    if isinstance(exc, UnicodeDecodeError):
        return RemoteProtocolError("malformed", "str is not valid UTF-8", path)
    if isinstance(exc, ValueError) and "exceeds max" in str(exc):
        return RemoteProtocolError("oversized", f"value beyond the decoder's limits: {exc}", path)
    if isinstance(exc, ValueError) and "not allowed for map key" in str(exc):
        # Valid msgpack (a map or array as a map key), but no field of ours has that type.
        return RemoteProtocolError("bad_type", f"a map key must be a string or bytes: {exc}", path)
    return RemoteProtocolError("malformed", f"not valid msgpack ({type(exc).__name__})", path)


def from_wire(fields: Sequence[Any]) -> Message:
    """The message of a logical array; raises RemoteProtocolError."""
    kind, minor = _envelope(fields)
    fields = _fit_length(fields, kind, minor)
    header = _header_from_wire(fields)
    msg: Message
    if kind is Kind.TELEMETRY:
        msg = _telemetry_from_wire(header, fields)
    elif kind is Kind.VIOLATION:
        msg = _violation_from_wire(header, fields)
    else:
        msg = Status(header, v.boolean(fields[6], "$.online", RemoteProtocolError))
    # The gateway's hot path is decode then to_json: remember the array just validated so that
    # to_json need not scale and validate it again. Not a field: equality and repr ignore it,
    # and dataclasses.replace() makes a message without it.
    object.__setattr__(msg, _WIRE_MEMO, tuple(fields))
    return msg


_WIRE_MEMO = "_protocol_wire"


def validated_wire(msg: object, err: ErrorClass) -> Sequence[Any]:
    """The wire array of `msg`: the one `decode` validated, else `to_wire(msg, err)`.
    Not canonical bytes-wise (it may hold a newer minor's version or explicit nils), so it is for
    reading values, never for encoding."""
    memo = getattr(msg, "__dict__", {}).get(_WIRE_MEMO)
    return memo if memo is not None else to_wire(msg, err)


def _envelope(fields: Sequence[Any]) -> tuple[Kind, int]:
    """(kind, minor) of a logical array. The version goes first: a new major may change the rest."""
    err = RemoteProtocolError
    if not fields:
        raise err("missing_field", "empty array", "$.schema")
    version = fields[0]
    if not v.is_int(version):
        raise err("bad_type", f"expected an integer, got {type(version).__name__}", "$.schema")
    if version < 0 or version >> 4 != SCHEMA_MAJOR:
        raise err("unknown_version", f"unknown schema version {version} (major {version >> 4})",
                  "$.schema")
    if len(fields) < 2:
        raise err("missing_field", "no kind", "$.kind")
    wire_kind = fields[1]
    if not v.is_int(wire_kind):
        raise err("bad_type", f"expected an integer, got {type(wire_kind).__name__}", "$.kind")
    if wire_kind not in _KIND_OF_WIRE:
        raise err("unknown_kind", f"unknown message kind {wire_kind}", "$.kind")
    return _KIND_OF_WIRE[wire_kind], version & 0x0F


def _fit_length(fields: Sequence[Any], kind: Kind, minor: int) -> Sequence[Any]:
    """The fields this minor knows; a newer minor's appended fields are dropped, unread."""
    required = len(FIELDS[kind]) - _OPTIONAL_TAIL[kind]
    if len(fields) < required:
        raise RemoteProtocolError("missing_field", f"{kind.value} needs {required - TOPIC_FIELDS} "
                                  f"fields, got {len(fields) - TOPIC_FIELDS}",
                                  _path(kind, len(fields)))
    known = _KNOWN_FIELDS[kind, minor]
    if len(fields) > known:
        if minor <= SCHEMA_MINOR:
            raise RemoteProtocolError("extra_field", f"{kind.value} {SCHEMA_MAJOR}.{minor} has "
                                      f"{known - TOPIC_FIELDS} fields, got "
                                      f"{len(fields) - TOPIC_FIELDS}", f"$[{known - TOPIC_FIELDS}]")
        return fields[:known]
    return fields


def _header_from_wire(fields: Sequence[Any]) -> Header:
    err = RemoteProtocolError
    drone_id = v.text(fields[2], "$.drone_id", v.DRONE_ID_RE, err)
    seq = v.int_in(fields[3], "$.seq", 0, v.UINT32_MAX, err)
    # The window's ends are whole seconds, so checking the seconds checks the time.
    secs = v.int_in(fields[4], "$.time_ms", v.TIME_MIN_MS // 1000, v.TIME_MAX_MS // 1000 - 1, err,
                    code="invalid_time")
    sub = v.int_in(fields[5], "$.time_ms", 0, SUB_MAX, err)
    source = sub & ((1 << SUB_SHIFT) - 1)
    if source > max(TimeSource):
        raise err("out_of_range", f"unknown time source {source}", "$.time_source")
    return Header(drone_id, seq, secs * 1000 + (sub >> SUB_SHIFT) * TIME_TICK_MS,
                  TimeSource(source))


def _position_from_wire(fields: Sequence[Any]) -> Position:
    err = RemoteProtocolError
    lat = v.int_in(fields[6], "$.lat_deg", *LAT_RANGE, err)
    lon = v.int_in(fields[7], "$.lon_deg", *LON_RANGE, err)
    alt = v.int_in(fields[8], "$.alt_m", *ALT_RANGE, err)
    return Position(lat / LAT_LON_SCALE, lon / LAT_LON_SCALE, alt / ALT_SCALE)


def _telemetry_from_wire(header: Header, fields: Sequence[Any]) -> Telemetry:
    err = RemoteProtocolError
    return Telemetry(
        header,
        _position_from_wire(fields),
        v.int_in(fields[9], "$.heading_deg", *HEADING_RANGE, err) / HEADING_SCALE,
        v.int_in(fields[10], "$.speed_mps", *SPEED_RANGE, err) / SPEED_SCALE,
        v.int_in(fields[11], "$.battery_pct", 0, 100, err),
        StatusFlags(wire_flags(fields, err)),
    )


def wire_flags(fields: Sequence[Any], err: ErrorClass) -> int:
    """Telemetry's flags from `flags` and, from 1.1, `flags_ext` (absent or nil: none)."""
    flags = v.int_in(fields[12], "$.flags", 0, FLAGS_WIRE_MAX, err)
    ext = fields[13] if len(fields) > 13 else None
    if ext is None:
        return flags
    return flags | v.int_in(ext, "$.flags_ext", 0, FLAGS_EXT_MAX, err) << FLAGS_EXT_SHIFT


def _violation_from_wire(header: Header, fields: Sequence[Any]) -> Violation:
    err = RemoteProtocolError
    position = _position_from_wire(fields)
    plate = v.text(fields[9], "$.plate", v.PLATE_RE, err, code="bad_plate")
    region = v.text(fields[10], "$.region", v.REGION_RE, err)
    confidence = v.int_in(fields[11], "$.confidence", *CONFIDENCE_RANGE, err) / CONFIDENCE_SCALE
    code = v.violation_code(fields[12], "$.code", err)
    evidence = v.evidence_bytes(fields[13], "$.evidence_id", err)
    details = [*fields[14:17], None, None, None][:3]
    vehicle = Vehicle(
        v.optional_text(details[0], "$.vehicle.make", v.VEHICLE_TEXT_RE, err),
        v.optional_text(details[1], "$.vehicle.colour", v.VEHICLE_TEXT_RE, err),
        v.optional_text(details[2], "$.vehicle.body", v.VEHICLE_TEXT_RE, err),
    )
    key_id, signature = [*fields[17:19], None, None][:2]
    if key_id is not None or signature is not None:
        key_id, signature = v.signature_fields(key_id, signature, err)
    return Violation(header, position, plate, region, confidence, code, evidence, vehicle,
                     key_id, signature)
