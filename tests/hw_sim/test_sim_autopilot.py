"""`presacop sim --position-source mavlink`: every drone flies on a simulated autopilot that its
agent reads over MAVLink 2 on UDP; real processes, real Mosquitto."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

import protocol
from hw_sim.nyc import NYC_BOUNDS
from presacop.stack import Mosquitto
from protocol import StatusFlags


def test_sim_flies_two_processes_on_simulated_autopilots(
        mosquitto_factory: Callable[..., Mosquitto]) -> None:
    broker = mosquitto_factory()
    received: list[protocol.Telemetry] = []
    lock = threading.Lock()
    subscribed = threading.Event()

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/telemetry"):
            with lock:
                received.append(protocol.decode(msg.payload, msg.topic))

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sim-mavlink-gateway",
                         protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(protocol.SUBSCRIPTION, qos=1)
    client.on_subscribe = lambda _c, _u, _mid, _rcs, _p: subscribed.set()
    client.on_message = on_message
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        assert subscribed.wait(30)
        done = subprocess.run(
            [sys.executable, "-m", "presacop.sim", "--drones", "2", "--processes", "2",
             "--position-source", "mavlink", "--broker", f"127.0.0.1:{broker.port}",
             "--duration", "6", "--drain", "20", "--json", "--fps", "2", "--resolution",
             "320x180", "--interval", "1"], capture_output=True, text=True, timeout=120,
            check=False)
    finally:
        client.disconnect()
        client.loop_stop()
    assert done.returncode == 0, done.stderr
    drones = json.loads(done.stdout)["drones"]
    assert all(d["mavlink_messages"] > 20 for d in drones.values()), drones  # read over MAVLink
    with lock:
        flying = [t for t in received if not t.flags & (StatusFlags.GPS_NO_FIX
                                                         | StatusFlags.AUTOPILOT_LOST)]
    assert {t.header.drone_id for t in flying} == {"sim-0001", "sim-0002"}
    lat_min, lat_max, lon_min, lon_max = NYC_BOUNDS
    assert all(lat_min <= t.position.lat <= lat_max and lon_min <= t.position.lon <= lon_max
               and t.position.alt_m == 40 for t in flying)
