"""The gateway's service logic against the in-memory Source and Sink (gateway.testing): routing,
ack only after Kafka, duplicates, dead letters, retries decided by `retriable`, a Kafka that
refuses the gateway, drain, dead threads. The same service runs against real Mosquitto + Kafka
in test_gateway_delivery.py, test_gateway_faults.py and the others."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from gateway_testlib import telemetry, violation

import protocol
from common.config import from_dict
from gateway.config import GatewayConfig
from gateway.errors import KafkaRefused, ProducerFailed, RecordRejected, SinkError
from gateway.records import OutRecord
from gateway.service import EXIT_KAFKA_REFUSED, EXIT_THREAD_DIED, Gateway
from gateway.source import Delivery
from gateway.testing import HOLD, MemorySink, MemorySource
from tests.support import wait_until

WAIT = 10.0
TOPICS = {"telemetry": "t.telemetry", "violations": "t.violations", "alerts": "t.alerts",
          "deadletter": "t.deadletter"}


def config(**limits: Any) -> GatewayConfig:
    return from_dict(GatewayConfig, {
        "mqtt": {"client_id": "t-memory"},
        "kafka": {"topics": TOPICS, "health_interval_s": 0.1},
        "limits": {"retry_min_s": 0.01, "retry_max_s": 0.05, "drain_timeout_s": 2.0, **limits},
        "metrics": {"address": ""},
    }, env={})


def delivery(msg: protocol.Message | None = None, *, mid: int = 1, payload: bytes | None = None,
             topic: str | None = None, generation: int = 1) -> Delivery:
    msg = msg or telemetry("d1", mid)
    return Delivery(topic or protocol.topic(msg.header.drone_id, protocol.kind_of(msg)),
                    protocol.encode(msg) if payload is None else payload, 1, False, False, mid,
                    generation)


Make = Callable[..., tuple[Gateway, MemorySource, MemorySink]]


@pytest.fixture
def make() -> Iterator[Make]:
    """make(outcome=..., **limits) -> a started gateway over a MemorySource and a MemorySink."""
    made: list[Gateway] = []

    def build(outcome: Callable[[OutRecord], Any] = lambda r: None, start: bool = True,
              **limits: Any) -> tuple[Gateway, MemorySource, MemorySink]:
        source, sink = MemorySource(), MemorySink(outcome)
        gw = Gateway(config(**limits), source=source, sink=sink)
        made.append(gw)
        if start:
            gw.start()
            assert gw.wait_ready(WAIT)
        return gw, source, sink

    yield build
    for gw in made:
        gw.stop()


def acked_mids(source: MemorySource) -> list[int]:
    return [d.mid for d in source.acked]


def topics_of(sink: MemorySink) -> list[str]:
    return [r.topic for r in sink.log]


# -- routing and the ack path ----------------------------------------------------------------


def test_each_message_goes_to_its_topic_and_is_acked_once_kafka_has_it(make: Make):
    gw, source, sink = make()
    source.push(delivery(telemetry("d1", 1), mid=1), delivery(violation("d1", 2), mid=2),
                delivery(violation("d1", 3, code=None), mid=3),
                delivery(mid=4, payload=b"\xc1 not msgpack",
                         topic="presacop/v1/drones/d1/telemetry"))
    wait_until(lambda: len(source.acked) == 4, WAIT, "4 acks")
    assert sorted(acked_mids(source)) == [1, 2, 3, 4]
    assert sorted(topics_of(sink)) == sorted(["t.telemetry", "t.violations", "t.violations",
                                              "t.alerts", "t.deadletter"])
    stats = gw.stats()
    assert (stats["received"], stats["acked"], stats["alerts"], stats["deadletter"]) == (4, 4, 1, 1)
    assert stats["in_flight"] == 0 and stats["pending"] == 0


def test_nothing_is_acked_before_every_record_of_the_message_is_acknowledged(make: Make):
    gw, source, sink = make(outcome=lambda r: HOLD if r.kind == "alert" else None)
    source.push(delivery(violation("d1", 7, code=None), mid=7))
    wait_until(lambda: sink.held == 1 and len(sink.log) == 1, WAIT, "the violation in Kafka")
    assert source.acked == [] and gw.stats()["in_flight"] == 1
    assert sink.release() == 1
    wait_until(lambda: acked_mids(source) == [7], WAIT, "the ack after the alert")


def test_a_loop_pass_reaches_the_sink_as_one_batch_in_order(make: Make):
    gw, source, sink = make(outcome=lambda r: HOLD)
    source.push(*(delivery(telemetry("d1", s), mid=s) for s in (1, 2, 3)))
    wait_until(lambda: sink.held == 3, WAIT, "3 records in the producer")
    assert [json.loads(r.value)["seq"] for r in sink.sent] == [1, 2, 3]
    assert gw.stats()["in_flight"] == 3 and gw.room() == gw.config.limits.max_in_flight - 3


def test_room_shrinks_to_zero_at_the_in_flight_limit(make: Make):
    gw, source, sink = make(outcome=lambda r: HOLD, max_in_flight=2)
    source.push(delivery(mid=1), delivery(telemetry("d1", 2), mid=2))
    assert gw.room() == 0
    wait_until(lambda: sink.held == 2, WAIT, "2 records in the producer")
    sink.release()
    wait_until(lambda: gw.room() == 2, WAIT, "room again")


# -- duplicates ----------------------------------------------------------------------------


def test_a_redelivery_is_acked_with_the_original_and_produced_once(make: Make):
    gw, source, sink = make(outcome=lambda r: HOLD)
    msg = telemetry("d1", 1)
    source.push(delivery(msg, mid=1))
    source.push(delivery(msg, mid=9, generation=2))  # redelivered on a new connection
    wait_until(lambda: sink.held == 1, WAIT, "the record in the producer")
    sink.outcome = lambda r: None
    sink.release()
    wait_until(lambda: sorted(acked_mids(source)) == [1, 9], WAIT, "both copies acked")
    source.push(delivery(msg, mid=10, generation=3))  # and once more, after it is done
    wait_until(lambda: len(source.acked) == 3, WAIT, "the late copy acked")
    assert len(sink.log) == 1 and gw.stats()["duplicates"] == 2


# -- Kafka's refusals and retries ----------------------------------------------------------


def test_a_record_kafka_rejects_for_good_is_dead_lettered_and_acked(make: Make):
    def outcome(r: OutRecord) -> Any:
        return RecordRejected("MessageSizeTooLargeError") if r.kind == "violation" else None

    gw, source, sink = make(outcome=outcome)
    source.push(delivery(violation("d1", 5), mid=5))
    wait_until(lambda: acked_mids(source) == [5], WAIT, "the ack of the dead-lettered message")
    [record] = sink.log
    assert record.topic == "t.deadletter" and record.key == b"d1"
    assert dict(record.headers)["reason"] == b"kafka_rejected"
    assert "MessageSizeTooLargeError" in json.loads(record.value)["detail"]
    assert gw.stats()["deadletter"] == 1


def test_a_failure_not_marked_retriable_is_dead_lettered_too(make: Make):
    _gw, source, sink = make(outcome=lambda r: SinkError("policy", retriable=False)
                            if r.kind == "telemetry" else None)
    source.push(delivery(mid=1))
    wait_until(lambda: acked_mids(source) == [1], WAIT, "the ack")
    assert topics_of(sink) == ["t.deadletter"]


def test_retriable_failures_are_retried_until_kafka_takes_the_record(make: Make):
    failures = [SinkError("NotLeaderForPartitionError", retriable=True)] * 3

    def outcome(r: OutRecord) -> Any:
        return failures.pop() if failures else None

    gw, source, sink = make(outcome=outcome)
    source.push(delivery(mid=1))
    wait_until(lambda: acked_mids(source) == [1], WAIT, "the ack after 3 retries")
    assert len(sink.sent) == 4 and topics_of(sink) == ["t.telemetry"]
    assert gw.metrics.produce_retries._value.get() == 3


def test_a_failed_producer_is_rebuilt_and_the_record_sent_again(make: Make):
    failures = [ProducerFailed("IllegalStateError: closed")]
    _gw, source, sink = make(outcome=lambda r: failures.pop() if failures else None)
    source.push(delivery(mid=1))
    wait_until(lambda: acked_mids(source) == [1], WAIT, "the ack")
    assert (sink.opens, sink.closes) == (2, 1) and len(sink.log) == 1


def run_in_thread(gw: Gateway) -> tuple[threading.Thread, list[int]]:
    code: list[int] = []
    thread = threading.Thread(target=lambda: code.append(gw.run()), name="test-run")
    thread.start()
    return thread, code


def test_kafka_refusing_the_gateway_stops_it_with_exit_3_and_nothing_acked(make: Make):
    gw, source, sink = make(start=False, outcome=lambda r: KafkaRefused(
        "TopicAuthorizationFailedError") if r.topic == "t.violations" else None)
    thread, code = run_in_thread(gw)
    wait_until(gw.ready, WAIT, "the gateway ready")
    source.push(delivery(telemetry("d1", 1), mid=1), delivery(violation("d1", 2), mid=2))
    thread.join(WAIT)
    assert code == [EXIT_KAFKA_REFUSED]
    assert acked_mids(source) == [1]  # the violation stays at the broker, not dead-lettered
    assert topics_of(sink) == ["t.telemetry"] and gw.refused is not None


def test_kafka_refusing_the_connection_stops_the_gateway_too(make: Make):
    gw, _source, sink = make(start=False)
    sink.open_error = KafkaRefused("SaslAuthenticationFailedError")
    thread, code = run_in_thread(gw)
    thread.join(WAIT)
    assert code == [EXIT_KAFKA_REFUSED] and sink.opens == 0


def test_kafka_down_keeps_messages_unacked_and_retried_until_it_returns(make: Make):
    gw, source, sink = make(outcome=lambda r: SinkError("KafkaTimeoutError", retriable=True))
    source.push(delivery(mid=1))
    wait_until(lambda: len(sink.sent) >= 3, WAIT, "a few attempts")
    sink.down = True
    wait_until(lambda: not gw.ready(), WAIT, "kafka_up 0")
    assert source.acked == [] and gw.stats()["in_flight"] == 1
    sink.down, sink.outcome = False, (lambda r: None)
    wait_until(lambda: acked_mids(source) == [1], WAIT, "the ack once Kafka is back")
    assert gw.ready()


# -- stop and failures -------------------------------------------------------------------


def test_stop_waits_for_what_was_taken_and_takes_nothing_after(make: Make):
    gw, source, sink = make(outcome=lambda r: HOLD)
    source.push(delivery(mid=1))
    stopper = threading.Thread(target=gw.stop, name="test-stop")
    stopper.start()
    wait_until(lambda: gw.health()[1]["draining"], WAIT, "draining")
    source.push(delivery(telemetry("d1", 2), mid=2))  # while draining: left at the broker
    wait_until(lambda: sink.held == 1, WAIT, "the record in the producer")
    sink.release()
    stopper.join(WAIT)
    assert acked_mids(source) == [1] and len(sink.sent) == 1
    assert gw.stats()["ignored_draining"] == 1
    assert source.stopped_with == {"end_session": False}


def test_run_exits_1_when_a_gateway_thread_dies(make: Make):
    """A dead worker thread must not leave a zombie that still pings the systemd watchdog."""
    gw, source, _sink = make(start=False)
    thread, code = run_in_thread(gw)
    wait_until(gw.ready, WAIT, "the gateway ready")
    source.die()
    thread.join(WAIT)
    assert code == [EXIT_THREAD_DIED]


def test_source_counts_reach_the_metrics(make: Make):
    gw, source, _sink = make()
    source.counts.stale_acks, source.counts.deferred, source.counts.connects = 2, 3, 1
    samples = {s.name: s.value for metric in gw.metrics.registry.collect()
               for s in metric.samples}
    assert samples["presacop_gateway_stale_acks_dropped_total"] == 2
    assert samples["presacop_gateway_messages_deferred_total"] == 3
    assert samples["presacop_gateway_mqtt_connects_total"] == 1
    assert samples["presacop_gateway_mqtt_connected"] == 1
