"""Uploads in progress, on disk: one directory per (drone, evidence id), one file per chunk.

    <root>/<drone_id>/<evidence_id>/manifest        the manifest payload as received
    <root>/<drone_id>/<evidence_id>/<index>.part    one chunk each (temporary file, fsync, rename)
    <root>/<drone_id>/<evidence_id>.done            outcome: {"state": "stored"|"rejected", ...}

A chunk is durable once its `.part` exists, so what a gateway reports to a drone (the contiguous
prefix of staged chunks) survives a gateway crash, a restart, and, when the gateways of a share
group share this directory, a different gateway taking over: chunks of one upload may reach any
member of the group, and whichever stages the last one assembles the object. Assembly streams
the chunks through SHA-256 into one file (never a whole image in memory) under an exclusive
`flock`, so two gateways never finish one upload twice at once.

The `.done` outcome makes late copies harmless: a redelivered chunk of a finished upload is
dropped, a re-sent manifest gets the same answer again. `presacop evidence gc` removes old ones.

Raises: OSError from the file system (disk full: ENOSPC), nothing else.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from common.files import write_durably
from protocol import EvidenceManifest, chunk_span

PART = ".part"


class Staging:
    """The staging directory. Thread-safe; several processes may share it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._used: int | None = None  # bytes staged, counted lazily (a scan at first use)

    # -- paths ---------------------------------------------------------------------------------

    def upload_dir(self, drone_id: str, evidence_id: str) -> Path:
        return self.root / drone_id / evidence_id

    def _done_path(self, drone_id: str, evidence_id: str) -> Path:
        return self.root / drone_id / f"{evidence_id}.done"

    # -- manifests and outcomes --------------------------------------------------------------

    def manifest(self, drone_id: str, evidence_id: str) -> bytes | None:
        """The staged manifest payload, or None when no upload is in progress."""
        try:
            return (self.upload_dir(drone_id, evidence_id) / "manifest").read_bytes()
        except OSError:  # absent, or staging unusable (then staging it fails and says why)
            return None

    def begin(self, drone_id: str, evidence_id: str, payload: bytes) -> None:
        """Stage a new upload's manifest durably."""
        folder = self.upload_dir(drone_id, evidence_id)
        folder.mkdir(parents=True, exist_ok=True)
        write_durably(folder / "manifest", payload)

    def outcome(self, drone_id: str, evidence_id: str) -> dict[str, str] | None:
        """The recorded outcome of a finished upload, or None."""
        try:
            return json.loads(self._done_path(drone_id, evidence_id).read_bytes())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return None

    def finish(self, drone_id: str, evidence_id: str, outcome: dict[str, str]) -> None:
        """Record the outcome, then remove the upload's chunks."""
        (self.root / drone_id).mkdir(parents=True, exist_ok=True)
        write_durably(self._done_path(drone_id, evidence_id), json.dumps(outcome).encode())
        self.discard(drone_id, evidence_id)

    def mark_storing(self, drone_id: str, evidence_id: str) -> None:
        """The object is in the store and its record on its way to Kafka (see `storing_age`)."""
        write_durably(self.upload_dir(drone_id, evidence_id) / "storing", b"")

    def storing_age(self, drone_id: str, evidence_id: str) -> float | None:
        """Seconds since `mark_storing`, or None."""
        try:
            marker = self.upload_dir(drone_id, evidence_id) / "storing"
            return time.time() - marker.stat().st_mtime
        except OSError:
            return None

    def discard(self, drone_id: str, evidence_id: str) -> None:
        folder = self.upload_dir(drone_id, evidence_id)
        freed = sum(p.stat().st_size for p in folder.glob(f"*{PART}")) if folder.is_dir() else 0
        shutil.rmtree(folder, ignore_errors=True)
        self._account(-freed)

    # -- chunks ----------------------------------------------------------------------------------

    def put_chunk(self, drone_id: str, evidence_id: str, index: int, data: bytes) -> bool:
        """Stage chunk `index` durably. False if it was already staged (a redelivery)."""
        target = self.upload_dir(drone_id, evidence_id) / f"{index}{PART}"
        if target.exists():
            return False
        write_durably(target, data)
        self._account(len(data))
        return True

    def staged(self, drone_id: str, evidence_id: str) -> set[int]:
        folder = self.upload_dir(drone_id, evidence_id)
        found: set[int] = set()
        with contextlib.suppress(OSError):
            for entry in os.scandir(folder):
                stem, dot, ext = entry.name.partition(".")
                if dot and ext == "part" and stem.isdigit():
                    found.add(int(stem))
        return found

    def next_missing(self, drone_id: str, evidence_id: str, total: int) -> int:
        """The first chunk index not staged (`total` when all are): where the drone resumes."""
        have = self.staged(drone_id, evidence_id)
        return next((i for i in range(total) if i not in have), total)

    @contextlib.contextmanager
    def locked(self, drone_id: str, evidence_id: str) -> Iterator[None]:
        """Exclusive across threads and processes sharing this directory."""
        folder = self.upload_dir(drone_id, evidence_id)
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder.parent / f".{evidence_id}.lock", os.O_CREAT | os.O_RDWR, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def assemble(self, manifest: EvidenceManifest) -> tuple[Path, str, int]:
        """Concatenate the staged chunks into one fsync'ed file, streaming them through SHA-256.
        Returns (path, sha256 hex, size). A chunk of the wrong length makes the size differ."""
        folder = self.upload_dir(manifest.drone_id, manifest.evidence_id)
        out = folder / f"object.{os.getpid()}.{threading.get_ident()}.tmp"
        digest, size = hashlib.sha256(), 0
        with open(out, "wb") as fh:
            for index in range(manifest.chunks):
                data = (folder / f"{index}{PART}").read_bytes()  # one chunk in memory
                digest.update(data)
                size += len(data)
                fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return out, digest.hexdigest(), size

    @staticmethod
    def fits(manifest: EvidenceManifest, index: int, length: int) -> bool:
        """True if chunk `index` of `length` bytes lies exactly where the manifest puts it."""
        try:
            return chunk_span(manifest, index)[1] == length
        except ValueError:
            return False

    # -- accounting ----------------------------------------------------------------------------

    @property
    def used_bytes(self) -> int:
        with self._lock:
            if self._used is None:
                self._used = sum(p.stat().st_size for p in self.root.glob(f"*/*/*{PART}"))
            return self._used

    def _account(self, delta: int) -> None:
        with self._lock:
            if self._used is not None:
                self._used = max(0, self._used + delta)
