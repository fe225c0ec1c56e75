"""The local stack is real: messages cross the real Mosquitto and Kafka, and `presacop stack`
starts, reports and stops exactly its own processes."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt

from common.kafka import import_kafka
from presacop.stack import (
    Kafka,
    Mosquitto,
    Stack,
    free_ports,
    kafka_round_trip,
    mqtt_round_trip,
)
from tests.support import wait_until

_kafka = import_kafka()
KafkaAdminClient, KafkaConsumer = _kafka.KafkaAdminClient, _kafka.KafkaConsumer
KafkaProducer, TopicPartition, NewTopic = _kafka.KafkaProducer, _kafka.TopicPartition, \
    _kafka.admin.NewTopic


# -- helpers -------------------------------------------------------------------------------------


class Subscriber:
    """A paho client collecting payloads of one topic, with a persistent session if asked."""

    def __init__(self, port: int, topic: str, client_id: str, clean: bool = True) -> None:
        self.payloads: list[bytes] = []
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        assert self.subscribed.wait(10), "no SUBACK from the broker"

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.payloads.append(msg.payload)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[bytes]:
        """The payloads received, once there are `count` (AssertionError after `timeout`)."""
        def received() -> list[bytes] | None:
            with self._lock:
                return list(self.payloads) if len(self.payloads) >= count else None

        got = wait_until(received, timeout, f"{count} messages at the subscriber")
        assert got is not None
        return got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_all(port: int, topic: str, payloads: list[bytes]) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    try:
        infos = [client.publish(topic, p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(timeout=30)
            assert info.is_published(), "PUBACK missing"
    finally:
        client.disconnect()
        client.loop_stop()


def create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()


def produce_all(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        futures = [producer.send(topic, v) for v in values]
        offsets = [future.get(timeout=30).offset for future in futures]
        # A fresh one-partition topic: every record acknowledged once, in the order sent.
        assert offsets == list(range(len(values))), offsets[:10]
    finally:
        producer.close(timeout=10)


def consume_all(bootstrap: str, topic: str, count: int, timeout: float = 30.0) -> list[bytes]:
    tp = TopicPartition(topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    values: list[bytes] = []
    try:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        for _ in range(int(timeout * 2)):
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(r.value for r in records)
            if len(values) >= count:
                break
    finally:
        consumer.close()
    return values


# -- the brokers are real ------------------------------------------------------------------------


def test_mqtt_publish_subscribe_through_mosquitto(stack: Stack) -> None:
    topic = f"test/stack/{uuid.uuid4().hex}"
    sent = [f"m{i}".encode() for i in range(500)]
    sub = Subscriber(stack.mqtt_port, topic, client_id=f"sub-{uuid.uuid4().hex[:8]}")
    try:
        publish_all(stack.mqtt_port, topic, sent)
        got = sub.wait_for(len(sent))
    finally:
        sub.close()
    assert got == sent


def test_kafka_produce_consume_acks_all(stack: Stack) -> None:
    topic = f"test-stack-{uuid.uuid4().hex[:12]}"
    create_topic(stack.kafka_bootstrap, topic)
    sent = [f"r{i}".encode() for i in range(300)]
    produce_all(stack.kafka_bootstrap, topic, sent)
    assert consume_all(stack.kafka_bootstrap, topic, len(sent)) == sent


def test_mosquitto_config_never_drops_qos1_silently(stack: Stack) -> None:
    conf = stack.mosquitto.config_text()
    assert "max_queued_messages 0" in conf.splitlines()
    assert "persistence true" in conf.splitlines()
    assert f"listener {stack.mqtt_port} 127.0.0.1" in conf.splitlines()


def test_mosquitto_restart_keeps_queued_qos1_for_persistent_session(
    mosquitto_factory: Callable[..., Mosquitto],
) -> None:
    broker = mosquitto_factory()
    topic = f"test/persist/{uuid.uuid4().hex}"
    client_id = f"durable-{uuid.uuid4().hex[:8]}"
    Subscriber(broker.port, topic, client_id, clean=False).close()  # session exists, offline
    sent = [f"q{i}".encode() for i in range(50)]
    publish_all(broker.port, topic, sent)
    first_pid = broker.pid
    broker.stop()  # a clean stop saves the in-memory database
    assert not broker.running()
    broker.start()
    assert broker.pid != first_pid
    sub = Subscriber(broker.port, topic, client_id, clean=False)
    try:
        got = sub.wait_for(len(sent))
    finally:
        sub.close()
    assert got == sent


def test_kafka_restart_keeps_data(kafka_factory: Callable[..., Kafka]) -> None:
    broker = kafka_factory()
    topic = f"test-restart-{uuid.uuid4().hex[:12]}"
    create_topic(broker.bootstrap, topic)
    sent = [f"d{i}".encode() for i in range(20)]
    produce_all(broker.bootstrap, topic, sent)
    broker.stop()
    assert not broker.running()
    broker.start()
    assert consume_all(broker.bootstrap, topic, len(sent)) == sent


def test_kill_leaves_no_process(mosquitto_factory: Callable[..., Mosquitto]) -> None:
    broker = mosquitto_factory()
    pid = broker.pid
    assert pid is not None
    broker.kill()
    assert not broker.running()
    assert not pid_alive(pid)


# -- presacop stack up / down / status ----------------------------------------------------------


def presacop_stack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "presacop.cli", "stack", *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def pid_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie (an exited child nobody has reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_stack_up_is_idempotent_and_down_stops_exactly_its_processes(tmp_path: Path) -> None:
    mqtt_port, kafka_port, controller_port = free_ports(3)
    state = tmp_path / "state"
    opts = [
        "--state-dir", str(state), "--mqtt-port", str(mqtt_port),
        "--kafka-port", str(kafka_port), "--controller-port", str(controller_port),
        "--kafka-heap", "512m",
    ]  # fmt: skip
    try:
        first = presacop_stack("up", *opts)
        assert first.returncode == 0, first.stderr
        assert f"127.0.0.1:{mqtt_port}" in first.stdout
        assert f"127.0.0.1:{kafka_port}" in first.stdout
        pids = [int((state / d / f"{d}.pid").read_text()) for d in ("mosquitto", "kafka")]
        assert all(pid_alive(p) for p in pids)

        second = presacop_stack("up", *opts)
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stdout
        again = [int((state / d / f"{d}.pid").read_text()) for d in ("mosquitto", "kafka")]
        assert again == pids, "a second `up` must not start new brokers"

        # The brokers outlived the `up` command and carry real traffic.
        mqtt_round_trip("127.0.0.1", mqtt_port)
        kafka_round_trip(f"127.0.0.1:{kafka_port}")

        status = presacop_stack("status", "--state-dir", str(state))
        assert status.returncode == 0
        assert str(pids[0]) in status.stdout and str(pids[1]) in status.stdout

        down = presacop_stack("down", "--state-dir", str(state))
        assert down.returncode == 0, down.stderr
        assert not any(pid_alive(p) for p in pids)
        assert not (state / "mosquitto" / "mosquitto.pid").exists()

        stopped = presacop_stack("status", "--state-dir", str(state))
        assert stopped.returncode == 3
        assert "stopped" in stopped.stdout
    finally:
        presacop_stack("down", "--state-dir", str(state))


def test_taken_port_is_reported_before_anything_starts(tmp_path: Path) -> None:
    state = tmp_path / "state"
    kafka_port, controller_port = free_ports(2)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        try:
            result = presacop_stack(
                "up", "--state-dir", str(state), "--mqtt-port", str(taken),
                "--kafka-port", str(kafka_port), "--controller-port", str(controller_port),
            )  # fmt: skip
        finally:
            presacop_stack("down", "--state-dir", str(state))
    assert result.returncode != 0
    assert f"port {taken}" in result.stderr
    assert "Mosquitto" in result.stderr
    assert "--mqtt-port" in result.stderr
    assert not list(state.glob("*/*.pid")), "nothing may start when a port is taken"


def test_status_without_a_stack_says_not_running(tmp_path: Path) -> None:
    result = presacop_stack("status", "--state-dir", str(tmp_path / "none"))
    assert result.returncode == 3
    assert "not running" in result.stdout
