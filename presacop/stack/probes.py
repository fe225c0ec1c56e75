"""Round trips that prove a broker works: an MQTT QoS 1 message and a Kafka record (acks=all) sent
through it and received back. A broker counts as ready only after its round trip.

Raises: `StackError` when the message does not come back; client library errors as they are.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid

from presacop.stack.errors import StackError

HEALTH_TOPIC = "__presacop_health"
MQTT_HEALTH_TOPIC = "presacop/_health"


def mqtt_round_trip(host: str, port: int, timeout: float = 10.0) -> None:
    """Subscribe, publish one QoS 1 message and receive it. Raises StackError on failure."""
    import paho.mqtt.client as mqtt

    token = uuid.uuid4().hex
    topic = f"{MQTT_HEALTH_TOPIC}/{token}"
    subscribed, received = threading.Event(), threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"presacop-health-{token[:8]}")
    client.on_subscribe = lambda *_args: subscribed.set()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.payload == token.encode():
            received.set()

    client.on_message = on_message
    try:
        client.connect(host, port, keepalive=10)
        client.loop_start()
        client.subscribe(topic, qos=1)
        if not subscribed.wait(timeout):
            raise StackError(f"MQTT {host}:{port}: no SUBACK within {timeout:.0f} s")
        client.publish(topic, token, qos=1)
        if not received.wait(timeout):
            raise StackError(f"MQTT {host}:{port}: published message not received back")
    finally:
        client.loop_stop()
        client.disconnect()
        # disconnect() leaves the socket to the loop, which we just stopped: close it ourselves.
        sock = client.socket()
        if sock is not None:
            sock.close()


def kafka_round_trip(bootstrap: str, timeout: float = 10.0) -> None:
    """Create the health topic if needed, produce (acks=all) and consume one record back.

    Raises a kafka-python error or StackError on failure.
    """
    from common import kafka

    k, settings, ms = kafka.import_kafka(), kafka.KafkaSettings(bootstrap_servers=bootstrap), \
        int(timeout * 1000)
    admin = kafka.admin(settings, request_timeout_ms=ms)
    try:
        with contextlib.suppress(k.errors.TopicAlreadyExistsError):
            admin.create_topics([k.admin.NewTopic(HEALTH_TOPIC, 1, 1)], timeout_ms=ms)
    finally:
        admin.close()
    token = uuid.uuid4().hex.encode()
    producer = kafka.producer(settings, acks="all", request_timeout_ms=ms)
    try:
        meta = producer.send(HEALTH_TOPIC, token).get(timeout=timeout)
    finally:
        producer.close(timeout=5)
    tp = k.TopicPartition(HEALTH_TOPIC, meta.partition)
    consumer = kafka.consumer(settings, enable_auto_commit=False)
    try:
        consumer.assign([tp])
        consumer.seek(tp, meta.offset)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                if any(r.value == token for r in records):
                    return
        raise StackError(f"Kafka {bootstrap}: produced record not consumed back")
    finally:
        consumer.close()
