"""Builds the gateway with its real clients from the config: the paho `Source` and the Kafka
`Sink` of the configured `kafka.backend` (with its `LandedReader`, whose counts go to the
gateway's metrics). Building connects to nothing (the threads started by `Gateway.start` do,
retrying while a broker is down).

Raises: OSError from `build` when `metrics.address` cannot be bound (see `Gateway`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .config import GatewayConfig, KafkaConfig
from .evidence.store import open_store
from .kafka_admin import AdminProbe, TopicCreator
from .landed import LandedCollector, LandedReader
from .mqtt_source import PahoSource
from .seed import Seeded, TailFollower, TailReader
from .service import Gateway
from .sink import Sink
from .systemd import Notifier

log = logging.getLogger("gateway")


def build(config: GatewayConfig, *, retire: bool = False,
          notifier: Notifier | None = None) -> Gateway:
    """The gateway of `config`, with a `PahoSource` and the backend's `Sink`."""
    client_id, landed = config.mqtt.effective_client_id(), make_landed(config)
    gateway = Gateway(config, source=make_source(config, retire=retire),
                      sink=make_sink(config.kafka, client_id, landed),
                      notifier=notifier, retire=retire,
                      evidence_store=open_store(config.evidence.store),
                      seeder=make_seeder(config), follower=make_follower(config))
    if landed is not None:
        gateway.metrics.add_collector(LandedCollector(landed))
    backend = config.kafka.effective_backend()
    gateway.metrics.set_kafka_backend(backend)
    log.info("kafka backend: %s", backend, extra={"configured": config.kafka.backend})
    return gateway


def make_landed(config: GatewayConfig) -> LandedReader | None:
    """The read-back before re-sending an ambiguous record (None when turned off)."""
    limits = config.limits
    if limits.resend_check_max_records == 0:
        return None
    return LandedReader(config.kafka, config.mqtt.effective_client_id(),
                        max_records=limits.resend_check_max_records,
                        timeout_s=limits.resend_check_timeout_s)


def make_seeder(config: GatewayConfig) -> Callable[[], Seeded] | None:
    """The dedupe seed's read of the telemetry and violations topics' tail, and the alerts and
    evidence topics' (None when off)."""
    limits, topics = config.limits, config.kafka.topics
    if limits.seed_max_records == 0:
        return None
    return TailReader(config.kafka, (topics.telemetry, topics.violations),
                      config.mqtt.effective_client_id(), limits.seed_max_records,
                      limits.seed_horizon_s, limits.seed_timeout_s,
                      optional=(topics.alerts, topics.evidence)).read


def make_source(config: GatewayConfig, *, retire: bool = False) -> PahoSource:
    return PahoSource(config.mqtt, config.mqtt.effective_client_id(),
                      limit=config.limits.max_in_flight, retire=retire)


def make_sink(cfg: KafkaConfig, client_id: str, landed: LandedReader | None = None) -> Sink:
    """kafka-python's or confluent-kafka's adapter; topics and probe use kafka-python's admin,
    `landed` (None: ambiguous records are re-sent unchecked) a kafka-python consumer."""
    topics, probe = TopicCreator(cfg, client_id), AdminProbe(cfg, client_id)
    if cfg.effective_backend() == "confluent":
        from .confluent import ConfluentSink

        return ConfluentSink(cfg, client_id, topics, probe, landed)
    from .kafka_python import KafkaPythonSink

    return KafkaPythonSink(cfg, client_id, topics, probe, landed)


def make_follower(config: GatewayConfig) -> TailFollower | None:
    """The seed's follower (limits.seed_follow, for several gateways in one share group)."""
    limits, topics = config.limits, config.kafka.topics
    if not (limits.seed_follow and limits.seed_max_records):
        return None
    return TailFollower(config.kafka, (topics.telemetry, topics.violations, topics.alerts,
                                       topics.evidence), config.mqtt.effective_client_id())
