"""`presacop stats report`: the statistics file -> a static HTML page with PNG charts, and the
same figures as a terminal table.

Charts (matplotlib, no display needed): violations per hour of day, top codes drone vs history,
violations per borough drone vs history, officer intervention rate per day, time to an officer's
decision. Shares are per source (a code's share of the drones' violations beside its share of
the history's), so a few drone violations compare with millions of history rows.

Errors:

    ReportError (ValueError)   there are no statistics yet (`presacop stats run` has not run)
OSError when the output directory cannot be written.
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backoffice.config import BackofficeConfig
from protocol import VIOLATION_CODES

from .aggregates import DECISION_BUCKETS, LAST_BUCKET, StatsStore

TOP_CODES = 10


class ReportError(ValueError):
    """No statistics to report."""


@dataclass(frozen=True)
class Figures:
    """The report's numbers, from the statistics file."""

    values: dict[str, dict[str, dict[str, int]]]
    batch_id: int
    updated_ms: int

    def get(self, stat: str, source: str) -> dict[str, int]:
        return self.values.get(stat, {}).get(source, {})

    def total(self, source: str) -> int:
        return self.get("violations", source).get("", 0)

    def share(self, stat: str, source: str, key: str) -> float:
        total = sum(v for v in self.get(stat, source).values() if v > 0)
        return self.get(stat, source).get(key, 0) / total if total else 0.0

    def unqualified_share(self) -> float:
        total = self.total("drone")
        return self.get("unqualified", "drone").get("", 0) / total if total else 0.0

    def intervention_rate(self) -> float:
        total = self.total("drone")
        return self.get("interventions", "drone").get("", 0) / total if total else 0.0

    def mean_decision_s(self) -> float | None:
        count = self.get("decision_ms_count", "drone").get("", 0)
        return self.get("decision_ms_sum", "drone").get("", 0) / count / 1000 if count else None

    def top_codes(self) -> list[str]:
        drone, hist = self.get("by_code", "drone"), self.get("by_code", "history")
        codes = set(drone) | set(hist)
        return sorted(codes, key=lambda c: -(self.share("by_code", "drone", c)
                                             + self.share("by_code", "history", c)))[:TOP_CODES]

    def days(self) -> list[tuple[str, int, int]]:
        """(day, violations, interventions) per day with drone violations, oldest first."""
        seen = self.get("by_day", "drone")
        done = self.get("interventions_by_day", "drone")
        return [(d, seen[d], done.get(d, 0)) for d in sorted(seen)]


def load_figures(cfg: BackofficeConfig) -> Figures:
    """The current statistics; raises ReportError when there are none."""
    state = StatsStore(cfg.stats.stats_dir).load()
    if state["batch_id"] < 0:
        raise ReportError(f"no statistics in {cfg.stats.stats_dir} yet: run `presacop stats run`")
    return Figures(state["values"], state["batch_id"], state["updated_ms"])


