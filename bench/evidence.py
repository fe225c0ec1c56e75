"""Bench the evidence upload (issue 12) on the real parts: a private Mosquitto + Kafka, a
`presacop gateway` process with a directory store, and a drone's real outbox, uploader and
publisher behind a `hw_sim.link.LinkProxy`.

    .venv/bin/python bench/evidence.py            # ~2-3 min
    .venv/bin/python bench/evidence.py --json     # one JSON object instead of the lines

Figures:

    link share      the link slowed to --rate-mbit (2 Mbit/s): --images images of --image-kb
                    queued for upload while the drone keeps sending a violation every 0.5 s and
                    telemetry every second. Share = evidence bytes (chunk data) / link capacity
                    over the backlog (first chunk to the last STORED receipt). Goal >= 90 %.
    event latency   p50 / p99 / max of the violations sent during that backlog: outbox put to
                    arrival at a subscriber on the broker's side of the link. Goal p99 < 1 s.
    gateway         100 uploads in progress at once (100 drone ids, chunks interleaved, each
                    image --image-kb): the gateway process's CPU seconds per stored MB and its
                    peak RSS (VmHWM).
    resume          a link cut in the middle of an upload at full speed: bytes sent twice.

Exit status: 0 done, 1 a measurement failed. Everything it starts is stopped by PID.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # our packages, not bench/*.py
from _common import Child, cpu_seconds, peak_rss, percentile

import protocol
from drone_agent import messages
from drone_agent.config import MqttConfig
from drone_agent.evidence import EvidenceStore
from drone_agent.hardware import Fix
from drone_agent.outbox import Outbox
from drone_agent.publisher import Publisher
from drone_agent.uploader import Uploader
from gateway.config import to_toml
from hw_sim.link import LinkProxy
from presacop.stack import Stack, free_port, running_stack
from protocol import EvidenceChunk, EvidenceManifest, TimeSource

FIX = Fix(40.75, -73.99, 30.0, 90.0, 5.0)
CHUNK = 16384


class Drone:
    """The agent's upload path without camera: outbox, evidence store, uploader, publisher."""

    def __init__(self, root: Path, drone_id: str, port: int) -> None:
        self.drone_id = drone_id
        root.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(root / "outbox.sqlite3")
        self.store = EvidenceStore(root / "evidence", quota_bytes=2**33)
        self.uploader = Uploader(root / "uploads.sqlite3", drone_id, file_for=self.store.path,
                                 delete=self.store.remove, chunk_size=CHUNK)
        self.publisher = Publisher(
            MqttConfig(port=port, backoff_min_s=0.1, backoff_max_s=0.5, keepalive_s=5),
            drone_id, self.outbox, make_status=self._status,
            topic_for=lambda kind: protocol.topic(drone_id, protocol.Kind(kind)),
            uploader=self.uploader)

    def _header(self, seq: int) -> protocol.Header:
        return messages.header(self.drone_id, seq, time.time(), TimeSource.NTP)

    def _status(self, seq: int, online: bool) -> bytes:
        return messages.status(self._header(seq), online)

    def image(self, size: int) -> str:
        data = os.urandom(size)
        ident = self.store.put(data)
        self.uploader.enqueue(ident, self.outbox.reserve_seq(), data)
        return ident

    def violation(self) -> int:
        def build(seq: int) -> bytes:
            return protocol.encode(protocol.Violation(
                self._header(seq), protocol.Position(40.75, -73.99, 30), "ABC1234", "NY", 0.9,
                21, "0123456789abcdef"))

        seq = self.outbox.put("violation", build)
        assert seq is not None
        return seq

    def telemetry(self) -> None:
        self.outbox.put("telemetry", lambda seq: messages.telemetry(
            self._header(seq), FIX, FIX, None, protocol.StatusFlags.NONE))

    def close(self) -> None:
        self.publisher.stop(time.monotonic() + 5)
        self.outbox.close()
        self.uploader.close()


