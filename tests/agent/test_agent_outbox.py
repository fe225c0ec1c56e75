"""Outbox: order, priority, durability across reopen and kill -9, seq never reused, bounds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from drone_agent.errors import OutboxError, OutboxFull
from drone_agent.outbox import ROW_OVERHEAD, Outbox


def payload(seq: int, kind: str = "v") -> bytes:
    return f"{kind}:{seq}".encode()


def put(ob: Outbox, kind: str, evidence_id: str | None = None) -> int | None:
    short = kind[0]
    return ob.put(kind, lambda seq: payload(seq, short), evidence_id=evidence_id)


@pytest.fixture
def ob(tmp_path: Path):
    box = Outbox(tmp_path / "o.sqlite3")
    yield box
    box.close()


def test_seqs_increase_and_payload_sees_its_seq(ob: Outbox) -> None:
    seqs = [put(ob, k) for k in ("telemetry", "violation", "telemetry")]
    assert seqs == [0, 1, 2]
    assert [e.payload for e in ob.pending(10)] == [b"v:1", b"t:0", b"t:2"]


def test_violations_before_telemetry_backlog_each_in_seq_order(ob: Outbox) -> None:
    kinds = ["telemetry", "telemetry", "violation", "telemetry", "violation", "violation"]
    seqs = [put(ob, k) for k in kinds]
    pending = ob.pending(100)
    assert [e.kind for e in pending] == ["violation"] * 3 + ["telemetry"] * 3
    assert [e.seq for e in pending] == [seqs[2], seqs[4], seqs[5], seqs[0], seqs[1], seqs[3]]


def test_pending_excludes_and_limits(ob: Outbox) -> None:
    for _ in range(5):
        put(ob, "violation")
    assert [e.seq for e in ob.pending(2, exclude={0})] == [1, 2]
    assert ob.pending(0) == []


def test_ack_removes_only_the_acknowledged(ob: Outbox) -> None:
    for _ in range(4):
        put(ob, "violation")
    assert ob.ack([1, 3, 99]) == 2
    assert [e.seq for e in ob.pending(10)] == [0, 2]
    assert ob.depth == 2


def test_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    ob = Outbox(path)
    put(ob, "telemetry")
    put(ob, "violation", evidence_id="00112233445566ff")
    ob.close()
    again = Outbox(path)
    try:
        assert [(e.seq, e.kind, e.payload) for e in again.pending(10)] == [
            (1, "violation", b"v:1"), (0, "telemetry", b"t:0")]
        assert again.referenced_evidence() == {"00112233445566ff"}
        assert again.depth == 2
    finally:
        again.close()


def test_seq_never_reused_after_everything_was_delivered_and_reopened(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    ob = Outbox(path)
    used = [put(ob, "violation") for _ in range(3)] + [ob.reserve_seq()]
    ob.ack(used)
    assert ob.depth == 0
    ob.close()
    again = Outbox(path)
    try:
        assert put(again, "telemetry") == 4
    finally:
        again.close()


def test_failed_build_consumes_no_seq(ob: Outbox) -> None:
    def boom(seq: int) -> bytes:
        raise ValueError("bad read")

    with pytest.raises(ValueError):
        ob.put("violation", boom)
    assert put(ob, "violation") == 0
    assert ob.depth == 1


def test_full_drops_oldest_telemetry_first_then_refuses_violations(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite3", max_rows=6, telemetry_reserve_rows=2)
    try:
        t = [put(ob, "telemetry") for _ in range(4)]
        v = [put(ob, "violation") for _ in range(2)]
        assert ob.depth == 6 and ob.telemetry_dropped == 0
        v.append(put(ob, "violation"))  # full: the oldest telemetry gives way
        v.append(put(ob, "violation"))
        assert ob.telemetry_dropped == 2
        assert [e.seq for e in ob.pending(10) if e.kind == "telemetry"] == t[2:]
        with pytest.raises(OutboxFull, match="refused"):  # violations hold all but the reserve
            put(ob, "violation")
        assert ob.refused == 1
        assert ob.full_for_violations()
        assert [e.seq for e in ob.pending(10) if e.kind == "violation"] == v
        # Telemetry still fits in its reserve, replacing the oldest telemetry.
        newest = put(ob, "telemetry")
        assert [e.seq for e in ob.pending(10) if e.kind == "telemetry"] == [t[3], newest]
        assert ob.telemetry_dropped == 3
    finally:
        ob.close()


def test_refused_violation_consumes_no_seq_and_room_comes_back(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite3", max_rows=3, telemetry_reserve_rows=1)
    try:
        a, b = put(ob, "violation"), put(ob, "violation")
        with pytest.raises(OutboxFull):
            put(ob, "violation")
        ob.ack([a])
        assert put(ob, "violation") == b + 1
    finally:
        ob.close()


def test_byte_bound_counts_payload_plus_overhead(tmp_path: Path) -> None:
    reserve = 1 * (96 + ROW_OVERHEAD)
    ob = Outbox(tmp_path / "o.sqlite3", max_bytes=reserve + 2 * (100 + ROW_OVERHEAD),
                max_rows=1000, telemetry_reserve_rows=1)
    try:
        big = b"x" * 100
        ob.put("violation", lambda s: big)
        ob.put("violation", lambda s: big)
        with pytest.raises(OutboxFull):
            ob.put("violation", lambda s: big)
        assert ob.size_bytes == 2 * (100 + ROW_OVERHEAD)
    finally:
        ob.close()


def test_telemetry_dropped_when_no_telemetry_to_replace(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite3", max_bytes=2000, max_rows=100, telemetry_reserve_rows=1)
    try:
        assert ob.put("telemetry", lambda s: b"x" * 3000) is None
        assert ob.telemetry_dropped == 1 and ob.depth == 0
    finally:
        ob.close()


def test_foreign_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    path.write_bytes(b"this is not a database, just some bytes" * 100)
    with pytest.raises(OutboxError, match=r"o\.sqlite3"):
        Outbox(path)


WRITER = textwrap.dedent("""
    import sys
    from drone_agent.outbox import Outbox
    ob = Outbox(sys.argv[1])
    n = 0
    while True:
        kind = "violation" if n % 3 else "telemetry"
        seq = ob.put(kind, lambda s: f"{kind}:{s}".encode())
        print(seq, kind, flush=True)  # printed only after put() returned: accepted
        n += 1
