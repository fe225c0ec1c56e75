"""Normalization of NYPD rows and the borough lookup: pure functions, tables of cases."""

from __future__ import annotations

import contextlib
import csv
import io

import pytest

from backoffice import areas
from backoffice.history.parsers import Parsers, Source, _stdlib_json, fields, to_json
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


# Text columns copied as they are (empty -> null): each must land under its own record key.
PASS_THROUGH = {
    "Plate ID": "plate", "Registration State": "registration_state", "Plate Type": "plate_type",
    "Vehicle Body Type": "vehicle_body_type", "Vehicle Make": "vehicle_make",
    "Issuing Agency": "issuing_agency", "Violation Location": "violation_location",
    "Issuer Command": "issuer_command", "Issuer Squad": "issuer_squad",
    "Violation County": "violation_county",
    "Violation In Front Of Or Opposite": "front_or_opposite", "House Number": "house_number",
    "Street Name": "street_name", "Intersecting Street": "intersecting_street",
    "Sub Division": "sub_division", "Violation Legal Code": "violation_legal_code",
    "Days Parking In Effect    ": "days_parking_in_effect",
    "From Hours In Effect": "from_hours_in_effect", "To Hours In Effect": "to_hours_in_effect",
    "Vehicle Color": "vehicle_color", "Unregistered Vehicle?": "unregistered_vehicle",
    "Meter Number": "meter_number", "Violation Post Code": "violation_post_code",
    "Violation Description": "violation_description",
    "No Standing or Stopping Violation": "no_standing_or_stopping",
    "Hydrant Violation": "hydrant_violation",
    "Double Parking Violation": "double_parking_violation",
}
NUMBERS = {
    "Street Code1": "street_code1", "Street Code2": "street_code2", "Street Code3": "street_code3",
    "Violation Precinct": "violation_precinct", "Issuer Precinct": "issuer_precinct",
    "Issuer Code": "issuer_code", "Law Section": "law_section", "Vehicle Year": "vehicle_year",
    "Feet From Curb": "feet_from_curb",
}


def test_every_column_lands_under_its_own_key() -> None:
    # normalize unpacks the row positionally: a column out of place would shift values.
    base = row()
    cells = {h: base[i] for i, h in enumerate(HEADER)}
    cells.update({h: f"T{i}" for i, h in enumerate(PASS_THROUGH)})
    cells.update({h: str(100 + i) for i, h in enumerate(NUMBERS)})
    rec = normalize([cells[h] for h in HEADER])
    assert {key: rec[key] for key in PASS_THROUGH.values()} == \
        {key: f"T{i}" for i, key in enumerate(PASS_THROUGH.values())}
    assert {key: rec[key] for key in NUMBERS.values()} == \
        {key: 100 + i for i, key in enumerate(NUMBERS.values())}


@pytest.mark.parametrize("text", ["19²5", "٣٣", "9" * 5000])
def test_digits_int_refuses_are_quirks_not_crashes(text: str) -> None:
    # '²' and Arabic-Indic digits pass str.isdigit; int() refuses the first, and 4,300 digits.
    quirks: dict[str, int] = {}
    rec = normalize(row(vehicle_year=text, street_code1=text), quirks)
    assert (rec["vehicle_year"], rec["street_code1"]) == (None, None)
    assert quirks == {"Vehicle Year": 1, "Street Code1": 1}
    for column in ("violation_code", "summons_number", "issue_date"):
        with pytest.raises(BadRow):
            normalize(row(**{column: text if column != "issue_date" else f"01/01/{text}"}))


def test_the_fast_json_writer_gives_the_stdlib_bytes() -> None:
    # docs/kafka-records.md documents the stdlib's compact UTF-8 JSON; orjson must not differ.
    odd = "\x00\x1f\x7f \"q\" \\ \n\t é²€ \U0001F600 \u2028"
    records = [normalize(row(street_name=odd, plate_id="Ä")), {"n": None, "i": -3, "s": odd}]
    for line, _ in generate_lines(300, seed=11, bad_fraction=0):
        with contextlib.suppress(BadRow):
            records.append(normalize(fields(line)))
    assert len(records) > 250
    assert [to_json(r) for r in records] == [_stdlib_json(r) for r in records]
    assert to_json is not _stdlib_json  # the history extra is installed where tests run


@pytest.mark.parametrize(("line", "expected"), [
    ("a,b,c\r\n", ["a", "b", "c"]),
    ('a,"b,c",d\n', ["a", "b,c", "d"]),
    ("a,b\rc,d\n", ["a", "b\rc", "d"]),  # a bare CR: csv refuses it, a plain split does not
])
def test_fields_of_a_line(line: str, expected: list[str]) -> None:
    assert fields(line) == expected


@pytest.mark.parametrize("workers", [0, 2])
def test_parser_processes_give_the_blocks_back_in_order(workers: int) -> None:
    # The sender sends in the order blocks come back; a checkpoint between blocks relies on it.
    lines = [(n + 2, (line + "\n").encode())
             for n, (line, _) in enumerate(generate_lines(1200, seed=12, bad_fraction=0.02))]
    lines[5] = (7, None)  # over max_line_bytes
    parsers = Parsers(Source("f.csv", "0" * 16, 100), workers)
    got = []
    try:
        for i in range(0, len(lines), 100):
            while parsers.full():
                got += parsers.next().outputs
            parsers.submit(lines[i:i + 100])
        assert len(parsers) <= 2 * workers + 1
        while parsers:
            got += parsers.next().outputs
    finally:
        parsers.close()
    assert [o.line for o in got] == [n for n, _ in lines]
    assert got[5].reason == "line_too_long"
    assert sum(o.reason is not None for o in got) > 10
