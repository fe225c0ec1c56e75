"""mq-bridge (PyPI `mq-bridge` 1.2.0: a Rust core with librdkafka) as an MQTT -> Kafka route.

    mq_bridge_run.py MQTT_HOST MQTT_PORT KAFKA_BOOTSTRAP KAFKA_TOPIC CLIENT_ID

The comparison row of bench/gateway.py (issue 16), not for use: mq-bridge's own MQTT 5 consumer
(QoS 1, persistent session) and Kafka publisher, configured for the gateway's delivery guarantee:
the Kafka endpoint's `delayed_ack` stays false (its default: the MQTT message is acknowledged
only after Kafka confirmed the write), and its producer options ask for `acks=all` and
`enable.idempotence=true`. The raw msgpack goes to one topic (mq-bridge keys each record by its
own message id: it has no per-drone key); no validation, no dedupe, no alerts, no dead letters.

It prints "ready" once a probe message published on the subscribed topics has reached Kafka,
i.e. the route is subscribed and its producer has the topic's metadata; SIGTERM stops it.
"""

import signal
import sys
import threading
import time

import mq_bridge
import paho.mqtt.client as mqtt
from kafka import KafkaConsumer

host, port, bootstrap, topic, client_id = sys.argv[1:6]
PROBE = b"mq-bridge probe"

route = mq_bridge.Route.from_config({
    "input": {"mqtt": {"url": f"mqtt://{host}:{port}", "topic": "presacop/v1/drones/+/+",
                       "qos": 1, "client_id": client_id, "clean_session": False,
                       "protocol": "v5"}},
    "output": {"kafka": {"url": bootstrap, "topic": topic, "delayed_ack": False,
                         "producer_options": [["acks", "all"],
                                              ["enable.idempotence", "true"]]}},
    "required_delivery": "at_least_once",
}, name="bench")
stopped = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stopped.set())
route.start()

consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                         consumer_timeout_ms=500)
probe = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{client_id}-probe")
probe.connect(host, int(port))
probe.loop_start()
# Probes until one arrives; then until the last one sent has arrived too (the broker drops
# those published before the subscription, and none may land after "ready").
sent, seen = 0, set()
while not stopped.is_set() and (not seen or sent - 1 not in seen):
    if not seen:
        probe.publish(f"presacop/v1/drones/{client_id}-probe/telemetry", PROBE + b"%d" % sent,
                      qos=1)
        sent += 1
    seen.update(int(rec.value[len(PROBE):]) for rec in consumer if rec.value.startswith(PROBE))
probe.loop_stop()
probe.disconnect()
consumer.close()
if seen:
    print("ready", flush=True)
while not stopped.is_set():
    time.sleep(0.2)
route.stop()
