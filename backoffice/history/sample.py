"""`presacop history sample`: a seeded, realistic file in the "Parking Violations Issued" schema.

The real data set (NYC Open Data) cannot be downloaded here, so tests, demos and the bench use
this instead. Same header, same formats and the same quirks: 12-hour times like `0143A`, dates as
MM/DD/YYYY, `0` and empty for unknown, a dozen county spellings, stray quotes, and a few bad rows
(`bad_fraction`: no summons number, impossible dates, short rows, letters as violation code).
Summons numbers are unique and increase with the line. Same seed, same file, byte for byte.

Raises OSError when the output cannot be written; nothing else.
"""

from __future__ import annotations

import csv
import gzip
import io
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .records import HEADER

# Weights roughly as in the FY2023 file: street cleaning (21), meters (38, 37), no standing (14)...
_CODES = ((21, 14), (38, 10), (14, 9), (36, 8), (37, 6), (20, 6), (46, 5), (71, 4), (40, 4),
          (7, 4), (5, 3), (70, 3), (19, 3), (16, 3), (31, 2), (69, 2), (48, 2), (74, 2), (50, 2),
          (17, 2), (10, 1), (24, 1), (42, 1), (45, 1), (47, 1), (61, 1), (66, 1), (84, 1))
_CODE_VALUES = [c for c, _ in _CODES]
_CODE_WEIGHTS = [w for _, w in _CODES]
_COUNTIES = ("NY", "NY", "NY", "K", "K", "Q", "Q", "BX", "R", "Kings", "Qns", "MN", "BK", "QN",
             "Rich", "Bronx", "ST", "")
_STATES = ("NY",) * 12 + ("NJ", "NJ", "PA", "CT", "FL", "MA", "99")
_PLATE_TYPES = ("PAS",) * 8 + ("COM", "COM", "OMT", "OMS", "SRF", "999")
_BODIES = ("SUBN", "4DSD", "VAN", "DELV", "PICK", "SDN", "2DSD", "TRAC", "")
_MAKES = ("TOYOT", "HONDA", "FORD", "NISSA", "CHEVR", "FRUEH", "ME/BE", "BMW", "JEEP", "HYUND")
_COLORS = ("GY", "WH", "BK", "BLACK", "WHITE", "BL", "RD", "SILVE", "GRY", "")
_STREETS = ("BROADWAY", "W 43RD ST", "E 14TH ST", "ATLANTIC AVE", "QUEENS BLVD",
            "GRAND CONCOURSE", "HYLAN BLVD", "5TH AVE", "FLATBUSH AVE", "ROOSEVELT AVE")
_DESCRIPTIONS = {21: "21-No Parking (street clean)", 38: "38-Failure to Display Muni Rec",
                 14: "14-No Standing", 36: "PHTO SCHOOL ZN SPEED VIOLATION",
                 37: "37-Expired Muni Meter", 20: "20A-No Parking (Non-COM)",
                 46: "46A-Double Parking (Non-COM)", 71: "71A-Insp Sticker Expired (NYS)",
                 40: "40-Fire Hydrant", 7: "FAILURE TO STOP AT RED LIGHT"}
_BAD_KINDS = ("missing_summons", "bad_date", "column_count", "bad_code")


@dataclass(frozen=True)
class SampleSummary:
    rows: int
    bad_rows: int
    path: Path


def write_sample(path: str | Path, rows: int, *, seed: int = 17,
                 bad_fraction: float = 0.001) -> SampleSummary:
    """Write `rows` data rows (plus the header) to `path` (gzip when it ends in .gz)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    bad = 0
    with opener(path, "wt", encoding="utf-8", newline="") as fh:  # type: ignore[operator]
        fh.write(",".join(HEADER) + "\n")
        for line, is_bad in generate_lines(rows, seed=seed, bad_fraction=bad_fraction):
            fh.write(line)
            bad += is_bad
    return SampleSummary(rows=rows, bad_rows=bad, path=path)


def generate_lines(rows: int, *, seed: int = 17,
                   bad_fraction: float = 0.001) -> Iterator[tuple[str, bool]]:
    """(CSV line with its newline, is it a bad row) for `rows` data rows; constant memory."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for i in range(rows):
        fields = _row(rng, i)
        bad = rng.random() < bad_fraction
        if bad:
            _spoil(rng, fields)
        writer.writerow(fields)
        line = out.getvalue()
        out.seek(0)
        out.truncate()
        yield (_stray_quote(rng, line) if not bad else line), bad


