"""The Kafka side: an idempotent producer that keeps retrying until each record is acknowledged.

Two producer libraries (`kafka.backend`), same guarantees (acks=all, idempotence, every record
reported exactly once, retried forever): kafka-python (the default; its own I/O thread completes
futures and runs our callbacks) and confluent-kafka (librdkafka, in C; its delivery reports run
our callbacks inside `producer.poll`, which only the `gateway-kafka` thread calls). Topic creation
and the health probe use kafka-python's admin client with either.

One owned thread, `gateway-kafka`, makes the producer (retrying while Kafka is unreachable),
creates the topics if asked, and calls `producer.send` for submitted records and for retries that
are due. kafka-python's own I/O thread completes the futures; their callbacks only report or
re-queue. A second thread, `gateway-kafka-health`, probes the cluster with an admin request every
`health_interval_s` so `up` also moves when nothing is being produced.

A record submitted here ends in exactly one of two ways, reported through its callback:
  - `None`: Kafka acknowledged it (acks=all, idempotent producer);
  - a `RecordRejected`: Kafka refuses this record for good (too large, bad timestamp...).
Everything else (broker down, timeouts, leader moves) is retried with jittered backoff forever,
so memory is bounded only by what the caller submits (the MQTT Receive Maximum).

Errors: `RecordRejected` (passed to callbacks, never raised).
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import itertools
import logging
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .backoff import Backoff
from .config import KafkaConfig
from .records import OutRecord

log = logging.getLogger("gateway.kafka")

Callback = Callable[["RecordRejected | None"], None]


_KafkaTimeoutError: type[Exception] = Exception  # kafka.errors.KafkaTimeoutError, once imported


def _import_kafka() -> None:
    """Import kafka-python once, quietly: 3.0 warns (DeprecationWarning) about its own use of
    importlib.resources at import time, which test runs treat as errors. Names used per record
    are bound here, not imported in the hot path (an import statement costs about 1 us)."""
    global _KafkaTimeoutError
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import kafka.admin  # noqa: F401
        from kafka.errors import KafkaTimeoutError
    _KafkaTimeoutError = KafkaTimeoutError


class RecordRejected(Exception):
    """Kafka will never accept this record (not a transient failure)."""


@dataclass(order=True)
class _Item:
    due: float
    order: int
    record: OutRecord = field(compare=False)
    callback: Callback = field(compare=False)
    attempts: int = field(default=0, compare=False)
    token: int = field(default=0, compare=False)  # which send attempt a callback belongs to
    sent_at: float = field(default=0.0, compare=False)


class KafkaSink:
    """Produces records until acknowledged. `submit` is thread-safe and never blocks."""

    def __init__(self, cfg: KafkaConfig, client_id: str, *, retry_min_s: float = 0.2,
                 retry_max_s: float = 10.0, on_state: Callable[[bool], None] | None = None,
                 on_retry: Callable[[], None] | None = None) -> None:
        _import_kafka()
        self._cfg = cfg
        self._client_id = client_id
        self._retry_min_s = retry_min_s
        self._retry_max_s = retry_max_s
        self._on_state = on_state or (lambda up: None)
        self._on_retry = on_retry or (lambda: None)
        self._cond = threading.Condition()
        self._heap: list[_Item] = []  # retries, by due time
        # New records, oldest first: a deque, not the heap (a heap push/pop compares dataclasses
        # in Python: several microseconds per record on the hot path).
        self._fresh: collections.deque[_Item] = collections.deque()
        self._order = itertools.count()
        self._outstanding = 0  # submitted and not yet reported through a callback
        self._in_producer: dict[int, _Item] = {}  # send token -> item handed to the producer
        self._tokens = itertools.count(1)
        self._last_retry_log = 0.0
        self._next_stall_check = 0.0
        self._waiting = False  # the sender thread sleeps in _take_due
        self._confluent = cfg.backend == "confluent"
        self._rebuild = False  # confluent: a fatal producer error; rebuild from the sender loop
        p = cfg.producer
        self._stall_s = 2 * (p.delivery_timeout_ms + p.max_block_ms) / 1000 + 5
        self._stopping = False
        self._up = False
        self._producer: Any = None
        self._thread = threading.Thread(target=self._run, name="gateway-kafka", daemon=True)
        self._health = threading.Thread(target=self._probe_loop, name="gateway-kafka-health",
                                        daemon=True)
        self._topics_ready = threading.Event()
        self._stop_event = threading.Event()

    # -- public API -------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return self._up

    @property
    def outstanding(self) -> int:
        """Records submitted and not yet reported."""
        return self._outstanding

    @property
    def alive(self) -> bool:
        """Both owned threads are running."""
        return self._thread.is_alive() and self._health.is_alive()

    @property
    def waiting(self) -> int:
        """Records waiting to be (re)sent: not handed to the producer yet."""
        return len(self._heap) + len(self._fresh)

    def start(self) -> None:
        self._thread.start()
        self._health.start()

    def submit(self, record: OutRecord, callback: Callback) -> None:
        """Produce `record`; `callback` runs once, on another thread, with the outcome."""
        self.submit_many([(record, callback)])

    def submit_many(self, batch: list[tuple[OutRecord, Callback]]) -> None:
        """`submit` each (record, callback) in order, with one lock and at most one wake-up."""
        with self._cond:
            self._outstanding += len(batch)
            self._fresh.extend([_Item(0.0, 0, record, callback) for record, callback in batch])
            if self._waiting:  # wake the sender only when it sleeps: a notify per record is costly
                self._cond.notify()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every submitted record has been reported. True if it happened in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._outstanding:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Stop producing (outstanding records are abandoned: their callbacks never run)."""
        with self._cond:
            self._stopping = True
            self._stop_event.set()
            self._cond.notify_all()
        self._thread.join(timeout)
        self._health.join(timeout)
        producer, self._producer = self._producer, None
        if producer is not None:
            _close_quietly(producer, timeout)

    # -- the producing thread --------------------------------------------------------------

    def _run(self) -> None:
        backoff = Backoff(self._retry_min_s, self._retry_max_s)
        while not self._stopping:
            try:
                self._run_once(backoff)
            except Exception:  # keep producing whatever kafka-python throws at us
                log.exception("kafka sender loop failed; rebuilding the producer")
                self._drop_producer()
                self._sleep(backoff.next())

    def _run_once(self, backoff: Backoff) -> None:
        if self._producer is None:
            if not self._connect():
                self._sleep(backoff.next())
                return
            backoff.reset()
        if self._check_stalled():
            return
        if self._confluent:
            self._poll_confluent()
            if self._rebuild:
                self._rebuild = False
                log.error("kafka producer failed fatally; rebuilding it")
                self._drop_producer()
                return
        due = self._take_due()
        if not self._confluent:
            self._send_all(due)
            return
        for item in due:
            if self._producer is None:  # dropped mid-batch: the rest waits for a new one
                self._retry(item, RuntimeError("producer rebuilt"))
            else:
                self._send_confluent(item)

    def _poll_confluent(self) -> None:
        """Serve librdkafka's delivery reports (our callbacks run here, on this thread). With
        records in the producer and none to send, wait in poll (in C, without the GIL) rather
        than on our condition: a report or 2 ms, whichever comes first."""
        with self._cond:
            idle = bool(self._in_producer) and not self._fresh and \
                not (self._heap and self._heap[0].due <= time.monotonic())
        self._producer.poll(0.002 if idle else 0)

    def _check_stalled(self) -> bool:
        """Never trust a future to resolve: a record whose send has had no outcome long after
        `delivery_timeout_ms` means a wedged producer (seen with kafka-python 3.0 after a broker
        restart). Rebuild the producer and send those records again; late callbacks of the old
        attempts are ignored (their token is stale), so each record still ends exactly once."""
        now = time.monotonic()
        if now < self._next_stall_check:
            return False
        self._next_stall_check = now + 1.0  # a scan is O(records in the producer)
        with self._cond:
            stalled = [i for i in self._in_producer.values() if now - i.sent_at > self._stall_s]
            if not stalled:
                return False
            items = list(self._in_producer.values())
            self._in_producer.clear()
            for item in items:
                item.token = 0
                item.due = now
                heapq.heappush(self._heap, item)
        log.error("kafka producer wedged: no outcome for %d record(s) after %.0f s; rebuilding it",
                  len(stalled), self._stall_s, extra={"requeued": len(items)})
        self._drop_producer()
        return True

    def _connect(self) -> bool:
        from kafka.errors import KafkaError

        try:
            if self._cfg.create_topics and not self._topics_ready.is_set():
                self._create_topics()
            self._producer = self._make_producer()
        except (KafkaError, OSError) as exc:
            log.warning("kafka not reachable: %s", exc,
                        extra={"bootstrap": self._cfg.bootstrap_servers})
            self._set_up(False)
            return False
        self._topics_ready.set()
        self._set_up(True)
        log.info("kafka producer ready", extra={"bootstrap": self._cfg.bootstrap_servers})
        return True

    def _take_due(self, limit: int = 500) -> list[_Item]:
        """The records due now (oldest first), or [] after a short wait (so `_run` can check
        for stalls)."""
        with self._cond:
            now = time.monotonic()
            if self._confluent and self._in_producer:
                pass  # reports are due: do not sleep here, `_poll_confluent` waits instead
            elif not self._fresh and (not self._heap or self._heap[0].due > now):
                wait = self._heap[0].due - now if self._heap else 0.5
                self._waiting = True
                self._cond.wait(min(wait, 0.5))
                self._waiting = False
                now = time.monotonic()
            due: list[_Item] = []
            while self._heap and self._heap[0].due <= now and len(due) < limit \
                    and not self._stopping:
                due.append(heapq.heappop(self._heap))
            fresh = self._fresh
            while fresh and len(due) < limit and not self._stopping:
                due.append(fresh.popleft())
        return due

    def _send_all(self, items: list[_Item]) -> None:
        """kafka-python: send each item, then register the attempts under one lock (not one per
        record) before attaching their callbacks, so a callback always finds its attempt."""
        sent: list[tuple[_Item, Any]] = []
        for item in items:
            if self._producer is None:  # dropped mid-batch: the rest waits for a new one
                self._retry(item, RuntimeError("producer rebuilt"))
                continue
            future = self._send(item)
            if future is not None:
                sent.append((item, future))
        if not sent:
            return
        now = time.monotonic()
        with self._cond:
            for item, _ in sent:
                token = item.token = next(self._tokens)
                item.sent_at = now
                self._in_producer[token] = item
        for item, future in sent:
            token = item.token
            future.add_callback(lambda _meta, item=item, token=token: self._acked(item, token))
            future.add_errback(lambda exc, item=item, token=token: self._failed(item, token, exc))

    def _send(self, item: _Item) -> Any:
        """Hand one record to kafka-python: its future, or None when the outcome is already
        dealt with (retry or rejection)."""
        r = item.record
        try:
            return self._producer.send(r.topic, value=r.value, key=r.key,
                                       headers=list(r.headers))
        except _KafkaTimeoutError as exc:  # no metadata / no buffer space within max_block_ms
            self._retry(item, exc)
        except (ValueError, TypeError) as exc:
            self._report(item, RecordRejected(f"{type(exc).__name__}: {exc}"))
        except Exception as exc:  # a producer in a bad state: rebuild it
            log.warning("kafka producer failed, rebuilding it: %s", exc)
            self._retry(item, exc)
            self._drop_producer()
        return None

    def _send_confluent(self, item: _Item) -> None:
        from confluent_kafka import KafkaException

        r = item.record
        with self._cond:
            token = item.token = next(self._tokens)
            item.sent_at = time.monotonic()
            self._in_producer[token] = item
        try:
            self._producer.produce(
                r.topic, value=r.value, key=r.key, headers=list(r.headers),
                on_delivery=lambda err, _msg: self._delivered(item, token, err))
            return
        except BufferError as exc:  # librdkafka's queue is full: serve reports, send again
            failure: BaseException = exc
            self._producer.poll(0.05)
        except KafkaException as exc:
            failure = exc
        except (ValueError, TypeError) as exc:
            if self._settle(item, token):
                self._report(item, RecordRejected(f"{type(exc).__name__}: {exc}"))
            return
        if not self._settle(item, token):
            return
        if _permanent(failure):
            self._report(item, RecordRejected(f"{type(failure).__name__}: {failure}"))
        else:
            self._retry(item, failure)

    def _delivered(self, item: _Item, token: int, err: Any) -> None:
        """confluent-kafka's delivery report (runs inside `poll`, on the sender thread)."""
        if err is None:
            self._acked(item, token)
            return
        from confluent_kafka import KafkaException

        if err.fatal():  # e.g. the idempotent producer's state is lost: needs a new producer
            self._rebuild = True
        self._failed(item, token, KafkaException(err))

    def _settle(self, item: _Item, token: int) -> bool:
        """Claim the outcome of send attempt `token`; False if that attempt was abandoned."""
        with self._cond:
            return self._in_producer.pop(token, None) is item

    def _acked(self, item: _Item, token: int) -> None:
        if self._settle(item, token):
            if not self._up:  # not per record: the state callback sets a gauge
                self._set_up(True)
            self._report(item, None)

    def _failed(self, item: _Item, token: int, exc: BaseException) -> None:
        if not self._settle(item, token):
            return
        if _permanent(exc):
            self._report(item, RecordRejected(f"{type(exc).__name__}: {exc}"))
            return
        self._set_up(False)
        self._retry(item, exc)

    def _retry(self, item: _Item, exc: BaseException) -> None:
        item.attempts += 1
        delay = Backoff.delay(self._retry_min_s, self._retry_max_s, item.attempts)
        now = time.monotonic()
        if now - self._last_retry_log >= 5.0:  # one line per 5 s, not one per record
            self._last_retry_log = now
            log.warning("produce failed, retrying: %s", exc,
                        extra={"topic": item.record.topic, "attempts": item.attempts,
                               "outstanding": self._outstanding})
        self._on_retry()
        with self._cond:
            item.due = time.monotonic() + delay
            item.order = next(self._order)
            heapq.heappush(self._heap, item)
            self._cond.notify()

    def _report(self, item: _Item, outcome: RecordRejected | None) -> None:
        try:
            item.callback(outcome)
        except Exception:  # a callback bug must not kill kafka-python's I/O thread
            log.exception("record callback failed")
        with self._cond:
            self._outstanding -= 1
            if not self._outstanding:  # only `wait_idle` waits for this: no wake-up per record
                self._cond.notify_all()

    def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            _close_quietly(producer, 1.0)

    def _sleep(self, seconds: float) -> None:
        self._stop_event.wait(seconds)

    def _set_up(self, up: bool) -> None:
        if up != self._up:
            self._up = up
            log.info("kafka %s", "up" if up else "down")
        self._on_state(up)

    # -- Kafka construction ----------------------------------------------------------------

    def _common(self) -> dict[str, Any]:
        c = self._cfg
        opts: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in c.bootstrap_servers.split(",") if s.strip()],
            "security_protocol": c.security_protocol,
            "request_timeout_ms": c.producer.request_timeout_ms,
            "reconnect_backoff_max_ms": 2000,
            "bootstrap_timeout_ms": 5000,
        }
        if c.sasl_mechanism:
            opts.update(sasl_mechanism=c.sasl_mechanism, sasl_plain_username=c.sasl_username,
                        sasl_plain_password=c.sasl_password)
        for key, value in (("ssl_cafile", c.ssl_ca_file), ("ssl_certfile", c.ssl_cert_file),
                           ("ssl_keyfile", c.ssl_key_file)):
            if value:
                opts[key] = value
        return opts

    def _make_producer(self) -> Any:
        if self._confluent:
            return self._make_confluent()
        from kafka import KafkaProducer

        p = self._cfg.producer
        return KafkaProducer(
            **self._common(),
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=p.linger_ms,
            batch_size=p.batch_size,
            compression_type=None if p.compression_type == "none" else p.compression_type,
            delivery_timeout_ms=p.delivery_timeout_ms,
            max_in_flight_requests_per_connection=p.max_in_flight,
            max_block_ms=p.max_block_ms,
            partitioner=_KeyHashCache.make(),
        )

    def _make_confluent(self) -> Any:
        """A confluent-kafka producer with the same settings. librdkafka connects lazily, so
        this does not prove Kafka reachable (the health probe and delivery reports do)."""
        from confluent_kafka import Producer

        c, p = self._cfg, self._cfg.producer
        conf: dict[str, Any] = {
            "bootstrap.servers": c.bootstrap_servers,
            "security.protocol": c.security_protocol,
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
        }
        if c.sasl_mechanism:
            conf.update({"sasl.mechanism": c.sasl_mechanism, "sasl.username": c.sasl_username,
                         "sasl.password": c.sasl_password})
        for key, value in (("ssl.ca.location", c.ssl_ca_file),
                           ("ssl.certificate.location", c.ssl_cert_file),
                           ("ssl.key.location", c.ssl_key_file)):
            if value:
                conf[key] = value
        return Producer(conf)

    def _admin(self) -> Any:
        from kafka.admin import KafkaAdminClient

        # kafka-python 3.0 starts the admin client's I/O thread before bootstrapping and leaves
        # it running when bootstrap fails in __init__ (one leaked thread per failed attempt,
        # i.e. every few seconds while Kafka is down): keep a reference so we can stop it.
        admin = KafkaAdminClient.__new__(KafkaAdminClient)
        try:
            admin.__init__(**self._common(), client_id=f"{self._client_id}-admin")
        except Exception:
            for part in ("_client", "_net"):
                obj = getattr(admin, part, None)
                if obj is not None:
                    with contextlib.suppress(Exception):
                        obj.close() if part == "_client" else obj.stop()
            raise
        return admin

    def _create_topics(self) -> None:
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        admin = self._admin()
        try:
            existing = set(admin.list_topics())
            wanted = [t for t in self._cfg.topics.all() if t not in existing]
            if wanted:
                new = [NewTopic(t, self._cfg.partitions, self._cfg.replication_factor)
                       for t in wanted]
                with contextlib.suppress(TopicAlreadyExistsError):  # another gateway was first
                    admin.create_topics(new)
                log.info("created kafka topics", extra={"topics": wanted})
        finally:
            admin.close()

    # -- the health probe -------------------------------------------------------------------

    def _probe_loop(self) -> None:
        admin = None
        while not self._stopping:
            try:
                if admin is None:
                    admin = self._admin()
                admin.describe_cluster()
                self._set_up(True)
            except Exception as exc:
                log.debug("kafka probe failed: %s", exc)
                self._set_up(False)
                if admin is not None:
                    _close_quietly(admin)
                    admin = None
            self._sleep(self._cfg.health_interval_s)
        if admin is not None:
            _close_quietly(admin)


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


