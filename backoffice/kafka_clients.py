"""The back office's Kafka clients, built by `common.kafka` (the one place that applies the
configured security settings) with the options the back office needs.

Raises kafka-python errors (`kafka.errors.KafkaError`) and OSError from the broker connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from common import kafka
from gateway.config import KafkaConfig


def producer(cfg: KafkaConfig, **options: Any) -> Any:
    """An idempotent, acks=all KafkaProducer; `options` are more KafkaProducer options."""
    return kafka.producer(kafka.KafkaSettings.of(cfg), acks="all", enable_idempotence=True,
                          **options)


def consumer(cfg: KafkaConfig, **options: Any) -> Any:
    """A KafkaConsumer without a group and without auto commit (the caller assigns and seeks)."""
    return kafka.consumer(kafka.KafkaSettings.of(cfg), enable_auto_commit=False, **options)


def topic_partition(topic: str, partition: int) -> Any:
    return kafka.import_kafka().TopicPartition(topic, partition)


def ensure_topics(cfg: KafkaConfig, names: Iterable[str]) -> None:
    """Create the missing topics (`cfg.partitions`, `cfg.replication_factor`) when
    `cfg.create_topics`; existing ones are left alone."""
    if not cfg.create_topics:
        return
    k = kafka.import_kafka()
    client = kafka.admin(kafka.KafkaSettings.of(cfg))
    try:
        existing = set(client.list_topics())
        new = [k.admin.NewTopic(n, cfg.partitions, cfg.replication_factor)
               for n in dict.fromkeys(names) if n not in existing]
        if new:
            with contextlib.suppress(k.errors.TopicAlreadyExistsError):
                client.create_topics(new)
    finally:
        kafka.close_quietly(client)
