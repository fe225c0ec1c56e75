"""Run the whole pipeline on this machine for a short time and check that nothing was lost.

It needs no configuration. It brings up the local stack (Mosquitto + Kafka, as `presacop stack up`
does) unless it already runs, starts a gateway and a fleet of simulated drones (real agents on
simulated hardware, each talking to the broker through its own link proxy), cuts some drones'
links while they fly, and shows live progress. At the end the drones drain their outboxes, the
gateway delivers what is left, and a summary checks itself against what Kafka holds: every
violation and telemetry message the drones accepted is there (compared by message id), every
unqualified violation raised its alert, nothing went to the dead-letter topic. It stops everything
it started (the stack too, unless --keep-stack), also on failure and on Ctrl-C or SIGTERM.

Exit codes: 0 nothing lost and every check passed; 1 something lost, a check failed or the
pipeline could not run; 2 a bad flag; 130 interrupted. Details: docs/demo.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from hw_sim import SimError
from presacop.demo.errors import DemoError, Interrupted
from presacop.demo.progress import Progress
from presacop.demo.report import render
from presacop.demo.run import Demo

DEFAULT_DRONES = 4
DEFAULT_DURATION_S = 45.0
DEFAULT_LINK_CUTS = 4
MAX_DRONES = 64
MIN_DURATION_S = 10.0  # time for a cut, the reconnection and some traffic after it
MAX_DURATION_S = 24 * 3600.0
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


# -- flags -----------------------------------------------------------------------------------


def _int_between(lo: int, hi: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{what} must be a whole number, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{what} must be between {lo} and {hi}, got {value}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not MIN_DURATION_S <= value <= MAX_DURATION_S:
        raise argparse.ArgumentTypeError(
            f"must be between {MIN_DURATION_S:.0f} and {MAX_DURATION_S:.0f} seconds, got {text}")
    return value


def _endpoint(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--drones", type=_int_between(1, MAX_DRONES, "the number of drones"),
                        default=DEFAULT_DRONES, metavar="N",
                        help=f"simulated drones (default {DEFAULT_DRONES})")
    parser.add_argument("--duration", type=_seconds, default=DEFAULT_DURATION_S, metavar="S",
                        help=f"seconds the drones fly, before the drain (default "
                        f"{DEFAULT_DURATION_S:.0f})")
    parser.add_argument("--link-cuts", type=_int_between(0, 1000, "the number of link cuts"),
                        default=DEFAULT_LINK_CUTS, metavar="N",
                        help=f"link cuts to inject: one always cuts the first drone at 20%% "
                        f"of the flight, the others hit random drones at random times, all "
                        f"restored by 80%% (default {DEFAULT_LINK_CUTS})")
    parser.add_argument("--seed", type=_int_between(0, 2**31 - 1, "the seed"), default=None,
                        help="seed of the drones' hardware and the link cuts (default: random, "
                        "printed in the summary)")
    parser.add_argument("--position-source", choices=("route", "mavlink"), default="route",
                        help="mavlink: each drone flies on a simulated autopilot that its agent "
                        "reads over MAVLink 2 on UDP (default route: the simulated GPS directly)")
    parser.add_argument("--json", action="store_true",
                        help="print the summary as one JSON object on stdout (progress goes to "
                        "stderr)")
    parser.add_argument("--mqtt", type=_endpoint, metavar="HOST:PORT", default=None,
                        help="use this running Mosquitto instead of the local stack "
                        "(with --kafka)")
    parser.add_argument("--kafka", type=_endpoint, metavar="HOST:PORT", default=None,
                        help="use this running Kafka instead of the local stack (with --mqtt)")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="the local stack's state directory (default as `presacop stack`: "
                        "$PRESACOP_STATE_DIR or ~/.local/state/presacop/stack)")
    parser.add_argument("--keep-stack", action="store_true",
                        help="leave the local stack running if the demo started it")
    parser.add_argument("--keep-topics", action="store_true",
                        help="keep this run's Kafka topics (presacop.demo.<run>.*) to look at "
                        "them afterwards; by default they are deleted")


# -- running ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM raises Interrupted (Ctrl-C already raises KeyboardInterrupt), so that the
    `finally` of the run cleans up."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise Interrupted

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (a test calling run()): nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def _shielded(say: Callable[[str], None]) -> Iterator[None]:
    """While cleaning up, a second Ctrl-C or SIGTERM must not leave processes behind: the
    cleanup's steps are bounded, so signals only get a note."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        say("presacop demo: still cleaning up (every step is bounded), please wait")

    try:
        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def run(args: argparse.Namespace) -> int:
    from presacop.stack import StackError

    if (args.mqtt is None) != (args.kafka is None):
        given, needed = ("--mqtt", "--kafka") if args.kafka is None else ("--kafka", "--mqtt")
        print(f"presacop demo: {given} needs {needed} too (both brokers of one stack), or give "
              "neither to use the local stack", file=sys.stderr)
        return EXIT_USAGE
    progress = Progress(sys.stderr if args.json else sys.stdout)
    demo = Demo(args, progress)
    summary: dict[str, Any] | None = None
    code = EXIT_FAILED
    try:
        with _signals_raise():
            summary = demo.run()
        code = EXIT_OK if summary["ok"] else EXIT_FAILED
    except (KeyboardInterrupt, Interrupted):
        progress.say("interrupted: stopping everything the demo started ...")
        code = EXIT_INTERRUPTED
    except (DemoError, StackError, SimError) as exc:
        progress.clear()
        print(f"presacop demo: {exc}", file=sys.stderr, flush=True)
        code = EXIT_FAILED
    finally:
        with _shielded(progress.say):
            demo.cleanup(keep_workdir=code == EXIT_FAILED)
    if summary is not None:
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            progress.say("")
            print(render(summary))
    return code