def _close_quietly(client: Any, timeout: float | None = None) -> None:
    """Close a Kafka client; closing one that lost its broker may raise (timeouts).

    A confluent-kafka producer has no close: its queued records are purged, and their reports
    (errors, so retries, unless their attempt was already abandoned) are served by one flush."""
    try:
        if type(client).__module__.startswith("confluent_kafka"):
            client.purge()
            client.flush(0 if timeout is None else min(timeout, 1.0))
        elif timeout is None:
            client.close()
        else:
            client.close(timeout=timeout)
    except Exception:
        log.debug("closing a kafka client", exc_info=True)


def _permanent(exc: BaseException) -> bool:
    """Errors that no retry can fix, because the record itself is unacceptable."""
    from kafka import errors

    if type(exc).__module__.startswith("confluent_kafka"):
        from confluent_kafka import KafkaError

        err = exc.args[0] if exc.args else None
        code = err.code() if isinstance(err, KafkaError) else None
        return code in (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE,
                        KafkaError.INVALID_TIMESTAMP, KafkaError.INVALID_RECORD,
                        KafkaError.INVALID_MSG)
    return isinstance(exc, (errors.MessageSizeTooLargeError, errors.RecordListTooLargeError,
                            errors.InvalidTimestampError, errors.CorruptRecordError))
