"""Normalization of NYPD rows and the borough lookup: pure functions, tables of cases."""

from __future__ import annotations

import csv
import io

import pytest

from backoffice import areas
from backoffice.history.progress import Progress
from backoffice.history.progress import line as progress_line
from backoffice.history.records import (
    BAD_ROW_REASONS,
    HEADER,
    BadRow,
    check_header,
    normalize,
    parse_date,
    parse_time,
)
from backoffice.history.sample import generate_lines


@pytest.mark.parametrize(("text", "expected"), [
    ("0143A", "01:43"), ("1143P", "23:43"), ("1200A", "00:00"), ("0000A", "00:00"),
    ("1243P", "12:43"), ("0043P", "12:43"), ("0905P", "21:05"),
    ("8888P", None), ("1560A", None), ("12", None), ("", None), ("0143X", None), ("1300P", None),
])
def test_times_in_the_data_sets_12_hour_format(text: str, expected: str | None) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("07/14/2023", "2023-07-14"), ("01/01/2022 12:00:00 AM", "2022-01-01"),
    ("02/30/2023", None), ("13/45/2023", None), ("2023-07-01", None), ("", None),
    ("07/14/1850", None),
])
def test_issue_dates_mm_dd_yyyy(text: str, expected: str | None) -> None:
    assert parse_date(text) == expected


def row(**changes: str) -> list[str]:
    base = dict.fromkeys(HEADER, "")
    base.update({"Summons Number": "1234567890", "Plate ID": "ABC1234",
                 "Registration State": "NY", "Issue Date": "07/14/2023", "Violation Code": "21",
                 "Violation Time": "0143A", "Violation County": "K", "Violation Precinct": "75",
                 "Vehicle Year": "0", "Street Name": '"BROADWAY', "Feet From Curb": "0",
                 "Vehicle Expiration Date": "88888888"})
    base.update({h: changes.pop(h.strip().replace(" ", "_").lower(), base[h]) for h in HEADER})
    assert not changes, f"unknown columns {changes}"
    return [base[h] for h in HEADER]


def test_a_row_with_the_data_sets_quirks_normalizes() -> None:
    quirks: dict[str, int] = {}
    rec = normalize(row(), quirks)
    assert rec["summons_number"] == "1234567890"
    assert (rec["issue_date"], rec["violation_time"], rec["hour"]) == ("2023-07-14", "01:43", 1)
    assert rec["issued_at"] == "2023-07-14T01:43:00"
    assert rec["violation_code"] == 21
    assert (rec["violation_county"], rec["borough"]) == ("K", "Brooklyn")
    assert rec["street_name"] == "BROADWAY"  # stray quote gone
    assert rec["vehicle_year"] is None  # 0 = unknown
    assert rec["vehicle_expiration_date"] is None  # 88888888 = none, not a quirk
    assert rec["feet_from_curb"] == 0  # a real zero
    assert rec["intersecting_street"] is None  # empty -> null
    assert quirks == {}


def test_garbled_optional_fields_become_null_and_are_counted() -> None:
    quirks: dict[str, int] = {}
    rec = normalize(row(violation_time="8888P", vehicle_year="19X5"), quirks)
    assert (rec["violation_time"], rec["hour"], rec["issued_at"]) == (None, None, None)
    assert rec["vehicle_year"] is None
    assert quirks == {"Violation Time": 1, "Vehicle Year": 1}


def test_empty_county_falls_back_to_the_precinct() -> None:
    assert normalize(row(violation_county="", violation_precinct="109"))["borough"] == "Queens"
    assert normalize(row(violation_county="", violation_precinct="0"))["borough"] is None


@pytest.mark.parametrize(("changes", "reason", "column"), [
    ({"summons_number": ""}, "missing_summons", "Summons Number"),
    ({"summons_number": "12AB"}, "bad_summons", "Summons Number"),
    ({"issue_date": "13/45/2023"}, "bad_date", "Issue Date"),
    ({"issue_date": ""}, "bad_date", "Issue Date"),
    ({"violation_code": "AB"}, "bad_code", "Violation Code"),
])
def test_bad_rows_name_reason_and_column(changes: dict[str, str], reason: str,
                                         column: str) -> None:
    with pytest.raises(BadRow) as err:
        normalize(row(**changes))
    assert (err.value.reason, err.value.column) == (reason, column)
    assert reason in BAD_ROW_REASONS


def test_wrong_column_count_is_a_bad_row() -> None:
    with pytest.raises(BadRow) as err:
        normalize(row()[:-2])
    assert err.value.reason == "column_count"


def test_header_check_accepts_the_published_header_only() -> None:
    check_header(list(HEADER))
    with pytest.raises(BadRow) as err:
        check_header([h for h in HEADER if h != "Issue Date"])
    assert err.value.reason == "bad_header" and "Issue Date" in err.value.detail


def test_sample_rows_normalize_except_the_deliberately_bad_ones() -> None:
    good = bad = 0
    for line, is_bad in generate_lines(3000, seed=5, bad_fraction=0.01):
        fields = next(csv.reader(io.StringIO(line)))
        try:
            normalize(fields)
            good += 1
            assert not is_bad
        except BadRow:
            bad += 1
            assert is_bad or '"' in line  # a stray quote is fixed by the ingest's reader
    assert good > 2900 and bad > 10


@pytest.mark.parametrize(("county", "borough"), [
    ("NY", "Manhattan"), ("K", "Brooklyn"), ("Q", "Queens"), ("BX", "Bronx"),
    ("R", "Staten Island"),
    ("Kings", "Brooklyn"), ("QNS", "Queens"), ("MN", "Manhattan"), ("Rich", "Staten Island"),
    ("", None), ("XX", None),
])
def test_county_spellings(county: str, borough: str | None) -> None:
    assert areas.borough_of_county(county) == borough


@pytest.mark.parametrize(("lat", "lon", "borough"), [
    (40.7128, -74.0060, "Manhattan"), (40.7580, -73.9855, "Manhattan"),  # City Hall, Times Sq
    (40.8296, -73.9262, "Bronx"), (40.6782, -73.9442, "Brooklyn"), (40.7282, -73.7949, "Queens"),
    (40.5795, -74.1502, "Staten Island"), (40.7769, -73.8740, "Queens"),  # LaGuardia
    (40.7306, -73.9866, "Manhattan"), (41.5, -74.0, None), (None, None, None),
])
def test_points_to_boroughs(lat: float, lon: float, borough: str | None) -> None:
    assert areas.borough_of_point(lat, lon) == borough


def test_grid_cells() -> None:
    assert areas.cell_of(40.7128, -74.0060) == "40.71,-74.01"
    assert areas.cell_of(40.71, -74.0) == "40.71,-74.00"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("stream", "drawn"), [(_Terminal(), True), (io.StringIO(), False)])
def test_progress_bar_on_a_terminal_only(stream: io.StringIO, drawn: bool) -> None:
    bar = Progress(1000, stream)
    for rows in range(1, 5000):
        bar.update(lambda: 500, rows)
    bar.close()
    text = stream.getvalue()
    assert ("50.0%" in text and "rows/s" in text and "ETA" in text) == drawn
    assert (text == "") == (not drawn)


def test_progress_line_text() -> None:
    assert progress_line(250, 1000, 1234, 2.0) == (
        "[#######-----------------------]  25.0%  1,234 rows  617 rows/s  ETA 0:00:06")
