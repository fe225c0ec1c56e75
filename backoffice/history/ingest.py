"""`presacop history ingest`: stream the NYPD CSV into Kafka in constant memory, resumably.

Memory does not grow with the file: lines are read in blocks of BLOCK_LINES, parsed by
`history.parsers` processes (`parsers.Parsers`: at most 2 * parsers + 1 blocks in flight) and
handed to the producer in line order; the producer's buffer (32 MB) bounds the rest.

Why a resume never duplicates:
1. Lines are read in binary (a .gz is decompressed as a stream); a position is the byte offset in
   the uncompressed stream plus the line number.
2. After the block that completes `chunk_rows` lines is handed to the producer: `flush()`
   (idempotent producer, acks=all), then the checkpoint file is replaced atomically (fsync +
   rename) with the offset and line after that block, the counters, and the end offsets of the
   history and dead-letter topics at that moment. Blocks come back from the parsers in the
   order they went out, so every line before that position has been acknowledged or skipped.
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

import collections
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

from .parsers import DEAD, HISTORY, Output, Parsed, Parsers, Source, decode, fields
from .progress import Progress
from .records import BadRow, check_header
from .sender import SendFailed, open_sender

CHECKPOINT_VERSION = 1
BLOCK_LINES = 500  # lines a parser gets at a time (a checkpoint falls between two blocks)


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
        self.headers = {topic: [("content-type", b"application/json"), ("record-type", kind),
                                ("record-version", b"1"), ("source-file-id", self.fid_bytes)]
                        for topic, kind in ((HISTORY, b"history"), (DEAD, b"deadletter"))}

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
        h = self.cfg.history
        self.pending = 0  # lines parsed and sent since the last checkpoint
        self.positions: collections.deque[tuple[int, int]] = collections.deque()
        parsers = Parsers(Source(self.path.name, self.fid, h.max_line_bytes), h.parsers)
        try:
            with _LineReader(self.path, h.max_line_bytes) as reader:
                reader.seek(ckpt["next_offset"])
                at = self._read(reader, (ckpt["next_offset"], ckpt["next_line"]), skip, parsers)
            while parsers:
                self._apply(parsers.next())
        finally:
            parsers.close()
        self._commit(*at, done=True)

    def _read(self, reader: _LineReader, at: tuple[int, int], skip: set[int],
              parsers: Parsers) -> tuple[int, int]:
        """Hand the lines from `at` to the parsers in blocks; the position after the last."""
        s = self.summary
        block: list[tuple[int, bytes | None]] = []
        size = min(BLOCK_LINES, self.cfg.history.chunk_rows)
        for number, raw, end in reader.lines(at[1]):
            at = (end, number + 1)
            if number == 1:
                self._header(raw)
                continue
            s.lines += 1
            if number in skip:
                s.skipped += 1
            else:
                block.append((number, raw))
                if len(block) >= size:
                    self._submit(parsers, block, at)
                    block = []
            self.progress.update(reader.progress, s.lines)
        if block:
            self._submit(parsers, block, at)
        return at

    def _submit(self, parsers: Parsers, block: list[tuple[int, bytes | None]],
                at: tuple[int, int]) -> None:
        while parsers.full():  # bounded: send what is parsed before reading on
            self._apply(parsers.next())
        parsers.submit(block)
        self.positions.append(at)

    def _apply(self, parsed: Parsed) -> None:
        """Send one block's records in line order; every `chunk_rows` lines, flush and save the
        position after the block (every line before it is then sent or skipped)."""
        s = self.summary
        s.blank += parsed.blank
        for column, n in parsed.quirks.items():
            s.quirks[column] = s.quirks.get(column, 0) + n
        for out in parsed.outputs:
            if out.reason is not None:
                s.bad += 1
                s.bad_by_reason[out.reason] = s.bad_by_reason.get(out.reason, 0) + 1
            else:
                s.sent += 1
            self._send(out)
        at = self.positions.popleft()
        self.pending += len(parsed.outputs) + parsed.blank
        if self.pending >= self.cfg.history.chunk_rows:
            self._commit(*at, done=False)
            self.pending = 0

    def _commit(self, offset: int, line: int, *, done: bool) -> None:
        try:
            self.sender.flush(timeout=120)
        except SendFailed as exc:
            raise DeliveryError(f"before line {line:,}: {exc}; rerun to resume") from exc
        self._save(offset, line, done)

    def _header(self, raw: bytes | None) -> None:
        try:
            check_header(fields(decode(raw or b"", {})))
        except BadRow as exc:
            raise InputError(f"{self.path}: line 1: {exc.detail}") from None

    def _send(self, out: Output) -> None:
        headers = [*self.headers[out.topic], ("source-line", str(out.line).encode())]
        if out.reason is not None:
            headers.append(("reason", out.reason.encode()))
        self.sender.send(self.topics[out.topic], out.key, out.value, headers)


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
