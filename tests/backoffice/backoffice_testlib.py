"""Helpers of the back-office tests: a config for the test stack, reading a topic back whole."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from backoffice import kafka_clients
from backoffice.config import BackofficeConfig, load_config


def write_config(tmp: Path, bootstrap: str, **sections: dict[str, Any]) -> Path:
    """A backoffice.toml for the test stack with topics unique to this test; returns its path."""
    tag = uuid.uuid4().hex[:8]
    tables: dict[str, dict[str, Any]] = {
        "kafka": {"bootstrap_servers": bootstrap, "partitions": 3},
        "kafka.topics": {name: f"t{tag}.{name}" for name in
                         ("telemetry", "violations", "alerts", "deadletter")},
        "history": {"topic": f"t{tag}.history", "state_dir": str(tmp / "history-state")},
        "stats": {"evidence_topic": f"t{tag}.evidence"},
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
