"""One CSV row of the NYC "Parking Violations Issued" data set -> one normalized record.

Pure functions: a row (list of strings) in, a record (dict, documented in docs/kafka-records.md,
"History records") out, or `BadRow` with a reason code and the column to blame. The data set's
quirks are handled here: times like `0143A` (01:43) / `1143P` (23:43), dates as MM/DD/YYYY, empty
fields and `0` for "unknown", a dozen spellings of the county, stray quotes around values.

Errors:

    BadRow (ValueError)   .reason (a code of BAD_ROW_REASONS), .column (header name or None)

A row is bad only when it cannot be a violation (no summons number, no issue date, a violation
code that is not a number, wrong column count); a garbled optional field becomes null and is
counted as a quirk instead, so the row is kept.
"""

from __future__ import annotations

import datetime as _dt
from functools import lru_cache
from typing import Any

from backoffice.areas import borough_of_county, borough_of_precinct

RECORD_VERSION = "1"

# The header exactly as NYC Open Data publishes it (data set "Parking Violations Issued").
HEADER: tuple[str, ...] = (
    "Summons Number", "Plate ID", "Registration State", "Plate Type", "Issue Date",
    "Violation Code", "Vehicle Body Type", "Vehicle Make", "Issuing Agency", "Street Code1",
    "Street Code2", "Street Code3", "Vehicle Expiration Date", "Violation Location",
    "Violation Precinct", "Issuer Precinct", "Issuer Code", "Issuer Command", "Issuer Squad",
    "Violation Time", "Time First Observed", "Violation County",
    "Violation In Front Of Or Opposite", "House Number", "Street Name", "Intersecting Street",
    "Date First Observed", "Law Section", "Sub Division", "Violation Legal Code",
    "Days Parking In Effect    ", "From Hours In Effect", "To Hours In Effect", "Vehicle Color",
    "Unregistered Vehicle?", "Vehicle Year", "Meter Number", "Feet From Curb",
    "Violation Post Code", "Violation Description", "No Standing or Stopping Violation",
    "Hydrant Violation", "Double Parking Violation",
)
# The published header pads "Days Parking In Effect" with spaces; compare names stripped.
HEADER_NAMES = tuple(h.strip() for h in HEADER)

BAD_ROW_REASONS = {
    "bad_header": "the first line is not the data set's header",
    "column_count": "the row does not have the header's number of columns",
    "missing_summons": "Summons Number is empty",
    "bad_summons": "Summons Number is not 1-12 digits",
    "bad_date": "Issue Date is empty or not a valid MM/DD/YYYY date",
    "bad_code": "Violation Code is not a number",
    "line_too_long": "the line exceeds the longest line accepted",
    "bad_encoding": "the line is not valid UTF-8",
}


