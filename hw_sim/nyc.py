"""New York City data the simulator draws from: street routes, plate formats, vehicle values.

Sources (see docs/hw_sim.md for more):
- Routes: waypoints read off public maps along the real streets, to about 50 m. They only need to
  be on or near the street; a drone flies straight lines between them.
- Plate serial formats: the current standard passenger formats of each state as listed in the
  Wikipedia articles "Vehicle registration plates of <state>" (NY ABC-1234, NJ A12-BCD,
  PA ABC-1234, CT AB-12345, FL ABC D12), written without separators as the NYPD records do.
- Make / colour / body values: the abbreviations used in the NYC Department of Finance
  "Parking Violations Issued" open data (Vehicle Make truncated to 5 letters, Vehicle Color,
  Vehicle Body Type).
- Violation codes are not here: they come from `protocol.VIOLATION_CODES`, the one table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    """A named street route: waypoints (lat, lon) in flying order."""

    name: str
    borough: str
    waypoints: tuple[tuple[float, float], ...]


# Each tuple is (lat, lon) at a cross street, listed in the order flown.
ROUTES: dict[str, Route] = {
    "broadway": Route("Broadway", "Manhattan", (
        (40.70560, -74.01340),  # Bowling Green
        (40.70810, -74.01180),  # Trinity Church, Wall St
        (40.71280, -74.00790),  # Park Place / City Hall Park
        (40.71930, -74.00170),  # Canal St
        (40.72530, -73.99670),  # Houston St
        (40.73010, -73.99250),  # 8th St / Astor Pl
        (40.73550, -73.99050),  # 14th St / Union Square West
        (40.74110, -73.98970),  # 23rd St / Madison Square
        (40.74980, -73.98770),  # 34th St / Herald Square
        (40.75660, -73.98630),  # 42nd St / Times Square
        (40.76810, -73.98190),  # 59th St / Columbus Circle
        (40.77840, -73.98180),  # 72nd St
        (40.79400, -73.97220),  # 96th St
    )),
    "fifth_avenue": Route("Fifth Avenue", "Manhattan", (
        (40.73150, -73.99710),  # Washington Square Arch
        (40.73650, -73.99400),  # 14th St
        (40.74120, -73.98960),  # 23rd St
        (40.74840, -73.98570),  # 34th St / Empire State Building
        (40.75320, -73.98220),  # 42nd St / Public Library
        (40.76440, -73.97350),  # 59th St / Grand Army Plaza
        (40.77200, -73.96750),  # 72nd St
        (40.78080, -73.96000),  # 86th St
        (40.78640, -73.95530),  # 96th St
        (40.79660, -73.94900),  # 110th St
    )),
    "flatbush_avenue": Route("Flatbush Avenue", "Brooklyn", (
        (40.69600, -73.98350),  # Tillary St
        (40.68840, -73.98090),  # Fulton St
        (40.68400, -73.97770),  # Atlantic Ave / Barclays Center
        (40.67900, -73.97370),  # 6th Ave / Park Slope
        (40.67430, -73.97020),  # Grand Army Plaza
        (40.66300, -73.96240),  # Empire Blvd
        (40.65050, -73.95900),  # Church Ave
        (40.63260, -73.94760),  # Nostrand Ave junction
        (40.62000, -73.93300),  # Kings Highway
    )),
    "queens_boulevard": Route("Queens Boulevard", "Queens", (
        (40.75060, -73.94030),  # Queensboro Plaza
        (40.74360, -73.92380),  # 40th St / Sunnyside
        (40.74150, -73.90550),  # 58th St / Woodside
        (40.73850, -73.89600),  # 69th St
        (40.73700, -73.87720),  # Broadway / Elmhurst
        (40.73300, -73.86950),  # Woodhaven Blvd
        (40.72950, -73.86150),  # 63rd Dr / Rego Park
        (40.72140, -73.84440),  # 71st Ave / Forest Hills
        (40.71410, -73.83100),  # Union Turnpike / Kew Gardens
    )),
}

# The five boroughs, roughly; every route point must lie inside.
NYC_BOUNDS = (40.49, 40.92, -74.26, -73.70)  # lat_min, lat_max, lon_min, lon_max

# Plate serial formats: "L" a letter, "D" a digit. Regions weighted as NYC tickets show them
# (New York plates dominate; New Jersey next; then the neighbours and Florida).
PLATE_FORMATS: dict[str, str] = {
    "NY": "LLLDDDD",
    "NJ": "LDDLLL",
    "PA": "LLLDDDD",
    "CT": "LLDDDDD",
    "FL": "LLLLDD",
}
REGION_WEIGHTS: dict[str, float] = {"NY": 0.78, "NJ": 0.10, "PA": 0.05, "CT": 0.04, "FL": 0.03}

# Plate colours (BGR) per region for drawing: background, text.
PLATE_COLOURS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "NY": ((120, 215, 245), (90, 40, 10)),    # Empire Gold, dark blue serial
    "NJ": ((150, 220, 235), (20, 20, 20)),    # straw yellow, black serial
    "PA": ((245, 245, 245), (120, 40, 10)),   # white, blue serial
    "CT": ((245, 230, 215), (110, 40, 20)),   # white fading to sky blue, blue serial
    "FL": ((245, 245, 245), (40, 110, 20)),   # white, green serial
}
REGION_NAMES: dict[str, str] = {
    "NY": "NEW YORK", "NJ": "NEW JERSEY", "PA": "PENNSYLVANIA", "CT": "CONNECTICUT",
    "FL": "FLORIDA",
}

# Vehicle values as the NYC parking-violation records spell them, with rough weights.
MAKES: dict[str, float] = {
    "TOYOT": 0.15, "HONDA": 0.13, "FORD": 0.11, "NISSA": 0.09, "CHEVR": 0.07, "ME/BE": 0.05,
    "HYUND": 0.04,
    "JEEP": 0.05, "BMW": 0.04, "LEXUS": 0.04, "DODGE": 0.04, "SUBAR": 0.03, "ACURA": 0.03,
    "VOLKS": 0.03, "KIA": 0.03, "MAZDA": 0.02, "INFIN": 0.02, "GMC": 0.02,
}
COLOURS: dict[str, float] = {
    "WH": 0.22, "BK": 0.22, "GY": 0.22, "BL": 0.10, "RD": 0.08, "GR": 0.05, "BR": 0.05, "YW": 0.06,
}
BODIES: dict[str, float] = {"SUBN": 0.38, "4DSD": 0.34, "VAN": 0.10, "PICK": 0.06, "2DSD": 0.07,
                            "DELV": 0.05}

# Car paint (BGR) per colour code.
PAINT: dict[str, tuple[int, int, int]] = {
    "WH": (232, 232, 228), "BK": (32, 30, 30), "GY": (130, 128, 125), "BL": (150, 70, 25),
    "RD": (40, 35, 190), "GR": (50, 110, 40), "BR": (40, 70, 110), "YW": (30, 200, 235),
}
