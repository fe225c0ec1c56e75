"""The ingest's producer behind one small interface, over kafka-python or confluent-kafka
(`kafka.backend`, the gateway's key): idempotent, acks=all, the history table's batching.

    send(topic, key, value, headers)   hand one record over (blocks while the buffer is full)
    flush(timeout)                     wait for Kafka's acknowledgement of everything sent; raise
                                       the first delivery failure as SendFailed
    close()

confluent-kafka (librdkafka, C) does the batching and network work outside the GIL, so the
ingest's own parsing gets the interpreter; bench/history.py measures both.

Errors: SendFailed (RuntimeError) with the count and the first cause.
"""

from __future__ import annotations

import logging
from typing import Any

from backoffice import kafka_clients
from backoffice.config import BackofficeConfig
from common import kafka

Headers = list[tuple[str, bytes]]


class SendFailed(RuntimeError):
    """Kafka refused or did not acknowledge `count` records; `__cause__` is the first error."""

    def __init__(self, count: int, first: BaseException | str) -> None:
        super().__init__(f"{count} record(s) not acknowledged (first: {first!r})")
        self.count = count


def open_sender(cfg: BackofficeConfig) -> KafkaPythonSender | ConfluentSender:
    """The sender for `cfg.kafka.backend` ("auto": confluent-kafka if installed)."""
    if cfg.kafka.effective_backend() == "confluent":
        return ConfluentSender(cfg)
    return KafkaPythonSender(cfg)


class KafkaPythonSender:
    def __init__(self, cfg: BackofficeConfig) -> None:
        h = cfg.history
        self.producer = kafka_clients.producer(
            cfg.kafka, linger_ms=h.linger_ms, batch_size=h.batch_size,
            compression_type=None if h.compression_type == "none" else h.compression_type)
        self.failures: list[BaseException] = []

    def send(self, topic: str, key: bytes, value: bytes, headers: Headers) -> None:
        future = self.producer.send(topic, key=key, value=value, headers=headers)
        future.add_errback(self.failures.append)

    def flush(self, timeout: float) -> None:
        self.producer.flush(timeout=timeout)
        if self.failures:
            raise SendFailed(len(self.failures), self.failures[0]) from self.failures[0]

    def close(self) -> None:
        kafka.close_quietly(self.producer, timeout=10)


class ConfluentSender:
    def __init__(self, cfg: BackofficeConfig) -> None:
        h = cfg.history
        self.producer = kafka.confluent_producer(kafka.KafkaSettings.of(cfg.kafka), {
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": h.linger_ms,
            "batch.size": h.batch_size,
            "compression.type": h.compression_type,
            # librdkafka buffers up to 1 GB by default; the ingest promises constant memory.
            "queue.buffering.max.kbytes": 32768,
            # The same partition for a key as kafka-python and the Java producer choose.
            "partitioner": "murmur2_random",
            "logger": logging.getLogger("backoffice.history.librdkafka"),
            # Failures only: a Python callback per acknowledged record cost ~2 us of the
            # ingest's interpreter; flush() still waits for every acknowledgement.
            "on_delivery": self._report,
            "delivery.report.only.error": True,
        })
        self.failures: list[str] = []
        self.sent = 0

    def _report(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failures.append(str(err))

    def send(self, topic: str, key: bytes, value: bytes, headers: Headers) -> None:
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers)
                break
            except BufferError:  # librdkafka's queue is full: let it drain, then retry
                self.producer.poll(0.05)
        self.sent += 1
        if self.sent % 1000 == 0:
            self.producer.poll(0)  # serve delivery reports as we go

    def flush(self, timeout: float) -> None:
        left = self.producer.flush(timeout)
        if left:
            self.failures.append(f"{left} record(s) still queued after {timeout:g} s")
        if self.failures:
            raise SendFailed(len(self.failures), self.failures[0])

    def close(self) -> None:
        kafka.close_quietly(self.producer, timeout=10)
