"""`presacop verify`: check the drones' signatures on violation records, offline.

Anyone with the public keys (`presacop keys gen` wrote them, the gateway reads the same
directory) can check that a violation in Kafka, or in an archive of its records (JSON lines, one
record value per line), is what a drone signed: the gateway keeps the payload it received
(`wire_b64`) next to the decoded fields. For each violation record:

    verified   the signature over protocol.signing_input(topic, payload) is a key of its drone,
               and the record's fields are the payload's (an officer's revision may change only
               `code`, `qualified` and its own fields, and must keep the drone's code as
               `original_code`)
    unsigned   no signature (the drone had no key; the gateway did not require one)
    bad        anything else, with the reason: unknown key, invalid signature, fields that
               differ from the signed payload, an undecodable payload

    presacop verify --keys /etc/presacop/drone-keys --config gateway.toml   # Kafka's violations
    presacop verify --keys DIR --archive violations.jsonl                  # an archive
    Exit status: 0 when every record is verified (or unsigned, without --require-signatures),
    1 otherwise, 2 for bad arguments or an unreadable source.

Errors: VerifyError for a source that cannot be read (the CLI prints it and exits 2).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import protocol
from common import kafka
from common.signing import INVALID, UNSIGNED, KeyRegistry

VERIFIED, BAD = "verified", "bad"
# Fields of a revision >= 1 that the officer console writes (contract 2, docs/kafka-records.md).
OFFICER_FIELDS = frozenset({"code", "qualified", "code_status", "original_code", "officer",
                            "decided_ms", "revision"})


class VerifyError(Exception):
    """The records cannot be read (archive missing, Kafka unreachable)."""


def verify_record(value: Mapping[str, Any], registry: KeyRegistry) -> tuple[str, str]:
    """(VERIFIED | UNSIGNED | BAD, detail) for one violation record value."""
    if value.get("signature") is None and value.get("wire_b64") is None:
        return UNSIGNED, "no signature"
    try:
        wire = base64.b64decode(value["wire_b64"], validate=True)
        topic = protocol.topic(value["drone_id"], protocol.Kind.VIOLATION)
        msg = protocol.decode(wire, topic)
    except (KeyError, TypeError, binascii.Error, protocol.ProtocolError) as exc:
        return BAD, f"payload: {type(exc).__name__}: {exc}"
    if not isinstance(msg, protocol.Violation):
        return BAD, "payload is not a violation"
    why = registry.check(topic, wire, msg)
    if why is not None:
        return BAD, INVALID if why == UNSIGNED else why
    differs = _differences(value, protocol.to_json(msg))
    return (BAD, f"fields differ from the signed payload: {', '.join(differs)}") if differs \
        else (VERIFIED, "")


def _differences(value: Mapping[str, Any], signed: Mapping[str, Any]) -> list[str]:
    revised = int(value.get("revision") or 0) > 0
    keys = [k for k in signed if k != "schema" and not (revised and k in OFFICER_FIELDS)]
    differs = [k for k in keys if value.get(k) != signed[k]]
    if revised and value.get("original_code") != signed["code"]:
        differs.append("original_code")
    return differs


def verify_all(values: Iterable[Mapping[str, Any]], registry: KeyRegistry
               ) -> tuple[collections.Counter[str], list[tuple[str, str]]]:
    """Counts per outcome over violation records (others are skipped), and the bad ones as
    (message_id, detail)."""
    counts: collections.Counter[str] = collections.Counter()
    bad: list[tuple[str, str]] = []
    for value in values:
        if value.get("kind") != "violation":
            continue
        outcome, detail = verify_record(value, registry)
        counts[outcome] += 1
        if outcome == BAD:
            bad.append((str(value.get("message_id")), detail))
    return counts, bad


def archive_records(path: Path) -> Iterator[dict[str, Any]]:
    """Record values from a JSON-lines file. Raises VerifyError naming the line."""
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise VerifyError(f"{path}:{number}: not JSON: {exc}") from exc
    except OSError as exc:
        raise VerifyError(f"cannot read {path}: {exc}") from exc


def kafka_records(settings: kafka.KafkaSettings, topic: str,
                  timeout_s: float = 10.0) -> Iterator[dict[str, Any]]:
    """Every record value of `topic` from the beginning to its end offsets at the start."""
    errors = kafka.import_kafka().errors
    try:
        consumer = kafka.consumer(settings, enable_auto_commit=False, group_id=None,
                                  consumer_timeout_ms=int(timeout_s * 1000))
    except errors.KafkaError as exc:
        raise VerifyError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from exc
    try:
        parts = [kafka.import_kafka().TopicPartition(topic, p)
                 for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not parts:
            raise VerifyError(f"no topic {topic!r} in Kafka")
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        left = {tp for tp in parts if end[tp] > 0}
        for record in consumer:
            tp = kafka.import_kafka().TopicPartition(record.topic, record.partition)
            if record.offset < end[tp]:
                yield json.loads(record.value)
            if record.offset + 1 >= end[tp]:
                left.discard(tp)
            if not left:
                return
    finally:
        kafka.close_quietly(consumer)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keys", required=True, type=Path,
                   help="directory of public keys, <drone_id>/<key_id>.pub")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--archive", type=Path, help="a JSON-lines file of violation records")
    source.add_argument("--config", type=Path,
                        help="gateway config whose [kafka] section (security included) to use")
    p.add_argument("--topic", help="Kafka topic (default: the config's violations topic)")
    p.add_argument("--require-signatures", action="store_true",
                   help="count unsigned violations as failures")


def run(args: argparse.Namespace) -> int:
    registry = KeyRegistry(args.keys, reload_s=3600.0)
    try:
        counts, bad = verify_all(_source(args), registry)
    except (VerifyError, ValueError) as exc:
        print(f"presacop verify: {exc}", file=sys.stderr)
        return 2
    for message_id, detail in bad:
        print(f"BAD {message_id}: {detail}")
    print(f"{counts[VERIFIED]} verified, {counts[UNSIGNED]} unsigned, {counts[BAD]} bad")
    failed = counts[BAD] or (args.require_signatures and counts[UNSIGNED])
    return 1 if failed else 0


def _source(args: argparse.Namespace) -> Iterable[Mapping[str, Any]]:
    if args.archive is not None:
        return archive_records(args.archive)
    from gateway.config import load_config

    cfg = load_config(args.config)
    return kafka_records(kafka.KafkaSettings.of(cfg.kafka),
                         args.topic or cfg.kafka.topics.violations)
