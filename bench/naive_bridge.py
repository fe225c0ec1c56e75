"""A naive MQTT -> Kafka bridge: the ~30 lines a user would write instead of the gateway.

    naive_bridge.py MQTT_HOST MQTT_PORT KAFKA_BOOTSTRAP KAFKA_TOPIC CLIENT_ID

The baseline of bench/gateway.py, not for use: paho's on_message hands the payload to
kafka-python's `producer.send` with default settings and returns, and paho acknowledges the
message (PUBACK) as soon as on_message returns, before Kafka has it ("early ack"): a crash
loses whatever the producer still buffers. It subscribes with a persistent session
(clean_session=False) so the broker queues for it while it is away. No validation, no dedupe,
no dead letters: the raw msgpack goes to one topic, keyed by the MQTT topic (which carries the
drone id and the kind the payload leaves out; keyed, like the gateway's records, so a drone's
messages stay in one partition). The "ready" line and the SIGTERM handler are there only so the
bench can drive it.
"""

import signal
import sys

import paho.mqtt.client as mqtt
from kafka import KafkaProducer

host, port, bootstrap, topic, client_id = sys.argv[1:6]
producer = KafkaProducer(bootstrap_servers=bootstrap)


def on_connect(client, userdata, flags, reason, properties):
    client.subscribe("presacop/v1/drones/+/+", qos=1)


def on_subscribe(client, userdata, mid, reasons, properties):
    print("ready", flush=True)


def on_message(client, userdata, msg):
    producer.send(topic, msg.payload, key=msg.topic.encode())


client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
signal.signal(signal.SIGTERM, lambda *_: client.disconnect())
client.connect(host, int(port))
client.loop_forever()
producer.flush()
producer.close()
