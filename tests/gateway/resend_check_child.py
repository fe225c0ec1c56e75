"""Child process of test_gateway_resend_check_kafka.py: a RetryingProducer over the real sink
(`factory.make_sink` with its `LandedReader`), wrapped so that each record's first attempt
reports a delivery timeout, after Kafka acknowledged it (`written`: the answer lost) or without
sending it. Produces one telemetry and one evidence record and prints, as one JSON line, the
outcomes, the reader's counts, the attempts per record and the records' ids.

    python tests/gateway/resend_check_child.py BOOTSTRAP PREFIX BACKEND written|never-sent

A process of its own, as the gateway is: kafka-python 3.0 may leave a socket unclosed when a
client is closed while it connects, and the ResourceWarning must not land in another test.
"""

from __future__ import annotations

import collections
import json
import sys
import time
from typing import Any

import protocol
from gateway.config import KafkaConfig, TopicsConfig
from gateway.errors import SinkError
from gateway.evidence.intake import evidence_record
from gateway.factory import make_sink
from gateway.landed import LandedReader
from gateway.records import OutRecord, Receipt, message_record
from gateway.retrying import RetryingProducer
from gateway.sink import Report, Sink

TIMEOUT = SinkError("KafkaTimeoutError: 1 record(s) expired (test)", retriable=True)
EVIDENCE_ID = "00000000000004a4"


class FirstAttemptTimesOut:
    """The real sink, except that each record's first attempt reports TIMEOUT: after Kafka
    acknowledged it (`written`), or instead of sending it."""

    def __init__(self, sink: Sink, *, written: bool) -> None:
        self._sink, self._written = sink, written
        self.attempts: collections.Counter[OutRecord] = collections.Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sink, name)

    def send(self, batch: Any, report: Report) -> None:
        first, later = [], []
        for token, record in batch:
            self.attempts[record] += 1
            (first if self.attempts[record] == 1 else later).append((token, record))
        if later:
            self._sink.send(later, report)
        if first and self._written:
            self._sink.send(first, lambda token, outcome: report(token, outcome or TIMEOUT))
        elif first:
            for token, _ in first:
                report(token, TIMEOUT)


def records(topics: TopicsConfig, drone: str) -> list[OutRecord]:
    now_ms = time.time_ns() // 1_000_000
    msg = protocol.Telemetry(protocol.Header(drone, 7, now_ms, protocol.TimeSource.GPS),
                             protocol.Position(40.7, -74.0, 30.0), 90.0, 7.5, 80)
    receipt = Receipt(f"presacop/v1/drones/{drone}/telemetry", now_ms, "gw-test")
    manifest = protocol.EvidenceManifest(drone, EVIDENCE_ID, "0" * 64, 10, 1024, "image/jpeg", 7)
    return [message_record(msg, topics.telemetry, receipt, 300_000),
            evidence_record(manifest, "file:///e", now_ms, "gw-test", topics.evidence)]


def main(bootstrap: str, prefix: str, backend: str, mode: str) -> None:
    topics = TopicsConfig(**{k: f"{prefix}.{k}" for k in
                             ("telemetry", "violations", "alerts", "deadletter", "evidence")})
    cfg = KafkaConfig(bootstrap_servers=bootstrap, topics=topics, partitions=3,
                      backend=backend)  # type: ignore[arg-type]
    reader = LandedReader(cfg, prefix, timeout_s=30)
    sink = FirstAttemptTimesOut(make_sink(cfg, prefix, reader), written=mode == "written")
    rp = RetryingProducer(sink, retry_min_s=0.05, retry_max_s=0.5)  # type: ignore[arg-type]
    outcomes: list[SinkError | None] = []
    wanted = records(topics, f"{prefix}-drone")
    rp.start()
    rp.submit_many([(r, outcomes.append) for r in wanted])
    done = rp.wait_idle(90)
    rp.stop()
    print(json.dumps({"done": done, "outcomes": [None if o is None else str(o) for o in outcomes],
                      "counts": reader.snapshot(),
                      "attempts": [sink.attempts[r] for r in wanted],
                      "message_id": dict(wanted[0].headers)["message-id"].decode(),
                      "evidence_id": EVIDENCE_ID}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
