"""Signed violations and the replay bound (issue 14).

Pure parts first (router, dedupe bound, `presacop verify` on records), then one run of the real
gateway process on a private Mosquitto and the session Kafka: forged, re-signed, replayed,
unsigned and seq-jumping messages are dead-lettered `bad_signature` / `seq_jump`, good ones reach
Kafka with their signed bytes, and `presacop verify` checks them there offline.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from gateway_testlib import (
    GatewayProc,
    Publisher,
    TopicPartition,
    metric,
    read_to_end,
    topic_names,
    unique,
    violation,
)

import protocol
from backoffice import verify as verify_cli
from backoffice.verify import BAD, VERIFIED, VerifyError, verify_record
from common.signing import KeyRegistry, Signer, generate_key
from gateway.config import TopicsConfig
from gateway.dedupe import SeqTracker, Verdict
from gateway.records import Receipt
from gateway.router import RouteSettings, route
from tests.support import wait_until

NOW = 1_780_000_000_000
TOPICS = TopicsConfig()


def receipt(topic: str) -> Receipt:
    return Receipt(mqtt_topic=topic, received_ms=NOW, gateway_id="gw-test")


def vtopic(drone: str) -> str:
    return protocol.topic(drone, protocol.Kind.VIOLATION)


def value(routed: Any) -> dict[str, Any]:
    (record,) = [r for r in routed.records if r.kind in ("violation", "deadletter")]
    return json.loads(record.value)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Signer, Signer]:
    a, b = generate_key(tmp_path / "keys", "drone-a"), generate_key(tmp_path / "keys", "drone-b")
    return tmp_path / "keys", Signer.from_file(a.private), Signer.from_file(b.private)


# -- the router ----------------------------------------------------------------------------------


@pytest.mark.parametrize("required", [True, False])
def test_the_router_dead_letters_bad_signatures_and_keeps_good_ones_verifiable(
        keys: tuple[Path, Signer, Signer], required: bool) -> None:
    directory, signer_a, signer_b = keys
    registry = KeyRegistry(directory)
    settings = RouteSettings(TOPICS, verifier=registry.check, require_signatures=required)
    msg = violation("drone-a", 7)
    good = signer_a.encode(msg)
    cases = {
        "good": (vtopic("drone-a"), good),
        "unsigned": (vtopic("drone-a"), protocol.encode(msg)),
        "forged": (vtopic("drone-a"), good.replace(b"ABC1234", b"XBC1234")),
        "replayed as drone-b": (vtopic("drone-b"), good),
        "re-signed by drone-b": (vtopic("drone-a"), signer_b.encode(msg)),
    }
    out = {name: route(t, p, receipt(t), settings) for name, (t, p) in cases.items()}
    accepted = value(out["good"])
    assert accepted["message_id"] == "drone-a:7" and accepted["key_id"] == 0
    assert base64.b64decode(accepted["wire_b64"]) == good
    assert verify_record(accepted, registry) == (VERIFIED, "")
    for name in ("forged", "replayed as drone-b", "re-signed by drone-b"):
        dead = value(out[name])
        assert (dead["reason"], dead["path"]) == ("bad_signature", "$.signature"), name
    if required:
        assert value(out["unsigned"])["detail"] == "unsigned"
    else:
        unsigned = value(out["unsigned"])
        assert unsigned["signature"] is None and "wire_b64" not in unsigned


def test_verify_catches_records_changed_after_the_gateway(keys: tuple[Path, Signer, Signer]
                                                          ) -> None:
    directory, signer_a, _ = keys
    registry = KeyRegistry(directory)
    t = vtopic("drone-a")
    good = value(route(t, signer_a.encode(violation("drone-a", 8, code=None)), receipt(t),
                       RouteSettings(TOPICS)))
    assert verify_record(good, registry)[0] == VERIFIED
    assert verify_record({**good, "plate": "XYZ9"}, registry)[0] == BAD  # an insider's edit
    officer = {**good, "code": 21, "qualified": True, "code_status": "officer_set",
               "original_code": None, "officer": "o1", "decided_ms": NOW, "revision": 1}
    assert verify_record(officer, registry)[0] == VERIFIED  # contract 2: the officer's fields
    assert verify_record({**officer, "original_code": 40}, registry)[0] == BAD


def test_presacop_verify_reads_an_archive(keys: tuple[Path, Signer, Signer],
                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    directory, signer_a, _ = keys
    t = vtopic("drone-a")
    good = value(route(t, signer_a.encode(violation("drone-a", 9)), receipt(t),
                       RouteSettings(TOPICS)))
    archive = tmp_path / "violations.jsonl"
    archive.write_text(json.dumps(good) + "\n" + json.dumps({**good, "seq": 10}) + "\n")
    args = ["--keys", str(directory), "--archive", str(archive)]
    assert _run(args) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "1 verified, 0 unsigned, 1 bad"
    archive.write_text(json.dumps(good) + "\n")
    assert _run(args) == 0
    assert _run(["--keys", str(directory), "--archive", str(tmp_path / "missing")]) == 2


class _Consumer:
    """A consumer that hands out `batches` one poll at a time, then nothing; a partition's
    position is past the last offset handed out, or `jump_to` once everything is handed out."""

    def __init__(self, batches: list[dict[Any, list[int]]], jump_to: dict[Any, int]) -> None:
        self.batches, self.jump_to, self.pos = list(batches), jump_to, {}

    def poll(self, timeout_ms: int) -> dict[Any, list[Any]]:
        if not self.batches:
            self.pos.update(self.jump_to)
            return {}
        batch = self.batches.pop(0)
        for tp, offsets in batch.items():
            self.pos[tp] = offsets[-1] + 1
        return {tp: [SimpleNamespace(offset=o, value=json.dumps({"o": o}).encode())
                     for o in offsets] for tp, offsets in batch.items()}

    def position(self, tp: Any) -> int:
        return self.pos.get(tp, 0)


def test_verify_reads_kafka_to_the_end_offsets_or_says_it_could_not() -> None:
    p0, p1 = TopicPartition("t", 0), TopicPartition("t", 1)
    # A transaction marker or a compacted offset holds no record: the position passes it.
    read = list(verify_cli._to_the_end(_Consumer([{p0: [0, 1]}], {p0: 3}), "t",
                                       {p0: 3, p1: 0}, timeout_s=5.0))
    assert read == [{"o": 0}, {"o": 1}]
    # Stalled before the end (under load the old reader returned what it had, as if complete).
    stalled = verify_cli._to_the_end(_Consumer([{p0: [0]}], {}), "t", {p0: 2}, timeout_s=0.2)
    with pytest.raises(VerifyError, match=r"t: nothing read for 0.2 s .* partition\(s\) \[0\]"):
        list(stalled)


def _run(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser()
    verify_cli.add_arguments(parser)
    return verify_cli.run(parser.parse_args(argv))


# -- the replay bound ----------------------------------------------------------------------------


def test_one_huge_seq_cannot_switch_a_drones_dedupe_off() -> None:
    tracker = SeqTracker(window=64, max_jump=1000, max_rate=50.0)
    t0 = NOW
    assert tracker.observe("d", 100, t0, t0) is Verdict.NEW
    assert tracker.observe("d", 2**32 - 1, t0 + 1000, t0 + 1000) is Verdict.JUMP
    assert tracker.observe("d", 2**32 - 1, NOW * 2, t0 + 1000) is Verdict.JUMP  # future time
    state = tracker.state("d")
    assert state is not None and state.top == 100 and state.lost == 0 and tracker.jumps == 2
    assert tracker.observe("d", 100, t0, t0) is Verdict.DUPLICATE  # dedupe still on
    assert tracker.observe("d", 101, t0 + 40, t0 + 40) is Verdict.NEW


def test_a_long_absence_allows_a_proportional_jump() -> None:
    # A gateway of a share group that missed a drone's messages for an hour sees a big jump.
    tracker = SeqTracker(window=64, max_jump=1000, max_rate=50.0)
    assert tracker.observe("d", 100, NOW, NOW) is Verdict.NEW
    hour = 3_600_000
    assert tracker.observe("d", 100 + 3600 * 10, NOW + hour, NOW + hour) is Verdict.NEW
    assert tracker.observe("d", 100 + 3600 * 10 + 2000, NOW + hour, NOW + hour) is Verdict.JUMP


# -- the real gateway ----------------------------------------------------------------------------


def test_the_gateway_verifies_signatures_and_bounds_replays(
        stack: Any, mosquitto_factory: Callable[..., Any],
        gateway_factory: Callable[..., GatewayProc], keys: tuple[Path, Signer, Signer],
        capsys: pytest.CaptureFixture[str]) -> None:
    directory, signer_a, signer_b = keys
    broker = mosquitto_factory()
    topics = topic_names(unique("sig"))
    gw = gateway_factory(broker.port, stack.kafka_bootstrap, topics, mqtt_extra=(
        'subscription = "presacop/v1/drones/+/+"'), extra=f"""
