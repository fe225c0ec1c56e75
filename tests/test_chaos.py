"""`presacop chaos`: the pure parts (the schedule, the ledger, the comparison).

The short real run (`presacop chaos --drones 2 --duration 60 --seed 53 --faults
gateway-kill,agent-kill,mosquitto-kill,kafka-pause,link-cut`) is not in the suite: on a quiet
machine its drain took 172 s (outboxes empty long before the drain's condition was seen true),
over the test's time budget; see docs/chaos.md."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from presacop.chaos.check import KafkaView, Ledgers, compare
from presacop.chaos.plan import KINDS, WARMUP_S, plan_faults


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
