"""The Kafka side without a broker: the retry and stall policy over a MemorySink, and how each
client library's errors become the gateway's (retriable or not, rejected, refused)."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest

from common import kafka
from gateway import confluent, kafka_python
from gateway.errors import KafkaRefused, ProducerFailed, RecordRejected, SinkError
from gateway.records import OutRecord
from gateway.retrying import RetryingProducer
from gateway.testing import HOLD, MemorySink
from tests.support import wait_until

WAIT = 10.0
RECORD = OutRecord("t", b"d1", b"{}", (), "telemetry")


@pytest.fixture
def producer() -> Iterator[tuple[RetryingProducer, MemorySink, list[SinkError | None]]]:
    """A RetryingProducer with a 0.3 s stall limit over a MemorySink, and its outcomes."""
    sink = MemorySink()
    rp = RetryingProducer(sink, retry_min_s=0.01, retry_max_s=0.05, stall_s=0.3)
    outcomes: list[SinkError | None] = []
    rp.start()
    yield rp, sink, outcomes
    rp.stop()


def submit(rp: RetryingProducer, outcomes: list[SinkError | None], n: int = 1) -> None:
    rp.submit_many([(RECORD, outcomes.append) for _ in range(n)])


def test_a_stalled_producer_is_rebuilt_and_each_record_ends_once(producer):
    rp, sink, outcomes = producer
    # The first producer takes the records and never says a word; the next one acknowledges.
    sink.outcome = lambda r: HOLD if sink.closes == 0 else None
    submit(rp, outcomes, 3)
    wait_until(lambda: outcomes == [None] * 3, WAIT, "3 acknowledgements from the new producer")
    assert sink.opens == 2 and sink.release() == 3  # the old attempts report late...
    assert outcomes == [None] * 3 and rp.outstanding == 0  # ...and are ignored
    assert len(sink.log) == 6  # 3 acknowledged, 3 late (the producer may duplicate; see docs)


def test_only_the_non_retriable_failure_reaches_the_callback(producer):
    rp, sink, outcomes = producer
    results: list[SinkError | None] = [SinkError("down", retriable=True),
                                       RecordRejected("too large")]
    sink.outcome = lambda r: results.pop(0)
    submit(rp, outcomes)
    wait_until(lambda: outcomes, WAIT, "an outcome")
    assert [type(o) for o in outcomes] == [RecordRejected] and len(sink.sent) == 2


def test_a_producer_failure_reported_by_a_dropped_producer_does_not_drop_the_new_one(producer):
    rp, sink, outcomes = producer
    results: list[object] = [HOLD, ProducerFailed("closed")]  # then acknowledged
    sink.outcome = lambda r: results.pop(0) if results else None
    submit(rp, outcomes)
    wait_until(lambda: sink.held == 1, WAIT, "one record in the producer")
    submit(rp, outcomes)  # fails at once: the producer is rebuilt, the record sent again
    wait_until(lambda: outcomes == [None], WAIT, "the second record acknowledged")
    assert sink.opens == 2
    sink.release(ProducerFailed("closed forcefully"))  # the old producer's last words
    wait_until(lambda: outcomes == [None, None], WAIT, "the first record sent again")
    assert sink.opens == 2


def test_wait_idle_and_stop_return_while_kafka_is_down():
    sink = MemorySink(lambda r: SinkError("down", retriable=True))
    rp = RetryingProducer(sink, retry_min_s=0.01, retry_max_s=0.02)
    rp.start()
    rp.submit(RECORD, lambda outcome: None)
    assert rp.wait_idle(0.2) is False and rp.outstanding == 1
    rp.stop()
    assert not rp.alive and threading.active_count() >= 1


# -- translating the libraries' errors ------------------------------------------------------


def kafka_errors():
    return kafka.import_kafka().errors


@pytest.mark.parametrize(("name", "kind", "retriable"), [
    ("NotLeaderForPartitionError", SinkError, True),
    ("KafkaTimeoutError", SinkError, True),
    ("KafkaConnectionError", SinkError, True),
    ("RequestTimedOutError", SinkError, True),
    ("MessageSizeTooLargeError", RecordRejected, False),
    ("InvalidTimestampError", RecordRejected, False),
    ("TopicAuthorizationFailedError", KafkaRefused, False),
    ("ClusterAuthorizationFailedError", KafkaRefused, False),
    ("OutOfOrderSequenceNumberError", ProducerFailed, True),
    ("IllegalStateError", ProducerFailed, True),
    ("PolicyViolationError", SinkError, False),
])
def test_kafka_python_errors_keep_the_librarys_retriable(name, kind, retriable):
    exc = getattr(kafka_errors(), name)("x")
    error = kafka_python.translate(exc)
    assert type(error) is kind and error.retriable is retriable and error.__cause__ is exc
    if kind is SinkError:
        assert error.retriable is bool(exc.retriable)


def test_kafka_python_connect_failures_are_retriable_unless_kafka_refuses():
    assert kafka_python.connect_error(kafka_errors().KafkaError("no brokers")).retriable
    assert isinstance(kafka_python.connect_error(
        kafka_errors().SaslAuthenticationFailedError("bad password")), KafkaRefused)


def confluent_error(code_name: str, *, fatal: bool = False, retriable: bool = False):
    from confluent_kafka import KafkaError

    return KafkaError(getattr(KafkaError, code_name), "x", fatal=fatal, retriable=retriable)


@pytest.mark.parametrize(("code", "kind", "retriable"), [
    ("_MSG_TIMED_OUT", SinkError, True),  # librdkafka's own retries ran out: ours go on
    ("_TRANSPORT", SinkError, True),
    ("_PURGE_QUEUE", SinkError, True),
    ("NOT_LEADER_FOR_PARTITION", SinkError, True),  # Kafka's protocol: retriable
    ("POLICY_VIOLATION", SinkError, False),
    ("MSG_SIZE_TOO_LARGE", RecordRejected, False),
    ("TOPIC_AUTHORIZATION_FAILED", KafkaRefused, False),
    ("_BAD_MSG", RecordRejected, False),
])
def test_confluent_errors_become_ours(code, kind, retriable):
    error = confluent.translate(confluent_error(code))
    assert type(error) is kind and error.retriable is retriable


def test_confluent_fatal_and_flagged_errors():
    assert isinstance(confluent.translate(confluent_error("_FATAL", fatal=True)), ProducerFailed)
    assert confluent.translate(confluent_error("POLICY_VIOLATION", retriable=True)).retriable
    from confluent_kafka import KafkaException

    wrapped = KafkaException(confluent_error("TOPIC_AUTHORIZATION_FAILED"))
    error = confluent.translate(wrapped)
    assert isinstance(error, KafkaRefused) and error.__cause__ is wrapped


# -- kafka-python's partitioner, cached ------------------------------------------------------


def test_the_key_hash_cache_partitions_as_kafka_pythons_default():
    """Same partition as DefaultPartitioner for every key, also after a topic grows."""
    kafka.import_kafka()
    from kafka.partitioner.default import DefaultPartitioner

    class Cluster:
        def __init__(self, partitions: int) -> None:
            self.partitions = set(range(partitions))

        def topics(self) -> set[str]:
            return {"t"}

        def partitions_for_topic(self, topic: str) -> set[int] | None:
            return set(self.partitions) if topic == "t" else None

        def available_partitions_for_topic(self, topic: str) -> set[int]:
            return set(self.partitions)

    cached, default = kafka_python._KeyHashCache.make(), DefaultPartitioner()
    rng = random.Random(5)
    keys = [rng.randbytes(rng.randrange(0, 24)) for _ in range(2000)] + [b"drone-0001"] * 3
    for partitions in (1, 3, 7, 3):
        cluster = Cluster(partitions)
        for key in keys:
            assert cached.partition("t", key, key, None, b"v", cluster) == \
                default.partition("t", key, key, None, b"v", cluster)
    assert cached.partition("t", None, None, None, b"v", Cluster(1)) == 0  # keyless: the default
