"""Helpers of the console tests: records in the gateway's real formats, a cheap password hasher."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from argon2 import PasswordHasher

import protocol
from gateway.records import Receipt, alert_record, message_record

# argon2id with a small cost: the unit tests hash dozens of passwords (production: 64 MiB, t=3).
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "correct horse battery"
T0 = 1_780_000_000_000


def violation(drone: str, seq: int, code: int | None, plate: str = "ABC1234",
              time_ms: int = T0, evidence_id: str | None = None) -> protocol.Violation:
    header = protocol.Header(drone, seq, time_ms, protocol.TimeSource.GPS)
    return protocol.Violation(header, protocol.Position(40.7128, -74.006, 30.0), plate, "NY",
                              0.62, code, evidence_id or f"{seq:016x}",
                              protocol.Vehicle("TOYOT", "WH", "SUBN"))


def gateway_records(msg: protocol.Violation, topics: dict[str, str],
                    received_ms: int = T0 + 800) -> list[tuple[str, bytes, dict[str, Any]]]:
    """(topic, key, value) of what the gateway writes for `msg`: its violation, and its open
    alert when the code is null."""
    t = protocol.topic(msg.header.drone_id, protocol.kind_of(msg))
    receipt = Receipt(t, received_ms, "gw-test")
    out = [message_record(msg, topics["violations"], receipt, 300_000)]
    if msg.code is None:
        out.append(alert_record(msg, topics["alerts"], receipt))
    return [(r.topic, r.key or b"", json.loads(r.value)) for r in out]


def evidence_record(msg: protocol.Violation, image: bytes, uri: str) -> dict[str, Any]:
    sha = hashlib.sha256(image).hexdigest()
    return {"record_version": "1", "drone_id": msg.header.drone_id,
            "violation_message_id": protocol.message_id(msg), "evidence_id": sha[:16],
            "sha256": sha, "size": len(image), "content_type": "image/jpeg", "uri": uri,
            "stored_ms": T0 + 5_000, "gateway_id": "gw-test"}


# --- Kafka ---------------------------------------------------------------------------------


def settings(bootstrap: str) -> Any:
    from common import kafka

    return kafka.KafkaSettings(bootstrap_servers=bootstrap)


def create_topics(bootstrap: str, names: list[str]) -> None:
    from common import kafka

    admin = kafka.admin(settings(bootstrap))
    try:
        admin.create_topics([kafka.import_kafka().admin.NewTopic(n, 1, 1) for n in names])
    finally:
        admin.close()


def produce(bootstrap: str, records: list[tuple[str, bytes, dict[str, Any]]]) -> None:
    from common import kafka

    producer = kafka.producer(settings(bootstrap), acks="all")
    try:
        for topic, key, value in records:
            producer.send(topic, key=key, value=json.dumps(value).encode())
        producer.flush(timeout=30)
    finally:
        producer.close()


def read_to_end(bootstrap: str, topic: str) -> list[tuple[dict[str, Any], dict[str, bytes]]]:
    """(value, headers) of every record of `topic` up to its end offsets as of the call."""
    from common import kafka
    from tests.support import wait_until

    consumer = kafka.consumer(settings(bootstrap), enable_auto_commit=False)
    try:
        tps = [kafka.import_kafka().TopicPartition(topic, p)
               for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[tuple[dict[str, Any], dict[str, bytes]]] = []

        def at_end() -> bool:
            for records in consumer.poll(timeout_ms=200).values():
                out.extend((json.loads(r.value), dict(r.headers)) for r in records)
            return all(consumer.position(tp) >= end[tp] for tp in tps)

        wait_until(at_end, 60, f"{topic} read to its end offsets {end}", interval=0)
        return out
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topics: list[str]) -> dict[Any, int]:
    from common import kafka

    consumer = kafka.consumer(settings(bootstrap))
    try:
        tps = [kafka.import_kafka().TopicPartition(t, p) for t in topics
               for p in (consumer.partitions_for_topic(t) or ())]
        return dict(consumer.end_offsets(tps))
    finally:
        consumer.close()


def jpeg(text: str) -> bytes:
    """A small evidence-like JPEG: a grey street scene with a plate reading `text`."""
    import cv2
    import numpy as np

    img = np.full((240, 320, 3), 90, np.uint8)
    cv2.rectangle(img, (40, 60), (280, 200), (60, 60, 160), -1)   # the car
    cv2.rectangle(img, (105, 150), (215, 185), (235, 235, 235), -1)  # its plate
    cv2.putText(img, text, (110, 176), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (20, 20, 20), 2)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return buf.tobytes()
