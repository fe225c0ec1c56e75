"""Areas shared by the history and the drones: NYC boroughs, so both sides compare by borough.

History rows name a county (`Violation County`, in a dozen spellings: `NY`, `K`, `Q`, `BX`, `R`,
`KINGS`, `QNS`...) and a precinct; drones report a position. `borough_of_county`,
`borough_of_precinct` and `borough_of_point` all answer with one of `BOROUGHS` or None.

The point lookup uses coarse polygons drawn by hand around each borough (a few vertices each, water
included), not the legal boundaries: right away from the borders, possibly wrong within a few
hundred metres of one. `cell_of` gives a finer, exact grid cell (0.01 degree, about 1.1 x 0.85 km
in NYC) for maps. Pure functions, no I/O; nothing raises.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

MANHATTAN, BRONX, BROOKLYN, QUEENS, STATEN_ISLAND = (
    "Manhattan", "Bronx", "Brooklyn", "Queens", "Staten Island")
BOROUGHS = (MANHATTAN, BRONX, BROOKLYN, QUEENS, STATEN_ISLAND)

# Every spelling seen in the "Violation County" column of the NYC Open Data set, upper case.
_COUNTIES = {
    **dict.fromkeys(("NY", "MN", "MAN", "NEW Y", "NEWY", "NYC", "MH"), MANHATTAN),
    **dict.fromkeys(("BX", "BRONX", "BRONX COUNTY"), BRONX),
    **dict.fromkeys(("K", "BK", "KINGS", "KING", "KINGS COUNTY"), BROOKLYN),
    **dict.fromkeys(("Q", "QN", "QNS", "QUEEN", "QUEENS", "QUEENS COUNTY"), QUEENS),
    **dict.fromkeys(("R", "RICH", "RICHMOND", "ST", "SI"), STATEN_ISLAND),
}

# NYPD precinct numbers by patrol borough (1-34 Manhattan, 40-52 Bronx, 60-94 Brooklyn,
# 100-115 Queens, 120-123 Staten Island).
_PRECINCT_RANGES = (
    (1, 34, MANHATTAN), (40, 52, BRONX), (60, 94, BROOKLYN), (100, 115, QUEENS),
    (120, 123, STATEN_ISLAND),
)

# (lat, lon) vertices; tested in this order, so a point on Manhattan's shore is Manhattan.
_POLYGONS: tuple[tuple[str, Sequence[tuple[float, float]]], ...] = (
    (MANHATTAN, (
        (40.6990, -74.0200), (40.7080, -73.9760), (40.7450, -73.9680), (40.7760, -73.9410),
        (40.7960, -73.9270), (40.8350, -73.9340), (40.8730, -73.9090), (40.8800, -73.9270),
        (40.8480, -73.9480), (40.7600, -74.0100), (40.6990, -74.0200),
    )),
    (BRONX, (
        (40.7850, -73.9330), (40.8350, -73.9330), (40.8730, -73.9090), (40.8800, -73.9270),
        (40.9170, -73.9200), (40.9170, -73.7500), (40.8000, -73.7500), (40.7850, -73.9330),
    )),
    (STATEN_ISLAND, (
        (40.6500, -74.2600), (40.6500, -74.0500), (40.5900, -74.0500), (40.4900, -74.2000),
        (40.4900, -74.2600), (40.6500, -74.2600),
    )),
    (BROOKLYN, (
        (40.7390, -73.9620), (40.7270, -73.9250), (40.6950, -73.9000), (40.6800, -73.8650),
        (40.6400, -73.8550), (40.5700, -73.8800), (40.5700, -74.0450), (40.6400, -74.0450),
        (40.7000, -74.0000), (40.7390, -73.9620),
    )),
    (QUEENS, (
        (40.8000, -73.9620), (40.8000, -73.7000), (40.5400, -73.7000), (40.5400, -73.9400),
        (40.5700, -73.8800), (40.6400, -73.8550), (40.6800, -73.8650), (40.6950, -73.9000),
        (40.7270, -73.9250), (40.7390, -73.9620), (40.8000, -73.9620),
    )),
)

CELL_DEG = 0.01


def borough_of_county(county: str | None) -> str | None:
    """The borough a `Violation County` value names, or None when unknown or empty."""
    if not county:
        return None
    return _COUNTIES.get(county.strip().strip('"').upper())


def borough_of_precinct(precinct: int | None) -> str | None:
    """The borough of an NYPD precinct number, or None (0, unknown, None)."""
    if precinct is None:
        return None
    for lo, hi, borough in _PRECINCT_RANGES:
        if lo <= precinct <= hi:
            return borough
    return None


def borough_of_point(lat: float | None, lon: float | None) -> str | None:
    """The borough containing (lat, lon) by the coarse polygons above, or None outside NYC."""
    if lat is None or lon is None:
        return None
    for borough, polygon in _POLYGONS:
        if _inside(lat, lon, polygon):
            return borough
    return None


def cell_of(lat: float, lon: float) -> str:
    """The 0.01-degree grid cell of a point, named by its south-west corner: "40.71,-74.01"."""
    return f"{_floor_cell(lat):.2f},{_floor_cell(lon):.2f}"


def _floor_cell(v: float) -> float:
    # floor, not round: a cell is [corner, corner + CELL_DEG); +1e-9 absorbs 40.71 == 40.709999...
    return math.floor(v / CELL_DEG + 1e-9) * CELL_DEG


def _inside(lat: float, lon: float, polygon: Sequence[tuple[float, float]]) -> bool:
    # Even-odd ray casting along the longitude axis.
    inside = False
    for (a_lat, a_lon), (b_lat, b_lon) in itertools.pairwise(polygon):
        if (a_lat > lat) != (b_lat > lat):
            cross = a_lon + (lat - a_lat) * (b_lon - a_lon) / (b_lat - a_lat)
            if lon < cross:
                inside = not inside
    return inside
