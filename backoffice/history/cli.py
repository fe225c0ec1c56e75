"""The NYPD "Parking Violations Issued" history: make a sample file, or stream a file into Kafka.

  presacop history sample --rows N --out FILE[.gz]    seeded, realistic, with the data set's quirks
  presacop history ingest FILE[.csv|.csv.gz]          normalized records -> the history topic, bad
                                                      rows -> the dead-letter topic; resumable:
                                                      run the same command again after a crash

Exit codes: 0 done, 1 Kafka did not acknowledge (rerun to resume), 2 bad config, flag or input.
Records: docs/kafka-records.md ("History records"); configuration: docs/statistics.md.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="history_command", metavar="ACTION", required=True)
    sample = sub.add_parser("sample", help="write a seeded sample file in the data set's schema")
    sample.add_argument("--rows", type=int, required=True, help="data rows to write")
    sample.add_argument("--out", required=True, metavar="FILE", help="output (.gz: gzip)")
    sample.add_argument("--seed", type=int, default=17, help="same seed, same file (default 17)")
    sample.add_argument("--bad-fraction", type=float, default=0.001,
                        help="share of deliberately bad rows (default 0.001)")
    ingest = sub.add_parser("ingest", help="stream a CSV (or .csv.gz) into Kafka, resumably")
    ingest.add_argument("file", metavar="FILE")
    ingest.add_argument("--config", "-c", metavar="FILE", default=None,
                        help="backoffice TOML (default: built-in defaults for the local stack)")
    ingest.add_argument("--restart", action="store_true",
                        help="forget this file's checkpoint and send it all again (duplicates "
                        "whatever an earlier run sent)")


def run(args: argparse.Namespace) -> int:
    if args.history_command == "sample":
        return _sample(args)
    return _ingest(args)


def _sample(args: argparse.Namespace) -> int:
    from .sample import write_sample

    if args.rows < 0 or not 0 <= args.bad_fraction <= 1:
        print("presacop history sample: --rows must be >= 0 and --bad-fraction in [0, 1]",
              file=sys.stderr)
        return 2
    try:
        done = write_sample(args.out, args.rows, seed=args.seed, bad_fraction=args.bad_fraction)
    except OSError as exc:
        print(f"presacop history sample: {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"wrote {done.rows:,} rows ({done.bad_rows:,} bad on purpose) to {done.path}")
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from backoffice.config import load_for_cli

    from .ingest import DeliveryError, InputError, ingest

    cfg = load_for_cli(args.config, "presacop history ingest")
    if cfg is None:
        return 2
    try:
        summary = ingest(cfg, args.file, progress=sys.stderr, restart=args.restart)
    except InputError as exc:
        print(f"presacop history ingest: {exc}", file=sys.stderr)
        return 2
    except DeliveryError as exc:
        print(f"presacop history ingest: {exc}", file=sys.stderr)
        return 1
    print(summary.text())
    return 0
