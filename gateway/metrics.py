"""Prometheus metrics and the /metrics + /healthz HTTP endpoint.

Each `Gateway` owns a `CollectorRegistry`, so several gateways can run in one process (benchmarks,
tests) without clashing. The HTTP server is a small `ThreadingHTTPServer` on its own named thread,
shut down by `MetricsServer.stop()`. It serves at most `max_clients` connections at once (more are
closed at once) and gives each `timeout_s` to send its request and read the answer, so slow or
half-open clients cannot pin threads (the unit's TasksMax also bounds the Kafka producer's).

Exposure: /metrics names drone ids (= broker usernames) in the per-drone gap series (at most
MAX_DRONE_SERIES, only drones with holes) and /healthz the broker and Kafka state. Bind it to
loopback (the default) or a management network only (docs/security.md).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# Drone time -> Kafka acknowledgement. Wide buckets: messages replayed from a drone's outbox after
# a link loss are legitimately minutes or hours old.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   300.0, 1800.0, 3600.0, 21600.0, 86400.0)
# Per-drone gap series are exported only for drones that have holes, and at most this many, so a
# large fleet cannot blow up the metrics' cardinality.
MAX_DRONE_SERIES = 100


class GatewayMetrics:
    """All of the gateway's metrics, in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        # Registered first, so a scrape flushes the owner's batched counts before reading them.
        self.before_collect: Callable[[], None] = lambda: None
        r.register(_BeforeCollect(self))
        p = "presacop_gateway_"
        self.received = Counter(p + "messages_received", "MQTT messages received", registry=r)
        self.acked = Counter(p + "messages_acked", "MQTT messages acknowledged to the broker",
                             registry=r)
        self.produced = Counter(p + "records_produced", "Records acknowledged by Kafka",
                                ["type"], registry=r)
        self.deadletter = Counter(p + "deadletter", "Messages dead-lettered", ["reason"],
                                  registry=r)
        self.alerts = Counter(p + "alerts", "Alerts raised for unqualified violations",
                              registry=r)
        self.duplicates = Counter(p + "duplicates_dropped",
                                  "Redeliveries acknowledged without producing", registry=r)
        self.seeded = Counter(p + "dedupe_seeded", "Message ids read back from Kafka's tail "
                              "into the dedupe window (at start and after a lost MQTT "
                              "connection)", registry=r)
        self.window_misses = Counter(
            p + "dedupe_window_misses",
            "Messages older than the dedupe window (produced; may be duplicates)", registry=r)
        self.produce_retries = Counter(p + "produce_retries", "Records produced again after a "
                                       "failed attempt", registry=r)
        self.stale_acks = Counter(
            p + "stale_acks_dropped",
            "Acks not sent because the MQTT connection they belonged to was gone "
            "(the broker redelivers; the dedupe window acks the copy)", registry=r)
        self.ignored_draining = Counter(
            p + "messages_ignored_draining",
            "Messages received while draining, left unacknowledged for redelivery", registry=r)
        self.deferred = Counter(
            p + "messages_deferred",
            "Messages read while full during a long stall: not acknowledged, received again "
            "after a reconnect", registry=r)
        self.mqtt_connects = Counter(p + "mqtt_connects", "Successful MQTT connections",
                                     registry=r)
        self.in_flight = Gauge(p + "in_flight", "Messages held: received and not yet all "
                               "acknowledged by Kafka (<= limits.max_in_flight)", registry=r)
        self.intake_paused = Gauge(p + "intake_paused", "1 while the in-flight limit stops "
                                   "reading from the broker", registry=r)
        self.in_flight_max = Gauge(p + "in_flight_max", "Highest in_flight seen", registry=r)
        self.receive_maximum = Gauge(p + "receive_maximum", "Configured MQTT Receive Maximum",
                                     registry=r)
        self.kafka_outstanding = Gauge(p + "kafka_records_outstanding", "Records given to the "
                                       "Kafka side and not yet acknowledged", registry=r)
        self.kafka_waiting = Gauge(p + "kafka_records_waiting", "Records waiting for a (re)send",
                                   registry=r)
        self.kafka_up = Gauge(p + "kafka_up", "1 when Kafka is reachable", registry=r)
        self.mqtt_connected = Gauge(p + "mqtt_connected", "1 when connected and subscribed",
                                    registry=r)
        self.latency = CountedHistogram(p + "end_to_end_latency_seconds", "Drone time to Kafka "
                                        "acknowledgement (synced drone clocks only)",
                                        LATENCY_BUCKETS)
        r.register(self.latency)
        self._backend = Gauge(p + "kafka_backend", "1 for the producer library in use "
                              "(kafka.backend, \"auto\" resolved)", ["backend"], registry=r)
        self.kafka_backend: str | None = None  # also in /healthz; None: not a library's sink

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)

    def set_kafka_backend(self, backend: str) -> None:
        self.kafka_backend = backend
        self._backend.labels(backend).set(1)


