"""In-memory `Source` and `Sink` (source.py, sink.py) for testing the gateway's logic without
brokers: the service, the ack path, dead letters, retries and stalls, deterministically.

    source, sink = MemorySource(), MemorySink()
    gw = Gateway(config, source=source, sink=sink); gw.start()
    source.push(delivery(...), ...)          # one loop pass, delivered on the caller's thread
    wait_until(lambda: source.acked, ...)     # acks arrive once the sink reported the records

`MemorySink.outcome(record)` decides each send: None (acknowledged: the record is appended to
`sink.log`, the "topic"), a `SinkError`, `Written(error)` (appended to `sink.log`, but the attempt
reports `error`: an answer lost after Kafka wrote it), or `HOLD` (left in the producer until
`release`). Delivery reports run on the calling thread, as a library's I/O thread would run them.
`landed` answers from `sink.log` as reading the topic back would (`landed_error`: Kafka unreadable).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import SinkError
from .records import OutRecord
from .sink import Report, Wanted
from .source import Delivery, Intake, SourceCounts

HOLD = object()  # MemorySink outcome: keep the record in the "producer", no report yet


@dataclass(frozen=True)
class Written:
    """MemorySink outcome: the record is written (in `log`), yet the attempt reports `error`."""

    error: SinkError


class MemorySource:
    """A `Source` the test drives: `push` hands a batch to the intake (as one loop pass)."""

    def __init__(self, subscription: str = "$share/test/presacop/v1/drones/+/+") -> None:
        self.counts = SourceCounts()
        self.subscription = subscription
        self.connected = False  # True once started; a test may set it
        self.paused = False
        self.acked: list[Delivery] = []
        self.published: list[tuple[str, bytes]] = []
        self.stopped_with: dict[str, bool] | None = None  # stop()'s end_session, once stopped
        self._alive = False
        self._intake: Intake | None = None
        self._last = time.monotonic()

    @property
    def alive(self) -> bool:
        return self._alive

    @property
    def idle_s(self) -> float:
        return time.monotonic() - self._last

    def start(self, intake: Intake) -> None:
        self._intake, self._alive, self.connected = intake, True, True

    def publish(self, topic: str, payload: bytes) -> None:
        self.published.append((topic, payload))

    def push(self, *deliveries: Delivery) -> None:
        """Deliver one batch now, on this thread (like the source thread's loop pass)."""
        assert self._intake is not None, "start() the gateway first"
        self._last = time.monotonic()
        self._intake.deliver(list(deliveries))

    def room(self) -> int:
        assert self._intake is not None
        return self._intake.room()

    def ack(self, delivery: Delivery) -> None:
        if delivery.qos > 0:
            self.acked.append(delivery)

    def die(self) -> None:
        """Simulate the source's thread dying."""
        self._alive = False

    def stop(self, timeout: float = 10.0, *, end_session: bool = False) -> None:
        self._alive = False
        self.stopped_with = {"end_session": end_session}


Outcome = Callable[[OutRecord], "SinkError | object | None"]


class MemorySink:
    """A `Sink` whose outcomes the test decides (see the module docstring)."""

    reports_in_poll = False

    def __init__(self, outcome: Outcome = lambda record: None) -> None:
        self.outcome = outcome
        self.log: list[OutRecord] = []  # acknowledged records, in order
        self.sent: list[OutRecord] = []  # every attempt
        self.opens = 0
        self.closes = 0
        self.open_error: SinkError | None = None  # raised by open() while set
        self.down = False  # probe() fails while set
        self.landed_error: SinkError | None = None  # raised by landed() while set
        self.checked: list[list[OutRecord]] = []  # what each landed() call was asked
        self._held: dict[int, tuple[OutRecord, Report]] = {}
        self._lock = threading.Lock()

    def open(self) -> None:
        if self.open_error is not None:
            raise self.open_error
        self.opens += 1

    def send(self, batch: Sequence[tuple[int, OutRecord]], report: Report) -> None:
        for token, record in batch:
            with self._lock:
                self.sent.append(record)
            result = self.outcome(record)
            if result is HOLD:
                with self._lock:
                    self._held[token] = (record, report)
            elif isinstance(result, Written):
                with self._lock:
                    self.log.append(record)
                report(token, result.error)
            else:
                self._settle(token, record, report, result)  # type: ignore[arg-type]

    def release(self, outcome: SinkError | None = None) -> int:
        """Report every held record with `outcome`; how many there were."""
        with self._lock:
            held, self._held = self._held, {}
        for token, (record, report) in held.items():
            self._settle(token, record, report, outcome)
        return len(held)

    @property
    def held(self) -> int:
        return len(self._held)

    def _settle(self, token: int, record: OutRecord, report: Report,
                outcome: SinkError | None) -> None:
        if outcome is None:
            with self._lock:
                self.log.append(record)
        report(token, outcome)

    def poll(self, timeout: float) -> None:
        pass

    def close(self, timeout: float) -> None:
        self.closes += 1

    def probe(self) -> None:
        if self.down:
            raise SinkError("kafka down (memory sink)", retriable=True)

    def close_probe(self) -> None:
        pass

    def landed(self, wanted: Wanted) -> set[int] | None:
        """The indexes of `wanted` in `log`, each copy there accounting for one."""
        with self._lock:
            self.checked.append([record for record, _ in wanted])
            if self.landed_error is not None:
                raise self.landed_error
            copies = list(self.log)
        found = set()
        for n, (record, _) in enumerate(wanted):
            if record in copies:
                copies.remove(record)
                found.add(n)
        return found
