"""A GPS that flies a drone along real New York City streets.

The drone flies a route's waypoints in order at a constant ground speed, then flies back the same
way (out and back, forever). Heading is the bearing of the segment being flown. Which route and
where on it the drone starts are picked by the seed, so a fleet spreads over the city
deterministically. Time comes from an injectable clock, so tests can step it.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import threading
import time
from collections.abc import Callable, Sequence

from drone_agent.hardware import Fix
from hw_sim import nyc

_EARTH_RADIUS_M = 6_371_008.8


def haversine_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in metres between two (lat, lon) points."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    return 2 * _EARTH_RADIUS_M * math.asin(math.sqrt(h))


def bearing_deg(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Initial bearing from a to b, degrees clockwise from true north, 0 <= h < 360."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    y = math.sin(lon2 - lon1) * math.cos(lat2)
    x = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(lon2 - lon1)
    return math.degrees(math.atan2(y, x)) % 360.0


class RoutePosition:
    """A `drone_agent.hardware.PositionSource` flying a NYC street route.

    Args:
        seed: picks the route (unless `route` is given) and the start point along it.
        route: a name from `hw_sim.nyc.ROUTES`, a `nyc.Route`, or a list of (lat, lon) waypoints.
        speed_mps: ground speed (0 < v <= 50).
        altitude_m: altitude above mean sea level.
        gps_time: report `Fix.gps_time` from `wall_clock` (a GPS-disciplined clock); False for a
            receiver without time.
        clock: monotonic seconds (movement); wall_clock: Unix seconds (gps_time).

    Raises:
        ValueError: unknown route name, fewer than two distinct waypoints, or a bad speed/altitude.
    """

    def __init__(self, seed: int = 0, route: str | nyc.Route | Sequence[tuple[float, float]] |
                 None = None, speed_mps: float = 8.0, altitude_m: float = 40.0, *,
                 gps_time: bool = True, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        if not 0 < speed_mps <= 50:
            raise ValueError(f"RoutePosition speed_mps must be in (0, 50], got {speed_mps}")
        if not -100 <= altitude_m <= 5000:
            raise ValueError(f"RoutePosition altitude_m must be -100..5000, got {altitude_m}")
        rng = random.Random(f"hw_sim.position:{seed}")
        self.route = _resolve_route(route, rng)
        self.speed_mps = float(speed_mps)
        self.altitude_m = float(altitude_m)
        self._points = self.route.waypoints
        self._cum = _cumulative(self._points)
        self.length_m = self._cum[-1]
        self._offset_m = rng.uniform(0, 2 * self.length_m)
        self._gps_time = gps_time
        self._clock, self._wall_clock = clock, wall_clock
        self._t0 = clock()
        self._has_fix = threading.Event()
        self._has_fix.set()
        self._closed = False

    def fix(self) -> Fix | None:
        """Where the drone is now; None while the fix is lost (`lose_fix`) or after close."""
        if self._closed or not self._has_fix.is_set():
            return None
        return self.at(self._clock() - self._t0)

    def at(self, elapsed_s: float) -> Fix:
        """The fix `elapsed_s` seconds after this source was made (pure; for tests and planning)."""
        s = (self._offset_m + self.speed_mps * elapsed_s) % (2 * self.length_m)
        forward = s < self.length_m
        d = s if forward else 2 * self.length_m - s
        i = min(bisect.bisect_right(self._cum, d) - 1, len(self._points) - 2)
        a, b = self._points[i], self._points[i + 1]
        seg = self._cum[i + 1] - self._cum[i]
        f = (d - self._cum[i]) / seg
        lat = a[0] + (b[0] - a[0]) * f
        lon = a[1] + (b[1] - a[1]) * f
        heading = bearing_deg(a, b) if forward else bearing_deg(b, a)
        return Fix(lat=lat, lon=lon, alt_m=self.altitude_m, heading_deg=round(heading, 1) % 360.0,
                   speed_mps=self.speed_mps,
                   gps_time=self._wall_clock() if self._gps_time else None)

    def lose_fix(self) -> None:
        """Simulate a GNSS outage (urban canyon): `fix()` returns None until `regain_fix()`."""
        self._has_fix.clear()

    def regain_fix(self) -> None:
        self._has_fix.set()

    def close(self) -> None:
        self._closed = True


def _resolve_route(route: str | nyc.Route | Sequence[tuple[float, float]] | None,
                   rng: random.Random) -> nyc.Route:
    if route is None:
        return nyc.ROUTES[rng.choice(sorted(nyc.ROUTES))]
    if isinstance(route, nyc.Route):
        resolved = route
    elif isinstance(route, str):
        if route not in nyc.ROUTES:
            raise ValueError(f"RoutePosition route {route!r} is unknown; "
                             f"choose from {sorted(nyc.ROUTES)}")
        resolved = nyc.ROUTES[route]
    else:
        resolved = nyc.Route("custom", "", tuple((float(la), float(lo)) for la, lo in route))
    # Repeated points make zero-length segments with no bearing; drop them.
    wps = resolved.waypoints
    points = [p for i, p in enumerate(wps) if i == 0 or p != wps[i - 1]]
    resolved = nyc.Route(resolved.name, resolved.borough, tuple(points))
    for lat, lon in resolved.waypoints:
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise ValueError(f"RoutePosition waypoint ({lat}, {lon}) is not a valid lat/lon")
    if len(resolved.waypoints) < 2 or _cumulative(resolved.waypoints)[-1] <= 0:
        raise ValueError("RoutePosition route needs at least two distinct waypoints")
    return resolved


def _cumulative(points: Sequence[tuple[float, float]]) -> list[float]:
    """Distance along the route at each waypoint."""
    cum = [0.0]
    for a, b in itertools.pairwise(points):
        cum.append(cum[-1] + haversine_m(a, b))
    return cum