class Arrivals:
    """A subscriber on the broker's side of the link: arrival time of each violation seq and of
    each evidence receipt."""

    def __init__(self, port: int, drone_filter: str) -> None:
        self.violations: dict[int, float] = {}
        self.stored: dict[str, float] = {}
        self.receiving: set[str] = set()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"arr-{os.getpid()}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"presacop/v1/drones/{drone_filter}/violation", qos=1)
        self.client.subscribe(f"presacop/v1/drones/{drone_filter}/evidence/receipt", qos=1)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        now = time.monotonic()
        if msg.topic.endswith("/violation"):
            self.violations.setdefault(protocol.decode(msg.payload, msg.topic).header.seq, now)
            return
        receipt = protocol.decode_evidence(msg.payload, msg.topic)
        key = f"{receipt.drone_id}/{receipt.evidence_id}"
        if receipt.state is protocol.ReceiptState.STORED:
            self.stored.setdefault(key, now)
        elif receipt.state is protocol.ReceiptState.RECEIVING:
            self.receiving.add(key)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def gateway(stack: Stack, work: Path, prefix: str) -> Child:
    topics = {k: f"{prefix}.{k}" for k in
              ("telemetry", "violations", "alerts", "deadletter", "evidence")}
    config = work / "gateway.toml"
    config.write_text(to_toml({
        "mqtt": {"host": "127.0.0.1", "port": stack.mqtt_port, "client_id": f"{prefix}-gw",
                 "share_group": prefix},
        "kafka": {"bootstrap_servers": stack.kafka_bootstrap, "topics": topics},
        "metrics": {"address": f"127.0.0.1:{free_port()}"},
        "log": {"format": "text", "level": "WARNING"},
        "evidence": {"staging_dir": str(work / "staging"), "store": {"path": str(work / "store")},
                     "max_queued": 256},
    }))
    gw = Child("gateway", [sys.executable, "-m", "presacop.cli", "gateway", "--config",
                           str(config)], log=work / "gateway.log")
    import urllib.request

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"http://{_metrics(config)}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    wait(ready, 90, "the gateway's /healthz")
    return gw


def _metrics(config: Path) -> str:
    for line in config.read_text().splitlines():
        if line.startswith("address"):
            return json.loads(line.split("=", 1)[1])
    raise ValueError("no metrics address")


