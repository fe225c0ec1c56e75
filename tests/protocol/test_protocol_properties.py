"""Property tests: round trips for any valid message; only ProtocolError for any input."""

from __future__ import annotations

import json

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protocol_strategies import messages, msgpack_values, mutated_payloads

import protocol

# No deadline: the machine is shared and slow, and timing is not what these tests claim.
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(messages)
def test_decode_encode_round_trip(msg: protocol.Message) -> None:
    data = protocol.encode(msg)
    assert protocol.decode(data) == msg
    assert len(data) <= protocol.MAX_MESSAGE_SIZE


@FAST
@given(messages)
def test_json_round_trip_through_text(msg: protocol.Message) -> None:
    doc = protocol.to_json(msg)
    back = protocol.from_json(json.loads(json.dumps(doc, allow_nan=False)))
    assert back == msg
    assert protocol.to_json(back) == doc
    assert doc["message_id"] == protocol.message_id(msg)


@FAST
@given(messages)
def test_encoding_is_canonical(msg: protocol.Message) -> None:
    """Equal messages give equal bytes: a retry of a message is byte-identical."""
    data = protocol.encode(msg)
    assert protocol.encode(protocol.decode(data)) == data


def _decode_or_protocol_error(data: bytes) -> None:
    try:
        msg = protocol.decode(data)
    except protocol.ProtocolError as exc:
        assert exc.code in protocol.ERROR_CODES
        assert isinstance(exc, protocol.RemoteProtocolError)
        return
    assert protocol.decode(protocol.encode(msg)) == msg  # what decodes is a valid message


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_give_a_message_or_protocol_error(data: bytes) -> None:
    _decode_or_protocol_error(data)


@settings(max_examples=500, deadline=None)
@given(msgpack_values)
def test_any_msgpack_value_gives_a_message_or_protocol_error(value: object) -> None:
    _decode_or_protocol_error(msgpack.packb(value))


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([0x10, 0x11, 0x1F]), st.integers(0, 2), st.lists(msgpack_values,
                                                                         max_size=18))
def test_arrays_with_a_valid_envelope_give_a_message_or_protocol_error(
    version: int, kind: int, rest: list[object]
) -> None:
    _decode_or_protocol_error(msgpack.packb([version, kind, *rest]))


@settings(max_examples=1000, deadline=None)
@given(mutated_payloads())
def test_one_field_changed_gives_a_message_or_protocol_error(data: bytes) -> None:
    _decode_or_protocol_error(data)


@settings(max_examples=300, deadline=None)
@given(messages, st.data())
def test_one_byte_changed_gives_a_message_or_protocol_error(msg: protocol.Message,
                                                            data: st.DataObject) -> None:
    payload = bytearray(protocol.encode(msg))
    index = data.draw(st.integers(0, len(payload) - 1))
    payload[index] = data.draw(st.integers(0, 255))
    _decode_or_protocol_error(bytes(payload))


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
    assert protocol.decode(protocol.encode(back)) == back


@settings(max_examples=1000, deadline=None)
@given(messages, st.data())
def test_a_message_with_one_field_changed_encodes_or_raises_local_error(
    msg: protocol.Message, data: st.DataObject
) -> None:
    import dataclasses

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
    assert protocol.decode(payload) == changed