[security]
require_signatures = true
keys_dir = "{directory}"

[limits]
max_seq_jump = 100
max_seq_rate = 0.0
""").start()
    gw.wait_ready()
    first, later = violation("drone-a", 10), violation("drone-a", 13)
    good = signer_a.encode(first)
    sends = [
        (vtopic("drone-a"), good),
        (vtopic("drone-a"), protocol.encode(violation("drone-a", 11))),  # unsigned
        (vtopic("drone-a"), signer_a.encode(violation("drone-a", 12)).replace(b"ABC", b"XBC")),
        (vtopic("drone-b"), good),  # replayed on another drone's topic
        (vtopic("drone-a"), signer_b.encode(violation("drone-a", 14))),  # re-signed by B
        (vtopic("drone-a"), signer_a.encode(violation("drone-a", 2**32 - 1))),  # seq jump
        (vtopic("drone-a"), signer_a.encode(later)),
        (vtopic("drone-a"), good),  # replayed: a duplicate
    ]
    pub = Publisher("127.0.0.1", broker.port)
    try:
        for t, payload in sends:
            pub.publish(t, payload)
        pub.flush()
        # A /metrics read that fails under load (5 s timeout) is "not yet", not a failure.
        wait_until(lambda: metric(gw.metrics(), "presacop_gateway_messages_acked_total")
                   >= len(sends), 120, "the gateway to acknowledge every message",
                   ignoring=(OSError,))
    finally:
        pub.close()
    violations = read_to_end(stack.kafka_bootstrap, topics["violations"])
    assert sorted(r.value["message_id"] for r in violations) == ["drone-a:10", "drone-a:13"]
    dead = read_to_end(stack.kafka_bootstrap, topics["deadletter"])
    assert sorted((r.value["reason"], r.value["detail"].split(" ")[0]) for r in dead) == [
        ("bad_signature", "invalid_signature"), ("bad_signature", "invalid_signature"),
        ("bad_signature", "invalid_signature"), ("bad_signature", "unsigned"),
        ("seq_jump", "seq")]
    config = gw.config_path
    capsys.readouterr()
    assert _run(["--keys", str(directory), "--config", str(config), "--topic",
                 topics["violations"], "--require-signatures"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2 verified, 0 unsigned, 0 bad"


def test_the_broker_never_sends_the_gateway_more_than_its_maximum_packet_size(
        stack: Any, mosquitto_factory: Callable[..., Any],
        gateway_factory: Callable[..., GatewayProc]) -> None:
    # A broker without max_packet_size (the local stack's): the gateway's own CONNECT limit is
    # what keeps a 64 KiB publish out of its memory. Without it the gateway received the message
    # and dead-lettered it as `oversized`.
    broker = mosquitto_factory()
    drone = unique("big-")
    topics = topic_names(unique("mps"))
    gw = gateway_factory(broker.port, stack.kafka_bootstrap, topics, drone=drone,
                         mqtt_extra="max_packet_size = 2048").start()
    gw.wait_ready()
    pub = Publisher("127.0.0.1", broker.port)
    try:
        pub.publish(protocol.topic(drone, protocol.Kind.TELEMETRY), b"\x00" * 65536)
        pub.publish(protocol.topic(drone, protocol.Kind.TELEMETRY), b"\xc1" * 1000)  # fits
        pub.flush()
        wait_until(lambda: metric(gw.metrics(), "presacop_gateway_messages_acked_total") >= 1,
                   60, "the gateway to acknowledge the message that fits")
    finally:
        pub.close()
    dead = read_to_end(stack.kafka_bootstrap, topics["deadletter"])
    assert [r.value["payload_size"] for r in dead] == [1000]
    assert metric(gw.metrics(), "presacop_gateway_messages_received_total") == 1
