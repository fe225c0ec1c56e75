"""The kafka-python adapter of `Sink` (the default `kafka.backend`), and the translation of
kafka-python's errors into the gateway's (errors.py), decided by their `.retriable`.

kafka-python's own I/O thread completes the futures; their callbacks only report (the retry
policy above, retrying.py, decides what happens next).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from common import kafka

from .config import KafkaConfig
from .errors import KafkaRefused, ProducerFailed, RecordRejected, SinkError
from .records import OutRecord
from .sink import ClientSink, Landed, Report

# The record itself is unacceptable: no retry can fix it.
_RECORD_ERRORS = ("MessageSizeTooLargeError", "RecordListTooLargeError", "InvalidTimestampError",
                  "CorruptRecordError", "InvalidRecordError")
# The producer's state is broken (idempotence sequence lost, fenced, closed): a new one fixes it.
_PRODUCER_ERRORS = ("OutOfOrderSequenceNumberError", "UnknownProducerIdError",
                    "InvalidProducerEpochError", "ProducerFencedError",
                    "DuplicateSequenceNumberError", "IllegalStateError")
# Kafka refuses the gateway: its ACLs or credentials, not the record.
_REFUSALS = ("AuthorizationError", "SaslAuthenticationFailedError")
_classes: dict[str, tuple[type[BaseException], ...]] = {}


def _of(names: tuple[str, ...]) -> tuple[type[BaseException], ...]:
    found = _classes.get(names[0])
    if found is None:
        errors = kafka.import_kafka().errors
        found = _classes[names[0]] = tuple(getattr(errors, n) for n in names if hasattr(errors, n))
    return found


def client_options(cfg: KafkaConfig) -> dict[str, Any]:
    """kafka-python options the gateway's clients share, besides the connection settings."""
    return {"request_timeout_ms": cfg.producer.request_timeout_ms,
            "reconnect_backoff_max_ms": 2000, "bootstrap_timeout_ms": 5000}


def translate(exc: BaseException) -> SinkError:
    """The gateway's error for an exception from kafka-python (its `.retriable` decides, except
    for the record, producer and refusal classes named above)."""
    if isinstance(exc, SinkError):
        return exc
    what = f"{type(exc).__name__}: {exc}"
    error: SinkError
    if isinstance(exc, _of(_REFUSALS)):
        error = KafkaRefused(what)
    elif isinstance(exc, (*_of(_RECORD_ERRORS), ValueError, TypeError)):
        error = RecordRejected(what)  # ValueError/TypeError: send could not serialize it
    elif isinstance(exc, _of(_PRODUCER_ERRORS)):
        error = ProducerFailed(what)
    elif isinstance(exc, kafka.import_kafka().errors.KafkaError):
        error = SinkError(what, retriable=bool(exc.retriable))
    elif isinstance(exc, OSError):
        error = SinkError(what, retriable=True)
    else:  # anything else out of the producer: it is in a bad state, rebuild it
        error = ProducerFailed(what)
    error.__cause__ = exc
    return error


def connect_error(exc: BaseException) -> SinkError:
    """While connecting, every failure means "not reachable yet" (retriable), unless Kafka
    refuses us."""
    error = translate(exc)
    return error if isinstance(error, KafkaRefused) else SinkError(str(error), retriable=True)


class KafkaPythonSink(ClientSink):
    """`Sink` over `kafka.KafkaProducer` (acks=all, idempotent)."""

    reports_in_poll = False

    def __init__(self, cfg: KafkaConfig, client_id: str, topics: Any, admin: Any,
                 landed: Landed | None = None) -> None:
        super().__init__(cfg, client_id, topics, admin, landed)
        self._timeout_error: type[BaseException] = kafka.import_kafka().errors.KafkaTimeoutError

    def open(self) -> None:
        self._topics.ensure()
        p = self._cfg.producer
        try:
            self._producer = kafka.producer(
                kafka.KafkaSettings.of(self._cfg), **client_options(self._cfg),
                client_id=self._client_id, acks="all", enable_idempotence=True,
                linger_ms=p.linger_ms, batch_size=p.batch_size,
                compression_type=None if p.compression_type == "none" else p.compression_type,
                delivery_timeout_ms=p.delivery_timeout_ms,
                max_in_flight_requests_per_connection=p.max_in_flight,
                max_block_ms=p.max_block_ms, partitioner=_KeyHashCache.make())
        except Exception as exc:
            raise connect_error(exc) from exc

    def send(self, batch: Sequence[tuple[int, OutRecord]], report: Report) -> None:
        send, ok, failed = self._producer.send, _ok, _failed
        for i, (token, r) in enumerate(batch):
            try:
                future = send(r.topic, value=r.value, key=r.key, headers=list(r.headers))
            # A failure raised by `send` itself: the record never left the gateway (unsent).
            except self._timeout_error as exc:  # no metadata or buffer space within max_block_ms
                report(token, _unsent(translate(exc)))
                continue
            except Exception as exc:
                error = _unsent(translate(exc))
                report(token, error)
                if isinstance(error, ProducerFailed):  # the rest waits for a new producer
                    for later, _ in batch[i + 1:]:
                        report(later, ProducerFailed("producer rebuilt", unsent=True))
                    return
                continue
            future.add_callback(ok, report, token)
            future.add_errback(failed, report, token)

    def poll(self, timeout: float) -> None:
        pass  # kafka-python's I/O thread reports on its own


def _unsent(error: SinkError) -> SinkError:
    error.unsent = True
    return error


def _ok(report: Report, token: int, _metadata: Any) -> None:
    report(token, None)


def _failed(report: Report, token: int, exc: BaseException) -> None:
    report(token, translate(exc))


class _KeyHashCache:
    """kafka-python's default partitioner, with the murmur2 hash of each key remembered.

    The same partition as `DefaultPartitioner` for every record (keyed: murmur2 of the key
    modulo the topic's partition count, read per record, so a topic that grows moves keys exactly
    as it would otherwise; keyless: the default's choice). The default hashes every key in pure
    Python (about 2 us) and builds two sets per record; the gateway's keys are a fleet's drone
    ids, the same few thousand over and over."""

    MAX_KEYS = 65536  # emptied when full: bounded whatever keys arrive

    @classmethod
    def make(cls) -> Any:
        kafka.import_kafka()
        from kafka.partitioner.default import DefaultPartitioner, murmur2

        hashes: dict[bytes, int] = {}

        class Partitioner(DefaultPartitioner):  # type: ignore[misc]
            def partition(self, topic: str, key: Any, serialized_key: bytes | None, value: Any,
                          serialized_value: Any, cluster: Any) -> int:
                partitions = cluster.partitions_for_topic(topic) if serialized_key else None
                if not partitions:
                    return int(super().partition(topic, key, serialized_key, value,
                                                 serialized_value, cluster))
                h = hashes.get(serialized_key)
                if h is None:
                    if len(hashes) >= cls.MAX_KEYS:
                        hashes.clear()
                    h = hashes[serialized_key] = murmur2(serialized_key) & 0x7FFFFFFF
                ordered = sorted(partitions)
                return int(ordered[h % len(ordered)])

        return Partitioner()
