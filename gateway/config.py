"""The gateway's configuration: a tree of frozen dataclasses read by `common.config.load`.

Every key has a default, so `presacop gateway` with no file runs against the local dev stack
(`presacop stack`: Mosquitto on 127.0.0.1:11883, Kafka on 127.0.0.1:19092). `docs/gateway.md` is
generated from this module (`gateway.config.reference_markdown`) and a test keeps the two equal.

Raises: `common.config.ConfigError` (from `load_config`) naming the bad key.
"""

from __future__ import annotations

import dataclasses
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from common.config import ConfigError, describe, dump_toml, field, from_dict, load

from .evidence.config import EvidenceConfig

# The one filter the gateway needs; duplicated from protocol.SUBSCRIPTION so that loading a config
# does not import the protocol package (a test checks the two agree).
DEFAULT_SUBSCRIPTION = "presacop/v1/drones/+/+"

_KAFKA_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_SHARE_GROUP = re.compile(r"^[^/+#]{1,64}$")


def _between(lo: float, hi: float) -> object:
    def check(v: float) -> str | None:
        return None if lo <= v <= hi else f"must be between {lo} and {hi}, got {v}"

    return check


def _confluent_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("confluent_kafka") is not None


def _backend_installed(v: str) -> str | None:
    if v != "confluent" or _confluent_installed():
        return None
    return ("needs the confluent-kafka package, which is not installed "
            "(pip install 'presacop[gateway]')")


