"""The local broker stack: a real Mosquitto and a real Apache Kafka (KRaft) on loopback.

Used by `presacop stack`, the test fixtures, the demo and the benchmarks. Nothing here is a mock:
each service is the real broker process, started from a generated config in its own state
directory, and counted as ready only after a real round trip (MQTT publish/subscribe, Kafka
produce with acks=all and consume).

Modules, one concern each:

    ports      free ports on 127.0.0.1; is a port taken / answering
    service    Service: a broker process owned through a PID file (common.proc.ChildProcess)
    mosquitto  Mosquitto and its generated config
    kafka      Kafka (KRaft, one node), ensure_kafka_classpath
    maven      resolve(name, version, *coords) -> classpath (common.maven, with the errors below)
    probes     mqtt_round_trip, kafka_round_trip
    stack      Stack (both brokers, recorded in stack.json), running_stack
    cli        `presacop stack up|down|status`

Whoever starts a broker stops it (fixtures, the demo, the bench and `stack down` do); nothing is
stopped implicitly at interpreter exit, so `presacop stack up` can leave its brokers running.

Errors (raised by `start()`, `ensure_kafka_classpath()`, `maven.resolve()` and `Stack.load()`):

    StackError
     +-- PortInUseError      a port is taken before we start; names the service and the port
     +-- MissingToolError    mosquitto, java or mvn is not installed; says what to install
     +-- StartError          the broker exited or failed its round trip in time; has a log tail
"""

from presacop.stack.errors import MissingToolError, PortInUseError, StackError, StartError
from presacop.stack.kafka import KAFKA_VERSION, Kafka, ensure_kafka_classpath
from presacop.stack.maven import cache_dir
from presacop.stack.mosquitto import Mosquitto
from presacop.stack.ports import HOST, accepts, free_port, free_ports, port_is_free
from presacop.stack.probes import HEALTH_TOPIC, MQTT_HEALTH_TOPIC, kafka_round_trip, mqtt_round_trip
from presacop.stack.stack import Stack, StackPorts, running_stack

__all__ = [
    "HEALTH_TOPIC",
    "HOST",
    "KAFKA_VERSION",
    "MQTT_HEALTH_TOPIC",
    "Kafka",
    "MissingToolError",
    "Mosquitto",
    "PortInUseError",
    "Stack",
    "StackError",
    "StackPorts",
    "StartError",
    "accepts",
    "cache_dir",
    "ensure_kafka_classpath",
    "free_port",
    "free_ports",
    "kafka_round_trip",
    "mqtt_round_trip",
    "port_is_free",
    "running_stack",
]
