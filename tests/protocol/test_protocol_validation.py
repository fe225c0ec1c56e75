"""Encode-side validation (LocalProtocolError), JSON validation, and bounded decoding."""

from __future__ import annotations

import dataclasses
import tracemalloc
from typing import Any

import msgpack
import pytest

import protocol
from protocol import (
    Header,
    Kind,
    Position,
    Status,
    StatusFlags,
    Telemetry,
    TimeSource,
    Vehicle,
    Violation,
)

HEADER = Header("nyc-0007", 42, 1_748_779_200_120, TimeSource.GPS)
POS = Position(40.7579747, -73.9855426, 120.0)
TEL = Telemetry(HEADER, POS, 271.5, 8.3, 87, StatusFlags.NONE)
VIO = Violation(HEADER, POS, "ABC1234", "NY", 0.93, 21, "0123456789abcdef")
TEL_TOPIC = protocol.topic("nyc-0007", Kind.TELEMETRY)
VIO_TOPIC = protocol.topic("nyc-0007", Kind.VIOLATION)


def _expect_local(msg: object, code: str, path: str | None) -> None:
    with pytest.raises(protocol.LocalProtocolError) as info:
        protocol.encode(msg)  # type: ignore[arg-type]
    assert (info.value.code, info.value.path) == (code, path)
    with pytest.raises(protocol.LocalProtocolError):
        protocol.to_json(msg)  # type: ignore[arg-type]


@pytest.mark.parametrize(("changes", "code", "path"), [
    ({"drone_id": "nyc/7"}, "bad_text", "$.drone_id"),
    ({"drone_id": 7}, "bad_type", "$.drone_id"),
    ({"seq": -1}, "out_of_range", "$.seq"),
    ({"seq": 2**32}, "out_of_range", "$.seq"),
    ({"seq": True}, "bad_type", "$.seq"),
    ({"time_ms": 1_577_836_799_999}, "invalid_time", "$.time_ms"),
    ({"time_ms": 4_102_444_800_000}, "invalid_time", "$.time_ms"),
    ({"time_ms": 1.7e12}, "bad_type", "$.time_ms"),
    ({"time_source": 3}, "out_of_range", "$.time_source"),
])
def test_encode_rejects_a_bad_header(changes: dict[str, Any], code: str, path: str) -> None:
    _expect_local(dataclasses.replace(TEL, header=dataclasses.replace(HEADER, **changes)),
                  code, path)


@pytest.mark.parametrize(("changes", "code", "path"), [
    ({"position": Position(90.0000001, 0, 0)}, "out_of_range", "$.lat_deg"),
    ({"position": Position(0, -180.0000001, 0)}, "out_of_range", "$.lon_deg"),
    ({"position": Position(0, 0, float("nan"))}, "out_of_range", "$.alt_m"),
    ({"position": Position(0, 0, float("inf"))}, "out_of_range", "$.alt_m"),
    ({"position": Position("40", 0, 0)}, "bad_type", "$.lat_deg"),  # type: ignore[arg-type]
    ({"position": (40.0, -74.0, 10.0)}, "bad_type", "$.position"),
    ({"heading_deg": 360}, "out_of_range", "$.heading_deg"),
    ({"speed_mps": -0.1}, "out_of_range", "$.speed_mps"),
    ({"battery_pct": 50.5}, "bad_type", "$.battery_pct"),
    ({"flags": 128}, "out_of_range", "$.flags"),
])
def test_encode_rejects_bad_telemetry(changes: dict[str, Any], code: str, path: str) -> None:
    _expect_local(dataclasses.replace(TEL, **changes), code, path)


@pytest.mark.parametrize(("changes", "code", "path"), [
    ({"plate": "abc123"}, "bad_plate", "$.plate"),
    ({"plate": "ÄBC"}, "bad_plate", "$.plate"),
    ({"region": "NYC"}, "bad_text", "$.region"),
    ({"confidence": 1.01}, "out_of_range", "$.confidence"),
    ({"code": 0}, "unknown_code", "$.code"),
    ({"code": "21"}, "bad_type", "$.code"),
    ({"evidence_id": "0123456789ABCDEF"}, "bad_text", "$.evidence_id"),
    ({"evidence_id": b"\x00" * 8}, "bad_type", "$.evidence_id"),
    ({"vehicle": Vehicle(make="toyot")}, "bad_text", "$.vehicle.make"),
    ({"vehicle": {"make": "TOYOT"}}, "bad_type", "$.vehicle"),
])
def test_encode_rejects_bad_violation(changes: dict[str, Any], code: str, path: str) -> None:
    _expect_local(dataclasses.replace(VIO, **changes), code, path)


