"""LinkProxy carrying real MQTT between paho and a real Mosquitto: cuts are real disconnects."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

import paho.mqtt.client as mqtt
import pytest

from hw_sim.link import LinkProxy
from presacop.stack import Mosquitto

WAIT = 20.0


class Client:
    """A paho client that records connects, disconnects and messages (thread-safe)."""

    def __init__(self, client_id: str, port: int, keepalive: int = 60) -> None:
        self.connects = threading.Semaphore(0)
        self.disconnects = threading.Semaphore(0)
        self.messages: queue.Queue[bytes] = queue.Queue()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv311, clean_session=True)
        self.c.reconnect_delay_set(min_delay=1, max_delay=1)
        self.c.on_connect = lambda c, u, f, rc, p: self._connected(rc)
        self.c.on_disconnect = lambda c, u, f, rc, p: self.disconnects.release()
        self.c.on_message = lambda c, u, m: self.messages.put(m.payload)
        # "Connected" once the subscription is acknowledged, so no publish can race it.
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.connects.release()
        self.c.connect("127.0.0.1", port, keepalive=keepalive)
        self.c.loop_start()

    def _connected(self, rc: mqtt.ReasonCode) -> None:
        if not rc.is_failure:
            self.c.subscribe("hw_sim/test", qos=1)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def broker(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    return mosquitto_factory()


@pytest.fixture
def proxy(broker: Mosquitto) -> Iterator[LinkProxy]:
    p = LinkProxy(broker.host, broker.port, name="mqtt").start()
    yield p
    p.stop()


def publish_until_received(pub: mqtt.Client, sub: Client, payload: bytes) -> None:
    info = pub.publish("hw_sim/test", payload, qos=1)
    info.wait_for_publish(WAIT)
    assert sub.messages.get(timeout=WAIT) == payload


def test_mqtt_through_proxy_then_cut_disconnects_and_restore_reconnects(
        broker: Mosquitto, proxy: LinkProxy) -> None:
    sub = Client("hw-sim-sub", proxy.port)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hw-sim-pub")
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        assert sub.connects.acquire(timeout=WAIT)
        publish_until_received(pub, sub, b"before")
        up_before = proxy.stats()["bytes_up"]
        assert up_before > 0 and proxy.stats()["bytes_down"] > 0

        proxy.cut()
        assert sub.disconnects.acquire(timeout=WAIT), "paho did not see the cut"
        pub.publish("hw_sim/test", b"lost-for-this-clean-session", qos=1).wait_for_publish(WAIT)

        proxy.restore()
        assert sub.connects.acquire(timeout=WAIT), "paho did not reconnect after restore"
        publish_until_received(pub, sub, b"after")
        stats = proxy.stats()
        assert stats["cuts"] == 1 and stats["connections"] >= 2
    finally:
        sub.close()
        pub.disconnect()
        pub.loop_stop()


def test_stall_is_noticed_by_keepalive_and_slow_link_still_delivers(
        broker: Mosquitto, proxy: LinkProxy) -> None:
    sub = Client("hw-sim-stall", proxy.port, keepalive=2)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hw-sim-pub2")
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        assert sub.connects.acquire(timeout=WAIT)
        proxy.cut(mode="stall")
        # Nothing closes the socket: only the missing PINGRESP tells paho the link is dead.
        assert sub.disconnects.acquire(timeout=WAIT), "keepalive did not detect the stall"
        proxy.restore()
        assert sub.connects.acquire(timeout=WAIT)
        proxy.slow(delay_ms=100)
        for i in range(3):
            publish_until_received(pub, sub, f"slow-{i}".encode())
    finally:
        sub.close()
        pub.disconnect()
        pub.loop_stop()
