"""The `presacop` command: one entry point, one subcommand per job.

Each subcommand lives in the package that owns the job and is imported only when chosen, so a
drone without the gateway extra can still run `presacop agent`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

# name -> (module, help). The module exposes `add_arguments(parser)` and `run(args) -> int`.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "stack": ("presacop.stack.cli", "start, stop or inspect the local Mosquitto + Kafka stack"),
    "gateway": ("gateway.cli", "run the MQTT -> Kafka gateway service"),
    "agent": ("drone_agent.cli", "run the drone agent (camera, recognizer, outbox, MQTT)"),
    "sim": ("presacop.sim", "run a fleet of simulated drones with real agents"),
    "review": ("backoffice.review.cli", "the officer console: serve it, manage its accounts"),
    "demo": ("presacop.demo.cli",
             "run the whole pipeline on this machine and check nothing is lost"),
    "chaos": ("presacop.chaos.cli", "fault run: kill brokers, gateway, agents; check Kafka"),
    "history": ("backoffice.history.cli", "NYPD history: sample CSV, or ingest one into Kafka"),
    "stats": ("backoffice.stats.cli", "archive + statistics on Spark, and their report"),
    "keys": ("presacop.keys", "generate a drone's Ed25519 signing key pair"),
    "verify": ("backoffice.verify", "check the drones' signatures on violation records, offline"),
    "evidence": ("backoffice.evidence", "evidence retention: gc [--dry-run]"),
}


def build_parser() -> tuple[
    argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]
]:
    parser = argparse.ArgumentParser(
        prog="presacop",
        description="PresaCop edge: drones -> MQTT -> gateway -> Kafka.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    runners: dict[str, Callable[[argparse.Namespace], int]] = {}
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            # A machine without an extra still gets a working `presacop --help` and a clear reason.
            p = sub.add_parser(name, help=f"{help_text} (unavailable: {exc})")
            runners[name] = _unavailable(name, exc)
            continue
        p = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(p)
        runners[name] = module.run
    return parser, runners


def _unavailable(name: str, exc: ImportError) -> Callable[[argparse.Namespace], int]:
    def run(_args: argparse.Namespace) -> int:
        print(
            f"presacop {name}: not installed on this machine ({exc}); "
            "install the matching extra, e.g. pip install 'presacop[gateway]'",
            file=sys.stderr,
        )
        return 2

    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser, runners = build_parser()
    args = parser.parse_args(argv)
    return runners[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
