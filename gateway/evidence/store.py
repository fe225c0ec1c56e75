"""The evidence object store: objects named by their SHA-256, in a directory or an S3 bucket.

    store = open_store(cfg)        # cfg: gateway.evidence.config.StoreConfig ([evidence.store])
    store.exists(sha256_hex) -> bool
    store.get(sha256_hex) -> bytes
    store.put_file(sha256_hex, path, content_type) -> uri     (the gateway; the file is consumed)
    store.objects() -> iterator of StoredObject                (retention, `presacop evidence gc`)
    store.delete(sha256_hex)

Content addressing makes a write idempotent: storing the same image twice (a retried upload,
two gateways finishing the same upload) leaves one object. The dir backend lays objects out as
`<path>/<sha[:2]>/<sha[2:4]>/<sha>`, written to a temporary file, fsync'ed, renamed into place and
the directory fsync'ed: after a crash an object is whole or absent. The S3 backend uses boto3
against any S3 API endpoint (credentials from the environment).

Error tree:

    StoreError              root
    ├── ObjectMissing       no object with that SHA-256 (get)
    ├── StoreUnavailable    the store cannot be reached or is full: retriable, try later
    └── BadObjectName       not 64 lowercase hex digits
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from common.files import fsync_dir
from gateway.evidence.config import StoreConfig

SHA_RE = re.compile(r"[0-9a-f]{64}")


class StoreError(Exception):
    """Root of the store's errors."""


class ObjectMissing(StoreError):
    """No object with that SHA-256."""


class StoreUnavailable(StoreError):
    """The store is down, unreachable or full; the operation may succeed later."""


class BadObjectName(StoreError, ValueError):
    """A name that is not a SHA-256 in 64 lowercase hex digits."""


@dataclass(frozen=True)
class StoredObject:
    sha256: str
    size: int
    modified_s: float  # Unix time the object was stored
    uri: str


class EvidenceStore(Protocol):
    def uri(self, sha256_hex: str) -> str: ...
    def exists(self, sha256_hex: str) -> bool: ...
    def get(self, sha256_hex: str) -> bytes: ...
    def put_file(self, sha256_hex: str, path: Path, content_type: str) -> str: ...
    def delete(self, sha256_hex: str) -> None: ...
    def objects(self) -> Iterator[StoredObject]: ...


def open_store(cfg: StoreConfig) -> EvidenceStore:
    """The store `cfg` describes. Raises StoreUnavailable if it cannot be opened."""
    if cfg.backend == "s3":
        return S3Store(cfg)
    return DirStore(Path(cfg.path))


def _name(sha256_hex: object) -> str:
    if not isinstance(sha256_hex, str) or SHA_RE.fullmatch(sha256_hex) is None:
        raise BadObjectName(f"not a SHA-256 (64 lowercase hex digits): {sha256_hex!r}")
    return sha256_hex


