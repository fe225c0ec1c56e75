"""Pure parts of the gateway, without brokers: dedupe window and gaps, routing and record
building, dead letters, the systemd notifier, log levels."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path

import pytest
from gateway_testlib import header, status, telemetry, violation
from hypothesis import given, settings
from hypothesis import strategies as st

import protocol
from gateway import logs, records
from gateway.config import TopicsConfig
from gateway.dedupe import SeqTracker, Verdict
from gateway.records import Receipt
from gateway.router import RouteSettings, route
from gateway.systemd import Notifier

TOPICS = TopicsConfig()
SETTINGS = RouteSettings(TOPICS, max_clock_skew_ms=300_000, deadletter_max_bytes=64)
NOW = 1_780_000_000_000


def receipt(topic: str = "t", retained: bool = False) -> Receipt:
    return Receipt(mqtt_topic=topic, received_ms=NOW, gateway_id="gw-test", retained=retained)


def routed(msg: protocol.Message, topic: str | None = None):
    t = topic or protocol.topic(msg.header.drone_id, protocol.kind_of(msg))
    return route(t, protocol.encode(msg), receipt(t), SETTINGS)


# -- dedupe window ----------------------------------------------------------------------------


def test_window_drops_redeliveries_and_counts_gaps():
    t = SeqTracker(window=8)
    assert t.observe("d", 10) is Verdict.NEW
    assert t.observe("d", 10) is Verdict.DUPLICATE
    assert t.observe("d", 13) is Verdict.NEW  # 11, 12 skipped
    assert t.missing("d") == 2
    assert t.observe("d", 11) is Verdict.NEW  # a late arrival fills its hole
    assert t.missing("d") == 1
    assert t.observe("d", 11) is Verdict.DUPLICATE
    assert t.observe("d", 9) is Verdict.NEW  # below the first seen: not a hole, not a dup
    assert t.observe("d", 30) is Verdict.NEW  # 12 and 14..21 leave the window unfilled
    state = t.state("d")
    assert state is not None
    assert state.lost == 1 + 8 and state.gap_events == 2
    assert t.observe("d", 13) is Verdict.UNKNOWN  # older than the window: produced again
    assert t.totals() == (t.missing("d"), 9, 2)


def test_a_seq_exactly_window_behind_is_inside_more_than_that_is_outside():
    """docs/gateway.md: only a seq *more than* `dedupe_window` behind the newest is outside."""
    t = SeqTracker(window=8)
    assert t.observe("d", 2) is Verdict.NEW
    assert t.observe("d", 10) is Verdict.NEW
    assert t.observe("d", 2) is Verdict.DUPLICATE  # exactly 8 behind: still remembered
    assert t.observe("d", 11) is Verdict.NEW
    assert t.observe("d", 2) is Verdict.UNKNOWN  # 9 behind: outside
    big = SeqTracker(window=4096)
    big.observe("d", 0)
    big.observe("d", 4096)
    assert big.observe("d", 0) is Verdict.DUPLICATE


def test_seeded_seqs_are_duplicates_and_start_no_holes():
    t = SeqTracker(window=8)
    t.seed("d", [3, 5, 6], time_ms=1000)
    assert [t.observe("d", s) for s in (5, 6, 3)] == [Verdict.DUPLICATE] * 3
    assert t.observe("d", 4) is Verdict.NEW  # a hole of the tail, not counted as missing
    assert t.totals() == (0, 0, 0)
    assert t.observe("d", 9) is Verdict.NEW  # 7, 8 skipped after the seeded top: live holes
    assert t.missing("d") == 2
    t.seed("d", [7, 10, 12])  # a later seed (after a lost connection): fills and advances
    assert t.missing("d") == 2  # 8 still missing, 11 new
    assert t.observe("d", 12) is Verdict.DUPLICATE and t.observe("d", 11) is Verdict.NEW
    assert t.totals() == t.recount()


def test_drones_beyond_the_limit_are_forgotten_least_recent_first():
    t = SeqTracker(window=4, max_drones=2)
    t.observe("a", 1)
    t.observe("b", 1)
    t.observe("a", 2)
    t.observe("c", 1)
    assert t.state("b") is None and t.state("a") is not None
    assert t.forgotten_drones == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 60), max_size=120), st.integers(1, 16))
def test_window_agrees_with_a_plain_set_model(seqs, window):
    """A seq is a duplicate exactly when it was seen and is within `window` of the highest;
    holes are the unseen seqs of the window at or above the first seq ever seen."""
    t = SeqTracker(window=window)
    seen: set[int] = set()
    top: int | None = None
    for s in seqs:
        verdict = t.observe("d", s)
        if top is not None and top - s > window:
            assert verdict is Verdict.UNKNOWN
            continue
        assert verdict is (Verdict.DUPLICATE if s in seen else Verdict.NEW)
        seen.add(s)
        top = s if top is None else max(top, s)
        window_seqs = range(max(top - window, seqs[0]), top + 1)
        assert t.missing("d") == len(set(window_seqs) - seen)


# -- routing and records ----------------------------------------------------------------------


def test_telemetry_and_status_go_to_telemetry_keyed_by_drone():
    for msg in (telemetry("d1", 1, t=NOW - 40), status("d1", 2, t=NOW - 40)):
        r = routed(msg)
        assert r.reason is None and r.message_id == protocol.message_id(msg)
        (rec,) = r.records
        assert rec.topic == TOPICS.telemetry and rec.key == b"d1"
        value = json.loads(rec.value)
        assert value["delay_ms"] == 40 and value["clock_suspect"] is False
        assert value["gateway_id"] == "gw-test" and value["received_ms"] == NOW
        assert dict(rec.headers)["record-type"] == protocol.kind_of(msg).value.encode()


def test_unqualified_violation_also_raises_a_deterministic_alert():
    msg = violation("d1", 7, code=None)
    r1, r2 = routed(msg), routed(msg)
    v, alert = r1.records
    assert v.topic == TOPICS.violations and alert.topic == TOPICS.alerts
    assert alert.key == r2.records[1].key == records.alert_id("d1:7").encode()
    a = json.loads(alert.value)
    assert a["state"] == "open" and a["code"] is None and a["evidence_id"] == msg.evidence_id
    assert len(routed(violation("d1", 8, code=21)).records) == 1


def test_clock_suspect_for_unsynced_clocks_and_times_ahead_only():
    ahead = telemetry("d", 1, t=NOW + 301_000)
    behind = telemetry("d", 2, t=NOW - 86_400_000)  # an outbox replay: normal
    unsynced = protocol.Telemetry(header("d", 3, NOW, protocol.TimeSource.UNSYNCED),
                                  ahead.position, 0.0, 0.0, 50)
    flags = [json.loads(routed(m).records[0].value)["clock_suspect"]
             for m in (ahead, behind, unsynced)]
    assert flags == [True, False, True]
    assert routed(unsynced).time_trusted is False


@pytest.mark.parametrize(("payload", "topic", "reason", "key"), [
    (b"\xc1", "presacop/v1/drones/d1/telemetry", "malformed", b"d1"),
    (b"", "presacop/v1/drones/d1/telemetry", "truncated", b"d1"),
    (b"x" * 600, "presacop/v1/drones/d1/telemetry", "oversized", b"d1"),
    (None, "presacop/v1/drones/d1/unknown", "bad_topic", b"d1"),
    (None, "presacop/v1/drones/d1/telemetry/x", "bad_topic", b"d1"),
    (None, "elsewhere/d1/telemetry", "bad_topic", None),
    # The topic alone names the drone and the kind: a payload of another kind fails its fields.
    (None, "presacop/v1/drones/d2/violation", "missing_field", b"d2"),
    (None, "presacop/v1/drones/d1/status", "extra_field", b"d1"),
    (None, b"presacop/v1/drones/\xff/telemetry", "bad_topic", None),
])
def test_dead_letters_keep_reason_topic_and_bytes(payload, topic, reason, key):
    data = protocol.encode(telemetry("d1", 1)) if payload is None else payload
    r = route(topic, data, receipt("x"), SETTINGS)
    assert r.reason == reason and r.message_id is None
    (rec,) = r.records
    assert rec.topic == TOPICS.deadletter and rec.key == key
    v = json.loads(rec.value)
    assert v["reason"] == reason and v["detail"]
    assert base64.b64decode(v["payload_b64"]) == data[:64]
    assert v["payload_size"] == len(data) and v["payload_truncated"] == (len(data) > 64)
    assert dict(rec.headers)["reason"] == reason.encode()


def test_a_bug_while_routing_becomes_an_internal_error_dead_letter(monkeypatch):
    def broken(*_args, **_kwargs):
        raise KeyError("boom")

    monkeypatch.setattr(records.protocol, "to_json", broken)
    r = routed(telemetry("d1", 1))
    assert r.reason == "internal_error"
    assert json.loads(r.records[0].value)["detail"] == "KeyError: 'boom'"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=700), st.text(max_size=80))
def test_route_never_raises(payload, topic):
    r = route(topic, payload, receipt(topic), SETTINGS)
    assert r.records


def test_resolved_alert_is_the_review_steps_record():
    alert = json.loads(routed(violation("d1", 7, code=None)).records[1].value)
    done = records.resolved_alert(alert, 21, officer="PO-1234", now_ms=NOW + 60_000)
    assert done["alert_id"] == alert["alert_id"] and done["state"] == "resolved"
    assert done["code"] == 21 and done["code_set_by"] == "officer"
    with pytest.raises(ValueError, match="not open"):
        records.resolved_alert(done, 21, officer="x", now_ms=NOW)
    with pytest.raises(ValueError, match="unknown violation code"):
        records.resolved_alert(alert, 999_999, officer="x", now_ms=NOW)


# -- systemd and logs ---------------------------------------------------------------------------


def test_notifier_sends_datagrams_to_notify_socket(tmp_path: Path):
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(2)
        n = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "10000000"})
        assert n.enabled and n.watchdog_interval_s == 5.0
        assert n.ready("up")
        assert server.recv(100) == b"READY=1\nSTATUS=up"
        assert n.watchdog()
        assert server.recv(100) == b"WATCHDOG=1"
        assert n.stopping()
        assert server.recv(100) == b"STOPPING=1"


def test_notifier_is_a_no_op_outside_systemd():
    n = Notifier({})
    assert not n.enabled and n.watchdog_interval_s is None
    assert n.ready() is False


def test_kafka_pythons_log_is_quiet_unless_the_operator_asks_for_debug():
    """kafka-python logs every failed reconnect at WARNING/ERROR: silenced (our own logs say
    Kafka is down), except at DEBUG, when the library's own view helps diagnose."""
    import io
    import logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logs.setup("text", "INFO", io.StringIO())
        assert logging.getLogger("kafka").level == logging.CRITICAL
        logs.setup("text", "DEBUG", io.StringIO())
        assert logging.getLogger("kafka").level == logging.DEBUG
    finally:
        logging.getLogger("kafka").setLevel(logging.NOTSET)
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
