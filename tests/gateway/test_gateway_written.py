"""Alert and evidence records the seed read back from Kafka are not written again
(gateway/written.py): the pure parts here (identities, the bound, the producer's skip); the real
half-written violation through Mosquitto + Kafka in test_gateway_seed.py."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from gateway.records import OutRecord
from gateway.retrying import RetryingProducer
from gateway.testing import MemorySink
from gateway.written import Written, identity
from tests.support import wait_until


def alert(aid: str, state: str = "open") -> OutRecord:
    value = json.dumps({"alert_id": aid, "state": state, "message_id": "d1:7"}).encode()
    return OutRecord("alerts", aid.encode(), value, (("message-id", b"d1:7"),), "alert")


def evidence(ident: str, drone: str = "d1") -> OutRecord:
    value = json.dumps({"drone_id": drone, "evidence_id": ident, "stored_ms": 1}).encode()
    return OutRecord("evidence", drone.encode(), value, (), "evidence")


def test_identities() -> None:
    assert identity("alert", b"a-1", alert("a-1").value) == ("alert", "a-1", "open")
    assert identity("alert", b"a-1", alert("a-1", "resolved").value) == \
        ("alert", "a-1", "resolved")
    assert identity("evidence", b"d1", evidence("00ff").value) == ("evidence", "d1", "00ff")
    assert identity("telemetry", b"d1", b"{}") is None
    assert identity("alert", b"a-1", b"not json") is None
    assert identity("evidence", b"d1", b'{"drone_id": "d1"}') is None
    assert identity("alert", b"a-1", b"[1]") is None


def test_written_keeps_the_newest_within_its_cap() -> None:
    w = Written(cap=2)
    w.add_all([("alert", "a", "open"), ("alert", "b", "open")])
    w.add_all([("alert", "a", "open"), ("alert", "c", "open")])  # a is refreshed, b goes
    assert ("alert", "a", "open") in w and ("alert", "c", "open") in w
    assert ("alert", "b", "open") not in w and len(w) == 2


@pytest.fixture
def rp_sink() -> Iterator[tuple[RetryingProducer, MemorySink]]:
    sink = MemorySink()
    rp = RetryingProducer(sink, retry_min_s=0.01, retry_max_s=0.05)
    rp.start()
    yield rp, sink
    rp.stop()


def test_a_record_already_written_is_reported_produced_and_not_sent(rp_sink) -> None:
    rp, sink = rp_sink
    rp.written.add_all([("alert", "a-1", "open"), ("evidence", "d1", "00ff")])
    records = [alert("a-1"), alert("a-1", "resolved"), alert("a-2"), evidence("00ff"),
               evidence("00ff", drone="d2"), evidence("0100")]
    outcomes: list[object] = []
    rp.submit_many([(r, outcomes.append) for r in records])
    wait_until(lambda: len(outcomes) == len(records), 10, "every record reported")
    assert outcomes == [None] * len(records)
    assert sink.log == [alert("a-1", "resolved"), alert("a-2"), evidence("00ff", drone="d2"),
                        evidence("0100")]
    assert rp.skipped_written == 2 and rp.outstanding == 0
