"""How long the gateway's dedupe seed (gateway.seed.TailReader) takes, on a private Kafka.

Writes N telemetry-like records (the gateway's headers, 200-byte values, 100 drones) to a fresh
3-partition topic, then times `TailReader.read()` over it with the default bounds (20,000 newest
per partition) and prints records, ids, seconds and records/s.

    .venv/bin/python bench/seed.py [--records 60000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# The repository root first: bench/gateway.py would otherwise shadow the gateway package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import kafka
from gateway.config import KafkaConfig
from gateway.seed import TailReader
from presacop.stack import Kafka, free_ports


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--records", type=int, default=60_000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker = Kafka(Path(tmp) / "kafka", *free_ports(2))
        broker.start(timeout=180)
        try:
            run(broker.bootstrap, args.records)
        finally:
            broker.stop()


def run(bootstrap: str, n: int) -> None:
    k = kafka.import_kafka()
    settings = kafka.KafkaSettings(bootstrap_servers=bootstrap)
    admin = kafka.admin(settings)
    admin.create_topics([k.admin.NewTopic("bench.telemetry", 3, 1),
                         k.admin.NewTopic("bench.violations", 3, 1)])
    admin.close()
    producer = kafka.producer(settings, linger_ms=20, batch_size=256 * 1024)
    value = b"x" * 200
    for i in range(n):
        drone = f"bench-{i % 100:04d}"
        headers = [("content-type", b"application/json"), ("record-type", b"telemetry"),
                   ("message-id", f"{drone}:{i // 100}".encode())]
        producer.send("bench.telemetry", key=drone.encode(), value=value, headers=headers)
    producer.flush()
    producer.close()
    cfg = KafkaConfig(bootstrap_servers=bootstrap)
    reader = TailReader(cfg, ("bench.telemetry", "bench.violations"), "bench-seed")
    started = time.monotonic()
    seeded = reader.read()
    took = time.monotonic() - started
    print(f"seed: {n} records written; read {seeded.records} records ({seeded.ids} ids, "
          f"{len(seeded.seqs)} drones, {seeded.partitions} partitions) in {took:.2f} s = "
          f"{seeded.records / took:,.0f} records/s")


if __name__ == "__main__":
    main()
