"""The review step for alerts, minimal: list open alerts, resolve one with the officer's code.

    python -m gateway.review --config gateway.toml list
    python -m gateway.review --config gateway.toml resolve ALERT_ID CODE --officer PO-1234

`list` prints the open alerts (latest state per alert id) as JSON lines. `resolve` writes the
alert's next state to the alerts topic, keyed by alert id: `state: "resolved"`, the code,
`code_set_by: "officer"`, the officer and the time (docs/kafka-records.md). Exit codes: 0, 1 when
the alert is unknown or not open or the code is not a DOF code, 2 for a bad config.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any

from .config import GatewayConfig, load_config
from .records import CONTENT_TYPE, RECORD_VERSION, resolved_alert


def latest_alerts(cfg: GatewayConfig, timeout_s: float = 10.0) -> dict[str, dict[str, Any]]:
    """alert id -> its latest record, reading the whole alerts topic."""
    latest: dict[str, dict[str, Any]] = {}
    for value in _read_all(cfg, cfg.kafka.topics.alerts, timeout_s):
        latest[value["alert_id"]] = value
    return latest


def resolve(cfg: GatewayConfig, alert_id: str, code: int, officer: str) -> dict[str, Any]:
    """Write the resolved state of an open alert and return it.

    Raises LookupError if the alert is unknown, ValueError if it is not open or the code is
    not a DOF violation code.
    """
    current = latest_alerts(cfg).get(alert_id)
    if current is None:
        raise LookupError(f"no alert {alert_id} in {cfg.kafka.topics.alerts}")
    record = resolved_alert(current, code, officer, time.time_ns() // 1_000_000)
    producer = _kafka().KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap_servers.split(","),
                                      acks="all", enable_idempotence=True)
    try:
        headers = [("content-type", CONTENT_TYPE), ("record-type", b"alert"),
                   ("record-version", RECORD_VERSION.encode()),
                   ("message-id", record["message_id"].encode())]
        producer.send(cfg.kafka.topics.alerts, key=alert_id.encode(),
                      value=json.dumps(record, separators=(",", ":")).encode(),
                      headers=headers).get(timeout=30)
    finally:
        producer.close()
    return record


def _read_all(cfg: GatewayConfig, topic: str, timeout_s: float) -> Iterator[dict[str, Any]]:
    kafka = _kafka()
    consumer = kafka.KafkaConsumer(bootstrap_servers=cfg.kafka.bootstrap_servers.split(","),
                                   enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [kafka.TopicPartition(topic, p) for p in parts]
        if not tps:
            return
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(consumer.position(tp) < end[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    yield json.loads(r.value)
    finally:
        consumer.close()


def _kafka() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # kafka-python 3.0 at import time
        import kafka
    return kafka


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.review", description=__doc__)
    parser.add_argument("--config", "-c", default=None, help="the gateway's TOML config")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="print open alerts as JSON lines")
    res = sub.add_parser("resolve", help="set the code of an open alert")
    res.add_argument("alert_id")
    res.add_argument("code", type=int)
    res.add_argument("--officer", required=True, help="who sets the code (recorded)")
    args = parser.parse_args(argv)
    from common.config import ConfigError

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"bad config: {exc}", file=sys.stderr)
        return 2
    if args.action == "list":
        for alert in latest_alerts(cfg).values():
            if alert.get("state") == "open":
                print(json.dumps(alert))
        return 0
    try:
        print(json.dumps(resolve(cfg, args.alert_id, args.code, args.officer)))
    except (LookupError, ValueError) as exc:
        print(f"cannot resolve: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
