"""The confluent-kafka adapter of `Sink` (`kafka.backend = "confluent"`: librdkafka, in C), and
the translation of its errors into the gateway's (errors.py).

Delivery reports run our callbacks inside `producer.poll`, which only the `gateway-kafka` thread
calls. Retriable: what librdkafka's `retriable()` says, or, since librdkafka reports a delivery
error only after its own retries ran out (so it rarely marks one retriable), what Kafka's
protocol says of the broker error code (kafka-python's table), and local errors (negative codes:
timeouts, transport, purged queues) except a malformed message.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from common import kafka

from .errors import KafkaRefused, ProducerFailed, RecordRejected, SinkError
from .records import OutRecord
from .sink import ClientSink, Report

_RECORD_CODES = ("MSG_SIZE_TOO_LARGE", "INVALID_MSG_SIZE", "INVALID_TIMESTAMP", "INVALID_RECORD",
                 "INVALID_MSG", "_BAD_MSG")
_REFUSAL_CODES = ("TOPIC_AUTHORIZATION_FAILED", "CLUSTER_AUTHORIZATION_FAILED",
                  "SASL_AUTHENTICATION_FAILED", "_AUTHENTICATION")
_codes: dict[str, frozenset[int]] = {}


def _of(names: tuple[str, ...]) -> frozenset[int]:
    found = _codes.get(names[0])
    if found is None:
        from confluent_kafka import KafkaError

        found = _codes[names[0]] = frozenset(getattr(KafkaError, n) for n in names
                                             if hasattr(KafkaError, n))
    return found


def _purged_from_queue() -> int:
    from confluent_kafka import KafkaError

    return int(KafkaError._PURGE_QUEUE)


def translate(err: Any) -> SinkError:
    """The gateway's error for a `confluent_kafka.KafkaError` (or a `KafkaException`)."""
    cause = err if isinstance(err, BaseException) else None
    if cause is not None and cause.args and hasattr(cause.args[0], "code"):
        err = cause.args[0]
    if not hasattr(err, "code"):  # not a KafkaError at all
        return ProducerFailed(f"{type(err).__name__}: {err}")
    code, what = err.code(), f"KafkaError {err.name()}: {err.str()}"
    error: SinkError
    if err.fatal():  # e.g. the idempotent producer's state is lost: needs a new producer
        error = ProducerFailed(what)
    elif code in _of(_REFUSAL_CODES):
        error = KafkaRefused(what)
    elif code in _of(_RECORD_CODES):
        error = RecordRejected(what)
    elif err.retriable() or code < 0:
        # Purged from the queue (a closed producer): never sent. Any other local error, a
        # timeout above all, may come after the broker wrote it.
        error = SinkError(what, retriable=True, unsent=code == _purged_from_queue())
    else:
        error = SinkError(what, retriable=bool(kafka.import_kafka().errors.for_code(code)
                                               .retriable))
    error.__cause__ = cause
    return error


class ConfluentSink(ClientSink):
    """`Sink` over `confluent_kafka.Producer`, with the same settings as kafka-python's."""

    reports_in_poll = True

    def open(self) -> None:
        """librdkafka connects lazily, so this does not prove Kafka reachable (the health probe
        and delivery reports do)."""
        self._topics.ensure()
        p = self._cfg.producer
        self._producer = kafka.confluent_producer(kafka.KafkaSettings.of(self._cfg), {
            "client.id": self._client_id,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": p.linger_ms,
            "batch.size": p.batch_size,
            "compression.type": p.compression_type,
            "message.timeout.ms": p.delivery_timeout_ms,
            "request.timeout.ms": p.request_timeout_ms,
            "max.in.flight.requests.per.connection": p.max_in_flight,
            "reconnect.backoff.max.ms": 2000,
            # Keyed records on the same partition as kafka-python and the Java producer put them
            # (librdkafka's default is consistent_random, a different hash): switching backends
            # keeps each drone's records on one partition, in order.
            "partitioner": "murmur2_random",
            "logger": logging.getLogger("gateway.kafka.librdkafka"),
        })

    def send(self, batch: Sequence[tuple[int, OutRecord]], report: Report) -> None:
        from confluent_kafka import KafkaException

        produce = self._producer.produce
        for token, r in batch:
            try:
                produce(r.topic, value=r.value, key=r.key, headers=list(r.headers),
                        on_delivery=lambda err, _msg, token=token: report(
                            token, None if err is None else translate(err)))
            except BufferError as exc:  # librdkafka's queue is full: serve reports, send again
                self._producer.poll(0.05)
                report(token, SinkError(f"BufferError: {exc}", retriable=True, unsent=True))
            except KafkaException as exc:  # refused by `produce` itself: never queued
                error = translate(exc)
                error.unsent = True
                report(token, error)
            except (ValueError, TypeError) as exc:
                report(token, RecordRejected(f"{type(exc).__name__}: {exc}"))

    def poll(self, timeout: float) -> None:
        self._producer.poll(timeout)
