"""The retry policy over a `Sink`: each submitted record ends in exactly one outcome.

One owned thread, `gateway-kafka`, opens the sink's producer (retrying while Kafka is
unreachable), hands it new records and retries that are due, and watches for a producer that
stopped answering. The sink's reports (any thread) only settle the attempt and report or
re-queue. Per record, through its callback, exactly once:

  - `None`: Kafka acknowledged it (acks=all, idempotent producer);
  - a `SinkError` that is not `retriable` (errors.py): `RecordRejected` and other refusals of
    the record are dead-lettered by the service; `KafkaRefused` stops it.

A retriable failure (broker down, timeouts, leader moves) is sent again after a jittered,
doubling delay (`retry_min_s`..`retry_max_s`), forever, so memory is bounded only by what the
caller submits (the gateway's in-flight limit). `ProducerFailed` also rebuilds the producer.

Stalls: a record whose send has had no outcome for `stall_s` (long after the producer's own
delivery timeout) means a wedged producer (seen with kafka-python 3.0 after a broker restart).
Every record in it is sent again through a new producer; late reports of the old attempts are
ignored (each attempt has its own token), so each record still ends exactly once.

Ambiguous attempts: a record handed to the producer whose attempt then failed without proof
that it never reached Kafka (a retriable `SinkError` that is not `unsent`: timeouts, expired
requests, a failed or stalled producer) may have been written. Before it is sent again, thread
`gateway-kafka-check` asks `Sink.landed` (landed.py: reads the topic back from the earliest such
attempt on), for all such records waiting at that moment at once, due or not: found -> reported
as acknowledged, not sent again; not found (or the sink cannot tell) -> sent again; Kafka
unreadable -> checked again after the retry delay.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from common.backoff import Backoff, delay

from .errors import KafkaRefused, ProducerFailed, SinkError
from .records import OutRecord
from .sink import Sink
from .written import KINDS as WRITTEN_KINDS
from .written import Written, identity

log = logging.getLogger("gateway.kafka")

Callback = Callable[["SinkError | None"], None]


@dataclass(order=True)
class _Item:
    due: float
    order: int
    record: OutRecord = field(compare=False)
    callback: Callback = field(compare=False)
    attempts: int = field(default=0, compare=False)
    token: int = field(default=0, compare=False)  # which send attempt a report belongs to
    sent_at: float = field(default=0.0, compare=False)
    producer: int = field(default=0, compare=False)  # the producer generation it was sent with
    sent_ms: int = field(default=0, compare=False)  # wall time of the last attempt
    since_ms: int = field(default=0, compare=False)  # of the first attempt that may have landed
    unsure: bool = field(default=False, compare=False)  # check Kafka before sending it again


class RetryingProducer:
    """Produces records until each has an outcome. `submit_many` is thread-safe, never blocks."""

    def __init__(self, sink: Sink, *, retry_min_s: float = 0.2, retry_max_s: float = 10.0,
                 stall_s: float = 75.0, on_state: Callable[[bool], None] | None = None,
                 on_retry: Callable[[], None] | None = None) -> None:
        self._sink = sink
        self._retry_min_s = retry_min_s
        self._retry_max_s = retry_max_s
        self._stall_s = stall_s
        self._on_state = on_state or (lambda up: None)
        self._on_retry = on_retry or (lambda: None)
        lock = threading.Lock()
        self._cond = threading.Condition(lock)
        self._check_cond = threading.Condition(lock)  # wakes the check thread
        self._to_check: list[_Item] = []  # unsure records for the check thread
        self._checking = 0  # records in a check now
        self._heap: list[_Item] = []  # retries, by due time
        # New records, oldest first: a deque, not the heap (a heap push/pop compares dataclasses
        # in Python: several microseconds per record on the hot path).
        self._fresh: collections.deque[_Item] = collections.deque()
        self._order = itertools.count()
        self._outstanding = 0  # submitted and not yet reported through a callback
        self._in_producer: dict[int, _Item] = {}  # send token -> item handed to the producer
        self._tokens = itertools.count(1)
        self._last_retry_log = 0.0
        self._next_stall_check = 0.0
        self._waiting = False  # the sender thread sleeps in _take_due
        self._open = False
        self._generation = 0  # of the producer; bumped when it is dropped
        self._rebuild = False  # a ProducerFailed report: rebuild from the sender loop
        self._stopping = False
        self._up = False
        self.refused: KafkaRefused | None = None  # the first refusal seen (the gateway stops)
        self.written = Written()  # alert/evidence identities already in Kafka (the seed's)
        self.skipped_written = 0  # records reported produced because they were in `written`
        self._stop_event = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-kafka", daemon=True)
        self._checker = threading.Thread(target=self._run_checks, name="gateway-kafka-check",
                                         daemon=True)

    # -- public API -------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return self._up

    @property
    def outstanding(self) -> int:
        """Records submitted and not yet reported."""
        return self._outstanding

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def waiting(self) -> int:
        """Records waiting to be (re)sent: not handed to the producer yet."""
        return len(self._heap) + len(self._fresh) + self.checking

    @property
    def checking(self) -> int:
        """Records waiting for, or in, a read of Kafka before being sent again."""
        return len(self._to_check) + self._checking

    def start(self) -> None:
        self._thread.start()
        self._checker.start()

    def submit(self, record: OutRecord, callback: Callback) -> None:
        """Produce `record`; `callback` runs once, on another thread, with the outcome."""
        self.submit_many([(record, callback)])

    def submit_many(self, batch: list[tuple[OutRecord, Callback]]) -> None:
        """`submit` each (record, callback) in order, with one lock and at most one wake-up."""
        with self._cond:
            self._outstanding += len(batch)
            self._fresh.extend([_Item(0.0, 0, record, callback) for record, callback in batch])
            if self._waiting:  # wake the sender only when it sleeps: a notify per record is costly
                self._cond.notify()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every submitted record has been reported. True if it happened in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._outstanding:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Stop producing (outstanding records are abandoned: their callbacks never run)."""
        with self._cond:
            self._stopping = True
            self._stop_event.set()
            self._cond.notify_all()
            self._check_cond.notify_all()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout)
            # A read in progress ends within its own timeout; its result is then dropped.
            self._checker.join(min(timeout, 1.0))
        if self._thread.is_alive():
            log.error("kafka sender thread did not stop within %.0f s", timeout)
        self._sink.close(timeout)

    def set_up(self, up: bool) -> None:
        """Record whether Kafka answers (from sends here, and from the health probe)."""
        if up != self._up:
            self._up = up
            log.info("kafka %s", "up" if up else "down")
        self._on_state(up)

    # -- the sender thread -----------------------------------------------------------------

    def _run(self) -> None:
        backoff = Backoff(self._retry_min_s, self._retry_max_s)
        while not self._stopping:
            try:
                self._run_once(backoff)
            except Exception:  # keep producing whatever the client library throws at us
                log.exception("kafka sender loop failed; rebuilding the producer")
                self._drop_producer()
                self._stop_event.wait(backoff.next())

    def _run_once(self, backoff: Backoff) -> None:
        if not self._open:
            if not self._connect():
                self._stop_event.wait(backoff.next())
                return
            backoff.reset()
        if self._check_stalled():
            return
        if self._sink.reports_in_poll:
            self._poll()
        if self._rebuild:
            self._rebuild = False
            log.error("kafka producer failed; rebuilding it")
            self._drop_producer()
            return
        due = self._take_due()
        if due:
            self._send(due)

    def _connect(self) -> bool:
        try:
            self._sink.open()
        except SinkError as exc:
            if isinstance(exc, KafkaRefused):
                self.refused = self.refused or exc
                log.critical("kafka refuses the gateway: %s", exc)
            else:
                log.warning("kafka not reachable: %s", exc)
            self.set_up(False)
            return False
        self._open = True
        self.set_up(True)
        log.info("kafka producer ready")
        return True

    def _poll(self) -> None:
        """Serve the sink's reports. With records in the producer and none to send, wait in
        poll (in C, without the GIL, for confluent-kafka) rather than on our condition."""
        with self._cond:
            idle = bool(self._in_producer) and not self._fresh and \
                not (self._heap and self._heap[0].due <= time.monotonic())
        self._sink.poll(0.002 if idle else 0)

    def _check_stalled(self) -> bool:
        """Requeue everything and rebuild the producer if a send has had no outcome for
        `stall_s` (see the module docstring)."""
        now = time.monotonic()
        if now < self._next_stall_check:
            return False
        self._next_stall_check = now + min(1.0, self._stall_s)  # a scan is O(records in it)
        with self._cond:
            stalled = [i for i in self._in_producer.values() if now - i.sent_at > self._stall_s]
            if not stalled:
                return False
            items = list(self._in_producer.values())
            self._in_producer.clear()
            for item in items:
                item.token = 0
                item.due = now
                self._mark_unsure(item)
                heapq.heappush(self._heap, item)
        log.error("kafka producer wedged: no outcome for %d record(s) after %.0f s; rebuilding it",
                  len(stalled), self._stall_s, extra={"requeued": len(items)})
        self._drop_producer()
        return True

    def _take_due(self, limit: int = 500) -> list[_Item]:
        """The records due now (oldest first), or [] after a short wait (so `_run` can check
        for stalls)."""
        with self._cond:
            now = time.monotonic()
            if self._sink.reports_in_poll and self._in_producer:
                pass  # reports are due: do not sleep here, `_poll` waits instead
            elif not self._fresh and (not self._heap or self._heap[0].due > now):
                wait = self._heap[0].due - now if self._heap else 0.5
                self._waiting = True
                self._cond.wait(min(wait, 0.5))
                self._waiting = False
                now = time.monotonic()
            due: list[_Item] = []
            while self._heap and self._heap[0].due <= now and len(due) < limit \
                    and not self._stopping:
                item = heapq.heappop(self._heap)
                if item.unsure:
                    self._to_check.append(item)  # the check thread decides
                    self._check_cond.notify()
                else:
                    due.append(item)
            fresh = self._fresh
            while fresh and len(due) < limit and not self._stopping:
                due.append(fresh.popleft())
        return due

    def _send(self, items: list[_Item]) -> None:
        """Register the attempts under one lock (not one per record), then hand them over, so
        a report always finds its attempt. An alert or evidence record the seed read back from
        Kafka (`written`) is reported produced instead (gateway/written.py)."""
        if len(self.written) and any(item.record.kind in WRITTEN_KINDS for item in items):
            items = self._skip_written(items)
        now, generation, tokens = time.monotonic(), self._generation, self._tokens
        now_ms = int(time.time() * 1000)
        batch = []
        with self._cond:
            for item in items:
                token = item.token = next(tokens)
                item.sent_at = now
                item.sent_ms = now_ms
                item.producer = generation
                self._in_producer[token] = item
                batch.append((token, item.record))
        self._sink.send(batch, self._outcome)

    def _skip_written(self, items: list[_Item]) -> list[_Item]:
        send = []
        for item in items:
            r = item.record
            if r.kind in WRITTEN_KINDS and identity(r.kind, r.key, r.value) in self.written:
                self.skipped_written += 1
                log.info("%s record already in kafka (read back by the seed): not written again",
                         r.kind, extra={"topic": r.topic})
                self._report(item, None)
            else:
                send.append(item)
        return send

    def _outcome(self, token: int, error: SinkError | None) -> None:
        """A report from the sink (any thread)."""
        with self._cond:
            item = self._in_producer.pop(token, None)
        if item is None:
            return  # an abandoned attempt (stall): the record was sent again
        if error is None:
            if not self._up:  # not per record: the state callback sets a gauge
                self.set_up(True)
            self._report(item, None)
        elif not error.retriable:
            if isinstance(error, KafkaRefused):
                self.refused = self.refused or error
            self._report(item, error)
        else:
            if isinstance(error, ProducerFailed):
                if item.producer == self._generation:  # not a dropped producer's last words
                    self._rebuild = True
            else:
                self.set_up(False)
            if not error.unsent:
                self._mark_unsure(item)
            self._retry(item, error)

    @staticmethod
    def _mark_unsure(item: _Item) -> None:
        """Its last attempt may have been written: check before sending it again, from the
        first such attempt on (a late write of that one is found too)."""
        item.unsure = True
        item.since_ms = min(item.since_ms or item.sent_ms, item.sent_ms)

    # -- the check thread ------------------------------------------------------------------

    def _run_checks(self) -> None:
        while True:
            with self._cond:
                while not self._to_check and not self._stopping:
                    self._check_cond.wait(0.5)
                if self._stopping:
                    return
                items, self._to_check = self._to_check, []
                # The unsure records still waiting for their retry delay go along: one read
                # for all of them (after an outage, their delays differ).
                if any(item.unsure for item in self._heap):
                    items += [item for item in self._heap if item.unsure]
                    self._heap = [item for item in self._heap if not item.unsure]
                    heapq.heapify(self._heap)
                self._checking = len(items)
            try:
                self._check(items)
            finally:
                with self._cond:
                    self._checking = 0

    def _check(self, items: list[_Item]) -> None:
        try:
            found = self._sink.landed([(item.record, item.since_ms) for item in items])
        except Exception as exc:  # Kafka unreadable (SinkError) or a surprise: check later
            log.warning("cannot check whether %d record(s) reached Kafka, checking again "
                        "later: %s", len(items), exc)
            self._later(items, resend=False)
            return
        if self._stopping:
            return  # abandoned, as every outstanding record is at stop
        found = found or set()
        log.info("%d record(s) whose produce may have succeeded: %d found in Kafka (not sent "
                 "again), %d sent again", len(items), len(found), len(items) - len(found))
        for n, item in enumerate(items):
            if n in found:
                self._report(item, None)
        self._later([item for n, item in enumerate(items) if n not in found], resend=True)

    def _later(self, items: list[_Item], *, resend: bool) -> None:
        """Back to the sender: now and unchecked if `resend`, else checked after a delay."""
        now = time.monotonic()
        with self._cond:
            for item in items:
                if resend:
                    item.unsure, item.due = False, now
                else:
                    item.attempts += 1
                    item.due = now + delay(item.attempts, self._retry_min_s, self._retry_max_s)
                item.order = next(self._order)
                heapq.heappush(self._heap, item)
            self._cond.notify()

    def _retry(self, item: _Item, error: SinkError) -> None:
        item.attempts += 1
        wait = delay(item.attempts, self._retry_min_s, self._retry_max_s)
        now = time.monotonic()
        if now - self._last_retry_log >= 5.0:  # one line per 5 s, not one per record
            self._last_retry_log = now
            log.warning("produce failed, retrying: %s", error,
                        extra={"topic": item.record.topic, "attempts": item.attempts,
                               "outstanding": self._outstanding})
        self._on_retry()
        with self._cond:
            item.due = now + wait
            item.order = next(self._order)
            heapq.heappush(self._heap, item)
            self._cond.notify()

    def _report(self, item: _Item, outcome: SinkError | None) -> None:
        try:
            item.callback(outcome)
        except Exception:  # a callback bug must not kill the library's I/O thread
            log.exception("record callback failed")
        with self._cond:
            self._outstanding -= 1
            if not self._outstanding:  # only `wait_idle` waits for this: no wake-up per record
                self._cond.notify_all()

    def _drop_producer(self) -> None:
        self._generation += 1
        self._open = False
        self._sink.close(1.0)
