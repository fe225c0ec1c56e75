"""`presacop history ingest`: stream the NYPD CSV into Kafka in constant memory, resumably.

Memory does not grow with the file: one line is read, normalized and handed to the producer at a
time; the producer's buffer (32 MB) and one chunk of delivery futures bound the rest.

Why a resume never duplicates:
1. Lines are read in binary (a .gz is decompressed as a stream); a position is the byte offset in
   the uncompressed stream plus the line number.
2. After every `chunk_rows` lines: `flush()` (idempotent producer, acks=all), then the checkpoint
   file is replaced atomically (fsync + rename) with the next offset and line, the counters, and
   the end offsets of the history and dead-letter topics at that moment.
3. A start that finds a checkpoint seeks to its offset, and first reads both topics from the
   checkpointed end offsets to their current end, collecting the `source-line` header of records
   whose `source-file-id` is this file's: lines a killed run sent after its last checkpoint. Those
   lines are skipped. That set holds at most one chunk of line numbers.

Errors:

    IngestError
     +-- InputError     the file cannot be read, or its first line is not the data set's header
     +-- DeliveryError  Kafka did not acknowledge records; the checkpoint stays before them,
                        so running the same command again resumes without loss or duplicates
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from backoffice import kafka_clients
from backoffice.config import BackofficeConfig

from .progress import Progress
from .records import HEADER, BadRow, check_header, normalize
from .sender import SendFailed, open_sender

CHECKPOINT_VERSION = 1
DEADLETTER_RAW_MAX = 4096  # bytes of the original line kept in a dead letter
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _stdlib_json(value: dict[str, Any]) -> bytes:
    return _ENCODE(value).encode()


try:  # the `history` extra: the same bytes as the stdlib's encoder at a third of its CPU
    from orjson import dumps as to_json
except ImportError:  # pragma: no cover - without the extra
    to_json = _stdlib_json


class IngestError(Exception):
    """Root of the ingest errors."""


class InputError(IngestError):
    """The input file cannot be read or is not the Parking Violations Issued CSV."""


class DeliveryError(IngestError):
    """Kafka did not acknowledge some records; rerun to resume from the last checkpoint."""


@dataclass
class Summary:
    """What one run did. `sent` + `bad` + `skipped` + `blank` = data lines read by this run."""

    file: str
    file_id: str
    lines: int = 0  # data lines read by this run (header excluded)
    sent: int = 0
    bad: int = 0
    skipped: int = 0  # already in Kafka from a killed run
    blank: int = 0
    resumed_at_line: int | None = None
    already_done: bool = False
    seconds: float = 0.0
    bad_by_reason: dict[str, int] = field(default_factory=dict)
    quirks: dict[str, int] = field(default_factory=dict)
    file_totals: dict[str, int] = field(default_factory=dict)  # over every run of this file

    def text(self) -> str:
        rate = self.lines / self.seconds if self.seconds > 0 else 0.0
        out = [f"history ingest {self.file} (file id {self.file_id})"]
        if self.already_done:
            return out[0] + ": already complete, nothing sent (checkpoint says done)"
        if self.resumed_at_line is not None:
            out.append(f"  resumed at line {self.resumed_at_line:,}")
        out.append(f"  {self.lines:,} rows read in {self.seconds:.1f} s ({rate:,.0f} rows/s): "
                   f"{self.sent:,} sent, {self.bad:,} dead-lettered, {self.skipped:,} already in "
                   f"Kafka, {self.blank:,} blank")
        out += [f"  bad: {r}: {n:,}" for r, n in sorted(self.bad_by_reason.items())]
        out += [f"  quirk (kept, field null): {c}: {n:,}" for c, n in sorted(self.quirks.items())]
        if self.resumed_at_line is not None and self.file_totals:
            t = self.file_totals
            out.append(f"  whole file, all runs: {t['sent']:,} sent, {t['bad']:,} dead-lettered")
        return "\n".join(out)


def file_id(path: Path) -> str:
    """16 hex digits identifying the file's content: SHA-256 of its size and first MiB."""
    try:
        with path.open("rb") as fh:
            head = fh.read(1 << 20)
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    return hashlib.sha256(f"{size}:".encode() + head).hexdigest()[:16]