def _row(rng: random.Random, i: int) -> list[str]:
    code = rng.choices(_CODE_VALUES, _CODE_WEIGHTS)[0]
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    hour, minute = rng.randint(0, 23), rng.randint(0, 59)
    precinct = rng.choice((1, 6, 13, 14, 18, 19, 44, 46, 52, 60, 75, 84, 90, 109, 114, 120, 0))
    county = rng.choice(_COUNTIES)
    row = {
        "Summons Number": str(8_000_000_000 + 3 * i + rng.randint(0, 2)),
        "Plate ID": _plate(rng),
        "Registration State": rng.choice(_STATES),
        "Plate Type": rng.choice(_PLATE_TYPES),
        "Issue Date": f"{month:02d}/{day:02d}/{rng.choice((2022, 2023, 2023, 2023))}",
        "Violation Code": str(code),
        "Vehicle Body Type": rng.choice(_BODIES),
        "Vehicle Make": rng.choice(_MAKES),
        "Issuing Agency": rng.choice("PPPPPTKSV"),
        "Street Code1": str(rng.choice((0, rng.randint(10000, 99999)))),
        "Street Code2": str(rng.choice((0, rng.randint(10000, 99999)))),
        "Street Code3": str(rng.choice((0, rng.randint(10000, 99999)))),
        "Vehicle Expiration Date": rng.choice(("0", "88888888", f"2024{month:02d}{day:02d}")),
        "Violation Location": str(precinct).zfill(4) if precinct else "",
        "Violation Precinct": str(precinct),
        "Issuer Precinct": str(precinct),
        "Issuer Code": str(rng.randint(0, 999999)),
        "Issuer Command": rng.choice(("T103", "T401", "KN09", "0019", "")),
        "Issuer Squad": rng.choice(("A", "B", "C", "0000", "")),
        "Violation Time": _time(rng, hour, minute),
        "Time First Observed": rng.choice(("", "", "", _time(rng, hour, max(0, minute - 5)))),
        "Violation County": county,
        "Violation In Front Of Or Opposite": rng.choice(("F", "O", "I", "")),
        "House Number": str(rng.randint(1, 2500)) if rng.random() < 0.7 else "",
        "Street Name": rng.choice(_STREETS),
        "Intersecting Street": rng.choice(("", "", "", "10ft N/of W 44th St", "E/S 5TH AVE")),
        "Date First Observed": rng.choice(("0", "0", f"2023{month:02d}{day:02d}")),
        "Law Section": rng.choice(("408", "408", "1180", "")),
        "Sub Division": rng.choice(("D1", "J6", "C", "E2", "")),
        "Violation Legal Code": rng.choice(("", "", "T")),
        "Days Parking In Effect    ": rng.choice(("YYYYYYY", "YYYYYBB", "BBBBBBB", "")),
        "From Hours In Effect": rng.choice(("0800A", "0900A", "ALL", "")),
        "To Hours In Effect": rng.choice(("0700P", "0600P", "ALL", "")),
        "Vehicle Color": rng.choice(_COLORS),
        "Unregistered Vehicle?": rng.choice(("", "", "0")),
        "Vehicle Year": str(rng.choice((0, rng.randint(1995, 2024)))),
        "Meter Number": rng.choice(
            ("", "", "-", f"{rng.randint(100, 999)}-{rng.randint(1000, 9999)}")
        ),
        "Feet From Curb": str(rng.choice((0, 0, 0, 1, 2))),
        "Violation Post Code": rng.choice(("", "", "A 22", "J 4", "14")),
        "Violation Description": _DESCRIPTIONS.get(code, ""),
        "No Standing or Stopping Violation": "",
        "Hydrant Violation": "",
        "Double Parking Violation": "",
    }
    return [row[h] for h in HEADER]


def _plate(rng: random.Random) -> str:
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    return "".join(rng.choice(letters) for _ in range(3)) + str(rng.randint(1000, 9999))


def _time(rng: random.Random, hour: int, minute: int) -> str:
    if rng.random() < 0.002:
        return rng.choice(("", "8888P", "1560A", "12"))  # the data set's unparseable times
    half = "A" if hour < 12 else "P"
    twelve = hour % 12
    # The data set writes both 0043P and 1243P for 12:43 PM; keep both spellings.
    if twelve == 0 and rng.random() < 0.5:
        twelve = 12
    return f"{twelve:02d}{minute:02d}{half}"


def _spoil(rng: random.Random, fields: list[str]) -> None:
    kind = rng.choice(_BAD_KINDS)
    if kind == "missing_summons":
        fields[0] = ""
    elif kind == "bad_date":
        fields[HEADER.index("Issue Date")] = rng.choice(("13/45/2023", "2023-07-01", ""))
    elif kind == "column_count":
        del fields[rng.randint(5, len(fields) - 1):]
    else:
        fields[HEADER.index("Violation Code")] = rng.choice(("AB", "4O", "-1"))


def _stray_quote(rng: random.Random, line: str) -> str:
    # About 1 row in 500 carries an unbalanced quote in the street name, as the real exports do.
    if rng.random() >= 0.002:
        return line
    for street in _STREETS:
        if f",{street}," in line:
            return line.replace(f",{street},", f',"{street},', 1)
    return line