""")


def test_survives_kill_9_mid_stream_and_never_reuses_a_seq(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                            text=True)
    accepted: list[tuple[int, str]] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seq, kind = line.split()
            accepted.append((int(seq), kind))
            if len(accepted) == 200:
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    ob = Outbox(path)
    try:
        stored = {(e.seq, e.kind) for e in ob.pending(10_000)}
        assert set(accepted) <= stored  # every put that returned survived the kill
        assert all(e.payload == f"{e.kind}:{e.seq}".encode() for e in ob.pending(10_000))
        assert put(ob, "violation") == max(s for s, _ in stored) + 1
    finally:
        ob.close()


def test_oldest_created_ms(ob: Outbox) -> None:
    assert ob.oldest_created_ms() is None
    ob.put("telemetry", lambda s: b"t", now_ms=5_000)
    ob.put("violation", lambda s: b"v", now_ms=7_000)
    assert ob.oldest_created_ms() == 5_000
    ob.ack([0])
    assert ob.oldest_created_ms() == 7_000


def test_held_rows_go_behind_everything_and_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    ob = Outbox(path)
    refused = put(ob, "violation")
    later_v, tel = put(ob, "violation"), put(ob, "telemetry")
    ob.hold([refused])
    assert [e.seq for e in ob.pending(10)] == [later_v, tel, refused]
    ob.close()
    again = Outbox(path)
    try:
        assert [e.seq for e in again.pending(10)] == [later_v, tel, refused]
    finally:
        again.close()
