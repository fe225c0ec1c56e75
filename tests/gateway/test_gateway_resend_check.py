"""The check before re-sending an ambiguous record, without a broker: the retry policy over a
MemorySink whose `log` is the topic (docs/gateway.md, "Duplicates"), the adapters' `unsent`
verdicts, and the reader's matching of the records it reads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from prometheus_client.exposition import generate_latest

from common import kafka
from common.config import ConfigError
from gateway import confluent, factory, kafka_python, landed
from gateway.config import load_config
from gateway.errors import ProducerFailed, SinkError
from gateway.records import OutRecord
from gateway.retrying import RetryingProducer
from gateway.sink import Wanted
from gateway.testing import HOLD, MemorySink, Written
from tests.support import wait_until

WAIT = 10.0
TIMEOUT = SinkError("KafkaTimeoutError: batch expired", retriable=True)


def record(n: int) -> OutRecord:
    return OutRecord("t", b"d1", b'{"seq":%d}' % n, (("message-id", b"d1:%d" % n),), "telemetry")


@pytest.fixture
def rp_sink() -> Iterator[tuple[RetryingProducer, MemorySink]]:
    sink = MemorySink()
    rp = RetryingProducer(sink, retry_min_s=0.01, retry_max_s=0.05, stall_s=0.3)
    rp.start()
    yield rp, sink
    rp.stop()


def run(rp: RetryingProducer, records: list[OutRecord]) -> list[SinkError | None]:
    outcomes: list[SinkError | None] = []
    rp.submit_many([(r, outcomes.append) for r in records])
    return outcomes


def first_attempt(outcome: object) -> object:
    """A MemorySink outcome for the first attempt of each record; later ones are acknowledged."""
    seen: set[OutRecord] = set()

    def decide(r: OutRecord) -> object:
        if r in seen:
            return None
        seen.add(r)
        return outcome

    return decide


def test_a_timed_out_attempt_that_landed_is_found_and_not_sent_again(rp_sink):
    rp, sink = rp_sink
    sink.outcome = first_attempt(Written(TIMEOUT))
    outcomes = run(rp, [record(1), record(2)])
    wait_until(lambda: outcomes == [None, None], WAIT, "both records reported acknowledged")
    assert sink.log == [record(1), record(2)] and len(sink.sent) == 2
    assert sum(map(len, sink.checked)) == 2


def test_a_timed_out_attempt_that_did_not_land_is_sent_again_once(rp_sink):
    rp, sink = rp_sink
    sink.outcome = first_attempt(TIMEOUT)
    outcomes = run(rp, [record(1)])
    wait_until(lambda: outcomes == [None], WAIT, "the record acknowledged")
    assert sink.log == [record(1)] and len(sink.sent) == 2 and sink.checked == [[record(1)]]


def test_an_attempt_proven_unsent_is_sent_again_without_a_check(rp_sink):
    rp, sink = rp_sink
    sink.outcome = first_attempt(ProducerFailed("producer rebuilt", unsent=True))
    outcomes = run(rp, [record(1)])
    wait_until(lambda: outcomes == [None], WAIT, "the record acknowledged")
    assert sink.log == [record(1)] and len(sink.sent) == 2 and sink.checked == []


def test_while_kafka_cannot_be_read_the_record_waits_and_is_not_sent_again(rp_sink):
    rp, sink = rp_sink
    sink.outcome = first_attempt(Written(TIMEOUT))
    sink.landed_error = SinkError("kafka unreachable", retriable=True)
    outcomes = run(rp, [record(1)])
    wait_until(lambda: len(sink.checked) >= 3, WAIT, "three failed checks")
    assert outcomes == [] and len(sink.sent) == 1 and rp.outstanding == 1
    sink.landed_error = None
    wait_until(lambda: outcomes == [None], WAIT, "the record found once Kafka reads")
    assert sink.log == [record(1)] and len(sink.sent) == 1


def test_a_stalled_producer_whose_records_landed_sends_none_again(rp_sink):
    rp, sink = rp_sink

    def written_then_silent(r: OutRecord) -> object:  # the answer never comes: a wedge
        if sink.closes:
            return None
        with sink._lock:
            sink.log.append(r)
        return HOLD

    sink.outcome = written_then_silent
    outcomes = run(rp, [record(1), record(2), record(3)])
    wait_until(lambda: outcomes == [None] * 3, WAIT, "3 records found after the rebuild")
    assert sink.closes >= 1 and len(sink.sent) == 3 and len(sink.log) == 3


def test_records_failing_during_a_check_go_together_in_the_next_one():
    """Many ambiguous records after one outage: one read for all that wait, not one each."""
    sink = MemorySink(first_attempt(TIMEOUT))
    entered, go = threading.Event(), threading.Event()
    plain_landed = sink.landed

    def slow_landed(wanted: Wanted) -> set[int] | None:
        entered.set()
        go.wait(WAIT)
        return plain_landed(wanted)

    sink.landed = slow_landed  # type: ignore[method-assign]
    rp = RetryingProducer(sink, retry_min_s=0.01, retry_max_s=0.02)
    rp.start()
    try:
        outcomes = run(rp, [record(0)])
        entered.wait(WAIT)
        later = run(rp, [record(n) for n in range(1, 50)])
        wait_until(lambda: rp.checking == 50, WAIT, "49 records queued behind the running check")
        go.set()
        wait_until(lambda: outcomes + later == [None] * 50, WAIT, "50 records acknowledged")
        assert [len(c) for c in sink.checked] == [1, 49] and len(sink.log) == 50
    finally:
        go.set()
        rp.stop()


def test_each_copy_in_kafka_accounts_for_one_identical_record():
    sink = MemorySink()
    sink.log.append(record(1))
    assert sink.landed([(record(1), 0), (record(1), 0), (record(2), 0)]) == {0}


def test_the_reader_matches_key_value_and_headers_one_copy_per_record():
    wanted = [record(1), record(2), record(1)]
    index: landed._Index = {}
    for n, r in enumerate(wanted):
        index.setdefault(r.value, []).append((n, r.key, r.headers))

    def read(r: OutRecord, **change: object) -> SimpleNamespace:
        fields = {"key": r.key, "value": r.value, "headers": [list(h) for h in r.headers]}
        return SimpleNamespace(**{**fields, **change})

    found: set[int] = set()
    landed._match(index, iter([read(record(2), key=b"other"), read(record(2), headers=[]),
                               read(record(1)), read(record(3))]), found)
    assert found == {0}  # record 2 only with another key or without its headers: not it


def test_send_time_failures_are_unsent_delivery_failures_are_not():
    errors = kafka.import_kafka().errors
    expired = kafka_python.translate(errors.KafkaTimeoutError("batch expired"))
    assert expired.retriable and not expired.unsent
    replicas = kafka_python.translate(errors.NotEnoughReplicasAfterAppendError())
    assert replicas.retriable and not replicas.unsent

    class Refusing:
        def send(self, *args: object, **kwargs: object) -> None:
            raise errors.KafkaTimeoutError("no metadata within max_block_ms")

    sink = kafka_python.KafkaPythonSink.__new__(kafka_python.KafkaPythonSink)
    sink._producer, sink._timeout_error = Refusing(), errors.KafkaTimeoutError
    reports: list[tuple[int, SinkError | None]] = []
    sink.send([(1, record(1))], lambda token, outcome: reports.append((token, outcome)))
    assert reports[0][1] is not None and reports[0][1].unsent


@pytest.mark.parametrize(("code", "unsent"), [("_MSG_TIMED_OUT", False),
                                               ("_PURGE_INFLIGHT", False),
                                               ("REQUEST_TIMED_OUT", False),
                                               ("_PURGE_QUEUE", True)])
def test_confluent_only_a_record_purged_from_the_queue_is_unsent(code, unsent):
    from confluent_kafka import KafkaError

    error = confluent.translate(KafkaError(getattr(KafkaError, code)))
    assert error.retriable and error.unsent is unsent


@pytest.mark.parametrize(("line", "key"), [("resend_check_max_records = -1",
                                             "limits.resend_check_max_records"),
                                            ("resend_check_timeout_s = 0",
                                             "limits.resend_check_timeout_s")])
def test_the_read_back_settings_are_checked(tmp_path, line, key):
    path = tmp_path / "gateway.toml"
    path.write_text(f"[limits]\n{line}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert err.value.key == key


def test_the_built_gateway_reads_back_and_counts_unless_turned_off(tmp_path):
    def built(limits: str) -> str:
        path = tmp_path / "gateway.toml"
        path.write_text(f'[limits]\n{limits}\n[metrics]\naddress = ""\n'
                        f'[evidence]\nstaging_dir = "{tmp_path / "staging"}"\n'
                        f'[evidence.store]\npath = "{tmp_path / "store"}"\n')
        cfg = load_config(path, env={})
        assert (factory.make_landed(cfg) is None) == ("= 0" in limits)
        return generate_latest(factory.build(cfg).metrics.registry).decode()

    assert 'presacop_gateway_ambiguous_records_total{outcome="found"} 0.0' in built("")
    assert "ambiguous_records" not in built("resend_check_max_records = 0")
