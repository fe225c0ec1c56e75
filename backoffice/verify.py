"""`presacop verify`: check the drones' signatures on violation and evidence records, offline.

Anyone with the public keys (`presacop keys gen` wrote them, the gateway reads the same
directory) can check that a violation in Kafka, or in an archive of its records (JSON lines, one
record value per line), is what a drone signed: the gateway keeps the payload it received
(`wire_b64`) next to the decoded fields. An evidence record (presacop.evidence) keeps the signed
manifest (`manifest_b64`) the same way: its `sha256` is then what the drone declared under its
key, so hashing the stored object proves the image came from that drone. For each record:

    verified   the signature over protocol.signing_input(topic, payload) is a key of its drone,
               and the record's fields are the payload's (an officer's revision may change only
               `code`, `qualified` and its own fields, and must keep the drone's code as
               `original_code`)
    unsigned   no signature (the drone had no key; the gateway did not require one)
    bad        anything else, with the reason: unknown key, invalid signature, fields that
               differ from the signed payload, an undecodable payload

    presacop verify --keys /etc/presacop/drone-keys --config gateway.toml   # violations + evidence
    presacop verify --keys DIR --archive violations.jsonl                  # an archive (either)
    Exit status: 0 when every record is verified (or unsigned, without --require-signatures),
    1 otherwise, 2 for bad arguments or an unreadable source (a Kafka topic counts as unreadable
    when nothing more could be read for 30 s before its end offsets: never a verdict on part).

Errors: VerifyError for a source that cannot be read (the CLI prints it and exits 2).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import dataclasses
import itertools
import json
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import protocol
from common import kafka
from common.signing import INVALID, UNSIGNED, KeyRegistry

VERIFIED, BAD = "verified", "bad"
S = TypeVar("S", protocol.Violation, protocol.EvidenceManifest)
# Evidence-record fields the signed manifest fixes (the rest is the gateway's: uri, stored_ms...).
MANIFEST_FIELDS = ("drone_id", "evidence_id", "sha256", "size", "content_type", "key_id",
                   "signature")
# Fields of a revision >= 1 that the officer console writes (contract 2, docs/kafka-records.md).
OFFICER_FIELDS = frozenset({"code", "qualified", "code_status", "original_code", "officer",
                            "decided_ms", "revision"})


class VerifyError(Exception):
    """The records cannot be read (archive missing, Kafka unreachable, a topic not read to its
    end)."""


def verify_record(value: Mapping[str, Any], registry: KeyRegistry) -> tuple[str, str]:
    """(VERIFIED | UNSIGNED | BAD, detail) for one violation record value."""
    if value.get("signature") is None and value.get("wire_b64") is None:
        return UNSIGNED, "no signature"
    msg = _signed(value, "wire_b64", protocol.Violation, registry)
    if isinstance(msg, tuple):
        return msg
    differs = _differences(value, protocol.to_json(msg))
    return (BAD, f"fields differ from the signed payload: {', '.join(differs)}") if differs \
        else (VERIFIED, "")


def verify_evidence_record(value: Mapping[str, Any], registry: KeyRegistry) -> tuple[str, str]:
    """(VERIFIED | UNSIGNED | BAD, detail) for one presacop.evidence record value: verified when
    `manifest_b64` is signed by a key of the drone and declares the record's sha256, size..."""
    if value.get("signature") is None and value.get("manifest_b64") is None:
        return UNSIGNED, "no signature"
    manifest = _signed(value, "manifest_b64", protocol.EvidenceManifest, registry)
    if isinstance(manifest, tuple):
        return manifest
    signed = {**dataclasses.asdict(manifest), "signature": (manifest.signature or b"").hex()}
    differs = [k for k in MANIFEST_FIELDS if value.get(k) != signed[k]]
    if value.get("violation_message_id") != f"{manifest.drone_id}:{manifest.violation_seq}":
        differs.append("violation_message_id")
    return (BAD, f"fields differ from the signed manifest: {', '.join(differs)}") if differs \
        else (VERIFIED, "")


def _signed(value: Mapping[str, Any], field: str, cls: type[S], registry: KeyRegistry
            ) -> S | tuple[str, str]:
    """The message of type `cls` in `value[field]` (base64), its signature verified against its
    drone's keys; else (BAD, why)."""
    evidence = cls is protocol.EvidenceManifest
    try:
        wire = base64.b64decode(value[field], validate=True)
        topic = protocol.evidence_topic(value["drone_id"]) if evidence else \
            protocol.topic(value["drone_id"], protocol.Kind.VIOLATION)
        msg = (protocol.decode_evidence if evidence else protocol.decode)(wire, topic)
    except (KeyError, TypeError, binascii.Error, protocol.ProtocolError) as exc:
        return BAD, f"{field}: {type(exc).__name__}: {exc}"
    if not isinstance(msg, cls):
        return BAD, f"{field} is not a {cls.__name__}"
    why = registry.check(topic, wire, msg)
    return msg if why is None else (BAD, INVALID if why == UNSIGNED else why)


def _differences(value: Mapping[str, Any], signed: Mapping[str, Any]) -> list[str]:
    revised = int(value.get("revision") or 0) > 0
    keys = [k for k in signed if k != "schema" and not (revised and k in OFFICER_FIELDS)]
    differs = [k for k in keys if value.get(k) != signed[k]]
    if revised and value.get("original_code") != signed["code"]:
        differs.append("original_code")
    return differs


