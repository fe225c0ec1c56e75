"""bench/protocol.py runs (no broker needed) and its size table says what the spec says.

Sizes are exact, so they are asserted; the rates are not (a shared machine makes timing flaky).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_protocol_bench_sizes_and_msgspec_agreement() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "protocol.py"), "--json",
                           "--seconds", "0.001", "--repeat", "1"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout)
    sizes = {r["kind"]: r for r in out["sizes"]}
    assert {k: r["msgpack"] for k, r in sizes.items()} == {
        "telemetry": 30, "telemetry envelope max": 32, "telemetry absolute max": 34,
        "violation": 47, "violation+vehicle": 61, "status": 14,
        "violation signed": 119, "violation signed max": 122, "violation+vehicle signed": 130}
    # A signed violation without vehicle details stays within its 128-byte target (issue 14).
    signed_max = sizes["violation signed max"]
    assert signed_max["msgpack"] <= signed_max["target"] == 128
    topic = len("presacop/v1/drones/nyc-0007/telemetry")
    assert sizes["telemetry"]["topic"] == topic
    assert sizes["telemetry"]["mqtt_publish"] == 1 + 1 + 2 + topic + 2 + 30  # QoS 1, 3.1.1
    assert sizes["telemetry envelope max"]["msgpack"] <= sizes["telemetry"]["target"]
    assert {r["kind"] for r in out["rates"]} == {"telemetry", "violation", "violation+vehicle",
                                                "status"}
    if out["msgspec"] != "absent":
        assert out["msgspec_bytes_identical"] is True
