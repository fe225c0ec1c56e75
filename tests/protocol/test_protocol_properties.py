"""Property tests: round trips for any valid message; only ProtocolError for any input; sizes."""

from __future__ import annotations

import dataclasses
import json

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protocol_strategies import (
    drone_ids,
    headers,
    messages,
    msgpack_values,
    mutated_payloads,
    statuses,
    telemetry,
    topic_of,
    valid_topics,
    violations,
)

import protocol
from protocol import Kind, Position, StatusFlags, Telemetry

# No deadline: the machine is shared and slow, and timing is not what these tests claim.
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(messages)
def test_decode_encode_round_trip(msg: protocol.Message) -> None:
    data = protocol.encode(msg)
    assert protocol.decode(data, topic_of(msg)) == msg
    assert len(data) <= protocol.MAX_MESSAGE_SIZE


@FAST
@given(messages)
def test_json_round_trip_through_text(msg: protocol.Message) -> None:
    doc = protocol.to_json(msg)
    back = protocol.from_json(json.loads(json.dumps(doc, allow_nan=False)))
    assert back == msg
    assert protocol.to_json(back) == doc
    assert doc["message_id"] == protocol.message_id(msg)
    assert doc["time_ms"] % 40 == 0


@FAST
@given(messages)
def test_encoding_is_canonical(msg: protocol.Message) -> None:
    """Equal messages give equal bytes: a retry of a message is byte-identical."""
    data = protocol.encode(msg)
    assert protocol.encode(protocol.decode(data, topic_of(msg))) == data


@FAST
@given(messages, drone_ids)
def test_the_payload_does_not_depend_on_the_drone_id(msg: protocol.Message, other: str) -> None:
    """The drone id travels only in the topic: the payload is the same bytes for any drone, and
    decoding it on another drone's topic gives that drone's message."""
    moved = dataclasses.replace(msg, header=dataclasses.replace(msg.header, drone_id=other))
    data = protocol.encode(msg)
    assert protocol.encode(moved) == data
    assert protocol.decode(data, topic_of(moved)) == moved


@FAST
@given(st.one_of(telemetry, statuses))
def test_telemetry_and_status_payloads_hold_no_text_at_all(msg: protocol.Message) -> None:
    fields = msgpack.unpackb(protocol.encode(msg), raw=False)
    assert not any(isinstance(f, (str, bytes)) for f in fields)


def _decode_or_protocol_error(data: bytes, topic: str) -> None:
    """Only a RemoteProtocolError with a known code for a bad payload on a valid topic; what
    decodes is a valid message of the topic's drone and kind."""
    try:
        msg = protocol.decode(data, topic)
    except protocol.ProtocolError as exc:
        assert exc.code in protocol.ERROR_CODES
        assert isinstance(exc, protocol.RemoteProtocolError)
        return
    assert topic_of(msg) == topic
    assert protocol.decode(protocol.encode(msg), topic) == msg


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=600), valid_topics)
def test_any_bytes_give_a_message_or_protocol_error(data: bytes, topic: str) -> None:
    _decode_or_protocol_error(data, topic)


@settings(max_examples=500, deadline=None)
@given(msgpack_values, valid_topics)
def test_any_msgpack_value_gives_a_message_or_protocol_error(value: object, topic: str) -> None:
    _decode_or_protocol_error(msgpack.packb(value), topic)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([0x10, 0x11, 0x1F]), st.lists(msgpack_values, max_size=16), valid_topics)
def test_arrays_with_a_valid_version_give_a_message_or_protocol_error(
    version: int, rest: list[object], topic: str
) -> None:
    _decode_or_protocol_error(msgpack.packb([version, *rest]), topic)


@settings(max_examples=1000, deadline=None)
@given(mutated_payloads())
def test_one_field_changed_gives_a_message_or_protocol_error(case: tuple[bytes, str]) -> None:
    _decode_or_protocol_error(*case)


@settings(max_examples=300, deadline=None)
@given(messages, st.data())
def test_one_byte_changed_gives_a_message_or_protocol_error(msg: protocol.Message,
                                                            data: st.DataObject) -> None:
    payload = bytearray(protocol.encode(msg))
    index = data.draw(st.integers(0, len(payload) - 1))
    payload[index] = data.draw(st.integers(0, 255))
    _decode_or_protocol_error(bytes(payload), topic_of(msg))


@settings(max_examples=300, deadline=None)
@given(messages, valid_topics)
def test_a_payload_on_another_topic_gives_a_message_or_protocol_error(
    msg: protocol.Message, topic: str
) -> None:
    """The topic decides the layout: another kind's payload fails (the lengths differ), and the
    same kind's decodes as the topic's drone."""
    _decode_or_protocol_error(protocol.encode(msg), topic)


@settings(max_examples=500, deadline=None)
@given(messages, st.text(max_size=80) | valid_topics
       | st.from_regex(r"presacop/v1/drones/[^/]*/[^/]*", fullmatch=True))
def test_any_topic_gives_a_message_of_that_topic_or_topic_error(msg: protocol.Message,
                                                                topic: str) -> None:
    try:
        drone_id, kind = protocol.parse_topic(topic)
    except protocol.TopicError as exc:
        assert exc.code == "bad_topic"
        with pytest.raises(protocol.TopicError) as info:
            protocol.decode(protocol.encode(msg), topic)
        assert info.value.code == "bad_topic"
        return
    assert protocol.topic(drone_id, kind) == topic
    _decode_or_protocol_error(protocol.encode(msg), topic)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=12), msgpack_values, max_size=20) | msgpack_values)
