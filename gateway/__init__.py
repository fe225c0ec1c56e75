"""The MQTT -> Kafka gateway: nothing a drone handed the broker is acknowledged before Kafka has it.

Public API:

    from gateway import Gateway, GatewayConfig, load_config
    gw = Gateway(load_config("gateway.toml"))   # or Gateway(GatewayConfig()) for the dev stack
    gw.start(); gw.wait_ready(30); ...; gw.stop()   # or gw.run() until gw.request_stop()

Modules: `config` (typed TOML), `router` + `records` (pure: MQTT message -> Kafka records),
`dedupe` (per-drone window and gaps), `mqtt_source` (paho, manual ack), `kafka_sink` (producer
with retries), `service` (the ack path), `metrics`, `systemd`, `logs`, `cli`.

Errors: bad input never raises, it becomes a dead-letter record. What can escape:

    common.config.ConfigError     load_config: a bad key, named
    gateway.kafka_sink.RecordRejected  only passed to callbacks: Kafka refuses a record for good
                                       (the gateway dead-letters the message instead)
"""

from .config import GatewayConfig, load_config

__all__ = ["Gateway", "GatewayConfig", "load_config"]


def __getattr__(name: str) -> object:
    # Gateway pulls in paho, kafka-python and prometheus_client: import it only when asked, so
    # `presacop --help` and config checks work without them.
    if name == "Gateway":
        from .service import Gateway

        return Gateway
    raise AttributeError(name)
