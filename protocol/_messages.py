"""The message types. Plain frozen dataclasses in natural units; the codec scales them on the wire.

Values are quantized to the wire's resolution when a message is built (see `_QUANTA`), so
`decode(encode(m)) == m` holds for every valid message.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class TimeSource(enum.IntEnum):
    """Where the drone's clock came from. A Pi has no RTC: until GPS or NTP sets it, time is stale."""

    UNSYNCED = 0  # restored from disk at boot (fake-hwclock) or free-running: plausible, maybe stale
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


@dataclass(frozen=True)
class Header:
    """Fields every message carries. (drone_id, seq) is the message id."""

    drone_id: str  # 1..32 chars of [A-Za-z0-9_-]; also the MQTT topic segment
    seq: int  # 0 .. 2**32-1, persisted by the agent, never reused
    time_ms: int  # Unix epoch milliseconds per the drone's clock
    time_source: TimeSource


@dataclass(frozen=True)
class Position:
    lat: float  # degrees, -90..90, 1e-7 resolution (int32 on the wire, as MAVLink)
    lon: float  # degrees, -180..180, 1e-7 resolution
    alt_m: float  # metres above mean sea level, -1000..10000, 0.1 m resolution


@dataclass(frozen=True)
class Telemetry:
    header: Header
    position: Position
    heading_deg: float  # 0 <= h < 360, 0.1 degree resolution
    speed_mps: float  # ground speed, 0..200 m/s, 0.1 m/s resolution
    battery_pct: int  # 0..100
    flags: StatusFlags = StatusFlags.NONE


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

    @property
    def qualified(self) -> bool:
        return self.code is not None


@dataclass(frozen=True)
class Status:
    """Online/offline, published retained; the offline form is the MQTT last will."""

    header: Header
    online: bool


Message = Telemetry | Violation | Status

__all__ = [
    "Header",
    "Message",
    "Position",
    "Status",
    "StatusFlags",
    "Telemetry",
    "TimeSource",
    "Vehicle",
    "Violation",
]