def test_encode_rejects_a_non_message() -> None:
    _expect_local({"kind": "status"}, "bad_type", "$")
    _expect_local(Status(HEADER, 1), "bad_type", "$.online")  # type: ignore[arg-type]


def test_construction_quantizes_to_the_wire_resolution() -> None:
    assert Position(40.712775345, -74.00597281, 10.04).lat == 40.7127753
    assert dataclasses.replace(TEL, heading_deg=359.96).heading_deg == 0.0
    assert dataclasses.replace(VIO, confidence=0.934).confidence == 0.93
    assert dataclasses.replace(VIO, vehicle=Vehicle()).vehicle is None


@pytest.mark.parametrize(("alt", "metres"), [
    (10.04, 10.0), (10.6, 11.0), (-0.4, 0.0), (-999.6, -1000.0), (9999.5, 10000.0),
    (120.49, 120.0), (120, 120),
])
def test_altitude_is_quantized_to_whole_metres(alt: float, metres: float) -> None:
    position = Position(0, 0, alt)
    assert position.alt_m == metres
    msg = dataclasses.replace(TEL, position=position)
    back = protocol.decode(protocol.encode(msg), TEL_TOPIC)
    assert back.position.alt_m == metres  # type: ignore[union-attr]
    assert protocol.to_json(msg)["alt_m"] == metres


@pytest.mark.parametrize(("time_ms", "floored"), [
    (1_748_779_200_000, 1_748_779_200_000),
    (1_748_779_200_039, 1_748_779_200_000),
    (1_748_779_200_040, 1_748_779_200_040),
    (1_748_779_200_123, 1_748_779_200_120),
    (1_748_779_200_999, 1_748_779_200_960),
    (4_102_444_799_999, 4_102_444_799_960),
])
def test_header_floors_time_to_the_40_ms_tick(time_ms: int, floored: int) -> None:
    header = Header("nyc-0007", 1, time_ms, TimeSource.GPS)
    assert header.time_ms == floored
    msg = Status(header, True)
    assert protocol.decode(protocol.encode(msg), protocol.topic("nyc-0007", Kind.STATUS)) == msg
    assert protocol.to_json(msg)["time_ms"] == floored


def test_header_keeps_a_time_that_is_not_an_int_for_encode_to_reject() -> None:
    assert Header("a", 1, 1.7e12, TimeSource.GPS).time_ms == 1.7e12  # type: ignore[arg-type]


