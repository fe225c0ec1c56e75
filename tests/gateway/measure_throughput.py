"""Quick gateway throughput measurement (not a test): N telemetry messages through one gateway.

    .venv/bin/python tests/gateway/measure_throughput.py [--count 20000] [--mqtt-port P --kafka B]
        [--backend kafka-python|confluent|both]

Without ports it starts its own Mosquitto + Kafka (presacop.stack) in a temp dir. Two runs:
  backlog: N messages are queued in the gateway's MQTT session while it is stopped; then the
           gateway starts and we time until /metrics shows N acks (the gateway's own rate);
  live:    a publisher sends N messages while the gateway runs; timed from the first publish to
           the N-th ack (publisher, broker and gateway share the 2 cores).
The gateway runs as a real subprocess (`presacop gateway`), with default producer settings.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2]))  # the repo root: tests.support
sys.path.insert(0, str(Path(__file__).parent))

from gateway_testlib import (
    PRESACOP,
    Publisher,
    end_session,
    read_ids,
    telemetry,
    topic_names,
    unique,
)

from presacop.stack import Stack, free_port, free_ports
from tests.support import gateway_config, wait_until


def acked(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("presacop_gateway_messages_acked_total "):
                return float(line.split()[1])
    return 0.0


def wait_ready(port: int, timeout: float = 60) -> None:
    def healthy() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
            return True

    wait_until(healthy, timeout, "the gateway's /healthz", ignoring=(OSError,))


def run(mode: str, count: int, mqtt_port: int, bootstrap: str, workdir: Path,
        backend: str = "kafka-python") -> dict:
    topics = topic_names(unique(f"bench{mode}"))
    metrics = free_port()
    client_id = unique("gw-bench-")
    cfg = workdir / f"{mode}-{backend}.toml"
    cfg.write_text(gateway_config(mqtt_port, bootstrap, topics=topics, client_id=client_id,
                                  metrics_port=metrics, share_group=unique("bench-"),
                                  log_level="WARNING", backend=backend))
    drone = unique("bench-")
    pub = Publisher("127.0.0.1", mqtt_port)

    def start() -> subprocess.Popen:
        proc = subprocess.Popen([PRESACOP, "gateway", "--config", str(cfg)],
                                stderr=open(workdir / f"{mode}.log", "ab"))  # noqa: SIM115
        wait_ready(metrics)
        return proc

    proc = start()
    if mode == "backlog":
        proc.terminate()
        proc.wait(60)
        for s in range(count):
            pub.send(telemetry(drone, s))
        pub.flush(300)
        t0 = time.monotonic()
        proc = start()
    else:
        t0 = time.monotonic()
        for s in range(count):
            pub.send(telemetry(drone, s))
    while acked(metrics) < count:
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    pub.close()
    proc.terminate()
    proc.wait(60)
    ids = read_ids(bootstrap, topics["telemetry"], {f"{drone}:{s}" for s in range(count)})
    end_session("127.0.0.1", mqtt_port, client_id)
    return {"mode": mode, "backend": backend, "count": count, "seconds": round(elapsed, 2),
            "msgs_per_s": round(count / elapsed), "in_kafka": len(set(ids)),
            "duplicates": len(ids) - len(set(ids))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--mqtt-port", type=int)
    parser.add_argument("--kafka")
    parser.add_argument("--backend", choices=("kafka-python", "confluent", "both"),
                        default="kafka-python")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        stack = None
        if args.mqtt_port is None:
            stack = Stack(workdir / "stack", *free_ports(3), kafka_heap="512m")
            stack.start()
            mqtt_port, bootstrap = stack.mqtt_port, stack.kafka_bootstrap
        else:
            mqtt_port, bootstrap = args.mqtt_port, args.kafka
        try:
            backends = ("kafka-python", "confluent") if args.backend == "both" else (args.backend,)
            for backend in backends:
                for mode in ("backlog", "live"):
                    print(json.dumps(run(mode, args.count, mqtt_port, bootstrap, workdir,
                                         backend)), flush=True)
        finally:
            if stack is not None:
                stack.stop()


if __name__ == "__main__":
    main()
