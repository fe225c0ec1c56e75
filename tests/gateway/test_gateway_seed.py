"""The dedupe seed on real Mosquitto + Kafka: a gateway killed after Kafka acknowledged its
records but before its PUBACKs reached the broker writes nothing twice once restarted.

Deterministic: the gateway reaches the broker through a proxy that holds back every byte the
gateway sends (its PUBACKs) from a chosen moment, and drops them when the gateway is killed. So
Kafka has all the records, the broker has none of the acks, and its persistent session
redelivers every message to the restarted gateway. With the seed off (the control run) each one
is written again; with the seed on, none is.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections import Counter

import pytest
from gateway_testlib import (
    _kafka,
    metric,
    mqtt_topic,
    now_ms,
    read_ids,
    read_to_end,
    telemetry,
    topic_names,
    unique,
    violation,
)

import protocol
from gateway.records import Receipt, alert_record
from tests.support import wait_until

N = 150


class AckHoldingProxy:
    """A loopback TCP proxy to the broker. `hold()`: bytes from the client are kept, not sent;
    `drop()`: reset both sides and forget what was held; later connections pass freely."""

    def __init__(self, port: int) -> None:
        self._target = port
        self._listen = socket.create_server(("127.0.0.1", 0))
        self.port = self._listen.getsockname()[1]
        self._holding = threading.Event()
        self._conns: list[tuple[socket.socket, socket.socket]] = []
        self.held = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        self._holding.set()

    def drop(self) -> None:
        conns, self._conns = self._conns, []
        for pair in conns:
            for s in pair:
                with contextlib.suppress(OSError):  # RST: nothing held is flushed
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
        self._holding.clear()

    def close(self) -> None:
        self._listen.close()  # first: no connection is accepted after the drop below
        self.drop()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listen.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self._target))
            except OSError:
                client.close()
                continue
            self._conns.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while data := src.recv(65536):
                if from_client and self._holding.is_set():
                    self.held += len(data)  # never sent: dropped with the connection
                    continue
                dst.sendall(data)
        except OSError:
            pass
        finally:  # either side gone: close both (held bytes are never sent)
            src.close()
            dst.close()


@pytest.mark.parametrize("seed", [False, True], ids=["control-seed-off", "seed-on"])
def test_kill9_after_kafka_ack_before_puback_writes_nothing_twice(
        seed, stack, gateway_factory, publisher_factory):
    proxy = AckHoldingProxy(stack.mqtt_port)
    try:
        _run(seed, proxy, stack, gateway_factory, publisher_factory)
    finally:
        proxy.close()


def _run(seed: bool, proxy: AckHoldingProxy, stack, gateway_factory, publisher_factory) -> None:
    topics = topic_names(unique("seed"))
    drone = unique("seed-")
    extra = "" if seed else "[limits]\nseed_max_records = 0\n"
    gw = gateway_factory(proxy.port, stack.kafka_bootstrap, topics, drone=drone,
                         extra=extra).start()
    gw.wait_ready()
    pub = publisher_factory(stack.mqtt_host, stack.mqtt_port)
    sent = {pub.send(telemetry(drone, 0))}
    wait_until(lambda: metric(gw.metrics(), "presacop_gateway_messages_acked_total") >= 1, 60,
               "the first message to be forwarded and acknowledged")

    proxy.hold()  # from now on the gateway's PUBACKs never reach the broker
    sent |= {pub.send(telemetry(drone, s)) for s in range(1, N)}
    pub.flush()
    read_ids(stack.kafka_bootstrap, topics["telemetry"], sent)  # Kafka acknowledged them all
    wait_until(lambda: metric(gw.metrics(), "presacop_gateway_messages_acked_total") >= N, 60,
               "the gateway to hand every PUBACK to its connection")
    gw.kill()
    proxy.drop()  # the broker never saw those PUBACKs: its session holds N - 1 messages

    gw.start()
    gw.wait_ready()
    wait_until(lambda: metric(gw.metrics(), "presacop_gateway_messages_received_total")
               >= N - 1 and metric(gw.metrics(), "presacop_gateway_in_flight") == 0, 90,
               "the restarted gateway to take the redelivered messages")
    counts = Counter(r.value["message_id"]
                     for r in read_to_end(stack.kafka_bootstrap, topics["telemetry"]))
    dups = sum(n - 1 for n in counts.values())
    samples = gw.metrics()
    dropped = metric(samples, "presacop_gateway_duplicates_dropped_total")
    print(f"seed {'on' if seed else 'off'}: {N} sent, {len(counts)} ids in Kafka, {dups} "
          f"written twice, {dropped:.0f} redeliveries dropped, "
          f"{metric(samples, 'presacop_gateway_dedupe_seeded_total'):.0f} ids seeded")
    assert set(counts) == sent
    if seed:
        assert dups == 0, f"{dups} message ids written twice after the restart"
        # N - 1 held PUBACKs; the first message's PUBACK may also still have been on its way
        # through the proxy when it started holding, so its redelivery is dropped too.
        assert N - 1 <= dropped <= N, "every redelivery is recognised as written"
    else:  # the control: without the seed the scenario does duplicate
        # N - 1 held PUBACKs, or N when the first one was still in the proxy (as above)
        assert N - 1 <= dups <= N and dropped == 0


@pytest.mark.parametrize("follow", [False, True], ids=["control-follow-off", "follow-on"])
def test_a_resend_dealt_to_another_member_of_the_share_group_is_not_written_twice(
        follow, stack, gateway_factory, publisher_factory):
    """A drone re-sends a message whose PUBACK a link cut lost; the broker deals the copy to the
    other gateway of the group. With `limits.seed_follow` that gateway has read the first
    gateway's record from Kafka and drops the copy; without it (the control) it writes it again."""
    topics = topic_names(unique("follow"))
    drone, group = unique("follow-"), unique("followgrp-")
    extra = f"[limits]\nseed_follow = {'true' if follow else 'false'}\n"
    gws = [gateway_factory(stack.mqtt_port, stack.kafka_bootstrap, topics, drone=drone,
                           share_group=group, client_id=unique(f"gw{x}-"), extra=extra).start()
           for x in "AB"]
    for gw in gws:
        gw.wait_ready()
    pub = publisher_factory(stack.mqtt_host, stack.mqtt_port)
    msg = telemetry(drone, 0)
    mid = pub.send(msg)
    read_ids(stack.kafka_bootstrap, topics["telemetry"], {mid})
    if follow:  # both followers have read the record (the writer's own is a no-op for it)
        wait_until(lambda: all(metric(gw.metrics(), "presacop_gateway_dedupe_seeded_total")
                               >= 1 for gw in gws), 60, "both gateways to follow the record")
    for _ in range(2):  # round robin: the two copies go to both members
        pub.send(msg)
    pub.flush()

    def settled() -> bool:
        samples = [gw.metrics() for gw in gws]
        return sum(metric(s, "presacop_gateway_messages_received_total") for s in samples) >= 3 \
            and all(metric(s, "presacop_gateway_in_flight") == 0 for s in samples)

    wait_until(settled, 60, "both gateways to take the copies")
    copies = [r for r in read_to_end(stack.kafka_bootstrap, topics["telemetry"])
              if r.value["message_id"] == mid]
    dropped = sum(metric(gw.metrics(), "presacop_gateway_duplicates_dropped_total")
                  for gw in gws)
    print(f"follow {'on' if follow else 'off'}: {len(copies)} records of {mid}, "
          f"{dropped:.0f} copies dropped")
    if follow:
        assert len(copies) == 1 and dropped == 2
    else:
        assert len(copies) >= 2, "the control must show the duplicate the follower prevents"


