"""The canonical JSON form of a message: a flat object, field names with units, what the gateway
writes to Kafka. Built from the wire array, so it says exactly what the bytes say.

Derived fields (message_id, time, qualified) are written for readers' convenience; `from_json`
accepts them absent but rejects them if they disagree ("inconsistent").
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from protocol import _codec
from protocol._errors import LocalProtocolError, RemoteProtocolError
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
from protocol._validate import is_int, show

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SCHEMA_RE = re.compile(r"([0-9]{1,3})\.([0-9]{1,3})")
_SOURCES = {s.name.lower(): s for s in TimeSource}
_FLAGS = {f.name.lower(): f for f in StatusFlags if f.name and f.value}
_SOURCE_NAMES = {s.value: s.name.lower() for s in TimeSource}
_VEHICLE_KEYS = ("make", "colour", "body")

_COMMON_KEYS = ("schema", "kind", "message_id", "drone_id", "seq", "time_ms", "time", "time_source")
_POSITION_KEYS = ("lat_deg", "lon_deg", "alt_m")
KEYS: dict[Kind, tuple[str, ...]] = {
    Kind.TELEMETRY: (*_COMMON_KEYS, *_POSITION_KEYS,
                     "heading_deg", "speed_mps", "battery_pct", "flags"),
    Kind.VIOLATION: (*_COMMON_KEYS, *_POSITION_KEYS, "plate", "region", "confidence", "code",
                     "qualified", "evidence_id", "vehicle", "key_id", "signature"),
    Kind.STATUS: (*_COMMON_KEYS, "online"),
}
_DERIVED = frozenset({"message_id", "time", "qualified"})
_OPTIONAL = frozenset({"key_id", "signature"})  # 1.1: absent means null (unsigned)


def iso_time(ms: int) -> str:
    """Epoch ms as ISO-8601 UTC with milliseconds, e.g. "2025-06-01T12:00:00.123Z"."""
    return _iso_second(ms // 1000) + f"{ms % 1000:03d}Z"


@functools.lru_cache(maxsize=4096)
def _iso_second(second: int) -> str:
    """The text up to the milliseconds. Cached: a gateway sees the same seconds many times over,
    and strftime is most of to_json's cost otherwise."""
    return (_EPOCH + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S.")


def to_json(msg: Message) -> dict[str, Any]:
    """The canonical JSON form. Raises LocalProtocolError if `msg` is invalid."""
    return json_of_wire(_codec.validated_wire(msg, LocalProtocolError))


def json_of_wire(wire: Sequence[Any]) -> dict[str, Any]:
    """The canonical JSON form of a validated wire array."""
    kind = _codec._KIND_OF_WIRE[wire[1]]
    drone_id, seq = wire[2], wire[3]
    ms = wire[4] * 1000 + (wire[5] >> _codec.SUB_SHIFT) * _codec.TIME_TICK_MS
    out: dict[str, Any] = {
        "schema": _codec.SCHEMA_VERSION,
        "kind": kind.value,
        "message_id": f"{drone_id}:{seq}",
        "drone_id": drone_id,
        "seq": seq,
        "time_ms": ms,
        "time": iso_time(ms),
        "time_source": _source_name(wire[5] & 3),
    }
    if kind is Kind.STATUS:
        out["online"] = wire[6]
        return out
    out["lat_deg"] = wire[6] / LAT_LON_SCALE
    out["lon_deg"] = wire[7] / LAT_LON_SCALE
    out["alt_m"] = wire[8] / ALT_SCALE
    if kind is Kind.TELEMETRY:
        out["heading_deg"] = wire[9] / HEADING_SCALE
        out["speed_mps"] = wire[10] / SPEED_SCALE
        out["battery_pct"] = wire[11]
        ext = wire[13] if len(wire) > 13 else None  # 1.1's flags_ext; validated, nil = 0
        out["flags"] = _flag_names(wire[12] | (ext or 0) << _codec.FLAGS_EXT_SHIFT)
        return out
    details = [*wire[14:17], None, None, None][:3]
    out |= {
        "plate": wire[9],
        "region": wire[10],
        "confidence": wire[11] / CONFIDENCE_SCALE,
        "code": wire[12],
        "qualified": wire[12] is not None,
        "evidence_id": wire[13].hex(),
        "vehicle": _vehicle_json(details),
    }
    key_id, signature = [*wire[17:19], None, None][:2]
    out["key_id"] = key_id
    out["signature"] = signature.hex() if signature is not None else None
    return out


def _source_name(value: int) -> str:
    name = _SOURCE_NAMES.get(value)
    return name if name is not None else TimeSource(value).name.lower()


@functools.lru_cache(maxsize=256)
def _flag_tuple(flags: int) -> tuple[str, ...]:
    return tuple(name for name, flag in _FLAGS.items() if flags & flag)


def _flag_names(flags: int) -> list[str]:
    """The names of the bits set, a fresh list each time (callers may change it)."""
    return list(_flag_tuple(flags))


def _vehicle_json(details: list[str | None]) -> dict[str, str | None] | None:
    if details == [None, None, None]:
        return None
    return dict(zip(_VEHICLE_KEYS, details, strict=True))


def from_json(d: Mapping[str, Any]) -> Message:
    """The message of a canonical JSON object. Raises RemoteProtocolError naming the field."""
    err = RemoteProtocolError
    if not isinstance(d, Mapping):
        raise err("bad_type", f"expected a JSON object, got {type(d).__name__}", "$")
    minor = _schema(d.get("schema"))
    kind = _kind(d.get("kind"))
    _check_keys(d, kind, minor)
    if is_int(d["time_ms"]) and d["time_ms"] % TIME_TICK_MS:  # Header would floor it silently
        raise err("out_of_range", f"{d['time_ms']} is not a multiple of {TIME_TICK_MS} ms, the "
                  "wire's time resolution", "$.time_ms")
    header = Header(d["drone_id"], d["seq"], d["time_ms"], _source(d["time_source"]))
    msg = _build(kind, header, d)
    out = json_of_wire(_codec.to_wire(msg, err))
    for key in _DERIVED & d.keys():
        if d[key] != out[key]:
            raise err("inconsistent", f"{show(d[key])} != {out[key]!r}, derived from the others",
                      f"$.{key}")
    return _codec.from_wire(_codec.to_wire(msg, err))


def _schema(value: object) -> int:
    if not isinstance(value, str):
        raise RemoteProtocolError("bad_type" if value is not None else "missing_field",
                                  "expected a \"major.minor\" string", "$.schema")
    match = _SCHEMA_RE.fullmatch(value)
    if match is None:
        raise RemoteProtocolError("bad_type", f"{show(value)} is not \"major.minor\"", "$.schema")
    if int(match[1]) != _codec.SCHEMA_MAJOR:
        raise RemoteProtocolError("unknown_version", f"unknown schema version {value}", "$.schema")
    return int(match[2])


def _kind(value: object) -> Kind:
    if not isinstance(value, str):
        raise RemoteProtocolError("bad_type" if value is not None else "missing_field",
                                  "expected a kind string", "$.kind")
    try:
        return Kind(value)
    except ValueError:
        raise RemoteProtocolError("unknown_kind", f"unknown kind {show(value)}",
                                  "$.kind") from None


def _check_keys(d: Mapping[str, Any], kind: Kind, minor: int) -> None:
    known = KEYS[kind]
    for key in known:
        if key not in d and key not in _DERIVED and key not in _OPTIONAL:
            raise RemoteProtocolError("missing_field", f"{kind.value} needs {key!r}", f"$.{key}")
    if minor <= _codec.SCHEMA_MINOR:  # a newer minor may add keys; we ignore them
        for key in d:
            if key not in known:
                raise RemoteProtocolError("extra_field", f"unknown key {show(key)}",
                                          f"$.{key}")


def _source(value: object) -> TimeSource | object:
    if isinstance(value, str) and value in _SOURCES:
        return _SOURCES[value]
    if not isinstance(value, str):
        raise RemoteProtocolError("bad_type", "expected a string", "$.time_source")
    raise RemoteProtocolError("out_of_range", f"one of {sorted(_SOURCES)}", "$.time_source")


def _build(kind: Kind, header: Header, d: Mapping[str, Any]) -> Message:
    if kind is Kind.STATUS:
        return Status(header, d["online"])
    position = Position(d["lat_deg"], d["lon_deg"], d["alt_m"])
    if kind is Kind.TELEMETRY:
        return Telemetry(header, position, d["heading_deg"], d["speed_mps"], d["battery_pct"],
                         _flags(d["flags"]))
    return Violation(header, position, d["plate"], d["region"], d["confidence"], d["code"],
                     d["evidence_id"], _vehicle(d["vehicle"]), d.get("key_id"),
                     _signature_hex(d.get("signature")))


def _signature_hex(value: object) -> bytes | object | None:
    """128 hex digits as bytes; anything else is kept for `to_wire` to reject at $.signature."""
    if isinstance(value, str) and len(value) == 128:
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    return value


def _flags(value: object) -> StatusFlags:
    if not isinstance(value, list):
        raise RemoteProtocolError("bad_type", "expected a list of flag names", "$.flags")
    flags = StatusFlags.NONE
    for index, name in enumerate(value):
        if not isinstance(name, str):
            raise RemoteProtocolError("bad_type", "expected a flag name", f"$.flags[{index}]")
        if name not in _FLAGS:
            raise RemoteProtocolError("out_of_range", f"unknown flag {show(name)}",
                                      f"$.flags[{index}]")
        flags |= _FLAGS[name]
    return flags


def _vehicle(value: object) -> Vehicle | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise RemoteProtocolError("bad_type", "expected an object or null", "$.vehicle")
    for key in value:
        if key not in _VEHICLE_KEYS:
            raise RemoteProtocolError("extra_field", f"unknown key {show(key)}",
                                      f"$.vehicle.{key}")
    return Vehicle(*(value.get(key) for key in _VEHICLE_KEYS))


__all__ = ["from_json", "to_json"]
