"""One fleet of simulated drones in this process: the flags, the flight, the landing and the
report of `presacop sim` (`presacop/sim.py`, which also spreads a fleet over several processes by
running `python -m hw_sim.cli --child` for each part).

Real drone agents on simulated hardware, each connected to the MQTT broker through its own TCP link
proxy that can cut the link for real (--link-faults). Exit codes as `presacop sim`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

_COLUMNS = (("violations", "violations"), ("unqualified", "unqual"), ("published", "published"),
            ("acked", "acked"), ("outbox_depth", "queued"), ("reconnects", "reconnects"),
            ("link_cuts", "cuts"), ("link_bytes_up", "bytes up"))


class Stop(Exception):
    """SIGTERM (or SIGINT) arrived: stop the fleet cleanly and report."""


# -- flags -----------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--drones", type=_int_in("--drones", 1, 1000), default=3, metavar="N",
                        help="number of drones (1..1000, default 3)")
    parser.add_argument("--broker", type=broker_address, default=("127.0.0.1", 1883),
                        metavar="HOST:PORT", help="MQTT broker on this machine "
                        "(default 127.0.0.1:1883; `presacop stack status` shows yours)")
    parser.add_argument("--duration", type=_float_in("--duration", 0, 7 * 86400), default=60.0,
                        metavar="S", help="seconds to fly; 0 = until Ctrl-C (default 60)")
    parser.add_argument("--seed", type=int, default=0, metavar="K",
                        help="seed for streets, plates, routes and faults (default 0)")
    parser.add_argument("--data-dir", type=Path, default=None, metavar="D",
                        help="where each drone keeps its outbox and evidence (D/<drone id>); "
                        "default: a temporary directory, deleted at the end")
    parser.add_argument("--link-faults", type=_link_faults, default=None, metavar="SPEC",
                        help="random link cuts per drone: none (default) or "
                        "every=SECONDS,down=SECONDS[,mode=reset|stall][,jitter=0..1]")
    parser.add_argument("--fps", type=_float_in("--fps", 0.1, 60), default=2.0,
                        help="camera frames per second per drone (default 2)")
    parser.add_argument("--resolution", type=_resolution, default=(1280, 720), metavar="WxH",
                        help="camera resolution (default 1280x720)")
    parser.add_argument("--violation-rate", type=_float_in("--violation-rate", 0, 1),
                        default=0.3, metavar="R", help="share of parked cars in violation "
                        "(default 0.3)")
    parser.add_argument("--unqualified-rate", type=_float_in("--unqualified-rate", 0, 1),
                        default=0.01, metavar="R", help="share of violations the "
                        "simulated recognizer cannot qualify (default 0.01)")
    parser.add_argument("--processes", type=_int_in("--processes", 1, 64), default=1, metavar="P",
                        help="spread the drones over P processes (default 1)")
    parser.add_argument("--drain", type=_float_in("--drain", 0, 3600), default=30.0, metavar="S",
                        help="at the end, wait up to S seconds for outboxes to empty (default 30)")
    parser.add_argument("--interval", type=_float_in("--interval", 0.2, 3600), default=2.0,
                        metavar="S", help="seconds between live lines (default 2)")
    parser.add_argument("--json", action="store_true",
                        help="print the final summary as one JSON object on stdout")
    parser.add_argument("--quiet", action="store_true", help="no live lines")
    parser.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        default="ERROR", help="agent and simulator log lines to stderr "
                        "(default ERROR: the reconnect warnings a link cut causes are expected)")
    parser.add_argument("--position-source", choices=("route", "mavlink"), default="route",
                        help="route: agents read the simulated GPS directly; mavlink: each drone "
                             "flies on a simulated autopilot its agent reads over MAVLink 2 (UDP)")
    # For --processes: a child runs drones first-index.. and reports JSON lines to its parent.
    parser.add_argument("--first-index", type=_int_in("--first-index", 0, 9999), default=1,
                        help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)


def broker_address(text: str) -> tuple[str, int]:
    """Parse HOST:PORT ([::1]:PORT for IPv6); the host must be this machine (loopback)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        port = int(port_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port in {text!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1..65535, got {port}")
    try:
        addr = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)[0][4][0]
    except (socket.gaierror, UnicodeError):
        raise argparse.ArgumentTypeError(f"host {host!r} does not resolve") from None
    if not (addr.startswith("127.") or addr == "::1"):
        raise argparse.ArgumentTypeError(
            f"host {host!r} is {addr}, not this machine: the simulator only talks to a loopback "
            "broker")
    return host, port


def _int_in(flag: str, lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be {lo}..{hi}, got {value}")
        return value

    parse.__name__ = flag  # argparse names the flag in its message already
    return parse


def _float_in(flag: str, lo: float, hi: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not (math.isfinite(value) and lo <= value <= hi):
            raise argparse.ArgumentTypeError(f"must be {lo:g}..{hi:g}, got {text}")
        return value

    parse.__name__ = flag
    return parse


def _resolution(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit():
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 1280x720, got {text!r}")
    width, height = int(w), int(h)
    if not (160 <= width <= 7680 and 120 <= height <= 4320):
        raise argparse.ArgumentTypeError(f"{text} is outside 160x120..7680x4320")
    return width, height


def _link_faults(text: str) -> Any:
    from hw_sim.faults import LinkFaults

    try:
        return LinkFaults.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# -- run -------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """Fly the whole fleet in this process (`--processes` is `presacop sim`'s job)."""
    if args.processes > 1 and not args.child:
        print("hw_sim.cli: --processes needs `presacop sim` (python -m presacop.sim)",
              file=sys.stderr)
        return 2
    with session(args):
        return _run_fleet(args)


@contextlib.contextmanager
def session(args: argparse.Namespace) -> Iterator[None]:
    """A temporary --data-dir if none was given (deleted after), logging to stderr, and SIGTERM
    raising `Stop` (Ctrl-C raises KeyboardInterrupt), restored after."""
    temp_dir = None
    if args.data_dir is None:
        temp_dir = Path(tempfile.mkdtemp(prefix="presacop-sim-"))
        args.data_dir = temp_dir
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
    previous = {sig: signal.signal(sig, handler) for sig, handler in
                ((signal.SIGTERM, _raise_stop), (signal.SIGINT, signal.default_int_handler))}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


def _raise_stop(_signum: int, _frame: FrameType | None) -> None:
    raise Stop()


def ignore_stop_signals() -> None:
    """After the first Ctrl-C or SIGTERM, landing (bounded by --drain) must not be cut short:
    an exception raised in the middle of stopping agents would leave threads behind."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_fleet(args: argparse.Namespace) -> int:
    from hw_sim import SimError
    from hw_sim.fleet import Fleet

    out = sys.stderr if (args.json or args.child) else sys.stdout
    try:
        fleet = Fleet(args.drones, *args.broker, args.data_dir, seed=args.seed,
                      camera={"width": args.resolution[0], "height": args.resolution[1],
                              "fps": args.fps, "violation_rate": args.violation_rate},
                      recognizer={"unqualified_rate": args.unqualified_rate},
                      link_faults=args.link_faults, first_index=args.first_index,
                      autopilot=args.position_source == "mavlink")
    except ValueError as exc:
        print(f"presacop sim: {exc}", file=sys.stderr)
        return 2
    try:
        fleet.start()
    except SimError as exc:  # the fleet stopped whatever it had started
        print(f"presacop sim: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Stop):  # likewise
        return 130
    interrupted = False
    try:
        _fly(fleet, args, out)
    except (KeyboardInterrupt, Stop):
        interrupted = True
        ignore_stop_signals()
    finally:
        drained = _land(fleet, args, out)
    summary = _summary(fleet.stats(), _routes(fleet), fleet.events(), drained, args)
    report(summary, args)
    if interrupted:
        return 130
    return 0 if drained else 1


def _fly(fleet: Any, args: argparse.Namespace, out: IO[str]) -> None:
    """Run for args.duration (forever if 0), printing a live line every args.interval."""
    start = time.monotonic()
    end = start + args.duration if args.duration > 0 else math.inf
    while True:
        now = time.monotonic()
        if now >= end:
            return
        time.sleep(min(args.interval, end - now))
        stats = fleet.stats()
        if args.child:
            print(json.dumps({"live": stats}), flush=True)
        elif not args.quiet:
            print(live_line(stats["elapsed_s"], stats["totals"], len(stats["drones"])),
                  file=out, flush=True)


def _land(fleet: Any, args: argparse.Namespace, out: IO[str]) -> bool:
    """Restore links, wait for the outboxes to drain, stop. True if everything was acked."""
    fleet.restore_links()
    if not args.quiet and not args.child:
        print(f"landing: waiting up to {args.drain:g} s for outboxes to drain...", file=out,
              flush=True)
    drained = fleet.wait_drained(args.drain)
    fleet.stop()
    return drained and fleet.stats()["totals"].get("outbox_depth", 0) == 0


def _routes(fleet: Any) -> dict[str, str]:
    return {drone_id: d.position.route.name for drone_id, d in fleet.drones.items()}


# -- output ----------------------------------------------------------------------------------------


def live_line(elapsed: float, totals: dict[str, int], drones: int) -> str:
    return (f"[{elapsed:6.0f}s] drones {totals.get('link_up', 0)}/{drones} linked | "
            f"frames {totals.get('captured', 0)} | violations {totals.get('violations', 0)} "
            f"(unqualified {totals.get('unqualified', 0)}) | published "
            f"{totals.get('published', 0)} acked {totals.get('acked', 0)} | "
            f"queued {totals.get('outbox_depth', 0)} | reconnects "
            f"{totals.get('reconnects', 0)} | link cuts {totals.get('link_cuts', 0)}")


def _summary(stats: dict[str, Any], routes: dict[str, str], events: list[Any], drained: bool,
             args: argparse.Namespace) -> dict[str, Any]:
    drones = {drone_id: {"route": routes.get(drone_id, ""),
                         **{k: row.get(k, 0) for k, _ in _COLUMNS},
                         "accepted": row.get("accepted", 0), "captured": row.get("captured", 0),
                         "telemetry": row.get("telemetry", 0), "refused": row.get("refused", 0),
                         "mavlink_messages": row.get("mavlink_messages", 0)}  # from the autopilot
              for drone_id, row in stats["drones"].items()}
    return {"drones": drones, "totals": add_totals(list(drones.values())),
            "elapsed_s": stats["elapsed_s"],
            "link_faults": sum(1 for e in events if e.action in ("cut", "stall")),
            "drained": drained,
            "seed": args.seed}


def add_totals(rows: list[dict[str, Any]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for row in rows:
        for key, value in row.items():
            if isinstance(value, int) and not isinstance(value, bool):
                totals[key] = totals.get(key, 0) + value
    return totals


def report(summary: dict[str, Any], args: argparse.Namespace) -> None:
    if args.child:
        print(json.dumps({"summary": summary}), flush=True)
    elif args.json:
        print(json.dumps(summary, sort_keys=True), flush=True)
    else:
        print(_table(summary), flush=True)


def _table(summary: dict[str, Any]) -> str:
    headers = ["drone", "route"] + [title for _, title in _COLUMNS]
    rows = [[drone_id, row["route"]] + [str(row.get(k, 0)) for k, _ in _COLUMNS]
            for drone_id, row in summary["drones"].items()]
    totals = summary["totals"]
    rows.append(["total", ""] + [str(totals.get(k, 0)) for k, _ in _COLUMNS])
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    body = [line(headers), line(["-" * w for w in widths]), *map(line, rows[:-1]),
            line(["-" * w for w in widths]), line(rows[-1])]
    verdict = ("every accepted violation was acknowledged by the broker" if summary["drained"]
               else "some messages are still queued in the outboxes (on disk, not lost)")
    body.append(f"\n{len(summary['drones'])} drones, {summary['elapsed_s']:.0f} s, "
                f"{summary['link_faults']} link cuts, seed {summary['seed']}: {verdict}")
    return "\n".join(body)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m hw_sim.cli`: one fleet in this process (`presacop sim --processes` runs one per
    part with --child)."""
    parser = argparse.ArgumentParser(prog="python -m hw_sim.cli", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
