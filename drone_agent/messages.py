"""Turn what the hardware and the recognizer report into wire messages (pure functions).

Plug-ins and devices are not ours, so their values are normalised here rather than trusted:
plate text is upper-cased with spaces and dashes removed, headings wrap into [0, 360), speed,
battery and confidence are clamped, vehicle details that the protocol cannot carry are dropped,
and a code the protocol does not know turns the violation into an unqualified one (a human sets
the code) instead of losing it. A clock before 2020 (a Pi without RTC that has not been told the
time) is sent as 2020-01-01 with time_source UNSYNCED: the message still goes out and the gateway's
receive time tells the truth.

Raises: `protocol.LocalProtocolError` when a message cannot be made valid (e.g. an empty plate).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable

import protocol
from drone_agent.hardware import Fix, PowerReading
from drone_agent.recognizer import PlateRead
from protocol import (
    Header,
    LocalProtocolError,
    Position,
    Status,
    StatusFlags,
    Telemetry,
    TimeSource,
    Vehicle,
    Violation,
)

EARLIEST_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z: the protocol's plausible-time floor
NO_POSITION = Position(0.0, 0.0, 0.0)  # "null island": sent only before any fix ever arrived
_PLATE_JUNK = re.compile(r"[\s\-.·]")
_VEHICLE_TEXT = re.compile(r"[A-Z0-9/&.-]{1,8}")


def normalise_plate(text: str) -> str:
    """Plate text as the wire wants it: upper case, no spaces, dashes or dots."""
    return _PLATE_JUNK.sub("", text).upper()


def header(drone_id: str, seq: int, time_s: float, source: TimeSource) -> Header:
    """A header stamped `time_s` (Unix seconds), clamped to the plausible window."""
    ms = int(time_s * 1000)
    if ms < EARLIEST_MS:
        ms, source = EARLIEST_MS, TimeSource.UNSYNCED
    return Header(drone_id=drone_id, seq=seq, time_ms=ms, time_source=source)


def position(fix: Fix | None) -> Position:
    """The fix's position, or `NO_POSITION`."""
    if fix is None:
        return NO_POSITION
    return Position(lat=fix.lat, lon=fix.lon, alt_m=min(10_000.0, max(-1_000.0, fix.alt_m)))


def valid_fix(fix: Fix | None) -> Fix | None:
    """`fix` if its numbers are usable, else None (treated as no fix)."""
    if fix is None:
        return None
    values = (fix.lat, fix.lon, fix.alt_m, fix.heading_deg, fix.speed_mps)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        return None
    if not (-90 <= fix.lat <= 90 and -180 <= fix.lon <= 180):
        return None
    return fix


def telemetry(hdr: Header, fix: Fix | None, last_fix: Fix | None, power: PowerReading | None,
              flags: StatusFlags) -> bytes:
    """Encoded telemetry. Without a fix the last known position is repeated (GPS_NO_FIX is set
    by the caller) and heading/speed are 0."""
    where = fix or last_fix
    battery = 0 if power is None else min(100, max(0, int(power.battery_pct)))
    msg = Telemetry(
        header=hdr, position=position(where),
        heading_deg=(fix.heading_deg % 360.0) if fix else 0.0,
        speed_mps=min(200.0, max(0.0, fix.speed_mps)) if fix else 0.0,
        battery_pct=battery, flags=flags)
    return protocol.encode(msg)


def violation(hdr: Header, where: Fix | None, read: PlateRead, evidence_id: str,
              encode: Callable[[Violation], bytes] = protocol.encode) -> bytes:
    """Encoded violation for `read`, by `encode` (common.signing.Signer.encode signs it).
    Raises `LocalProtocolError` if the plate is unusable."""
    plate = normalise_plate(read.text)
    region = read.region.upper() if isinstance(read.region, str) else read.region
    confidence = min(1.0, max(0.0, float(read.confidence)))
    code = read.code if read.code in protocol.VIOLATION_CODES else None
    msg = Violation(header=hdr, position=position(where), plate=plate, region=region,
                    confidence=confidence, code=code, evidence_id=evidence_id,
                    vehicle=_vehicle(read))
    try:
        return encode(msg)
    except LocalProtocolError as exc:
        if msg.vehicle is None or not (exc.path or "").startswith("$.vehicle"):
            raise
    return encode(dataclasses.replace(msg, vehicle=None))


def status(hdr: Header, online: bool) -> bytes:
    """Encoded online/offline status."""
    return protocol.encode(Status(header=hdr, online=online))


def _vehicle(read: PlateRead) -> Vehicle | None:
    parts = {}
    for name in ("make", "colour", "body"):
        value = getattr(read, name)
        if isinstance(value, str):
            value = value.strip().upper()[:8]
            parts[name] = value if _VEHICLE_TEXT.fullmatch(value) else None
    vehicle = Vehicle(**parts)
    return None if vehicle == Vehicle() else vehicle
