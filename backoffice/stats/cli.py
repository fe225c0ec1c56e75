"""Archive every Kafka record to Parquet and compute the statistics on Spark; report them.

  presacop stats run [--master URL] [--once]   Structured Streaming: the archive (Parquet,
                                               partitioned by topic and date) and the statistics,
                                               exactly once across restarts (checkpoints)
  presacop stats report --out DIR              static HTML + PNG charts, and the same figures as
                                               a table on the terminal

Exit codes: 0 done (run: stopped by SIGTERM/SIGINT, or --once finished), 1 a query failed,
2 bad config or no statistics yet. Configuration and cluster use: docs/statistics.md.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="stats_command", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="run the archive and statistics queries on Spark")
    run.add_argument("--config", "-c", metavar="FILE", default=None,
                     help="backoffice TOML (default: built-in defaults for the local stack)")
    run.add_argument("--master", default=None,
                     help="Spark master URL (default: stats.master, local[2])")
    run.add_argument("--once", action="store_true",
                     help="process what is in Kafka now, then exit (availableNow)")
    report = sub.add_parser("report", help="write the HTML report and print the figures")
    report.add_argument("--config", "-c", metavar="FILE", default=None)
    report.add_argument("--out", required=True, metavar="DIR", help="output directory")


def run(args: argparse.Namespace) -> int:
    from backoffice.config import load_for_cli

    cfg = load_for_cli(args.config, f"presacop stats {args.stats_command}")
    if cfg is None:
        return 2
    if args.stats_command == "report":
        return _report(cfg, args.out)
    return _run(cfg, args.master, args.once)


def _run(cfg: object, master: str | None, once: bool) -> int:
    from .jars import JarError
    from .job import StatsJob
    from .spark import stop_session

    try:
        job = StatsJob(cfg, master)  # type: ignore[arg-type]
    except JarError as exc:
        print(f"presacop stats run: {exc}", file=sys.stderr)
        return 2

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        job.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        job.start(once)
        job.wait()
    except Exception as exc:  # a failed query: Spark's StreamingQueryException and its causes
        print(f"presacop stats run: a query failed: {exc}", file=sys.stderr)
        return 1
    finally:
        job.close()
        stop_session(job.spark)
    return 0


def _report(cfg: object, out: str) -> int:
    from .report import ReportError, write_report

    try:
        text = write_report(cfg, out)  # type: ignore[arg-type]
    except ReportError as exc:
        print(f"presacop stats report: {exc}", file=sys.stderr)
        return 2
    print(text)
    return 0
