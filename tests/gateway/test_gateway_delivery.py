"""Real Mosquitto + real Kafka: what a plain MQTT client publishes arrives in the right topics,
in the documented format; bad input goes to the dead letter with the right reason; SIGTERM
drains."""

from __future__ import annotations

import base64
import contextlib
import socket

import pytest
from gateway_testlib import (
    BACKENDS,
    duplicates,
    metric,
    mqtt_topic,
    read_ids,
    read_to_end,
    read_topic,
    status,
    telemetry,
    topic_names,
    unique,
    violation,
)

import protocol
from gateway import records
from tests.support import wait_until


@pytest.mark.parametrize("backend", BACKENDS)
def test_records_land_in_the_documented_format(stack, gateway_factory, publisher_factory,
                                               backend):
    topics = topic_names(unique("fmt"))
    drone = unique("fmt-")
    gw = gateway_factory(stack.mqtt_port, stack.kafka_bootstrap, topics, drone=drone,
                         backend=backend).start()
    gw.wait_ready()
    msgs = [telemetry(drone, 1), violation(drone, 2, code=21), violation(drone, 3, code=None),
            status(drone, 4, online=True)]
    pub = publisher_factory(stack.mqtt_host, stack.mqtt_port)
    for m in msgs:
        pub.send(m)
    pub.flush()
    boot = stack.kafka_bootstrap

    tel = read_topic(boot, topics["telemetry"], until=lambda rs: len(rs) >= 2)
    vio = read_topic(boot, topics["violations"], until=lambda rs: len(rs) >= 2)
    alerts = read_topic(boot, topics["alerts"], until=lambda rs: len(rs) >= 1)
    assert sorted(r.value["message_id"] for r in tel) == [f"{drone}:1", f"{drone}:4"]
    assert sorted(r.value["message_id"] for r in vio) == [f"{drone}:2", f"{drone}:3"]

    for rec, msg in zip(sorted(tel + vio, key=lambda r: r.value["seq"]), msgs, strict=True):
        expected = protocol.to_json(msg)
        assert {k: rec.value[k] for k in expected} == expected  # the protocol's JSON, unchanged
        extra = records.VIOLATION_FIELDS if expected["kind"] == "violation" else ()
        assert set(rec.value) == set(expected) | set(records.ENVELOPE_FIELDS) | set(extra)
        assert rec.key == drone.encode()
        assert rec.partition == _java_partition(rec.key)  # the same on both backends
        assert rec.headers["content-type"] == b"application/json"
        assert rec.headers["schema-version"] == protocol.SCHEMA_VERSION.encode()
        assert rec.headers["record-version"] == records.RECORD_VERSION.encode()
        assert rec.headers["message-id"] == protocol.message_id(msg).encode()
        assert rec.headers["record-type"] == protocol.kind_of(msg).value.encode()
        assert rec.value["gateway_id"] == gw.client_id
        assert rec.value["clock_suspect"] is False
        assert rec.value["retained"] is False
        assert 0 <= rec.value["received_ms"] - msg.header.time_ms == rec.value["delay_ms"]
    assert {r.value["kind"] for r in tel} == {"telemetry", "status"}
    assert [(r.value["code_status"], r.value["revision"]) for r in
            sorted(vio, key=lambda r: r.value["seq"])] == [("drone", 0), ("pending", 0)]

    # The unqualified violation (seq 3) raised exactly one open alert; the qualified one none.
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.value["alert_id"] == records.alert_id(f"{drone}:3")
    assert alert.key == alert.value["alert_id"].encode()
    assert alert.partition == _java_partition(alert.key)
    assert alert.value["state"] == "open"
    assert alert.value["code"] is None and alert.value["code_set_by"] is None
    v3 = protocol.to_json(msgs[2])
    for name in records.ALERT_VIOLATION_FIELDS:
        assert alert.value[name] == v3[name], name
    assert alert.headers["record-type"] == b"alert"

    samples = gw.metrics()
    assert metric(samples, "presacop_gateway_alerts_total") == 1
    assert metric(samples, "presacop_gateway_records_produced_total") == 5
    assert metric(samples, "presacop_gateway_messages_acked_total") == 4
    assert metric(samples, "presacop_gateway_in_flight") == 0


