"""Bench what the gateway's per-drone state costs as the fleet grows (issue 16).

    .venv/bin/python bench/drones.py [--drones 100000] [--messages 200000]

Two figures, no brokers (the gateway's own logic over the in-memory Source and Sink of
gateway/testing.py, so only the work that depends on the number of drones is measured):

- memory per tracked drone: tracemalloc's growth while a `SeqTracker` (the dedupe window, the
  state the gateway keeps per drone) takes `--drones` drones, (a) fresh: 20 seqs each, (b) steady
  state: the window full (4,096 seqs remembered, the `seen` bits set directly, as a drone that
  sent more than a window's worth holds them; observing 400 M seqs would take an hour).
- throughput: CPU us per message through `Gateway.deliver` (route, dedupe, hand-off to the
  Kafka thread, delivery report, ack) in batches of 64, with the same number of messages spread
  over 1,000 distinct drones and over `--drones` distinct drones (every message a new seq).

The /metrics scrape at 100k drones is bench/metrics.py's (issue 14).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from pathlib import Path

# The repository first: bench/gateway.py would otherwise shadow the gateway package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import protocol
from common.config import from_dict
from gateway.config import GatewayConfig
from gateway.dedupe import SeqTracker
from gateway.service import Gateway
from gateway.source import Delivery
from gateway.testing import MemorySink, MemorySource

BATCH = 64


def memory_per_drone(drones: int, full: bool) -> float:
    """Bytes per drone a SeqTracker holds (tracemalloc), fresh or with a full window."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t = SeqTracker(window=4096, max_drones=drones)
    for n in range(drones):
        drone = f"drone-{n:06d}"
        for seq in range(20):
            t.observe(drone, seq, 1_748_779_200_000, 1_748_779_200_000)
        if full:
            state = t.state(drone)
            assert state is not None
            state.top, state.seen = 5_000, (1 << 4097) - 1  # what 5,000 seqs in order leave
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del t
    return used / drones


def payloads(drones: int, messages: int) -> list[Delivery]:
    """`messages` telemetry deliveries, drone n % drones, seq n // drones."""
    now = time.time_ns() // 1_000_000
    pos = protocol.Position(40.7, -74.0, 120.0)
    out = []
    for n in range(messages):
        drone = f"d{n % drones:06d}"
        msg = protocol.Telemetry(protocol.Header(drone, n // drones, now, protocol.TimeSource.GPS),
                                 pos, 90.0, 8.0, 80)
        out.append(Delivery(protocol.topic(drone, protocol.Kind.TELEMETRY),
                            protocol.encode(msg), 1, False, False, n % 65535 + 1, 1))
    return out


def cpu_us_per_msg(drones: int, messages: int) -> float:
    cfg = from_dict(GatewayConfig, {
        "mqtt": {"client_id": "bench-drones"},
        "limits": {"max_drones": max(drones, 1000), "max_in_flight": 1_000_000},
        "metrics": {"address": ""}}, env={})
    source, sink = MemorySource(), MemorySink()
    gw = Gateway(cfg, source=source, sink=sink)
    gw.start()
    try:
        if not gw.wait_ready(30):
            raise RuntimeError("the in-memory gateway did not become ready")
        batch = payloads(drones, messages)
        gc.collect()
        start = time.process_time()
        for i in range(0, len(batch), BATCH):
            source.push(*batch[i:i + BATCH])
        deadline = time.monotonic() + 300
        while len(source.acked) < messages and time.monotonic() < deadline:
            time.sleep(0.01)
        used = time.process_time() - start
        if len(source.acked) < messages:
            raise RuntimeError(f"only {len(source.acked)} of {messages} acknowledged")
    finally:
        gw.stop()
    return used / messages * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--drones", type=int, default=100_000)
    p.add_argument("--messages", type=int, default=200_000)
    args = p.parse_args(argv)
    fresh = memory_per_drone(args.drones, full=False)
    full = memory_per_drone(args.drones, full=True)
    print(f"# bench/drones: {args.drones:,} drones, {args.messages:,} messages per throughput run")
    print(f"dedupe state per drone, 20 seqs seen        {fresh:8.0f} B   "
          f"({fresh * args.drones / 2**20:,.0f} MiB for {args.drones:,})")
    print(f"dedupe state per drone, full 4,096 window   {full:8.0f} B   "
          f"({full * args.drones / 2**20:,.0f} MiB for {args.drones:,})")
    few = cpu_us_per_msg(1000, args.messages)
    many = cpu_us_per_msg(args.drones, args.messages)
    print(f"Gateway.deliver CPU, 1,000 drones           {few:8.1f} us/msg")
    print(f"Gateway.deliver CPU, {args.drones:,} drones       {many:8.1f} us/msg "
          f"({many / few:.2f}x)")
    print("(in-memory Source/Sink: the gateway's logic only, no MQTT or Kafka client cost; "
          "CPU of the whole process, the Kafka thread included)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
