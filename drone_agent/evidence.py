"""The evidence store: one JPEG per violating frame, named by its content, under a disk quota.

The id is the first 8 bytes of the SHA-256 of the JPEG bytes as 16 lowercase hex characters (the
wire's `evidence_id`), so the same image always gets the same name and a re-sent violation points
at the same file. Files are written atomically (temporary file, fsync, rename, fsync of the
directory): after a crash a file is either complete or absent.

Quota: before a write would exceed `quota_bytes` or leave less than `min_free_bytes` free on the
file system, the oldest files are deleted, but never one referenced by an undelivered message
(the `referenced` callable, normally `Outbox.referenced_evidence`) nor one pinned by a write in
progress. If that cannot make room, `put` raises `EvidenceRefused`, counts it and raises the
DISK_LOW state; nothing referenced is ever deleted.

Raises: `EvidenceRefused`; `OSError` for I/O failures other than running out of room.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from common.files import write_durably
from drone_agent.errors import EvidenceRefused

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

ID_RE = re.compile(r"[0-9a-f]{16}")
LOW_FRACTION = 0.9  # DISK_LOW once undelivered evidence fills this share of the quota


def evidence_id(jpeg: bytes) -> str:
    """The content id of a JPEG: first 8 bytes of its SHA-256, 16 lowercase hex characters."""
    return hashlib.sha256(jpeg).digest()[:8].hex()


def encode_jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    """JPEG bytes of a BGR image. Raises `ValueError` if OpenCV cannot encode it."""
    import cv2  # heavy; only the agent's recognize thread needs it

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"cv2.imencode failed for an image of shape {image.shape}")
    return buf.tobytes()  # type: ignore[no-any-return]


class EvidenceStore:
    """Content-addressed JPEG files under `directory`, within `quota_bytes`. Thread-safe."""

    def __init__(self, directory: str | Path, *, quota_bytes: int, min_free_bytes: int = 0,
                 referenced: Callable[[], set[str]] = set,
                 disk_free: Callable[[Path], int] | None = None) -> None:
        """Open the store, creating `directory`, removing half-written temporary files."""
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.quota_bytes = quota_bytes
        self.min_free_bytes = min_free_bytes
        self._referenced = referenced
        self._disk_free = disk_free or (lambda p: shutil.disk_usage(p).free)
        self._lock = threading.Lock()
        self._files: OrderedDict[str, int] = OrderedDict()  # id -> size, oldest first
        self._pins: dict[str, int] = {}
        self._used = 0
        self._refusing = False
        self.written = 0
        self.evicted = 0
        self.refused = 0
        self.uploaded = 0  # deleted after the back office confirmed them
        self._scan()

    def _scan(self) -> None:
        found = []
        for entry in os.scandir(self.directory):
            if entry.name.endswith(".tmp"):
                os.unlink(entry.path)  # a write interrupted by a crash: never renamed, never used
                continue
            stem, dot, ext = entry.name.partition(".")
            if ext == "jpg" and dot and ID_RE.fullmatch(stem):
                st = entry.stat()
                found.append((st.st_mtime_ns, stem, st.st_size))
        for _mtime, ident, size in sorted(found):
            self._files[ident] = size
            self._used += size

    # -- public API ---------------------------------------------------------------------------

    def path(self, ident: str) -> Path:
        """Where evidence `ident` lives (whether or not it exists). Raises `ValueError`."""
        if not ID_RE.fullmatch(ident):
            raise ValueError(f"not an evidence id: {ident!r}")
        return self.directory / f"{ident}.jpg"

    def __contains__(self, ident: object) -> bool:
        return ident in self._files

    def put(self, jpeg: bytes, *, pin: bool = False) -> str:
        """Store `jpeg` and return its id; `pin` protects it from eviction until `unpin`.

        Raises `EvidenceRefused` (with the id) if no room can be made without deleting
        referenced or pinned evidence."""
        ident = evidence_id(jpeg)
        with self._lock:
            if pin:
                self._pins[ident] = self._pins.get(ident, 0) + 1
            try:
                self._store(ident, jpeg)
            except BaseException:
                if pin:
                    self._unpin(ident)
                raise
        return ident

    def unpin(self, ident: str) -> None:
        """Release one `put(pin=True)`."""
        with self._lock:
            self._unpin(ident)

    def remove(self, ident: str) -> None:
        """Delete evidence `ident` (the back office confirmed it has it), pinned or not."""
        with self._lock:
            if ident in self._files:
                self._delete(ident)
                self.evicted -= 1  # a confirmed upload, not an eviction
                self.uploaded += 1

    def save_frame(self, image: np.ndarray, quality: int = 85, *, pin: bool = False) -> str:
        """Encode `image` as JPEG and `put` it. Raises `EvidenceRefused`, `ValueError`."""
        return self.put(encode_jpeg(image, quality), pin=pin)

    @property
    def used_bytes(self) -> int:
        return self._used

    @property
    def count(self) -> int:
        return len(self._files)

    def is_low(self) -> bool:
        """DISK_LOW: a write was refused since the last successful one, free space is under
        `min_free_bytes`, or undelivered evidence fills most of the quota."""
        if self._refusing:
            return True
        if self._free() < self.min_free_bytes:
            return True
        if self._used < LOW_FRACTION * self.quota_bytes:
            return False
        refs = self._referenced()
        with self._lock:
            held = sum(size for ident, size in self._files.items() if ident in refs)
        return held >= LOW_FRACTION * self.quota_bytes

    # -- internals ----------------------------------------------------------------------------

    def _store(self, ident: str, jpeg: bytes) -> None:
        if ident in self._files:
            self._files.move_to_end(ident)  # referenced again: now the newest
            return
        self._make_room(ident, len(jpeg))
        try:
            self._write(ident, jpeg)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                self._refuse(ident, f"disk full while writing ({exc.strerror})")
            raise
        self._files[ident] = len(jpeg)
        self._used += len(jpeg)
        self.written += 1
        self._refusing = False

    def _make_room(self, ident: str, size: int) -> None:
        need = max(0, self._used + size - self.quota_bytes,
                   self.min_free_bytes + size - self._free())
        if not need:
            return
        if size > self.quota_bytes:
            self._refuse(ident, f"{size} bytes exceed the whole quota of {self.quota_bytes}")
        keep = self._referenced() | set(self._pins)
        victims, freed = [], 0
        for old, old_size in self._files.items():
            if freed >= need:
                break
            if old not in keep:
                victims.append(old)
                freed += old_size
        if freed < need:
            self._refuse(ident, f"needs {need} bytes but only {freed} can be freed: the rest is "
                                "evidence for undelivered violations")
        for old in victims:
            self._delete(old)

    def _refuse(self, ident: str, reason: str) -> None:
        self.refused += 1
        self._refusing = True
        log.error("evidence %s refused: %s", ident, reason)
        raise EvidenceRefused(ident, reason)

    def _delete(self, ident: str) -> None:
        # Someone may have cleaned up by hand; the bookkeeping still has to shrink.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(ident))
        self._used -= self._files.pop(ident)
        self.evicted += 1

    def _write(self, ident: str, data: bytes) -> None:
        write_durably(self.path(ident), data)

    def _unpin(self, ident: str) -> None:
        left = self._pins.get(ident, 0) - 1
        if left > 0:
            self._pins[ident] = left
        else:
            self._pins.pop(ident, None)

    def _free(self) -> int:
        return self._disk_free(self.directory)