class BadRow(ValueError):
    """A row that cannot become a record: `reason` (a BAD_ROW_REASONS key), `column` or None."""

    def __init__(self, reason: str, detail: str, column: str | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.column = column


def check_header(row: list[str]) -> None:
    """Raise BadRow("bad_header") unless `row` is the data set's header (names stripped)."""
    names = tuple(c.strip(' "') for c in row)
    if names != HEADER_NAMES:
        missing = [h for h in HEADER_NAMES if h not in names]
        raise BadRow("bad_header", f"not the Parking Violations Issued header; missing: "
                     f"{', '.join(missing) or 'none (order or extra columns differ)'}")


def normalize(row: list[str], quirks: dict[str, int] | None = None) -> dict[str, Any]:
    """The record of one data row; raises BadRow. Optional fields that do not parse become null
    and are counted in `quirks` (column -> count) when given."""
    if len(row) != len(HEADER):
        raise BadRow("column_count", f"{len(row)} columns, expected {len(HEADER)}")
    # Stray quotes (`"BROADWAY`, `W 43 ST"`, `""`) and padding around otherwise fine text.
    # One unpacking in HEADER's order (a test pins it): the ingest calls this once a row, and
    # names looked up in a dict cost a third of its time.
    (summons, plate, state, plate_type, issue_text, code_text, body_type, make, agency, sc1, sc2,
     sc3, expiration, location, precinct_text, issuer_precinct, issuer_code, issuer_command,
     issuer_squad, time_text, first_time, county, front, house, street, intersecting,
     first_date, law, sub_division, legal_code, days, from_hours, to_hours, color, unregistered,
     year, meter, feet, post_code, description, no_standing, hydrant, double_parking,
     ) = [c.strip(' "') for c in row]
    if not summons:
        raise BadRow("missing_summons", "Summons Number is empty", "Summons Number")
    if not (_digits(summons) and len(summons) <= 12):
        raise BadRow("bad_summons", f"Summons Number {summons[:40]!r} is not 1-12 digits",
                     "Summons Number")
    issue_date = _date(issue_text)
    if issue_date is None:
        raise BadRow("bad_date", f"Issue Date {issue_text[:40]!r} is not MM/DD/YYYY",
                     "Issue Date")
    if code_text and not _digits(code_text):
        raise BadRow("bad_code", f"Violation Code {code_text[:40]!r} is not a number",
                     "Violation Code")
    q = quirks
    time_hm, hour = _time(time_text)
    if time_hm is None:
        _odd(q, "Violation Time", time_text)
    precinct = _int(q, "Violation Precinct", precinct_text)
    borough = borough_of_county(county) or _precinct_borough(precinct)
    return {
        "record_version": RECORD_VERSION,
        "summons_number": summons,
        "plate": plate or None,
        "registration_state": state or None,
        "plate_type": plate_type or None,
        "issue_date": issue_date,
        "violation_time": time_hm,
        "issued_at": f"{issue_date}T{time_hm}:00" if time_hm else None,
        "hour": hour,
        "violation_code": int(code_text) if code_text else None,
        "vehicle_body_type": body_type or None,
        "vehicle_make": make or None,
        "issuing_agency": agency or None,
        "street_code1": _int(q, "Street Code1", sc1),
        "street_code2": _int(q, "Street Code2", sc2),
        "street_code3": _int(q, "Street Code3", sc3),
        "vehicle_expiration_date": _odd(q, "Vehicle Expiration Date", expiration,
                                        _yyyymmdd(expiration)),
        "violation_location": location or None,
        "violation_precinct": precinct,
        "issuer_precinct": _int(q, "Issuer Precinct", issuer_precinct),
        "issuer_code": _int(q, "Issuer Code", issuer_code),
        "issuer_command": issuer_command or None,
        "issuer_squad": issuer_squad or None,
        "time_first_observed": _odd(q, "Time First Observed", first_time, _time(first_time)[0]),
        "violation_county": county or None,
        "borough": borough,
        "front_or_opposite": front or None,
        "house_number": house or None,
        "street_name": street or None,
        "intersecting_street": intersecting or None,
        "date_first_observed": _odd(q, "Date First Observed", first_date, _yyyymmdd(first_date)),
        "law_section": _int(q, "Law Section", law),
        "sub_division": sub_division or None,
        "violation_legal_code": legal_code or None,
        "days_parking_in_effect": days or None,
        "from_hours_in_effect": from_hours or None,
        "to_hours_in_effect": to_hours or None,
        "vehicle_color": color or None,
        "unregistered_vehicle": unregistered or None,
        "vehicle_year": _int(q, "Vehicle Year", year),
        "meter_number": meter or None,
        "feet_from_curb": _int(q, "Feet From Curb", feet, zero_is_unknown=False),
        "violation_post_code": post_code or None,
        "violation_description": description or None,
        "no_standing_or_stopping": no_standing or None,
        "hydrant_violation": hydrant or None,
        "double_parking_violation": double_parking or None,
    }


def parse_date(text: str) -> str | None:
    """MM/DD/YYYY (the Issue Date format; a trailing ` 12:00:00 AM` is tolerated) -> ISO date."""
    head = text.split(" ", 1)[0]
    parts = head.split("/")
    if len(parts) != 3 or not all(_digits(p) for p in parts):
        return None
    return _iso(int(parts[2]), int(parts[0]), int(parts[1]))


def parse_yyyymmdd(text: str) -> str | None:
    """YYYYMMDD (expiration, first observed; `0` and `88888888` mean none) -> ISO date."""
    if len(text) != 8 or not _digits(text):
        return None
    return _iso(int(text[:4]), int(text[4:6]), int(text[6:]))


def parse_time(text: str) -> str | None:
    """`HHMMA`/`HHMMP` (12-hour clock; the data set also has `0043P` and `1243A`) -> "HH:MM".

    Hours 00 and 12 both mean the start of the half day; anything else unparseable -> None.
    """
    if len(text) != 5 or not _digits(text[:4]) or text[4] not in "AP":
        return None
    hour, minute = int(text[:2]), int(text[2:4])
    if hour > 12 or minute > 59:
        return None
    hour = hour % 12 + (12 if text[4] == "P" else 0)
    return f"{hour:02d}:{minute:02d}"


def _iso(year: int, month: int, day: int) -> str | None:
    if not 1900 <= year <= 2100:
        return None
    try:
        return _dt.date(year, month, day).isoformat()
    except ValueError:
        return None


def _digits(text: str) -> bool:
    # str.isdigit alone accepts '²' (a Latin-1 line has them), which int() refuses, and int()
    # refuses 4,300 digits and more; no field of the data set has more than 18.
    return text.isdigit() and text.isascii() and len(text) <= 18


# Values the data set uses for "none": not quirks.
_MEANS_NONE = frozenset(("", "0", "0000", "88888888"))

# Dates, times and precincts repeat across millions of rows: parse each spelling once. Bounded,
# so memory stays constant whatever the file.
_date = lru_cache(maxsize=8192)(parse_date)
_yyyymmdd = lru_cache(maxsize=8192)(parse_yyyymmdd)
_precinct_borough = lru_cache(maxsize=1024)(borough_of_precinct)


@lru_cache(maxsize=4096)
def _time(text: str) -> tuple[str | None, int | None]:
    hm = parse_time(text)
    return (hm, int(hm[:2])) if hm else (None, None)


def _odd(counts: dict[str, int] | None, column: str, text: str, value: Any = None) -> Any:
    """`value`; counts `column` as a quirk when it is None but `text` is not a "none" spelling."""
    if value is None and counts is not None and text not in _MEANS_NONE:
        counts[column] = counts.get(column, 0) + 1
    return value


def _int(counts: dict[str, int] | None, column: str, text: str, *,
         zero_is_unknown: bool = True) -> int | None:
    if _digits(text):
        value = int(text)
        return None if value == 0 and zero_is_unknown else value
    return _odd(counts, column, text)