def _java_partition(key: bytes, partitions: int = 3) -> int:
    """Where Kafka's Java producer (and kafka-python) puts a keyed record: murmur2 of the key.
    The test gateways create their topics with 3 partitions (tests.support.gateway_config)."""
    from kafka.partitioner.default import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions


# (payload, mqtt topic or None for the drone's telemetry topic, expected reason)
def _battery(drone: str) -> list[tuple[bytes, str | None, str]]:
    good = protocol.encode(telemetry(drone, 999))
    status = protocol.encode(protocol.Status(telemetry(drone, 997).header, True))
    vio = protocol.encode(violation(drone, 998))
    bad_version = bytes([good[0], 0x60]) + good[2:]  # schema major 6
    return [
        (b"\xc1garbage", None, "malformed"),
        (b"\x81\xa1a\x01", None, "bad_type"),  # a msgpack map, not an array
        (good[: len(good) // 2], None, "truncated"),
        (good + b"\x00", None, "trailing_bytes"),
        (b"x" * (protocol.MAX_MESSAGE_SIZE + 1), None, "oversized"),
        (bad_version, None, "unknown_version"),
        # The topic names the kind; a payload of another kind fails that kind's fields.
        (status, None, "missing_field"),
        (vio, f"presacop/v1/drones/{drone}/telemetry", "extra_field"),
        (good, f"presacop/v1/drones/{drone}/unknown", "bad_topic"),
        (good, f"presacop/v1/drones/{drone}/telemetry/extra", "bad_topic"),
        (b"", None, "truncated"),
    ]


def test_bad_payloads_and_forged_topics_go_to_dead_letter(stack, gateway_factory,
                                                           publisher_factory):
    topics = topic_names(unique("bad"))
    drone = unique("bad-")
    # A filter that also takes deeper topics, so forged extra levels reach the gateway.
    gw = gateway_factory(stack.mqtt_port, stack.kafka_bootstrap, topics,
                         mqtt_extra=f'subscription = "presacop/v1/drones/{drone}/#"',
                         extra="[limits]\ndeadletter_max_bytes = 100\n").start()
    gw.wait_ready()
    pub = publisher_factory(stack.mqtt_host, stack.mqtt_port)
    battery = _battery(drone)
    good_ids = set()
    for i, (payload, topic, _reason) in enumerate(battery):
        good = telemetry(drone, i)  # good messages interleaved with the bad ones
        good_ids.add(pub.send(good))
        pub.publish(topic or mqtt_topic(good), payload)
    pub.flush()

    ids = read_ids(stack.kafka_bootstrap, topics["telemetry"], good_ids)
    assert set(ids) == good_ids
    dead = read_topic(stack.kafka_bootstrap, topics["deadletter"],
                      until=lambda rs: len(rs) >= len(battery))
    assert len(dead) == len(battery)
    by_payload: dict[tuple[str, bytes], dict] = {}
    for rec in dead:
        v = rec.value
        assert v["gateway_id"] == gw.client_id
        assert rec.headers["reason"] == v["reason"].encode()
        assert v["detail"], v
        kept = base64.b64decode(v["payload_b64"])
        assert v["payload_truncated"] == (len(kept) < v["payload_size"])
        by_payload[(v["mqtt_topic"], kept)] = v
    for payload, topic, reason in battery:
        v = by_payload[(topic or protocol.topic(drone, protocol.Kind.TELEMETRY), payload[:100])]
        assert v["reason"] == reason, (payload[:20], v)
        assert v["payload_size"] == len(payload)
        # Keyed by the topic's drone id whenever the topic has a valid one.
        assert v["drone_id"] == drone
    assert gw.alive()
    samples = gw.metrics()
    assert metric(samples, "presacop_gateway_deadletter_total") == len(battery)
    assert samples['presacop_gateway_deadletter_total{reason="extra_field"}'] == 1
    assert metric(samples, "presacop_gateway_in_flight") == 0


def test_sigterm_drains_and_exits_zero(stack, gateway_factory, publisher_factory):
    topics = topic_names(unique("term"))
    drone = unique("term-")
    gw = gateway_factory(stack.mqtt_port, stack.kafka_bootstrap, topics, drone=drone).start()
    gw.wait_ready()
    pub = publisher_factory(stack.mqtt_host, stack.mqtt_port)
    sent = {pub.send(telemetry(drone, s)) for s in range(1500)}
    pub.flush()
    wait_until(lambda: metric(gw.metrics(), "presacop_gateway_messages_received_total") > 100,
               60, "the gateway to be busy")
    assert gw.terminate() == 0
    log = gw.log_records()
    stopped = [r for r in log if r.get("msg") == "gateway stopped"]
    assert stopped, gw.log_tail()
    final = stopped[-1]
    # Everything it took was acknowledged (to Kafka and then to MQTT) before it exited.
    assert final["pending"] == 0 and final["in_flight"] == 0, final
    assert final["acked"] == final["received"] - final["ignored_draining"], final
    # The rest waits at the broker for the next start; then all of it is in Kafka.
    gw.start()
    ids = read_ids(stack.kafka_bootstrap, topics["telemetry"], sent)
    assert set(ids) == sent, f"missing {len(sent - set(ids))}"
    assert duplicates(ids) == 0


def test_duplicate_publish_is_dropped(stack, gateway_factory, publisher_factory):
    topics = topic_names(unique("dup"))
    drone = unique("dup-")
    gw = gateway_factory(stack.mqtt_port, stack.kafka_bootstrap, topics, drone=drone).start()
    gw.wait_ready()
    pub = publisher_factory(stack.mqtt_host, stack.mqtt_port)
    msg = telemetry(drone, 7)
    for _ in range(3):  # a drone re-sending after a lost PUBACK
        pub.send(msg)
    pub.send(telemetry(drone, 8))
    pub.flush()
    wait_until(lambda: metric(gw.metrics(), "presacop_gateway_messages_acked_total") == 4, 60,
               "all four PUBACKs")
    # A PUBACK goes out only once Kafka has the record: everything the gateway wrote for these
    # four publishes is below the end offsets now, so reading up to them sees any duplicate.
    ids = [r.value["message_id"] for r in read_to_end(stack.kafka_bootstrap, topics["telemetry"])]
    assert sorted(ids) == [f"{drone}:7", f"{drone}:8"]
    assert metric(gw.metrics(), "presacop_gateway_duplicates_dropped_total") == 2


def test_retained_status_is_forwarded_once(stack, gateway_factory, publisher_factory):
    topics = topic_names(unique("ret"))
    drone = unique("ret-")
    pub = publisher_factory(stack.mqtt_host, stack.mqtt_port)
    retained = status(drone, 1, online=True)
    pub.publish(mqtt_topic(retained), protocol.encode(retained), retain=True)
    pub.flush()
    try:
        gw = gateway_factory(stack.mqtt_port, stack.kafka_bootstrap, topics, drone=drone).start()
        gw.wait_ready()
        first = read_topic(stack.kafka_bootstrap, topics["telemetry"], until=lambda rs: rs)
        assert [r.value["message_id"] for r in first] == [f"{drone}:1"]
        assert first[0].value["retained"] is True  # the broker's stored copy, not a live publish
        # A restart resumes the subscription: the retained status is not replayed.
        assert gw.terminate() == 0
        gw.start()
        gw.wait_ready()
        marker = pub.send(telemetry(drone, 2))
        pub.flush()
        ids = read_ids(stack.kafka_bootstrap, topics["telemetry"], {marker})
        assert sorted(ids) == [f"{drone}:1", marker]
    finally:
        pub.publish(mqtt_topic(retained), b"", retain=True)  # clear it for later tests
        pub.flush()


def test_systemd_notifications(stack, gateway_factory, tmp_path):
    """Type=notify: READY=1 once subscribed and Kafka is up, WATCHDOG=1 pings, STOPPING=1."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(90)
        gw = gateway_factory(stack.mqtt_port, stack.kafka_bootstrap, topic_names(unique("sd")),
                             env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"})
        gw.start()
        seen: list[str] = []
        while not any(m.startswith("READY=1") for m in seen):
            seen.append(server.recv(1000).decode())
        assert gw.health()[0] == 200  # ready means ready
        pings = 0
        while pings < 2:
            pings += server.recv(1000) == b"WATCHDOG=1"
        assert gw.terminate() == 0
        rest = []
        server.settimeout(1)
        with contextlib.suppress(TimeoutError):
            while True:
                rest.append(server.recv(1000).decode())
        assert any(m.startswith("STOPPING=1") for m in rest), rest
