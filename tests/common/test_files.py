"""common.files: the one durable write, on a real file system."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from common.files import fsync_dir, write_durably


def test_write_durably_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "manifest"
    write_durably(target, b"first")
    write_durably(target, b"second" * 10_000)
    assert target.read_bytes() == b"second" * 10_000
    assert [p.name for p in tmp_path.iterdir()] == ["manifest"]
    assert stat.S_IMODE(target.stat().st_mode) & 0o007 == 0  # never world-readable


def test_a_failed_write_keeps_the_old_content_and_removes_its_temporary(tmp_path: Path) -> None:
    target = tmp_path / "outcome"
    write_durably(target, b"old")
    with pytest.raises(TypeError):
        write_durably(target, "not bytes")  # type: ignore[arg-type]  # fails inside the write
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["outcome"]


def test_fsync_dir_needs_a_directory(tmp_path: Path) -> None:
    fsync_dir(tmp_path)
    with pytest.raises(OSError):
        fsync_dir(tmp_path / "missing")
