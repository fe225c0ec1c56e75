"""`presacop demo`: a real short run through link cuts, its cleanup, its flags, and the pure logic
of its self-check (summary, fault plan, percentiles)."""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from common.kafka import import_kafka
from presacop import demo
from presacop.cli import main
from presacop.stack import Stack, free_port

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "demo.md").read_text()


def env_with_tmp(tmp_path: Path) -> dict[str, str]:
    """The demo's temporary directory (kept after a failure) goes under the test's tmp_path."""
    return {**os.environ, "TMPDIR": str(tmp_path)}


def demo_argv(stack: Stack, *extra: str) -> list[str]:
    return [sys.executable, "-m", "presacop.cli", "demo", "--mqtt",
            f"{stack.mqtt_host}:{stack.mqtt_port}", "--kafka", stack.kafka_bootstrap, *extra]


def kafka_admin(bootstrap: str) -> Any:
    return import_kafka().KafkaAdminClient(bootstrap_servers=bootstrap)


def demo_topics(bootstrap: str, run_id: str) -> list[str]:
    admin = kafka_admin(bootstrap)
    try:
        return sorted(t for t in admin.list_topics() if t.startswith(f"presacop.demo.{run_id}."))
    finally:
        admin.close()


def read_topic(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every record of `topic`, read to its end offsets by a consumer of our own."""
    kafka = import_kafka()
    consumer = kafka.KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [kafka.TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(parts)
        values: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for records in consumer.poll(timeout_ms=500).values():
                values += [json.loads(r.value) for r in records]
        return values
    finally:
        consumer.close()


def gateway_alive(pid: int, run_id: str) -> bool:
    try:
        return run_id in " ".join(psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False


@pytest.fixture
def kept_topics(stack: Stack) -> Iterator[list[str]]:
    """Names of topics a test kept with --keep-topics; deleted at teardown."""
    names: list[str] = []
    yield names
    if names:
        admin = kafka_admin(stack.kafka_bootstrap)
        try:
            admin.delete_topics(names)
        finally:
            admin.close()


# -- the real thing --------------------------------------------------------------------------


@pytest.mark.timeout(400)
def test_short_demo_through_link_cuts_loses_nothing(stack: Stack, kept_topics: list[str],
                                                    tmp_path: Path) -> None:
    result = subprocess.run(
        demo_argv(stack, "--drones", "3", "--duration", "25", "--link-cuts", "3", "--json",
                  "--keep-topics"),
        capture_output=True, text=True, timeout=360, cwd=ROOT, check=False,
        env=env_with_tmp(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    summary = json.loads(result.stdout)
    kept_topics += summary["topics"].values()
    published, delivered = summary["published"], summary["delivered"]

    assert summary["ok"] is True, summary["checks"]
    assert summary["lost"] == 0
    assert published["violations"] > 0 and published["telemetry"] > 0
    assert delivered["violations"] >= published["violations"]
    assert delivered["telemetry"] >= published["telemetry"]
    assert summary["alerts"] == published["unqualified"]
    assert summary["link_faults"] >= 1
    assert summary["deadletter"] == 0
    assert summary["drones"] == 3
    assert summary["latency_ms"]["p50"] is not None
    assert summary["latency_ms"]["p99"] >= summary["latency_ms"]["p50"]
    # Every accepted violation's image was uploaded (through the link cuts), stored and verified.
    evidence = summary["evidence"]
    assert evidence["expected"] > 0 and evidence["bytes"] > 0
    assert evidence["stored"] == evidence["verified"] == evidence["expected"]
    # The drones hold the run's back-office key: they confirmed (and deleted) uploads only on
    # receipts it signed, and ignored none of the gateway's.
    assert evidence["uploads_confirmed"] > 0 and evidence["receipts_bad_signature"] == 0
    # Progress went to stderr, with the link cuts visible as they happened.
    assert "link CUT" in result.stderr and "link restored" in result.stderr

    # Check the self-check: read the run's topics with our own consumer.
    violations = read_topic(stack.kafka_bootstrap, summary["topics"]["violations"])
    ids = {v["message_id"] for v in violations}
    assert len(ids) == published["violations"]
    assert all(v["drone_id"].startswith(f"demo-{summary['run_id']}-") for v in violations)
    unqualified = {v["message_id"] for v in violations if v["code"] is None}
    alerts = read_topic(stack.kafka_bootstrap, summary["topics"]["alerts"])
    assert {a["message_id"] for a in alerts} == unqualified
    assert len(unqualified) == published["unqualified"]
    assert read_topic(stack.kafka_bootstrap, summary["topics"]["deadletter"]) == []
    stored = read_topic(stack.kafka_bootstrap, summary["topics"]["evidence"])
    assert {r["evidence_id"] for r in stored} == {v["evidence_id"] for v in violations}

    pid = int(re.search(r"gateway\s+pid (\d+)", result.stderr).group(1))  # type: ignore[union-attr]
    assert not gateway_alive(pid, summary["run_id"])
    assert not list(tmp_path.glob("presacop-demo-*")), "the run's temporary directory is left"

    # docs/demo.md describes every key of the real JSON summary.
    keys = {*summary, *summary["published"], *summary["delivered"], *summary["latency_ms"],
            *summary["evidence"]}
    assert not [k for k in sorted(keys) if f"`{k}`" not in DOC]


@pytest.mark.timeout(300)
def test_sigterm_mid_run_stops_the_gateway_and_deletes_the_topics(stack: Stack,
                                                                  tmp_path: Path) -> None:
    proc = subprocess.Popen(demo_argv(stack, "--drones", "2", "--duration", "120", "--json"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=env_with_tmp(tmp_path))
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # wait until the drones fly
            seen.append(line)
            if "flying]" in line:
                break
        else:
            pytest.fail("the demo never started flying:\n" + "".join(seen))
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)[::-1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    stderr = "".join(seen) + (rest or "")
    assert proc.returncode == demo.EXIT_INTERRUPTED, stderr[-3000:]
    assert "interrupted" in stderr
    run_id = re.search(r"PresaCop demo (\w+):", stderr).group(1)  # type: ignore[union-attr]
    pid = int(re.search(r"gateway\s+pid (\d+)", stderr).group(1))  # type: ignore[union-attr]
    assert not gateway_alive(pid, run_id)
    assert demo_topics(stack.kafka_bootstrap, run_id) == []


@pytest.mark.timeout(120)
def test_unreachable_brokers_exit_1_with_a_clear_message(tmp_path: Path) -> None:
    mqtt, kafka = free_port(), free_port()
    result = subprocess.run(
        [sys.executable, "-m", "presacop.cli", "demo", "--mqtt", f"127.0.0.1:{mqtt}",
         "--kafka", f"127.0.0.1:{kafka}", "--json"],
        capture_output=True, text=True, timeout=100, cwd=ROOT, check=False,
        env=env_with_tmp(tmp_path))
    assert result.returncode == 1
    assert f"--mqtt 127.0.0.1:{mqtt}: cannot connect" in result.stderr
    assert result.stdout == ""
    assert not list(tmp_path.glob("presacop-demo-*")), "nothing worth keeping was kept"


# -- flags -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "flag"), [
    (["--drones", "0"], "--drones"),
    (["--drones", "many"], "--drones"),
    (["--duration", "-1"], "--duration"),
    (["--duration", "5"], "--duration"),
    (["--link-cuts", "-2"], "--link-cuts"),
    (["--seed", "x"], "--seed"),
    (["--mqtt", "localhost"], "--mqtt"),
    (["--kafka", "127.0.0.1:99999"], "--kafka"),
])
def test_bad_flags_exit_2_naming_the_flag(argv: list[str], flag: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", *argv])
    assert exit_info.value.code == 2
    assert f"argument {flag}:" in capsys.readouterr().err


@pytest.mark.parametrize(("given", "needed"), [("--mqtt", "--kafka"), ("--kafka", "--mqtt")])
def test_one_broker_without_the_other_exits_2(given: str, needed: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", given, "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert f"{given} needs {needed}" in err


def test_docs_describe_every_flag() -> None:
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    flags = [a.option_strings[-1] for a in parser._actions
             if a.option_strings and a.option_strings[-1] != "--help"]
    assert len(flags) >= 10
    assert not [f for f in flags if f"| `{f}" not in DOC]


# -- the self-check's logic (pure) -------------------------------------------------------------


def record(drone: str, seq: int, kind: str, *, code: int | None = 14, time_ms: int = 1000) -> bytes:
    value: dict[str, Any] = {"message_id": f"{drone}:{seq}", "drone_id": drone, "seq": seq,
                             "kind": kind, "time_ms": time_ms}
    if kind == "violation":
        value["code"] = code
    return json.dumps(value).encode()


def alert(drone: str, seq: int) -> bytes:
    return json.dumps({"message_id": f"{drone}:{seq}", "drone_id": drone}).encode()


def tally_of(*records: tuple[str, bytes, int]) -> demo.Tally:
    tally = demo.Tally(frozenset({"d1", "d2"}))
    for role, value, ts in records:
        tally.add(role, value, ts)
    return tally


LEDGER = demo.Ledger(violations=frozenset({"d1:0", "d1:2", "d2:0"}),
                     unqualified=frozenset({"d1:2"}), telemetry={"d1": 1, "d2": 1})
COMPLETE = [
    ("violations", record("d1", 0, "violation"), 1010),
    ("violations", record("d1", 2, "violation", code=None), 1020),
    ("alerts", alert("d1", 2), 1021),
    ("violations", record("d2", 0, "violation"), 1030),
    ("telemetry", record("d1", 1, "telemetry"), 1040),
    ("telemetry", record("d2", 1, "telemetry"), 1050),
    ("telemetry", record("d2", 2, "status", time_ms=0), 1060),
]


def checks(summary: dict[str, Any]) -> dict[str, bool]:
    return {c["name"]: c["ok"] for c in summary["checks"]}


def test_missing_or_unverified_evidence_fails() -> None:
    ledger = demo.Ledger(violations=frozenset(), unqualified=frozenset(), telemetry={},
                         evidence=frozenset({"a" * 16, "b" * 16, "c" * 16}))
    stored = {i: {"sha256": i * 4, "size": 10} for i in ("a" * 16, "b" * 16)}
    check = demo.evidence_check(ledger, stored, {"a" * 16})
    assert not check.ok and "1 missing" in check.detail and "1 not verifying" in check.detail
    assert demo.evidence_check(ledger, {**stored, "c" * 16: stored["a" * 16]},
                               {"a" * 16, "b" * 16, "c" * 16}).ok
    summary = demo.evidence_summary(ledger, stored, {"a" * 16})
    assert (summary["expected"], summary["stored"], summary["verified"], summary["bytes"]) == \
        (3, 2, 1, 20)


def test_summary_of_a_complete_run_is_ok() -> None:
    tally = tally_of(*COMPLETE)
    summary = demo.summarize(LEDGER, tally, {"drones": 2})
    assert summary["ok"] and summary["lost"] == 0 and summary["duplicates"] == 0
    assert summary["delivered"] == {"violations": 3, "telemetry": 2, "status": 1, "total": 5}
    assert summary["alerts"] == 1
    assert demo.delivered_all(LEDGER, tally)
    # Status messages are not latencies (their time is the CONNECT's); the others are.
    assert sorted(tally.latencies_ms) == [10, 20, 30, 40, 50]
    assert "OK: nothing lost" in demo.render(summary)


def test_a_missing_violation_is_lost_and_named() -> None:
    tally = tally_of(*[r for r in COMPLETE if r[1] != record("d2", 0, "violation")])
    summary = demo.summarize(LEDGER, tally, {})
    assert not summary["ok"]
    assert summary["lost"] == 1 and summary["lost_violation_ids"] == ["d2:0"]
    assert not checks(summary)["violations"]
    assert not demo.delivered_all(LEDGER, tally)
    assert "FAILED: 1 lost" in demo.render(summary)


def test_missing_telemetry_and_missing_alert_fail() -> None:
    tally = tally_of(*[r for r in COMPLETE
                       if r[1] not in (record("d1", 1, "telemetry"), alert("d1", 2))])
    summary = demo.summarize(LEDGER, tally, {})
    assert summary["lost"] == 1
    assert not checks(summary)["telemetry"] and not checks(summary)["alerts"]


def test_duplicates_counted_foreign_ignored_dead_letters_fail() -> None:
    tally = tally_of(*COMPLETE,
                     ("violations", record("d1", 0, "violation"), 1500),
                     ("alerts", alert("d1", 2), 1501),
                     ("telemetry", record("other", 0, "telemetry"), 1502),
                     ("deadletter", json.dumps({"drone_id": "d2", "reason": "truncated"}).encode(),
                      1503))
    summary = demo.summarize(LEDGER, tally, {})
    assert summary["duplicates"] == 2
    assert summary["foreign_records"] == 1
    assert summary["deadletter"] == 1 and not checks(summary)["dead letters"]
    assert summary["lost"] == 0 and not summary["ok"]


def test_a_message_no_agent_accepted_fails_the_check() -> None:
    tally = tally_of(*COMPLETE, ("violations", record("d2", 9, "violation"), 1600),
                     ("telemetry", b"not json", 1601))
    summary = demo.summarize(LEDGER, tally, {})
    assert not checks(summary)["nothing unknown"]
    assert tally.unreadable == 1


def test_extra_checks_decide_too() -> None:
    summary = demo.summarize(LEDGER, tally_of(*COMPLETE), {},
                             [demo.Check("gateway", False, "exit code 1")])
    assert not summary["ok"] and summary["lost"] == 0


def test_percentile_nearest_rank() -> None:
    assert demo.percentile([], 50) is None
    assert demo.percentile([5], 99) == 5
    assert demo.percentile(list(range(1, 101)), 50) == 50
    assert demo.percentile(list(range(1, 101)), 99) == 99


@pytest.mark.parametrize("seed", range(20))
def test_cut_plan_one_at_a_fifth_all_done_by_four_fifths_no_overlap(seed: int) -> None:
    rng = random.Random(seed)
    drones, duration = rng.randint(1, 6), rng.uniform(10, 120)
    plan = demo.plan_cuts(5, drones, duration, random.Random(seed))
    assert plan == sorted(plan, key=lambda c: c.at_s)
    assert any(c.at_s == pytest.approx(0.2 * duration) and c.drone == 0 for c in plan)
    assert all(c.at_s > 0 and c.end_s <= 0.8 * duration + 1e-9 for c in plan)
    assert all(0 <= c.drone < drones and c.length_s > 0 for c in plan)
    for a in plan:
        for b in plan:
            if a is not b and a.drone == b.drone:
                assert a.end_s <= b.at_s or b.end_s <= a.at_s
    assert plan == demo.plan_cuts(5, drones, duration, random.Random(seed))


def test_no_cuts_asked_none_planned() -> None:
    assert demo.plan_cuts(0, 4, 45, random.Random(1)) == []
