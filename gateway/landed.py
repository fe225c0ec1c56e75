"""Did an ambiguous produce attempt land? Kafka is read back before a record is sent again
(docs/gateway.md, "Duplicates").

Why: a produce attempt that failed without a verdict (its delivery timed out while Kafka was
stopped, the request expired, the producer wedged and was rebuilt) may have been written: the
broker got it and the answer was lost or late. The idempotent producer dedupes only its own
retries within one session, so sending the record again as a new produce would write a second
copy. `retrying.RetryingProducer` hands such records here (through `Sink.landed`) first, many at
once: one read per topic, not one per record.

What is read, per topic of the wanted records: every partition from the first offset whose
timestamp is at or after the earliest attempt's wall time minus `MARGIN_MS` (clock steps,
broker-side timestamps) up to the end offsets taken when Kafka answers, at most the newest
`max_records` per partition. A record read matches when its key, value and headers are the
wanted record's, byte for byte: what the gateway writes is unique (message records carry the
`message-id` header and the receive time, evidence records the evidence id and stored time in the
value, dead letters the payload and time), so only a copy of that very record matches, whatever
its type; each copy read accounts for one wanted record. Nothing read is kept.

Counts (`counts`, exported by `LandedCollector`): `found` (not sent again), `absent` (sent
again), `unproven` (sent again without a full read: the range held more than `max_records`, or
this gateway may not read the topic), `checks` and `failed` reads.

Raises: SinkError (retriable) from `LandedReader.find` when Kafka cannot be read now:
unreachable, no partitions known for a topic, or the end offsets not reached within
`timeout_s`. The caller checks again later.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from common import kafka

from .config import KafkaConfig
from .errors import SinkError
from .kafka_python import client_options
from .records import OutRecord

log = logging.getLogger("gateway.kafka.landed")
MARGIN_MS = 60_000
_POLL_MS = 200
# value -> [(index, key, headers)] of the records still wanted, per topic
_Index = dict[bytes, list[tuple[int, bytes | None, tuple[tuple[str, bytes], ...]]]]


class LandedReader:
    """Finds records in Kafka (see the module docstring). `find` is called by one thread."""

    def __init__(self, cfg: KafkaConfig, client_id: str, *, max_records: int = 100_000,
                 timeout_s: float = 30.0) -> None:
        self._cfg, self._client_id = cfg, client_id
        self._max_records, self._timeout_s = max_records, timeout_s
        self._lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()

    def find(self, wanted: Sequence[tuple[OutRecord, int]]) -> set[int] | None:
        """Indexes of `wanted` ((record, since_ms)) that Kafka has; None if it may not be read
        (authorization). Raises SinkError (retriable) when Kafka cannot be read now."""
        started = time.monotonic()
        errors = kafka.import_kafka().errors
        try:
            consumer = kafka.consumer(
                kafka.KafkaSettings.of(self._cfg), **client_options(self._cfg),
                client_id=f"{self._client_id}-landed", group_id=None,
                enable_auto_commit=False, max_partition_fetch_bytes=4 << 20)
        except errors.KafkaError as exc:
            self._count(failed=1)
            raise SinkError(f"kafka unreachable: {exc}", retriable=True) from exc
        try:
            found, truncated = self._read(consumer, wanted, started)
        except errors.AuthorizationError as exc:
            log.error("cannot read back %d record(s) whose produce may have succeeded: %s; "
                      "sending them again (grant this gateway Read on its topics)",
                      len(wanted), exc)
            self._count(checks=1, unproven=len(wanted))
            return None
        except errors.KafkaError as exc:
            self._count(failed=1)
            raise SinkError(f"reading back failed: {exc}", retriable=True) from exc
        finally:
            kafka.close_quietly(consumer, 5)
        unproven = sum(1 for n, (r, _) in enumerate(wanted)
                       if n not in found and r.topic in truncated)
        self._count(checks=1, found=len(found), unproven=unproven,
                    absent=len(wanted) - len(found) - unproven)
        return found

    def _read(self, consumer: Any, wanted: Sequence[tuple[OutRecord, int]],
              started: float) -> tuple[set[int], set[str]]:
        """(found indexes, topics whose read was cut at `max_records` somewhere)."""
        index: dict[str, _Index] = {}
        since: dict[str, int] = {}
        for n, (record, since_ms) in enumerate(wanted):
            index.setdefault(record.topic, {}).setdefault(record.value, []).append(
                (n, record.key, record.headers))
            since[record.topic] = min(since.get(record.topic, since_ms), since_ms)
        tps, start, end, truncated = self._ranges(consumer, since)
        todo = {tp for tp in tps if start[tp] < end[tp]}
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start[tp])
        found: set[int] = set()
        deadline = started + self._timeout_s
        while todo and len(found) < len(wanted):
            if time.monotonic() > deadline:
                raise kafka.import_kafka().errors.KafkaTimeoutError(
                    f"{len(todo)} partition(s) not read within {self._timeout_s:g} s")
            for tp, records in consumer.poll(timeout_ms=_POLL_MS).items():
                _match(index[tp.topic], (r for r in records if r.offset < end[tp]), found)
            todo = {tp for tp in todo if consumer.position(tp) < end[tp]}
        return found, truncated

    def _ranges(self, consumer: Any, since: dict[str, int]
                ) -> tuple[list[Any], dict[Any, int], dict[Any, int], set[str]]:
        tp_class = kafka.import_kafka().TopicPartition
        tps = []
        for topic in since:
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                raise kafka.import_kafka().errors.KafkaError(
                    f"no partitions known for topic {topic!r}")
            tps += [tp_class(topic, p) for p in sorted(parts)]
        end = consumer.end_offsets(tps)
        begin = consumer.beginning_offsets(tps)
        by_time = consumer.offsets_for_times({tp: max(0, since[tp.topic] - MARGIN_MS)
                                              for tp in tps})
        start, truncated = {}, set()
        for tp in tps:
            found = by_time.get(tp)
            first = max(begin[tp], found.offset if found is not None else end[tp])
            start[tp] = max(first, end[tp] - self._max_records)
            if start[tp] > first:
                truncated.add(tp.topic)
        return tps, start, end, truncated

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def _count(self, **counts: int) -> None:
        with self._lock:
            self.counts.update(counts)


def _match(index: _Index, records: Iterator[Any], found: set[int]) -> None:
    for r in records:
        candidates = index.get(r.value)
        if not candidates:
            continue
        headers = tuple(tuple(h) for h in r.headers or ())
        for i, (n, key, wanted_headers) in enumerate(candidates):
            if key == r.key and wanted_headers == headers:
                found.add(n)
                del candidates[i]  # one copy read accounts for one wanted record
                break


class LandedCollector(Collector):
    """Exports a `LandedReader`'s counts (docs/gateway.md, Operations)."""

    def __init__(self, reader: LandedReader) -> None:
        self._reader = reader

    def collect(self) -> Iterator[CounterMetricFamily]:
        counts = self._reader.snapshot()
        p = "presacop_gateway_"
        records = CounterMetricFamily(
            p + "ambiguous_records", "Records whose failed produce may have been written, by "
            "what reading Kafka back found", labels=["outcome"])
        for outcome in ("found", "absent", "unproven"):
            records.add_metric([outcome], counts.get(outcome, 0))
        yield records
        checks = CounterMetricFamily(p + "ambiguous_checks", "Reads of Kafka for them",
                                     labels=["result"])
        checks.add_metric(["ok"], counts.get("checks", 0))
        checks.add_metric(["failed"], counts.get("failed", 0))
        yield checks
