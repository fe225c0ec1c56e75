"""bench/gateway.py's accounting, without brokers: latency is arrival minus the publishers' own
publish time (never the message's time_ms, which the protocol floors to 40 ms); loss and
duplicates count only the run's own drones."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    # bench/gateway.py is a script beside its helpers, and its name is taken by the gateway
    # package: load it under another name with bench/ importable, then put sys.path back (the
    # script puts the repository first on it).
    saved = list(sys.path)
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_gateway", BENCH / "gateway.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while being built
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


def test_kafka_latency_is_the_first_append_minus_the_publish_time(bench: ModuleType) -> None:
    row = bench.Row("r", "bridge", 3)
    seen = {"d1:0": [1_010], "d1:1": [1_030, 1_050], "d1:2": [1_021]}  # d1:1's first append
    sent = {"d1:0": 1_000.25, "d1:1": 1_000.0, "d1:2": 1_001.0}
    bench.Bench.account(row, {"d1:0", "d1:1", "d1:2"}, seen, 0.5, {1}, sent)
    assert (row.found, row.lost, row.duplicates) == (3, 0, 1)
    assert (row.p50_ms, row.p99_ms) == (20.0, 30.0)  # of 9.75, 20 and 30
    assert row.latency == "Kafka LogAppendTime - publish time"


def test_no_publish_times_leave_the_latency_to_the_caller(bench: ModuleType) -> None:
    row = bench.Row("r", "kafka-limit", 1)
    bench.Bench.account(row, {"d1:0"}, {"d1:0": [2_000]}, 1.0, {1}, None)
    assert row.found == 1 and row.rate == 1.0
    assert (row.p50_ms, row.p99_ms, row.latency) == (None, None, "")


def test_mqtt_latency_is_the_receive_minus_the_publish_time(bench: ModuleType) -> None:
    row = bench.Row("r", "mqtt-limit", 4)
    received = {"d1:0": 1_002.5, "d1:1": 1_004.0, "d1:2": 1_003.0}
    sent = {"d1:0": 1_000.0, "d1:1": 1_001.0, "d1:2": 1_002.0, "d1:3": 1_003.0}
    bench.Bench.account_mqtt(row, set(sent), received, sent, 0, 1.004, 0.999)
    assert (row.found, row.lost) == (3, 1)
    assert (row.p50_ms, row.p99_ms) == (2.5, 3.0)  # of 1, 2.5 and 3


def test_publish_times_come_back_by_message_id(bench: ModuleType) -> None:
    plan = bench.Plan(tag="t", messages=5, publishers=2, drones=2)
    pubs = object.__new__(bench.Publishers)  # no processes: only the reporting side
    pubs.plan = plan
    pubs.done = {0: {"sent_ms": [10.0, 11.0, 12.0]}, 1: {"sent_ms": [20.0]}}
    assert pubs.sent_ms() == {"tp0d0000:0": 10.0, "tp0d0000:1": 11.0, "tp0d0000:2": 12.0,
                              "tp1d0000:0": 20.0}


def test_only_this_runs_drones_are_accounted(bench: ModuleType) -> None:
    # Statuses retained on a shared broker reach every gateway of a share group as it subscribes,
    # so both may write them: they are other drones' records, not the run's duplicates.
    def rec(topic: str, value: dict[str, str], ts: int = 1) -> SimpleNamespace:
        return SimpleNamespace(topic=topic, value=json.dumps(value).encode(), timestamp=ts,
                               timestamp_type=1)

    records = [rec("m", {"id": "rp0d0000:0"}), rec("m", {"id": "rp0d0000:0"}, 2),
               rec("m", {"id": "rwp0d0000:0"}), rec("m", {"id": "demo-1:7"}),
               rec("m", {"id": "demo-1:7"}), rec("m", {"id": "demo-2:3"}),
               rec("dl", {"drone_id": "rp0d0001"}), rec("dl", {"drone_id": "demo-1"})]
    per_topic, seen, types, foreign = bench.Bench.tally(
        records, ["m"], lambda r: json.loads(r.value)["id"], warm="rw", own="rp")
    assert seen == {"rp0d0000:0": [1, 2]}  # the run's own repeat stays a duplicate
    assert foreign == {"demo-1:7": 2, "demo-2:3": 1}
    assert per_topic == {"m": 2, "dl": 1} and types == {1}
    row = bench.Row("r", "bridge", 1)
    bench.Bench.account(row, {"rp0d0000:0"}, seen, 0.5, types, None)
    assert (row.found, row.lost, row.duplicates) == (1, 0, 1)
