"""MQTT topic names: presacop/v1/drones/<drone_id>/<kind>.

The "v1" level is the schema's major version: a new major gets new topics, so old gateways never
see messages they cannot read. Drone ids cannot contain "/", "+" or "#" (see DRONE_ID_RE), so a
drone's topic is always one concrete name, never a filter.
"""

from __future__ import annotations

import functools

from protocol._errors import TopicError
from protocol._messages import Kind
from protocol._validate import DRONE_ID_RE, show

TOPIC_PREFIX = "presacop/v1/drones"
SUBSCRIPTION = f"{TOPIC_PREFIX}/+/+"
_PREFIX_LEVELS = tuple(TOPIC_PREFIX.split("/"))
_KINDS = {k.value: k for k in Kind}


def topic(drone_id: str, kind: Kind) -> str:
    """The topic a drone publishes `kind` messages on. Raises TopicError for a bad id or kind."""
    if not isinstance(drone_id, str) or DRONE_ID_RE.fullmatch(drone_id) is None:
        raise TopicError(f"drone id {show(drone_id)} does not match {DRONE_ID_RE.pattern}",
                         "$.drone_id")
    if not isinstance(kind, Kind):
        raise TopicError(f"expected a Kind, got {show(kind)}", "$.kind")
    return f"{TOPIC_PREFIX}/{drone_id}/{kind.value}"


def parse_topic(name: str) -> tuple[str, Kind]:
    """(drone_id, kind) of a drone topic. Raises TopicError for anything else: another prefix,
    wildcards, an empty or invalid drone id, an unknown kind, missing or extra levels.

    Valid topics are remembered (a drone publishes on the same three), so the gateway's hot path
    parses each once; errors are not cached, and the cache is bounded."""
    if not isinstance(name, str):
        raise TopicError(f"expected a str topic, got {type(name).__name__}")
    return _parse_str(name)


@functools.lru_cache(maxsize=16384)
def _parse_str(name: str) -> tuple[str, Kind]:
    levels = name.split("/")
    if len(levels) != len(_PREFIX_LEVELS) + 2 or tuple(levels[:3]) != _PREFIX_LEVELS:
        raise TopicError(f"{show(name)} is not {TOPIC_PREFIX}/<drone_id>/<kind>")
    drone_id, kind = levels[3], levels[4]
    if DRONE_ID_RE.fullmatch(drone_id) is None:
        raise TopicError(f"drone id {show(drone_id)} does not match {DRONE_ID_RE.pattern}",
                         "$.drone_id")
    if kind not in _KINDS:
        raise TopicError(f"unknown kind {show(kind)} in topic", "$.kind")
    return drone_id, _KINDS[kind]
