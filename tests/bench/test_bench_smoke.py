"""The bench scripts run end to end against the real brokers with tiny counts.

No figure is asserted (benchmarks print figures; a shared machine makes any timing flaky): only
that each script completes, its JSON has the fields bench/README.md documents, and the PresaCop
gateway lost and duplicated nothing while the bench watched.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from presacop.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
ROW_FIELDS = {"name", "role", "messages", "found", "rate", "p50_ms", "p99_ms", "latency", "cpu_s",
              "cpu_us_per_msg", "peak_rss_mb", "lost", "duplicates", "notes"}


def run_bench(script: str, *args: str, timeout: float) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args, "--json"],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False)
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


@pytest.mark.timeout(900)
def test_gateway_bench_runs_every_path_and_the_gateway_loses_nothing(stack: Stack) -> None:
    out = run_bench("gateway.py", "--messages", "400", "--publishers", "2", "--drones", "50",
                    "--mqtt", f"{stack.mqtt_host}:{stack.mqtt_port}",
                    "--kafka", stack.kafka_bootstrap, "--stall", "20", "--timeout", "800",
                    timeout=850)
    rows = {r["name"]: r for r in out["rows"]}
    for row in rows.values():
        assert row.keys() >= ROW_FIELDS, row["name"]
    expected = {"MQTT limit (paho sub)", "Kafka limit (kafka-python)",
                "Kafka limit (ProducerPerformance)", "naive bridge", "presacop gateway"}
    assert expected <= rows.keys()
    gateway = rows["presacop gateway"]
    assert gateway["messages"] == 400
    assert gateway["found"] == 400
    assert gateway["lost"] == 0
    assert gateway["duplicates"] == 0
    assert gateway["rate"] > 0 and gateway["p99_ms"] is not None
    assert "LogAppendTime" in gateway["latency"]
    assert out["extra"]["gateway"]["alerts"] == out["extra"]["gateway"]["unqualified_published"]
    assert out["extra"]["gateway"]["deadletter"] == 0
    half = [r for r in out["rows"] if r["name"].startswith("presacop gateway @")]
    assert len(half) == 1 and half[0]["lost"] == 0
    confluent = rows["presacop gateway (confluent)"]  # the dev extra installs confluent-kafka
    assert (confluent["found"], confluent["lost"], confluent["duplicates"]) == (400, 0, 0)
    assert out["extra"]["gateway_confluent"]["alerts"] == \
        out["extra"]["gateway_confluent"]["unqualified_published"]
    # Two gateways in one share group: every message once over both, and both took a share.
    shared = rows["presacop gateway x2 (share group)"]
    assert (shared["found"], shared["lost"], shared["duplicates"]) == (400, 0, 0)
    assert shared["cpu_s"] > 0 and shared["p99_ms"] is not None
    by_process = out["extra"]["gateway_x2"]["by_process"]
    assert set(by_process) == {"gateway1", "gateway2"} and all(by_process.values()), by_process
    assert sum(by_process.values()) == 400
    assert out["extra"]["gateway_x2"]["alerts"] == \
        out["extra"]["gateway_x2"]["unqualified_published"]
    assert out["scale_out"]["processes"] == 2 and out["scale_out"]["ratio"] > 0
    # mq-bridge (the `bench` extra, not dev): its row when installed, else only that row skipped.
    if "mq_bridge" in out["extra"]:
        assert out["extra"]["mq_bridge"]["skipped"] and "mq-bridge 1.2.0" not in rows
    else:
        mqb = rows["mq-bridge 1.2.0"]
        assert (mqb["found"], mqb["lost"], mqb["duplicates"]) == (400, 0, 0)
        assert "gateway >= 1.0x mq-bridge (msgs/s)" in {t["target"] for t in out["targets"]}
    assert {t["target"] for t in out["targets"]} >= {
        "gateway >= 2x naive bridge (msgs/s)", "p99 latency < 50 ms at half the max rate"}
    # The figures say where they came from: this machine's cores, this Python.
    assert out["machine"]["nproc"] == os.cpu_count()
    assert out["machine"]["python"] == platform.python_version()


@pytest.mark.timeout(600)
def test_agent_bench_reports_each_figure(stack: Stack) -> None:
    out = run_bench("agent.py", "--frames", "6", "--seconds", "2", "--puts", "20",
                    "--rss-seconds", "4", "--mqtt", f"{stack.mqtt_host}:{stack.mqtt_port}",
                    timeout=550)
    assert set(out["resolutions"]) == {"720p", "1080p"}
    for figures in out["resolutions"].values():
        assert figures["capture"]["cpu"]["mean_ms"] > 0
        assert figures["jpeg"]["cpu"]["mean_ms"] > 0 and figures["jpeg"]["kb_mean"] > 0
        assert figures["agent"]["recognized"] > 0
        assert figures["agent"]["pipeline_cpu"]["n"] > 0
    for kind in ("violation", "telemetry"):
        assert out["outbox"][kind]["per_s"] > 0
        assert "synchronous=FULL" in out["outbox"][kind]["policy"]
    process = out["agent_process"]
    assert process["peak_rss_mb"] > 0 and process["exit_status"] == 0
