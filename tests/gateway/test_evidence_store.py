"""The evidence store's two backends behave alike: a directory, and S3 through a real s3proxy."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from gateway.evidence.config import StoreConfig
from gateway.evidence.store import (
    BadObjectName,
    DirStore,
    EvidenceStore,
    ObjectMissing,
    StoreUnavailable,
    open_store,
)
from presacop.stack.s3proxy import S3Proxy


def _put(store: EvidenceStore, tmp_path: Path, data: bytes) -> tuple[str, str]:
    sha = hashlib.sha256(data).hexdigest()
    staged = tmp_path / f"staged-{sha[:8]}"
    staged.write_bytes(data)
    uri = store.put_file(sha, staged, "image/jpeg")
    assert not staged.exists()  # the staged file is consumed
    return sha, uri


def _contract(store: EvidenceStore, tmp_path: Path) -> str:
    data = os.urandom(70_000)
    sha, uri = _put(store, tmp_path, data)
    assert store.exists(sha) and store.get(sha) == data
    assert _put(store, tmp_path, data) == (sha, uri)  # idempotent: same name, one object
    assert [o.sha256 for o in store.objects()] == [sha]
    missing = "0" * 64
    assert not store.exists(missing)
    with pytest.raises(ObjectMissing):
        store.get(missing)
    with pytest.raises(BadObjectName):
        store.get("../etc/passwd")
    store.delete(sha)
    assert not store.exists(sha)
    return uri


def test_dir_store(tmp_path: Path) -> None:
    store = open_store(StoreConfig(backend="dir", path=str(tmp_path / "objects")))
    uri = _contract(store, tmp_path)
    assert uri.startswith("file://") and "/objects/" in uri


def test_dir_store_unwritable_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    staged = tmp_path / "staged"
    staged.write_bytes(b"abc")
    with pytest.raises(StoreUnavailable):
        DirStore(blocker).put_file(hashlib.sha256(b"abc").hexdigest(), staged, "image/jpeg")
    assert staged.exists()  # nothing lost: the gateway keeps it staged


def test_s3_store_against_s3proxy(tmp_path: Path, s3proxy: S3Proxy) -> None:
    cfg = StoreConfig(backend="s3", bucket=s3proxy.bucket, prefix="ev/",
                      endpoint_url=s3proxy.endpoint_url, timeout_s=5)
    uri = _contract(open_store(cfg), tmp_path)
    assert uri.startswith(f"s3://{s3proxy.bucket}/ev/")
    s3proxy.stop()
    staged = tmp_path / "while-down"
    staged.write_bytes(b"abc")
    with pytest.raises(StoreUnavailable):
        open_store(cfg).put_file(hashlib.sha256(b"abc").hexdigest(), staged, "image/jpeg")
    assert staged.exists()
