"""The gateway service: MQTT deliveries in, Kafka records out, each MQTT ack only after Kafka's.

Threads (all owned, named, and joined by `stop`):

    gateway-mqtt          paho loop: receives, routes (pure), dedupes; submits a pass's records
                          at once; sends PUBACKs
    gateway-kafka         KafkaProducer.send for new records and due retries
    kafka-python I/O      completes futures -> `_record_done` (counts, hands acks back)
    gateway-kafka-health  admin probe for `kafka_up`
    gateway-metrics       /metrics and /healthz
    caller of `run()`     readiness, systemd watchdog, waits for `stop()`, then drains

The ack path: a delivery becomes one `_Pending` with one or two records (a violation without a
code also raises an alert). When Kafka has acknowledged all of them, the delivery's
(connection generation, packet id) goes back to the MQTT thread, which sends the PUBACK. A record
Kafka refuses for good is replaced by a dead-letter record, so nothing accepted is dropped.

Backpressure: at most `limits.max_in_flight` messages are held (`_room`); at the limit the MQTT
thread stops reading from the broker (see mqtt_source). While Kafka is down nothing is
acknowledged, so at most that many messages (and their records) are held, retrying, until Kafka
returns; the rest waits at the broker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .config import GatewayConfig
from .dedupe import SeqTracker, Verdict
from .kafka_sink import KafkaSink, RecordRejected
from .metrics import GatewayMetrics, MetricsServer, SeqCollector
from .mqtt_source import Delivery, MqttSource
from .records import OutRecord, Receipt, dead_letter_record
from .router import Routed, RouteSettings, route
from .systemd import Notifier

log = logging.getLogger("gateway")

KAFKA_REJECTED = "kafka_rejected"  # dead-letter reason: Kafka refused the record for good
RETIRE_IDLE_S = 5.0  # retire mode: a session with no delivery for this long is drained


@dataclass
class _Pending:
    """One accepted delivery waiting for Kafka. `acks` are (generation, mid, qos) to send."""

    routed: Routed
    payload: bytes
    receipt: Receipt
    remaining: int
    acks: list[tuple[int, int, int]] = field(default_factory=list)


class Gateway:
    """MQTT -> Kafka bridge. `start()`/`stop()` for library use, `run()` for the service.

    The constructor raises OSError when `metrics.address` cannot be bound. `start` raises
    nothing: unreachable brokers are retried (see `/healthz`). `run` returns the exit code.
    """

    def __init__(self, config: GatewayConfig, *, notifier: Notifier | None = None,
                 retire: bool = False) -> None:
        self.config = config
        self._retire = retire
        self.gateway_id = config.mqtt.effective_client_id()
        self.metrics = GatewayMetrics()
        self.metrics.receive_maximum.set(config.mqtt.receive_maximum)
        self._notifier = notifier or Notifier()
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        # Records of deliveries admitted during the MQTT thread's current loop pass, handed to
        # Kafka together at the end of the pass (`_flush_submits`, under `_lock`): one wake-up
        # of the Kafka thread per pass instead of one per record.
        self._unsubmitted: list[tuple[OutRecord, Callable[[RecordRejected | None], None]]] = []
        self._tracker = SeqTracker(config.limits.dedupe_window, config.limits.max_drones)
        self._in_flight = 0  # messages held: received, not yet done (see `_room`)
        self._in_flight_max = 0
        self._max_in_flight = config.limits.max_in_flight
        self._draining = False
        self._stop_requested = False  # a plain flag: set from signal handlers
        self._stopped = threading.Event()
        self._settings = RouteSettings(
            topics=config.kafka.topics,
            max_clock_skew_ms=int(config.limits.max_clock_skew_s * 1000),
            deadletter_max_bytes=config.limits.deadletter_max_bytes,
        )
        self.metrics.add_collector(SeqCollector(self._seq_snapshot))
        # Per-message counts, kept as plain ints under `_lock` and added to the prometheus
        # counters at scrape time (`_flush_counts`): no metric call per message.
        self._counts: dict[Any, int] = {}
        self._produced_by_kind: dict[str, Any] = {}
        self.metrics.before_collect = self._flush_counts
        self.metrics.in_flight.set_function(lambda: self._in_flight)
        self.metrics.in_flight_max.set_function(lambda: self._in_flight_max)
        self._kafka = KafkaSink(config.kafka, self.gateway_id,
                                retry_min_s=config.limits.retry_min_s,
                                retry_max_s=config.limits.retry_max_s,
                                on_state=lambda up: self.metrics.kafka_up.set(int(up)),
                                on_retry=self.metrics.produce_retries.inc)
        self.metrics.kafka_outstanding.set_function(lambda: self._kafka.outstanding)
        self.metrics.kafka_waiting.set_function(lambda: self._kafka.waiting)
        self._mqtt = MqttSource(config.mqtt, self.gateway_id, self._on_delivery,
                                on_state=self._mqtt_state,
                                on_stale_ack=self.metrics.stale_acks.inc,
                                room=self._room, limit=config.limits.max_in_flight,
                                on_pause=lambda p: self.metrics.intake_paused.set(int(p)),
                                on_defer=self.metrics.deferred.inc, retire=retire,
                                on_pass=self._flush_submits)
        self._server: MetricsServer | None = None
        if config.metrics.address:
            self._server = MetricsServer(config.metrics.address, self.metrics.registry,
                                         self.health)

    def _mqtt_state(self, subscribed: bool) -> None:
        if subscribed:
            self.metrics.mqtt_connects.inc()
        self.metrics.mqtt_connected.set(int(subscribed))

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def metrics_address(self) -> str | None:
        """host:port of /metrics (the real port when the config said 0), or None if disabled."""
        return self._server.address if self._server else None

    def start(self) -> None:
        """Start every thread and return. Brokers that are down are retried in the background."""
        if self._server:
            self._server.start()
            log.info("metrics listening", extra={"address": self._server.address})
        self._kafka.start()
        self._mqtt.start()
        log.info("gateway started", extra={"gateway_id": self.gateway_id,
                                           "subscription": self._mqtt.subscription})

    def ready(self) -> bool:
        """Subscribed to MQTT and Kafka reachable."""
        return self._mqtt.connected and self._kafka.up

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def health(self) -> tuple[bool, dict[str, Any]]:
        detail = {"mqtt_connected": self._mqtt.connected, "kafka_up": self._kafka.up,
                  "in_flight": self._in_flight, "draining": self._draining}
        return self.ready() and not self._draining, detail

    def request_stop(self) -> None:
        """Ask `run()` to drain and return; safe from signal handlers and other threads."""
        self._stop_requested = True

    def run(self) -> int:
        """Start, serve until `request_stop()`, drain, stop. Returns the exit code: 0, or 1
        when one of its threads died (so systemd's Restart=on-failure restarts it)."""
        self.start()
        notified_ready = False
        next_watchdog = 0.0
        interval = self._notifier.watchdog_interval_s or 1.0
        while not self._stop_requested:
            if not notified_ready and self.ready():
                self._notifier.ready(f"forwarding as {self.gateway_id}")
                log.info("gateway ready", extra={"metrics": self.metrics_address})
                notified_ready = True
            if not (self._mqtt.alive and self._kafka.alive):
                log.critical("a gateway thread died; stopping so the service manager restarts us")
                self._notifier.stopping("thread died")
                self.stop()
                return 1
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

    def _retired(self) -> bool:
        """Retire mode: nothing arrived for a while and everything taken is done."""
        return (self._mqtt.idle_s > RETIRE_IDLE_S and self._in_flight == 0
                and self._kafka.outstanding == 0)

    def stop(self) -> None:
        """Stop taking messages, wait (bounded) for in-flight Kafka acks, send their MQTT acks,
        disconnect cleanly and join every thread. Idempotent."""
        if self._stopped.is_set():
            return
        with self._lock:
            self._draining = True
            self._flush_locked()  # what was admitted before this goes to Kafka and is awaited
        timeout = self.config.limits.drain_timeout_s
        drained = self._kafka.wait_idle(timeout)
        left = len(self._pending)
        log.info("drained" if drained else "drain timed out; unacknowledged messages will be "
                 "redelivered", extra={"pending": left})
        # Sends the acks handed over so far, then DISCONNECT (ending the session when retiring
        # and everything was drained: a message still held would otherwise be lost with it).
        self._mqtt.stop(end_session=self._retire and drained and self._in_flight == 0)
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
        for counter, n in counts.items():
            counter.inc(n)

    # -- MQTT thread ---------------------------------------------------------------------------

    def _on_delivery(self, d: Delivery) -> None:
        topic_text = d.topic if isinstance(d.topic, str) else d.topic.decode("utf-8", "replace")
        receipt = Receipt(mqtt_topic=topic_text, received_ms=_now_ms(),
                          gateway_id=self.gateway_id, qos=d.qos, retained=d.retain)
        routed = route(d.topic, d.payload, receipt, self._settings)
        ack = (d.generation, d.mid, d.qos)
        # One critical section from the draining check to the submits, so that once `stop()`
        # has set `_draining`, nothing new can reach Kafka behind its back.
        with self._lock:
            self._count(self.metrics.received)
            if self._draining:
                # Not acknowledged: the broker keeps it in our session and redelivers it.
                self._count(self.metrics.ignored_draining)
                return
            pending = self._admit(routed, d.payload, receipt, ack)
            if pending is not None:
                self._in_flight += 1
                if self._in_flight > self._in_flight_max:
                    self._in_flight_max = self._in_flight
                for record in routed.records:
                    self._submit(pending, record)

    def _admit(self, routed: Routed, payload: bytes, receipt: Receipt,
               ack: tuple[int, int, int]) -> _Pending | None:
        """The pending entry to produce, or None when the delivery is a duplicate (caller holds
        the lock)."""
        mid = routed.message_id
        if mid is not None and routed.drone_id is not None and routed.seq is not None:
            existing = self._pending.get(mid)
            if existing is not None:  # redelivered while its records are still in flight
                existing.acks.append(ack)
                self._count(self.metrics.duplicates)
                return None
            verdict = self._tracker.observe(routed.drone_id, routed.seq)
            if verdict is Verdict.DUPLICATE:
                self._count(self.metrics.duplicates)
                self._ack_now(ack)
                return None
            if verdict is Verdict.UNKNOWN:
                self._count(self.metrics.window_misses)
        pending = _Pending(routed, payload, receipt, len(routed.records), [ack])
        if mid is not None:
            self._pending[mid] = pending
        return pending

    def _submit(self, pending: _Pending, record: OutRecord) -> None:
        """Queue `record` for the end of this loop pass (caller holds the lock)."""
        self._unsubmitted.append(
            (record, lambda outcome: self._record_done(pending, record, outcome)))

    def _flush_submits(self) -> None:
        """Hand the records queued in this loop pass to Kafka (MQTT thread, after each pass)."""
        if self._unsubmitted:
            with self._lock:
                self._flush_locked()

    def _flush_locked(self) -> None:
        """Under the lock, so that `stop()` finds every admitted record already submitted."""
        batch, self._unsubmitted = self._unsubmitted, []
        if batch:
            self._kafka.submit_many(batch)

    def _ack_now(self, ack: tuple[int, int, int]) -> None:
        """Hand an acknowledgement to the MQTT thread (caller holds the lock)."""
        if ack[2] > 0:
            self._count(self.metrics.acked)
        self._mqtt.ack(*ack)

    def _room(self) -> int:
        """How many more messages the gateway may take (read by the MQTT thread)."""
        return self._max_in_flight - self._in_flight

    # -- Kafka I/O thread ----------------------------------------------------------------------

    def _record_done(self, pending: _Pending, record: OutRecord,
                     outcome: RecordRejected | None) -> None:
        if outcome is not None:
            self._reject(pending, record, outcome)
            return
        m = self.metrics
        with self._lock:
            self._count(self._produced_child(record.kind))
            if record.kind == "alert":
                self._count(m.alerts)
            elif record.kind == "deadletter":
                self._count(m.deadletter.labels(_header(record, "reason")))
            pending.remaining -= 1
            if pending.remaining:
                return
            if pending.routed.message_id is not None:
                self._pending.pop(pending.routed.message_id, None)
            self._in_flight -= 1
            for ack in pending.acks:
                self._ack_now(ack)
        routed = pending.routed
        if routed.time_trusted and routed.drone_time_ms is not None:
            self.metrics.latency.observe(max(0.0, (_now_ms() - routed.drone_time_ms) / 1000))

    def _produced_child(self, kind: str) -> Any:
        child = self._produced_by_kind.get(kind)
        if child is None:
            child = self._produced_by_kind[kind] = self.metrics.produced.labels(kind)
        return child

    def _reject(self, pending: _Pending, record: OutRecord, why: RecordRejected) -> None:
        """Kafka refused a record for good: keep the input as a dead letter instead."""
        log.error("kafka rejected a record; dead-lettering it: %s", why,
                  extra={"topic": record.topic, "message_id": pending.routed.message_id})
        if record.kind == "deadletter":
            # Cannot happen for records we build (bounded size). Never loop on it: the message
            # stays unacknowledged, so the broker redelivers it after the next reconnect.
            return
        replacement = dead_letter_record(
            KAFKA_REJECTED, str(why), pending.payload, self.config.kafka.topics.deadletter,
            pending.receipt, drone_id=pending.routed.drone_id,
            max_bytes=self.config.limits.deadletter_max_bytes)
        # Not through `_unsubmitted`: this runs on a Kafka thread, outside any MQTT loop pass.
        self._kafka.submit(replacement,
                           lambda outcome: self._record_done(pending, replacement, outcome))

    def _seq_snapshot(self) -> tuple[int, int, int, list[tuple[str, int, int]]]:
        with self._lock:  # the MQTT thread waits meanwhile: one pass over the drones
            missing, lost, gaps = self._tracker.totals()
            counts = [(d, self._tracker.missing(d), s.lost)
                      for d, s in self._tracker.drones().items()]
        return missing, lost, gaps, [c for c in counts if c[1] or c[2]]


def _header(record: OutRecord, name: str) -> str:
    for key, value in record.headers:
        if key == name:
            return value.decode()
    return ""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
