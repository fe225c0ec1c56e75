"""Every Kafka client in the shipped packages is built by common/kafka.py, with the configured
security settings (issue 14: the old review CLI built its own and dropped SASL/TLS). bench/ (local
plaintext measurements) and tests/ may build their own."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("protocol", "common", "drone_agent", "gateway", "hw_sim", "backoffice", "presacop")
# Constructors of kafka-python and confluent-kafka clients, however they were imported.
BUILDS = re.compile(r"\b(KafkaConsumer|KafkaProducer|KafkaAdminClient|KafkaClient)\s*\(|"
                    r"\bconfluent_kafka(\.admin)?\s+import\s+.*\b(Producer|Consumer|AdminClient)\b|"
                    r"\b(Producer|Consumer|AdminClient)\s*\(\s*\{")


def test_only_common_kafka_builds_kafka_clients() -> None:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "common/kafka.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if BUILDS.search(line) and not line.lstrip().startswith("#"):
                    found.append(f"{rel}:{number}: {line.strip()}")
    assert found == [], "build Kafka clients with common.kafka:\n" + "\n".join(found)


def test_the_pattern_catches_what_it_must() -> None:
    for line in ("c = KafkaConsumer(topic, bootstrap_servers=b)", "k.KafkaProducer(**o)",
                 "from confluent_kafka import Producer", "p = Producer({'bootstrap.servers': b})",
                 "from confluent_kafka.admin import AdminClient"):
        assert BUILDS.search(line), line
