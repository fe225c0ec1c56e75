"""The validating fast path of `router.route` for the messages drones send all day: telemetry, and
violations with a code and no signature when no verifier is configured.

It reads the msgpack array and writes the record's JSON text straight from it, without the
protocol's message objects or a JSON encoder, and returns None at the first thing that is not
plainly valid: then `router.route` runs the full decoder, which says exactly what is wrong (the
error codes and paths of docs/protocol.md), or accepts the unusual valid message (another minor,
explicit nils, an unqualified violation that raises an alert, a signed one). So the fast path
accepts a subset of what `protocol.decode` accepts and never rejects anything itself.

Same bytes: the record is byte-for-byte `records.message_record(protocol.decode(...))`. The text
is built from the same values the protocol's JSON form holds (floats are written with `repr`,
as `json` does; every string a valid message may carry here is plain ASCII of [A-Za-z0-9_/&.-],
which JSON writes unescaped; the gateway id is escaped once by `json`).
tests/gateway/test_fastpath.py checks it on every protocol vector and on mutated payloads.

The protocol's constants (ranges, field counts) are read from protocol's modules so that the
two cannot drift apart. Raises nothing: any failure of its own returns None (the full path).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import msgpack

import protocol
from protocol import _codec as c
from protocol import _json as pj
from protocol import _validate as v

from .records import RECORD_VERSION, OutRecord, Receipt, _headers
from .router import Routed, RouteSettings  # router does not import this module: no cycle

_TELEMETRY, _VIOLATION = protocol.Kind.TELEMETRY, protocol.Kind.VIOLATION
_UNPACK = functools.partial(msgpack.unpackb, raw=False, strict_map_key=True, **c._LIMITS)
_MAX_SIZE = c.MAX_MESSAGE_SIZE
_SCHEMA = json.dumps(c.SCHEMA_VERSION)
_SECS = (v.TIME_MIN_MS // 1000, v.TIME_MAX_MS // 1000 - 1)
_SUB_MAX, _SHIFT, _TICK = c.SUB_MAX, c.SUB_SHIFT, c.TIME_TICK_MS
_MAX_SOURCE = int(max(protocol.TimeSource))
_UINT32_MAX = v.UINT32_MAX
_UNSYNCED = int(protocol.TimeSource.UNSYNCED)
_SOURCES = {s.value: json.dumps(s.name.lower()) for s in protocol.TimeSource}
_LAT, _LON, _ALT = c.LAT_RANGE, c.LON_RANGE, c.ALT_RANGE
_LL, _ALT_SCALE = c.LAT_LON_SCALE, c.ALT_SCALE
_HEADING_SCALE, _SPEED_SCALE, _CONF_SCALE = c.HEADING_SCALE, c.SPEED_SCALE, c.CONFIDENCE_SCALE
_HEADING, _SPEED, _CONF = c.HEADING_RANGE, c.SPEED_RANGE, c.CONFIDENCE_RANGE
_FLAGS_MAX, _EXT_MAX, _EXT_SHIFT = c.FLAGS_WIRE_MAX, c.FLAGS_EXT_MAX, c.FLAGS_EXT_SHIFT
_CODES = protocol.VIOLATION_CODES
_PLATE, _REGION = v.PLATE_RE.fullmatch, v.REGION_RE.fullmatch
# Cached: a fleet reports few distinct makes, colours and bodies (the regex was 3% of the
# gateway's GIL time); a str is immutable, so its verdict cannot change.
_VEHICLE = functools.lru_cache(maxsize=4096)(
    lambda d: v.VEHICLE_TEXT_RE.fullmatch(d) is not None)
_BOOL = {True: "true", False: "false"}


def _lengths(kind: protocol.Kind) -> dict[int, tuple[int, int]]:
    """Wire version -> (fewest, most) payload fields a minor we know may carry for `kind`."""
    required = len(c.FIELDS[kind]) - c._OPTIONAL_TAIL[kind] - c.TOPIC_FIELDS
    return {c.SCHEMA_MAJOR << 4 | minor: (required, c._KNOWN_FIELDS[kind, minor] - c.TOPIC_FIELDS)
            for minor in range(c.SCHEMA_MINOR + 1)}


_TELEMETRY_LENGTHS = _lengths(_TELEMETRY)
_VIOLATION_LENGTHS = _lengths(_VIOLATION)


@functools.lru_cache(maxsize=256)
def _flags_json(flags: int) -> str:
    return json.dumps(list(pj._flag_tuple(flags)), separators=(",", ":"), ensure_ascii=False)


@functools.lru_cache(maxsize=64)
def _text(value: str) -> str:
    """A string as JSON, as the records' encoder writes it (the gateway id: one per gateway)."""
    return json.dumps(value, ensure_ascii=False)


def _int(x: Any, lo: int, hi: int) -> bool:
    return type(x) is int and lo <= x <= hi


def fast_route(topic: Any, payload: Any, receipt: Receipt,
               settings: RouteSettings) -> Routed | None:
    """The Routed of a plainly valid message, or None: let the full path decide. Never raises."""
    try:
        return _fast(topic, payload, receipt, settings)
    except Exception:  # a bug here must not cost a message: the full path decides instead
        return None


