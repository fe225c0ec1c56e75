"""Bench the MQTT -> Kafka path: the PresaCop gateway side by side with a naive bridge and with
what each broker allows on its own, in one run on one machine (so the ratios hold on a noisy one).

    .venv/bin/python bench/gateway.py                    # ~3-4 min: own brokers, every run, table
    .venv/bin/python bench/gateway.py --messages 5000    # quick look
    .venv/bin/python bench/gateway.py --json             # one JSON object instead of the table
    .venv/bin/python bench/gateway.py --profile          # + the gateway under py-spy, top functions

Every run drives the same kind of traffic: --messages QoS 1 protocol-encoded messages (telemetry
and violations, 1% of violations unqualified, --drones drone ids) from --publishers processes,
each keeping --window publishes in flight, through a real Mosquitto and into a real Kafka:

    presacop gateway      `presacop gateway` (ack after Kafka, acks=all, validation, dedupe)
    ... (confluent)       the same with kafka.backend = "confluent" (librdkafka), if installed
    ... x2 (share group)  two gateway processes in one MQTT share group (same topics), figures
                          over both: does scale-out work (on 2 shared cores, not how far)
    naive bridge          bench/naive_bridge.py: paho on_message -> kafka-python send, early ack
    MQTT limit (paho)     a paho subscriber that only counts
    MQTT limit (C)        mosquitto_sub counting (if installed)
    Kafka limit (python)  the gateway's own records produced straight to Kafka with kafka-python
    Kafka limit (java)    Kafka's ProducerPerformance with the same record values
    presacop gateway @50% the gateway again, publishers paced to half its measured rate (each
                          backend)
    naive bridge @50%     the naive bridge at that same pace (a latency control)
    mosquitto_sub @50%    publishers -> broker -> C subscriber at that pace: what the machine
                          itself adds to latency, with no bridge and no Kafka

Figures (bench/README.md says more): msgs/s from the first publish to the last record's Kafka
LogAppendTime (the topics are created with message.timestamp.type=LogAppendTime, so it is the
broker's clock at append); latency = LogAppendTime (MQTT limits: the subscriber's receive time)
- the message's exact publish time, which each publisher takes with time.time_ns() just before
handing the message to paho and reports per message id with its results. Not the message's
time_ms: the protocol floors that to 40 ms, which would add 0-40 ms to every latency. Both ends
read the same wall clock (one machine). CPU seconds and peak RSS (VmHWM) of the bridge process;
lost = ids the broker acknowledged to a publisher but absent from Kafka after reading the topics
to the end; dup = ids found more than once. It starts its own Mosquitto and Kafka on free ports
in a temporary directory (or uses --mqtt/--kafka) and stops everything it started, by PID, also
on error or when --timeout runs out. Loopback only.

Exit status: 0 when every run completed (targets missed or not), 1 when a run failed, 2 for bad
flags.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import multiprocessing as mp
import os
import queue
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # our packages, not bench/*.py

from _common import (
    Alarm,
    BenchError,
    Child,
    cpu_seconds,
    fmt,
    machine,
    machine_line,
    peak_rss,
    percentile,
    python_cmd,
    table,
)
from _traffic import Messages, Plan, publish

RUNS = ("mqtt", "mqtt-c", "kafka", "kafka-java", "naive", "mq-bridge", "gateway",
        "gateway-confluent", "gateway-x2", "half", "gateway-pycrc")
MQ_BRIDGE = "mq-bridge 1.2.0"  # row name; the bench extra pins that version (pyproject.toml)
CONFLUENT = " (confluent)"  # row-name suffix: the gateway with kafka.backend = "confluent"
SCALE_OUT = 2  # gateway processes in one share group for the "gateway-x2" run
PARTITIONS = 6  # the gateway's default for the topics it creates; every run uses the same
LOG_APPEND = {"message.timestamp.type": "LogAppendTime"}
TARGETS = {"vs_naive": 2.0, "vs_limit": 0.6, "p99_half_ms": 50.0, "vs_mq_bridge": 1.0,
           "cpu_us_per_msg": 40.0}
WARM_UP = 300  # messages through each bridge before its measured run


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _kafka() -> Any:
    from common.kafka import import_kafka

    return import_kafka()


# -- results -------------------------------------------------------------------------------------


@dataclass
class Row:
    """One run's figures. None means "not measured by this run"."""

    name: str
    role: str  # "bridge" | "mqtt-limit" | "kafka-limit" | "control" (paced, for latency)
    messages: int  # acknowledged to the publishers (or produced)
    found: int = 0  # distinct message ids at the far end
    seconds: float | None = None
    rate: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    latency: str = ""
    cpu_s: float | None = None
    peak_rss_mb: float | None = None
    lost: int | None = None
    duplicates: int | None = None
    mosquitto_cpu_s: float | None = None
    kafka_cpu_s: float | None = None
    publishers_cpu_s: float | None = None
    publish_rate: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def cpu_us_per_msg(self) -> float | None:
        if self.cpu_s is None or not self.found:
            return None
        return self.cpu_s / self.found * 1e6


# -- the bench -----------------------------------------------------------------------------------


class Publishers:
    """The publisher processes of one run (see bench/_traffic.py)."""

    def __init__(self, plan: Plan, host: str, port: int, deadline_wall: float) -> None:
        ctx = mp.get_context("spawn")  # no fork of a process that already runs threads
        self.plan = plan
        self.go_event = ctx.Event()
        self.results: Any = ctx.Queue()
        self.procs = [ctx.Process(target=publish, name=f"publisher-{p}",
                                  args=(plan, p, host, port, self.go_event, self.results,
                                        deadline_wall))
                      for p in range(plan.publishers)]
        for proc in self.procs:
            proc.start()
        self.done: dict[int, dict[str, Any]] = {}

    def wait_ready(self, timeout: float) -> None:
        ready: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(ready) < len(self.procs):
            what, p, detail = self._get(deadline)
            if what == "error":
                raise BenchError(f"publisher {p}: {detail}")
            if what == "ready":
                ready.add(p)

    def go(self) -> None:
        self.go_event.set()

    def poll(self) -> bool:
        """Collect finished publishers; True once all have reported."""
        with contextlib.suppress(queue.Empty):
            while True:
                what, p, detail = self.results.get_nowait()
                if what == "done":
                    self.done[p] = detail
                elif what == "error":
                    raise BenchError(f"publisher {p}: {detail}")
        if len(self.done) < len(self.procs) and not any(p.is_alive() for p in self.procs):
            time.sleep(0.2)  # a last message may still be in the queue's pipe
            with contextlib.suppress(queue.Empty):
                while True:
                    what, p, detail = self.results.get_nowait()
                    if what == "done":
                        self.done[p] = detail
            if len(self.done) < len(self.procs):
                raise BenchError("a publisher process died without reporting")
        return len(self.done) == len(self.procs)

    def _get(self, deadline: float) -> tuple[str, int, Any]:
        while True:
            try:
                return self.results.get(timeout=0.5)  # type: ignore[no-any-return]
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise BenchError("publishers not ready in time") from None
                if not all(p.is_alive() for p in self.procs):
                    raise BenchError("a publisher process died at start") from None

    @property
    def first(self) -> float:
        return min(d["first"] for d in self.done.values())

    @property
    def acked(self) -> int:
        return sum(d["acked"] for d in self.done.values())

    @property
    def cpu_s(self) -> float:
        return sum(d.get("cpu_s", 0.0) for d in self.done.values())

    @property
    def publish_rate(self) -> float | None:
        last = max(d["last_ack"] for d in self.done.values())
        return self.acked / (last - self.first) if last > self.first else None

    def sent_ms(self) -> dict[str, float]:
        """Publish time (wall-clock ms, time.time_ns()) of every message sent, by message id."""
        return {self.plan.message_id(p, i): t for p, d in self.done.items()
                for i, t in enumerate(d["sent_ms"])}

    def acked_ids(self) -> set[str]:
        """Ids the broker acknowledged (PUBACK) to the publishers."""
        ids: set[str] = set()
        for p, d in self.done.items():
            unacked = set(d["unacked"])
            ids.update(self.plan.message_id(p, i) for i in range(d["sent"]) if i not in unacked)
        return ids

    def close(self) -> None:
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()  # our own child, by PID
                proc.join(timeout=5)
        self.results.close()
        self.results.join_thread()


