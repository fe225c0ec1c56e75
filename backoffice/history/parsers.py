"""Lines of the CSV -> the records to send, in blocks, in parser processes beside the sender.

The ingest is CPU-bound in Python: decoding, splitting, normalizing and writing JSON cost about
three times what handing a record to librdkafka does. `Parsers(source, workers)` runs
`parse_block` in `workers` processes (0: in the calling process) and returns the results in the
order the blocks were submitted, so the sender sends lines in file order and the checkpoint,
taken between blocks, never passes a line the sender has not had. At most `2 * workers + 1`
blocks are queued or parsed at a time: memory stays constant whatever the file.

A parser process gets SIGTERM when the ingest dies without stopping it (kill -9).

Errors: none of its own; a bug in `parse_block` is re-raised by `Parsers.next()`.
"""

from __future__ import annotations

import base64
import collections
import csv
import hashlib
import json
import multiprocessing
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

from common import proc

from .records import HEADER, BadRow, normalize

DEADLETTER_RAW_MAX = 4096  # bytes of the original line kept in a dead letter
HISTORY, DEAD = 0, 1  # topic index of an output: the history topic, the dead-letter topic
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _stdlib_json(value: dict[str, Any]) -> bytes:
    return _ENCODE(value).encode()


try:  # the `history` extra: the same bytes as the stdlib's encoder at a third of its CPU
    from orjson import dumps as to_json
except ImportError:  # pragma: no cover - without the extra
    to_json = _stdlib_json


@dataclass(frozen=True)
class Source:
    """What a record says about where it came from."""

    name: str  # the file's name
    fid: str  # its file id
    max_line: int  # history.max_line_bytes


class Output(NamedTuple):
    topic: int  # HISTORY or DEAD
    line: int
    key: bytes
    value: bytes
    reason: str | None  # the dead letter's reason


class Parsed(NamedTuple):
    outputs: list[Output]
    blank: int
    quirks: dict[str, int]


def parse_block(src: Source, lines: list[tuple[int, bytes | None]]) -> Parsed:
    """Records and dead letters of `lines` ((number, bytes or None when too long)), in order."""
    outputs: list[Output] = []
    quirks: dict[str, int] = {}
    blank = 0
    for number, raw in lines:
        out = parse_line(src, number, raw, quirks)
        if out is None:
            blank += 1
        else:
            outputs.append(out)
    return Parsed(outputs, blank, quirks)


def parse_line(src: Source, number: int, raw: bytes | None,
               quirks: dict[str, int]) -> Output | None:
    """The record (or dead letter) of one data line; None for a blank line."""
    if raw is None:
        return dead_letter(src, number, b"", "line_too_long",
                           f"longer than {src.max_line} bytes", None)
    text = decode(raw, quirks)
    if not text.strip():
        return None
    try:
        record = normalize(fields(text), quirks)
    except BadRow as exc:
        return dead_letter(src, number, raw, exc.reason, exc.detail, exc.column)
    record.update(source_file=src.name, source_file_id=src.fid, source_line=number,
                  ingested_ms=int(time.time() * 1000))
    return Output(HISTORY, number, record["summons_number"].encode(), to_json(record), None)


def dead_letter(src: Source, number: int, raw: bytes, reason: str, detail: str,
                column: str | None) -> Output:
    kept = raw[:DEADLETTER_RAW_MAX]
    value = {"record_version": "1", "reason": reason, "detail": detail,
             "path": column, "source": "history", "source_file": src.name,
             "source_file_id": src.fid, "line": number,
             "received_ms": int(time.time() * 1000),
             "payload_b64": base64.b64encode(kept).decode(), "payload_size": len(raw),
             "payload_sha256": hashlib.sha256(raw).hexdigest(),
             "payload_truncated": len(kept) < len(raw)}
    return Output(DEAD, number, src.fid.encode(), to_json(value), reason)


def decode(raw: bytes, quirks: dict[str, int]) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # Old exports are Latin-1 in places; keep the row, count it.
        quirks["(encoding: latin-1)"] = quirks.get("(encoding: latin-1)", 0) + 1
        return raw.decode("latin-1")


def fields(text: str) -> list[str]:
    """The cells of one CSV line (the data set's stray quotes tolerated)."""
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


class Parsers:
    """`parse_block` in `workers` processes (0: inline), results in submission order."""

    def __init__(self, src: Source, workers: int) -> None:
        self.src = src
        self.depth = 2 * workers + 1
        self.pending: collections.deque[Future[Parsed] | Parsed] = collections.deque()
        # spawn, not fork: the ingest has librdkafka's threads running by now.
        self.pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=proc.die_with_parent) if workers > 0 else None

    def full(self) -> bool:
        """True when the next block should wait for `next()` first (bounded memory)."""
        return len(self.pending) >= self.depth

    def submit(self, lines: list[tuple[int, bytes | None]]) -> None:
        if self.pool is None:
            self.pending.append(parse_block(self.src, lines))
        else:
            self.pending.append(self.pool.submit(parse_block, self.src, lines))

    def __len__(self) -> int:
        return len(self.pending)

    def next(self) -> Parsed:
        """The oldest block's result (waits for it)."""
        item = self.pending.popleft()
        return item.result() if isinstance(item, Future) else item

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