def _non_empty(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


def _kafka_topic(v: str) -> str | None:
    if _KAFKA_TOPIC.match(v) and v not in (".", ".."):
        return None
    return f"not a valid Kafka topic name: {v!r} (1..249 chars of [A-Za-z0-9._-])"


def _share_group(v: str) -> str | None:
    if _SHARE_GROUP.match(v):
        return None
    return f"not a valid share group name: {v!r} (1..64 chars, no '/', '+' or '#')"


def _subscription(v: str) -> str | None:
    if not v or v.startswith("$share/"):
        return f"must be a plain topic filter (the $share/<group>/ prefix is added): {v!r}"
    parts = v.split("/")
    for i, part in enumerate(parts):
        if "#" in part and (part != "#" or i != len(parts) - 1):
            return f"'#' must be a whole last level: {v!r}"
        if "+" in part and part != "+":
            return f"'+' must be a whole level: {v!r}"
    return None


def _address(v: str) -> str | None:
    if v == "":
        return None
    host, sep, port = v.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        return f"expected host:port (port 0 picks a free one) or \"\" to disable, got {v!r}"
    return None


@dataclasses.dataclass(frozen=True)
class TlsConfig:
    enabled: bool = field(False, doc="Connect to the broker over TLS.")
    ca_file: str = field("", doc="CA bundle to verify the broker; \"\" uses the system store.")
    cert_file: str = field("", doc="Client certificate (PEM) for mutual TLS; \"\" for none.")
    key_file: str = field("", doc="Private key (PEM) of `cert_file`.")
    insecure: bool = field(False, doc="Skip broker hostname verification (testing only).")


@dataclasses.dataclass(frozen=True)
class MqttConfig:
    host: str = field("127.0.0.1", doc="MQTT broker host.", check=_non_empty)
    port: int = field(11883, doc="MQTT broker port.", check=_between(1, 65535))
    client_id: str = field(
        "",
        doc="MQTT client id; must be unique per gateway process and stable across restarts "
        "(the persistent session and its unacknowledged messages belong to it). "
        "\"\" means `presacop-gateway-<hostname>`.",
    )
    username: str = field("", doc="Broker user name; \"\" for anonymous.")
    password: str = field("", doc="Broker password (prefer the environment variable).",
                          env="PRESACOP_MQTT_PASSWORD")
    tls: TlsConfig = dataclasses.field(default_factory=TlsConfig)
    share_group: str = field(
        "presacop-gateway",
        doc="Shared-subscription group: gateways in one group split the messages.",
        check=_share_group,
    )
    subscription: str = field(DEFAULT_SUBSCRIPTION, doc="Topic filter inside the share group.",
                              check=_subscription)
    session_expiry_s: int = field(
        7 * 24 * 3600,
        doc="MQTT 5 session expiry: how long the broker keeps this gateway's session and queued "
        "messages while it is down.",
        check=_between(1, 0xFFFFFFFF),
    )
    receive_maximum: int = field(
        1000,
        doc="MQTT 5 Receive Maximum: unacknowledged messages the broker may have in flight to "
        "this gateway (backpressure when Kafka is slow or down; see limits.max_in_flight).",
        check=_between(1, 65535),
    )
    keepalive_s: int = field(30, doc="MQTT keepalive.", check=_between(5, 65535))
    connect_timeout_s: float = field(10.0, doc="TCP + CONNACK timeout per connection attempt.",
                                     check=_between(0.1, 600))
    reconnect_min_s: float = field(0.5, doc="First reconnect delay (jittered, doubling).",
                                   check=_between(0.01, 3600))
    reconnect_max_s: float = field(30.0, doc="Largest reconnect delay.", check=_between(0.01, 3600))
    max_packet_size: int = field(
        66560,
        doc="MQTT 5 Maximum Packet Size asked for on CONNECT: the broker never sends this gateway "
        "a larger packet (it drops it), so no message can take more memory than this. The "
        "broker's own `max_packet_size` (deploy/mosquitto/presacop.conf) refuses larger "
        "publishes from drones; keep the two equal (docs/security.md, size limits).",
        check=_between(1024, 268435460),
    )


    def effective_client_id(self) -> str:
        """The configured client id, or `presacop-gateway-<hostname>`."""
        return self.client_id or f"presacop-gateway-{socket.gethostname()}"


@dataclasses.dataclass(frozen=True)
class TopicsConfig:
    telemetry: str = field("presacop.telemetry", doc="Telemetry and status records.",
                           check=_kafka_topic)
    violations: str = field("presacop.violations", doc="Violations, qualified or not.",
                            check=_kafka_topic)
    alerts: str = field("presacop.alerts", doc="Alerts for unqualified violations.",
                        check=_kafka_topic)
    deadletter: str = field("presacop.deadletter", doc="Input that failed validation.",
                            check=_kafka_topic)
    evidence: str = field("presacop.evidence", doc="One record per stored evidence object "
                          "(docs/kafka-records.md).", check=_kafka_topic)

    def all(self) -> tuple[str, ...]:
        return (self.telemetry, self.violations, self.alerts, self.deadletter, self.evidence)


@dataclasses.dataclass(frozen=True)
class ProducerConfig:
    linger_ms: int = field(5, doc="Wait this long to fill a batch.", check=_between(0, 60000))
    batch_size: int = field(65536, doc="Largest batch per partition, bytes.",
                            check=_between(1, 16 * 1024 * 1024))
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = field(
        "none", doc="Batch compression (snappy/lz4/zstd need the codec package installed).")
    delivery_timeout_ms: int = field(
        30000,
        doc="Give up one produce attempt after this long; the gateway then retries it (a message "
        "is never dropped, only not acknowledged).",
        check=_between(1000, 3600_000),
    )
    request_timeout_ms: int = field(10000, doc="Broker request timeout.",
                                    check=_between(100, 3600_000))
    max_in_flight: int = field(5, doc="Requests in flight per connection (<= 5 keeps the "
                               "idempotent producer's ordering).", check=_between(1, 5))
    max_block_ms: int = field(5000, doc="Longest a send may block for metadata or buffer space.",
                              check=_between(0, 600_000))



@dataclasses.dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str = field("127.0.0.1:19092", doc="Comma-separated host:port list.",
                                   check=_non_empty)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = field(
        "PLAINTEXT", doc="Kafka security protocol.")
    sasl_mechanism: Literal["", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = field(
        "", doc="SASL mechanism for SASL_* protocols.")
    sasl_username: str = field("", doc="SASL user name.")
    sasl_password: str = field("", doc="SASL password (prefer the environment variable).",
                               env="PRESACOP_KAFKA_SASL_PASSWORD")
    ssl_ca_file: str = field("", doc="CA bundle for SSL/SASL_SSL; \"\" uses the system store.")
    ssl_cert_file: str = field("", doc="Client certificate for SSL.")
    ssl_key_file: str = field("", doc="Private key of `ssl_cert_file`.")
    topics: TopicsConfig = dataclasses.field(default_factory=TopicsConfig)
    create_topics: bool = field(True, doc="Create missing topics at start (dev); production "
                                "topics are usually made by operations.")
    partitions: int = field(6, doc="Partitions of topics the gateway creates.",
                            check=_between(1, 10000))
    replication_factor: int = field(1, doc="Replication factor of topics the gateway creates.",
                                    check=_between(1, 100))
    producer: ProducerConfig = dataclasses.field(default_factory=ProducerConfig)
    health_interval_s: float = field(2.0, doc="How often Kafka reachability is probed.",
                                     check=_between(0.1, 600))
    backend: Literal["auto", "kafka-python", "confluent"] = field(
        "auto",
        doc="Producer library: \"confluent\" (confluent-kafka / librdkafka, in C: about half "
        "the CPU per record), \"kafka-python\" (pure Python), or \"auto\": confluent-kafka "
        "if it is installed (the `gateway` extra installs it), else kafka-python; the choice "
        "is logged at start and shown in /metrics and /healthz. Same guarantees, records and "
        "settings either way (`max_block_ms` is kafka-python's only).",
        check=_backend_installed)

    def effective_backend(self) -> Literal["kafka-python", "confluent"]:
        """The producer library `backend` selects ("auto" resolved on this host)."""
        if self.backend != "auto":
            return self.backend
        return "confluent" if _confluent_installed() else "kafka-python"



@dataclasses.dataclass(frozen=True)
class LimitsConfig:
    max_in_flight: int = field(
        1000,
        doc="Messages the gateway holds at most (received, not yet acknowledged by Kafka); at "
        "the limit it stops reading from the broker. Enforced by the gateway itself because "
        "Mosquitto 2.0.11 overshoots the Receive Maximum; keep mqtt.receive_maximum <= this.",
        check=_between(1, 1_000_000),
    )
    dedupe_window: int = field(
        4096,
        doc="Per drone, how many sequence numbers below the highest seen are remembered to drop "
        "redeliveries.",
        check=_between(1, 1 << 20),
    )
    max_drones: int = field(100_000, doc="Drones tracked for dedupe and gaps (least recently seen "
                            "are forgotten beyond this).", check=_between(1, 10_000_000))
    max_clock_skew_s: float = field(
        300.0,
        doc="A drone time more than this ahead of the gateway's marks the record "
        "`clock_suspect` (old times are normal: the drone's outbox replays after a link loss).",
        check=_between(0, 10**7),
    )
    deadletter_max_bytes: int = field(
        65536,
        doc="Original payload bytes kept in a dead-letter record (the rest is cut, with its "
        "size and SHA-256 kept).",
        check=_between(0, 512 * 1024),
    )
    retry_min_s: float = field(0.2, doc="First delay before re-producing a failed record.",
                               check=_between(0.001, 600))
    retry_max_s: float = field(10.0, doc="Largest delay between produce retries.",
                               check=_between(0.001, 3600))
    drain_timeout_s: float = field(20.0, doc="On SIGTERM, wait this long for in-flight Kafka "
                                   "acknowledgements.", check=_between(0, 3600))
    max_seq_jump: int = field(
        10000,
        doc="Replay bound: a drone's seq may exceed the highest seen by at most this plus "
        "`max_seq_rate` per second of drone time since it; beyond, the message is "
        "dead-lettered as `seq_jump` and the dedupe state is kept (docs/security.md).",
        check=_between(1, 2**32),
    )
    seed_max_records: int = field(
        20_000,
        doc="Dedupe seed: before connecting to MQTT (at start and after a lost connection) the "
        "gateway reads back at most this many of the newest records per partition of the "
        "telemetry and violations topics, so a message Kafka already has is not produced "
        "again (docs/gateway.md, Duplicates); 0 turns the seed off.",
        check=_between(0, 10_000_000),
    )
    seed_follow: bool = field(
        False,
        doc="Dedupe seed: keep reading the topics after it, so what the other gateways of the "
        "share group write is in this one's window within ~0.2 s: turn on when more than one "
        "gateway shares the group (a drone re-sending a message whose PUBACK it lost may reach "
        "another member; docs/gateway.md, Duplicates). Costs reading every record once more.")
    seed_horizon_s: float = field(
        3600.0, doc="Dedupe seed: only records written in the last this many seconds.",
        check=_between(1, 10**7))
    seed_timeout_s: float = field(
        30.0, doc="Dedupe seed: longest read; at start it is retried until it succeeds (nothing "
        "is taken from MQTT before), after a lost connection the gateway goes on without it.",
        check=_between(1, 3600))
    resend_check_max_records: int = field(
        100_000,
        doc="Before re-sending a record whose failed produce may have been written (a delivery "
        "timeout, a rebuilt producer), the gateway reads its topic back from that attempt on, "
        "at most this many of the newest records per partition, and does not send it again if "
        "Kafka has it (docs/gateway.md, Duplicates); 0: re-send unchecked.",
        check=_between(0, 100_000_000),
    )
    resend_check_timeout_s: float = field(
        30.0, doc="Longest such read; one that fails or times out is tried again after the "
        "retry delay (the record waits, it is not re-sent unchecked).", check=_between(1, 3600))
    max_seq_rate: float = field(
        50.0,
        doc="Messages per second a drone can send at most (the agent sends ~1 telemetry/s plus "
        "violations at the recognizer's rate), for the replay bound.",
        check=_between(0, 10**6),
    )


@dataclasses.dataclass(frozen=True)
class MetricsConfig:
    address: str = field("127.0.0.1:9464", doc="host:port for /metrics and /healthz; \"\" "
                         "disables; port 0 picks a free port (logged).", check=_address)


@dataclasses.dataclass(frozen=True)
class LogConfig:
    format: Literal["json", "text"] = field("json", doc="One JSON object per line, or text.")
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = field("INFO", doc="Log level.")


@dataclasses.dataclass(frozen=True)
class SecurityConfig:
    require_signatures: bool = field(
        False,
        doc="Dead-letter (`bad_signature`) every violation and evidence manifest without a valid "
        "Ed25519 signature of one of its drone's keys (a manifest also gets a REJECTED receipt). "
        "Off: unsigned ones pass, but a signature that is there "
        "must still verify (when `keys_dir` is set).",
    )
    keys_dir: str = field(
        "",
        doc="Directory of drones' public keys, `<drone_id>/<key_id>.pub` (`presacop keys gen`); "
        "\"\" checks no signature.",
    )
    keys_reload_s: float = field(
        5.0,
        doc="A drone's keys are reread when older than this (an unknown key id: after 1 s), so "
        "keys are added and revoked without a restart.",
        check=_between(0.1, 3600),
    )


@dataclasses.dataclass(frozen=True)
class GatewayConfig:
    mqtt: MqttConfig = dataclasses.field(default_factory=MqttConfig)
    kafka: KafkaConfig = dataclasses.field(default_factory=KafkaConfig)
    limits: LimitsConfig = dataclasses.field(default_factory=LimitsConfig)
    metrics: MetricsConfig = dataclasses.field(default_factory=MetricsConfig)
    log: LogConfig = dataclasses.field(default_factory=LogConfig)
    security: SecurityConfig = dataclasses.field(default_factory=SecurityConfig)
    evidence: EvidenceConfig = dataclasses.field(default_factory=EvidenceConfig)


def load_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> GatewayConfig:
    """Load and validate a gateway config (None: defaults). Raises `ConfigError`."""
    cfg = load(GatewayConfig, path, env=env)
    return _checked(cfg, str(path) if path is not None else "<defaults>")


def to_toml(data: Mapping[str, object], source: str = "<generated gateway config>") -> str:
    """The gateway config file for `data` ({"mqtt": {...}, "kafka": {..., "topics": {...}}, ...}):
    the one writer of gateway TOML for the demo, the bench and the tests. Raises `ConfigError`
    naming the key if `data` would not load."""
    _checked(from_dict(GatewayConfig, data, source=source, env={}), source)
    return dump_toml(data)


def _checked(cfg: GatewayConfig, source: str) -> GatewayConfig:
    problem = _cross_check(cfg)
    if problem:
        raise ConfigError(problem[0], problem[1], source)
    return cfg


def _cross_check(cfg: GatewayConfig) -> tuple[str, str] | None:
    """Rules that involve more than one key: (key, reason) of the first broken one."""
    m, k, p, lim = cfg.mqtt, cfg.kafka, cfg.kafka.producer, cfg.limits
    rules = [
        (m.reconnect_max_s < m.reconnect_min_s, "mqtt.reconnect_max_s",
         "must be >= mqtt.reconnect_min_s"),
        (cfg.security.require_signatures and not cfg.security.keys_dir, "security.keys_dir",
         "required with security.require_signatures"),
        (bool(m.tls.key_file) and not m.tls.cert_file, "mqtt.tls.key_file",
         "set mqtt.tls.cert_file too"),
        (p.delivery_timeout_ms < p.linger_ms + p.request_timeout_ms,
         "kafka.producer.delivery_timeout_ms",
         "must be >= kafka.producer.linger_ms + kafka.producer.request_timeout_ms"),
        (k.security_protocol.startswith("SASL_") and not k.sasl_mechanism, "kafka.sasl_mechanism",
         f"required with security_protocol {k.security_protocol}"),
        (len(set(k.topics.all())) != len(k.topics.all()), "kafka.topics",
         "the topics must be distinct"),
        (lim.retry_max_s < lim.retry_min_s, "limits.retry_max_s", "must be >= limits.retry_min_s"),
        (m.receive_maximum > lim.max_in_flight, "mqtt.receive_maximum",
         "must be <= limits.max_in_flight (else the broker legitimately sends more than the "
         "gateway will hold, and intake keeps pausing)"),
    ]
    for broken, key, reason in rules:
        if broken:
            return key, reason
    return None


def reference_markdown() -> str:
    """The configuration table of docs/gateway.md, generated from the dataclasses."""
    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for key, typ, default, doc in describe(GatewayConfig):
        cells = [f"`{key}`", typ.replace("|", "\\|"), f"`{default}`", doc.replace("|", "\\|")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
