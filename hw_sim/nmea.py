"""Write an NMEA 0183 log of a drone flying a route, for gpsd's `gpsfake` to replay.

Each epoch is an RMC (date, speed over ground, track), a GGA (position, altitude MSL, fix
quality) and a GSA (2D/3D fix mode), in the order a u-blox receiver sends them (gpsd then reports
one TPV per epoch, with the track); `fix_loss` epochs report no fix (RMC status V, GGA quality 0,
GSA mode 1), as under a bridge. Coordinates carry six decimals
of arc minutes (about 2 mm), finer than the wire protocol's 1e-7 degree, so what gpsd reports
quantizes back to the route's position.

    python -m hw_sim.nmea --seed 3 --seconds 120 out.nmea

Raises: `ValueError` for bad arguments.
"""

from __future__ import annotations

import argparse
import functools
import operator
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from drone_agent.hardware import Fix
from hw_sim.position import RoutePosition

KNOTS_PER_MPS = 3600 / 1852
GEOID_SEPARATION_M = -32.7  # New York: the geoid lies ~33 m below the WGS 84 ellipsoid


@dataclass(frozen=True)
class Epoch:
    """One fix as written: Unix time, the route's fix, and whether the receiver had a fix."""

    time: float
    fix: Fix
    has_fix: bool


def epochs(route: RoutePosition, seconds: float, rate_hz: float = 1.0,
           start_time: float | None = None,
           fix_loss: tuple[float, float] | None = None) -> list[Epoch]:
    """The epochs of `seconds` of flight at `rate_hz`, the first at `start_time` (default: now,
    whole second). `fix_loss` = (start_s, duration_s) without a fix. Raises `ValueError`."""
    if not seconds > 0 or not rate_hz > 0:
        raise ValueError("seconds and rate_hz must be > 0")
    t0 = float(int(time.time())) if start_time is None else start_time
    out = []
    for i in range(int(seconds * rate_hz)):
        elapsed = i / rate_hz
        lost = fix_loss is not None and fix_loss[0] <= elapsed < fix_loss[0] + fix_loss[1]
        out.append(Epoch(t0 + elapsed, route.at(elapsed), not lost))
    return out


def sentences(epoch: Epoch) -> Iterator[str]:
    """The NMEA sentences of one epoch, checksummed, without line ends."""
    stamp = datetime.fromtimestamp(epoch.time, tz=timezone.utc)
    hms = stamp.strftime("%H%M%S.") + f"{stamp.microsecond // 10_000:02d}"
    fix = epoch.fix
    lat, lon = _coordinate(fix.lat, 2, "NS"), _coordinate(fix.lon, 3, "EW")
    if epoch.has_fix:
        knots = fix.speed_mps * KNOTS_PER_MPS
        yield _sentence(f"GPRMC,{hms},A,{lat},{lon},{knots:.3f},{fix.heading_deg:.2f},"
                        f"{stamp:%d%m%y},,,A")
        geoid = GEOID_SEPARATION_M
        yield _sentence(f"GPGGA,{hms},{lat},{lon},1,12,0.8,{fix.alt_m:.1f},M,{geoid},M,,")
        yield _sentence("GPGSA,A,3,02,05,07,09,13,15,18,20,24,27,29,30,1.4,0.8,1.1")
    else:
        yield _sentence(f"GPRMC,{hms},V,,,,,,,{stamp:%d%m%y},,,N")
        yield _sentence(f"GPGGA,{hms},,,,,0,00,99.99,,,,,,")
        yield _sentence("GPGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99")


def write_log(path: str | Path, items: Sequence[Epoch]) -> Path:
    """Write `items` as an NMEA log gpsfake can replay (CRLF line ends, a comment header)."""
    lines = ["# presacop hw_sim NMEA log (RMC, GGA, GSA per epoch)"]
    for epoch in items:
        lines.extend(sentences(epoch))
    out = Path(path)
    out.write_bytes(("\r\n".join(lines) + "\r\n").encode("ascii"))
    return out


def _coordinate(value: float, degree_digits: int, hemispheres: str) -> str:
    """ddmm.mmmmmm,N (or dddmm.mmmmmm,E): degrees and decimal arc minutes."""
    hemisphere = hemispheres[0] if value >= 0 else hemispheres[1]
    value = abs(value)
    degrees = int(value)
    minutes = round((value - degrees) * 60, 6)
    if minutes >= 60:
        degrees, minutes = degrees + 1, 0.0
    return f"{degrees:0{degree_digits}d}{minutes:09.6f},{hemisphere}"


def _sentence(body: str) -> str:
    checksum = functools.reduce(operator.xor, body.encode("ascii"), 0)
    return f"${body}*{checksum:02X}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="NMEA log to write")
    parser.add_argument("--seed", type=int, default=0, help="picks the route and start point")
    parser.add_argument("--route", default=None, help="a route name of hw_sim.nyc.ROUTES")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--rate-hz", type=float, default=1.0)
    parser.add_argument("--fix-loss", type=float, nargs=2, metavar=("START_S", "DURATION_S"))
    args = parser.parse_args(argv)
    route = RoutePosition(args.seed, args.route)
    items = epochs(route, args.seconds, args.rate_hz, fix_loss=args.fix_loss)
    print(f"wrote {write_log(args.out, items)}: {len(items)} epochs of {route.route.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
