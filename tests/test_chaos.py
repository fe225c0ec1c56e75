"""`presacop chaos`: a short real run (its own Mosquitto + Kafka, the gateway, two agent
processes) through a gateway kill -9, an agent kill -9, Kafka SIGSTOP and a Mosquitto kill -9:
nothing lost, nothing written twice, the drones drained. Plus the pure parts: the schedule, the
ledger, the comparison."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from presacop.chaos.check import KafkaView, Ledgers, compare
from presacop.chaos.cli import render
from presacop.chaos.plan import KINDS, WARMUP_S, plan_faults

PRESACOP = str(Path(sys.executable).with_name("presacop"))
CI_FAULTS = ("gateway-kill", "agent-kill", "mosquitto-kill", "kafka-pause", "link-cut")
CI_SEED = 53  # at 60 s: mosquitto-kill, agent-kill, kafka-pause, gateway-kill
RUN_LIMIT_S = 480  # brokers ~30 s + 60 s of faults + drain (<= 240 s) + delivery; then SIGTERM


@pytest.mark.timeout(RUN_LIMIT_S + 180)
def test_short_chaos_run_loses_nothing_and_writes_nothing_twice():
    plan = plan_faults(60, 2, CI_SEED, CI_FAULTS)
    assert {"gateway-kill", "agent-kill", "mosquitto-kill", "kafka-pause"} <= \
        {f.kind for f in plan}, "the CI seed must exercise these"
    run = subprocess.Popen([PRESACOP, "chaos", "--drones", "2", "--duration", "60", "--seed",
                            str(CI_SEED), "--faults", ",".join(CI_FAULTS), "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = run.communicate(timeout=RUN_LIMIT_S)
    except subprocess.TimeoutExpired:
        run.send_signal(signal.SIGTERM)  # the run stops everything it started, then exits
        out, err = run.communicate(timeout=150)
        pytest.fail(f"the chaos run took over {RUN_LIMIT_S} s:\n{err[-4000:]}")
    assert out.strip(), err[-4000:]
    summary = json.loads(out)
    print(err[-2500:])
    topics = summary["topics"]
    assert run.returncode == 0, f"{render(summary)}\n{err[-3000:]}"
    assert summary["lost"] == 0 and summary["duplicates"] == 0
    assert [f["kind"] for f in summary["faults"]] == [f.kind for f in plan]
    assert all(f["recovery_s"] is not None for f in summary["faults"])
    assert topics["violations"]["accepted"] > 0 and topics["telemetry"]["accepted"] > 0
    assert topics["evidence"]["lost"] == 0 and summary["outbox_leftovers"] == 0
    assert summary["drained_s"] is not None and summary["uploads_pending"] == 0, render(summary)
    assert summary["gateway_starts"] == 2 and summary["drone_starts"] == 3


def test_plan_is_seeded_and_uses_every_kind_before_repeating_one():
    a, b = plan_faults(3600, 8, 7), plan_faults(3600, 8, 7)
    assert a == b and a != plan_faults(3600, 8, 8)
    first = [f.kind for f in a[:len(KINDS)]]
    assert sorted(first) == sorted(KINDS)
    assert a[0].at_s == WARMUP_S
    assert all(x.at_s + x.length_s < y.at_s for x, y in itertools.pairwise(a))
    with pytest.raises(ValueError, match="unknown fault kinds"):
        plan_faults(100, 1, 0, ("gateway-nap",))


def test_ledger_lines_cut_by_a_kill_are_counted_not_trusted(tmp_path: Path):
    (tmp_path / "d-0001.ledger").write_text("t 0\nv 1\nt 2\nv 3\nt 4\nt")
    ledgers = Ledgers.read(tmp_path)
    assert ledgers.ids["violations"] == {"d-0001:1", "d-0001:3"}
    assert ledgers.ids["telemetry"] == {"d-0001:0", "d-0001:2", "d-0001:4"}
    assert ledgers.unreadable == 1
    record = {"drone_id": "d-0001", "kind": "telemetry"}
    view = KafkaView({
        "telemetry": [({}, {**record, "message_id": f"d-0001:{s}", "seq": s}) for s in (0, 2, 2)]
        + [({}, {**record, "kind": "status", "online": True, "message_id": "d-0001:6",
                 "seq": 6})],
        "violations": [({}, {"drone_id": "d-0001", "message_id": "d-0001:1", "seq": 1,
                             "revision": 0, "kind": "violation", "evidence_id": "e1"})],
        "evidence": [({}, {"drone_id": "d-0001", "evidence_id": "e1"})],
    })
    result = compare(ledgers, view, frozenset({"d-0001"}))
    t = result["topics"]
    assert (t["telemetry"]["lost"], t["telemetry"]["duplicates"]) == (1, 1)  # 4 lost, 2 twice
    assert t["violations"]["lost_ids"] == ["d-0001:3"] and t["evidence"]["lost"] == 0
    # 3 and 4 are missing; 5 is the will of the connection whose online status is 6
    assert result["gaps"] == {"missing": 2, "forgotten_wills": 1, "lost_online_status": 0}
