"""The Kafka limit with kafka-python (private helper of bench/gateway.py).

    _kafka_produce.py BOOTSTRAP PLAN_JSON TOPICS_JSON

Builds, before anything is timed, exactly the records the gateway would write for the plan's
messages (`gateway.router.route`: same topics, keys, headers and JSON values, alerts included),
prints "ready", waits for the stdin line "go", then produces them all with the gateway's producer
settings (acks=all, idempotent, linger 5 ms, 64 KiB batches, 5 in flight) as fast as
kafka-python goes, flushes and prints "done <json>" (first send, last ack, send-to-ack latency
percentiles). It then waits for "exit" so the parent can read its CPU and peak RSS.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def gateway_records(plan: Any, topics: Any) -> list[Any]:
    """The OutRecords the gateway writes for every message of `plan` (alerts included)."""
    from _traffic import Messages, now_ms

    from gateway.records import Receipt
    from gateway.router import RouteSettings, route

    settings = RouteSettings(topics=topics)
    out = []
    for p in range(plan.publishers):
        messages = Messages(plan, p)
        for i in range(plan.share(p)):
            topic, payload = messages.encoded(i, now_ms())
            receipt = Receipt(mqtt_topic=topic, received_ms=now_ms(), gateway_id="bench")
            out.extend(route(topic, payload, receipt, settings).records)
    return out


def main() -> int:
    from _traffic import Plan

    from gateway.config import TopicsConfig

    bootstrap, plan_json, topics_json = sys.argv[1:4]
    plan = Plan(**json.loads(plan_json))
    records = gateway_records(plan, TopicsConfig(**json.loads(topics_json)))
    from common.kafka import import_kafka

    producer = import_kafka().KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
        batch_size=65536, max_in_flight_requests_per_connection=5)
    for topic in {r.topic for r in records}:
        producer.partitions_for(topic)  # metadata before the clock starts
    print(f"ready {len(records)}", flush=True)
    for line in sys.stdin:
        if line.strip() == "go":
            break
    sent = [0.0] * len(records)
    acked = [0.0] * len(records)
    errors: list[str] = []

    def on_ack(i: int, _meta: Any) -> None:
        acked[i] = time.perf_counter()

    def on_error(i: int, exc: BaseException) -> None:
        errors.append(f"{type(exc).__name__}: {exc}")

    first_wall, first = time.time(), time.perf_counter()
    for i, r in enumerate(records):
        sent[i] = time.perf_counter()
        future = producer.send(r.topic, value=r.value, key=r.key, headers=list(r.headers))
        future.add_callback(on_ack, i)
        future.add_errback(on_error, i)
    producer.flush()
    last = max(acked)
    lat = sorted((a - s) * 1000 for s, a in zip(sent, acked, strict=True) if a)
    result = {
        "records": len(records), "acked": sum(1 for a in acked if a), "errors": errors[:5],
        "first": first_wall, "last_ack": first_wall + (last - first),
        "p50_ms": lat[len(lat) // 2] if lat else None,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None,
    }
    print("done " + json.dumps(result), flush=True)
    for line in sys.stdin:
        if line.strip() == "exit":
            break
    producer.close(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
