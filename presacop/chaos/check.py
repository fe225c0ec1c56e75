"""The end of a chaos run: what the drones accepted (their ledgers) against what Kafka holds.

Counted per topic: records, unique keys, duplicates (records beyond the first per key: message_id
on telemetry, (message_id, revision) on violations, (alert_id, state) on alerts, evidence_id on
evidence), lost (accepted, not in Kafka). Also dead letters by reason, and per drone the seq gaps
in Kafka (docs/gateway.md, "Sequence gaps": a gap is a loss, except a will a broker crash forgot).

Raises: `ChaosError` when Kafka cannot be read to its end offsets.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import kafka
from presacop.chaos.parts import ChaosError

KIND_TOPIC = {"v": "violations", "t": "telemetry"}  # ledger letter -> topic role


@dataclass
class Ledgers:
    """Message ids each drone accepted, by topic role, read from the fsync'ed ledger files."""

    ids: dict[str, set[str]] = field(
        default_factory=lambda: {role: set() for role in KIND_TOPIC.values()})
    unreadable: int = 0

    @classmethod
    def read(cls, directory: Path) -> Ledgers:
        out = cls()
        for path in sorted(directory.glob("*.ledger")):
            drone = path.name.removesuffix(".ledger")
            for line in path.read_text().splitlines():
                kind, _, seq = line.partition(" ")
                if kind in KIND_TOPIC and seq.isdigit():
                    out.ids[KIND_TOPIC[kind]].add(f"{drone}:{seq}")
                else:
                    out.unreadable += 1  # a line cut by a kill -9 mid-write
        return out


@dataclass
class KafkaView:
    """Every record of the run's topics, by role: (headers, value) pairs."""

    records: dict[str, list[tuple[dict[str, bytes], dict[str, Any]]]]

    @classmethod
    def read(cls, bootstrap: str, topics: Mapping[str, str], timeout: float = 120.0) -> KafkaView:
        """Read each topic up to its end offsets as of the call. Raises ChaosError."""
        k = kafka.import_kafka()
        out: dict[str, list[tuple[dict[str, bytes], dict[str, Any]]]] = {r: [] for r in topics}
        try:
            consumer = kafka.consumer(kafka.KafkaSettings(bootstrap_servers=bootstrap),
                                      group_id=None, enable_auto_commit=False,
                                      client_id="presacop-chaos-check")
        except k.errors.KafkaError as exc:
            raise ChaosError(f"cannot read Kafka {bootstrap}: {exc!r}") from exc
        try:
            role_of = {name: role for role, name in topics.items()}
            tps = [k.TopicPartition(name, p) for name in topics.values()
                   for p in sorted(consumer.partitions_for_topic(name) or ())]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            end = consumer.end_offsets(tps)
            deadline = time.monotonic() + timeout
            while any(consumer.position(tp) < end[tp] for tp in tps):
                if time.monotonic() > deadline:
                    raise ChaosError(f"Kafka not read to its end offsets within {timeout:.0f} s")
                for tp, batch in consumer.poll(timeout_ms=500).items():
                    for r in batch:
                        if r.offset < end[tp]:
                            out[role_of[tp.topic]].append((dict(r.headers or ()),
                                                           json.loads(r.value)))
        finally:
            kafka.close_quietly(consumer)
        return cls(out)


def _key(role: str, headers: dict[str, bytes], value: dict[str, Any]) -> str | None:
    if role == "telemetry":
        return value.get("message_id")
    if role == "violations":
        return f"{value.get('message_id')}#{value.get('revision', 0)}"
    if role == "alerts":
        return f"{value.get('alert_id')}#{value.get('state')}"
    if role == "evidence":
        return value.get("evidence_id")
    return None


def compare(ledgers: Ledgers, view: KafkaView, drones: frozenset[str]) -> dict[str, Any]:
    """Per topic: records, unique, duplicates, accepted, lost; dead letters; seq gaps."""
    topics: dict[str, dict[str, Any]] = {}
    seqs: dict[str, set[int]] = {}
    statuses: dict[tuple[str, int], bool] = {}  # (drone, seq) -> online
    for role, rows in view.records.items():
        ours = [(h, v) for h, v in rows if v.get("drone_id") in drones]
        keys = Counter(k for h, v in ours if (k := _key(role, h, v)) is not None)
        row: dict[str, Any] = {"records": len(ours), "unique": len(keys),
                               "duplicates": sum(n - 1 for n in keys.values())}
        if role in ("telemetry", "violations"):
            present = {v["message_id"] for _, v in ours}
            accepted = ledgers.ids[role]
            row.update(accepted=len(accepted), lost=len(accepted - present),
                       lost_ids=sorted(accepted - present)[:10])
            for _, v in ours:
                seqs.setdefault(v["drone_id"], set()).add(int(v["seq"]))
                if v.get("kind") == "status":
                    statuses[(v["drone_id"], int(v["seq"]))] = bool(v.get("online"))
        if role == "deadletter":
            row["reasons"] = dict(Counter(str(v.get("reason")) for _, v in ours))
        topics[role] = row
    if "evidence" in topics and "violations" in topics:
        # Every violation in Kafka names its image: each must be stored (the uploads finish
        # before the drain; one left on a drone is counted there, as an outbox leftover).
        wanted = {v["evidence_id"] for _, v in view.records["violations"]
                  if v.get("drone_id") in drones and v.get("evidence_id")}
        stored = {v.get("evidence_id") for _, v in view.records["evidence"]}
        topics["evidence"].update(accepted=len(wanted), lost=len(wanted - stored),
                                  lost_ids=sorted(wanted - stored)[:10])
    return {"topics": topics, "gaps": _gaps(seqs, statuses)}


def _gaps(seqs: dict[str, set[int]], statuses: dict[tuple[str, int], bool]) -> dict[str, int]:
    """Missing seqs per kind of explanation (docs/gateway.md, "Sequence gaps")."""
    out = {"missing": 0, "forgotten_wills": 0, "lost_online_status": 0}
    for drone, have in seqs.items():
        for s in range(min(have), max(have)):
            if s in have:
                continue
            if statuses.get((drone, s + 1)) is True:
                out["forgotten_wills"] += 1
            elif statuses.get((drone, s - 1)) is False:
                out["lost_online_status"] += 1
            else:
                out["missing"] += 1
    return out
