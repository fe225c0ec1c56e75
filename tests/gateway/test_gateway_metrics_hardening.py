"""/metrics under hostile clients (issue 14): bounded handler threads with timeouts, real sockets,
and the per-drone figures kept in step by the dedupe tracker instead of a walk per scrape."""

from __future__ import annotations

import random
import socket
import threading
import urllib.request

from prometheus_client import CollectorRegistry, Counter

from gateway.dedupe import SeqTracker
from gateway.metrics import MetricsServer


def test_slow_clients_cannot_pin_metrics_threads() -> None:
    registry = CollectorRegistry()
    Counter("probe", "a metric to scrape", registry=registry).inc()
    server = MetricsServer("127.0.0.1:0", registry, lambda: (True, {}), max_clients=4,
                           timeout_s=0.5)
    server.start()
    host, port = server.address.rsplit(":", 1)
    peak = [threading.active_count()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak.append(threading.active_count())

    sampler = threading.Thread(target=sample, name="thread-sampler")
    sampler.start()
    before = threading.active_count()
    slow: list[socket.socket] = []
    try:
        for _ in range(50):  # half-sent requests, as the review's 200 were
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall(b"GET /metr")
            slow.append(sock)
        for sock in slow:  # each one is closed by the server: refused, or at its timeout
            assert sock.recv(1) == b""
        done.set()
        sampler.join()
        assert max(peak) <= before + 4, f"{max(peak) - before} handler threads at once"
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as resp:
            assert resp.status == 200 and b"probe_total 1.0" in resp.read()
    finally:
        done.set()
        sampler.join()
        for sock in slow:
            sock.close()
        server.stop()


def test_the_trackers_running_totals_match_a_full_recount() -> None:
    rnd = random.Random(14)
    tracker = SeqTracker(window=64, max_drones=20)
    for _ in range(5000):
        drone = f"d{rnd.randrange(30)}"
        seq = rnd.randrange(400)
        tracker.forget(drone, seq) if rnd.random() < 0.05 else tracker.observe(drone, seq)
        assert tracker.totals() == tracker.recount()
    holey = tracker.with_holes(1000)
    assert {d for d, _, _ in holey} == {d for d, s in tracker.drones().items()
                                        if tracker.missing(d) or s.lost}
