"""The `[evidence]` section of the gateway's config (and the store section the back office reads).

    [evidence]              staging, limits, retention, the receipt signing key
    [evidence.store]        backend = "dir" | "s3", path, bucket, prefix, endpoint_url, region

S3 credentials never sit in the file: boto3 reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or
its other usual sources) from the environment.

Raises (through `common.config.load`): `ConfigError` naming the dotted key.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from common.config import field
from common.signing import KeyFileError, Signer, private_key_error

GiB = 1024**3


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be > 0"


def _non_empty(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


def _receipt_key(v: str) -> str | None:
    """The back office's receipt key must exist, be `<key_id>.key`, 0600 and load."""
    if not v:
        return None
    if (why := private_key_error(Path(v))) is not None:
        return why
    try:
        Signer.from_file(Path(v))
    except KeyFileError as exc:
        return str(exc)
    return None


@dataclasses.dataclass(frozen=True)
class StoreConfig:
    backend: Literal["dir", "s3"] = field(
        "dir", doc="Where evidence objects go: a directory (embedded default) or an S3 API store.")
    path: str = field("/var/lib/presacop-gateway/evidence",
                      doc="dir backend: root directory (content-addressed files).")
    bucket: str = field("presacop-evidence", doc="s3 backend: bucket (must exist).")
    prefix: str = field("evidence/", doc="s3 backend: key prefix before the SHA-256.")
    endpoint_url: str = field("", doc="s3 backend: endpoint URL; \"\" = AWS's own.")
    region: str = field("us-east-1", doc="s3 backend: region name for request signing.")
    timeout_s: float = field(10.0, doc="s3 backend: connect and read timeout per request.",
                             check=_positive)

    def __post_init__(self) -> None:
        if self.backend == "s3" and not self.bucket:
            raise ValueError("evidence.store.bucket is required with backend = \"s3\"")


@dataclasses.dataclass(frozen=True)
class EvidenceConfig:
    staging_dir: str = field(
        "/var/lib/presacop-gateway/staging",
        doc="Chunks of uploads in progress, one file each (fsync'ed). Gateways of one share "
        "group must share it (chunks of one upload reach any of them).", check=_non_empty)
    staging_max_bytes: int = field(
        4 * GiB, doc="Staged bytes at most; beyond it new uploads are told BUSY.",
        check=lambda v: None if v >= 1 << 20 else "must be >= 1 MiB")
    max_queued: int = field(
        64, doc="Evidence frames received but not yet staged; beyond it a frame is acknowledged "
        "unstaged and its drone told BUSY (it resends later): events never wait for evidence.",
        check=lambda v: None if 1 <= v <= 10_000 else "must be 1..10000")
    busy_retry_s: float = field(5.0, doc="After a store failure, wait this long before trying "
                                "the store again (new uploads are told BUSY meanwhile).",
                                check=_positive)
    retention_days: float = field(
        365.0, doc="`presacop evidence gc` removes stored objects older than this, except "
        "those of open alerts.", check=_positive)
    receipt_key_file: str = field(
        "", doc="The back office's Ed25519 receipt key, `<key_id>.key`, mode 0600 (`presacop "
        "keys gen --backoffice`): every receipt is signed with it, so drones holding its .pub "
        "(agent `evidence.receipt_keys_dir`) act only on receipts of the back office, not on "
        "whatever the broker account can publish. \"\" sends receipts unsigned.",
        check=_receipt_key)
    store: StoreConfig = dataclasses.field(default_factory=StoreConfig)
