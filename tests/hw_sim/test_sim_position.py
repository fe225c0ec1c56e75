"""RoutePosition: on NYC streets, consistent headings and speeds, deterministic for a seed."""

from __future__ import annotations

import pytest

from drone_agent.hardware import PositionSource
from hw_sim import nyc
from hw_sim.position import RoutePosition, bearing_deg, haversine_m


class StepClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def in_nyc(lat: float, lon: float) -> bool:
    lat_min, lat_max, lon_min, lon_max = nyc.NYC_BOUNDS
    return lat_min <= lat <= lat_max and lon_min <= lon <= lon_max


def test_every_built_in_waypoint_is_in_nyc() -> None:
    for route in nyc.ROUTES.values():
        assert len(route.waypoints) >= 2
        for lat, lon in route.waypoints:
            assert in_nyc(lat, lon), (route.name, lat, lon)


@pytest.mark.parametrize("name", sorted(nyc.ROUTES))
def test_flight_stays_in_nyc_with_consistent_motion(name: str) -> None:
    clock = StepClock()
    pos = RoutePosition(seed=1, route=name, speed_mps=10.0, clock=clock, wall_clock=lambda: 5.0)
    assert isinstance(pos, PositionSource)
    dt = 2.0
    prev = pos.fix()
    assert prev is not None
    # Fly long enough to go out and back at least once.
    steps = int(2 * pos.length_m / (10.0 * dt)) + 20
    turns = 0
    for _ in range(steps):
        clock.t += dt
        fix = pos.fix()
        assert fix is not None
        assert in_nyc(fix.lat, fix.lon)
        assert 0 <= fix.heading_deg < 360
        assert fix.speed_mps == 10.0
        assert fix.gps_time == 5.0
        moved = haversine_m((prev.lat, prev.lon), (fix.lat, fix.lon))
        # Straight-line distance never exceeds the distance flown (turns make it shorter).
        assert moved <= 10.0 * dt + 0.01
        if moved > 1.0:
            flown = bearing_deg((prev.lat, prev.lon), (fix.lat, fix.lon))
            diff = abs((flown - fix.heading_deg + 180) % 360 - 180)
            if diff > 20:
                turns += 1  # the step crossed a waypoint or the turnaround
        prev = fix
    # Only steps that cross a waypoint may disagree with the heading.
    assert turns <= 2 * len(pos.route.waypoints) + 2


def test_turns_back_at_the_end_of_the_route() -> None:
    route = [(40.7000, -74.0000), (40.7100, -74.0000)]  # due north, ~1.1 km
    clock = StepClock()
    pos = RoutePosition(seed=0, route=route, speed_mps=10.0, clock=clock)
    headings = set()
    for _ in range(300):
        clock.t += 1.0
        fix = pos.fix()
        assert fix is not None
        headings.add(round(fix.heading_deg))
    assert headings == {0, 180}


def test_same_seed_same_route_and_start() -> None:
    a = RoutePosition(seed=7, clock=lambda: 0.0, gps_time=False)
    b = RoutePosition(seed=7, clock=lambda: 0.0, gps_time=False)
    assert a.route.name == b.route.name
    assert a.at(123.0) == b.at(123.0)
    assert a.at(0.0).gps_time is None


def test_seeds_spread_over_routes() -> None:
    starts = {(p.route.name, round(p.at(0).lat, 4)) for p in
              (RoutePosition(seed=s, clock=lambda: 0.0) for s in range(12))}
    assert len({name for name, _ in starts}) >= 2
    assert len(starts) >= 10


def test_lost_fix_returns_none_until_regained() -> None:
    pos = RoutePosition(seed=0)
    pos.lose_fix()
    assert pos.fix() is None
    pos.regain_fix()
    assert pos.fix() is not None
    pos.close()
    assert pos.fix() is None


@pytest.mark.parametrize("kwargs, word", [
    ({"route": "wall_street"}, "wall_street"),
    ({"route": [(40.7, -74.0)]}, "two distinct"),
    ({"route": [(40.7, -74.0), (40.7, -74.0)]}, "two distinct"),
    ({"route": [(91.0, -74.0), (40.7, -74.0)]}, "lat/lon"),
    ({"speed_mps": 0}, "speed_mps"),
    ({"altitude_m": 99999}, "altitude_m"),
])
def test_bad_arguments_name_the_problem(kwargs: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        RoutePosition(**kwargs)