def test_time_sub_is_tick_and_source() -> None:
    """time_sub = ((ms % 1000) // 40) << 2 | source: one byte (a fixint <= 99) for any time."""
    for ms, source in [(0, TimeSource.UNSYNCED), (120, TimeSource.GPS), (960, TimeSource.NTP)]:
        header = Header("nyc-0007", 1, 1_748_779_200_000 + ms, source)
        fields = msgpack.unpackb(protocol.encode(Status(header, True)))
        assert fields[2:4] == [1_748_779_200, (ms // 40) << 2 | source]
        assert fields[3] <= 99


def test_the_payload_carries_no_drone_id_and_no_kind() -> None:
    for msg in (TEL, VIO, Status(HEADER, True)):
        data = protocol.encode(msg)
        assert b"nyc-0007" not in data
        fields = msgpack.unpackb(data)
        assert fields[0] == 0x11 and fields[1] == HEADER.seq  # schema, then seq: no kind, no id


def test_unqualified_violation_is_marked_and_kept() -> None:
    msg = dataclasses.replace(VIO, code=None)
    assert not msg.qualified
    back = protocol.decode(protocol.encode(msg), VIO_TOPIC)
    assert back.code is None and not back.qualified  # type: ignore[union-attr]
    doc = protocol.to_json(msg)
    assert doc["code"] is None and doc["qualified"] is False


def test_sizes_for_realistic_values() -> None:
    """The figures docs/protocol.md quotes (bench/protocol.py prints them with JSON and CSV)."""
    header = dataclasses.replace(HEADER, seq=123_456)  # a persisted seq, months in: a uint32
    assert len(protocol.encode(dataclasses.replace(TEL, header=header))) == 30
    assert len(protocol.encode(dataclasses.replace(VIO, header=header))) == 47
    assert len(protocol.encode(Status(header, True))) == 14
    assert len(protocol.encode(TEL)) == 26  # seq 42 is a one-byte fixint


# --- from_json -----------------------------------------------------------------------------------

def _json_error(doc: object) -> tuple[str, str | None]:
    with pytest.raises(protocol.RemoteProtocolError) as info:
        protocol.from_json(doc)  # type: ignore[arg-type]
    return info.value.code, info.value.path


def test_from_json_names_the_field() -> None:
    good = protocol.to_json(VIO)
    assert _json_error([good]) == ("bad_type", "$")
    assert _json_error(good | {"schema": "2.0"}) == ("unknown_version", "$.schema")
    assert _json_error(good | {"schema": 1.0}) == ("bad_type", "$.schema")
    assert _json_error(good | {"kind": "alert"}) == ("unknown_kind", "$.kind")
    assert _json_error({k: v for k, v in good.items() if k != "plate"}) == (
        "missing_field", "$.plate")
    assert _json_error(good | {"colour": "WH"}) == ("extra_field", "$.colour")
    assert _json_error(good | {"lat_deg": "40.7"}) == ("bad_type", "$.lat_deg")
    assert _json_error(good | {"plate": "abc"}) == ("bad_plate", "$.plate")
    assert _json_error(good | {"time_source": "rtc"}) == ("out_of_range", "$.time_source")
    assert _json_error(good | {"message_id": "nyc-0007:43"}) == ("inconsistent", "$.message_id")
    assert _json_error(good | {"qualified": False}) == ("inconsistent", "$.qualified")
    assert _json_error(good | {"time": "2025-06-01T12:00:00Z"}) == ("inconsistent", "$.time")
    assert _json_error(good | {"vehicle": {"model": "X"}}) == ("extra_field", "$.vehicle.model")
    tel = protocol.to_json(TEL)
    assert _json_error(tel | {"flags": ["rotor_fault"]}) == ("out_of_range", "$.flags[0]")
    assert _json_error(tel | {"flags": 0}) == ("bad_type", "$.flags")


def test_from_json_rejects_a_time_finer_than_the_wire_carries() -> None:
    doc = protocol.to_json(TEL)
    for extra in (1, 39):  # with or without the derived "time", the error names time_ms
        loose = doc | {"time_ms": doc["time_ms"] + extra}
        assert _json_error(loose) == ("out_of_range", "$.time_ms")
        assert _json_error({k: v for k, v in loose.items() if k != "time"}) == (
            "out_of_range", "$.time_ms")
    assert protocol.from_json(doc) == TEL


def test_from_json_of_a_newer_minor_ignores_added_keys() -> None:
    doc = protocol.to_json(TEL) | {"schema": "1.4", "wind_mps": 3.5}
    assert protocol.from_json(doc) == TEL


def test_from_json_accepts_absent_derived_fields() -> None:
    doc = {k: v for k, v in protocol.to_json(VIO).items()
           if k not in ("message_id", "time", "qualified")}
    assert protocol.from_json(doc) == VIO


# --- bounded decoding ----------------------------------------------------------------------------

@pytest.mark.parametrize(("payload", "code"), [
    (b"\xdd\xff\xff\xff\xff\x10" + b"\x00" * 14, "oversized"),  # 1.0, 2**32-1 items
    # The version is judged before 1.x's limits: major 0 is unknown, whatever follows.
    (b"\xdd\xff\xff\xff\xff" + b"\x00" * 15, "unknown_version"),
    (b"\x91\xdd\xff\xff\xff\xff" + b"\x00" * 14, "oversized"),  # nested
    (b"\x91\xdf\xff\xff\xff\xff" + b"\x00" * 14, "oversized"),  # map of 2**32-1 pairs
    (b"\x91\xdb\xff\xff\xff\xff" + b"a" * 14, "truncated"),  # str of 4 GiB
    (b"\x91\xc6\xff\xff\xff\xff" + b"a" * 14, "truncated"),  # bin of 4 GiB
    (b"\x91\xc9\xff\xff\xff\xff\x05" + b"a" * 13, "oversized"),  # ext of 4 GiB
    (b"\x91" * 19 + b"\x00", "bad_type"),  # deep nesting: an array where the version goes
])
def test_hostile_20_byte_payloads_are_rejected_without_allocating(payload: bytes,
                                                                  code: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(protocol.RemoteProtocolError) as info:
            protocol.decode(payload, TEL_TOPIC)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.code == code
    assert peak < 256 * 1024, f"decoding 20 bytes allocated {peak} bytes"


def test_oversized_is_checked_before_unpacking() -> None:
    valid_prefix = protocol.encode(TEL)
    payload = valid_prefix + b"\x00" * (protocol.MAX_MESSAGE_SIZE + 1 - len(valid_prefix))
    with pytest.raises(protocol.RemoteProtocolError) as info:
        protocol.decode(payload, TEL_TOPIC)
    assert info.value.code == "oversized"


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(protocol.RemoteProtocolError) as info:
        protocol.decode("\x90", TEL_TOPIC)  # type: ignore[arg-type]
    assert info.value.code == "bad_type"


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = protocol.encode(TEL)
    assert protocol.decode(bytearray(data), TEL_TOPIC) == TEL
    assert protocol.decode(memoryview(data), TEL_TOPIC) == TEL


@pytest.mark.parametrize("topic", [
    "", "presacop/v1/drones/nyc-0007", "presacop/v1/drones/+/telemetry",
    "presacop/v1/drones/nyc-0007/alerts", b"presacop/v1/drones/nyc-0007/telemetry", None,
])
def test_decode_checks_the_topic_first(topic: object) -> None:
    """A bad topic is a TopicError whatever the payload: the topic says whose and what it is."""
    for payload in (protocol.encode(TEL), b"\xc1"):
        with pytest.raises(protocol.TopicError) as info:
            protocol.decode(payload, topic)  # type: ignore[arg-type]
        assert info.value.code == "bad_topic"


def test_the_topic_names_the_drone_and_the_kind() -> None:
    data = protocol.encode(TEL)
    other = protocol.decode(data, protocol.topic("bk-12", Kind.TELEMETRY))
    assert other.header.drone_id == "bk-12" and protocol.message_id(other) == "bk-12:42"
    assert protocol.to_json(other)["drone_id"] == "bk-12"
    with pytest.raises(protocol.RemoteProtocolError) as info:
        protocol.decode(data, VIO_TOPIC)
    assert (info.value.code, info.value.path) == ("missing_field", "$.evidence_id")


def test_to_json_of_a_decoded_message_follows_its_fields() -> None:
    """decode remembers the validated array for to_json; a changed copy must not reuse it."""
    decoded = protocol.decode(protocol.encode(VIO), VIO_TOPIC)
    assert protocol.to_json(decoded) == protocol.to_json(VIO)
    changed = dataclasses.replace(decoded, code=None)
    assert protocol.to_json(changed)["code"] is None
    assert protocol.to_json(changed)["qualified"] is False
    with pytest.raises(protocol.LocalProtocolError):
        protocol.to_json(dataclasses.replace(decoded, plate="bad plate"))


def test_to_json_of_a_newer_minor_message_is_our_canonical_form() -> None:
    fields = msgpack.unpackb(protocol.encode(VIO))
    newer = msgpack.packb([0x12, *fields[1:], None, None, None, None, None, "appended"])
    doc = protocol.to_json(protocol.decode(newer, VIO_TOPIC))
    assert doc == protocol.to_json(VIO) and doc["schema"] == "1.1"


# --- 1.1: flags from bit 6 up travel in the appended flags_ext ------------------------------------

def test_autopilot_lost_travels_in_flags_ext_and_round_trips() -> None:
    tel = dataclasses.replace(TEL, flags=StatusFlags.AUTOPILOT_LOST | StatusFlags.GPS_NO_FIX)
    fields = msgpack.unpackb(protocol.encode(tel))
    assert fields[0] == 0x11 and fields[10:] == [32, 1]  # flags keeps 1.0's bits only
    assert protocol.decode(protocol.encode(tel), TEL_TOPIC) == tel
    assert protocol.to_json(tel)["flags"] == ["gps_no_fix", "autopilot_lost"]
    assert protocol.from_json(protocol.to_json(tel)) == tel
    assert len(msgpack.unpackb(protocol.encode(TEL))) == 11  # no such flag: left out, 1.0's size


def test_flags_ext_nil_means_none_and_a_10_payload_may_not_carry_it() -> None:
    fields = msgpack.unpackb(protocol.encode(TEL))
    assert protocol.decode(msgpack.packb([*fields, None]), TEL_TOPIC) == TEL
    with pytest.raises(protocol.RemoteProtocolError) as info:
        protocol.decode(msgpack.packb([0x10, *fields[1:], 1]), TEL_TOPIC)
    assert (info.value.code, info.value.path) == ("extra_field", "$[11]")
    assert protocol.decode(msgpack.packb([0x10, *fields[1:]]), TEL_TOPIC) == TEL  # 1.0 still reads


@pytest.mark.parametrize(("ext", "code"), [(2, "out_of_range"), (-1, "out_of_range"),
                                            ("1", "bad_type"), (True, "bad_type")])
def test_bad_flags_ext_is_rejected(ext: object, code: str) -> None:
    fields = msgpack.unpackb(protocol.encode(TEL))
    with pytest.raises(protocol.RemoteProtocolError) as info:
        protocol.decode(msgpack.packb([*fields, ext]), TEL_TOPIC)
    assert (info.value.code, info.value.path) == (code, "$.flags_ext")