@pytest.mark.parametrize("seed", [False, True], ids=["control-seed-off", "seed-on"])
def test_a_violation_whose_alert_was_written_before_a_kill_gets_no_second_alert(
        seed, stack, gateway_factory, publisher_factory):
    # What a gateway killed between its alert's and its violation's acknowledgements leaves:
    # the alert in Kafka, the violation not, the message still in the broker's session. The
    # restarted gateway writes the violation; the seed read the alert back, so not the alert.
    topics = topic_names(unique("half"))
    drone = unique("half-")
    extra = "" if seed else "[limits]\nseed_max_records = 0\n"
    gw = gateway_factory(stack.mqtt_port, stack.kafka_bootstrap, topics, drone=drone,
                         extra=extra).start()
    gw.wait_ready()  # the topics exist
    gw.stop()
    msg = violation(drone, 5, code=None)
    left = alert_record(msg, topics["alerts"], Receipt(mqtt_topic(msg), now_ms(), "gw-killed"))
    producer = _kafka.KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    try:
        producer.send(left.topic, key=left.key, value=left.value,
                      headers=list(left.headers)).get(timeout=60)
    finally:
        producer.close(5)
    gw.start()
    gw.wait_ready()
    pub = publisher_factory(stack.mqtt_host, stack.mqtt_port)
    mid = pub.send(msg)
    pub.flush()
    read_ids(stack.kafka_bootstrap, topics["violations"], {mid})
    wait_until(lambda: metric(gw.metrics(), "presacop_gateway_messages_acked_total") >= 1
               and metric(gw.metrics(), "presacop_gateway_in_flight") == 0, 60,
               "the violation and its alert acknowledged")
    alerts = [r for r in read_to_end(stack.kafka_bootstrap, topics["alerts"])
              if r.value.get("message_id") == protocol.message_id(msg)]
    print(f"seed {'on' if seed else 'off'}: {len(alerts)} alert record(s) for {mid}")
    assert {r.value["state"] for r in alerts} == {"open"}
    assert len(alerts) == (1 if seed else 2)
