"""The gateway's errors. Each carries `retriable`: would the same action succeed if tried again?

    GatewayError                 root; `retriable` False unless a subclass or the caller says so
     +-- SinkError               one record's produce attempt failed; `retriable` is the client
         |                       library's own verdict (kafka-python `.retriable`, confluent-kafka
         |                       `retriable()`, see kafka_python.py / confluent.py): retried with
         |                       jittered backoff, forever (a Kafka outage); when not retriable,
         |                       the message is dead-lettered as for RecordRejected. `unsent`:
         |                       True only when the library proves the record never left the
         |                       gateway; else the attempt may have been written, and Kafka is
         |                       read back before sending it again (landed.py)
         +-- ProducerFailed      the producer itself broke (fatal librdkafka error, idempotence
         |                       state lost, closed): retriable, once a new producer is built
         +-- RecordRejected      Kafka refuses this record for good (too large, bad timestamp,
         |                       corrupt): not retriable; the gateway dead-letters the message
         +-- KafkaRefused        Kafka refuses the gateway, not the record (topic or cluster
                                 authorization, SASL authentication): not retriable, and a dead
                                 letter would be refused or misroute every message; the gateway
                                 stops with a clear log and exit code 3, leaving the messages
                                 unacknowledged at the broker (docs/gateway.md, "When Kafka
                                 refuses the gateway")

Library exceptions are translated at the boundary (the client adapters), with the original as
`__cause__` where there is one. None of these is raised out of the gateway's threads: outcomes
are passed to callbacks.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root of the gateway's errors."""

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class SinkError(GatewayError):
    """A produce attempt failed; `retriable` says whether to send the record again, `unsent`
    whether the record certainly never reached Kafka (see the tree above)."""

    unsent: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None,
                 unsent: bool | None = None) -> None:
        super().__init__(message, retriable=retriable)
        if unsent is not None:
            self.unsent = unsent


class ProducerFailed(SinkError):
    """The producer client is broken: build a new one, then send again."""

    retriable = True


class RecordRejected(SinkError):
    """Kafka will never accept this record (the record itself is the problem)."""

    retriable = False


class KafkaRefused(SinkError):
    """Kafka denies the gateway this topic or the cluster (ACL, credentials)."""

    retriable = False


__all__ = ["GatewayError", "KafkaRefused", "ProducerFailed", "RecordRejected", "SinkError"]