def verify_all(values: Iterable[Mapping[str, Any]], registry: KeyRegistry
               ) -> tuple[collections.Counter[str], list[tuple[str, str]]]:
    """Counts per outcome over violation and evidence records (others are skipped; evidence
    outcomes also counted as "evidence_<outcome>"), and the bad ones as (message_id or
    "evidence <id>", detail)."""
    counts: collections.Counter[str] = collections.Counter()
    bad: list[tuple[str, str]] = []
    for value in values:
        if value.get("kind") == "violation":
            outcome, detail = verify_record(value, registry)
            name = str(value.get("message_id"))
        elif is_evidence_record(value):
            outcome, detail = verify_evidence_record(value, registry)
            name = f"evidence {value.get('evidence_id')}"
            counts[f"evidence_{outcome}"] += 1
        else:
            continue
        counts[outcome] += 1
        if outcome == BAD:
            bad.append((name, detail))
    return counts, bad


def is_evidence_record(value: Mapping[str, Any]) -> bool:
    """A presacop.evidence record value (docs/kafka-records.md): it has no `kind` field."""
    return "kind" not in value and "sha256" in value and "violation_message_id" in value


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


def kafka_records(settings: kafka.KafkaSettings, topic: str, timeout_s: float = 30.0,
                  missing_ok: bool = False) -> Iterator[dict[str, Any]]:
    """Every record value of `topic` from the beginning to its end offsets at the start (none
    for a topic that does not exist, with `missing_ok`). Raises VerifyError when Kafka cannot be
    reached, the topic is missing, or nothing more was read for `timeout_s` before every
    partition reached its end offset: a partial read must not pass for a check of every record."""
    errors = kafka.import_kafka().errors
    try:
        consumer = kafka.consumer(settings, enable_auto_commit=False, group_id=None)
    except errors.KafkaError as exc:
        raise VerifyError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from exc
    try:
        parts = [kafka.import_kafka().TopicPartition(topic, p)
                 for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not parts:
            if missing_ok:
                return
            raise VerifyError(f"no topic {topic!r} in Kafka")
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        yield from _to_the_end(consumer, topic, end, timeout_s)
    finally:
        kafka.close_quietly(consumer)


def _to_the_end(consumer: Any, topic: str, end: Mapping[Any, int],
                timeout_s: float) -> Iterator[dict[str, Any]]:
    """Poll until every partition's position reached `end` (positions, not record offsets: they
    also pass offsets that hold no record); VerifyError after `timeout_s` without progress."""
    left = {tp for tp, offset in end.items() if offset > 0}
    progress_at = time.monotonic()
    while left:
        polled = consumer.poll(timeout_ms=500)
        for tp, records in polled.items():
            for record in records:
                if record.offset < end[tp]:
                    yield json.loads(record.value)
        still = {tp for tp in left if consumer.position(tp) < end[tp]}
        if polled or still != left:
            progress_at = time.monotonic()
        elif time.monotonic() - progress_at > timeout_s:
            raise VerifyError(f"{topic}: nothing read for {timeout_s:g} s before the end "
                              f"offsets of partition(s) {sorted(tp.partition for tp in left)}: "
                              "not every record was read")
        left = still


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keys", required=True, type=Path,
                   help="directory of public keys, <drone_id>/<key_id>.pub")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--archive", type=Path,
                        help="a JSON-lines file of violation and/or evidence records")
    source.add_argument("--config", type=Path,
                        help="gateway config whose [kafka] section (security included) to use")
    p.add_argument("--topic", action="append",
                   help="Kafka topic, repeatable (default: the config's violations topic and "
                   "its evidence topic if it exists)")
    p.add_argument("--require-signatures", action="store_true",
                   help="count unsigned violations and evidence records as failures")


def run(args: argparse.Namespace) -> int:
    registry = KeyRegistry(args.keys, reload_s=3600.0)
    try:
        counts, bad = verify_all(_source(args), registry)
    except (VerifyError, ValueError) as exc:
        print(f"presacop verify: {exc}", file=sys.stderr)
        return 2
    for message_id, detail in bad:
        print(f"BAD {message_id}: {detail}")
    if any(k.startswith("evidence_") for k in counts):
        print(f"evidence: {counts['evidence_' + VERIFIED]} verified, "
              f"{counts['evidence_' + UNSIGNED]} unsigned, {counts['evidence_' + BAD]} bad")
    print(f"{counts[VERIFIED]} verified, {counts[UNSIGNED]} unsigned, {counts[BAD]} bad")
    failed = counts[BAD] or (args.require_signatures and counts[UNSIGNED])
    return 1 if failed else 0


def _source(args: argparse.Namespace) -> Iterable[Mapping[str, Any]]:
    if args.archive is not None:
        return archive_records(args.archive)
    from gateway.config import load_config

    cfg = load_config(args.config)
    settings = kafka.KafkaSettings.of(cfg.kafka)
    if args.topic:
        return itertools.chain.from_iterable(kafka_records(settings, t) for t in args.topic)
    return itertools.chain(kafka_records(settings, cfg.kafka.topics.violations),
                           kafka_records(settings, cfg.kafka.topics.evidence, missing_ok=True))
