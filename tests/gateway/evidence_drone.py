"""A drone's upload path in-process for the evidence tests: the agent's real Outbox, EvidenceStore,
Uploader and Publisher on a real broker, without camera or recognizer (images are added by hand)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from drone_agent import messages
from drone_agent.config import MqttConfig
from drone_agent.evidence import EvidenceStore
from drone_agent.hardware import Fix, PowerReading
from drone_agent.outbox import Outbox
from drone_agent.publisher import Publisher
from drone_agent.uploader import Uploader
from protocol import Kind, StatusFlags, TimeSource, topic

FIX = Fix(40.75, -73.99, 30.0, 90.0, 5.0)


class Drone:
    def __init__(self, tmp_path: Path, drone_id: str, port: int, **upload: Any) -> None:
        """`upload`: more Uploader options (e.g. `check_receipt`)."""
        self.dir = tmp_path / "drone"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.drone_id = drone_id
        self.outbox = Outbox(self.dir / "outbox.sqlite3")
        self.uploader: Uploader | None = None
        self.store = EvidenceStore(self.dir / "evidence", quota_bytes=10**8,
                                   referenced=lambda: self.uploader.unconfirmed()
                                   if self.uploader else set())
        self.uploader = Uploader(self.dir / "uploads.sqlite3", drone_id,
                                 file_for=self.store.path, delete=self.store.remove,
                                 chunk_size=1024, budget_bps=50_000, **upload)
        cfg = MqttConfig(port=port, backoff_min_s=0.1, backoff_max_s=0.5, keepalive_s=5)
        self.publisher = Publisher(cfg, drone_id, self.outbox, make_status=self._status,
                                   topic_for=lambda kind: topic(drone_id, Kind(kind)),
                                   uploader=self.uploader)

    def _status(self, seq: int, online: bool) -> bytes:
        return messages.status(messages.header(self.drone_id, seq, time.time(),
                                               TimeSource.NTP), online)

    def add_image(self, data: bytes) -> tuple[str, Path]:
        """Store an image and queue its upload (as the agent does after a violation)."""
        ident = self.store.put(data)
        assert self.uploader is not None
        self.uploader.enqueue(ident, self.outbox.reserve_seq(), data)
        return ident, self.store.path(ident)

    def telemetry(self) -> int:
        def build(seq: int) -> bytes:
            hdr = messages.header(self.drone_id, seq, time.time(), TimeSource.NTP)
            return messages.telemetry(hdr, FIX, FIX, PowerReading(80), StatusFlags.NONE)

        seq = self.outbox.put("telemetry", build)
        assert seq is not None
        return seq

    def state(self, ident: str) -> str | None:
        db = sqlite3.connect(self.dir / "uploads.sqlite3")
        try:
            row = db.execute("SELECT state FROM uploads WHERE evidence_id=?", (ident,)).fetchone()
        finally:
            db.close()
        return None if row is None else str(row[0])

    def start(self) -> None:
        self.publisher.start()

    def __enter__(self) -> Drone:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.publisher.stop(time.monotonic() + 5)
        self.outbox.close()
        assert self.uploader is not None
        self.uploader.close()
