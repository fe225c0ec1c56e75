"""The gateway's validating fast path (gateway/fastpath.py) against the full decoder.

For every input, `fast_route` either declines (None: the full path decides, with the documented
error code and path) or returns exactly what `router.route` returns: the same records, byte for
byte (topic, key, JSON value, headers, kind) and the same dedupe facts. Checked on every protocol
vector (valid and invalid), on the bench's traffic, and on many single-byte mutations of valid
payloads. Pure: no broker.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

import protocol
from gateway.config import TopicsConfig
from gateway.fastpath import fast_route
from gateway.records import Receipt
from gateway.router import Routed, RouteSettings, route

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "docs" / "protocol-vectors.json").read_text())
SETTINGS = RouteSettings(TopicsConfig())
NOW = 1_748_779_230_000  # 30 s after the vectors' typical time


def receipt(topic: str, *, retained: bool = False, gateway_id: str = "gw-1") -> Receipt:
    return Receipt(topic, NOW, gateway_id, 1, retained)


def same(topic: str, payload: bytes, rcpt: Receipt | None = None,
         settings: RouteSettings = SETTINGS) -> Routed | None:
    """fast_route's answer, after checking it equals route's when it gives one."""
    rcpt = rcpt or receipt(topic)
    fast = fast_route(topic, payload, rcpt, settings)
    if fast is not None:
        full = route(topic, payload, rcpt, settings)
        assert full.reason is None, (topic, payload.hex(), full)
        assert fast == full, (topic, payload.hex())
        assert [r.value for r in fast.records] == [r.value for r in full.records]
    return fast


def test_every_vector_is_taken_identically_or_left_to_the_full_decoder() -> None:
    taken = {"telemetry": 0, "violation": 0}
    for vec in VECTORS["vectors"]:
        routed = same(vec["topic"], bytes.fromhex(vec["hex"]))
        if routed is not None:
            taken[vec["kind"]] += 1
            assert vec["valid"], vec["name"]  # an invalid vector is never accepted
    # The fast path is not vacuous: it takes the common kinds.
    assert taken["telemetry"] >= 3 and taken["violation"] >= 2, taken


def test_signed_unqualified_and_status_messages_take_the_full_path() -> None:
    for vec in VECTORS["signature_vectors"]:
        assert same(vec["topic"], bytes.fromhex(vec["hex"])) is None
    for vec in VECTORS["vectors"]:
        payload = bytes.fromhex(vec["hex"])
        if vec["kind"] == "status" or (vec.get("json") or {}).get("code", 0) is None:
            assert same(vec["topic"], payload) is None, vec["name"]


def test_envelope_variants_are_identical() -> None:
    vec = next(v for v in VECTORS["vectors"] if v["name"] == "telemetry typical")
    payload = bytes.fromhex(vec["hex"])
    for rcpt in (receipt(vec["topic"], retained=True), receipt(vec["topic"], gateway_id='g"é\\1'),
                 Receipt(vec["topic"], 1_500_000_000_000, "gw", 1, False)):  # drone far ahead
        assert same(vec["topic"], payload, rcpt) is not None


def test_a_configured_verifier_sends_violations_to_the_full_path() -> None:
    vec = next(v for v in VECTORS["vectors"]
               if v["kind"] == "violation" and v["valid"] and v["json"]["code"] is not None)
    settings = RouteSettings(TopicsConfig(), verifier=lambda *_: None)
    assert fast_route(vec["topic"], bytes.fromhex(vec["hex"]), receipt(vec["topic"]),
                      settings) is None


def test_the_bench_traffic_is_taken_identically() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from _traffic import Messages, Plan

    plan = Plan(tag="t", messages=600, publishers=1, drones=50, violation_share=0.5,
                unqualified_share=0.1)
    messages = Messages(plan, 0)
    taken = sum(same(*messages.encoded(i, NOW - 5_000)) is not None for i in range(600))
    assert taken > 500  # all but the unqualified violations


@pytest.mark.parametrize("seed", range(4))
def test_mutated_payloads_are_taken_identically_or_declined(seed: int) -> None:
    """Byte flips, truncations and appended bytes of valid payloads: whatever the fast path
    takes, the full decoder takes the same way; everything else is left to it."""
    rng = random.Random(seed)
    valid = [(v["topic"], bytes.fromhex(v["hex"])) for v in VECTORS["vectors"]
             if v["valid"] and v["kind"] in ("telemetry", "violation")]
    declined = 0
    for _ in range(3000):
        topic, payload = rng.choice(valid)
        data = bytearray(payload)
        op = rng.randrange(3)
        if op == 0:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 1:
            del data[rng.randrange(1, len(data)):]
        else:
            data += bytes([rng.randrange(256)])
        declined += same(topic, bytes(data)) is None
    assert declined > 0


def test_the_documented_error_codes_still_come_from_the_full_path() -> None:
    for vec in VECTORS["vectors"]:
        if vec["valid"]:
            continue
        topic, payload = vec["topic"], bytes.fromhex(vec["hex"])
        assert fast_route(topic, payload, receipt(topic), SETTINGS) is None
        routed = route(topic, payload, receipt(topic), SETTINGS)
        assert routed.reason == vec["code"], vec["name"]
        assert json.loads(routed.records[0].value)["path"] == vec["path"], vec["name"]
        with pytest.raises(protocol.ProtocolError):
            protocol.decode(payload, topic)


def test_each_field_replaced_by_odd_values_is_taken_identically_or_declined() -> None:
    """Field by field, values of other types and at and past the ranges' ends."""
    import msgpack

    odd = [True, False, None, 1.5, -1, 0, 2**32, 2**63, "", "A", "ZZ", b"", b"\x00" * 8, [], {}]
    for vec in VECTORS["vectors"]:
        if not vec["valid"] or vec["kind"] not in ("telemetry", "violation"):
            continue
        fields = msgpack.unpackb(bytes.fromhex(vec["hex"]))
        for i in range(len(fields) + 1):
            for value in odd:
                changed = [*fields[:i], value, *fields[i + 1:]]
                same(vec["topic"], msgpack.packb(changed))