def ingest(cfg: BackofficeConfig, path: str | Path, *, progress: TextIO | None = None,
           restart: bool = False) -> Summary:
    """Send every row of `path` to the history topic (bad rows to the dead-letter topic).

    `progress`: a stream for the progress bar, drawn only when it is a terminal. `restart`:
    forget the checkpoint and send the whole file again. Raises InputError, DeliveryError,
    kafka errors when Kafka cannot be reached at all.
    """
    return _Run(cfg, Path(path), progress, restart).run()


class _Run:
    def __init__(self, cfg: BackofficeConfig, path: Path, progress: TextIO | None,
                 restart: bool) -> None:
        self.cfg = cfg
        self.path = path
        self.fid = file_id(path)
        self.topics = (cfg.history.topic, cfg.kafka.topics.deadletter)
        state = Path(cfg.history.state_dir)
        state.mkdir(parents=True, exist_ok=True)
        self.ckpt_path = state / f"{self.fid}.json"
        if restart:
            self.ckpt_path.unlink(missing_ok=True)
        self.summary = Summary(file=str(path), file_id=self.fid)
        self.progress = Progress(path.stat().st_size, progress)
        self.fid_bytes = self.fid.encode()
        self.headers = {kind: [("content-type", b"application/json"), ("record-type", kind),
                               ("record-version", b"1"), ("source-file-id", self.fid_bytes)]
                        for kind in (b"history", b"deadletter")}

    def run(self) -> Summary:
        started = time.monotonic()
        ckpt = _read_checkpoint(self.ckpt_path)
        if ckpt and ckpt.get("done"):
            self.summary.already_done = True
            return self.summary
        kafka_clients.ensure_topics(self.cfg.kafka, self.topics)
        self.sender = open_sender(self.cfg)
        self.consumer = kafka_clients.consumer(self.cfg.kafka)
        try:
            if ckpt is None:
                ckpt = self._fresh_checkpoint()
            else:
                self.summary.resumed_at_line = ckpt["next_line"]
            self._counts_from(ckpt)
            skip = self._sent_after(ckpt)
            self._stream(ckpt, skip)
            self.summary.file_totals = self.totals()["totals"]
        finally:
            self.sender.close()
            self.consumer.close()
            self.progress.close()
            self.summary.seconds = time.monotonic() - started
        return self.summary

    # -- checkpoints --------------------------------------------------------------------

    def _fresh_checkpoint(self) -> dict[str, Any]:
        ckpt = {"version": CHECKPOINT_VERSION, "file_id": self.fid, "file": str(self.path),
                "next_offset": 0, "next_line": 1, "done": False, "totals": {},
                "bad_by_reason": {}, "quirks": {}, "offsets": self._end_offsets()}
        _write_checkpoint(self.ckpt_path, ckpt)
        return ckpt

    def _counts_from(self, ckpt: dict[str, Any]) -> None:
        # The checkpoint keeps totals over all runs of this file; this run's summary adds to them.
        self.before = {"totals": dict(ckpt.get("totals", {})),
                       "bad_by_reason": dict(ckpt.get("bad_by_reason", {})),
                       "quirks": dict(ckpt.get("quirks", {}))}

    def totals(self) -> dict[str, dict[str, int]]:
        """Counters over every run of this file so far, this one included."""
        s = self.summary
        run = {"totals": {k: getattr(s, k) for k in ("sent", "bad", "skipped", "blank")},
               "bad_by_reason": s.bad_by_reason, "quirks": s.quirks}
        return {name: _add(self.before[name], run[name]) for name in run}

    def _save(self, offset: int, line: int, done: bool) -> None:
        ckpt = {"version": CHECKPOINT_VERSION, "file_id": self.fid, "file": str(self.path),
                "next_offset": offset, "next_line": line, "done": done, **self.totals(),
                "offsets": self._end_offsets(), "updated_ms": int(time.time() * 1000)}
        _write_checkpoint(self.ckpt_path, ckpt)

    def _end_offsets(self) -> dict[str, dict[str, int]]:
        tps = self._partitions()
        ends = self.consumer.end_offsets(tps)
        out: dict[str, dict[str, int]] = {t: {} for t in self.topics}
        for tp, off in ends.items():
            out[tp.topic][str(tp.partition)] = off
        return out

    def _partitions(self) -> list[Any]:
        tps = []
        for topic in self.topics:
            deadline = time.monotonic() + 15
            # A topic created a moment ago may not be in the metadata yet.
            while not (parts := self.consumer.partitions_for_topic(topic)):
                if time.monotonic() > deadline:
                    raise DeliveryError(f"topic {topic} does not exist (and kafka.create_topics "
                                        "is off, or it could not be created)")
                time.sleep(0.2)
            tps += [kafka_clients.topic_partition(topic, p) for p in sorted(parts)]
        return tps

    def _sent_after(self, ckpt: dict[str, Any]) -> set[int]:
        """Line numbers of this file already in Kafka past the checkpoint (see module doc)."""
        tps = self._partitions()
        ends = self.consumer.end_offsets(tps)
        todo = {tp: ckpt["offsets"].get(tp.topic, {}).get(str(tp.partition), 0) for tp in tps}
        todo = {tp: off for tp, off in todo.items() if off < ends[tp]}
        lines: set[int] = set()
        if not todo:
            return lines
        self.consumer.assign(list(todo))
        for tp, off in todo.items():
            self.consumer.seek(tp, off)
        first = ckpt["next_line"]
        while any(self.consumer.position(tp) < ends[tp] for tp in todo):
            for records in self.consumer.poll(timeout_ms=500).values():
                for r in records:
                    line = _line_of(r.headers, self.fid_bytes)
                    if line is not None and line >= first:
                        lines.add(line)
        self.consumer.unsubscribe()
        return lines

    # -- the stream ---------------------------------------------------------------------

    def _stream(self, ckpt: dict[str, Any], skip: set[int]) -> None:
        s = self.summary
        chunk = self.cfg.history.chunk_rows
        offset, line = ckpt["next_offset"], ckpt["next_line"]
        pending = 0
        with _LineReader(self.path, self.cfg.history.max_line_bytes) as reader:
            reader.seek(offset)
            for number, raw, end in reader.lines(line):
                if number == 1:
                    self._header(raw)
                elif number in skip:
                    s.lines += 1
                    s.skipped += 1
                else:
                    s.lines += 1
                    self._row(number, raw)
                    pending += 1
                offset, line = end, number + 1
                if pending >= chunk:
                    self._commit(offset, line, done=False)
                    pending = 0
                self.progress.update(reader.progress, s.lines)
        self._commit(offset, line, done=True)

    def _commit(self, offset: int, line: int, *, done: bool) -> None:
        try:
            self.sender.flush(timeout=120)
        except SendFailed as exc:
            raise DeliveryError(f"before line {line:,}: {exc}; rerun to resume") from exc
        self._save(offset, line, done)

    def _header(self, raw: bytes | None) -> None:
        try:
            check_header(_fields(_decode(raw or b"", {})))
        except BadRow as exc:
            raise InputError(f"{self.path}: line 1: {exc.detail}") from None

    def _row(self, number: int, raw: bytes | None) -> None:
        s = self.summary
        if raw is None:
            self._dead(number, b"", "line_too_long",
                       f"longer than {self.cfg.history.max_line_bytes} bytes", None)
            return
        text = _decode(raw, s.quirks)
        if not text.strip():
            s.blank += 1
            return
        try:
            record = normalize(_fields(text), s.quirks)
        except BadRow as exc:
            self._dead(number, raw, exc.reason, exc.detail, exc.column)
            return
        record.update(source_file=self.path.name, source_file_id=self.fid, source_line=number,
                      ingested_ms=int(time.time() * 1000))
        self._send(self.topics[0], record["summons_number"].encode(), to_json(record), number,
                   b"history")
        s.sent += 1

    def _dead(self, number: int, raw: bytes, reason: str, detail: str,
              column: str | None) -> None:
        s = self.summary
        s.bad += 1
        s.bad_by_reason[reason] = s.bad_by_reason.get(reason, 0) + 1
        kept = raw[:DEADLETTER_RAW_MAX]
        value = {"record_version": "1", "reason": reason, "detail": detail,
                 "path": column, "source": "history", "source_file": self.path.name,
                 "source_file_id": self.fid, "line": number,
                 "received_ms": int(time.time() * 1000),
                 "payload_b64": base64.b64encode(kept).decode(), "payload_size": len(raw),
                 "payload_sha256": hashlib.sha256(raw).hexdigest(),
                 "payload_truncated": len(kept) < len(raw)}
        self._send(self.topics[1], self.fid_bytes, to_json(value), number, b"deadletter",
                   reason)

    def _send(self, topic: str, key: bytes, value: bytes, number: int, kind: bytes,
              reason: str | None = None) -> None:
        headers = [*self.headers[kind], ("source-line", str(number).encode())]
        if reason is not None:
            headers.append(("reason", reason.encode()))
        self.sender.send(topic, key, value, headers)


