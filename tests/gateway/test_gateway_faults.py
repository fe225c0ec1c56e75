"""Broker faults with private real brokers: Kafka stopped under load, the MQTT broker down at
start and restarted mid-stream. Nothing is lost; memory and in-flight stay bounded."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import psutil
import pytest
from gateway_testlib import (
    BACKENDS,
    metric,
    read_ids,
    telemetry,
    topic_names,
    unique,
)

from presacop.stack import free_port
from tests.support import wait_until

RECEIVE_MAXIMUM = 200
# Generous: the gateway idles at ~60 MB; what matters is that it does not grow with the backlog.
RSS_LIMIT_BYTES = 400 * 1024 * 1024


@pytest.mark.parametrize("backend", BACKENDS)
def test_kafka_outage_under_load_loses_nothing_and_stays_bounded(
        stack, kafka_factory, gateway_factory, publisher_factory, backend):
    kafka = kafka_factory()
    topics = topic_names(unique("outage"))
    drone = unique("outage-")
    gw = gateway_factory(stack.mqtt_port, kafka.bootstrap, topics, drone=drone, extra=f"""
[kafka.producer]
request_timeout_ms = 2000
delivery_timeout_ms = 4000
max_block_ms = 1000
[limits]
max_in_flight = {RECEIVE_MAXIMUM}
""", mqtt_extra=f"receive_maximum = {RECEIVE_MAXIMUM}", log_level="DEBUG",
                         backend=backend).start()
    gw.wait_ready()
    pub = publisher_factory(stack.mqtt_host, stack.mqtt_port)
    total = 6000
    sent = {f"{drone}:{s}" for s in range(total)}
    done_publishing = threading.Event()

    def publish() -> None:
        for seq in range(total):
            pub.send(telemetry(drone, seq))
            if seq % 100 == 99:
                time.sleep(0.05)  # ~ a steady stream across the outage
        done_publishing.set()

    thread = threading.Thread(target=publish, name="test-publisher")
    thread.start()
    wait_until(lambda: metric(gw.metrics(), "presacop_gateway_messages_acked_total") >= 500, 120,
               "forwarding to start")
    kafka.stop()
    proc = psutil.Process(gw.pid)
    seen = {"rss_max": 0, "in_flight_max": 0.0, "kafka_down": False, "healthz_503": False,
            "retries": 0.0, "all_published": False}

    def outage_seen_through() -> bool:
        """Kafka stays down until the gateway has felt all of it: reported down, a full window
        held, produce attempts failed and retried, and the whole stream waiting at the broker."""
        samples = gw.metrics()
        seen["in_flight_max"] = max(seen["in_flight_max"],
                                    metric(samples, "presacop_gateway_in_flight"))
        seen["kafka_down"] |= metric(samples, "presacop_gateway_kafka_up") == 0
        seen["healthz_503"] |= gw.health()[0] == 503
        seen["retries"] = metric(samples, "presacop_gateway_produce_retries_total")
        seen["rss_max"] = max(seen["rss_max"], proc.memory_info().rss)
        seen["all_published"] = done_publishing.is_set()
        return bool(seen["kafka_down"] and seen["healthz_503"] and seen["all_published"]
                    and seen["in_flight_max"] >= RECEIVE_MAXIMUM and seen["retries"] >= 1)

    try:
        wait_until(outage_seen_through, 120, "the gateway to go through the outage", interval=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nobserved: {seen}\n{gw.log_tail(40)}") from None
    rss_max, in_flight_max = seen["rss_max"], seen["in_flight_max"]
    acked_during = metric(gw.metrics(), "presacop_gateway_messages_acked_total")
    kafka.start()
    thread.join(180)
    assert not thread.is_alive(), "the publisher did not finish"
    pub.flush()

    ids = read_ids(kafka.bootstrap, topics["telemetry"], sent, timeout=240)
    missing = sent - set(ids)
    dups = len(ids) - len(set(ids))
    samples = gw.metrics()
    print(f"kafka outage: {total} sent, {len(missing)} missing, {dups} duplicates, "
          f"rss max {rss_max / 2**20:.0f} MiB, in-flight max {in_flight_max:.0f}, "
          f"retries {metric(samples, 'presacop_gateway_produce_retries_total'):.0f}")
    if missing:
        os.kill(gw.pid, signal.SIGUSR1)  # thread stacks into the log, for the report below
        with contextlib.suppress(AssertionError):  # a missing dump must not hide the loss
            wait_until(lambda: "most recent call first" in gw.log_tail(400), 10,
                       "the thread dump in the log")
    assert not missing, f"{len(missing)} lost, e.g. {sorted(missing)[:5]}\n{gw.log_tail(80)}"
    assert acked_during < total, "nothing should be acknowledged without Kafka"
    assert in_flight_max <= RECEIVE_MAXIMUM
    assert metric(samples, "presacop_gateway_in_flight_max") <= RECEIVE_MAXIMUM
    assert rss_max < RSS_LIMIT_BYTES, f"RSS {rss_max / 2**20:.0f} MiB"
    assert metric(samples, "presacop_gateway_kafka_up") == 1
    assert gw.alive()


def test_mqtt_broker_down_at_start_then_restarted(stack, mosquitto_factory, gateway_factory,
                                                  publisher_factory):
    port = free_port()
    topics = topic_names(unique("mqttdown"))
    drone = unique("mqttdown-")
    gw = gateway_factory(port, stack.kafka_bootstrap, topics, drone=drone).start()
    wait_until(lambda: _health(gw) is not None, 60, "the metrics endpoint")
    code, body = gw.health()
    assert code == 503 and body["mqtt_connected"] is False
    wait_until(lambda: sum(str(r.get("msg", "")).startswith("mqtt connect failed")
                           for r in gw.log_records()) >= 2, 60,
               "two failed MQTT connection attempts in the log")
    assert gw.alive()

    broker = mosquitto_factory(port=port)
    gw.wait_ready()
    pub = publisher_factory("127.0.0.1", port)
    first = {pub.send(telemetry(drone, s)) for s in range(500)}
    pub.flush()
    pub.close()
    broker.stop()  # graceful: the broker saves sessions and queued messages
    wait_until(lambda: gw.health()[1]["mqtt_connected"] is False, 30,
               "the gateway to report the MQTT broker gone")
    broker.start()
    gw.wait_ready()
    pub2 = publisher_factory("127.0.0.1", port)
    second = {pub2.send(telemetry(drone, s)) for s in range(500, 1000)}
    pub2.flush()

    ids = read_ids(stack.kafka_bootstrap, topics["telemetry"], first | second)
    assert set(ids) == first | second
    assert metric(gw.metrics(), "presacop_gateway_mqtt_connects_total") >= 2


def _health(gw) -> int | None:
    try:
        return gw.health()[0]
    except OSError:
        return None
