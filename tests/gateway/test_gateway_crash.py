"""Crashes with real Mosquitto and Kafka: kill -9 of a gateway mid-stream, alone or as one of two
in a share group, then a restart with the same client id: every published message is in Kafka.

No duplicates either: a record Kafka acknowledged whose MQTT ack died with the process is
redelivered to the restarted gateway, which has read the topics' tail back into its dedupe window
before connecting (gateway.seed; the deterministic case is tests/gateway/test_gateway_seed.py).
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter

from gateway_testlib import (
    PRESACOP,
    Publisher,
    metric,
    read_to_end,
    read_topic,
    telemetry,
    topic_names,
    unique,
)

from tests.support import wait_until


def _publish_in_background(pub: Publisher, drone: str, count: int,
                           pause_every: int = 200) -> tuple[threading.Thread, set[str]]:
    ids = {f"{drone}:{s}" for s in range(count)}

    def work() -> None:
        for seq in range(count):
            pub.send(telemetry(drone, seq))
            if seq % pause_every == pause_every - 1:
                time.sleep(0.05)  # a stream, not one burst: the crash lands mid-stream

    thread = threading.Thread(target=work, name="test-publisher")
    thread.start()
    return thread, ids


def _all_in_kafka(bootstrap: str, topic: str, expected: set[str]) -> Counter[str]:
    recs = read_topic(bootstrap, topic, timeout=180,
                      until=lambda rs: expected <= {r.value["message_id"] for r in rs})
    return Counter(r.value["message_id"] for r in recs)


def test_kill9_mid_stream_then_restart_loses_nothing(stack, gateway_factory, publisher_factory):
    topics = topic_names(unique("kill"))
    drone = unique("kill-")
    gw = gateway_factory(stack.mqtt_port, stack.kafka_bootstrap, topics, drone=drone).start()
    gw.wait_ready()
    pub = publisher_factory(stack.mqtt_host, stack.mqtt_port)
    thread, sent = _publish_in_background(pub, drone, 3000)
    wait_until(lambda: metric(gw.metrics(), "presacop_gateway_messages_acked_total") >= 300,
               120, "the gateway to forward some messages")
    gw.kill()
    thread.join(120)
    assert not thread.is_alive(), "the publisher did not finish"
    pub.flush()  # the broker has all 3000; the dead gateway's share waits in its session

    gw.start()
    counts = _all_in_kafka(stack.kafka_bootstrap, topics["telemetry"], sent)
    missing = sent - set(counts)
    dups = sum(n - 1 for n in counts.values())
    assert not missing, f"{len(missing)} lost, e.g. {sorted(missing)[:5]}"
    print(f"kill -9 mid-stream: 3000 sent, all delivered, {dups} duplicates")
    assert dups == 0, f"{dups} message ids written twice"


def test_two_gateways_share_and_survive_a_kill(stack, gateway_factory, publisher_factory):
    topics, drone, a, b = _two_gateways_one_group(stack, gateway_factory, "pair")
    pub = publisher_factory(stack.mqtt_host, stack.mqtt_port)
    thread, sent = _publish_in_background(pub, drone, 4000)

    def produced(gw) -> float:
        return metric(gw.metrics(), "presacop_gateway_records_produced_total")

    wait_until(lambda: produced(a) >= 200 and produced(b) >= 200, 120, "both gateways to work")
    a.kill()
    thread.join(120)
    assert not thread.is_alive(), "the publisher did not finish"
    pub.flush()
    # Mosquitto 2.0.11 keeps assigning A's share to A's (offline, persistent) session: B alone
    # does not deliver everything. B is given its share in publish order, so once B has written
    # one of the last messages and then holds nothing in flight, everything B was given before
    # it is in Kafka: what is missing below that seq waits for A.
    def b_reached_the_tail() -> int:
        top = max((int(r.value["seq"]) for r in read_to_end(stack.kafka_bootstrap,
                                                            topics["telemetry"])
                   if r.value["gateway_id"] == b.client_id), default=-1)
        idle = metric(b.metrics(), "presacop_gateway_in_flight") == 0
        return top if top >= len(sent) - 20 and idle else 0

    top = wait_until(b_reached_the_tail, 120, "B to write one of the last 20 messages, then idle")
    in_kafka = {r.value["message_id"] for r in read_to_end(stack.kafka_bootstrap,
                                                           topics["telemetry"])}
    held = {mid for mid in sent - in_kafka if int(mid.rpartition(":")[2]) < top}
    print(f"while A was dead, {len(held)} of {len(sent)} messages waited in A's session")

    a.start()
    counts = _all_in_kafka(stack.kafka_bootstrap, topics["telemetry"], sent)
    missing = sent - set(counts)
    assert not missing, f"{len(missing)} lost, e.g. {sorted(missing)[:5]}"
    by_gateway = Counter(r.value["gateway_id"]
                         for r in read_to_end(stack.kafka_bootstrap, topics["telemetry"]))
    assert by_gateway[a.client_id] > 0 and by_gateway[b.client_id] > 0, by_gateway
    dups = sum(n - 1 for n in counts.values())
    print(f"two gateways: {dict(by_gateway)}, {dups} duplicates")
    assert dups == 0, f"{dups} message ids written twice"
    assert held, "expected A's share to wait for A (Mosquitto 2.0.11 behaviour, see docs)"


def test_retire_drains_a_dead_members_share_and_leaves_the_group(stack, gateway_factory,
                                                                 publisher_factory):
    topics, drone, a, b = _two_gateways_one_group(stack, gateway_factory, "retire")
    a.kill()  # A is gone, but its session stays a member and collects its share
    pub = publisher_factory(stack.mqtt_host, stack.mqtt_port)
    first = {pub.send(telemetry(drone, s)) for s in range(400)}
    pub.flush()

    # Retiring A: forwards what waited in its session, ends the session and exits by itself.
    retiring = subprocess.run([PRESACOP, "gateway", "--config", str(a.config_path), "--retire"],
                              capture_output=True, text=True, timeout=120)
    assert retiring.returncode == 0, retiring.stderr[-3000:]
    assert "ending the MQTT session" in retiring.stderr
    # From now on B gets everything: nothing waits for A any more.
    second = {pub.send(telemetry(drone, s)) for s in range(400, 800)}
    pub.flush()
    counts = _all_in_kafka(stack.kafka_bootstrap, topics["telemetry"], first | second)
    missing = (first | second) - set(counts)
    assert not missing, f"{len(missing)} lost, e.g. {sorted(missing)[:5]}"
    # Everything is in Kafka and A has exited: reading up to the end offsets sees every record.
    by_gateway = Counter(r.value["gateway_id"]
                         for r in read_to_end(stack.kafka_bootstrap, topics["telemetry"])
                         if int(r.value["seq"]) >= 400)
    assert set(by_gateway) == {b.client_id}, by_gateway


def _two_gateways_one_group(stack, gateway_factory, name: str):
    """Two ready gateways, A and B, in one fresh share group, on the test's own topics and drone."""
    topics = topic_names(unique(name))
    group = unique(f"{name}-")
    drone = unique(f"{name}-")
    a, b = (gateway_factory(stack.mqtt_port, stack.kafka_bootstrap, topics, share_group=group,
                            client_id=unique(f"gw{x}-"), drone=drone).start() for x in "AB")
    a.wait_ready()
    b.wait_ready()
    return topics, drone, a, b
