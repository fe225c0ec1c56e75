"""Evidence store: content ids, atomic files, quota eviction that never touches referenced files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from drone_agent.errors import EvidenceRefused
from drone_agent.evidence import EvidenceStore, encode_jpeg, evidence_id


def blob(i: int, size: int = 1000) -> bytes:
    return bytes([i % 256]) * size


def test_id_is_first_8_bytes_of_sha256_as_hex() -> None:
    data = b"\xff\xd8 a jpeg"
    assert evidence_id(data) == hashlib.sha256(data).hexdigest()[:16]


def test_put_writes_the_bytes_under_their_id_and_no_temp_file(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path, quota_bytes=10_000)
    ident = store.put(blob(1))
    assert store.path(ident).read_bytes() == blob(1)
    assert ident in store and store.count == 1 and store.used_bytes == 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{ident}.jpg"]


def test_same_image_is_stored_once(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path, quota_bytes=10_000)
    assert store.put(blob(1)) == store.put(blob(1))
    assert store.count == 1 and store.written == 1


def test_jpeg_encoding_round_trips_through_opencv(tmp_path: Path) -> None:
    import cv2

    image = np.zeros((72, 128, 3), np.uint8)
    image[10:30, 20:60] = (0, 0, 255)
    store = EvidenceStore(tmp_path, quota_bytes=1_000_000)
    ident = store.save_frame(image, quality=90)
    decoded = cv2.imread(str(store.path(ident)))
    assert decoded.shape == image.shape
    assert evidence_id(encode_jpeg(image, 90)) == ident


def test_over_quota_evicts_oldest_unreferenced(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path, quota_bytes=3000)
    ids = [store.put(blob(i)) for i in range(3)]
    newest = store.put(blob(3))
    assert ids[0] not in store and not store.path(ids[0]).exists()
    assert all(i in store for i in [*ids[1:], newest])
    assert store.evicted == 1 and store.used_bytes == 3000


def test_never_deletes_referenced_evidence(tmp_path: Path) -> None:
    referenced: set[str] = set()
    store = EvidenceStore(tmp_path, quota_bytes=3000, referenced=lambda: set(referenced))
    ids = [store.put(blob(i)) for i in range(3)]
    referenced.update(ids[:2])  # undelivered violations point at the two oldest
    store.put(blob(3))
    assert ids[0] in store and ids[1] in store and ids[2] not in store
    referenced.add(evidence_id(blob(3)))  # now all three stored files are referenced
    with pytest.raises(EvidenceRefused) as info:
        store.put(blob(5))
    assert info.value.evidence_id == evidence_id(blob(5))
    assert all(store.path(i).exists() for i in referenced)
    assert store.refused == 1 and store.is_low()
    referenced.clear()  # delivered: now they may go
    store.put(blob(5))
    assert not store.is_low()


def test_pinned_evidence_survives_eviction_until_unpinned(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path, quota_bytes=2000)
    pinned = store.put(blob(0), pin=True)
    store.put(blob(1))
    store.put(blob(2))  # must evict: blob(1) goes, the pinned oldest stays
    assert pinned in store and evidence_id(blob(1)) not in store
    store.unpin(pinned)
    store.put(blob(3))
    assert pinned not in store


def test_refuses_a_file_larger_than_the_quota(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path, quota_bytes=500)
    with pytest.raises(EvidenceRefused, match="quota"):
        store.put(blob(0))
    assert store.count == 0


def test_low_free_disk_evicts_then_refuses(tmp_path: Path) -> None:
    free = {"bytes": 10_000}
    referenced: set[str] = set()
    store = EvidenceStore(tmp_path, quota_bytes=10**9, min_free_bytes=8_500,
                          referenced=lambda: set(referenced),
                          disk_free=lambda p: free["bytes"])
    first = store.put(blob(0))
    free["bytes"] = 9000  # the disk filled up (someone else, or us)
    second = store.put(blob(1))  # needs 1000 + 8500 free: the oldest goes
    assert first not in store and second in store
    referenced.add(second)
    free["bytes"] = 8000
    with pytest.raises(EvidenceRefused, match="undelivered"):
        store.put(blob(2))
    assert second in store and store.is_low()


def test_reopen_finds_files_oldest_first_and_cleans_temp_files(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path, quota_bytes=3000)
    ids = [store.put(blob(i)) for i in range(3)]
    for age, ident in enumerate(reversed(ids)):  # file times are coarse: make the order explicit
        os.utime(store.path(ident), (1_700_000_000 - age, 1_700_000_000 - age))
    (tmp_path / ".deadbeefdeadbeef.1.2.tmp").write_bytes(b"half")
    again = EvidenceStore(tmp_path, quota_bytes=3000)
    assert again.count == 3 and again.used_bytes == 3000
    assert not list(tmp_path.glob("*.tmp"))
    again.put(blob(9))
    assert ids[0] not in again


def test_path_rejects_non_ids(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path, quota_bytes=10)
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")
