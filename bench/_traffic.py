"""The bench's drone traffic (private): which messages, and the publisher processes that send them.

A `Plan` is deterministic: publisher `p` sends messages 0..share(p)-1, message `i` of it comes from
drone `<tag>p<p>d<i % drones_per_publisher>` with seq `i // drones_per_publisher`, and its kind
(telemetry, violation, unqualified violation) comes from a seeded generator. So the parent can
list every message id a run published without being told, and check them against Kafka.

Each message is built and encoded with the protocol at the moment it is published, with
`time_ms` = that moment, as a drone would stamp it. That stamp is not what latency is measured
from: the protocol floors `time_ms` to 40 ms, so it would overstate every latency by 0-40 ms.
Instead each publisher records the wall-clock time (`time.time_ns()`, the clock Kafka's
LogAppendTime and the subscribers' receive stamps are read from on this machine) just before
handing each message to paho, and reports those times with its results (`sent_ms`, one float
per message sent: ~17k floats per publisher at 50,000 messages, a few hundred KB pickled).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

TELEMETRY, VIOLATION, UNQUALIFIED = 0, 1, 2

_PLATE_CHARS = "ABCDEFGHJKLMNPRSTVWXYZ0123456789"
_CODES = (21, 38, 14, 40, 37, 46, 19, 20)


@dataclass(frozen=True)
class Plan:
    tag: str  # run tag, part of every drone id, so runs never share message ids
    messages: int
    publishers: int
    drones: int = 1000
    violation_share: float = 0.25
    unqualified_share: float = 0.01  # of violations, as the customer reports for real drones
    window: int = 100  # QoS 1 publishes in flight per publisher
    rate: float = 0.0  # total msgs/s over all publishers; 0 = as fast as the broker allows
    seed: int = 7

    @property
    def per_publisher(self) -> int:
        return max(1, self.drones // self.publishers)

    def share(self, p: int) -> int:
        base, extra = divmod(self.messages, self.publishers)
        return base + (1 if p < extra else 0)

    def drone(self, p: int, i: int) -> str:
        return f"{self.tag}p{p}d{i % self.per_publisher:04d}"

    def message_id(self, p: int, i: int) -> str:
        return f"{self.drone(p, i)}:{i // self.per_publisher}"

    def kinds(self, p: int) -> bytes:
        """Kind code of each message of publisher `p`."""
        rng = random.Random(f"{self.seed}:{p}")
        out = bytearray(self.share(p))
        for i in range(len(out)):
            if rng.random() < self.violation_share:
                out[i] = UNQUALIFIED if rng.random() < self.unqualified_share else VIOLATION
        return bytes(out)

    def ids(self, p: int, indices: range | list[int]) -> list[str]:
        return [self.message_id(p, i) for i in indices]

    def counts(self) -> dict[str, int]:
        total = {"telemetry": 0, "violation": 0, "unqualified": 0}
        names = ("telemetry", "violation", "unqualified")
        for p in range(self.publishers):
            kinds = self.kinds(p)
            for code, name in enumerate(names):
                total[name] += kinds.count(code)
        return total


class Messages:
    """Builds the protocol message `i` of publisher `p` for a given send time."""

    def __init__(self, plan: Plan, p: int) -> None:
        import protocol
        from protocol import Header, Position, Telemetry, TimeSource, Vehicle, Violation

        self._protocol = protocol
        self._header = Header
        self._gps = TimeSource.GPS
        self.plan, self.p = plan, p
        self.kinds = plan.kinds(p)
        rng = random.Random(f"{plan.seed}:templates:{p}")
        self._tel: list[Any] = []
        self._vio: list[Any] = []
        self._topics: list[tuple[str, str]] = []
        for d in range(plan.per_publisher):
            drone = plan.drone(p, d)
            h = Header(drone, 0, 0, TimeSource.GPS)
            pos = Position(40.70 + rng.random() * 0.1, -74.01 + rng.random() * 0.1, 120.0)
            self._tel.append(Telemetry(h, pos, rng.random() * 359, 8.0, rng.randint(20, 100)))
            plate = "".join(rng.choice(_PLATE_CHARS) for _ in range(7))
            self._vio.append(Violation(h, pos, plate, "NY", 0.93, rng.choice(_CODES),
                                       f"{rng.getrandbits(64):016x}",
                                       Vehicle("TOYOT", "WH", "SUBN")))
            self._topics.append((protocol.topic(drone, protocol.Kind.TELEMETRY),
                                 protocol.topic(drone, protocol.Kind.VIOLATION)))

    def build(self, i: int, time_ms: int) -> tuple[str, Any]:
        """(MQTT topic, message) of message `i`, stamped `time_ms`."""
        d = i % self.plan.per_publisher
        header = self._header(self.plan.drone(self.p, d), i // self.plan.per_publisher, time_ms,
                              self._gps)
        kind = self.kinds[i]
        if kind == TELEMETRY:
            return self._topics[d][0], replace(self._tel[d], header=header)
        code = None if kind == UNQUALIFIED else self._vio[d].code
        return self._topics[d][1], replace(self._vio[d], header=header, code=code)

    def encoded(self, i: int, time_ms: int) -> tuple[str, bytes]:
        topic, msg = self.build(i, time_ms)
        return topic, self._protocol.encode(msg)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def publish(plan: Plan, p: int, host: str, port: int, go: Any, results: Any,
            deadline_wall: float) -> None:
    """A publisher process: connect, report ready, wait for `go`, publish share(p) QoS 1
    messages keeping at most `plan.window` unacknowledged (paced when `plan.rate` > 0), wait for
    the PUBACKs, report (with each message's publish time, `sent_ms`). Runs until done or
    `deadline_wall` (time.time())."""
    import paho.mqtt.client as mqtt

    messages = Messages(plan, p)
    share = plan.share(p)
    lock = threading.Lock()
    window = threading.Semaphore(plan.window)
    pending: dict[int, int] = {}  # mid -> message index
    early: set[int] = set()  # PUBACKs that beat `pending[mid] = i` (see below)
    state = {"acked": 0, "last_ack": 0.0, "connected": threading.Event()}
    sent_ms: list[float] = []  # message i's publish time, wall-clock ms

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            state["connected"].set()

    def count_ack() -> None:  # caller holds `lock`
        state["acked"] += 1
        state["last_ack"] = time.time()
        window.release()

    def on_publish(_c: Any, _u: Any, mid: int, _reason: Any, _p: Any) -> None:
        with lock:
            if pending.pop(mid, None) is None:
                early.add(mid)
            else:
                count_ack()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{plan.tag}-pub{p}",
                         protocol=mqtt.MQTTv311, clean_session=True)
    client.max_inflight_messages_set(plan.window)
    client.max_queued_messages_set(0)
    client.on_connect = on_connect
    client.on_publish = on_publish
    client.connect(host, port, keepalive=60)
    client.loop_start()
    try:
        if not state["connected"].wait(30):
            results.put(("error", p, "no CONNACK within 30 s"))
            return
        results.put(("ready", p, None))
        go.wait()
        cpu0 = time.process_time()
        first = time.time()
        period = plan.publishers / plan.rate if plan.rate > 0 else 0.0
        sent = 0
        for i in range(share):
            if period:
                ahead = first + i * period - time.time()
                if ahead > 0:
                    time.sleep(ahead)
            if not window.acquire(timeout=max(0.0, deadline_wall - time.time())):
                break
            topic, payload = messages.encoded(i, now_ms())
            sent_ms.append(time.time_ns() / 1e6)  # after encoding: latency excludes our own work
            # Not under `lock`: paho calls on_publish holding its own mutex, which publish()
            # takes too, so holding ours here could deadlock.
            info = client.publish(topic, payload, qos=1)
            with lock:
                if info.mid in early:
                    early.discard(info.mid)
                    count_ack()
                else:
                    pending[info.mid] = i
            sent += 1
        while time.time() < deadline_wall:
            with lock:
                if not pending:
                    break
            time.sleep(0.005)
        with lock:
            unacked = sorted(pending.values())
            n_acked, last_ack = state["acked"], state["last_ack"]
        results.put(("done", p, {"sent": sent, "acked": n_acked, "unacked": unacked,
                                 "first": first, "last_ack": last_ack,
                                 "cpu_s": time.process_time() - cpu0, "sent_ms": sent_ms}))
    finally:
        client.disconnect()
        client.loop_stop()