class Bench:
    def __init__(self, args: argparse.Namespace, alarm: Alarm) -> None:
        self.args = args
        self.alarm = alarm
        self.dir = Path(tempfile.mkdtemp(prefix="presacop-bench-"))
        self.children: list[Child] = []
        self.services: list[Any] = []
        self.mqtt_host, self.mqtt_port = "127.0.0.1", 0
        self.bootstrap = ""
        self._tags = 0
        # Topic names and drone ids of this invocation: unique even on a reused Kafka (--kafka).
        self._prefix = "b" + secrets.token_hex(2)
        self._offsets: Any = None
        self.classpath: str | None = None
        self.first_publish_ms = 0.0  # the current bridge run's first publish (time.time() ms)

    # -- set-up and tear-down --------------------------------------------------------------------

    def start(self) -> None:
        from presacop.stack import Kafka, Mosquitto, free_ports

        if self.args.mqtt:
            self.mqtt_host, port = self.args.mqtt.rsplit(":", 1)
            self.mqtt_port = int(port)
        else:
            mosquitto = Mosquitto(self.dir / "mosquitto", free_ports(1)[0])
            log(f"starting Mosquitto on {mosquitto.port}")
            self.services.append(mosquitto)
            mosquitto.start()
            self.mqtt_port = mosquitto.port
        if self.args.kafka:
            self.bootstrap = self.args.kafka
        else:
            port, ctrl = free_ports(2)
            kafka = Kafka(self.dir / "kafka", port, ctrl, heap="1g")
            log(f"starting Kafka on {port} (10-30 s)")
            self.services.append(kafka)
            kafka.start()
            self.bootstrap = kafka.bootstrap
        k = _kafka()
        self._offsets = k.KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)

    def close(self) -> None:
        for child in self.children:
            with contextlib.suppress(Exception):
                child.stop(timeout=10)
        if self._offsets is not None:
            with contextlib.suppress(Exception):
                self._offsets.close()
        for service in reversed(self.services):
            log(f"stopping {service.name} (pid {service.pid})")
            with contextlib.suppress(Exception):
                service.stop(timeout=30)
        if self.args.keep:
            log(f"state kept in {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def child(self, name: str, cmd: list[str], **kw: Any) -> Child:
        c = Child(name, cmd, log=self.dir / f"{name}.log", **kw)
        self.children.append(c)
        return c

    def release(self, c: Child, timeout: float = 20.0) -> int | None:
        rc = c.stop(timeout=timeout)
        self.children.remove(c)
        return rc

    def tag(self) -> str:
        self._tags += 1
        return f"{self._prefix}r{self._tags}"

    def plan(self, tag: str, *, messages: int | None = None, rate: float = 0.0) -> Plan:
        a = self.args
        return Plan(tag=tag, messages=messages or a.messages, publishers=a.publishers,
                    drones=a.drones, violation_share=a.violation_share,
                    unqualified_share=a.unqualified_share, window=a.window, rate=rate)

    # -- broker helpers ------------------------------------------------------------------------

    def create_topics(self, names: list[str]) -> None:
        k = _kafka()
        admin = k.admin.KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            admin.create_topics([k.admin.NewTopic(n, PARTITIONS, 1, topic_configs=LOG_APPEND)
                                 for n in names])
        finally:
            admin.close()

    def partitions(self, topics: list[str]) -> list[Any]:
        k = _kafka()
        return [k.TopicPartition(t, i) for t in topics for i in range(PARTITIONS)]

    def end_total(self, topics: list[str]) -> int:
        return int(sum(self._offsets.end_offsets(self.partitions(topics)).values()))

    def records(self, topics: list[str]) -> Iterator[Any]:
        """Every record of `topics`, read from the beginning to the end offsets of now."""
        k = _kafka()
        consumer = k.KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                   max_poll_records=5000)
        try:
            tps = self.partitions(topics)
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            end = consumer.end_offsets(tps)
            left = {tp for tp in tps if end[tp] > 0}
            deadline = time.monotonic() + max(30.0, self.alarm.left() - 30)
            while left and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=1000).values():
                    yield from batch
                left = {tp for tp in left if consumer.position(tp) < end[tp]}
            if left:
                raise BenchError(f"could not read {topics} to the end")
        finally:
            consumer.close()

    def drop_session(self, client_id: str) -> None:
        """Connect with a clean session and leave: the broker forgets the bridge's session and
        stops queueing for it, so the next run starts on an idle broker."""
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv311, clean_session=True)
        try:
            client.connect(self.mqtt_host, self.mqtt_port, keepalive=10)
            client.loop_start()
            time.sleep(0.3)
            client.disconnect()
            client.loop_stop()
        except OSError as exc:
            log(f"could not drop session {client_id}: {exc}")

    def broker_cpu(self) -> dict[str, float]:
        return {s.name: cpu_seconds(s.pid) for s in self.services if s.pid}

    def broker_delta(self, row: Row, before: dict[str, float]) -> None:
        now = self.broker_cpu()
        if "Mosquitto" in before:
            row.mosquitto_cpu_s = now.get("Mosquitto", 0.0) - before["Mosquitto"]
        if "Kafka" in before:
            row.kafka_cpu_s = now.get("Kafka", 0.0) - before["Kafka"]

    def publishers(self, plan: Plan) -> Publishers:
        deadline_wall = time.time() + max(10.0, self.alarm.left() - 60)
        pubs = Publishers(plan, self.mqtt_host, self.mqtt_port, deadline_wall)
        try:
            pubs.wait_ready(60)
        except BaseException:
            pubs.close()
            raise
        return pubs

    def wait_done(self, pubs: Publishers, reached: Callable[[int], bool],
                  progress: Callable[[], int], watch: list[Child]) -> str | None:
        """Wait until the publishers are done and `reached(acked)` holds. Returns a note when it
        gave up because nothing moved for --stall seconds after the publishers finished."""
        last, last_change = -1, time.monotonic()
        while True:
            done = pubs.poll()
            now = progress()
            if now != last:
                last, last_change = now, time.monotonic()
            if done and reached(pubs.acked):
                return None
            for c in watch:
                if not c.alive():
                    raise BenchError(f"{c.name} exited early; log {c.log}")
            if done and time.monotonic() - last_change > self.args.stall:
                return f"stalled: nothing new for {self.args.stall:.0f} s, stopped waiting"
            time.sleep(0.1)

    # -- bridge runs (gateway, naive) ------------------------------------------------------------

    def bridge_run(self, name: str, tag: str, plan: Plan,
                   launch: Callable[[], list[tuple[Child, int]]], topics: list[str],
                   message_topics: list[str], client_ids: list[str],
                   read: Callable[[Any], str | None],
                   ) -> tuple[Row, dict[str, int], dict[str, float]]:
        """Publish `plan` through a bridge and check Kafka. `launch` starts the bridge's
        processes (several: one share group) and returns each with the PID to account, once all
        are subscribed. `read` turns a record into its message id or None (not a message record).
        CPU is summed over the processes, peak RSS is the largest (a note lists each). Returns
        the row, the other records per topic, and each message's publish time (ms) by id."""
        self.create_topics(topics)
        bridges = launch()
        children = [c for c, _ in bridges]
        warm = self.warm_up(tag, message_topics, children)
        pubs = self.publishers(plan)
        try:
            base = self.end_total(message_topics)
            cpu0, brokers0 = sum(cpu_seconds(pid) for _, pid in bridges), self.broker_cpu()
            log(f"{name} [{tag}]: publishing {plan.messages} messages from {plan.publishers} "
                "processes" + (f" at {plan.rate:,.0f} msgs/s" if plan.rate else ""))
            pubs.go()
            note = self.wait_done(pubs, lambda n: self.end_total(message_topics) - base >= n,
                                  lambda: self.end_total(message_topics), children)
            row = Row(name, "bridge", pubs.acked)
            row.cpu_s = sum(cpu_seconds(pid) for _, pid in bridges) - cpu0
            rss = {c.name.removeprefix(f"{tag}-"): peak_rss(pid) / 2**20 for c, pid in bridges}
            row.peak_rss_mb = max(rss.values())
            self.broker_delta(row, brokers0)
            row.publishers_cpu_s, row.publish_rate = pubs.cpu_s, pubs.publish_rate
            if note:
                row.notes.append(note)
            expected, first, sent = pubs.acked_ids(), pubs.first, pubs.sent_ms()
            self.first_publish_ms = first * 1000  # for `read`s that date a record (mq-bridge)
        finally:
            pubs.close()
        if len(rss) > 1:
            row.notes.append(f"CPU summed over {len(rss)} processes; peak RSS per process: "
                             + ", ".join(f"{k} {v:.0f} MB" for k, v in rss.items())
                             + " (column: the largest)")
        for c, pid in bridges:
            rc = self.stop_bridge(c, pid)
            if rc not in (0, None, -signal.SIGTERM):
                row.notes.append(f"{c.name} exit status {rc}")
        for client_id in client_ids:
            self.drop_session(client_id)
        per_topic, seen, types, foreign = self.tally(self.records(topics), message_topics, read,
                                                     warm, own=f"{plan.tag}p")
        if foreign:
            row.notes.append(f"{len(foreign)} ids of other drones (e.g. statuses retained on the "
                             f"broker), {foreign.total() - len(foreign)} of their records repeats: "
                             "not this run's traffic, not counted")
        self.account(row, expected, seen, first, types, sent)
        return row, per_topic, sent

    @staticmethod
    def tally(records: Iterable[Any], message_topics: list[str], read: Callable[[Any], str | None],
              warm: str, own: str,
              ) -> tuple[dict[str, int], dict[str, list[int]], set[int], Counter[str]]:
        """Sort a run's Kafka records: records per topic, and each message id's Kafka timestamps,
        of this run's drones only (ids starting with `own`; alerts and dead letters by their
        drone_id); the warm-up's (`warm`) are left out, other drones' counted apart (`foreign`,
        records per id). A shared broker (the test session's) may hold other drones' retained
        statuses, which Mosquitto sends every member that subscribes anew: two gateways starting
        together can both write them (the second one's seed misses the first one's records that
        are still on their way to Kafka). Returns (per_topic, seen, timestamp types, foreign)."""
        per_topic: dict[str, int] = {}
        seen: dict[str, list[int]] = {}
        types: set[int] = set()
        foreign: Counter[str] = Counter()
        for rec in records:
            if rec.topic not in message_topics:
                if _from_drones(rec, own):
                    per_topic[rec.topic] = per_topic.get(rec.topic, 0) + 1
                continue
            mid = read(rec)
            if mid is None or mid.startswith(warm):
                continue
            if not mid.startswith(own):
                foreign[mid] += 1
                continue
            per_topic[rec.topic] = per_topic.get(rec.topic, 0) + 1
            types.add(rec.timestamp_type)
            seen.setdefault(mid, []).append(rec.timestamp)
        return per_topic, seen, types, foreign

    def warm_up(self, tag: str, message_topics: list[str], bridges: list[Child]) -> str:
        """Send WARM_UP messages through the bridge and wait until they are in Kafka, so the
        measured run starts with connections made and partition metadata fetched (a producer
        fetches a topic's metadata at its first send: ~150 ms once per process). Returns the
        drone id prefix of those messages, which the accounting leaves out."""
        plan = Plan(tag=f"{tag}w", messages=WARM_UP, publishers=1, drones=20,
                    violation_share=0.5, unqualified_share=0.1, window=self.args.window,
                    rate=1000)
        base = self.end_total(message_topics)
        pubs = self.publishers(plan)
        try:
            pubs.go()
            note = self.wait_done(pubs, lambda n: self.end_total(message_topics) - base >= n,
                                  lambda: self.end_total(message_topics), bridges)
        finally:
            pubs.close()
        if note:
            names = ", ".join(c.name for c in bridges)
            raise BenchError(f"warm-up through {names} did not complete: {note}")
        return plan.tag

    def stop_bridge(self, bridge: Child, pid: int) -> int | None:
        if pid != bridge.pid:  # profiled: end the gateway, then py-spy writes its file and exits
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            with contextlib.suppress(Exception):
                bridge.wait(60)
        return self.release(bridge, timeout=30)

    @staticmethod
    def account(row: Row, expected: set[str], seen: dict[str, list[int]], first: float,
                timestamp_types: set[int], sent: dict[str, float] | None) -> None:
        """Loss, duplicates, rate and latency of a run from what was found at the far end:
        `seen` holds the Kafka timestamps (ms) of each message id found, `sent` the publish
        times (ms) by id (None: latency is not measured this way)."""
        row.found = len(seen.keys() & expected)
        row.lost = len(expected - seen.keys())
        row.duplicates = sum(len(v) - 1 for v in seen.values())
        extra = len(seen.keys() - expected)
        if extra:
            row.notes.append(f"{extra} ids found that no PUBACK confirmed (published at the end)")
        if not seen:
            return
        last = max(ts for v in seen.values() for ts in v)
        row.seconds = last / 1000 - first
        row.rate = row.found / row.seconds if row.seconds > 0 else None
        if sent is None:
            return
        lat = [v[0] - sent[mid] for mid, v in seen.items() if mid in sent]
        row.p50_ms, row.p99_ms = percentile(lat, 50), percentile(lat, 99)
        kinds = {0: "CreateTime", 1: "LogAppendTime"}
        row.latency = "Kafka " + "/".join(kinds.get(t, str(t)) for t in sorted(timestamp_types)) \
            + " - publish time"

    # -- 1. the PresaCop gateway -----------------------------------------------------------------

    def gateway(self, *, rate: float = 0.0, messages: int | None = None,
                profile: bool = False, pure_crc: bool = False,
                backend: str = "kafka-python", processes: int = 1) -> tuple[Row, dict[str, Any]]:
        """A gateway run; with `processes` > 1, that many gateways in one share group (same
        config but the client id and metrics port): Mosquitto gives each message to one of
        them, so a message id found twice is a duplicate across gateways, not expected."""
        from gateway.config import TopicsConfig

        if profile and processes > 1:
            raise ValueError("--profile profiles one gateway process")
        tag = self.tag()
        topics = TopicsConfig(telemetry=f"{tag}.telemetry", violations=f"{tag}.violations",
                              alerts=f"{tag}.alerts", deadletter=f"{tag}.deadletter",
                              evidence=f"{tag}.evidence")
        labels = ["gateway"] if processes == 1 else [f"gateway{i}" for i in range(1, processes + 1)]
        client_ids = [f"{tag}-{label}" for label in labels]
        plan = self.plan(tag, messages=messages, rate=rate)
        name = "presacop gateway" + (CONFLUENT if backend == "confluent" else "")
        if processes > 1:
            name += f" x{processes} (share group)"
        if rate:
            name += f" @ {rate:,.0f}/s"
        if profile:
            name += " (py-spy)"
        if pure_crc:
            name += " (pure-Python CRC32C)"
        prof = self.dir / f"{tag}-pyspy.txt"

        def launch_one(client_id: str) -> tuple[Child, int]:
            from presacop.stack import free_port

            port = free_port()
            config = self.dir / f"{client_id}.toml"
            config.write_text(self.gateway_toml(client_id, tag, topics, port, backend))
            main = (NO_CRC32C if pure_crc else "") + GATEWAY_MAIN
            cmd = [sys.executable, "-c", main, "--config", str(config)]
            if profile:
                # --gil: sample only the thread holding the GIL, i.e. where the Python CPU of
                # this GIL-bound process goes (waiting threads are left out).
                cmd = [pyspy(), "record", "--format", "raw", "--rate", "200", "--gil",
                       "--nonblocking", "-o", str(prof), "--", *cmd]
            c = self.child(client_id, cmd)
            pid = c.pid if not profile else self.grandchild(c)
            self.wait_healthy(c, config, port)
            return c, pid

        # message id -> (gateway receipt, Kafka append, the gateway's client id)
        stamps: dict[str, tuple[int, int, str]] = {}

        def read(rec: Any) -> str:
            v = json.loads(rec.value)
            stamps.setdefault(v["message_id"], (v["received_ms"], rec.timestamp, v["gateway_id"]))
            return str(v["message_id"])

        row, per_topic, sent = self.bridge_run(
            name, tag, plan, lambda: [launch_one(c) for c in client_ids], list(topics.all()),
            [topics.telemetry, topics.violations], client_ids, read)
        measured = [(received - sent[mid], appended - received)
                    for mid, (received, appended, _) in stamps.items() if mid in sent]
        if measured:
            (a50, a99), (b50, b99) = ((percentile(x, 50), percentile(x, 99))
                                      for x in zip(*measured, strict=True))
            row.notes.append(f"latency legs p50/p99: publish -> gateway receipt {a50:.0f}/{a99:.0f}"
                             f" ms, receipt -> Kafka append {b50:.0f}/{b99:.0f} ms")
        counts = plan.counts()
        extra: dict[str, Any] = {"alerts": per_topic.get(topics.alerts, 0),
                                 "deadletter": per_topic.get(topics.deadletter, 0),
                                 "unqualified_published": counts["unqualified"]}
        if processes > 1:
            by_id = Counter(gw for mid, (_, _, gw) in stamps.items() if mid in sent)
            extra["by_process"] = {label: by_id[cid] for label, cid in zip(labels, client_ids,
                                                                           strict=True)}
            row.notes.append("messages per process: " + ", ".join(
                f"{label} {n:,}" for label, n in extra["by_process"].items()))
        if extra["deadletter"]:
            row.notes.append(f"{extra['deadletter']} dead letters")
        if profile:
            extra["profile"] = summarize_profile(prof)
        return row, extra

    def gateway_toml(self, client_id: str, share_group: str, topics: Any, metrics_port: int,
                     backend: str = "kafka-python") -> str:
        from gateway.config import to_toml

        return to_toml({
            "mqtt": {"host": self.mqtt_host, "port": self.mqtt_port, "client_id": client_id,
                     "share_group": share_group, "session_expiry_s": 300},
            "kafka": {"bootstrap_servers": self.bootstrap, "partitions": PARTITIONS,
                      "backend": backend,
                      "topics": {"telemetry": topics.telemetry, "violations": topics.violations,
                                 "alerts": topics.alerts, "deadletter": topics.deadletter,
                                 "evidence": topics.evidence}},
            "metrics": {"address": f"127.0.0.1:{metrics_port}"},
            "log": {"format": "json", "level": "INFO"},
        }, source="the bench's gateway config")

    def grandchild(self, c: Child, timeout: float = 30.0) -> int:
        """The PID of the process py-spy started (the gateway)."""
        import psutil

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(psutil.Error):
                kids = psutil.Process(c.pid).children()
                if kids:
                    return int(kids[0].pid)
            if not c.alive():
                break
            time.sleep(0.05)
        raise BenchError(f"py-spy did not start the gateway; log {c.log}")

    def wait_healthy(self, c: Child, config: Path, metrics_port: int,
                     timeout: float = 60.0) -> None:
        url = f"http://127.0.0.1:{metrics_port}/healthz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not c.alive():
                raise BenchError(f"gateway exited at start ({config}); log {c.log}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
            time.sleep(0.2)
        raise BenchError(f"gateway not healthy within {timeout:.0f} s; log {c.log}")

    # -- 2. the naive bridge -------------------------------------------------------------------

    def naive(self, rate: float = 0.0, messages: int | None = None) -> Row:
        import protocol

        tag = self.tag()
        topic, client_id = f"{tag}.naive", f"{tag}-naive"

        def launch() -> list[tuple[Child, int]]:
            c = self.child(f"{tag}-naive", python_cmd(
                "naive_bridge.py", self.mqtt_host, str(self.mqtt_port), self.bootstrap, topic,
                client_id))
            c.expect("ready", 60)
            return [(c, c.pid)]

        def read(rec: Any) -> str:
            # The bridge keys each record by its MQTT topic: the payload has no drone id or kind.
            return protocol.message_id(protocol.decode(rec.value, rec.key.decode()))

        name = "naive bridge" + (f" @ {rate:,.0f}/s" if rate else "")
        row, _, _ = self.bridge_run(name, tag, self.plan(tag, messages=messages, rate=rate),
                                    launch, [topic], [topic], [client_id], read)
        return row

    # -- 2b. mq-bridge (issue 16) ---------------------------------------------------------------

    def mq_bridge(self, rate: float = 0.0, messages: int | None = None) -> Row:
        """mq-bridge 1.2.0 (Rust + librdkafka) on the same traffic, ack after the Kafka write,
        acks=all, idempotence (bench/mq_bridge_run.py). It writes the raw payload under its own
        random key and no header of ours, so a record's message id is recovered from the
        payload: the drone from its position (each bench drone has its own, a Plan template)
        and the seq from the header; a payload stamped before the run's first publish is the
        warm-up's (whose drones reuse publisher 0's positions)."""
        import protocol

        tag = self.tag()
        topic, client_id = f"{tag}.mqb", f"{tag}-mqb"
        plan = self.plan(tag, messages=messages, rate=rate)
        drones: dict[tuple[float, float], str] = {}
        for p in range(plan.publishers):
            templates = Messages(plan, p)
            for d in range(plan.per_publisher):
                pos = templates.build(d, 0)[1].position
                drones[(pos.lat, pos.lon)] = plan.drone(p, d)

        def launch() -> list[tuple[Child, int]]:
            c = self.child(f"{tag}-mqb", python_cmd(
                "mq_bridge_run.py", self.mqtt_host, str(self.mqtt_port), self.bootstrap, topic,
                client_id))
            c.expect("ready", 120)
            return [(c, c.pid)]

        def read(rec: Any) -> str | None:
            for kind in ("telemetry", "violation"):
                with contextlib.suppress(protocol.ProtocolError):
                    msg = protocol.decode(rec.value, f"presacop/v1/drones/mqb/{kind}")
                    break
            else:
                return None  # the route's readiness probes
            h, pos = msg.header, msg.position
            if h.time_ms < self.first_publish_ms - 80:  # time_ms is floored to 40 ms
                return f"{tag}w"  # the warm-up's: left out of the accounting
            drone = drones.get((pos.lat, pos.lon))
            return f"{drone}:{h.seq}" if drone else f"{tag}?"

        name = MQ_BRIDGE + (f" @ {rate:,.0f}/s" if rate else "")
        row, _, _ = self.bridge_run(name, tag, plan, launch, [topic], [topic], [client_id], read)
        return row

    # -- 3. the MQTT limit ---------------------------------------------------------------------

    def mqtt_paho(self) -> Row:
        import protocol

        tag = self.tag()
        plan = self.plan(tag)
        client_id = f"{tag}-count"
        c = self.child(client_id, python_cmd("_mqtt_count.py", self.mqtt_host,
                                             str(self.mqtt_port), client_id,
                                             protocol.SUBSCRIPTION, str(plan.messages)))
        c.expect("ready", 60)
        pubs = self.publishers(plan)
        try:
            cpu0, brokers0 = cpu_seconds(c.pid), self.broker_cpu()
            log(f"MQTT limit (paho): {plan.messages} messages")
            pubs.go()
            note = self.wait_counter(c, pubs)
            row = Row("MQTT limit (paho sub)", "mqtt-limit", 0)
            usage = c.usage(cpu0)
            self.broker_delta(row, brokers0)
            row.publishers_cpu_s, row.publish_rate = pubs.cpu_s, pubs.publish_rate
            row.messages = pubs.acked
            expected, first, sent = pubs.acked_ids(), pubs.first, pubs.sent_ms()
        finally:
            pubs.close()
        c.send("report")
        report = json.loads(c.expect("report", 120))
        self.release(c)
        self.drop_session(client_id)
        row.cpu_s, row.peak_rss_mb = usage.cpu_s, usage.peak_rss / 2**20
        if note:
            row.notes.append(note)
        self.account_mqtt(row, expected, report["received_ms"], sent, report["duplicates"],
                          report["last"], first)
        return row

    def wait_counter(self, c: Child, pubs: Publishers) -> str | None:
        """Wait for the counter's "done" line or a stall after the publishers finished."""
        stall_at: float | None = None
        while True:
            try:
                c.expect("done", 0.2)
                while not pubs.poll():
                    time.sleep(0.05)
                return None
            except BenchError:
                if not c.alive():
                    raise
            if pubs.poll():
                stall_at = stall_at or time.monotonic() + self.args.stall
                if time.monotonic() > stall_at:
                    return f"stalled: not all messages arrived within {self.args.stall:.0f} s"

    @staticmethod
    def account_mqtt(row: Row, expected: set[str], received: dict[str, float],
                     sent: dict[str, float], dup: int, last: float | None, first: float) -> None:
        """Like `account`, from each message id's first receive time (ms) at a subscriber."""
        row.found = len(received.keys() & expected)
        row.lost = len(expected - received.keys())
        row.duplicates = dup
        if last:
            row.seconds = last - first
            row.rate = row.found / row.seconds if row.seconds > 0 else None
        lat = [t - sent[mid] for mid, t in received.items() if mid in sent]
        row.p50_ms, row.p99_ms = percentile(lat, 50), percentile(lat, 99)
        row.latency = "subscriber receive time - publish time"

    def mqtt_c(self, rate: float = 0.0, messages: int | None = None) -> Row:
        import protocol

        tag = self.tag()
        plan = self.plan(tag, messages=messages, rate=rate)
        client_id = f"{tag}-mosquitto-sub"
        base = ["mosquitto_sub", "-h", self.mqtt_host, "-p", str(self.mqtt_port), "-i",
                client_id, "-c", "-q", "1", "-t", protocol.SUBSCRIPTION]
        # Subscribe once and leave (-E): the persistent session (-c) queues from now on, so the
        # counting client below misses nothing whenever it is connected.
        prime = self.child(f"{client_id}-prime", [*base, "-E"])
        if prime.wait(30) != 0:
            raise BenchError(f"mosquitto_sub -E failed; log {prime.log}")
        self.release(prime)
        out_path = self.dir / f"{client_id}.out"
        with out_path.open("wb") as out:
            # Receive time (Unix seconds, ns digits), topic (it names the drone and the kind),
            # payload in hex: one line per message.
            c = self.child(client_id, [*base, "-C", str(plan.messages), "-F", "%U %t %x"],
                           stdout=out)
        pubs = self.publishers(plan)
        try:
            cpu0, brokers0 = cpu_seconds(c.pid), self.broker_cpu()
            log(f"MQTT limit (mosquitto_sub): {plan.messages} messages")
            pubs.go()
            usage = c.usage(cpu0)
            stall_at: float | None = None
            note = None
            while c.alive():
                usage = c.usage(cpu0)  # the last reading before it exits by itself (-C)
                if pubs.poll():
                    stall_at = stall_at or time.monotonic() + self.args.stall
                    if time.monotonic() > stall_at:
                        note = f"stalled: not all messages within {self.args.stall:.0f} s"
                        break
                time.sleep(0.05)
            while not pubs.poll():
                time.sleep(0.05)
            name = "MQTT limit (mosquitto_sub)" + (f" @ {rate:,.0f}/s" if rate else "")
            row = Row(name, "mqtt-limit" if not rate else "control", pubs.acked)
            self.broker_delta(row, brokers0)
            row.publishers_cpu_s, row.publish_rate = pubs.cpu_s, pubs.publish_rate
            expected, first, sent = pubs.acked_ids(), pubs.first, pubs.sent_ms()
        finally:
            pubs.close()
        self.release(c)
        self.drop_session(client_id)
        row.cpu_s, row.peak_rss_mb = usage.cpu_s, usage.peak_rss / 2**20
        row.notes.append("CPU read up to 50 ms before it exits")
        if note:
            row.notes.append(note)
        received: dict[str, float] = {}
        dup, last = 0, None
        for line in out_path.read_text().splitlines():
            stamp, mqtt_topic, hexed = line.split(" ", 2)
            mid = protocol.message_id(protocol.decode(bytes.fromhex(hexed), mqtt_topic))
            dup += mid in received
            received.setdefault(mid, float(stamp) * 1000)
            last = float(stamp)
        self.account_mqtt(row, expected, received, sent, dup, last, first)
        return row

    # -- 4. the Kafka limit --------------------------------------------------------------------

    def kafka_python(self) -> Row:
        from gateway.config import TopicsConfig

        tag = self.tag()
        plan = self.plan(tag)
        topics = TopicsConfig(telemetry=f"{tag}.telemetry", violations=f"{tag}.violations",
                              alerts=f"{tag}.alerts", deadletter=f"{tag}.deadletter",
                              evidence=f"{tag}.evidence")
        self.create_topics(list(topics.all()))
        c = self.child(f"{tag}-kafka-python", python_cmd(
            "_kafka_produce.py", self.bootstrap, json.dumps(dataclasses.asdict(plan)),
            json.dumps(dataclasses.asdict(topics))))
        n_records = int(c.expect("ready", 300))
        cpu0, brokers0 = cpu_seconds(c.pid), self.broker_cpu()
        log(f"Kafka limit (kafka-python): {n_records} records")
        c.send("go")
        result = json.loads(c.expect("done", max(60.0, self.alarm.left() - 60)))
        usage = c.usage(cpu0)
        row = Row("Kafka limit (kafka-python)", "kafka-limit", plan.messages)
        self.broker_delta(row, brokers0)
        c.send("exit")
        self.release(c)
        row.cpu_s, row.peak_rss_mb = usage.cpu_s, usage.peak_rss / 2**20
        if result["errors"]:
            row.notes.append(f"produce errors: {result['errors']}")
        seen: dict[str, list[int]] = {}
        types: set[int] = set()
        for rec in self.records([topics.telemetry, topics.violations]):
            types.add(rec.timestamp_type)
            seen.setdefault(json.loads(rec.value)["message_id"], []).append(rec.timestamp)
        expected = {plan.message_id(p, i) for p in range(plan.publishers)
                    for i in range(plan.share(p))}
        # Every record was built before the clock started: the latency that means something is
        # the producer's send -> ack, as ProducerPerformance reports it.
        self.account(row, expected, seen, result["first"], types, sent=None)
        row.p50_ms, row.p99_ms = result["p50_ms"], result["p99_ms"]
        row.latency = "producer send -> ack"
        row.notes.append(f"{n_records} records incl. {n_records - plan.messages} alerts, "
                         "same values as the gateway's")
        return row

    def kafka_java(self) -> Row:
        from _kafka_produce import gateway_records

        from gateway.config import TopicsConfig
        from presacop.stack import ensure_kafka_classpath

        tag = self.tag()
        plan = self.plan(tag)
        topic = f"{tag}.perf"
        self.create_topics([topic])
        payloads = self.dir / f"{tag}-payloads.txt"
        values = [r.value for r in gateway_records(plan, TopicsConfig())
                  if r.kind in ("telemetry", "violation")]
        payloads.write_bytes(b"\n".join(values) + b"\n")
        mean = sum(map(len, values)) / len(values)
        self.classpath = self.classpath or ensure_kafka_classpath()
        c = self.child(f"{tag}-producer-perf", [
            "java", "-Xmx512m", "-cp", self.classpath,
            "org.apache.kafka.tools.ProducerPerformance", "--topic", topic,
            "--num-records", str(plan.messages), "--payload-file", str(payloads),
            "--throughput", "-1", "--producer-props", f"bootstrap.servers={self.bootstrap}",
            "acks=all"])
        brokers0 = self.broker_cpu()
        log(f"Kafka limit (ProducerPerformance): {plan.messages} records, mean {mean:.0f} B")
        summary = None
        usage = c.usage()
        deadline = time.monotonic() + max(60.0, self.alarm.left() - 60)
        while summary is None and time.monotonic() < deadline:
            line = c.expect("", max(1.0, deadline - time.monotonic()))
            usage = c.usage()
            if PERF_LINE.search(line) and line.startswith(str(plan.messages) + " records sent"):
                summary = PERF_LINE.search(line)
        self.release(c, timeout=30)
        row = Row("Kafka limit (ProducerPerformance)", "kafka-limit", plan.messages)
        self.broker_delta(row, brokers0)
        row.cpu_s, row.peak_rss_mb = usage.cpu_s, usage.peak_rss / 2**20
        if summary is None:
            raise BenchError(f"ProducerPerformance printed no summary; log {c.log}")
        row.rate = float(summary["rate"])
        row.seconds = plan.messages / row.rate
        row.p50_ms, row.p99_ms = float(summary["p50"]), float(summary["p99"])
        row.latency = "producer send -> ack"
        found = self.end_total([topic])
        row.found, row.lost = min(found, plan.messages), max(0, plan.messages - found)
        row.notes.append(f"random picks of the gateway's {len(values)} JSON values "
                         f"(mean {mean:.0f} B), no key; CPU includes JVM start-up")
        return row

    # -- everything ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        only = set(self.args.only.split(",")) if self.args.only else set(RUNS)
        rows: list[Row] = []
        extra: dict[str, Any] = {}

        def step(key: str, fn: Callable[[], Row]) -> None:
            if key not in only:
                return
            row = fn()
            log(f"{row.name}: {fmt(row.rate)} msgs/s, lost {row.lost}")
            rows.append(row)

        step("mqtt", self.mqtt_paho)
        if shutil.which("mosquitto_sub"):
            step("mqtt-c", self.mqtt_c)
        step("kafka", self.kafka_python)
        step("kafka-java", self.kafka_java)
        step("naive", self.naive)
        if "mq-bridge" in only:
            if has_mq_bridge():
                step("mq-bridge", self.mq_bridge)
            else:
                log("mq-bridge row skipped: mq_bridge or lz4 is not installed "
                    "(pip install -e '.[bench]' installs mq-bridge==1.2.0)")
                extra["mq_bridge"] = {"skipped": "mq_bridge or lz4 is not installed"}
        gateway_rate = None
        if "gateway" in only:
            row, extra["gateway"] = self.gateway()
            log(f"{row.name}: {fmt(row.rate)} msgs/s, lost {row.lost}")
            rows.append(row)
            gateway_rate = row.rate
        confluent_rate = None
        if "gateway-confluent" in only and has_confluent():
            row, extra["gateway_confluent"] = self.gateway(backend="confluent")
            log(f"{row.name}: {fmt(row.rate)} msgs/s, lost {row.lost}")
            rows.append(row)
            confluent_rate = row.rate
        if "gateway-x2" in only:
            row, extra["gateway_x2"] = self.gateway(processes=SCALE_OUT)
            log(f"{row.name}: {fmt(row.rate)} msgs/s, lost {row.lost}")
            rows.append(row)
        if "half" in only and gateway_rate:
            half = max(1000, self.args.messages // 2)
            row, extra["gateway_half"] = self.gateway(rate=gateway_rate / 2, messages=half)
            log(f"{row.name}: p99 {fmt(row.p99_ms)} ms")
            rows.append(row)
            # Controls at the same pace: the naive bridge, and publishers -> broker -> the C
            # subscriber, whose latency is what this machine adds with no bridge at all.
            for control in (self.naive, self.mqtt_c):
                if control is self.mqtt_c and not shutil.which("mosquitto_sub"):
                    continue
                row = control(rate=gateway_rate / 2, messages=half)
                log(f"{row.name}: p99 {fmt(row.p99_ms)} ms")
                rows.append(row)
        if "half" in only and confluent_rate:
            half = max(1000, self.args.messages // 2)
            row, extra["gateway_confluent_half"] = self.gateway(
                rate=confluent_rate / 2, messages=half, backend="confluent")
            log(f"{row.name}: p99 {fmt(row.p99_ms)} ms")
            rows.append(row)
            if gateway_rate:  # a control: the confluent gateway at the kafka-python one's pace
                row, _ = self.gateway(rate=gateway_rate / 2, messages=half, backend="confluent")
                row.name += " (same pace)"
                log(f"{row.name}: p99 {fmt(row.p99_ms)} ms")
                rows.append(row)
        if "gateway-pycrc" in only and has_crc32c():
            row, extra["gateway_pycrc"] = self.gateway(pure_crc=True)
            log(f"{row.name}: {fmt(row.rate)} msgs/s, lost {row.lost}")
            rows.append(row)
        if self.args.profile:
            row, extra["gateway_profile"] = self.gateway(profile=True)
            rows.append(row)
        return {"rows": rows, "extra": extra}


# What `presacop gateway --config FILE` runs, without the other subcommands' imports, so that a
# broken sibling subcommand cannot stop the bench.
GATEWAY_MAIN = (
    "import argparse, sys; from gateway import cli; p = argparse.ArgumentParser(); "
    "cli.add_arguments(p); sys.exit(cli.run(p.parse_args()))"
)

# kafka-python checksums every record batch with CRC-32C: in C when the `crc32c` package is
# installed, else in pure Python. Hiding the package shows what that costs the gateway.
NO_CRC32C = "import sys; sys.modules['crc32c'] = None; "

PERF_LINE = re.compile(
    r"(?P<n>\d+) records sent, (?P<rate>[\d.]+) records/sec \((?P<mb>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, "
    r"(?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th")


def _from_drones(rec: Any, prefix: str) -> bool:
    """True if an alert or dead-letter record (JSON with drone_id) is about drones `prefix`*."""
    try:
        drone = json.loads(rec.value).get("drone_id") or ""
    except (ValueError, AttributeError):
        return False
    return str(drone).startswith(prefix)


def has_confluent() -> bool:
    """True if the gateway's confluent backend can run (`pip install confluent-kafka`)."""
    import importlib.util

    return importlib.util.find_spec("confluent_kafka") is not None


def has_mq_bridge() -> bool:
    """True if the mq-bridge comparison row can run (the `bench` extra: mq-bridge==1.2.0)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("mq_bridge", "lz4"))


def has_crc32c() -> bool:
    """True if kafka-python can use the C CRC-32C (`pip install crc32c`)."""
    import importlib.util

    return importlib.util.find_spec("crc32c") is not None


def pyspy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")
    return found


# -- the profile ---------------------------------------------------------------------------------


_LIBRARIES = {"kafka": "kafka-python", "paho": "paho-mqtt", "gateway": "gateway",
              "protocol": "protocol", "prometheus_client": "prometheus-client",
              "msgpack": "msgpack", "presacop": "presacop"}


def _area(frame: str) -> str | None:
    """Which library a py-spy frame ('name (pkg/module.py:line)', file names shortened to the
    package path) belongs to, or None for the standard library and the rest."""
    where = frame.rpartition(" (")[2]
    return _LIBRARIES.get(where.split("/", 1)[0]) if "/" in where else None


def summarize_profile(path: Path, top: int = 30) -> dict[str, Any]:
    """From py-spy's raw (collapsed) stacks: samples per thread entry point, self time by library
    (a standard-library leaf is charged to the nearest library frame above it, e.g. a socket
    send made by kafka-python counts as kafka-python) and the top functions by cumulative
    samples."""
    if not path.exists():
        return {"error": f"no profile written at {path}"}
    total = 0
    by_area: dict[str, int] = {}
    by_entry: dict[str, int] = {}
    cumulative: dict[str, int] = {}
    own: dict[str, int] = {}
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        entry = next((f for f in frames if "threading.py" not in f
                      and not f.startswith(("<module>", "_bootstrap", "run ("))), frames[0])
        by_entry[_short(entry)] = by_entry.get(_short(entry), 0) + count
        area = "stdlib/other"
        for frame in reversed(frames):
            found = _area(frame)
            if found:
                area = found
                break
        by_area[area] = by_area.get(area, 0) + count
        own[_short(frames[-1])] = own.get(_short(frames[-1]), 0) + count
        for name in {_short(f) for f in frames if "threading.py" not in f}:
            cumulative[name] = cumulative.get(name, 0) + count

    def ranked(d: dict[str, int], n: int) -> list[tuple[str, int, float]]:
        items = sorted(d.items(), key=lambda kv: -kv[1])[:n]
        return [(k, v, round(100 * v / total, 1) if total else 0.0) for k, v in items]

    return {"samples": total, "by_library": ranked(by_area, 20),
            "by_thread_entry": ranked(by_entry, 10), "top_cumulative": ranked(cumulative, top),
            "top_self": ranked(own, 15)}


def _short(frame: str) -> str:
    """'send (kafka/producer/kafka.py:123)' -> 'send (kafka/producer/kafka.py)'."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    file = where.rsplit(":", 1)[0]
    for cut in ("site-packages/", "/work/main/", str(Path(__file__).resolve().parent.parent) + "/"):
        if cut in file:
            file = file.split(cut, 1)[1]
    return f"{name} ({file})"


# -- output --------------------------------------------------------------------------------------


def targets(rows: list[Row]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for suffix in ("", CONFLUENT):
        out += _targets(rows, suffix)
    return out


def _targets(rows: list[Row], suffix: str) -> list[dict[str, Any]]:
    """The targets for the gateway row named "presacop gateway" + suffix (one backend)."""
    by = {r.name: r for r in rows}
    gw = by.get("presacop gateway" + suffix)
    naive = by.get("naive bridge")
    half = next((r for r in rows if r.name.startswith(f"presacop gateway{suffix} @")), None)
    half_naive = next((r for r in rows if r.name.startswith("naive bridge @")), None)
    mqtt = max((r.rate or 0 for r in rows if r.role == "mqtt-limit"), default=0) or None
    kafka = max((r.rate or 0 for r in rows if r.role == "kafka-limit"), default=0) or None
    out = []
    if gw and gw.rate and naive and naive.rate:
        ratio = gw.rate / naive.rate
        out.append({"target": "gateway >= 2x naive bridge (msgs/s)" + suffix,
                    "value": f"{ratio:.2f}x", "met": ratio >= TARGETS["vs_naive"]})
    mqb = by.get(MQ_BRIDGE)
    if gw and gw.rate and mqb and mqb.rate:
        ratio = gw.rate / mqb.rate
        out.append({"target": "gateway >= 1.0x mq-bridge (msgs/s)" + suffix,
                    "value": f"{ratio:.2f}x", "met": ratio >= TARGETS["vs_mq_bridge"]})
    if gw and gw.cpu_us_per_msg:
        value = f"{gw.cpu_us_per_msg:.0f} us/msg" + "".join(
            f"; {r.name} {r.cpu_us_per_msg:.0f}" for r in (mqb, naive) if r and r.cpu_us_per_msg)
        out.append({"target": "gateway CPU <= 40 us/msg" + suffix, "value": value,
                    "met": gw.cpu_us_per_msg <= TARGETS["cpu_us_per_msg"]})
    if gw and gw.rate and mqtt and kafka:
        lesser = min(mqtt, kafka)
        which = "MQTT" if mqtt <= kafka else "Kafka"
        ratio = gw.rate / lesser
        out.append({"target": "gateway >= 60% of the lesser broker limit" + suffix,
                    "value": f"{100 * ratio:.0f}% of {lesser:,.0f} ({which}, best client)",
                    "met": ratio >= TARGETS["vs_limit"]})
    if half and half.p99_ms is not None:
        value = f"{half.p99_ms:.0f} ms"
        if half_naive and half_naive.p99_ms is not None:
            value += f" (naive bridge at {half_naive.name[len('naive bridge @ '):]}: " \
                f"{half_naive.p99_ms:.0f} ms)"
        out.append({"target": "p99 latency < 50 ms at half the max rate" + suffix,
                    "value": value, "met": half.p99_ms < TARGETS["p99_half_ms"]})
    if gw:
        out.append({"target": f"nothing lost, no duplicates (gateway{suffix})",
                    "value": f"lost {gw.lost}, dup {gw.duplicates}",
                    "met": gw.lost == 0 and gw.duplicates == 0})
    return out


def scale_out(rows: list[Row]) -> dict[str, Any] | None:
    """The share-group run beside the single gateway (kafka-python), as information: on a
    shared 2-core machine it shows whether scale-out works, not how far it scales."""
    by = {r.name: r for r in rows}
    one = by.get("presacop gateway")
    many = by.get(f"presacop gateway x{SCALE_OUT} (share group)")
    if not (one and one.rate and many and many.rate):
        return None
    return {"processes": SCALE_OUT, "ratio": many.rate / one.rate, "rate": many.rate,
            "rate_one": one.rate, "cpu_us_per_msg": many.cpu_us_per_msg,
            "cpu_us_per_msg_one": one.cpu_us_per_msg}


def render(result: dict[str, Any]) -> str:
    rows: list[Row] = result["rows"]
    head = ["run", "msgs/s", "p50 ms", "p99 ms", "CPU s", "CPU us/msg", "peak RSS MB", "lost",
            "dup", "mosq CPU s", "kafka CPU s", "pub CPU s", "pub msgs/s"]
    body = [[r.name, fmt(r.rate), fmt(r.p50_ms), fmt(r.p99_ms), fmt(r.cpu_s, 1),
             fmt(r.cpu_us_per_msg), fmt(r.peak_rss_mb), fmt(r.lost), fmt(r.duplicates),
             fmt(r.mosquitto_cpu_s, 1), fmt(r.kafka_cpu_s, 1), fmt(r.publishers_cpu_s, 1),
             fmt(r.publish_rate)]
            for r in rows]
    out = [f"machine: {machine_line(result['machine'])}",
           f"traffic: {result['traffic']}", "", table(head, body), ""]
    out.append("latency columns:")
    out += [f"  {r.name}: {r.latency}" for r in rows if r.latency]
    notes = [f"  {r.name}: {n}" for r in rows for n in r.notes]
    if notes:
        out += ["notes:", *notes]
    for key, extra in result["extra"].items():
        if "alerts" in extra:
            out.append(f"{key}: alerts {extra['alerts']} for {extra['unqualified_published']} "
                       f"unqualified violations published, dead letters {extra['deadletter']}")
    if "skipped" in result["extra"].get("mq_bridge", {}):
        out.append(f"mq-bridge: row skipped, {result['extra']['mq_bridge']['skipped']} "
                   "(pip install -e '.[bench]')")
    out += ["", "targets (issues 7 and 16):"]
    for t in result["targets"]:
        out.append(f"  [{'met' if t['met'] else 'MISSED'}] {t['target']}: {t['value']}")
    if result.get("scale_out"):
        so = result["scale_out"]
        out.append(f"  [info] scale-out: {so['processes']} processes = {so['ratio']:.2f}x one "
                   f"process ({fmt(so['rate'])} vs {fmt(so['rate_one'])} msgs/s; CPU us/msg "
                   f"{fmt(so['cpu_us_per_msg'])} vs {fmt(so['cpu_us_per_msg_one'])}; not a target)")
    prof = result["extra"].get("gateway_profile", {}).get("profile")
    if prof:
        out += ["", render_profile(prof)]
    return "\n".join(out)


def render_profile(prof: dict[str, Any]) -> str:
    if "error" in prof:
        return f"profile: {prof['error']}"
    out = [f"gateway profile (py-spy --gil: {prof['samples']} samples at 200 Hz of the thread "
           "holding the GIL)"]
    for title, key in (("by library (stdlib frames charged to the caller's library)",
                        "by_library"), ("by thread entry point", "by_thread_entry"),
                       ("top functions, cumulative", "top_cumulative"),
                       ("top functions, self", "top_self")):
        out.append(table([title, "samples", "%"],
                         [[k, fmt(v), f"{p:.1f}"] for k, v, p in prof[key]]))
        out.append("")
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=50_000, help="messages per run (default 50000)")
    p.add_argument("--publishers", type=int, default=3, help="publisher processes (default 3)")
    p.add_argument("--window", type=int, default=100,
                   help="QoS 1 publishes in flight per publisher (default 100)")
    p.add_argument("--drones", type=int, default=1000, help="distinct drone ids (default 1000)")
    p.add_argument("--violation-share", type=float, default=0.25,
                   help="share of violations among messages (default 0.25)")
    p.add_argument("--unqualified-share", type=float, default=0.01,
                   help="share of violations without a code (default 0.01)")
    p.add_argument("--mqtt", metavar="HOST:PORT", help="use this Mosquitto instead of starting one")
    p.add_argument("--kafka", metavar="HOST:PORT", help="use this Kafka instead of starting one")
    p.add_argument("--only", metavar="RUNS", help=f"comma-separated subset of {','.join(RUNS)}")
    p.add_argument("--profile", action="store_true",
                   help="also run the gateway under py-spy and print its top functions")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--timeout", type=float, default=900,
                   help="global time budget in seconds; everything stops when it runs out")
    p.add_argument("--stall", type=float, default=15,
                   help="stop waiting for a run after this long without progress (default 15)")
    p.add_argument("--keep", action="store_true", help="keep the temporary state directory")
    args = p.parse_args(argv)
    problems = [f"--{k.replace('_', '-')} must be > 0" for k in
                ("messages", "publishers", "window", "drones", "timeout", "stall")
                if getattr(args, k) <= 0]
    problems += [f"--{k.replace('_', '-')} must be within 0..1" for k in
                 ("violation_share", "unqualified_share") if not 0 <= getattr(args, k) <= 1]
    for flag in ("mqtt", "kafka"):
        value = getattr(args, flag)
        if value and not re.fullmatch(r"[^:\s]+:\d{1,5}", value):
            problems.append(f"--{flag} must be HOST:PORT, got {value!r}")
    if args.only:
        unknown = set(args.only.split(",")) - set(RUNS)
        if unknown:
            problems.append(f"--only: unknown run(s) {sorted(unknown)}; known: {', '.join(RUNS)}")
    if problems:
        p.error("; ".join(problems))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.profile:
        try:
            pyspy()
        except BenchError as exc:
            print(f"bench/gateway.py: {exc}", file=sys.stderr)
            return 2
    info = machine()
    traffic = (f"{args.messages} QoS 1 messages/run from {args.publishers} publisher processes "
               f"(window {args.window} each), {args.drones} drones, "
               f"{args.violation_share:.0%} violations ({args.unqualified_share:.0%} of them "
               f"unqualified), {PARTITIONS} partitions per topic")
    with Alarm(args.timeout) as alarm:
        bench = Bench(args, alarm)
        try:
            bench.start()
            result = bench.run()
        except BenchError as exc:
            print(f"bench/gateway.py: {exc}", file=sys.stderr)
            return 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)  # never interrupt the clean-up
            bench.close()
    result.update(machine=info, traffic=traffic, targets=targets(result["rows"]),
                  scale_out=scale_out(result["rows"]))
    if args.json:
        out = dict(result, rows=[dict(dataclasses.asdict(r), cpu_us_per_msg=r.cpu_us_per_msg)
                                 for r in result["rows"]])
        print(json.dumps(out, indent=2, default=str))
    else:
        print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
