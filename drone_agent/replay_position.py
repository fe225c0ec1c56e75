"""A position source that replays a recorded track: CSV or JSON lines, looping.

Formats (chosen by content: a first line starting with ``{`` means JSON lines):

- CSV with a header naming the columns: ``lat,lon,alt,heading,speed`` (also accepted:
  ``alt_m``, ``heading_deg``, ``speed_mps``); only lat and lon are required.
- JSON lines: one object per line with the same keys.

Rows are replayed at `rate_hz` rows per second from when the source was made; with ``loop=True``
the track starts over at the end, otherwise `fix()` returns None (no fix) after the last row.
Replayed fixes carry no GPS time: the track's time is not now.

Raises: `HardwareError` if the file is missing or unreadable; `ValueError` naming the line for
a bad row.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from drone_agent.hardware import Fix, HardwareError

_ALIASES = {"alt": "alt_m", "heading": "heading_deg", "speed": "speed_mps"}


class ReplayPosition:
    """A `PositionSource` replaying `path`. See the module docstring."""

    def __init__(self, path: str, rate_hz: float = 1.0, loop: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise HardwareError(f"position replay file {path}: {exc.strerror or exc}") from exc
        self.path = path
        self.fixes = load_track(text, path)
        self.rate_hz = rate_hz
        self.loop = loop
        self._clock = clock
        self._start = clock()

    def fix(self) -> Fix | None:
        row = int((self._clock() - self._start) * self.rate_hz)
        if row >= len(self.fixes):
            if not self.loop:
                return None
            row %= len(self.fixes)
        return self.fixes[row]

    def close(self) -> None:
        pass


def load_track(text: str, source: str = "<track>") -> list[Fix]:
    """Parse a CSV or JSON-lines track. Raises `ValueError` naming `source` and the line."""
    json_lines = text.lstrip().startswith("{")
    rows = _json_rows(text, source) if json_lines else _csv_rows(text, source)
    fixes = [_to_fix(row, f"{source}:{line}") for line, row in rows]
    if not fixes:
        raise ValueError(f"{source}: no positions in the track")
    return fixes


def _json_rows(text: str, source: str) -> list[tuple[int, Mapping[str, Any]]]:
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}:{n}: not JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{source}:{n}: expected an object")
        rows.append((n, obj))
    return rows


def _csv_rows(text: str, source: str) -> list[tuple[int, Mapping[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip() for f in reader.fieldnames or []]
    if "lat" not in fields or "lon" not in fields:
        raise ValueError(f"{source}:1: CSV header must name lat and lon columns, got {fields}")
    rows = []
    for row in reader:
        clean = {k.strip(): v for k, v in row.items() if k is not None and v not in (None, "")}
        if clean:
            rows.append((reader.line_num, clean))
    return rows


def _to_fix(row: Mapping[str, Any], where: str) -> Fix:
    values: dict[str, float] = {}
    for key, raw in row.items():
        name = _ALIASES.get(key, key)
        if name not in ("lat", "lon", "alt_m", "heading_deg", "speed_mps"):
            continue
        try:
            values[name] = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: {key} is not a number: {raw!r}") from None
    if "lat" not in values or "lon" not in values:
        raise ValueError(f"{where}: lat and lon are required")
    if not -90 <= values["lat"] <= 90 or not -180 <= values["lon"] <= 180:
        raise ValueError(f"{where}: lat/lon out of range: {values['lat']}, {values['lon']}")
    return Fix(lat=values["lat"], lon=values["lon"], alt_m=values.get("alt_m", 0.0),
               heading_deg=values.get("heading_deg", 0.0) % 360.0,
               speed_mps=max(0.0, values.get("speed_mps", 0.0)))