def test_any_json_gives_a_message_or_protocol_error(doc: object) -> None:
    try:
        protocol.from_json(doc)  # type: ignore[arg-type]
    except protocol.RemoteProtocolError as exc:
        assert exc.code in protocol.ERROR_CODES


_wild = (msgpack_values | st.integers() | st.floats() | st.just(10**5000)
         | st.lists(st.text(max_size=12), max_size=3))


@settings(max_examples=1000, deadline=None)
@given(messages, st.data())
def test_json_with_one_value_changed_gives_a_message_or_protocol_error(
    msg: protocol.Message, data: st.DataObject
) -> None:
    doc = protocol.to_json(msg)
    key = data.draw(st.sampled_from(sorted(doc)))
    doc[key] = data.draw(_wild)
    try:
        back = protocol.from_json(doc)
    except protocol.RemoteProtocolError as exc:
        assert exc.code in protocol.ERROR_CODES
        assert exc.path is not None and exc.path.startswith("$")
        return
    assert protocol.decode(protocol.encode(back), topic_of(back)) == back


@settings(max_examples=1000, deadline=None)
@given(messages, st.data())
def test_a_message_with_one_field_changed_encodes_or_raises_local_error(
    msg: protocol.Message, data: st.DataObject
) -> None:
    target = data.draw(st.sampled_from(["header", "position", "self"]))
    value = data.draw(_wild)
    if target == "self":
        name = data.draw(st.sampled_from([f.name for f in dataclasses.fields(msg)]))
        changed = dataclasses.replace(msg, **{name: value})
    elif target == "header":
        name = data.draw(st.sampled_from([f.name for f in dataclasses.fields(protocol.Header)]))
        changed = dataclasses.replace(msg, header=dataclasses.replace(msg.header,
                                                                      **{name: value}))
    else:
        if not hasattr(msg, "position"):
            return
        name = data.draw(st.sampled_from(["lat", "lon", "alt_m"]))
        changed = dataclasses.replace(msg, position=dataclasses.replace(
            msg.position, **{name: value}))  # type: ignore[union-attr]
    try:
        payload = protocol.encode(changed)
    except protocol.LocalProtocolError as exc:
        assert exc.code in protocol.ERROR_CODES and exc.path is not None
        return
    assert protocol.decode(payload, topic_of(changed)) == changed


# --- sizes: what the targets ask of the payload -----------------------------------------

# The realistic envelope of a NYC drone's telemetry: any seq, time, place, heading and flags;
# altitude above mean sea level from -128 m (GPS error over the harbour, with a wide margin) to
# 255 m (the city's highest ground, ~125 m, plus the 120 m flight ceiling); 0..25.5 m/s.
# Below -128 m the altitude takes a 3-byte int16 and the payload 33 bytes: see the next test.
ENVELOPE_ALT_M = (-128, 255)
envelope_telemetry = st.builds(
    Telemetry,
    header=headers,
    position=st.builds(Position, lat=st.floats(-90, 90), lon=st.floats(-180, 180),
                       alt_m=st.integers(*ENVELOPE_ALT_M).map(float)
                       | st.floats(ENVELOPE_ALT_M[0] - 0.49, ENVELOPE_ALT_M[1] + 0.49)),
    heading_deg=st.floats(0, 360, exclude_max=True),
    speed_mps=st.floats(0, 25.5) | st.integers(0, 255).map(lambda dm: dm / 10),
    battery_pct=st.integers(0, 100),
    flags=st.integers(0, 63).map(StatusFlags),
)


@settings(max_examples=1000, deadline=None)
@given(envelope_telemetry)
def test_telemetry_in_the_realistic_envelope_is_at_most_32_bytes(msg: Telemetry) -> None:
    assert len(protocol.encode(msg)) <= 32


def test_telemetry_sizes_at_the_edges_of_the_envelope() -> None:
    """The exact figures docs/protocol.md quotes: 32 at the envelope's top, one more byte for an
    altitude below -128 m, 34 with every field at its range limit, 35 with autopilot_lost too."""
    top = Telemetry(protocol.Header("nyc-0007", 2**32 - 1, 4_102_444_799_960,
                                    protocol.TimeSource.NTP),
                    Position(-89.9999999, -179.9999999, 255), 359.9, 25.5, 100,
                    StatusFlags(63))
    assert len(protocol.encode(top)) == 32
    low = dataclasses.replace(top, position=Position(-89.9999999, -179.9999999, -128))
    assert len(protocol.encode(low)) == 32
    below = dataclasses.replace(top, position=Position(-89.9999999, -179.9999999, -129))
    assert len(protocol.encode(below)) == 33
    limits = dataclasses.replace(top, position=Position(90, 180, 10000), speed_mps=200)
    assert len(protocol.encode(limits)) == 34
    every_flag = dataclasses.replace(limits, flags=StatusFlags(127))  # 1.1's flags_ext: one more
    assert len(protocol.encode(every_flag)) == 35


@settings(max_examples=1000, deadline=None)
@given(violations.map(lambda v: dataclasses.replace(v, vehicle=None)))
def test_violation_without_vehicle_details_is_at_most_64_bytes(msg: protocol.Violation) -> None:
    size = len(protocol.encode(msg))
    assert size <= 64  # the target
    assert size <= 50  # the bound docs/protocol.md quotes: every field at its widest


@settings(max_examples=300, deadline=None)
@given(messages)
def test_no_message_exceeds_the_largest_of_its_kind(msg: protocol.Message) -> None:
    limit = {Kind.TELEMETRY: 35, Kind.VIOLATION: 77, Kind.STATUS: 14}[protocol.kind_of(msg)]
    assert len(protocol.encode(msg)) <= limit
