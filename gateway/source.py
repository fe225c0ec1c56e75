"""The MQTT side's interface: a `Source` delivers batches of messages to an `Intake` (the service)
and takes acknowledgements back once the messages are durable in Kafka.

One adapter per client library: `mqtt_source.PahoSource` (paho-mqtt); an in-memory
`testing.MemorySource` for the logic tests. The factory builds the real one from the config.

Threads: the source owns one thread; `Intake.deliver` and `Intake.room` run on it. `ack` is
called from any thread (the Kafka side's, when a record is acknowledged) and must not block.
Batches, not single messages: one `deliver` per pass of the source's loop, so the service takes
its lock and wakes the Kafka side once per pass rather than once per message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .frozen import fast_init


@fast_init
@dataclass(frozen=True)
class Delivery:
    """One PUBLISH from the broker. `topic` is bytes when it is not valid UTF-8. `mid` and
    `generation` (which connection it came on) are what the source needs to acknowledge it."""

    topic: str | bytes
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    mid: int
    generation: int


@dataclass
class SourceCounts:
    """Event counts kept by the source (plain ints on its own thread), read at metrics scrapes."""

    connects: int = 0  # connections that ended subscribed (or, retiring, unsubscribed)
    stale_acks: int = 0  # acks dropped because their connection was gone
    deferred: int = 0  # PUBLISHes read while full, left for redelivery


class Intake(Protocol):
    """What a source delivers to."""

    def deliver(self, batch: list[Delivery]) -> None:
        """Take one loop pass's deliveries, in arrival order. Raises nothing on bad input."""

    def room(self) -> int:
        """How many more messages may be taken now; at 0 the source stops reading."""

    def prepare(self) -> None:
        """Called on the source's thread before connecting, at start and after a connection
        that had been accepted was lost; blocks until the intake may take that session's
        redeliveries (the gateway seeds its dedupe window from Kafka: gateway.seed)."""


class Source(Protocol):
    """MQTT intake: `start(intake)`, `ack(delivery)` after Kafka has it, `stop()`."""

    counts: SourceCounts

    @property
    def subscription(self) -> str: ...

    @property
    def connected(self) -> bool:
        """Connected and subscribed."""

    @property
    def paused(self) -> bool:
        """Intake paused: the in-flight limit stopped reading."""

    @property
    def alive(self) -> bool:
        """Its thread is running (False after it died or stopped)."""

    @property
    def idle_s(self) -> float:
        """Seconds since the last delivery (or since connecting)."""

    def start(self, intake: Intake) -> None:
        """Start the thread; connection failures are retried in the background."""

    def ack(self, delivery: Delivery) -> None:
        """Acknowledge a delivery (thread-safe, non-blocking; QoS 0 needs none)."""

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish QoS 1 (thread-safe, non-blocking): evidence receipts to drones. Dropped when
        not connected: the drone asks again (gateway/evidence/intake.py)."""

    def stop(self, timeout: float = 10.0, *, end_session: bool = False) -> None:
        """Send the acks handed over so far, disconnect and join the thread. `end_session`
        (retiring) ends the broker session instead of keeping it."""