def write_report(cfg: BackofficeConfig, out: str | Path) -> str:
    """Write `out/index.html` and its PNGs; return the terminal table."""
    figures = load_figures(cfg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    charts = _charts(figures, out)
    text = table(figures)
    (out / "index.html").write_text(_html(figures, charts, text))
    return text + f"\n\nreport: {out / 'index.html'}"


def table(f: Figures) -> str:
    """The figures as plain text, for a terminal."""
    when = dt.datetime.fromtimestamp(f.updated_ms / 1000, dt.timezone.utc)
    mean = f.mean_decision_s()
    lines = [
        f"statistics as of {when:%Y-%m-%d %H:%M:%S} UTC (batch {f.batch_id})",
        f"violations: drones {f.total('drone'):,}   history {f.total('history'):,}",
        f"unqualified by the drone: {f.unqualified_share():.1%}   officer intervention rate: "
        f"{f.intervention_rate():.1%}   mean time to decision: "
        + (f"{mean / 60:.1f} min" if mean is not None else "-"),
        "",
        f"{'code':>4}  {'description':<32} {'drones':>8} {'share':>6}  "
        f"{'history':>10} {'share':>6}",
    ]
    for code in f.top_codes():
        desc = VIOLATION_CODES.get(int(code), "?") if code.isdigit() else "?"
        lines.append(
            f"{code:>4}  {desc[:32]:<32} {f.get('by_code', 'drone').get(code, 0):>8,} "
            f"{f.share('by_code', 'drone', code):>6.1%}  "
            f"{f.get('by_code', 'history').get(code, 0):>10,} "
            f"{f.share('by_code', 'history', code):>6.1%}")
    lines += ["", f"{'borough':<14} {'drones':>8} {'share':>6}  {'history':>10} {'share':>6}"]
    for b in sorted(set(f.get("by_borough", "drone")) | set(f.get("by_borough", "history"))):
        lines.append(f"{b:<14} {f.get('by_borough', 'drone').get(b, 0):>8,} "
                     f"{f.share('by_borough', 'drone', b):>6.1%}  "
                     f"{f.get('by_borough', 'history').get(b, 0):>10,} "
                     f"{f.share('by_borough', 'history', b):>6.1%}")
    drones = f.get("by_drone", "drone")
    lines += ["", "per drone: " + ", ".join(f"{d} {n:,}" for d, n in sorted(drones.items()))]
    buckets = f.get("decision_bucket", "drone")
    order = [name for _, name in DECISION_BUCKETS] + [LAST_BUCKET]
    lines.append("time to decision: " + ", ".join(f"{b} {buckets.get(b, 0):,}" for b in order))
    return "\n".join(lines)


def _charts(f: Figures, out: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt

    made: list[tuple[str, str]] = []

    def save(fig: Any, name: str, title: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
        made.append((name, title))

    hours = [str(h) for h in range(24)]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for source, offset in (("drone", -0.2), ("history", 0.2)):
        ax.bar([h + offset for h in range(24)],
               [100 * f.share("by_hour", source, h) for h in hours], 0.4, label=source)
    ax.set(xlabel="hour of day (New York)", ylabel="% of violations", xticks=range(0, 24, 2))
    ax.legend()
    save(fig, "per_hour.png", "Violations per hour of day")

    for stat, keys, name, title in (
        ("by_code", f.top_codes(), "codes.png", "Top violation codes, drones vs history"),
        ("by_borough", sorted(set(f.get("by_borough", "drone"))
                              | set(f.get("by_borough", "history"))),
         "boroughs.png", "Violations per borough, drones vs history"),
    ):
        fig, ax = plt.subplots(figsize=(8, 3.2))
        xs = range(len(keys))
        for source, offset in (("drone", -0.2), ("history", 0.2)):
            ax.bar([x + offset for x in xs], [100 * f.share(stat, source, k) for k in keys], 0.4,
                   label=source)
        ax.set(xticks=list(xs), ylabel="% of violations")
        ax.set_xticklabels(keys, rotation=30 if stat == "by_borough" else 0)
        ax.legend()
        save(fig, name, title)

    days = f.days()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.plot([d for d, _, _ in days], [100 * i / n if n else 0 for _, n, i in days], marker="o")
    ax.set(ylabel="% set or changed by an officer", ylim=(0, None))
    ax.tick_params(axis="x", rotation=30)
    save(fig, "interventions.png", "Officer intervention rate per day")

    order = [name for _, name in DECISION_BUCKETS] + [LAST_BUCKET]
    buckets = f.get("decision_bucket", "drone")
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.bar(order, [buckets.get(b, 0) for b in order])
    ax.set(xlabel="queue time to an officer's decision", ylabel="violations")
    save(fig, "decisions.png", "Time from the gateway to an officer's decision")
    return made


def _html(f: Figures, charts: list[tuple[str, str]], text: str) -> str:
    imgs = "\n".join(f'<h2>{html.escape(title)}</h2><img src="{name}" alt="{html.escape(title)}">'
                     for name, title in charts)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>PresaCop statistics</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}
pre{{background:#f4f4f4;padding:1em;overflow-x:auto}}</style></head>
<body><h1>PresaCop statistics</h1>
<pre>{html.escape(text)}</pre>
{imgs}
</body></html>
"""
