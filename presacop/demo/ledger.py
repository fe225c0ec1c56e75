"""What the drones accepted (`Ledger`) and what this run's Kafka topics hold (`Tally`): the two
sides the summary compares. Pure: no I/O."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ROLES = ("telemetry", "violations", "alerts", "deadletter", "evidence")


@dataclass(frozen=True)
class Ledger:
    """What the agents accepted into their durable outboxes (the point from which they promise
    delivery). Violations by message id (the fleet records each one); telemetry as a count per
    drone (ids in Kafka come only from that drone's agent, one per seq, so equal counts mean
    equal sets)."""

    violations: frozenset[str]
    unqualified: frozenset[str]
    telemetry: Mapping[str, int]
    queued: int = 0  # messages still in the outboxes after the drain
    evidence: frozenset[str] = frozenset()  # evidence ids the accepted violations name
    uploads_pending: int = 0  # evidence uploads not confirmed after the drain
    uploads_confirmed: int = 0  # on a receipt signed by the run's back-office key
    receipts_bad_signature: int = 0  # receipts the agents ignored: not the back office's


@dataclass
class Tally:
    """What this run's Kafka topics hold for this run's drones. Fed by `add`, pure."""

    drones: frozenset[str]
    records: Counter[str] = field(default_factory=Counter)  # role -> records of our drones
    copies: Counter[str] = field(default_factory=Counter)  # message id -> message records
    kinds: dict[str, str] = field(default_factory=dict)  # message id -> kind
    unqualified: set[str] = field(default_factory=set)  # violations with code None
    alerts: Counter[str] = field(default_factory=Counter)  # violation message id -> alerts
    dead_reasons: Counter[str] = field(default_factory=Counter)
    foreign: int = 0  # records of drones that are not ours (another fleet on the same broker)
    unreadable: int = 0  # records that are not the documented JSON
    latencies_ms: list[int] = field(default_factory=list)
    evidence: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # id -> first record

    def add(self, role: str, value: bytes | None, timestamp_ms: int) -> None:
        """Count one Kafka record of topic `role`."""
        try:
            record = json.loads(value or b"")
            drone = record.get("drone_id")
        except (ValueError, AttributeError):
            self.unreadable += 1
            return
        if drone not in self.drones:
            self.foreign += 1
            return
        self.records[role] += 1
        try:
            if role == "deadletter":
                self.dead_reasons[str(record.get("reason"))] += 1
            elif role == "evidence":
                self.evidence.setdefault(record["evidence_id"], record)
            elif role == "alerts":
                self.alerts[record["message_id"]] += 1
            else:
                self._message(record, timestamp_ms)
        except (KeyError, TypeError):
            self.unreadable += 1

    def _message(self, record: Mapping[str, Any], timestamp_ms: int) -> None:
        mid = record["message_id"]
        self.copies[mid] += 1
        if self.copies[mid] > 1:
            return  # a redelivered copy: counted as a duplicate, measured once
        kind = self.kinds[mid] = record["kind"]
        if kind == "violation" and record["code"] is None:
            self.unqualified.add(mid)
        if kind != "status":
            # A status message's time is when its CONNECT was built (a will fires at a link
            # cut, long after): not a delivery latency.
            self.latencies_ms.append(timestamp_ms - int(record["time_ms"]))

    def ids(self, kind: str) -> set[str]:
        return {mid for mid, k in self.kinds.items() if k == kind}

    @property
    def duplicates(self) -> int:
        """Records beyond the first per message id (message records and alerts)."""
        return (sum(n - 1 for n in self.copies.values())
                + sum(n - 1 for n in self.alerts.values()))

    def progress(self) -> dict[str, int]:
        return {role: self.records[role] for role in ROLES}


def ledger_of(fleet: Any) -> Ledger:
    """What the fleet's agents accepted (call after `fleet.stop()`: the counts are final)."""
    import protocol

    accepted = [v for vs in fleet.accepted().values() for v in vs]
    rows = fleet.stats()["drones"]
    return Ledger(
        violations=frozenset(protocol.message_id(v) for v in accepted),
        unqualified=frozenset(protocol.message_id(v) for v in accepted if v.code is None),
        telemetry={d: int(row.get("telemetry", 0)) for d, row in rows.items()},
        queued=sum(int(row.get("outbox_depth", 0)) for row in rows.values()),
        evidence=frozenset(v.evidence_id for v in accepted),
        uploads_pending=sum(int(row.get("uploads_pending", 0)) for row in rows.values()),
        uploads_confirmed=sum(int(row.get("uploads_confirmed", 0)) for row in rows.values()),
        receipts_bad_signature=sum(int(row.get("receipts_bad_signature", 0))
                                   for row in rows.values()),
    )


def delivered_all(ledger: Ledger, tally: Tally) -> bool:
    """True once Kafka holds everything in `ledger` (and the alerts it implies)."""
    if not ledger.violations <= tally.ids("violation"):
        return False
    if not ledger.unqualified <= set(tally.alerts):
        return False
    found = Counter(mid.rpartition(":")[0] for mid in tally.ids("telemetry"))
    return all(found[d] >= n for d, n in ledger.telemetry.items())
