"""Helpers for the gateway tests (conftest.py re-exports the fixtures): message builders, a
QoS 1 publisher, a Kafka reader, and the gateway run as a real subprocess
(`.venv/bin/presacop gateway --config <toml>`).

Each test picks its own Kafka topic names and drone ids, so all of them can share the session
`stack` without seeing each other's records.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import protocol
from common.kafka import import_kafka
from common.merge import deep_merge
from common.proc import ChildProcess
from presacop.stack import free_port
from tests.support import gateway_config, wait_until

if sys.version_info >= (3, 11):
    import tomllib
else:  # 3.10: the backport
    import tomli as tomllib

_kafka = import_kafka()
KafkaConsumer, TopicPartition = _kafka.KafkaConsumer, _kafka.TopicPartition

PRESACOP = str(Path(sys.executable).with_name("presacop"))
# kafka.backend values the delivery and Kafka-outage tests run with (the dev extra installs both).
BACKENDS = ("kafka-python", "confluent")
TOPIC_KINDS = ("telemetry", "violations", "alerts", "deadletter")
POS = protocol.Position(40.7128, -74.006, 30.0)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def header(drone: str, seq: int, t: int | None = None,
           source: protocol.TimeSource = protocol.TimeSource.GPS) -> protocol.Header:
    return protocol.Header(drone, seq, now_ms() if t is None else t, source)


def telemetry(drone: str, seq: int, **kw: Any) -> protocol.Telemetry:
    return protocol.Telemetry(header(drone, seq, **kw), POS, 90.0, 7.5, 80)


def violation(drone: str, seq: int, code: int | None = 21, **kw: Any) -> protocol.Violation:
    return protocol.Violation(header(drone, seq, **kw), POS, "ABC1234", "NY", 0.93, code,
                              f"{seq:016x}", protocol.Vehicle("TOYOT", "WH", "SUBN"))


def status(drone: str, seq: int, online: bool = True, **kw: Any) -> protocol.Status:
    return protocol.Status(header(drone, seq, **kw), online)


def mqtt_topic(msg: protocol.Message) -> str:
    return protocol.topic(msg.header.drone_id, protocol.kind_of(msg))


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


# -- MQTT -------------------------------------------------------------------------------------


class Publisher:
    """A plain paho client publishing at QoS 1, as a drone would."""

    def __init__(self, host: str, port: int, client_id: str | None = None) -> None:
        import paho.mqtt.client as mqtt

        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                   client_id=client_id or unique("pub-"), protocol=mqtt.MQTTv5)
        self._client.max_inflight_messages_set(100)
        self._client.connect(host, port)
        self._client.loop_start()
        self._infos: list[Any] = []

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self._infos.append(self._client.publish(topic, payload, qos=1, retain=retain))

    def send(self, msg: protocol.Message) -> str:
        self.publish(mqtt_topic(msg), protocol.encode(msg))
        return protocol.message_id(msg)

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until the broker acknowledged everything published."""
        deadline = time.monotonic() + timeout
        for info in self._infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "broker did not acknowledge a publish in time"
        self._infos.clear()

    def close(self) -> None:
        self.flush()
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def publisher_factory() -> Iterator[Callable[[str, int], Publisher]]:
    made: list[Publisher] = []

    def make(host: str, port: int) -> Publisher:
        pub = Publisher(host, port)
        made.append(pub)
        return pub

    yield make
    for pub in made:
        pub.close()


# -- Kafka ------------------------------------------------------------------------------------


@dataclass
class Rec:
    topic: str
    key: bytes | None
    value: dict[str, Any]
    headers: dict[str, bytes]
    partition: int


