"""Fleet: real agents through real proxies to a real Mosquitto; every accepted violation arrives."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

import protocol
from hw_sim import nyc
from hw_sim.faults import LinkFaults, fault_schedule
from hw_sim.fleet import Fleet
from presacop.stack import Mosquitto
from tests.support import wait_until

WAIT = 60.0
FAST_CAMERA = {"width": 640, "height": 360, "fps": 5.0, "violation_rate": 0.5}


class Collector:
    """Subscribes to every drone topic (QoS 1) and decodes what arrives."""

    def __init__(self, broker: Mosquitto) -> None:
        self.lock = threading.Lock()
        self.messages: list[tuple[str, protocol.Message]] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hw-sim-collector")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(protocol.SUBSCRIPTION, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.ready.wait(WAIT)

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        if protocol.is_evidence_topic(msg.topic):
            return  # evidence upload frames (protocol section 14) are not messages
        decoded = protocol.decode(msg.payload, msg.topic)  # raises if a drone sent anything invalid
        with self.lock:
            self.messages.append((msg.topic, decoded))

    def violations(self) -> dict[str, protocol.Violation]:
        with self.lock:
            return {protocol.message_id(m): m for _, m in self.messages
                    if isinstance(m, protocol.Violation)}

    def of_kind(self, cls: type) -> list[protocol.Message]:
        with self.lock:
            return [m for _, m in self.messages if isinstance(m, cls)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_two_drones_deliver_every_accepted_violation_through_a_cut(
        mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path) -> None:
    broker = mosquitto_factory()
    collector = Collector(broker)
    fleet = Fleet(2, broker.host, broker.port, tmp_path / "fleet", seed=3, camera=FAST_CAMERA)
    try:
        fleet.start()
        assert fleet.drone_ids == ["sim-0001", "sim-0002"]
        wait_until(lambda: all(len(v) >= 2 for v in fleet.accepted().values()), WAIT,
                   "2 accepted violations per drone")
        fleet.cut_links(duration_s=2.0)
        wait_until(lambda: fleet.stats()["totals"]["link_up"] == 2, WAIT, "both links restored")
        count_after_cut = len(fleet.accepted_ids())
        wait_until(lambda: len(fleet.accepted_ids()) >= count_after_cut + 2, WAIT,
                   "2 more accepted violations after the cut")
        assert fleet.wait_drained(WAIT)
    finally:
        fleet.stop()
    accepted = fleet.accepted_ids()
    wait_until(lambda: accepted <= set(collector.violations()), WAIT,
               "every accepted violation at the collector")
    collector.close()

    received = collector.violations()
    for drone_id, violations in fleet.accepted().items():
        seqs = [v.header.seq for v in violations]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        for v in violations:
            assert v.header.drone_id == drone_id
            assert received[protocol.message_id(v)] == v  # same bytes' worth of facts
    stats = fleet.stats()
    totals = stats["totals"]
    assert totals["accepted"] == totals["violations"] == len(accepted)
    assert totals["link_cuts"] == 2 and totals["outbox_depth"] == 0
    assert totals["acked"] >= len(accepted)
    actions = [e.action for e in fleet.events()]
    assert actions.count("cut") == 2 and actions.count("restore") == 2  # stop() restored nothing
    telemetry = collector.of_kind(protocol.Telemetry)
    assert telemetry, "no telemetry arrived"
    lat_min, lat_max, lon_min, lon_max = nyc.NYC_BOUNDS
    for t in telemetry:
        assert isinstance(t, protocol.Telemetry)
        assert lat_min <= t.position.lat <= lat_max and lon_min <= t.position.lon <= lon_max


def test_same_seed_gives_the_same_drones(tmp_path: Path) -> None:
    a = Fleet(3, "127.0.0.1", 1883, tmp_path / "a", seed=9)
    b = Fleet(3, "127.0.0.1", 1883, tmp_path / "b", seed=9)
    c = Fleet(3, "127.0.0.1", 1883, tmp_path / "c", seed=10)
    seeds = [[f._seed(i, "camera") for i in range(3)] for f in (a, b, c)]
    assert seeds[0] == seeds[1] != seeds[2]
    assert len(set(seeds[0])) == 3


@pytest.mark.parametrize("kwargs, word", [
    ({"n_drones": 0}, "n_drones"),
    ({"camera": {"widht": 640}}, "widht"),
    ({"camera": {"fps": -1}}, "fps"),
    ({"camera": {"seed": 1}}, "seed"),
    ({"agent": {"mqtt": {"keepalive_s": 1}}}, "mqtt.keepalive_s"),
    ({"agent": {"no_such_key": 1}}, "no_such_key"),
    ({"id_prefix": "bad id"}, "id_prefix"),
])
def test_bad_arguments_fail_before_anything_starts(kwargs: dict, word: str,
                                                  tmp_path: Path) -> None:
    args = {"n_drones": 2, "broker_host": "127.0.0.1", "broker_port": 1883,
            "data_root": tmp_path, **kwargs}
    with pytest.raises(ValueError, match=word):
        Fleet(**args)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("spec, expected", [
    ("none", None),
    ("every=20,down=3", LinkFaults(20.0, 3.0)),
    ("every=10, down=1, mode=stall, jitter=0", LinkFaults(10.0, 1.0, "stall", 0.0)),
])
def test_link_fault_specs(spec: str, expected: LinkFaults | None) -> None:
    assert LinkFaults.parse(spec) == expected


@pytest.mark.parametrize("spec, word", [
    ("every=ten", "not a number"), ("often=3", "bad part"), ("every=5,mode=flaky", "mode"),
    ("every=0,down=1", "every"), ("every=5,down=1,jitter=1", "jitter"),
])
def test_bad_link_fault_specs(spec: str, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        LinkFaults.parse(spec)


def test_fault_schedule_is_deterministic_per_drone() -> None:
    faults = LinkFaults(every_s=10, down_s=2, jitter=0.5)
    a = fault_schedule(1, {"sim-0001": 1, "sim-0002": 2}, faults, horizon_s=300)
    b = fault_schedule(1, {"sim-0001": 1, "sim-0002": 2}, faults, horizon_s=300)
    other_seed = fault_schedule(2, {"sim-0001": 1, "sim-0002": 2}, faults, horizon_s=300)
    bigger = fault_schedule(1, {"sim-0001": 1, "sim-0002": 2, "sim-0003": 3}, faults, 300)
    assert a == b and a != other_seed
    assert [e for e in bigger if e[2] != "sim-0003"] == a  # adding a drone changes no others
    for drone in ("sim-0001", "sim-0002"):
        mine = [e for e in a if e[2] == drone]
        # cut, restore, cut, restore...: each cut lasts down_s, gaps are 5..15 s
        assert [e[1] for e in mine] == ["cut", "restore"] * (len(mine) // 2)
        for (t_cut, _, _), (t_up, _, _) in zip(mine[::2], mine[1::2], strict=True):
            assert abs(t_up - t_cut - 2) < 1e-9
        gaps = [b[0] - a[0] for a, b in zip(mine[1::2], mine[2::2], strict=False)]
        assert all(5 - 1e-9 <= g <= 15 + 1e-9 for g in gaps) and len(gaps) >= 15
