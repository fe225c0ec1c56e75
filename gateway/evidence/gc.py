"""Retention of stored evidence: what `presacop evidence gc` removes (pure decisions; the command
in backoffice/evidence.py does the I/O).

An object goes when it is older than `evidence.retention_days` AND no open alert names its
evidence id (an officer still has to look at it). Staging leftovers go too: outcomes of finished
uploads (`<drone>/<id>.done`, kept so late copies of chunks are recognised) and abandoned uploads
(a drone that never came back), both older than the retention.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from gateway.evidence.store import StoredObject, age_days

__all__ = ["age_days", "expired", "open_alert_evidence", "remove_staging", "stale_staging"]


def open_alert_evidence(alert_records: Iterable[Mapping[str, Any]]) -> set[str]:
    """Evidence ids of alerts whose latest state (records in topic order) is open."""
    latest: dict[str, Mapping[str, Any]] = {}
    for record in alert_records:
        if "alert_id" in record:
            latest[str(record["alert_id"])] = record
    return {str(r["evidence_id"]) for r in latest.values()
            if r.get("state") == "open" and r.get("evidence_id")}


def expired(objects: Iterable[StoredObject], keep: set[str], retention_days: float,
            now_s: float | None = None) -> Iterator[StoredObject]:
    """Objects older than the retention whose evidence id (sha256[:16]) is not in `keep`."""
    now = time.time() if now_s is None else now_s
    for obj in objects:
        if age_days(obj, now) > retention_days and obj.sha256[:16] not in keep:
            yield obj


def stale_staging(root: Path, retention_days: float, now_s: float | None = None) -> list[Path]:
    """Outcome files and upload directories under `root` untouched for longer than the
    retention."""
    now = time.time() if now_s is None else now_s
    limit = now - retention_days * 86400
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("*/*") if p.stat().st_mtime < limit
                  and (p.suffix == ".done" or p.is_dir()))


def remove_staging(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
