"""`presacop evidence gc`: apply the evidence retention (gateway/evidence/gc.py).

    presacop evidence gc --config gateway.toml [--dry-run]

Reads the gateway's config ([evidence] retention_days, [evidence.store], [kafka]), the open
alerts from Kafka (their latest state per alert id), and removes stored objects older than the
retention unless an open alert names them, then old staging leftovers. `--dry-run` prints what
would go and removes nothing. Exit 0, 1 when the store or Kafka cannot be read, 2 for a bad config.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backoffice.verify import VerifyError, kafka_records
from common import kafka
from common.config import ConfigError
from gateway.config import load_config
from gateway.evidence import gc
from gateway.evidence.store import StoreError, open_store


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    g = sub.add_parser("gc", help="remove evidence past its retention (never of open alerts)")
    g.add_argument("--config", type=Path, required=True, help="the gateway's config file")
    g.add_argument("--dry-run", action="store_true", help="print what would go, remove nothing")


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"presacop evidence gc: {exc}", file=sys.stderr)
        return 2
    ev = cfg.evidence
    try:
        alerts = kafka_records(kafka.KafkaSettings.of(cfg.kafka), cfg.kafka.topics.alerts)
        keep = gc.open_alert_evidence(alerts)
        store = open_store(ev.store)
        doomed = list(gc.expired(store.objects(), keep, ev.retention_days))
        verb = "would remove" if args.dry_run else "removed"
        for obj in doomed:
            if not args.dry_run:
                store.delete(obj.sha256)
            print(f"{verb} {obj.uri} ({obj.size} bytes, {gc.age_days(obj):.1f} days old)")
    except (VerifyError, StoreError) as exc:
        print(f"presacop evidence gc: {exc}", file=sys.stderr)
        return 1
    leftovers = gc.stale_staging(Path(ev.staging_dir), ev.retention_days)
    for path in leftovers:
        if not args.dry_run:
            gc.remove_staging(path)
        print(f"{verb} staging {path}")
    print(f"{len(doomed)} object(s) {verb} ({sum(o.size for o in doomed)} bytes), "
          f"{len(keep)} kept for open alerts, {len(leftovers)} staging leftover(s)")
    return 0