class DirStore:
    """Objects as files under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256_hex: str) -> Path:
        name = _name(sha256_hex)
        return self.root / name[:2] / name[2:4] / name

    def uri(self, sha256_hex: str) -> str:
        return self.path(sha256_hex).resolve().as_uri()

    def exists(self, sha256_hex: str) -> bool:
        return self.path(sha256_hex).is_file()

    def get(self, sha256_hex: str) -> bytes:
        """The object's bytes. Raises ObjectMissing."""
        try:
            return self.path(sha256_hex).read_bytes()
        except FileNotFoundError:
            raise ObjectMissing(f"no evidence object {sha256_hex} in {self.root}") from None

    def put_file(self, sha256_hex: str, path: Path, content_type: str) -> str:
        """Move the (fsync'ed) file at `path` into the store. Raises StoreUnavailable when the
        directory cannot take it (disk full, read-only, gone)."""
        final = self.path(sha256_hex)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():
                path.unlink(missing_ok=True)  # the same content is already there
                return self.uri(sha256_hex)
            try:
                os.replace(path, final)  # same file system: atomic, no copy
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                self._copy_in(path, final)
            fsync_dir(final.parent)
        except OSError as exc:
            raise StoreUnavailable(f"evidence directory {self.root}: {exc}") from exc
        return self.uri(sha256_hex)

    def _copy_in(self, src: Path, final: Path) -> None:
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        try:
            with open(src, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 16)
                fout.flush()
                os.fsync(fout.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        src.unlink(missing_ok=True)

    def delete(self, sha256_hex: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(sha256_hex).unlink()

    def objects(self) -> Iterator[StoredObject]:
        if not self.root.is_dir():
            return
        for sub in sorted(self.root.glob("??/??/*")):
            if SHA_RE.fullmatch(sub.name):
                st = sub.stat()
                yield StoredObject(sub.name, st.st_size, st.st_mtime, sub.resolve().as_uri())


class S3Store:
    """Objects as `<prefix><sha256>` in an S3 bucket, through boto3."""

    def __init__(self, cfg: StoreConfig) -> None:
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = cfg.bucket, cfg.prefix
        # New boto3 sends checksum headers by default that S3 API servers other than AWS
        # (s3proxy among them) answer with NotImplemented: only when the operation requires one.
        config = Config(request_checksum_calculation="when_required",
                        response_checksum_validation="when_required",
                        connect_timeout=cfg.timeout_s, read_timeout=cfg.timeout_s,
                        retries={"max_attempts": 2, "mode": "standard"})
        self._s3: Any = boto3.client("s3", endpoint_url=cfg.endpoint_url or None,
                                     region_name=cfg.region, config=config)

    def key(self, sha256_hex: str) -> str:
        return self.prefix + _name(sha256_hex)

    def uri(self, sha256_hex: str) -> str:
        return f"s3://{self.bucket}/{self.key(sha256_hex)}"

    def exists(self, sha256_hex: str) -> bool:
        key = self.key(sha256_hex)
        try:
            self._s3.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _status(exc) == 404:
                return False
            raise _unavailable(exc) from exc
        return True

    def get(self, sha256_hex: str) -> bytes:
        """The object's bytes. Raises ObjectMissing, StoreUnavailable."""
        key = self.key(sha256_hex)
        try:
            reply = self._s3.get_object(Bucket=self.bucket, Key=key)
            return reply["Body"].read()  # type: ignore[no-any-return]
        except Exception as exc:
            if _status(exc) == 404:
                raise ObjectMissing(f"no evidence object {self.uri(sha256_hex)}") from None
            raise _unavailable(exc) from exc

    def put_file(self, sha256_hex: str, path: Path, content_type: str) -> str:
        """Upload the file (streamed from disk), then remove it. Raises StoreUnavailable."""
        key = self.key(sha256_hex)
        try:
            with open(path, "rb") as body:
                self._s3.put_object(Bucket=self.bucket, Key=key, Body=body,
                                    ContentType=content_type)
        except Exception as exc:
            raise _unavailable(exc) from exc
        path.unlink(missing_ok=True)
        return self.uri(sha256_hex)

    def delete(self, sha256_hex: str) -> None:
        key = self.key(sha256_hex)
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise _unavailable(exc) from exc

    def objects(self) -> Iterator[StoredObject]:
        try:
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    name = item["Key"][len(self.prefix):]
                    if SHA_RE.fullmatch(name):
                        yield StoredObject(name, int(item["Size"]),
                                           item["LastModified"].timestamp(), self.uri(name))
        except StoreError:
            raise
        except Exception as exc:
            raise _unavailable(exc) from exc


def _status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("ResponseMetadata", {}).get("HTTPStatusCode")  # type: ignore[no-any-return]
    return None


def _unavailable(exc: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"S3 store: {type(exc).__name__}: {exc}")


def age_days(obj: StoredObject, now_s: float | None = None) -> float:
    """How old `obj` is, in days."""
    return ((time.time() if now_s is None else now_s) - obj.modified_s) / 86400