def _from_the_beginning(bootstrap: str, topic: str,
                        timeout: float) -> tuple[KafkaConsumer, list[TopicPartition]]:
    """A consumer assigned to every partition of `topic` (waiting for it to exist), at offset 0."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest")
    try:
        parts = wait_until(lambda: consumer.partitions_for_topic(topic), timeout,
                           f"Kafka topic {topic} to exist")
    except BaseException:
        consumer.close()
        raise
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    return consumer, tps


def _poll(consumer: KafkaConsumer, out: list[Rec]) -> None:
    for tp_records in consumer.poll(timeout_ms=500).values():
        out += [Rec(r.topic, r.key, json.loads(r.value), dict(r.headers), r.partition)
                for r in tp_records]


def read_topic(bootstrap: str, topic: str, *, until: Callable[[list[Rec]], bool],
               timeout: float = 90.0) -> list[Rec]:
    """Every record of `topic` from the beginning, polling until `until(records)` or timeout
    (then the records read so far: the caller's assertion says what is missing)."""
    deadline = time.monotonic() + timeout
    consumer, _ = _from_the_beginning(bootstrap, topic, timeout)
    try:
        out: list[Rec] = []
        while time.monotonic() < deadline and not until(out):
            _poll(consumer, out)
        return out
    finally:
        consumer.close()


def read_to_end(bootstrap: str, topic: str, timeout: float = 90.0) -> list[Rec]:
    """Every record of `topic` up to its end offsets as of the call: everything Kafka had
    acknowledged by then, so nothing written before the call can be missed (unlike reading for a
    while)."""
    consumer, tps = _from_the_beginning(bootstrap, topic, timeout)
    try:
        end = consumer.end_offsets(tps)
        out: list[Rec] = []

        def at_end() -> bool:
            _poll(consumer, out)
            return all(consumer.position(tp) >= end[tp] for tp in tps)

        wait_until(at_end, timeout, f"{topic} read up to its end offsets {end}", interval=0)
        return out
    finally:
        consumer.close()


def read_ids(bootstrap: str, topic: str, expected: set[str], timeout: float = 120.0,
             field_name: str = "message_id") -> list[str]:
    """message ids found in `topic` (with repeats), waiting until `expected` are all there."""
    recs = read_topic(bootstrap, topic, timeout=timeout,
                      until=lambda rs: expected <= {r.value[field_name] for r in rs})
    return [r.value[field_name] for r in recs]


# -- the gateway as a subprocess --------------------------------------------------------------


def settings_from_toml(mqtt_extra: str = "", extra: str = "") -> dict[str, Any]:
    """A test's own gateway settings written as TOML fragments (`mqtt_extra`: keys and sub-tables
    of [mqtt]; `extra`: whole tables), as the dict `tests.support.gateway_config` merges."""
    mqtt = tomllib.loads(mqtt_extra)
    return deep_merge({"mqtt": mqtt} if mqtt else {}, tomllib.loads(extra))


def topic_names(prefix: str) -> dict[str, str]:
    return {k: f"{prefix}.{k}" for k in TOPIC_KINDS}


@dataclass
class GatewayProc:
    """One `presacop gateway` process; restartable with the same config and client id."""

    config_path: Path
    metrics_port: int
    log_path: Path
    mqtt_port: int
    client_id: str
    env: dict[str, str] = field(default_factory=dict)
    proc: ChildProcess | None = None

    def start(self) -> GatewayProc:
        self.proc = ChildProcess([PRESACOP, "gateway", "--config", str(self.config_path)],
                                 name="gateway", log=self.log_path,
                                 env={**os.environ, **self.env}).start()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None and self.proc.pid is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.running()

    def health(self) -> tuple[int, dict[str, Any]]:
        url = f"http://127.0.0.1:{self.metrics_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read())
            exc.close()
            return exc.code, body

    def wait_ready(self, timeout: float = 90.0) -> None:
        def ready() -> bool:
            assert self.alive(), f"gateway exited early:\n{self.log_tail()}"
            return self.health()[0] == 200

        try:
            wait_until(ready, timeout, "/healthz to answer 200", ignoring=(OSError,))
        except AssertionError as exc:
            if str(exc).startswith("gateway exited early"):
                raise  # the message of a dead gateway already carries its log
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None

    def metrics(self) -> dict[str, float]:
        """Samples of /metrics as {"name{labels}": value}."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def kill(self) -> None:
        """SIGKILL: no drain, no goodbye."""
        assert self.proc is not None
        self.proc.kill(30)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait for the exit (the drain); its exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        assert code is not None
        return code

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(60, kill_timeout=30)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Callable[..., GatewayProc]]:
    """factory(mqtt_port, bootstrap, topics, client_id=, share_group=, drone=, mqtt_extra=,
    extra=, env=, backend=)
    -> a configured (not started) GatewayProc; every one is stopped at teardown."""
    made: list[GatewayProc] = []

    def make(mqtt_port: int, bootstrap: str, topics: dict[str, str], *,
             client_id: str | None = None, share_group: str | None = None, extra: str = "",
             mqtt_extra: str = "", log_level: str = "INFO", drone: str | None = None,
             env: dict[str, str] | None = None, backend: str = "kafka-python") -> GatewayProc:
        n = len(made)
        metrics_port = free_port()
        path = tmp_path / f"gateway-{n}.toml"
        client_id = client_id or unique("gw-")
        settings = settings_from_toml(mqtt_extra, extra)
        # Only this test's drone unless it says otherwise: the session broker also carries other
        # tests' traffic and retained statuses, which would otherwise reach this gateway too.
        settings = deep_merge({"mqtt": {
            "subscription": f"presacop/v1/drones/{drone or unique('none-')}/+"}}, settings)
        path.write_text(gateway_config(mqtt_port, bootstrap, topics=topics, client_id=client_id,
                                       metrics_port=metrics_port,
                                       share_group=share_group or unique("grp-"),
                                       log_level=log_level, backend=backend, settings=settings))
        gw = GatewayProc(path, metrics_port, tmp_path / f"gateway-{n}.log", mqtt_port,
                         client_id, env=env or {})
        made.append(gw)
        return gw

    yield make
    for gw in made:
        gw.stop()
    for gw in made:
        # The gateway's persistent session would otherwise stay subscribed on the shared broker
        # and queue every later test's messages. A gateway on a TLS or password listener is on a
        # test's private broker (the shared one has neither), which goes with its test.
        settings = tomllib.loads(gw.config_path.read_text())["mqtt"]
        if not settings.get("tls", {}).get("enabled") and "username" not in settings:
            end_session("127.0.0.1", gw.mqtt_port, gw.client_id)


def end_session(host: str, port: int, client_id: str) -> None:
    """Remove a client's persistent session: connect with clean start, expiry 0, disconnect."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    try:
        client.connect(host, port, clean_start=True)
    except OSError:
        return  # the broker is gone (a private one already stopped): so is the session
    client.loop_start()
    wait_until(client.is_connected, 10, f"a clean-start connection as {client_id}")
    client.disconnect()
    client.loop_stop()


def metric(samples: dict[str, float], name: str) -> float:
    """Sum of all series of `name` (any labels)."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def duplicates(ids: Iterable[str]) -> int:
    ids = list(ids)
    return len(ids) - len(set(ids))
