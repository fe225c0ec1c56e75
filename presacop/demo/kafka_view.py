"""This run's Kafka topics: created, read from the beginning into a `Tally`, deleted.

Raises: `DemoError` (Kafka unreachable, topics not created or not readable).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from common import kafka
from presacop.demo.errors import DemoError
from presacop.demo.ledger import Tally

TOPIC_PARTITIONS = 3


def _kafka() -> Any:
    """kafka-python, imported quietly; its logs of refused connections stay out of the demo's."""
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # refused connections are our errors
    return kafka.import_kafka()


def _settings(bootstrap: str) -> kafka.KafkaSettings:
    return kafka.KafkaSettings(bootstrap_servers=bootstrap)


def create_topics(bootstrap: str, names: Sequence[str]) -> None:
    """Create this run's topics. Raises DemoError."""
    k = _kafka()
    try:
        admin = kafka.admin(_settings(bootstrap), request_timeout_ms=30000,
                            client_id="presacop-demo")
    except k.errors.KafkaError as exc:
        raise DemoError(f"Kafka {bootstrap} is not reachable: {exc!r}") from exc
    try:
        admin.create_topics([k.admin.NewTopic(n, TOPIC_PARTITIONS, 1) for n in names])
    except k.errors.KafkaError as exc:
        raise DemoError(f"cannot create the demo's Kafka topics {list(names)}: {exc!r}") from exc
    finally:
        admin.close()


def delete_topics(bootstrap: str, names: Sequence[str]) -> str | None:
    """Delete this run's topics; returns a problem to report, or None."""
    k = _kafka()
    try:
        admin = kafka.admin(_settings(bootstrap), request_timeout_ms=15000,
                            client_id="presacop-demo")
        try:
            admin.delete_topics(list(names), timeout_ms=15000)
        finally:
            admin.close()
    except k.errors.KafkaError as exc:
        return f"could not delete the demo's topics {list(names)}: {exc!r}"
    return None


class KafkaWatch:
    """Reads this run's topics from the beginning into a `Tally`, on its own thread.

    The consumer lives on that thread only (kafka-python consumers are not thread-safe); other
    threads read the tally through `read()` and ask for a full read with `catch_up()`.
    """

    def __init__(self, bootstrap: str, topics: Mapping[str, str], drones: frozenset[str]) -> None:
        self.bootstrap = bootstrap
        self.topics = dict(topics)  # role -> topic name
        self.tally = Tally(drones)
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._catch_up = threading.Event()
        self._caught_up = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-kafka-watch", daemon=True)

    def start(self, timeout: float = 60.0) -> KafkaWatch:
        """Raises DemoError if the consumer cannot see the topics in time."""
        self._thread.start()
        if not self._ready.wait(timeout) or self.error is not None:
            self.stop()
            raise DemoError(f"cannot read the demo's topics from Kafka {self.bootstrap}: "
                            f"{self.error or 'timed out'!r}")
        return self

    def read(self, fn: Callable[[Tally], Any]) -> Any:
        """`fn(tally)` under the watcher's lock (a consistent view)."""
        with self._lock:
            return fn(self.tally)

    def check(self) -> None:
        """Raises DemoError if the watcher thread failed."""
        if self.error is not None:
            raise DemoError(f"reading Kafka failed: {self.error!r}")

    def catch_up(self, timeout: float) -> bool:
        """Read up to the topics' current end offsets. True if done in time."""
        self._caught_up.clear()
        self._catch_up.set()
        return self._caught_up.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the reader thread. Raises DemoError if it is still running after `timeout` s."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise DemoError(f"the Kafka reader thread did not stop within {timeout:.0f} s")

    def _run(self) -> None:
        try:
            k = _kafka()
            consumer = kafka.consumer(_settings(self.bootstrap), group_id=None,
                                      enable_auto_commit=False, client_id="presacop-demo")
        except Exception as exc:
            self.error = exc
            self._ready.set()
            return
        try:
            self._assign(consumer, k)
            self._ready.set()
            self._poll(consumer)
        except Exception as exc:  # reported through check() / start()
            self.error = exc
        finally:
            self._ready.set()
            consumer.close()

    def _assign(self, consumer: Any, k: Any) -> None:
        deadline = time.monotonic() + 30.0
        partitions = []
        for name in self.topics.values():
            # Metadata of a topic created a moment ago may take a few refreshes to show up.
            while not (found := consumer.partitions_for_topic(name)):
                if time.monotonic() > deadline or self._stop.is_set():
                    raise DemoError(f"topic {name} does not appear in Kafka's metadata")
                time.sleep(0.2)
            partitions += [k.TopicPartition(name, p) for p in sorted(found)]
        consumer.assign(partitions)
        consumer.seek_to_beginning()

    def _poll(self, consumer: Any) -> None:
        role_of = {name: role for role, name in self.topics.items()}
        ends: dict[Any, int] | None = None
        while not self._stop.is_set():
            batches = consumer.poll(timeout_ms=300)
            with self._lock:
                for tp, records in batches.items():
                    for record in records:
                        self.tally.add(role_of[tp.topic], record.value, record.timestamp)
            if self._catch_up.is_set():
                self._catch_up.clear()
                ends = consumer.end_offsets(list(consumer.assignment()))
            if ends is not None and all(consumer.position(tp) >= end for tp, end in ends.items()):
                ends = None
                self._caught_up.set()
