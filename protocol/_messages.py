"""The message types. Plain frozen dataclasses in natural units; the codec scales them on the wire.

Numbers are quantized to the wire's resolution when a message is built (`__post_init__`), so
`decode(encode(m)) == m` holds for every valid message. Construction never raises: values of a
wrong type or out of range are kept as given and rejected, with the field's path, by `encode`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

# Wire resolution of each scaled quantity: value_on_wire = round(value * scale).
LAT_LON_SCALE = 10**7  # 1e-7 degree, as MAVLink
ALT_SCALE = 1  # metres: GPS altitude is good to a few metres, and 0..127 m is one byte
TIME_TICK_MS = 40  # time resolution: 1/25 s, the finest whole-ms tick whose count and the
# 2-bit time source fit msgpack's one-byte positive fixint (24 << 2 | 3 = 99 <= 127)
HEADING_SCALE = 10  # decidegrees
SPEED_SCALE = 10  # dm/s
CONFIDENCE_SCALE = 100  # percent


def _quantize(value: object, scale: int) -> object:
    """The float rounded to 1/scale. Anything else is returned unchanged: an int is already exact,
    and a non-number, NaN or a float too large to scale is for `encode` to reject."""
    if type(value) is not float:
        return value
    scaled = value * scale
    if not math.isfinite(scaled):
        return value
    return round(scaled) / scale


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)  # the dataclasses are frozen; this is their own init


class Kind(str, enum.Enum):
    """Message kinds; the value is the topic's last level and the JSON "kind"."""

    TELEMETRY = "telemetry"
    VIOLATION = "violation"
    STATUS = "status"


class TimeSource(enum.IntEnum):
    """The drone clock's source. A Pi has no RTC: until GPS or NTP sets it, it may be stale."""

    UNSYNCED = 0  # restored at boot (fake-hwclock) or free-running: plausible, maybe stale
    GPS = 1
    NTP = 2


class StatusFlags(enum.IntFlag):
    """Bits in telemetry `flags`."""

    NONE = 0
    BATTERY_LOW = 1
    LINK_BACKLOG = 2  # the outbox holds messages older than the current link session
    OUTBOX_FULL = 4  # the outbox refused a message: a violation may not have been recorded
    DISK_LOW = 8  # the evidence store is near its quota
    CAMERA_FAULT = 16
    GPS_NO_FIX = 32
    # 1.1: the flight controller's link is down (no MAVLink HEARTBEAT). Bits from 64 up travel
    # in telemetry's appended `flags_ext` (flags >> 6): a new bit in `flags` would break 1.0.
    AUTOPILOT_LOST = 64


@dataclass(frozen=True)
class Header:
    """Fields every message carries. (drone_id, seq) is the message id."""

    drone_id: str  # 1..32 chars of [A-Za-z0-9_-]; on the wire only as the MQTT topic segment
    seq: int  # 0 .. 2**32-1, persisted by the agent, never reused
    time_ms: int  # Unix epoch milliseconds per the drone's clock, floored to TIME_TICK_MS
    time_source: TimeSource

    def __post_init__(self) -> None:
        if type(self.time_ms) is int:  # anything else is for `encode` to reject
            _set(self, "time_ms", self.time_ms - self.time_ms % TIME_TICK_MS)


@dataclass(frozen=True)
class Position:
    lat: float  # degrees, -90..90, 1e-7 resolution (int32 on the wire, as MAVLink)
    lon: float  # degrees, -180..180, 1e-7 resolution
    alt_m: float  # metres above mean sea level, -1000..10000, 1 m resolution

    def __post_init__(self) -> None:
        _set(self, "lat", _quantize(self.lat, LAT_LON_SCALE))
        _set(self, "lon", _quantize(self.lon, LAT_LON_SCALE))
        _set(self, "alt_m", _quantize(self.alt_m, ALT_SCALE))


@dataclass(frozen=True)
class Telemetry:
    header: Header
    position: Position
    heading_deg: float  # 0 <= h < 360, 0.1 degree resolution
    speed_mps: float  # ground speed, 0..200 m/s, 0.1 m/s resolution
    battery_pct: int  # 0..100
    flags: StatusFlags = StatusFlags.NONE

    def __post_init__(self) -> None:
        heading = _quantize(self.heading_deg, HEADING_SCALE)
        if heading == 360.0 and self.heading_deg != 360:
            heading = 0.0  # 359.96 rounds to 360.0, which is north again
        _set(self, "heading_deg", heading)
        _set(self, "speed_mps", _quantize(self.speed_mps, SPEED_SCALE))


@dataclass(frozen=True)
class Vehicle:
    """Optional vehicle details, as the NYPD's parking-violation records carry them."""

    make: str | None = None  # e.g. "TOYOT" (NYC records use up to 5 letters)
    colour: str | None = None  # e.g. "WH", "BLK"
    body: str | None = None  # e.g. "SUBN", "4DSD"


@dataclass(frozen=True)
class Violation:
    header: Header
    position: Position
    plate: str  # 1..8 chars of [A-Z0-9], no spaces
    region: str  # plate state/region, 2 chars of [A-Z] (e.g. "NY", "NJ")
    confidence: float  # recognition confidence 0..1, 0.01 resolution
    code: int | None  # NYC violation code; None = unqualified: a human must set the code
    evidence_id: str  # 16 lowercase hex chars: first 8 bytes of SHA-256 of the JPEG
    vehicle: Vehicle | None = None
    # 1.1: which of the drone's keys signed it (0..65535) and the 64-byte Ed25519 signature over
    # protocol.signing_input(topic, payload); both None when unsigned.
    key_id: int | None = None
    signature: bytes | None = None

    def __post_init__(self) -> None:
        _set(self, "confidence", _quantize(self.confidence, CONFIDENCE_SCALE))
        if self.vehicle == Vehicle():
            _set(self, "vehicle", None)  # no detail at all is the same fact as no vehicle record

    @property
    def qualified(self) -> bool:
        return self.code is not None


@dataclass(frozen=True)
class Status:
    """Online/offline, published retained; the offline form is the MQTT last will."""

    header: Header
    online: bool


Message = Telemetry | Violation | Status

_KINDS: dict[type, Kind] = {
    Telemetry: Kind.TELEMETRY,
    Violation: Kind.VIOLATION,
    Status: Kind.STATUS,
}


def kind_of(msg: Message) -> Kind:
    """The Kind of a message. Raises TypeError if `msg` is not a Telemetry, Violation or Status."""
    try:
        return _KINDS[type(msg)]
    except KeyError:
        raise TypeError(f"not a protocol message: {type(msg).__name__}") from None


def message_id(msg: Message) -> str:
    """The message's id, "<drone_id>:<seq>": unique and stable across retries and reboots, since the
    agent persists `seq` and never reuses it. Raises AttributeError if `msg` has no header."""
    return f"{msg.header.drone_id}:{msg.header.seq}"


__all__ = [
    "Header",
    "Kind",
    "Message",
    "Position",
    "Status",
    "StatusFlags",
    "Telemetry",
    "TimeSource",
    "Vehicle",
    "Violation",
    "kind_of",
    "message_id",
]
