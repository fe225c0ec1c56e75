"""Kafka admin work, with kafka-python's admin client for either producer backend: creating the
gateway's topics, and the reachability probe behind `kafka_up` and `/healthz`.

Raises: `SinkError` (errors.py) translated from kafka-python's errors: `KafkaRefused` when the
cluster denies us (ACL, SASL), else retriable (Kafka unreachable or not ready yet).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from common import kafka

from .config import KafkaConfig
from .kafka_python import client_options, connect_error

log = logging.getLogger("gateway.kafka")


def _admin(cfg: KafkaConfig, client_id: str) -> Any:
    try:
        return kafka.admin(kafka.KafkaSettings.of(cfg), **client_options(cfg),
                           client_id=f"{client_id}-admin")
    except Exception as exc:
        raise connect_error(exc) from exc


class TopicCreator:
    """Creates the configured topics that are missing, once (`ensure` is a no-op afterwards)."""

    def __init__(self, cfg: KafkaConfig, client_id: str) -> None:
        self._cfg = cfg
        self._client_id = client_id
        self.done = not cfg.create_topics

    def ensure(self) -> None:
        """Raises `SinkError` (see the module docstring)."""
        if self.done:
            return
        admin = _admin(self._cfg, self._client_id)
        try:
            self._create(admin)
        except Exception as exc:
            raise connect_error(exc) from exc
        finally:
            kafka.close_quietly(admin)
        self.done = True

    def _create(self, admin: Any) -> None:
        errors = kafka.import_kafka().errors
        existing = set(admin.list_topics())
        wanted = [t for t in self._cfg.topics.all() if t not in existing]
        if wanted:
            new_topic = kafka.import_kafka().admin.NewTopic
            new = [new_topic(t, self._cfg.partitions, self._cfg.replication_factor)
                   for t in wanted]
            with contextlib.suppress(errors.TopicAlreadyExistsError):  # another gateway was first
                admin.create_topics(new)
            log.info("created kafka topics", extra={"topics": wanted})


class AdminProbe:
    """One admin client kept between probes; rebuilt after a failure."""

    def __init__(self, cfg: KafkaConfig, client_id: str) -> None:
        self._cfg = cfg
        self._client_id = client_id
        self._admin: Any = None

    def probe(self) -> None:
        """Raises `SinkError` when Kafka does not answer a describe-cluster request."""
        try:
            if self._admin is None:
                self._admin = _admin(self._cfg, self._client_id)
            self._admin.describe_cluster()
        except Exception as exc:
            self.close()
            raise connect_error(exc) from exc

    def close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            kafka.close_quietly(admin)
