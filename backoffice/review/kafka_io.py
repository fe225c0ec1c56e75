"""The console's Kafka side: the feeder (topics -> local view, committed offsets), the publisher
(a decision's records, acknowledged before the decision counts) and the audit forwarder.

All clients are built by `common.kafka` with the `[kafka]` settings (SASL/TLS as the gateway).
The feeder stores the next offset of every partition in the view's own transaction, so a restart
resumes exactly where the view is (a fresh state directory re-reads from the beginning); it also
commits them to its consumer group so operators see its lag with the usual tools.
Raises: PublishFailed from `Publisher.send`; the threads log errors and retry, never die.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
from collections.abc import Mapping
from typing import Any

from common import kafka
from common.backoff import Backoff
from gateway.records import OutRecord

from . import audit, view
from .db import Database
from .errors import PublishFailed

log = logging.getLogger("backoffice.review")


class Publisher:
    """One idempotent producer (acks=all), rebuilt after a failure (kafka-python may leave futures
    hanging after a broker restart)."""

    def __init__(self, settings: kafka.KafkaSettings, timeout_s: float = 15.0) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._producer: Any = None
        self._lock = threading.Lock()

    def send(self, records: list[OutRecord]) -> None:
        """Produce `records` in order and wait for every acknowledgement. Raises PublishFailed."""
        with self._lock:
            try:
                if self._producer is None:
                    self._producer = kafka.producer(self.settings, acks="all",
                                                    enable_idempotence=True, max_block_ms=5000)
                futures = [self._producer.send(r.topic, key=r.key, value=r.value,
                                               headers=list(r.headers)) for r in records]
                for f in futures:
                    f.get(timeout=self.timeout_s)
            except Exception as exc:
                self._drop()
                raise PublishFailed(f"Kafka did not acknowledge the records ({exc}); nothing was "
                                    "decided, try again") from exc

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._producer is not None:
            kafka.close_quietly(self._producer, timeout=5)
            self._producer = None


class _Loop(threading.Thread):
    """A named daemon thread running `step` until stopped; errors are logged and backed off."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._halt = threading.Event()
        self.failures = 0

    def run(self) -> None:
        backoff = Backoff(0.5, 15.0)
        while not self._halt.is_set():
            try:
                self.step()
                backoff.reset()
            except Exception as exc:
                self.failures += 1
                log.warning("%s: %s (retrying)", self.name, exc)
                self.on_error()
                self._halt.wait(backoff.next())
        self.on_error()

    def stop(self, timeout: float = 10.0) -> None:
        self._halt.set()
        self.join(timeout)

    def step(self) -> None:
        raise NotImplementedError

    def on_error(self) -> None:
        """Drop clients so the next step rebuilds them."""


class Feeder(_Loop):
    """Consumes the alerts, violations and evidence topics into the view."""

    def __init__(self, db: Database, settings: kafka.KafkaSettings,
                 topics: Mapping[str, str], group_id: str) -> None:
        super().__init__("review-feeder")
        self.db = db
        self.settings = settings
        self.kinds = {topic: kind for kind, topic in topics.items()}
        self.group_id = group_id
        self._consumer: Any = None
        self.applied = 0
        self.skipped = 0

    def step(self) -> None:
        if self._consumer is None:
            self._consumer = kafka.consumer(self.settings, group_id=self.group_id,
                                            enable_auto_commit=False,
                                            auto_offset_reset="earliest")
            self._assigned: set[Any] = set()
            self._next_refresh = 0
        self._refresh_assignment()
        batches = self._consumer.poll(timeout_ms=500, max_records=1000)
        if batches:
            self._apply(batches)
            self._consumer.commit()

    def _refresh_assignment(self) -> None:
        """Assign every partition of the three topics (they may appear after we start)."""
        self._next_refresh -= 1
        if self._next_refresh > 0:
            return
        self._next_refresh = 20  # polls of 0.5 s: new topics/partitions are seen within ~10 s
        tp_cls = kafka.import_kafka().TopicPartition
        self._consumer.topics()  # refreshes metadata
        wanted = {tp_cls(t, p) for t in self.kinds
                  for p in (self._consumer.partitions_for_topic(t) or ())}
        if wanted == self._assigned:
            return
        self._consumer.assign(list(wanted))
        with self.db.connect() as conn:
            stored = {(r["topic"], r["partition"]): r["next_offset"]
                      for r in conn.execute("SELECT * FROM offsets")}
        for tp in wanted:  # assign() forgets every position: the view's offsets rule
            if (tp.topic, tp.partition) in stored:
                self._consumer.seek(tp, stored[(tp.topic, tp.partition)])
            else:
                self._consumer.seek_to_beginning(tp)
        self._assigned = wanted

    def _apply(self, batches: Mapping[Any, list[Any]]) -> None:
        with self.db.connect() as conn:
            for tp, records in batches.items():
                kind = self.kinds[tp.topic]
                for r in records:
                    self._apply_one(conn, kind, r)
                conn.execute("INSERT OR REPLACE INTO offsets(topic, partition, next_offset) "
                             "VALUES (?,?,?)", (tp.topic, tp.partition, records[-1].offset + 1))

    def _apply_one(self, conn: sqlite3.Connection, kind: str, r: Any) -> None:
        try:
            value = json.loads(r.value)
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
            view.apply(conn, kind, value)
            self.applied += 1
        except ValueError as exc:  # json.JSONDecodeError is one; a bad record is skipped, logged
            self.skipped += 1
            log.warning("skipped %s record %s/%d@%d: %s", kind, r.topic, r.partition, r.offset,
                        exc)

    def on_error(self) -> None:
        if self._consumer is not None:
            kafka.close_quietly(self._consumer)
            self._consumer = None


class AuditForwarder(_Loop):
    """Produces the audit outbox to the audit topic, oldest first, and marks what Kafka acked.
    With `create` = (partitions, replication), it first creates the topic if it is missing
    (kafka.create_topics, as the gateway does for its own topics)."""

    def __init__(self, db: Database, publisher: Publisher, topic: str,
                 create: tuple[int, int] | None = None) -> None:
        super().__init__("review-audit")
        self.db = db
        self.publisher = publisher
        self.topic = topic
        self.create = create
        self.wake = threading.Event()
        self.sent = 0

    def step(self) -> None:
        if self.create is not None:
            self._create_topic(*self.create)
            self.create = None
        self.wake.wait(1.0)
        self.wake.clear()
        with self.db.connect() as conn:
            rows = audit.unsent(conn)
        if not rows:
            return
        self.publisher.send([audit.out_record(raw, self.topic) for _, raw in rows])
        with self.db.connect() as conn:
            audit.mark_sent(conn, [i for i, _ in rows])
        self.sent += len(rows)

    def stop(self, timeout: float = 10.0) -> None:
        self._halt.set()
        self.wake.set()
        self.join(timeout)

    def _create_topic(self, partitions: int, replication: int) -> None:
        lib = kafka.import_kafka()
        admin = kafka.admin(self.publisher.settings)
        try:
            if self.topic not in set(admin.list_topics()):
                with contextlib.suppress(lib.errors.TopicAlreadyExistsError):
                    admin.create_topics([lib.admin.NewTopic(self.topic, partitions, replication)])
                log.info("created the audit topic %s", self.topic)
        finally:
            kafka.close_quietly(admin)
