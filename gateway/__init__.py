"""The MQTT -> Kafka gateway: nothing a drone handed the broker is acknowledged before Kafka has it.

Public API:

    from gateway import GatewayConfig, build, load_config
    gw = build(load_config("gateway.toml"))   # or build(GatewayConfig()) for the dev stack
    gw.start(); gw.wait_ready(30); ...; gw.stop()   # or gw.run() until gw.request_stop()

    Gateway(config, source=..., sink=...)     # any Source and Sink: gateway.testing has
                                              # in-memory ones for logic tests

Modules, one concern each:

    config        typed TOML (the keys of docs/gateway.md)
    router        pure: one MQTT message -> the Kafka records it becomes (records: their builders)
    dedupe        per-drone duplicate window and sequence gaps
    service       Gateway: the ack path (ack only after Kafka), backpressure, drain, exit codes
    source        the Source / Intake interfaces and Delivery (MQTT side)
    mqtt_source   PahoSource: the paho-mqtt adapter (mqtt_wire: cheaper reads and PUBACKs)
    sink          the Sink interface (Kafka side: one producer client)
    kafka_python  KafkaPythonSink: the kafka-python adapter; its errors -> ours
    confluent     ConfluentSink: the confluent-kafka adapter; its errors -> ours
    retrying      RetryingProducer: retries by `retriable`, producer rebuilds, stall watchdog
    landed        LandedReader: reads Kafka back before an ambiguous record is sent again
    kafka_admin   topic creation and the admin probe (kafka-python's admin client)
    kafka_health  HealthProbe: the thread behind `kafka_up`
    factory       build(config): the Gateway with its real Source and Sink
    testing       MemorySource, MemorySink
    errors        the error tree; metrics, systemd, logs, cli (evidence/, signatures: their own)

Errors: bad input never raises, it becomes a dead-letter record. What can escape:

    common.config.ConfigError   load_config: a bad key, named
    OSError                     build / Gateway: metrics.address cannot be bound
    gateway.errors.GatewayError and subclasses (errors.py), only passed to callbacks: a
                                record's outcome on the Kafka side (retried, dead-lettered, or
                                `KafkaRefused`: the gateway stops with exit code 3)
"""

from .config import GatewayConfig, load_config

__all__ = ["Gateway", "GatewayConfig", "build", "load_config"]


def __getattr__(name: str) -> object:
    # Gateway pulls in paho, kafka-python and prometheus_client: import it only when asked, so
    # `presacop --help` and config checks work without them.
    if name == "Gateway":
        from .service import Gateway

        return Gateway
    if name == "build":
        from .factory import build

        return build
    raise AttributeError(name)
