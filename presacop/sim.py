"""Run a fleet of simulated drones: real drone agents on simulated hardware (NYC street camera,
GPS flying NYC routes, draining battery, the simulator's recognizer), each connected to the MQTT
broker through its own TCP link proxy that can cut the link for real (--link-faults).

Prints live counts while it runs and a per-drone summary at the end; exits 0 when every
violation the agents accepted was acknowledged by the broker, 1 when some are still queued in an
outbox (kept on disk in --data-dir, not lost), 2 for bad flags or a fleet that cannot start,
130 when interrupted.

Examples:
  presacop sim --drones 3 --broker 127.0.0.1:1883 --duration 60
  presacop sim --drones 20 --processes 2 --link-faults every=30,down=5 --json
  presacop sim --drones 2 --position-source mavlink   # each on a simulated MAVLink autopilot
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from common.proc import ChildProcess
from hw_sim.cli import (
    Stop,
    add_arguments,
    add_totals,
    ignore_stop_signals,
    live_line,
    report,
    session,
)
from hw_sim.cli import run as run_in_this_process

__all__ = ["add_arguments", "run"]


def run(args: argparse.Namespace) -> int:
    """Fly the fleet, in this process or spread over `--processes`; exit codes above."""
    if args.processes == 1 or args.child:
        return run_in_this_process(args)
    with session(args):
        return _run_parent(args)


def _run_parent(args: argparse.Namespace) -> int:
    """Split the drones over child `python -m hw_sim.cli --child` processes and merge their
    reports."""
    out = sys.stderr if args.json else sys.stdout
    children: list[_Child] = []
    share, extra = divmod(args.drones, args.processes)
    first = args.first_index
    for i in range(args.processes):
        count = share + (1 if i < extra else 0)
        if count:
            children.append(_Child(_child_command(args, count, first)))
            first += count
    interrupted = False
    try:
        while any(c.running() for c in children):
            time.sleep(args.interval)
            if not args.quiet and any(c.live for c in children):
                totals = add_totals([c.live.get("totals", {}) for c in children])
                drones = sum(len(c.live.get("drones", {})) for c in children)
                elapsed = max((c.live.get("elapsed_s", 0.0) for c in children), default=0.0)
                print(live_line(elapsed, totals, drones), file=out, flush=True)
    except (KeyboardInterrupt, Stop) as exc:
        interrupted = True
        ignore_stop_signals()
        # Pass the signal on (a Ctrl-C at a terminal reached the children already; they ignore
        # a second one while landing).
        sig = signal.SIGINT if isinstance(exc, KeyboardInterrupt) else signal.SIGTERM
        for c in children:
            c.signal(sig)
    codes = [c.wait() for c in children]
    finals = [c.final for c in children]
    if any(f is None for f in finals):
        print("presacop sim: a child process failed (see its messages above)", file=sys.stderr)
        return 2 if not interrupted else 130
    summary = _merge_summaries([f for f in finals if f is not None], args)
    report(summary, args)
    if interrupted:
        return 130
    return max(codes)


def _child_command(args: argparse.Namespace, count: int, first: int) -> list[str]:
    host, port = args.broker
    cmd = [sys.executable, "-m", "hw_sim.cli", "--child",
           "--drones", str(count), "--first-index", str(first),
           "--broker", f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
           "--duration", str(args.duration), "--seed", str(args.seed),
           "--data-dir", str(args.data_dir), "--fps", str(args.fps),
           "--resolution", f"{args.resolution[0]}x{args.resolution[1]}",
           "--violation-rate", str(args.violation_rate),
           "--unqualified-rate", str(args.unqualified_rate),
           "--drain", str(args.drain), "--interval", str(args.interval),
           "--log-level", args.log_level]
    cmd += ["--position-source", args.position_source]
    if args.link_faults is not None:
        lf = args.link_faults
        cmd += ["--link-faults",
                f"every={lf.every_s},down={lf.down_s},mode={lf.mode},jitter={lf.jitter}"]
    return cmd


class _Child:
    """A child fleet process (`python -m hw_sim.cli --child`); its JSON lines (live stats, then
    the summary) are read on the ChildProcess's reader thread."""

    def __init__(self, command: Sequence[str]) -> None:
        self.live: dict[str, Any] = {}
        self.final: dict[str, Any] | None = None
        self.process = ChildProcess(command, name="sim-child", on_line=self._line,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"}).start()

    def _line(self, line: str) -> None:
        try:
            msg = json.loads(line)
        except ValueError:
            return
        if "live" in msg:
            self.live = msg["live"]
        elif "summary" in msg:
            self.final = msg["summary"]

    def running(self) -> bool:
        return self.process.running()

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def wait(self) -> int:
        """Its exit code, once it ended and its last line was read."""
        self.process.wait()
        code = self.process.stop()
        assert code is not None
        return code


def _merge_summaries(parts: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    drones: dict[str, Any] = {}
    for part in parts:
        drones.update(part["drones"])
    return {"drones": dict(sorted(drones.items())),
            "totals": add_totals([p["totals"] for p in parts]),
            "elapsed_s": max(p["elapsed_s"] for p in parts),
            "link_faults": sum(p["link_faults"] for p in parts),
            "drained": all(p["drained"] for p in parts), "seed": args.seed}


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m presacop.sim` = `presacop sim`."""
    parser = argparse.ArgumentParser(prog="presacop sim", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
