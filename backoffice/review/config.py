"""The console's configuration (review.toml): `[review]`, `[kafka]` (the gateway's own Kafka
settings, security included) and `[evidence.store]` (where evidence images are read).

Raises: `common.config.ConfigError` (from `load_config`) naming the bad key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from common.config import ConfigError, describe, field, load

# The gateway's value checks: one home for both configs (the same rules for ports and topics).
from gateway.config import KafkaConfig, _between, _non_empty
from gateway.config import _kafka_topic as _topic

from .evidence import EvidenceConfig


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    host: str = field("127.0.0.1", doc="Address to listen on (loopback by default: put a TLS "
                      "reverse proxy in front, or set tls_certfile).", check=_non_empty)
    port: int = field(8480, doc="Port to listen on.", check=_between(1, 65535))
    state_dir: str = field("review-state", doc="Directory of the console's sqlite state "
                           "(accounts, sessions, the open-alert view, the audit outbox) and its "
                           "cookie key.", check=_non_empty)
    tls_certfile: str = field("", doc="Serve HTTPS with this certificate (PEM); \"\" for HTTP.")
    tls_keyfile: str = field("", doc="Private key of `tls_certfile`.")
    secure_cookies: bool = field(False, doc="Mark cookies Secure although uvicorn serves HTTP "
                                 "(set it behind a TLS reverse proxy; automatic with TLS).")
    forwarded_allow_ips: str = field("", doc="Reverse proxies trusted for X-Forwarded-For/-Proto "
                                     "(uvicorn's option); \"\" trusts none.")
    session_idle_min: int = field(30, doc="A session ends after this long without a request.",
                                  check=_between(1, 24 * 60))
    session_max_h: int = field(12, doc="A session ends this long after login.",
                               check=_between(1, 24 * 7))
    max_failures: int = field(5, doc="Failed logins in a row that lock an account.",
                              check=_between(1, 100))
    lockout_s: int = field(300, doc="How long a locked account refuses logins.",
                           check=_between(1, 86400))
    console_id: str = field("presacop-review", doc="Names this console in records and its Kafka "
                            "consumer group (`<console_id>-view`).", check=_non_empty)
    audit_topic: str = field("presacop.audit", doc="Audit records (logins, failed logins, "
                             "decisions, account changes).", check=_topic)


@dataclasses.dataclass(frozen=True)
class ReviewConfig:
    review: ServeConfig = dataclasses.field(default_factory=ServeConfig)
    kafka: KafkaConfig = dataclasses.field(default_factory=KafkaConfig)
    evidence: EvidenceConfig = dataclasses.field(default_factory=EvidenceConfig)

    @property
    def tls(self) -> bool:
        return bool(self.review.tls_certfile)

    @property
    def state_path(self) -> Path:
        return Path(self.review.state_dir)


def load_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> ReviewConfig:
    """Load and validate review.toml (None: defaults). Raises `ConfigError`."""
    cfg = load(ReviewConfig, path, env=env)
    r = cfg.review
    if bool(r.tls_certfile) != bool(r.tls_keyfile):
        raise ConfigError("review.tls_keyfile", "set both tls_certfile and tls_keyfile",
                          str(path) if path is not None else "<defaults>")
    return cfg


def reference_markdown() -> str:
    """The configuration table of docs/review.md, generated from the dataclasses."""
    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for key, typ, default, doc in describe(ServeConfig, "review."):
        cells = [f"`{key}`", typ.replace("|", "\\|"), f"`{default}`", doc.replace("|", "\\|")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
