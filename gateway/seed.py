"""Seeding the dedupe window from the tail of the gateway's own topics, before taking messages
(docs/gateway.md, "Duplicates").

Why: a gateway killed after Kafka acknowledged a record but before its PUBACK reached the broker
gets that message again from its persistent session when it restarts, and its in-memory window
is empty then. Reading back what is already in Kafka before the MQTT connection makes that copy a
DUPLICATE, acknowledged without producing. The same read after a lost MQTT connection (a broker
restart) also learns what the other members of a share group wrote meanwhile.

What is read, per partition of the telemetry and violations topics: the records from
max(end - `max_records`, the first offset at or after now - `horizon_s`) up to the end offset
taken when the read starts; headers only: `message-id` of the records the gateways write (record
types telemetry, status, violation, without a `revision` header: officer corrections reuse the
message id with revision >= 1, and the uniqueness key is (message_id, revision)). Bounded:
at most `max_records` per partition held as (drone, seq) pairs, at most `timeout_s`. The alerts
and evidence topics' tails too, when they exist: the identities of their records
(`gateway.written`), so a half-written violation or upload is not written twice.

With several gateways in one share group (`limits.seed_follow`), `TailFollower` keeps reading
from where the seed stopped: what the other members write reaches this gateway's window within
about a poll, so a drone's re-send of one of their messages (its PUBACK lost to a link cut) that
the broker deals to this gateway is a duplicate too. Its thread logs errors and rebuilds its
consumer; it never stops the gateway.

Raises: SeedError (a GatewayError, retriable) from `TailReader.read`: Kafka unreachable, no
metadata for a topic, or the end offsets not reached within `timeout_s`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from common import kafka

from .config import KafkaConfig
from .errors import GatewayError
from .kafka_python import client_options
from .written import KINDS as WRITTEN_KINDS
from .written import Identity, identity

log = logging.getLogger("gateway.seed")
GATEWAY_RECORD_TYPES = frozenset({b"telemetry", b"status", b"violation"})
WRITTEN_TYPES = frozenset(k.encode() for k in WRITTEN_KINDS)
_POLL_MS = 200


class SeedError(GatewayError):
    """The tail could not be read (Kafka down, metadata missing, too slow): retriable."""

    retriable = True


@dataclass
class Seeded:
    """What the tail held: per drone its seqs (ascending) and the write time of the highest."""

    seqs: dict[str, list[int]] = field(default_factory=dict)
    newest_ms: dict[str, int] = field(default_factory=dict)
    records: int = 0  # records read (all types)
    ids: int = 0  # gateway message ids among them
    partitions: int = 0
    seconds: float = 0.0
    end: dict[tuple[str, int], int] = field(default_factory=dict)  # where the read stopped
    written: set[Identity] = field(default_factory=set)  # alerts, evidence records (written.py)


@dataclass(frozen=True)
class TailReader:
    """Reads the tail of `topics` (see the module docstring). `read()` raises SeedError."""

    cfg: KafkaConfig
    topics: tuple[str, ...]
    client_id: str
    max_records: int = 20_000
    horizon_s: float = 3600.0
    timeout_s: float = 30.0
    optional: tuple[str, ...] = ()  # also read when they exist (alerts, evidence: written.py)

    def read(self) -> Seeded:
        started = time.monotonic()
        errors = kafka.import_kafka().errors
        try:
            consumer = kafka.consumer(
                kafka.KafkaSettings.of(self.cfg), **client_options(self.cfg),
                client_id=f"{self.client_id}-seed", group_id=None, enable_auto_commit=False,
                max_partition_fetch_bytes=4 << 20)
        except errors.KafkaError as exc:
            raise SeedError(f"kafka unreachable for the dedupe seed: {exc}") from exc
        try:
            seeded = self._read(consumer, started)
        except errors.KafkaError as exc:
            raise SeedError(f"reading the topics' tail failed: {exc}") from exc
        finally:
            kafka.close_quietly(consumer, 5)
        seeded.seconds = time.monotonic() - started
        for seqs in seeded.seqs.values():
            seqs.sort()
        return seeded

    def _read(self, consumer: Any, started: float) -> Seeded:
        tp_class = kafka.import_kafka().TopicPartition
        tps = []
        for topic in (*self.topics, *self.optional):
            parts = consumer.partitions_for_topic(topic)
            if not parts and topic in self.topics:
                raise SeedError(f"no partitions known for topic {topic!r}")
            tps += [tp_class(topic, p) for p in sorted(parts or ())]
        end = consumer.end_offsets(tps)
        start = self._starts(consumer, tps, end)
        todo = {tp for tp in tps if start[tp] < end[tp]}
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start[tp])
        seeded = Seeded(partitions=len(tps))
        deadline = started + self.timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise SeedError(f"the tail of {len(todo)} partition(s) was not read within "
                                f"{self.timeout_s:g} s")
            for tp, records in consumer.poll(timeout_ms=_POLL_MS).items():
                _take(seeded, (r for r in records if r.offset < end[tp]))
            todo = {tp for tp in todo if consumer.position(tp) < end[tp]}
        seeded.end = {(tp.topic, tp.partition): end[tp] for tp in tps}
        return seeded

    def _starts(self, consumer: Any, tps: list[Any], end: dict[Any, int]) -> dict[Any, int]:
        begin = consumer.beginning_offsets(tps)
        since_ms = int((time.time() - self.horizon_s) * 1000)
        by_time = consumer.offsets_for_times({tp: since_ms for tp in tps})
        out = {}
        for tp in tps:
            found = by_time.get(tp)
            first_recent = found.offset if found is not None else end[tp]
            out[tp] = max(begin[tp], end[tp] - self.max_records, first_recent)
        return out


def _take(seeded: Seeded, records: Iterable[Any]) -> None:
    for r in records:
        seeded.records += 1
        headers = dict(r.headers or ())
        kind = headers.get("record-type")
        if kind in WRITTEN_TYPES:  # few (an alert per ~100 violations, an image each): parsed
            ident = identity(kind.decode(), r.key, r.value)
            if ident is not None:
                seeded.written.add(ident)
            continue
        if headers.get("record-type") not in GATEWAY_RECORD_TYPES or "revision" in headers:
            continue
        mid = headers.get("message-id")
        if mid is None:
            continue
        drone, _, seq_text = mid.decode("utf-8", "replace").rpartition(":")
        try:
            seq = int(seq_text)
        except ValueError:
            continue
        seeded.ids += 1
        seeded.seqs.setdefault(drone, []).append(seq)
        # The replay bound's time of the drone's highest seq: its latest write is close enough.
        seeded.newest_ms[drone] = max(seeded.newest_ms.get(drone, 0), r.timestamp)


class TailFollower:
    """Reads the topics on from the seed's end offsets on thread `gateway-seed-follow` and
    hands each poll's ids to `apply` (see the module docstring). `start` once, `stop` joins."""

    def __init__(self, cfg: KafkaConfig, topics: tuple[str, ...], client_id: str) -> None:
        self._cfg, self._topics, self._client_id = cfg, topics, client_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._offsets: dict[tuple[str, int], int] = {}
        self.followed = 0  # ids handed over so far

    def start(self, apply: Callable[[Seeded], None], offsets: dict[tuple[str, int], int]) -> None:
        self._offsets = dict(offsets)
        self._thread = threading.Thread(target=self._run, args=(apply,),
                                         name="gateway-seed-follow", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, apply: Callable[[Seeded], None]) -> None:
        delay = 1.0
        while not self._stop.is_set():
            consumer = None
            try:
                consumer = kafka.consumer(
                    kafka.KafkaSettings.of(self._cfg), **client_options(self._cfg),
                    client_id=f"{self._client_id}-follow", group_id=None,
                    enable_auto_commit=False, fetch_max_wait_ms=100)
                self._follow(consumer, apply)
            except Exception as exc:  # Kafka away, or a surprise: log, rebuild, go on
                log.warning("dedupe follower: %s; rebuilding in %.0f s", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
            finally:
                if consumer is not None:
                    kafka.close_quietly(consumer, 5)

    def _follow(self, consumer: Any, apply: Callable[[Seeded], None]) -> None:
        tp_class = kafka.import_kafka().TopicPartition
        tps = [tp_class(t, p) for t in self._topics
               for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(tps)
        for tp in tps:
            at = self._offsets.get((tp.topic, tp.partition))
            if at is None:
                consumer.seek_to_end(tp)
            else:
                consumer.seek(tp, at)
        while not self._stop.is_set():
            batch = consumer.poll(timeout_ms=_POLL_MS)
            if not batch:
                continue
            seeded = Seeded(partitions=len(batch))
            for tp, records in batch.items():
                _take(seeded, records)
                self._offsets[(tp.topic, tp.partition)] = records[-1].offset + 1
            for seqs in seeded.seqs.values():
                seqs.sort()
            apply(seeded)
            self.followed += seeded.ids
