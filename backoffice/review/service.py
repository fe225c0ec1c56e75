"""The console's parts wired together (`Console`); `server.serve` runs it under uvicorn.

Raises: common.config.ConfigError (bad review.toml), ReviewError subclasses from the parts.
"""

from __future__ import annotations

from typing import Any

from common import kafka

from . import audit
from .accounts import Accounts, now_ms
from .config import ReviewConfig
from .db import Database
from .decisions import Decisions, release_all_claims
from .evidence import EvidenceReader
from .kafka_io import AuditForwarder, Feeder, Publisher
from .sessions import LoginThrottle, Sessions
from .view import ALERT, EVIDENCE, VIOLATION


class Console:
    """Everything the pages use. `start()` runs the Kafka feeder and the audit forwarder."""

    def __init__(self, cfg: ReviewConfig, *, accounts: Accounts | None = None) -> None:
        r = cfg.review
        self.cfg = cfg
        self.db = Database(r.state_dir)
        self.accounts = accounts or Accounts(self.db, max_failures=r.max_failures,
                                             lockout_s=r.lockout_s)
        self.sessions = Sessions(self.db, self.db.cookie_key(), idle_s=r.session_idle_min * 60,
                                 max_s=r.session_max_h * 3600)
        self.throttle = LoginThrottle()
        self.secure_cookies = cfg.tls or r.secure_cookies
        settings = kafka.KafkaSettings.of(cfg.kafka)
        topics = cfg.kafka.topics
        self.publisher = Publisher(settings)
        self.decisions = Decisions(self.db, self.publisher.send,
                                   violations_topic=topics.violations, alerts_topic=topics.alerts,
                                   console_id=r.console_id)
        self.feeder = Feeder(self.db, settings, {ALERT: topics.alerts,
                                                 VIOLATION: topics.violations,
                                                 EVIDENCE: topics.evidence},
                             group_id=f"{r.console_id}-view")
        k = cfg.kafka
        create = (k.partitions, k.replication_factor) if k.create_topics else None
        self.forwarder = AuditForwarder(self.db, self.publisher, r.audit_topic, create)
        self.evidence = EvidenceReader(cfg.evidence)

    def audit(self, event: str, account: str, address: str = "", **detail: Any) -> None:
        with self.db.connect() as conn:
            audit.add(conn, event, account, now_ms(), self.cfg.review.console_id, address,
                      **detail)
        self.forwarder.wake.set()

    def start(self) -> None:
        release_all_claims(self.db)
        self.feeder.start()
        self.forwarder.start()

    def stop(self) -> None:
        self.feeder.stop()
        self.forwarder.stop()
        self.publisher.close()
