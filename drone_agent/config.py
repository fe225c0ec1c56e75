"""The agent's configuration: `AgentConfig`, loaded with `common.config.load(AgentConfig, path)`.

Every key has a default except `drone_id` and `position.factory`: a drone must say who it is and
where its position comes from. `docs/agent.md` carries the generated reference table (a test keeps
it in step with this file).

Raises (through `common.config.load`): `ConfigError` naming the dotted key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from common.accounts import check_drone_id
from common.config import field, from_dict
from common.merge import deep_merge
from drone_agent.outbox import ROW_OVERHEAD, TELEMETRY_SIZE_ESTIMATE

# ruff: noqa: RUF009  (common.config.field is a dataclasses.field with docs, not a mutable default)

DRONE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
MiB = 1024 * 1024
GiB = 1024 * MiB


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be > 0"


def _non_negative(v: float) -> str | None:
    return None if v >= 0 else "must be >= 0"


def _between(lo: int, hi: int) -> Callable[[int], str | None]:
    def check(v: int) -> str | None:
        return None if lo <= v <= hi else f"must be between {lo} and {hi}, got {v}"

    return check


def _existing_file(v: str | None) -> str | None:
    if v is None or os.path.isfile(v):
        return None
    return f"file not found: {v}"


def _factory_spec(v: str) -> str | None:
    if not v.strip():
        return "must be an entry point name or 'package.module:callable'"
    if ":" in v:
        module, _, attr = v.partition(":")
        if not module or not attr:
            return f"expected 'package.module:callable', got {v!r}"
    return None


@dataclass(frozen=True)
class MqttConfig:
    host: str = field("127.0.0.1", doc="Broker host name or address.")
    port: int = field(1883, doc="Broker port (8883 is usual with TLS).", check=_between(1, 65535))
    protocol: Literal["5", "3.1.1"] = field(
        "5", doc="MQTT protocol version. 5 reports refused publishes (e.g. ACL) in the PUBACK.")
    keepalive_s: int = field(
        30, doc="Keepalive; a silently dead link is noticed after about 1.5 x this.",
        check=_between(5, 3600))
    session_expiry_s: int = field(
        7 * 24 * 3600,
        doc="MQTT 5 session expiry (persistent session); 3.1.1 uses clean_session=false.",
        check=_non_negative)
    username: str | None = field(None, doc="Username, if the broker requires one.")
    password: str | None = field(
        None, doc="Password; prefer the environment variable to the file.",
        env="PRESACOP_MQTT_PASSWORD")
    tls: bool = field(False, doc="Connect with TLS (server certificate verified).")
    ca_file: str | None = field(
        None, doc="CA bundle to verify the broker with TLS; None = system CAs.",
        check=_existing_file)
    cert_file: str | None = field(None, doc="Client certificate for mutual TLS.",
                                  check=_existing_file)
    key_file: str | None = field(None, doc="Client private key for mutual TLS.",
                                 check=_existing_file)
    inflight: int = field(50, doc="Most publishes awaiting PUBACK at once (the in-flight window).",
                          check=_between(1, 1000))
    connect_timeout_s: float = field(10.0, doc="TCP/TLS connect and CONNACK timeout.",
                                     check=_positive)
    backoff_min_s: float = field(
        0.5, doc="Shortest reconnect delay (jittered range doubles per failure).", check=_positive)
    backoff_max_s: float = field(30.0, doc="Largest reconnect delay.", check=_positive)

    def __post_init__(self) -> None:
        if self.backoff_max_s < self.backoff_min_s:
            raise ValueError("backoff_max_s must be >= backoff_min_s")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if (self.cert_file or self.ca_file) and not self.tls:
            raise ValueError("ca_file/cert_file given but tls = false")


@dataclass(frozen=True)
class OutboxConfig:
    max_bytes: int = field(64 * MiB, doc="Bound on queued payload bytes (plus ~64 B per row).",
                           check=_between(1024, 2**40))
    max_rows: int = field(200_000, doc="Bound on queued messages.", check=_between(2, 2**31))
    telemetry_reserve_rows: int = field(
        16, doc="Rows violations may not use, so telemetry (with OUTBOX_FULL) still gets through.",
        check=_between(1, 2**31))

    def __post_init__(self) -> None:
        if self.telemetry_reserve_rows >= self.max_rows:
            raise ValueError("telemetry_reserve_rows must be < max_rows")
        reserve = self.telemetry_reserve_rows * (TELEMETRY_SIZE_ESTIMATE + ROW_OVERHEAD)
        if reserve >= self.max_bytes:
            raise ValueError(f"max_bytes must exceed the telemetry reserve ({reserve} bytes = "
                             f"telemetry_reserve_rows x {TELEMETRY_SIZE_ESTIMATE + ROW_OVERHEAD})")


@dataclass(frozen=True)
class EvidenceConfig:
    quota_bytes: int = field(2 * GiB, doc="Disk quota for evidence JPEGs.",
                             check=_between(1, 2**50))
    min_free_bytes: int = field(256 * MiB, doc="Keep at least this much free on the file system.",
                                check=_non_negative)
    jpeg_quality: int = field(85, doc="JPEG quality (OpenCV IMWRITE_JPEG_QUALITY).",
                              check=_between(1, 100))
    upload: Literal["all", "unqualified", "none"] = field(
        "all", doc="Which violations' evidence is uploaded to the back office (docs/agent.md, "
        "\"Evidence upload\"); a file is deleted only once the back office confirms it.")
    chunk_size: int = field(16384, doc="Upload chunk size, bytes (the broker's max_packet_size "
                            "must exceed it by 400).", check=_between(1024, 61440))
    upload_window: int = field(
        2, doc="Chunks awaiting the broker's PUBACK at once: an event waits behind at most these.",
        check=_between(1, 64))
    upload_budget_bps: int = field(0, doc="Upload budget, bytes per second (0 = no limit; "
                                   "events are always sent first).", check=_non_negative)
    reply_timeout_s: float = field(
        10.0, doc="Send the manifest again when the gateway has not answered it (or a chunk's "
        "progress) for this long.", check=_positive)
    confirm_timeout_s: float = field(
        30.0, doc="Send the manifest again when the last chunk is out and no STORED receipt "
        "came for this long (the gateway is still storing, or the receipt was lost).",
        check=_positive)
    receipt_keys_dir: str = field(
        "", doc="The back office's public receipt keys, `<key_id>.pub` files (`presacop keys "
        "gen --backoffice`; several while the gateways rotate; a private .key there is "
        "refused): a receipt not signed by one of them is ignored and counted "
        "(`receipts_bad_signature`), so nothing is deleted on it. \"\" acts on every "
        "receipt on the drone's receipt topic, signed or not (the weaker mode: the gateway's "
        "broker account can forge STORED).")


@dataclass(frozen=True)
class TelemetryConfig:
    period_s: float = field(1.0, doc="Seconds between telemetry messages.", check=_positive)


@dataclass(frozen=True)
class ViolationsConfig:
    dedupe_window_s: float = field(
        600.0, doc="Emit one violation per (plate, code) per this many seconds.",
        check=_non_negative)


@dataclass(frozen=True)
class RecognizerConfig:
    factory: str = field("stub", doc="Entry point name (group presacop.recognizers) or "
                                     "'package.module:callable'.", check=_factory_spec)
    options: dict[str, Any] = field(default_factory=dict, doc="Keyword arguments for the factory.")
    max_rate_hz: float = field(5.0, doc="Call the recognizer at most this often; newer frames "
                                        "replace older ones while it is busy.", check=_positive)


@dataclass(frozen=True)
class CameraConfig:
    factory: str = field("opencv", doc="Entry point name (group presacop.cameras) or "
                                       "'package.module:callable'.", check=_factory_spec)
    options: dict[str, Any] = field(default_factory=dict, doc="Keyword arguments for the factory.")


@dataclass(frozen=True)
class PositionConfig:
    factory: str = field(doc="Entry point name (group presacop.positions: replay, fixed, "
                             "mavlink, gpsd) or 'package.module:callable'.", check=_factory_spec)
    options: dict[str, Any] = field(default_factory=dict, doc="Keyword arguments for the factory.")


@dataclass(frozen=True)
class PowerConfig:
    factory: str = field("fixed", doc="Entry point name (group presacop.power: fixed, mavlink) "
                                      "or 'package.module:callable'.", check=_factory_spec)
    options: dict[str, Any] = field(default_factory=dict, doc="Keyword arguments for the factory.")


@dataclass(frozen=True)
class ClockConfig:
    sync_check: Literal["auto", "assume_synced", "assume_unsynced"] = field(
        "auto", doc="How to tell NTP sync: auto asks the kernel (adjtimex) and systemd-timesyncd.")
    gps_tolerance_s: float = field(
        2.0, doc="time_source is GPS only if the clock is within this of the GPS time.",
        check=_positive)
    factory: str = field(
        "", doc="GNSS time reference other than the position source's fixes: entry point name "
                "(group presacop.clocks: mavlink, gpsd) or 'package.module:callable'; empty = "
                "the fixes' own GPS time.", check=lambda v: _factory_spec(v) if v else None)
    options: dict[str, Any] = field(default_factory=dict, doc="Keyword arguments for the factory.")


@dataclass(frozen=True)
class SigningConfig:
    key_file: str = field(
        "", doc="This drone's Ed25519 private key, `<key_id>.key` (`presacop keys gen`, mode "
        "0600): violations and evidence manifests are signed with it. \"\" sends them unsigned "
        "(a gateway with security.require_signatures dead-letters those).")


def _drone_id(v: str) -> str | None:
    if not DRONE_ID_RE.fullmatch(v):
        return "must be 1..32 characters of A-Z a-z 0-9 _ -"
    return check_drone_id(v)


@dataclass(frozen=True)
class AgentConfig:
    drone_id: str = field(doc="This drone's id: 1..32 of [A-Za-z0-9_-], not starting with "
                          "`presacop` (service accounts); MQTT client id and topic.",
                          check=_drone_id)
    position: PositionConfig = field(doc="Position source.")
    data_dir: str = field("/var/lib/presacop-agent", doc="Outbox database and evidence live here.",
                          check=lambda v: None if v.strip() else "must not be empty")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = field("INFO", doc="Logging level.")
    mqtt: MqttConfig = field(default_factory=MqttConfig, doc="Broker connection.")
    outbox: OutboxConfig = field(default_factory=OutboxConfig, doc="Durable queue bounds.")
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig, doc="Evidence store.")
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig, doc="Telemetry.")
    violations: ViolationsConfig = field(default_factory=ViolationsConfig, doc="Violations.")
    recognizer: RecognizerConfig = field(default_factory=RecognizerConfig,
                                         doc="Recognizer plug-in.")
    camera: CameraConfig = field(default_factory=CameraConfig, doc="Camera.")
    power: PowerConfig = field(default_factory=PowerConfig, doc="Power source.")
    clock: ClockConfig = field(default_factory=ClockConfig, doc="Time source detection.")
    signing: SigningConfig = field(default_factory=SigningConfig, doc="Violation signatures.")


def from_layers(*layers: Mapping[str, Any], source: str) -> AgentConfig:
    """`AgentConfig` from config tables deep-merged in order (later layers win), e.g. defaults,
    then a fleet's options, then one drone's. Raises ConfigError naming the key and `source`."""
    return from_dict(AgentConfig, deep_merge({}, *layers), source=source)


def reference_table() -> str:
    """The Markdown reference of every key (docs/agent.md embeds it; a test keeps them equal).

    Regenerate with ``python -m drone_agent.config``."""
    from common.config import describe

    lines = ["| Key | Type | Default | Meaning |", "|---|---|---|---|"]
    for key, typ, default, doc in describe(AgentConfig):
        cells = (f"`{key}`", typ, f"`{default}`" if default != "(required)" else "**required**",
                 doc)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference_table(), end="")