def _fast(topic: Any, payload: Any, receipt: Receipt, settings: RouteSettings) -> Routed | None:
    if (type(topic) is not str or type(payload) is not bytes or len(payload) > _MAX_SIZE
            or type(receipt.retained) is not bool):
        return None
    try:
        drone_id, kind = protocol.parse_topic(topic)
        w = _UNPACK(payload)
    except Exception:
        return None
    if type(w) is not list or not w:
        return None
    if kind is _TELEMETRY:
        lengths, name = _TELEMETRY_LENGTHS.get(w[0]), "telemetry"
    elif kind is _VIOLATION and settings.verifier is None:
        lengths, name = _VIOLATION_LENGTHS.get(w[0]), "violation"
    else:
        return None
    if lengths is None or not lengths[0] <= len(w) <= lengths[1] or type(w[0]) is not int:
        return None
    seq, secs, sub, lat, lon, alt = w[1], w[2], w[3], w[4], w[5], w[6]
    int_ = int  # the checks inlined: this is the per-message cost
    if not (type(seq) is int_ and 0 <= seq <= _UINT32_MAX
            and type(secs) is int_ and _SECS[0] <= secs <= _SECS[1]
            and type(sub) is int_ and 0 <= sub <= _SUB_MAX and (sub & 3) <= _MAX_SOURCE
            and type(lat) is int_ and _LAT[0] <= lat <= _LAT[1]
            and type(lon) is int_ and _LON[0] <= lon <= _LON[1]
            and type(alt) is int_ and _ALT[0] <= alt <= _ALT[1]):
        return None
    source = sub & 3
    ms = secs * 1000 + (sub >> _SHIFT) * _TICK
    mid = f"{drone_id}:{seq}"
    head = (f'{{"schema":{_SCHEMA},"kind":"{name}","message_id":"{mid}",'
            f'"drone_id":"{drone_id}","seq":{seq},"time_ms":{ms},"time":"{pj.iso_time(ms)}",'
            f'"time_source":{_SOURCES[source]},"lat_deg":{lat / _LL!r},'
            f'"lon_deg":{lon / _LL!r},"alt_m":{alt / _ALT_SCALE!r},')
    body = _telemetry(w) if kind is _TELEMETRY else _violation(w)
    if body is None:
        return None
    received = receipt.received_ms
    suspect = source == _UNSYNCED or ms - received > settings.max_clock_skew_ms
    tail = (f'"record_version":"{RECORD_VERSION}","received_ms":{received},'
            f'"gateway_id":{_text(receipt.gateway_id)},"delay_ms":{received - ms},'
            f'"clock_suspect":{_BOOL[suspect]},"retained":{_BOOL[receipt.retained]}')
    if kind is _VIOLATION:
        tail += ',"code_status":"drone","revision":0'
        target = settings.topics.violations
    else:
        target = settings.topics.telemetry
    value = (head + body + tail + "}").encode()
    record = OutRecord(target, drone_id.encode(), value, _headers(name, mid), name)
    return Routed((record,), drone_id=drone_id, seq=seq, message_id=mid, drone_time_ms=ms,
                  time_trusted=source != _UNSYNCED)


def _telemetry(w: list[Any]) -> str | None:
    heading, speed, battery, flags = w[7], w[8], w[9], w[10]
    if not (_int(heading, *_HEADING) and _int(speed, *_SPEED) and _int(battery, 0, 100)
            and _int(flags, 0, _FLAGS_MAX)):
        return None
    if len(w) > 11 and w[11] is not None:
        if not _int(w[11], 0, _EXT_MAX):
            return None
        flags |= w[11] << _EXT_SHIFT
    return (f'"heading_deg":{heading / _HEADING_SCALE!r},"speed_mps":{speed / _SPEED_SCALE!r},'
            f'"battery_pct":{battery},"flags":{_flags_json(flags)},')


def _violation(w: list[Any]) -> str | None:
    plate, region, conf, code, evidence = w[7], w[8], w[9], w[10], w[11]
    # An unqualified violation (code nil) also raises an alert: the full path builds both.
    if not (type(plate) is str and _PLATE(plate) and type(region) is str and _REGION(region)
            and _int(conf, *_CONF) and type(code) is int and code in _CODES
            and type(evidence) is bytes and len(evidence) == v.EVIDENCE_BYTES):
        return None
    details = [*w[12:15], None, None, None][:3]
    for d in details:
        if d is not None and not (type(d) is str and _VEHICLE(d)):
            return None
    if any(x is not None for x in w[15:]):  # signed: the full path keeps wire_b64
        return None
    if details == [None, None, None]:
        vehicle = "null"
    else:
        make, colour, body = (f'"{d}"' if d is not None else "null" for d in details)
        vehicle = f'{{"make":{make},"colour":{colour},"body":{body}}}'
    return (f'"plate":"{plate}","region":"{region}","confidence":{conf / _CONF_SCALE!r},'
            f'"code":{code},"qualified":true,"evidence_id":"{evidence.hex()}",'
            f'"vehicle":{vehicle},"key_id":null,"signature":null,')
