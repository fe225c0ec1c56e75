"""Kafka clients, built in one place with the configured connection and security settings.

Every Kafka client of ours (the gateway's producer, admin and health probe; the back office's
consumers and producers) is built here from a `KafkaSettings`: the bootstrap servers plus the
security settings of the gateway's `[kafka]` section (protocol, SASL mechanism/user/password,
TLS CA/certificate/key). So a deployment that turns on SASL_SSL reaches every client, not only
the ones someone remembered.

    from common import kafka
    settings = kafka.KafkaSettings.of(config.kafka)        # any object with the same attributes
    consumer = kafka.consumer(settings, "presacop.violations", group_id="stats")
    producer = kafka.producer(settings, acks="all", enable_idempotence=True)
    admin = kafka.admin(settings)                          # no leaked thread when Kafka is down
    p = kafka.confluent_producer(settings, {"acks": "all"})    # librdkafka, same settings
    errors = kafka.import_kafka().errors                   # kafka-python, imported quietly

The client libraries are imported lazily (this module itself imports only the stdlib), and
kafka-python only through `import_kafka()`: kafka-python 3.0 warns (DeprecationWarning) about its
own use of importlib.resources at import time, which test runs treat as errors.

Raises: what the client library raises when building a client (kafka-python:
`kafka.errors.KafkaError` subclasses such as `NoBrokersAvailable`; confluent-kafka:
`KafkaException`); `ValueError` from `KafkaSettings` for settings that cannot work together.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import warnings
from types import ModuleType
from typing import Any

log = logging.getLogger("common.kafka")

_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


@dataclasses.dataclass(frozen=True)
class KafkaSettings:
    """Where Kafka is and how to authenticate: the same keys as the gateway's `[kafka]`."""

    bootstrap_servers: str = "127.0.0.1:19092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""  # "", PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    sasl_username: str = ""
    sasl_password: str = dataclasses.field(default="", repr=False)
    ssl_ca_file: str = ""  # "" uses the system store
    ssl_cert_file: str = ""
    ssl_key_file: str = ""

    def __post_init__(self) -> None:
        if not self.servers():
            raise ValueError("kafka bootstrap_servers is empty")
        if self.security_protocol not in _PROTOCOLS:
            raise ValueError(f"kafka security_protocol {self.security_protocol!r} is not one of "
                             f"{', '.join(_PROTOCOLS)}")
        if self.security_protocol.startswith("SASL_") and not self.sasl_mechanism:
            raise ValueError(f"kafka security_protocol {self.security_protocol} needs a "
                             "sasl_mechanism")

    @classmethod
    def of(cls, config: Any) -> KafkaSettings:
        """The settings of a config section with these attribute names (e.g. the gateway's
        `KafkaConfig`, which the back-office configs reuse as their `[kafka]`)."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})

    def servers(self) -> list[str]:
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]

    def kafka_python(self) -> dict[str, Any]:
        """Connection and security options in kafka-python's names."""
        opts: dict[str, Any] = {"bootstrap_servers": self.servers(),
                                "security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            opts.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                        sasl_plain_password=self.sasl_password)
        for key, value in (("ssl_cafile", self.ssl_ca_file), ("ssl_certfile", self.ssl_cert_file),
                           ("ssl_keyfile", self.ssl_key_file)):
            if value:
                opts[key] = value
        return opts

    def librdkafka(self) -> dict[str, Any]:
        """Connection and security options in librdkafka's (confluent-kafka's) names."""
        conf: dict[str, Any] = {"bootstrap.servers": ",".join(self.servers()),
                                "security.protocol": self.security_protocol}
        if self.sasl_mechanism:
            conf.update({"sasl.mechanism": self.sasl_mechanism,
                         "sasl.username": self.sasl_username,
                         "sasl.password": self.sasl_password})
        for key, value in (("ssl.ca.location", self.ssl_ca_file),
                           ("ssl.certificate.location", self.ssl_cert_file),
                           ("ssl.key.location", self.ssl_key_file)):
            if value:
                conf[key] = value
        return conf


_kafka: ModuleType | None = None


def import_kafka() -> ModuleType:
    """kafka-python's `kafka` package (with `kafka.admin` and `kafka.errors` loaded), imported
    once without its import-time DeprecationWarning."""
    global _kafka
    if _kafka is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import kafka
            import kafka.admin
            import kafka.errors
        _kafka = kafka
    return _kafka


def producer(settings: KafkaSettings, **options: Any) -> Any:
    """A `kafka.KafkaProducer`; `options` are kafka-python producer options (acks, linger_ms...)."""
    return import_kafka().KafkaProducer(**settings.kafka_python(), **options)


def consumer(settings: KafkaSettings, *topics: str, **options: Any) -> Any:
    """A `kafka.KafkaConsumer`, subscribed to `topics` if any (else assign partitions yourself)."""
    return import_kafka().KafkaConsumer(*topics, **settings.kafka_python(), **options)


def admin(settings: KafkaSettings, **options: Any) -> Any:
    """A `kafka.admin.KafkaAdminClient`. Raises kafka-python's error when it cannot bootstrap.

    kafka-python 3.0 starts the admin client's I/O thread before bootstrapping and leaves it
    running when bootstrap fails in `__init__` (one leaked thread per failed attempt, i.e. every
    few seconds while Kafka is down): this keeps a reference so it can stop it."""
    cls = import_kafka().admin.KafkaAdminClient
    client = cls.__new__(cls)
    try:
        client.__init__(**settings.kafka_python(), **options)
    except Exception:
        for part in ("_client", "_net"):
            obj = getattr(client, part, None)
            if obj is not None:
                with contextlib.suppress(Exception):
                    obj.close() if part == "_client" else obj.stop()
        raise
    return client


def confluent_producer(settings: KafkaSettings, conf: dict[str, Any] | None = None) -> Any:
    """A `confluent_kafka.Producer`; `conf` adds librdkafka properties (acks, linger.ms...)."""
    from confluent_kafka import Producer

    return Producer({**settings.librdkafka(), **(conf or {})})


def confluent_consumer(settings: KafkaSettings, conf: dict[str, Any]) -> Any:
    """A `confluent_kafka.Consumer`; `conf` must name at least `group.id`."""
    from confluent_kafka import Consumer

    return Consumer({**settings.librdkafka(), **conf})


def confluent_admin(settings: KafkaSettings, conf: dict[str, Any] | None = None) -> Any:
    """A `confluent_kafka.admin.AdminClient`."""
    from confluent_kafka.admin import AdminClient

    return AdminClient({**settings.librdkafka(), **(conf or {})})


def close_quietly(client: Any, timeout: float | None = None) -> None:
    """Close any client built here; closing one that lost its broker may raise (timeouts), which
    is logged at DEBUG and otherwise ignored.

    A confluent-kafka producer has no close: its queued records are purged, and their delivery
    reports (errors) are served by one short flush."""
    try:
        if type(client).__module__.startswith("confluent_kafka"):
            if hasattr(client, "purge"):
                client.purge()
                client.flush(0 if timeout is None else min(timeout, 1.0))
            elif hasattr(client, "close"):  # a consumer
                client.close()
        elif timeout is not None and type(client).__name__ == "KafkaProducer":
            client.close(timeout=timeout)
        else:
            client.close()
    except Exception:
        log.debug("closing a kafka client", exc_info=True)
