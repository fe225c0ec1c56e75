"""The Kafka side's interface: a `Sink` is one producer client under the gateway's retry policy.

One adapter per client library: `kafka_python.KafkaPythonSink` and `confluent.ConfluentSink`;
an in-memory `testing.MemorySink` for the logic tests. Above it, `retrying.RetryingProducer`
owns the policy (retry by `SinkError.retriable`, rebuild a failed or stalled producer); the
factory picks the adapter from `kafka.backend`.

Threads: `open`, `send`, `poll` and `close` are called by one thread (`gateway-kafka`), `probe`
and `close_probe` by another (`gateway-kafka-health`), `landed` by a third
(`gateway-kafka-check`, with its own consumer). A `Report` may run on any thread:
inside `send` (a failure known at once), on the library's I/O thread (kafka-python) or inside
`poll` (confluent-kafka).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from common import kafka

from .config import KafkaConfig
from .errors import SinkError
from .records import OutRecord

# report(token, outcome): outcome None = acknowledged by Kafka (acks=all), else the failure.
Report = Callable[[int, "SinkError | None"], None]
# (record, since_ms): a record whose earlier attempt, made at or after wall time since_ms, may
# have been written.
Wanted = Sequence[tuple[OutRecord, int]]


class Landed(Protocol):
    """Reads Kafka back for records (landed.LandedReader)."""

    def find(self, wanted: Wanted) -> set[int] | None:
        """Indexes of `wanted` that Kafka has; None: cannot tell. Raises `SinkError`."""


class Sink(Protocol):
    """One Kafka producer. Errors it reports or raises are `SinkError`s (errors.py)."""

    @property
    def reports_in_poll(self) -> bool:
        """True when outcomes arrive only inside `poll` (then the sender waits in `poll`)."""

    def open(self) -> None:
        """Build the producer (creating missing topics first, if configured). Raises
        `SinkError` (retriable while Kafka is unreachable, `KafkaRefused` if it refuses us)."""

    def send(self, batch: Sequence[tuple[int, OutRecord]], report: Report) -> None:
        """Hand each (token, record) to the producer. `report(token, outcome)` follows exactly
        once per token, possibly before `send` returns. Raises nothing."""

    def poll(self, timeout: float) -> None:
        """Serve outcome reports, waiting up to `timeout` s for one (a no-op if not needed)."""

    def close(self, timeout: float) -> None:
        """Drop the producer; reports of records still in it may follow or not."""

    def probe(self) -> None:
        """Check Kafka answers (independently of the producer). Raises `SinkError` if not."""

    def landed(self, wanted: Wanted) -> set[int] | None:
        """Which of `wanted` Kafka already has (indexes into it), so that they are not sent a
        second time; None when this sink cannot tell (they are sent again unchecked). Raises
        `SinkError` (retriable) when Kafka cannot be read now."""

    def close_probe(self) -> None:
        """Release what `probe` holds."""


class ClientSink:
    """What the client adapters share: the producer slot, its closing, and the admin side
    (`topics`: `kafka_admin.TopicCreator`, run before each producer; `admin`:
    `kafka_admin.AdminProbe`, behind `probe`; `landed`: a `Landed`, or None to send ambiguous
    records again unchecked)."""

    def __init__(self, cfg: KafkaConfig, client_id: str, topics: Any, admin: Any,
                 landed: Landed | None = None) -> None:
        self._cfg = cfg
        self._client_id = client_id
        self._topics = topics
        self._admin = admin
        self._landed = landed
        self._producer: Any = None

    def close(self, timeout: float) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            kafka.close_quietly(producer, timeout)

    def probe(self) -> None:
        self._admin.probe()

    def landed(self, wanted: Wanted) -> set[int] | None:
        return None if self._landed is None else self._landed.find(wanted)

    def close_probe(self) -> None:
        self._admin.close()
