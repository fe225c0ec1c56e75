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
    v = dict(zip(HEADER_NAMES, [c.strip(' "') for c in row], strict=True))
    q = _Quirks(quirks)
    summons = v["Summons Number"]
    if not summons:
        raise BadRow("missing_summons", "Summons Number is empty", "Summons Number")
    if not (summons.isdigit() and len(summons) <= 12):
        raise BadRow("bad_summons", f"Summons Number {summons[:40]!r} is not 1-12 digits",
                     "Summons Number")
    issue_date = parse_date(v["Issue Date"])
    if issue_date is None:
        raise BadRow("bad_date", f"Issue Date {v['Issue Date'][:40]!r} is not MM/DD/YYYY",
                     "Issue Date")
    code_text = v["Violation Code"]
    if code_text and not code_text.isdigit():
        raise BadRow("bad_code", f"Violation Code {code_text[:40]!r} is not a number",
                     "Violation Code")
    time_hm = q.check("Violation Time", parse_time(v["Violation Time"]), v["Violation Time"])
    precinct = q.int("Violation Precinct", v["Violation Precinct"])
    county = v["Violation County"]
    borough = borough_of_county(county) or borough_of_precinct(precinct)
    issued_at = f"{issue_date}T{time_hm}:00" if time_hm else None
    return {
        "record_version": RECORD_VERSION,
        "summons_number": summons,
        "plate": v["Plate ID"] or None,
        "registration_state": v["Registration State"] or None,
        "plate_type": v["Plate Type"] or None,
        "issue_date": issue_date,
        "violation_time": time_hm,
        "issued_at": issued_at,
        "hour": int(time_hm[:2]) if time_hm else None,
        "violation_code": int(code_text) if code_text else None,
        "vehicle_body_type": v["Vehicle Body Type"] or None,
        "vehicle_make": v["Vehicle Make"] or None,
        "issuing_agency": v["Issuing Agency"] or None,
        "street_code1": q.int("Street Code1", v["Street Code1"]),
        "street_code2": q.int("Street Code2", v["Street Code2"]),
        "street_code3": q.int("Street Code3", v["Street Code3"]),
        "vehicle_expiration_date": q.check("Vehicle Expiration Date",
                                           parse_yyyymmdd(v["Vehicle Expiration Date"]),
                                           v["Vehicle Expiration Date"]),
        "violation_location": v["Violation Location"] or None,
        "violation_precinct": precinct,
        "issuer_precinct": q.int("Issuer Precinct", v["Issuer Precinct"]),
        "issuer_code": q.int("Issuer Code", v["Issuer Code"]),
        "issuer_command": v["Issuer Command"] or None,
        "issuer_squad": v["Issuer Squad"] or None,
        "time_first_observed": q.check("Time First Observed",
                                       parse_time(v["Time First Observed"]),
                                       v["Time First Observed"]),
        "violation_county": county or None,
        "borough": borough,
        "front_or_opposite": v["Violation In Front Of Or Opposite"] or None,
        "house_number": v["House Number"] or None,
        "street_name": v["Street Name"] or None,
        "intersecting_street": v["Intersecting Street"] or None,
        "date_first_observed": q.check("Date First Observed",
                                       parse_yyyymmdd(v["Date First Observed"]),
                                       v["Date First Observed"]),
        "law_section": q.int("Law Section", v["Law Section"]),
        "sub_division": v["Sub Division"] or None,
        "violation_legal_code": v["Violation Legal Code"] or None,
        "days_parking_in_effect": v["Days Parking In Effect"] or None,
        "from_hours_in_effect": v["From Hours In Effect"] or None,
        "to_hours_in_effect": v["To Hours In Effect"] or None,
        "vehicle_color": v["Vehicle Color"] or None,
        "unregistered_vehicle": v["Unregistered Vehicle?"] or None,
        "vehicle_year": q.int("Vehicle Year", v["Vehicle Year"]),
        "meter_number": v["Meter Number"] or None,
        "feet_from_curb": q.int("Feet From Curb", v["Feet From Curb"], zero_is_unknown=False),
        "violation_post_code": v["Violation Post Code"] or None,
        "violation_description": v["Violation Description"] or None,
        "no_standing_or_stopping": v["No Standing or Stopping Violation"] or None,
        "hydrant_violation": v["Hydrant Violation"] or None,
        "double_parking_violation": v["Double Parking Violation"] or None,
    }


def parse_date(text: str) -> str | None:
    """MM/DD/YYYY (the Issue Date format; a trailing ` 12:00:00 AM` is tolerated) -> ISO date."""
    head = text.split(" ", 1)[0]
    parts = head.split("/")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    return _iso(int(parts[2]), int(parts[0]), int(parts[1]))


def parse_yyyymmdd(text: str) -> str | None:
    """YYYYMMDD (expiration, first observed; `0` and `88888888` mean none) -> ISO date."""
    if len(text) != 8 or not text.isdigit():
        return None
    return _iso(int(text[:4]), int(text[4:6]), int(text[6:]))


def parse_time(text: str) -> str | None:
    """`HHMMA`/`HHMMP` (12-hour clock; the data set also has `0043P` and `1243A`) -> "HH:MM".

    Hours 00 and 12 both mean the start of the half day; anything else unparseable -> None.
    """
    if len(text) != 5 or not text[:4].isdigit() or text[4] not in "AP":
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


# Values the data set uses for "none": not quirks.
_MEANS_NONE = frozenset(("", "0", "0000", "88888888"))


class _Quirks:
    """Counts optional fields that did not parse, per column (None: do not count)."""

    def __init__(self, counts: dict[str, int] | None) -> None:
        self.counts = counts

    def check(self, column: str, value: Any, text: str) -> Any:
        if value is None and text not in _MEANS_NONE and self.counts is not None:
            self.counts[column] = self.counts.get(column, 0) + 1
        return value

    def int(self, column: str, text: str, *, zero_is_unknown: bool = True) -> int | None:
        value = int(text) if text.isdigit() else None
        if value == 0 and zero_is_unknown:
            return None
        return self.check(column, value, text)
