"""Durable file writes: what survives a power cut once the call returns.

`write_durably(path, data)` writes a temporary file beside `path`, fsyncs it, renames it over
`path` (atomic on one file system: readers see the old content or the new, never a part) and
fsyncs the directory, since a rename is durable only once the directory entry is on disk.
Both raise OSError (the temporary file is removed first).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


def write_durably(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Replace `path` with `data`, atomically and durably (file and directory fsynced)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make the directory's entries (a rename, a new file) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
