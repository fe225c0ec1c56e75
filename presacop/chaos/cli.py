"""Fault run on this machine: every message the drones accepted reaches Kafka once, whatever breaks.

It starts its own Mosquitto and Kafka (on free ports, in a temporary directory: it kills them, so
it never uses a stack others rely on), the gateway, and N real drone agents, each in its own
process behind its own link proxy, uploading evidence images. Then, one at a time on a seeded
irregular schedule: gateway kill -9 and SIGSTOP, Mosquitto kill -9 and graceful restart, Kafka
stop and SIGSTOP, a drone's agent kill -9, a drone's link cut or stalled; each fault's recovery is
timed. Each agent appends every message it accepts to an fsync'ed ledger, which survives its own
kill -9. At the end the cameras stop, outboxes and uploads drain, and the ledgers are compared with
the topics: accepted / unique / lost / duplicates per topic, dead letters, outbox leftovers, seq
gaps, recovery per fault.

Exit codes: 0 nothing lost, nothing written twice, everything drained and recovered; 1 otherwise
(or the run could not set itself up); 2 a bad flag; 130 interrupted. Details: docs/chaos.md.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

from hw_sim.cli import _float_in, _int_in  # the simulator's flag checks (range, NaN)
from presacop.chaos.plan import KINDS

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class Interrupted(Exception):
    """SIGTERM or Ctrl-C: clean up and exit 130."""


def _kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"unknown fault kinds {unknown}; known: "
                                         f"{', '.join(KINDS)}")
    return kinds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--drones", type=_int_in("--drones", 1, 32), default=4, metavar="N",
                        help="drone agent processes (default 4)")
    parser.add_argument("--duration", type=_float_in("--duration", 30, 24 * 3600), default=120.0,
                        metavar="S", help="seconds of faults (default 120), then the drain")
    parser.add_argument("--gateways", type=_int_in("--gateways", 1, 4), default=1, metavar="G",
                        help="gateways in one share group (default 1)")
    parser.add_argument("--seed", type=int, default=None, metavar="K",
                        help="the fault schedule and the drones' worlds (default: random, shown)")
    parser.add_argument("--faults", type=_kinds, default=tuple(KINDS), metavar="K1,K2",
                        help=f"fault kinds to use (default all: {', '.join(KINDS)})")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the run's directory (logs, ledgers) even when it passes")


def run(args: argparse.Namespace) -> int:
    from presacop.chaos.run import Chaos

    out = sys.stderr if args.json else sys.stdout

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    def interrupted(_sig: int, _frame: object) -> None:
        raise Interrupted()

    previous = signal.signal(signal.SIGTERM, interrupted)
    chaos = None
    summary: dict[str, Any] | None = None
    code = EXIT_FAILED
    try:
        chaos = Chaos(args, say)
        summary = chaos.run()
        code = EXIT_OK if summary["ok"] else EXIT_FAILED
    except (Interrupted, KeyboardInterrupt):
        say("presacop chaos: interrupted; cleaning up")
        code = EXIT_INTERRUPTED
    except ValueError as exc:
        say(f"presacop chaos: {exc}")
        code = EXIT_USAGE
    except Exception as exc:  # the run could not go on: say why, clean up, exit 1
        say(f"presacop chaos: {type(exc).__name__}: {exc}")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the cleanup must not be cut short
        if chaos is not None:
            chaos.cleanup(keep_workdir=args.keep_logs or code != EXIT_OK)
        signal.signal(signal.SIGTERM, previous)
    if summary is not None:
        print(json.dumps(summary, sort_keys=True) if args.json else render(summary), flush=True)
    return code


def render(s: dict[str, Any]) -> str:
    """The summary as the table docs/chaos.md shows."""
    lines = [f"chaos {s['run_id']}: {s['drones']} drones, {s['gateways']} gateway(s), "
             f"{s['duration_s']:.0f} s, seed "
             f"{s['seed']}, {len(s['faults'])} faults; gateway started {s['gateway_starts']}x,"
             f" drone processes {s['drone_starts']}x",
             "",
             f"{'topic':<12}{'accepted':>10}{'records':>10}{'unique':>10}{'duplicates':>12}"
             f"{'lost':>7}"]
    for role, t in s["topics"].items():
        accepted = t.get("accepted", "-")
        lost = t.get("lost", "-")
        lines.append(f"{role:<12}{accepted!s:>10}{t['records']:>10}{t['unique']:>10}"
                     f"{t['duplicates']:>12}{lost!s:>7}")
        if t.get("lost_ids"):
            lines.append(f"{'':<12}lost e.g. {', '.join(t['lost_ids'][:5])}")
    reasons = s["topics"].get("deadletter", {}).get("reasons") or {}
    g = s["gaps"]
    lines += ["",
              f"dead letters: {sum(reasons.values())} {reasons if reasons else ''}".rstrip(),
              f"outbox leftovers: {s['outbox_leftovers']}; evidence uploads pending: "
              f"{s['uploads_pending']}; drained in "
              + (f"{s['drained_s']:.0f} s" if s.get("drained_s") is not None else "NOT drained"),
              f"seq gaps in Kafka: {g['missing']} unexplained, {g['forgotten_wills']} wills a "
              f"broker crash forgot, {g['lost_online_status']} online statuses lost with their "
              "connection",
              "",
              f"{'fault':<20}{'at s':>8}{'length s':>10}{'recovery s':>12}  target"]
    for f in s["faults"]:
        rec = "NOT RECOVERED" if f["recovery_s"] is None else f"{f['recovery_s']:.1f}"
        who = f["drone"] or (f"gateway {f['gateway']}" if f.get("gateway") and
                             s["gateways"] > 1 else "")
        lines.append(f"{f['kind']:<20}{f['at_s']:>8.1f}{f['length_s']:>10.1f}{rec:>12}  {who}")
    lines += ["", f"RESULT: {'PASS' if s['ok'] else 'FAIL'}: {s['lost']} lost, "
              f"{s['duplicates']} duplicates"]
    return "\n".join(lines)
