"""Topic names: build, parse, and reject anything malformed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import protocol
from protocol import Kind


@pytest.mark.parametrize("kind", list(Kind))
def test_topic_round_trip(kind: Kind) -> None:
    name = protocol.topic("nyc-0007", kind)
    assert name == f"presacop/v1/drones/nyc-0007/{kind.value}"
    assert protocol.parse_topic(name) == ("nyc-0007", kind)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True), st.sampled_from(Kind))
def test_any_valid_drone_id_round_trips(drone_id: str, kind: Kind) -> None:
    assert protocol.parse_topic(protocol.topic(drone_id, kind)) == (drone_id, kind)


@pytest.mark.parametrize("name", [
    "",
    "presacop/v1/drones/nyc-0007",
    "presacop/v1/drones/nyc-0007/",
    "presacop/v1/drones//telemetry",
    "presacop/v1/drones/+/telemetry",
    "presacop/v1/drones/#",
    "presacop/v1/drones/nyc-0007/#",
    "presacop/v1/drones/nyc-0007/+",
    "presacop/v2/drones/nyc-0007/telemetry",
    "presacop/v1/drone/nyc-0007/telemetry",
    "Presacop/v1/drones/nyc-0007/telemetry",
    "/presacop/v1/drones/nyc-0007/telemetry",
    "presacop/v1/drones/nyc-0007/telemetry/",
    "presacop/v1/drones/nyc-0007/telemetry/extra",
    "presacop/v1/drones/nyc-0007/Telemetry",
    "presacop/v1/drones/nyc-0007/alerts",
    "presacop/v1/drones/nyc 0007/status",
    "presacop/v1/drones/nyc.0007/status",
    "presacop/v1/drones/" + "a" * 33 + "/status",
    "$share/gw/presacop/v1/drones/nyc-0007/status",
    "presacop/v1/drones/nyc-0007/status\x00",
])
def test_parse_topic_rejects(name: str) -> None:
    with pytest.raises(protocol.TopicError) as info:
        protocol.parse_topic(name)
    assert info.value.code == "bad_topic"


def test_parse_topic_rejects_a_non_string() -> None:
    with pytest.raises(protocol.TopicError):
        protocol.parse_topic(b"presacop/v1/drones/a/status")  # type: ignore[arg-type]


@pytest.mark.parametrize("drone_id", ["", "a/b", "a+b", "a#", "x" * 33, "é"])
def test_topic_rejects_a_bad_drone_id(drone_id: str) -> None:
    with pytest.raises(protocol.TopicError) as info:
        protocol.topic(drone_id, Kind.STATUS)
    assert info.value.path == "$.drone_id"


def test_topic_rejects_a_kind_that_is_not_a_kind() -> None:
    with pytest.raises(protocol.TopicError):
        protocol.topic("a", "status")  # type: ignore[arg-type]


def test_subscription_matches_every_drone_topic() -> None:
    levels = protocol.SUBSCRIPTION.split("/")
    for kind in Kind:
        name = protocol.topic("nyc-0007", kind).split("/")
        assert len(name) == len(levels)
        assert all(f in ("+", n) for f, n in zip(levels, name, strict=True))
