"""Evidence images for the queue, read through the evidence store (`gateway.evidence.store`,
the `[evidence.store]` section: the same keys as the gateway's).

Raises: EvidenceMissing when the store has no such object (yet), cannot be reached, or returns
bytes whose SHA-256 is not the one asked for: the page shows a placeholder instead.
"""

from __future__ import annotations

import dataclasses
import hashlib

from gateway.evidence.config import StoreConfig
from gateway.evidence.store import StoreError, open_store

from .errors import ReviewError


class EvidenceMissing(ReviewError):
    reason = "evidence_missing"


@dataclasses.dataclass(frozen=True)
class EvidenceConfig:
    store: StoreConfig = dataclasses.field(default_factory=StoreConfig)


class EvidenceReader:
    """Reads images by SHA-256 from the configured store, checking what comes back."""

    def __init__(self, cfg: EvidenceConfig) -> None:
        self._store = open_store(cfg.store)

    def get(self, sha256: str) -> bytes:
        try:
            body = self._store.get(sha256)
        except StoreError as exc:
            raise EvidenceMissing(f"evidence {sha256[:16]}: {exc}") from exc
        if hashlib.sha256(body).hexdigest() != sha256:
            raise EvidenceMissing(f"evidence {sha256[:16]}: the stored bytes do not match "
                                  "their SHA-256")
        return body