class _BeforeCollect(Collector):
    """Yields nothing; runs `GatewayMetrics.before_collect` at the start of every collection.

    The gateway counts per-message events in plain ints under its own lock (a prometheus
    `Counter.inc` takes a lock of its own, and `.labels()` a dict lookup under another) and adds
    them to the counters here, so every scrape still sees exact totals."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self._metrics.before_collect()
        return iter(())


class CountedHistogram(Collector):
    """A histogram whose observations its owner counts per bucket, in plain ints under its own
    lock, and adds at scrape time (`add`): `Histogram.observe` takes two locks and walks the
    buckets, ~1 us per message. Exposed as prometheus_client's `Histogram` is (`_bucket{le}`,
    `_count`, `_sum`), without its `_created` sample."""

    def __init__(self, name: str, documentation: str, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds  # an observation x belongs to bucket bisect_left(bounds, x)
        self._name, self._doc = name, documentation
        self._counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf only)
        self._sum = 0.0

    def add(self, counts: list[int], total: float) -> None:
        """Add observations counted per bucket (as `_counts`) whose values sum to `total`."""
        for i, n in enumerate(counts):
            self._counts[i] += n
        self._sum += total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        cumulative, buckets = 0, []
        for bound, n in zip((*self.bounds, math.inf), self._counts, strict=True):
            cumulative += n
            buckets.append((floatToGoString(bound), cumulative))
        yield HistogramMetricFamily(self._name, self._doc, buckets=buckets, sum_value=self._sum)


class SeqCollector(Collector):
    """Exports the dedupe tracker's gap counters at scrape time (read under the caller's lock)."""

    def __init__(self, snapshot: Callable[[], tuple[int, int, int, list[tuple[str, int, int]]]]):
        self._snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        missing, lost, gaps, per_drone = self._snapshot()
        p = "presacop_gateway_"
        yield GaugeMetricFamily(p + "seq_missing", "Seqs skipped and not arrived, inside the "
                                "dedupe windows", value=missing)
        yield GaugeMetricFamily(p + "seq_lost", "Seqs that left the dedupe window without "
                                "arriving (per gateway; see docs)", value=lost)
        yield GaugeMetricFamily(p + "seq_gap_events", "Forward seq jumps that skipped seqs",
                                value=gaps)
        m = GaugeMetricFamily(p + "drone_seq_missing", "Per drone: seqs missing in the window",
                              labels=["drone_id"])
        lo = GaugeMetricFamily(p + "drone_seq_lost", "Per drone: seqs lost from the window",
                               labels=["drone_id"])
        for drone_id, d_missing, d_lost in per_drone[:MAX_DRONE_SERIES]:
            m.add_metric([drone_id], d_missing)
            lo.add_metric([drone_id], d_lost)
        yield m
        yield lo


class MetricsServer:
    """Serves /metrics (Prometheus text) and /healthz (200 or 503 with a JSON body)."""

    def __init__(self, address: str, registry: CollectorRegistry,
                 health: Callable[[], tuple[bool, dict[str, Any]]], *, max_clients: int = 4,
                 timeout_s: float = 5.0) -> None:
        host, _, port = address.rpartition(":")
        handler = _handler(registry, health, timeout_s)
        self._server = _BoundedServer((host, int(port)), handler, max_clients)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="gateway-metrics", daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _BoundedServer(ThreadingHTTPServer):
    """At most `max_clients` handler threads; a connection beyond them is closed unanswered."""

    request_queue_size = 64  # accepted (and refused) promptly rather than left in the backlog

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 max_clients: int) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_clients)
        self.refused = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def _handler(registry: CollectorRegistry, health: Callable[[], tuple[bool, dict[str, Any]]],
             timeout_s: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = timeout_s  # the socket's: a request line or a read that stalls ends it
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path == "/healthz":
                ok, detail = health()
                body = json.dumps({"ok": ok, **detail}).encode()
                self._send(200 if ok else 503, "application/json", body)
            else:
                self._send(404, "text/plain", b"not found: try /metrics or /healthz\n")

        def _send(self, status: int, ctype: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # scrapes every few seconds would drown the service log

    return Handler
