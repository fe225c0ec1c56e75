"""`presacop evidence gc` on a real Kafka (open alerts) and a directory store: objects past the
retention go unless an open alert names them; --dry-run removes nothing."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from backoffice import kafka_clients
from common.config import dump_toml
from gateway.config import load_config
from gateway.evidence.store import DirStore
from presacop.cli import main
from presacop.stack import Stack

DAY = 86400


def _put(store: DirStore, tmp_path: Path, data: bytes, age_days: float) -> str:
    sha = hashlib.sha256(data).hexdigest()
    staged = tmp_path / sha
    staged.write_bytes(data)
    store.put_file(sha, staged, "image/jpeg")
    old = time.time() - age_days * DAY
    os.utime(store.path(sha), (old, old))
    return sha


def test_gc_keeps_open_alerts_evidence_and_young_objects(tmp_path: Path, stack: Stack,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    alerts = f"gc-{time.time_ns()}.alerts"
    config = tmp_path / "gateway.toml"
    config.write_text(dump_toml({
        "kafka": {"bootstrap_servers": stack.kafka_bootstrap, "topics": {"alerts": alerts}},
        "evidence": {"retention_days": 30, "staging_dir": str(tmp_path / "staging"),
                     "store": {"path": str(tmp_path / "store")}},
    }))
    cfg = load_config(config)
    store = DirStore(tmp_path / "store")
    open_old = _put(store, tmp_path, b"open alert", 90)
    resolved_old = _put(store, tmp_path, b"resolved alert", 90)
    orphan_old = _put(store, tmp_path, b"no alert", 31)
    young = _put(store, tmp_path, b"young", 2)
    kafka_clients.ensure_topics(cfg.kafka, [alerts])
    producer = kafka_clients.producer(cfg.kafka)
    for aid, sha, state in (("a1", open_old, "open"), ("a2", resolved_old, "open"),
                            ("a2", resolved_old, "resolved")):
        producer.send(alerts, key=aid.encode(), value=json.dumps(
            {"alert_id": aid, "state": state, "evidence_id": sha[:16]}).encode())
    producer.flush(timeout=60)
    producer.close(timeout=10)

    assert main(["evidence", "gc", "--config", str(config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 object(s) would remove" in out and resolved_old in out and orphan_old in out
    assert {o.sha256 for o in store.objects()} == {open_old, resolved_old, orphan_old, young}

    assert main(["evidence", "gc", "--config", str(config)]) == 0
    assert {o.sha256 for o in store.objects()} == {open_old, young}