def link_share(stack: Stack, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Figures 1 and 2: a backlog of images on a slow link, events sent meanwhile."""
    link = LinkProxy("127.0.0.1", stack.mqtt_port, name="bench-link").start()
    link.slow(rate_bps=args.rate_mbit * 1e6)
    drone = Drone(work / "drone-1", "bench-ev-1", link.port)
    arrivals = Arrivals(stack.mqtt_port, "bench-ev-1")
    ids = [drone.image(args.image_kb * 1024) for _ in range(args.images)]
    puts: dict[int, float] = {}
    stop = threading.Event()

    def events() -> None:
        n = 0
        while not stop.wait(0.5):
            puts[drone.violation()] = time.monotonic()
            n += 1
            if n % 2 == 0:
                drone.telemetry()

    try:
        drone.publisher.start()
        feeder = threading.Thread(target=events, daemon=True)
        feeder.start()
        wait(lambda: drone.uploader.stats()["upload_chunks"] > 0, 60, "the first chunk")
        t0, bytes0 = time.monotonic(), drone.uploader.stats()["upload_bytes"]
        wait(lambda: len([i for i in ids if f"bench-ev-1/{i}" in arrivals.stored]) == len(ids),
             600, "every image STORED")
        elapsed = max(arrivals.stored.values()) - t0
        sent = drone.uploader.stats()["upload_bytes"] - bytes0
        stop.set()
        feeder.join()
        wait(lambda: set(puts) <= set(arrivals.violations), 60, "every violation")
    finally:
        stop.set()
        drone.close()
        arrivals.close()
        link.stop()
    during = [(arrivals.violations[s] - t) * 1000 for s, t in puts.items()
              if t0 <= t <= t0 + elapsed]
    capacity = args.rate_mbit * 1e6 / 8 * elapsed
    return {"rate_mbit": args.rate_mbit, "images": args.images, "image_kb": args.image_kb,
            "backlog_s": round(elapsed, 1), "evidence_bytes": sent,
            "link_share_pct": round(100 * sent / capacity, 1),
            "violations_during_backlog": len(during),
            "violation_latency_ms": {"p50": _r(percentile(during, 50)),
                                     "p99": _r(percentile(during, 99)),
                                     "max": _r(max(during, default=None))}}


def concurrent(stack: Stack, gw: Child, args: argparse.Namespace) -> dict[str, Any]:
    """Figure 3: 100 uploads in progress at once, chunks interleaved, straight to the broker."""
    n, size = args.concurrent, args.image_kb * 1024
    arrivals = Arrivals(stack.mqtt_port, "+")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-up-{os.getpid()}")
    client.max_inflight_messages_set(200)
    client.connect("127.0.0.1", stack.mqtt_port)
    client.loop_start()
    uploads = []
    for i in range(n):
        data = os.urandom(size)
        sha = hashlib.sha256(data).hexdigest()
        m = EvidenceManifest(f"bench-c{i:03d}", sha[:16], sha, size, CHUNK, "image/jpeg", i)
        uploads.append((m, data))
    cpu0, t0 = cpu_seconds(gw.pid), time.monotonic()
    try:
        for m, _ in uploads:
            client.publish(protocol.evidence_topic(m.drone_id), protocol.encode_evidence(m), 1)
        # As a drone does: chunks only once the gateway has answered the manifest.
        wait(lambda: all(f"{m.drone_id}/{m.evidence_id}" in arrivals.receiving
                         for m, _ in uploads), 120, f"{n} manifests answered")
        for index in range(uploads[0][0].chunks):
            for m, data in uploads:
                offset, length = protocol.chunk_span(m, index)
                frame = EvidenceChunk(m.drone_id, m.evidence_id, index,
                                      data[offset:offset + length])
                info = client.publish(protocol.evidence_topic(m.drone_id),
                                      protocol.encode_evidence(frame), 1)
                info.wait_for_publish(30)
        wait(lambda: sum(1 for m, _ in uploads
                         if f"{m.drone_id}/{m.evidence_id}" in arrivals.stored) == n,
             300, f"{n} uploads STORED")
        cpu, wall = cpu_seconds(gw.pid) - cpu0, time.monotonic() - t0
    finally:
        client.loop_stop()
        client.disconnect()
        arrivals.close()
    mb = n * size / 1e6
    return {"uploads": n, "stored_mb": round(mb, 1), "wall_s": round(wall, 1),
            "gateway_cpu_s": round(cpu, 2), "gateway_cpu_s_per_mb": round(cpu / mb, 3),
            "gateway_peak_rss_mb": round(peak_rss(gw.pid) / 2**20, 1)}


def resume(stack: Stack, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Figure 4: a cut mid-upload at full speed; bytes sent twice."""
    link = LinkProxy("127.0.0.1", stack.mqtt_port, name="bench-cut").start()
    drone = Drone(work / "drone-2", "bench-ev-2", link.port)
    arrivals = Arrivals(stack.mqtt_port, "bench-ev-2")
    size = 4 * args.image_kb * 1024
    ident = drone.image(size)
    try:
        drone.publisher.start()
        wait(lambda: drone.uploader.stats()["upload_bytes"] > size // 2, 60, "half the image")
        link.cut()
        link.restore()
        wait(lambda: f"bench-ev-2/{ident}" in arrivals.stored, 120, "the image STORED")
        stats = drone.uploader.stats()
    finally:
        drone.close()
        arrivals.close()
        link.stop()
    return {"image_bytes": size, "sent_bytes": stats["upload_bytes"],
            "resent_bytes": stats["upload_resent_bytes"],
            "manifests": stats["upload_announces"]}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rate-mbit", type=float, default=2.0)
    parser.add_argument("--images", type=int, default=15)
    parser.add_argument("--image-kb", type=int, default=220)
    parser.add_argument("--concurrent", type=int, default=100)
    args = parser.parse_args(argv)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-evidence-") as tmp:
        work = Path(tmp)
        with running_stack(work / "stack") as stack:
            gw = gateway(stack, work, f"bench-ev-{os.getpid()}")
            try:
                out["link"] = link_share(stack, work, args)
                out["resume"] = resume(stack, work, args)
                out["concurrent"] = concurrent(stack, gw, args)
            finally:
                gw.stop()
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    lk, c, r = out["link"], out["concurrent"], out["resume"]
    lat = lk["violation_latency_ms"]
    print(f"link {lk['rate_mbit']} Mbit/s, backlog of {lk['images']} x {lk['image_kb']} KB images:"
          f" evidence used {lk['link_share_pct']} % of the link over {lk['backlog_s']} s "
          f"(goal >= 90 %)")
    print(f"violations during the backlog: {lk['violations_during_backlog']}, latency p50 "
          f"{lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms (goal p99 < 1000 ms)")
    print(f"gateway, {c['uploads']} concurrent uploads ({c['stored_mb']} MB in {c['wall_s']} s): "
          f"{c['gateway_cpu_s_per_mb']} CPU s per stored MB, peak RSS "
          f"{c['gateway_peak_rss_mb']} MB")
    print(f"resume after a cut mid-upload: {r['resent_bytes']} bytes re-sent of "
          f"{r['image_bytes']} ({r['manifests']} manifests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
