"""Helpers of the back-office tests: a config for the test stack, reading a topic back whole."""

from __future__ import annotations

import dataclasses
import json
import random
import uuid
from pathlib import Path
from typing import Any

from backoffice import kafka_clients
from backoffice.config import BackofficeConfig, load_config
from gateway.config import TopicsConfig


def write_config(tmp: Path, bootstrap: str, **sections: dict[str, Any]) -> Path:
    """A backoffice.toml for the test stack with topics unique to this test; returns its path."""
    tag = uuid.uuid4().hex[:8]
    tables: dict[str, dict[str, Any]] = {
        "kafka": {"bootstrap_servers": bootstrap, "partitions": 3},
        # Every topic the gateway's config knows, so each test has its own.
        "kafka.topics": {f.name: f"t{tag}.{f.name}" for f in dataclasses.fields(TopicsConfig)},
        "history": {"topic": f"t{tag}.history", "state_dir": str(tmp / "history-state")},
        "stats": {"archive_dir": str(tmp / "archive"), "stats_dir": str(tmp / "stats"),
                  "checkpoint_dir": str(tmp / "checkpoints")},
    }
    for name, values in sections.items():
        tables.setdefault(name, {}).update(values)
    lines = []
    for name, values in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path = tmp / "backoffice.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def read_topic(cfg: BackofficeConfig, topic: str) -> list[Any]:
    """Every record of `topic` now in Kafka (kafka-python ConsumerRecords), all partitions."""
    consumer = kafka_clients.consumer(cfg.kafka)
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        tps = [kafka_clients.topic_partition(topic, p) for p in parts]
        if not tps:
            return []
        ends = consumer.end_offsets(tps)
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=500).values():
                out += records
        return out
    finally:
        consumer.close()


def topic_size(cfg: BackofficeConfig, topic: str) -> int:
    """Records in `topic` (sum of end offsets: nothing is deleted in these tests)."""
    consumer = kafka_clients.consumer(cfg.kafka)
    try:
        parts = consumer.partitions_for_topic(topic) or ()
        tps = [kafka_clients.topic_partition(topic, p) for p in parts]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


def values(records: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in records]


__all__ = ["load_config", "read_topic", "topic_size", "values", "write_config"]


def produce(cfg: BackofficeConfig, topic: str, records: list[tuple[str | None, dict[str, Any]]]
            ) -> None:
    """Write (key, JSON value) records to `topic` and wait for Kafka's acknowledgement."""
    kafka_clients.ensure_topics(cfg.kafka, [topic])
    producer = kafka_clients.producer(cfg.kafka, linger_ms=5)
    try:
        for key, value in records:
            producer.send(topic, key=key.encode() if key else None,
                          value=json.dumps(value).encode())
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)


# Points in each borough and one outside NYC, for drone positions.
POINTS = ((40.7128, -74.0060), (40.8296, -73.9262), (40.6782, -73.9442), (40.7282, -73.7949),
          (40.5795, -74.1502), (41.5000, -74.0000))


def drone_violations(rng: random.Random, count: int, first_seq: int,
                     pending_share: float = 0.1) -> list[dict[str, Any]]:
    """Violation records as the gateway writes them (revision 0), some unqualified."""
    out = []
    for seq in range(first_seq, first_seq + count):
        drone = f"drone-{seq % 3}"
        time_ms = 1_780_000_000_000 + rng.randint(0, 3 * 86_400_000) // 40 * 40
        lat, lon = rng.choice(POINTS)
        code = None if rng.random() < pending_share else rng.choice((14, 21, 38, 46, 40))
        out.append({"schema": "1.0", "kind": "violation", "message_id": f"{drone}:{seq}",
                    "drone_id": drone, "seq": seq, "time_ms": time_ms, "lat_deg": lat,
                    "lon_deg": lon, "plate": "ABC1234", "region": "NY", "code": code,
                    "qualified": code is not None, "record_version": "1",
                    "received_ms": time_ms + 800, "code_status": "drone" if code else "pending",
                    "revision": 0})
    return out


def officer_decision(violation: dict[str, Any], code: int, decided_ms: int,
                     revision: int = 1) -> dict[str, Any]:
    """The corrected record of contract 2 (NOTES.md): officer_set or officer_changed."""
    changed = violation["code"] is not None
    return {**violation, "code": code, "qualified": True,
            "code_status": "officer_changed" if changed else "officer_set",
            "original_code": violation["code"], "officer": "officer-1",
            "decided_ms": decided_ms, "revision": revision}
