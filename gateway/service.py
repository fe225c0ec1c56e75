"""The gateway service: MQTT deliveries in, Kafka records out, each MQTT ack only after Kafka's.

I/O is behind two interfaces, given to the constructor: a `Source` (source.py: MQTT intake,
`mqtt_source.PahoSource`) and a `Sink` (sink.py: one Kafka producer, `kafka_python` or
`confluent`), under the retry policy (`retrying.RetryingProducer`) and the health probe
(`kafka_health.HealthProbe`). `factory.build(config)` makes the real ones; the logic tests use
the in-memory ones of `testing`.

Threads (all owned, named, and joined by `stop`):

    gateway-mqtt          the source: receives; per loop pass, `deliver(batch)` routes (pure),
                          dedupes and submits the pass's records at once; sends PUBACKs
    gateway-kafka         the retry policy: hands new records and due retries to the producer
    (the client library)  reports outcomes -> `_record_done` (counts, hands acks back)
    gateway-kafka-health  admin probe for `kafka_up`
    gateway-metrics       /metrics and /healthz
    caller of `run()`     readiness, systemd watchdog, waits for `stop()`, then drains

The ack path: a delivery becomes one `_Pending` with one or two records (a violation without a
code also raises an alert). When Kafka has acknowledged all of them, the delivery goes back to
the source (`Source.ack`), which sends the PUBACK. A record Kafka refuses for good is replaced by
a dead-letter record, so nothing accepted is dropped. When Kafka refuses the gateway itself
(`KafkaRefused`: authorization), nothing is acknowledged and `run()` stops with exit code 3.

Backpressure: at most `limits.max_in_flight` messages are held (`room`); at the limit the source
stops reading from the broker. While Kafka is down nothing is acknowledged, so at most that many
messages (and their records) are held, retrying, until Kafka returns; the rest waits at the
broker.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import protocol

from .config import GatewayConfig
from .dedupe import SeqTracker, Verdict
from .errors import KafkaRefused, SinkError
from .evidence.intake import EvidenceIntake, Frame
from .evidence.store import EvidenceStore
from .fastpath import fast_route
from .kafka_health import HealthProbe
from .metrics import MAX_DRONE_SERIES, GatewayMetrics, MetricsServer, SeqCollector
from .records import OutRecord, Receipt, dead_letter_record
from .retrying import Callback, RetryingProducer
from .router import Routed, RouteSettings, route, seq_jump
from .seed import Seeded, SeedError, TailFollower
from .signatures import verifier_for
from .sink import Sink
from .source import Delivery, Source, SourceCounts
from .systemd import Notifier

log = logging.getLogger("gateway")

KAFKA_REJECTED = "kafka_rejected"  # dead-letter reason: Kafka refused the record for good
RETIRE_IDLE_S = 5.0  # retire mode: a session with no delivery for this long is drained
EXIT_THREAD_DIED = 1
EXIT_KAFKA_REFUSED = 3  # deploy/systemd: RestartPreventExitStatus (a restart cannot fix an ACL)


@dataclass
class _Pending:
    """One accepted delivery waiting for Kafka. `deliveries`: the copies to acknowledge."""

    routed: Routed
    payload: bytes
    receipt: Receipt
    remaining: int
    deliveries: list[Delivery] = field(default_factory=list)


class Gateway:
    """MQTT -> Kafka bridge. `start()`/`stop()` for library use, `run()` for the service.

    The constructor builds no client and raises OSError only when `metrics.address` cannot be
    bound. `start` raises nothing: unreachable brokers are retried (see `/healthz`). `run`
    returns the exit code.
    """

    def __init__(self, config: GatewayConfig, *, source: Source, sink: Sink,
                 notifier: Notifier | None = None, retire: bool = False,
                 evidence_store: EvidenceStore | None = None,
                 seeder: Callable[[], Seeded] | None = None,
                 follower: TailFollower | None = None) -> None:
        self.config = config
        self._retire = retire
        self.gateway_id = config.mqtt.effective_client_id()
        self.metrics = m = GatewayMetrics()
        m.receive_maximum.set(config.mqtt.receive_maximum)
        self._notifier = notifier or Notifier()
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._tracker = SeqTracker(config.limits.dedupe_window, config.limits.max_drones,
                                   config.limits.max_seq_jump, config.limits.max_seq_rate)
        self._seeder = seeder  # reads Kafka's tail into the tracker (`prepare`); None: no seed
        self._seeded = False
        self._follower = follower  # reads on after the first seed (limits.seed_follow)
        self._in_flight = 0  # messages held: received, not yet done (see `room`)
        self._in_flight_max = 0
        self._max_in_flight = config.limits.max_in_flight
        self._draining = False
        self._stop_requested = False  # a plain flag: set from signal handlers
        self._stopped = threading.Event()
        verifier = verifier_for(config.security)  # one key registry: violations and manifests
        self._settings = RouteSettings(
            topics=config.kafka.topics,
            max_clock_skew_ms=int(config.limits.max_clock_skew_s * 1000),
            deadletter_max_bytes=config.limits.deadletter_max_bytes,
            verifier=verifier,
            require_signatures=config.security.require_signatures,
        )
        m.add_collector(SeqCollector(self._seq_snapshot))
        # Per-message counts, kept as plain ints under `_lock` and added to the prometheus
        # counters at scrape time (`_flush_counts`): no metric call per message.
        self._counts: dict[Any, int] = {}
        self._produced_by_kind: dict[str, Any] = {}
        self._source_seen = SourceCounts()  # the source's counts already added to the metrics
        self._latency, self._latency_sum = [0] * (len(m.latency.bounds) + 1), 0.0  # the same
        m.before_collect = self._flush_counts
        m.in_flight.set_function(lambda: self._in_flight)
        m.in_flight_max.set_function(lambda: self._in_flight_max)
        p = config.kafka.producer
        self._kafka = RetryingProducer(
            sink, retry_min_s=config.limits.retry_min_s, retry_max_s=config.limits.retry_max_s,
            stall_s=2 * (p.delivery_timeout_ms + p.max_block_ms) / 1000 + 5,
            on_state=lambda up: m.kafka_up.set(int(up)), on_retry=m.produce_retries.inc)
        self._probe = HealthProbe(sink.probe, sink.close_probe, config.kafka.health_interval_s,
                                  self._kafka.set_up)
        m.kafka_outstanding.set_function(lambda: self._kafka.outstanding)
        m.kafka_waiting.set_function(lambda: self._kafka.waiting)
        self._source = source
        # Evidence frames (protocol section 14) go to their own thread, acknowledged by it once
        # durable; None (no store given) dead-letters them like any unknown topic.
        self._evidence: EvidenceIntake | None = None
        if evidence_store is not None:
            self._evidence = EvidenceIntake(
                config.evidence, evidence_store, gateway_id=self.gateway_id,
                evidence_topic=config.kafka.topics.evidence,
                deadletter_topic=config.kafka.topics.deadletter,
                submit=lambda record, done: self._kafka.submit(record, done),
                publish=source.publish,
                deadletter_max_bytes=config.limits.deadletter_max_bytes, verifier=verifier,
                require_signatures=config.security.require_signatures)
        m.mqtt_connected.set_function(lambda: int(source.connected))
        m.intake_paused.set_function(lambda: int(source.paused))
        self._server: MetricsServer | None = None
        if config.metrics.address:
            self._server = MetricsServer(config.metrics.address, m.registry, self.health)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def metrics_address(self) -> str | None:
        """host:port of /metrics (the real port when the config said 0), or None if disabled."""
        return self._server.address if self._server else None

    @property
    def refused(self) -> KafkaRefused | None:
        """Set when Kafka refused the gateway (authorization): `run()` then stops, exit 3."""
        return self._kafka.refused

    def start(self) -> None:
        """Start every thread and return. Brokers that are down are retried in the background."""
        if self._server:
            self._server.start()
            log.info("metrics listening", extra={"address": self._server.address})
        self._kafka.start()
        self._probe.start()
        if self._evidence is not None:
            self._evidence.start()
        self._source.start(self)
        log.info("gateway started", extra={"gateway_id": self.gateway_id,
                                           "subscription": self._source.subscription})

    def ready(self) -> bool:
        """Subscribed to MQTT and Kafka reachable."""
        return self._source.connected and self._kafka.up

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def health(self) -> tuple[bool, dict[str, Any]]:
        detail = {"mqtt_connected": self._source.connected, "kafka_up": self._kafka.up,
                  "kafka_backend": self.metrics.kafka_backend,
                  "in_flight": self._in_flight, "draining": self._draining}
        return self.ready() and not self._draining, detail

    def request_stop(self) -> None:
        """Ask `run()` to drain and return; safe from signal handlers and other threads."""
        self._stop_requested = True

    def run(self) -> int:
        """Start, serve until `request_stop()`, drain, stop. Returns the exit code: 0; 1 when
        one of its threads died (so systemd's Restart=on-failure restarts it); 3 when Kafka
        refused the gateway (authorization: see docs/gateway.md)."""
        self.start()
        notified_ready = False
        next_watchdog = 0.0
        interval = self._notifier.watchdog_interval_s or 1.0
        while not self._stop_requested:
            if not notified_ready and self.ready():
                self._notifier.ready(f"forwarding as {self.gateway_id}")
                log.info("gateway ready", extra={"metrics": self.metrics_address})
                notified_ready = True
            failure = self._failure()
            if failure:
                return self._fail(*failure)
            if self._retire and notified_ready and self._retired():
                log.info("retire: session drained")
                break
            if time.monotonic() >= next_watchdog:
                # From this loop, so a wedged main thread stops the pings and systemd restarts us.
                self._notifier.watchdog()
                next_watchdog = time.monotonic() + interval
            time.sleep(0.05)
        self._notifier.stopping("draining")
        self.stop()
        return 0

    def _failure(self) -> tuple[int, str] | None:
        """(exit code, why) when the gateway cannot go on."""
        evidence_alive = self._evidence is None or self._evidence.alive
        if not (self._source.alive and self._kafka.alive and self._probe.alive
                and evidence_alive):
            return EXIT_THREAD_DIED, "a gateway thread died; stopping so the service manager " \
                "restarts us"
        refused = self._kafka.refused
        if refused is not None:
            return EXIT_KAFKA_REFUSED, f"kafka refuses the gateway ({refused}); stopping " \
                "without acknowledging: fix the ACL or credentials of this gateway's principal " \
                "(docs/gateway.md, 'When Kafka refuses the gateway')"
        return None

    def _fail(self, code: int, why: str) -> int:
        log.critical(why, extra={"exit_code": code})
        self._notifier.stopping(why)
        self.stop()
        return code

    def _retired(self) -> bool:
        """Retire mode: nothing arrived for a while and everything taken is done."""
        return (self._source.idle_s > RETIRE_IDLE_S and self._in_flight == 0
                and self._kafka.outstanding == 0)

    def stop(self) -> None:
        """Stop taking messages, wait (bounded) for in-flight Kafka acks, send their MQTT acks,
        disconnect cleanly and join every thread. Idempotent."""
        if self._stopped.is_set():
            return
        with self._lock:
            self._draining = True  # what was admitted before this is with Kafka, and awaited
        timeout = self.config.limits.drain_timeout_s
        if self._evidence is not None:
            self._evidence.stop(timeout / 2)  # its queued frames staged and their records sent
        drained = self._kafka.wait_idle(timeout)
        left = len(self._pending)
        log.info("drained" if drained else "drain timed out; unacknowledged messages will be "
                 "redelivered", extra={"pending": left})
        # Sends the acks handed over so far, then DISCONNECT (ending the session when retiring
        # and everything was drained: a message still held would otherwise be lost with it).
        self._source.stop(end_session=self._retire and drained and self._in_flight == 0)
        self._probe.stop()
        if self._follower is not None:
            self._follower.stop()
        self._kafka.stop()
        if self._server:
            self._server.stop()
        self._stopped.set()
        log.info("gateway stopped", extra=self.stats())

    def stats(self) -> dict[str, int]:
        """Counters for tests and benchmarks."""
        def value(metric: Any) -> int:
            return int(sum(s.value for m in metric.collect() for s in m.samples
                           if s.name.endswith("_total")))

        self._flush_counts()
        m = self.metrics
        return {
            "received": value(m.received), "acked": value(m.acked),
            "produced": value(m.produced), "deadletter": value(m.deadletter),
            "alerts": value(m.alerts), "duplicates": value(m.duplicates),
            "ignored_draining": value(m.ignored_draining),
            "in_flight": self._in_flight, "in_flight_max": self._in_flight_max,
            "pending": len(self._pending),
        }

    def _count(self, counter: Any, n: int = 1) -> None:
        """Count an event on `counter` (a prometheus counter or labelled child); caller holds
        the lock."""
        counts = self._counts
        counts[counter] = counts.get(counter, 0) + n

    def _flush_counts(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, {}
            self.metrics.latency.add(self._latency, self._latency_sum)
            self._latency, self._latency_sum = [0] * len(self._latency), 0.0
        now, seen, m = self._source.counts, self._source_seen, self.metrics
        for counter, name in ((m.mqtt_connects, "connects"), (m.stale_acks, "stale_acks"),
                              (m.deferred, "deferred")):
            delta = getattr(now, name) - getattr(seen, name)
            if delta:
                counts[counter] = counts.get(counter, 0) + delta
                setattr(seen, name, getattr(seen, name) + delta)
        for counter, n in counts.items():
            counter.inc(n)

    # -- the Intake, on the source's thread ----------------------------------------------------

    def prepare(self) -> None:
        """Before each MQTT connection: seed the dedupe window from Kafka's tail (gateway.seed),
        so a redelivery of what Kafka already has is acknowledged, not produced again. The first
        time it is retried until it succeeds (nothing is taken before: a gateway that cannot
        read Kafka could not write it either); after a lost connection, one attempt."""
        if self._seeder is None:
            return
        delay = 1.0
        while not (self._draining or self._stop_requested):
            try:
                seeded = self._seeder()
            except SeedError as exc:
                log.warning("dedupe seed failed: %s", exc, extra={"first": not self._seeded})
                if self._seeded:
                    return
                self._stopped.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._apply_seed(seeded)
            if self._follower is not None and not self._seeded:
                self._follower.start(self._apply_seed, seeded.end)
            self._seeded = True
            log.info("dedupe seeded from kafka", extra={
                "records": seeded.records, "ids": seeded.ids, "drones": len(seeded.seqs),
                "partitions": seeded.partitions, "seconds": round(seeded.seconds, 3)})
            return

    def room(self) -> int:
        """How many more messages the gateway may take (read by the source)."""
        # Evidence frames do not count: a full evidence queue sheds them (BUSY), it never
        # holds up events (EvidenceIntake.offer).
        return self._max_in_flight - self._in_flight

    def deliver(self, batch: list[Delivery]) -> None:
        """Route a loop pass's deliveries, then admit them and hand their records to Kafka
        under one lock: once `stop()` has set `_draining`, nothing new reaches Kafka."""
        gateway_id, settings = self.gateway_id, self._settings
        routed = []
        for d in batch:
            topic = d.topic if isinstance(d.topic, str) else d.topic.decode("utf-8", "replace")
            receipt = Receipt(topic, _now_ms(), gateway_id, d.qos, d.retain)
            if self._evidence is not None and protocol.is_evidence_topic(d.topic):
                self._offer_evidence(d, topic, receipt)
                continue
            # The fast path takes the common valid messages; anything else, the full decoder.
            r = fast_route(d.topic, d.payload, receipt, settings)
            routed.append((d, r or route(d.topic, d.payload, receipt, settings), receipt))
        submits: list[tuple[OutRecord, Callback]] = []
        with self._lock:
            self._count(self.metrics.received, len(batch))
            if self._draining:
                # Not acknowledged: the broker keeps them in our session and redelivers them.
                self._count(self.metrics.ignored_draining, len(batch))
                return
            for d, r, receipt in routed:
                pending = self._admit(r, d, receipt)
                if pending is not None:  # its records: a seq jump's are a dead letter
                    for record in pending.routed.records:
                        submits.append((record, self._done_callback(pending, record)))
            self._in_flight_max = max(self._in_flight_max, self._in_flight)
            if submits:
                self._kafka.submit_many(submits)

    def _apply_seed(self, seeded: Seeded) -> None:
        """Mark ids read back from Kafka (the seed, the follower's thread) as produced."""
        with self._lock:
            for drone_id, seqs in seeded.seqs.items():
                self._tracker.seed(drone_id, seqs, seeded.newest_ms.get(drone_id))
            self._count(self.metrics.seeded, seeded.ids)
        self._kafka.written.add_all(seeded.written)  # alerts, evidence: gateway/written.py

    def _offer_evidence(self, d: Delivery, topic: str, receipt: Receipt) -> None:
        """Hand an evidence frame to its thread; it acknowledges the frame once durable."""
        assert self._evidence is not None
        if self._draining:
            return  # unacknowledged: the broker redelivers it to whoever takes over
        self._evidence.offer(Frame(topic, d.payload, receipt, lambda: self._source.ack(d)))

    def _admit(self, routed: Routed, delivery: Delivery, receipt: Receipt) -> _Pending | None:
        """The pending entry to produce, or None when the delivery is a duplicate (caller holds
        the lock)."""
        mid = routed.message_id
        if mid is not None and routed.drone_id is not None and routed.seq is not None:
            existing = self._pending.get(mid)
            if existing is not None:  # redelivered while its records are still in flight
                existing.deliveries.append(delivery)
                self._count(self.metrics.duplicates)
                return None
            verdict = self._tracker.observe(routed.drone_id, routed.seq, routed.drone_time_ms,
                                            receipt.received_ms)
            if verdict is Verdict.JUMP:  # refused: kept as a dead letter, the window unchanged
                top = self._tracker.state(routed.drone_id).top  # type: ignore[union-attr]
                routed = seq_jump(routed, delivery.payload, receipt, self._settings, top)
                mid = None
            if verdict is Verdict.DUPLICATE:
                self._count(self.metrics.duplicates)
                self._ack_now(delivery)
                return None
            if verdict is Verdict.UNKNOWN:
                self._count(self.metrics.window_misses)
        pending = _Pending(routed, delivery.payload, receipt, len(routed.records), [delivery])
        if mid is not None:
            self._pending[mid] = pending
        self._in_flight += 1
        return pending

    def _done_callback(self, pending: _Pending, record: OutRecord) -> Callback:
        return lambda outcome: self._record_done(pending, record, outcome)

    def _ack_now(self, delivery: Delivery) -> None:
        """Hand an acknowledgement to the source (caller holds the lock)."""
        if delivery.qos > 0:
            self._count(self.metrics.acked)
        self._source.ack(delivery)

    # -- outcomes, on a Kafka thread -----------------------------------------------------------

    def _record_done(self, pending: _Pending, record: OutRecord,
                     outcome: SinkError | None) -> None:
        if outcome is not None:
            self._failed(pending, record, outcome)
            return
        m = self.metrics
        with self._lock:
            self._count(self._produced_child(record.kind))
            if record.kind == "alert":
                self._count(m.alerts)
            elif record.kind == "deadletter":
                self._count(m.deadletter.labels(record.header("reason")))
            pending.remaining -= 1
            if pending.remaining:
                return
            if pending.routed.message_id is not None:
                self._pending.pop(pending.routed.message_id, None)
            self._in_flight -= 1
            for delivery in pending.deliveries:
                self._ack_now(delivery)
            routed = pending.routed
            if routed.time_trusted and routed.drone_time_ms is not None:
                seconds = max(0.0, (_now_ms() - routed.drone_time_ms) / 1000)
                self._latency[bisect_left(self.metrics.latency.bounds, seconds)] += 1
                self._latency_sum += seconds

    def _produced_child(self, kind: str) -> Any:
        child = self._produced_by_kind.get(kind)
        if child is None:
            child = self._produced_by_kind[kind] = self.metrics.produced.labels(kind)
        return child

    def _failed(self, pending: _Pending, record: OutRecord, why: SinkError) -> None:
        """Kafka will not take a record (`why` is not retriable): keep the input as a dead
        letter, unless Kafka refuses the gateway itself (then `run()` stops; the message stays
        unacknowledged at the broker)."""
        extra = {"topic": record.topic, "message_id": pending.routed.message_id}
        if isinstance(why, KafkaRefused):
            log.error("kafka refused a record; not acknowledging it: %s", why, extra=extra)
            return
        log.error("kafka rejected a record; dead-lettering it: %s", why, extra=extra)
        if record.kind == "deadletter":
            # Cannot happen for records we build (bounded size). Never loop on it: the message
            # stays unacknowledged, so the broker redelivers it after the next reconnect.
            return
        replacement = dead_letter_record(
            KAFKA_REJECTED, str(why), pending.payload, self.config.kafka.topics.deadletter,
            pending.receipt, drone_id=pending.routed.drone_id,
            max_bytes=self.config.limits.deadletter_max_bytes)
        self._kafka.submit(replacement, self._done_callback(pending, replacement))

    def _seq_snapshot(self) -> tuple[int, int, int, list[tuple[str, int, int]]]:
        with self._lock:  # kept up to date by the tracker: three ints and a few hundred drones
            missing, lost, gaps = self._tracker.totals()
            per_drone = self._tracker.with_holes(MAX_DRONE_SERIES)
        return missing, lost, gaps, per_drone


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
