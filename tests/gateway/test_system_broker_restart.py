"""The whole chain through a Mosquitto restart: real agents (hw_sim fleet) -> a real Mosquitto
that is restarted -> the real gateway in a shared subscription -> Kafka. Nothing accepted is lost.

Mosquitto 2.0.11 does not persist shared subscriptions: after a restart, until the gateway
subscribes again, every publish is answered PUBACK 0x10 "No matching subscribers" and dropped.
The gateway is held stopped (SIGSTOP) across the restart so that window is certain, not a race:
the agents must keep what the broker dropped and send it again once the gateway is back."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

from gateway_testlib import read_topic, topic_names, unique

from hw_sim.fleet import Fleet
from presacop.stack import free_port
from tests.support import wait_until


def test_broker_restart_with_the_gateway_away_loses_nothing(
        tmp_path: Path, stack, mosquitto_factory, gateway_factory) -> None:
    port = free_port()
    broker = mosquitto_factory(port=port)
    topics = topic_names(unique("restart"))
    prefix = unique("rs").replace("-", "")[:8]
    gw = gateway_factory(port, stack.kafka_bootstrap, topics,
                         mqtt_extra='subscription = "presacop/v1/drones/+/+"').start()
    gw.wait_ready()
    fleet = Fleet(2, "127.0.0.1", port, tmp_path / "fleet", seed=3, id_prefix=prefix,
                  camera={"width": 320, "height": 180, "fps": 4.0, "violation_rate": 0.6},
                  agent={"telemetry": {"period_s": 0.5},
                         "mqtt": {"backoff_min_s": 0.1, "backoff_max_s": 0.5}})
    stopped = False
    try:
        fleet.start()
        wait_until(lambda: fleet.stats()["totals"].get("acked", 0) >= 10, 60, "first deliveries")

        os.kill(gw.pid, signal.SIGSTOP)
        stopped = True
        broker.stop()  # graceful: sessions and queued messages are saved, $share subscriptions not
        broker.start()
        # The drones are back and publishing; nobody is subscribed.
        wait_until(lambda: fleet.stats()["totals"].get("unrouted", 0) >= 5, 60,
                   "publishes answered 'no matching subscribers'")
        os.kill(gw.pid, signal.SIGCONT)
        stopped = False
        gw.wait_ready()
        acked = fleet.stats()["totals"].get("acked", 0)
        wait_until(lambda: fleet.stats()["totals"].get("acked", 0) >= acked + 10, 60,
                   "10 more deliveries with the gateway back")
    finally:
        if stopped:
            os.kill(gw.pid, signal.SIGCONT)
        fleet.stop()  # lands the drones: they drain their outboxes to the broker

    stats = fleet.stats()
    assert stats["totals"]["outbox_depth"] == 0, stats["totals"]
    violations = fleet.accepted_ids()
    telemetry = {d: row["telemetry"] for d, row in stats["drones"].items()}
    assert violations and all(telemetry.values())

    def telemetry_in(records: list) -> Counter[str]:
        ids = {r.value["message_id"] for r in records if r.value.get("kind") == "telemetry"}
        return Counter(mid.rpartition(":")[0] for mid in ids)

    got_v = read_topic(stack.kafka_bootstrap, topics["violations"],
                       until=lambda rs: violations <= {r.value["message_id"] for r in rs})
    assert violations <= {r.value["message_id"] for r in got_v}
    got_t = read_topic(stack.kafka_bootstrap, topics["telemetry"],
                       until=lambda rs: all(telemetry_in(rs)[d] >= n
                                            for d, n in telemetry.items()))
    found = telemetry_in(got_t)
    assert all(found[d] >= n for d, n in telemetry.items()), (found, telemetry)
    assert gw.alive()