def _add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in a.keys() | b.keys()}


def _line_of(headers: list[tuple[str, bytes]], fid: bytes) -> int | None:
    found = dict(headers or ())
    if found.get("source-file-id") != fid:
        return None
    try:
        return int(found["source-line"])
    except (KeyError, ValueError):
        return None


def _decode(raw: bytes, quirks: dict[str, int]) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # Old exports are Latin-1 in places; keep the row, count it.
        quirks["(encoding: latin-1)"] = quirks.get("(encoding: latin-1)", 0) + 1
        return raw.decode("latin-1")


def _fields(text: str) -> list[str]:
    text = text.rstrip("\r\n")
    if '"' not in text:  # most lines: without quotes the CSV rules are a plain split
        return text.split(",")
    try:
        row = next(csv.reader([text]), [])
    except csv.Error:  # a bare CR inside the line: CSV rules refuse it, the split below not
        row = []
    if len(row) != len(HEADER):
        # An unbalanced stray quote swallows the rest of the line in CSV rules; the data set has
        # no quoted commas where that happens, so split plainly and let normalize strip quotes.
        plain = text.split(",")
        if len(plain) == len(HEADER):
            return plain
    return row


class _LineReader:
    """Lines of a CSV or .csv.gz as bytes, with the uncompressed offset after each line."""

    def __init__(self, path: Path, max_line: int) -> None:
        self.path = path
        self.max_line = max_line
        self.size = path.stat().st_size

    def __enter__(self) -> _LineReader:
        try:
            self.raw: BinaryIO = self.path.open("rb")
            self.fh: BinaryIO = gzip.GzipFile(fileobj=self.raw) if self.path.suffix == ".gz" \
                else self.raw  # type: ignore[assignment]
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read ({exc.strerror})") from None
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.close()
        self.raw.close()

    def seek(self, offset: int) -> None:
        # GzipFile seeks forward by decompressing: slower than a plain file, still constant memory.
        self.fh.seek(offset)

    def progress(self) -> int:
        """Bytes of the file on disk consumed so far (compressed bytes for a .gz)."""
        return self.raw.tell()

    def lines(self, first: int) -> Iterator[tuple[int, bytes | None, int]]:
        """(line number, bytes or None when too long, offset after it) from the current offset."""
        number = first
        try:
            while True:
                raw = self.fh.readline(self.max_line + 1)
                if not raw:
                    return
                if len(raw) > self.max_line and not raw.endswith(b"\n"):
                    while raw and not raw.endswith(b"\n"):
                        raw = self.fh.readline(1 << 16)
                    yield number, None, self.fh.tell()
                else:
                    yield number, raw, self.fh.tell()
                number += 1
        except (OSError, EOFError) as exc:  # a truncated or corrupt .gz
            raise InputError(f"{self.path}: unreadable after line {number - 1:,} ({exc})") from None


def _read_checkpoint(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InputError(f"checkpoint {path} is unreadable ({exc}); remove it to start over "
                         "(records already sent would then be sent again)") from None
    if data.get("version") != CHECKPOINT_VERSION:
        raise InputError(f"checkpoint {path} has version {data.get('version')!r}, "
                         f"expected {CHECKPOINT_VERSION}")
    return data


def _write_checkpoint(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as fh:
        json.dump(data, fh, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
