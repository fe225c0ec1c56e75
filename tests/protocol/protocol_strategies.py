"""Hypothesis strategies for valid protocol messages, their topics, and hostile msgpack input."""

from __future__ import annotations

import msgpack
from hypothesis import strategies as st

import protocol
from protocol import (
    Header,
    Position,
    Status,
    StatusFlags,
    Telemetry,
    TimeSource,
    Vehicle,
    Violation,
)

TIME_MIN_MS = 1_577_836_800_000
TIME_MAX_MS = 4_102_444_800_000


def _real(lo: float, hi: float, exclude_max: bool = False) -> st.SearchStrategy[float]:
    ints = st.integers(int(lo), int(hi) - (1 if exclude_max else 0)).map(float)
    return st.one_of(st.floats(lo, hi, exclude_max=exclude_max), ints)


def _text(pattern: str) -> st.SearchStrategy[str]:
    return st.from_regex(pattern, fullmatch=True)


drone_ids = _text(r"[A-Za-z0-9_-]{1,32}")
headers = st.builds(
    Header,
    drone_id=drone_ids,
    seq=st.integers(0, 2**32 - 1),
    time_ms=st.integers(TIME_MIN_MS, TIME_MAX_MS - 1),
    time_source=st.sampled_from(TimeSource),
)
positions = st.builds(Position, lat=_real(-90, 90), lon=_real(-180, 180),
                      alt_m=_real(-1000, 10000))
telemetry = st.builds(
    Telemetry,
    header=headers,
    position=positions,
    heading_deg=_real(0, 360, exclude_max=True),
    speed_mps=_real(0, 200),
    battery_pct=st.integers(0, 100),
    flags=st.integers(0, 127).map(StatusFlags),
)
_detail = st.none() | _text(r"[A-Z0-9/&.-]{1,8}")
violations = st.builds(
    Violation,
    header=headers,
    position=positions,
    plate=_text(r"[A-Z0-9]{1,8}"),
    region=_text(r"[A-Z]{2}"),
    confidence=_real(0, 1),
    code=st.none() | st.sampled_from(sorted(protocol.VIOLATION_CODES)),
    evidence_id=st.binary(min_size=8, max_size=8).map(bytes.hex),
    vehicle=st.none() | st.builds(Vehicle, _detail, _detail, _detail),
)
statuses = st.builds(Status, header=headers, online=st.booleans())
messages = st.one_of(telemetry, violations, statuses)
valid_topics = st.builds(protocol.topic, drone_ids, st.sampled_from(protocol.Kind))


def topic_of(msg: protocol.Message) -> str:
    """The topic `msg` is published on: it carries the drone id and the kind."""
    return protocol.topic(msg.header.drone_id, protocol.kind_of(msg))


# Any msgpack value, nested: what a hostile publisher can put in a payload.
msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=40) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=8)
    | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=30,
)


@st.composite
def mutated_payloads(draw: st.DrawFn) -> tuple[bytes, str]:
    """(payload, topic): a valid message's payload array with one field replaced, dropped or
    appended, on the message's topic: reaches the field validators, unlike random bytes."""
    msg = draw(messages)
    fields = msgpack.unpackb(protocol.encode(msg))
    index = draw(st.integers(0, len(fields)))
    action = draw(st.sampled_from(["replace", "drop", "append"]))
    value = draw(msgpack_values)
    if action == "replace" and index < len(fields):
        fields[index] = value
    elif action == "drop" and index < len(fields):
        del fields[index]
    else:
        fields.append(value)
    return msgpack.packb(fields), topic_of(msg)
