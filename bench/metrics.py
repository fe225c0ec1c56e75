"""Bench a /metrics scrape of a gateway that tracks many drones (issue 14, target < 10 ms at 100k).

    .venv/bin/python bench/metrics.py [--drones 100000] [--holey 2000] [--scrapes 30]

Builds the gateway's metrics registry and a dedupe tracker of `--drones` drones (each with a
4096-seq window; `--holey` of them with missing and lost seqs), then times what a scrape costs:
the whole `generate_latest` (the HTTP handler's work) and the part spent holding the gateway's
lock (which stops the MQTT thread), both as medians. For comparison it also times the walk every
scrape used to do under the lock (`recount` plus a per-drone list).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.exposition import generate_latest

# The repository first: bench/gateway.py would otherwise shadow the gateway package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.dedupe import SeqTracker
from gateway.metrics import MAX_DRONE_SERIES, GatewayMetrics, SeqCollector


def tracker(drones: int, holey: int) -> SeqTracker:
    t = SeqTracker(window=4096, max_drones=drones)
    for n in range(drones):
        drone = f"drone-{n:06d}"
        for seq in range(0, 40 if n < holey else 20):
            if not (n < holey and seq % 7 == 3):  # holes in the first `holey` drones
                t.observe(drone, seq)
        if n < holey:
            t.observe(drone, 5000)  # the window slides: some holes are lost
    return t


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--drones", type=int, default=100_000)
    p.add_argument("--holey", type=int, default=2000)
    p.add_argument("--scrapes", type=int, default=30)
    args = p.parse_args(argv)
    t = tracker(args.drones, args.holey)
    lock = threading.Lock()
    held: list[float] = []

    def snapshot() -> tuple[int, int, int, list[tuple[str, int, int]]]:
        start = time.perf_counter()
        with lock:  # what Gateway._seq_snapshot holds
            missing, lost, gaps = t.totals()
            per_drone = t.with_holes(MAX_DRONE_SERIES)
        held.append((time.perf_counter() - start) * 1000)
        return missing, lost, gaps, per_drone

    def old_walk() -> object:
        with lock:
            totals = t.recount()
            return totals, [(d, t.missing(d), s.lost) for d, s in t.drones().items()]

    metrics = GatewayMetrics()
    metrics.add_collector(SeqCollector(snapshot))
    scrape = median_ms(lambda: generate_latest(metrics.registry), args.scrapes)
    print(f"# bench/metrics: {args.drones:,} drones, {args.holey:,} with holes, "
          f"{args.scrapes} scrapes")
    print(f"scrape (generate_latest), median      {scrape:8.2f} ms   target < 10 ms")
    print(f"  of which under the gateway lock     {statistics.median(held):8.3f} ms")
    print(f"before: walk under the lock, median   {median_ms(old_walk, 5):8.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
