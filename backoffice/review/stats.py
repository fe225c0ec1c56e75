"""The statistics page's figures, from the local view: queue depth, time to decision (p50/p95)
per day of decision, and the intervention rate (share of violations whose code an officer set
or changed) per day the gateway received the violation. Pure queries; nothing raises."""

from __future__ import annotations

import dataclasses
import math
import sqlite3
from collections import defaultdict

from .view import day_of


@dataclasses.dataclass(frozen=True)
class Day:
    day: str
    violations: int = 0
    officer_set: int = 0
    officer_changed: int = 0
    decisions: int = 0
    p50_s: float | None = None
    p95_s: float | None = None

    @property
    def intervention_rate(self) -> float | None:
        if not self.violations:
            return None
        return (self.officer_set + self.officer_changed) / self.violations


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def per_day(conn: sqlite3.Connection, days: int = 30) -> list[Day]:
    """The last `days` days with any activity, newest first."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in conn.execute("SELECT day, code_status, COUNT(*) AS n FROM violations "
                            "GROUP BY day, code_status"):
        counts[row["day"]][row["code_status"]] += row["n"]
    waits: dict[str, list[float]] = defaultdict(list)
    for row in conn.execute("SELECT received_ms, decided_ms FROM alerts "
                            "WHERE state='resolved' AND decided_ms IS NOT NULL"):
        waits[day_of(row["decided_ms"])].append((row["decided_ms"] - row["received_ms"]) / 1000)
    out = []
    for day in sorted(set(counts) | set(waits), reverse=True)[:days]:
        c, w = counts.get(day, {}), waits.get(day, [])
        out.append(Day(day, sum(c.values()), c.get("officer_set", 0),
                       c.get("officer_changed", 0), len(w), percentile(w, 50), percentile(w, 95)))
    return out
