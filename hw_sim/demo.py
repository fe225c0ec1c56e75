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
import logging
import math
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from hw_sim import SimError

log = logging.getLogger(__name__)

DEFAULT_DRONES = 4
DEFAULT_DURATION_S = 45.0
DEFAULT_LINK_CUTS = 4
MAX_DRONES = 64
MIN_DURATION_S = 10.0  # time for a cut, the reconnection and some traffic after it
MAX_DURATION_S = 24 * 3600.0
ROLES = ("telemetry", "violations", "alerts", "deadletter")
TOPIC_PARTITIONS = 3
GATEWAY_READY_TIMEOUT_S = 60.0
GATEWAY_STOP_TIMEOUT_S = 45.0
DELIVERY_TIMEOUT_S = 60.0  # after the drones stopped: how long the rest may take to reach Kafka
TICK_S = 0.2
TTY_PROGRESS_S = 1.0
LOG_PROGRESS_S = 5.0  # when stdout is a file or a CI log: one full line every few seconds
LATENCY_BASIS = (
    "drone time_ms (1/25 s resolution: up to 40 ms early) to the Kafka record timestamp, which the"
    " gateway's producer sets")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class DemoError(SimError):
    """The demo cannot run: the stack, the gateway, Kafka or the fleet failed to come up."""


class Interrupted(Exception):
    """SIGTERM arrived: stop, clean up, exit 130 (Ctrl-C arrives as KeyboardInterrupt)."""


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


# -- what the drones accepted, and what Kafka holds -----------------------------------------


@dataclass(frozen=True)
class Ledger:
    """What the agents accepted into their durable outboxes (the point from which they promise
    delivery). Violations by message id (the fleet records each one); telemetry as a count per
    drone (ids in Kafka come only from that drone's agent, one per seq, so equal counts mean
    equal sets)."""

    violations: frozenset[str]
    unqualified: frozenset[str]
    telemetry: Mapping[str, int]
    queued: int = 0  # messages still in the outboxes after the drain


@dataclass
class Tally:
    """What this run's Kafka topics hold for this run's drones. Fed by `add`, pure."""

    drones: frozenset[str]
    records: Counter[str] = field(default_factory=Counter)  # role -> records of our drones
    copies: Counter[str] = field(default_factory=Counter)  # message id -> message records
    kinds: dict[str, str] = field(default_factory=dict)  # message id -> kind
    unqualified: set[str] = field(default_factory=set)  # violations with code None
    alerts: Counter[str] = field(default_factory=Counter)  # violation message id -> alerts
    dead_reasons: Counter[str] = field(default_factory=Counter)
    foreign: int = 0  # records of drones that are not ours (another fleet on the same broker)
    unreadable: int = 0  # records that are not the documented JSON
    latencies_ms: list[int] = field(default_factory=list)

    def add(self, role: str, value: bytes | None, timestamp_ms: int) -> None:
        """Count one Kafka record of topic `role`."""
        try:
            record = json.loads(value or b"")
            drone = record.get("drone_id")
        except (ValueError, AttributeError):
            self.unreadable += 1
            return
        if drone not in self.drones:
            self.foreign += 1
            return
        self.records[role] += 1
        try:
            if role == "deadletter":
                self.dead_reasons[str(record.get("reason"))] += 1
            elif role == "alerts":
                self.alerts[record["message_id"]] += 1
            else:
                self._message(record, timestamp_ms)
        except (KeyError, TypeError):
            self.unreadable += 1

    def _message(self, record: Mapping[str, Any], timestamp_ms: int) -> None:
        mid = record["message_id"]
        self.copies[mid] += 1
        if self.copies[mid] > 1:
            return  # a redelivered copy: counted as a duplicate, measured once
        kind = self.kinds[mid] = record["kind"]
        if kind == "violation" and record["code"] is None:
            self.unqualified.add(mid)
        if kind != "status":
            # A status message's time is when its CONNECT was built (a will fires at a link
            # cut, long after): not a delivery latency.
            self.latencies_ms.append(timestamp_ms - int(record["time_ms"]))

    def ids(self, kind: str) -> set[str]:
        return {mid for mid, k in self.kinds.items() if k == kind}

    @property
    def duplicates(self) -> int:
        """Records beyond the first per message id (message records and alerts)."""
        return (sum(n - 1 for n in self.copies.values())
                + sum(n - 1 for n in self.alerts.values()))

    def progress(self) -> dict[str, int]:
        return {role: self.records[role] for role in ROLES}


def percentile(samples: Sequence[int], q: float) -> int | None:
    """Nearest-rank percentile `q` (0..100) of `samples`, None if there are none."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def summarize(ledger: Ledger, tally: Tally, meta: Mapping[str, Any],
              extra_checks: Sequence[Check] = ()) -> dict[str, Any]:
    """The self-checking summary (the --json object); `meta` adds the run's facts."""
    kafka_violations = tally.ids("violation")
    missing_v = sorted(ledger.violations - kafka_violations)
    found_t = Counter(mid.rpartition(":")[0] for mid in tally.ids("telemetry"))
    missing_t = {d: n - found_t[d] for d, n in ledger.telemetry.items() if found_t[d] < n}
    extra_t = sum(max(0, n - ledger.telemetry.get(d, 0)) for d, n in found_t.items())
    unexpected = sorted(kafka_violations - ledger.violations)
    alerted = set(tally.alerts)
    no_alert = sorted(ledger.unqualified - alerted)
    stray_alerts = sorted(alerted - ledger.unqualified)
    telemetry = sum(ledger.telemetry.values())
    lost = len(missing_v) + sum(missing_t.values())
    checks = [
        Check("violations", not missing_v,
              f"{len(ledger.violations) - len(missing_v)} of {len(ledger.violations)} accepted "
              "violations are in Kafka (by message id)" + _some(missing_v)),
        Check("alerts", not no_alert and not stray_alerts,
              f"{len(ledger.unqualified)} unqualified violations, {len(alerted)} with an alert"
              + _some(no_alert, "without an alert") + _some(stray_alerts, "alerts for others")),
        Check("telemetry", not missing_t,
              f"{telemetry - sum(missing_t.values())} of {telemetry} accepted telemetry "
              "messages are in Kafka" + (f"; missing per drone: {missing_t}" if missing_t else "")),
        Check("nothing unknown", not unexpected and not extra_t and not tally.unreadable,
              f"{len(unexpected) + extra_t} messages no agent accepted, {tally.unreadable} "
              "unreadable records" + _some(unexpected, "unknown")),
        Check("dead letters", tally.records["deadletter"] == 0,
              f"{tally.records['deadletter']} dead letters"
              + (f" {dict(tally.dead_reasons)}" if tally.dead_reasons else "")),
        *extra_checks,
    ]
    return {
        "ok": all(c.ok for c in checks),
        **meta,
        "published": {"violations": len(ledger.violations), "unqualified": len(ledger.unqualified),
                      "telemetry": telemetry, "total": len(ledger.violations) + telemetry},
        "delivered": {"violations": len(ledger.violations) - len(missing_v),
                      "telemetry": telemetry - sum(missing_t.values()),
                      "status": len(tally.ids("status")),
                      "total": len(ledger.violations) + telemetry - lost},
        "alerts": len(alerted),
        "deadletter": tally.records["deadletter"],
        "lost": lost,
        "lost_violation_ids": missing_v[:20],
        "still_queued": ledger.queued,
        "duplicates": tally.duplicates,
        "kafka_records": tally.progress(),
        "foreign_records": tally.foreign,
        "latency_ms": {"p50": percentile(tally.latencies_ms, 50),
                       "p99": percentile(tally.latencies_ms, 99),
                       "max": max(tally.latencies_ms, default=None),
                       "basis": LATENCY_BASIS},
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks],
    }


def _some(ids: Sequence[str], what: str = "missing") -> str:
    if not ids:
        return ""
    shown = ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")
    return f"; {len(ids)} {what}: {shown}"


def render(summary: Mapping[str, Any]) -> str:
    """The human summary table."""
    pub, dlv, kafka = summary["published"], summary["delivered"], summary["kafka_records"]
    checks = {c["name"]: "ok" if c["ok"] else "FAIL" for c in summary["checks"]}
    lat = summary["latency_ms"]
    rows = [
        ("violations", pub["violations"], dlv["violations"], checks["violations"]),
        ("  unqualified -> alerts", pub["unqualified"], summary["alerts"], checks["alerts"]),
        ("telemetry", pub["telemetry"], dlv["telemetry"], checks["telemetry"]),
        ("status (online/offline)", "-", dlv["status"], ""),
        ("dead letters", "-", summary["deadletter"], checks["dead letters"]),
        ("duplicates (same message id)", "-", summary["duplicates"], ""),
        ("lost", "-", summary["lost"], "ok" if summary["lost"] == 0 else "FAIL"),
    ]
    lines = [f"{'':30} {'published':>9} {'in Kafka':>9}  check"]
    lines += [f"{name:30} {a:>9} {b:>9}  {c}".rstrip() for name, a, b, c in rows]
    lines += [
        "",
        "Kafka records: " + ", ".join(f"{role} {kafka[role]}" for role in ROLES)
        + f" (topics presacop.demo.{summary.get('run_id', '?')}.*)",
        f"latency: p50 {_ms(lat['p50'])}, p99 {_ms(lat['p99'])}, max {_ms(lat['max'])} "
        f"({lat['basis']})",
        f"link faults injected: {summary.get('link_faults', 0)}"
        + (f" ({summary['link_fault_detail']})" if summary.get("link_fault_detail") else ""),
        "",
        *(f"  [{'ok' if c['ok'] else 'FAIL':>4}] {c['name']}: {c['detail']}"
          for c in summary["checks"]),
        "",
    ]
    failed = sum(not c["ok"] for c in summary["checks"])
    lines.append("OK: nothing lost, every check passed" if summary["ok"]
                 else f"FAILED: {summary['lost']} lost, {failed} check(s) failed")
    return "\n".join(lines)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _ms(value: int | None) -> str:
    return "n/a" if value is None else f"{value} ms"


# -- link faults -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Cut:
    """Drone `drone` (index) loses its link from `at_s` for `length_s` seconds."""

    at_s: float
    drone: int
    length_s: float

    @property
    def end_s(self) -> float:
        return self.at_s + self.length_s


def plan_cuts(count: int, drones: int, duration_s: float, rng: random.Random) -> list[Cut]:
    """`count` link cuts, in time order: one on drone 0 at 20% of the flight, others at random.

    Every cut ends by 80% of the flight, so each drone reconnects and keeps flying before the
    drain. Cuts of one drone never overlap (an overlap would be one fault, not two).
    """
    if count == 0:
        return []
    last_end = 0.8 * duration_s
    longest = max(1.0, min(6.0, 0.15 * duration_s))
    cuts = [Cut(0.2 * duration_s, 0, longest)]
    attempts = 0
    while len(cuts) < count and attempts < 100 * count:
        attempts += 1
        length = rng.uniform(min(1.5, longest), longest)
        candidate = Cut(rng.uniform(0.1 * duration_s, last_end - length),
                        rng.randrange(drones), length)
        if not any(c.drone == candidate.drone and c.at_s < candidate.end_s + 1.0
                   and candidate.at_s < c.end_s + 1.0 for c in cuts):
            cuts.append(candidate)
    return sorted(cuts, key=lambda c: c.at_s)


# -- progress --------------------------------------------------------------------------------


class Progress:
    """One status line: rewritten in place on a terminal, a new line every few seconds else."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._next = 0.0
        self._width = 0

    def show(self, line: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + (TTY_PROGRESS_S if self.tty else LOG_PROGRESS_S)
        if self.tty:
            # A line wider than the terminal wraps, and \r would then redraw only its last row.
            line = line[:shutil.get_terminal_size().columns - 1]
            self.out.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def clear(self) -> None:
        """Erase the status line (on a terminal), so other output starts on a clean line."""
        if self.tty and self._width:
            self.out.write("\r" + " " * self._width + "\r")
            self.out.flush()
            self._width = 0

    def say(self, text: str) -> None:
        """A line of its own (events, phases)."""
        self.clear()
        self.out.write(text + "\n")
        self.out.flush()
        if self.tty:
            self._next = 0.0  # redraw the status line under the event at once


def progress_line(elapsed_s: float, total_s: float, phase: str, fleet: Mapping[str, int],
                  kafka: Mapping[str, int], cuts: int) -> str:
    """`fleet`: the fleet's totals plus "drones"; `kafka`: records per role."""
    published = fleet.get("violations", 0) + fleet.get("telemetry", 0)
    down = fleet.get("drones", 0) - fleet.get("link_up", 0)
    return (f"[{elapsed_s:3.0f}/{total_s:.0f} s {phase}] published {published} "
            f"(violations {fleet.get('violations', 0)}), acked {fleet.get('acked', 0)} | Kafka: "
            + ", ".join(f"{role} {kafka[role]}" for role in ROLES)
            + f" | link cuts {cuts}" + (f" ({down} down)" if down > 0 else ""))


# -- the local stack -------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoints:
    mqtt_host: str
    mqtt_port: int
    kafka: str
    origin: str  # "given" (--mqtt/--kafka), "reused" (it was up), "started" (by this demo)


class StackHandle:
    """The brokers the demo uses; stops at release() only the broker processes it started."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._args = args
        self._started: list[Any] = []  # presacop.stack services this demo started

    def up(self, say: Callable[[str], None]) -> Endpoints:
        """Raises `presacop.stack.StackError` (port taken, tool missing, start failed)."""
        args = self._args
        if args.mqtt is not None:
            for flag, (host, port) in (("--mqtt", args.mqtt), ("--kafka", args.kafka)):
                _reachable(flag, host, port)
            return Endpoints(args.mqtt[0], args.mqtt[1], f"{args.kafka[0]}:{args.kafka[1]}",
                             "given")
        from presacop.stack import PortInUseError, Stack
        from presacop.stack import cli as stack_cli

        state_dir = (args.state_dir or stack_cli.default_state_dir()).expanduser().resolve()
        recorded = Stack.load(state_dir)
        if recorded is not None and recorded.running():
            say(f"local stack already running (state {state_dir}): using it")
            recorded.health_check()
            return Endpoints(recorded.mqtt_host, recorded.mqtt_port, recorded.kafka_bootstrap,
                             "reused")
        if recorded is not None and any(s.running() for s in recorded.services):
            stack = recorded  # half up: start the other broker on the recorded ports
        else:
            stack = Stack(state_dir, stack_cli.DEFAULT_MQTT_PORT, stack_cli.DEFAULT_KAFKA_PORT,
                          stack_cli.DEFAULT_CONTROLLER_PORT)
        missing = [s for s in stack.services if not s.running()]
        say(f"starting the local stack: {', '.join(s.name for s in missing)} "
            f"(state {state_dir}; Kafka takes 10-30 s) ...")
        try:
            stack.start()  # on failure it stops what it started itself
        except PortInUseError as exc:
            raise DemoError(
                f"{exc}. To run the stack on other ports: `presacop stack up --mqtt-port P "
                "--kafka-port P --controller-port P` (the demo then uses it), or point the demo "
                "at running brokers with --mqtt and --kafka") from exc
        self._started = missing
        return Endpoints(stack.mqtt_host, stack.mqtt_port, stack.kafka_bootstrap, "started")

    def release(self, keep: bool, say: Callable[[str], None]) -> None:
        """Stop (or, with `keep`, leave running) what `up` started."""
        started, self._started = self._started, []
        if not started:
            return
        if keep:
            say("leaving the local stack running (--keep-stack); stop it with "
                "`presacop stack down`")
            return
        say("stopping the local stack the demo started ...")
        for service in reversed(started):  # Kafka first: it takes longest
            service.stop()


def _reachable(flag: str, host: str, port: int) -> None:
    """Raises DemoError naming `flag` if nothing accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=5):
            return
    except OSError as exc:
        raise DemoError(f"{flag} {host}:{port}: cannot connect ({exc.strerror or exc}); is the "
                        "broker running?") from exc


# -- Kafka -----------------------------------------------------------------------------------


def _kafka() -> Any:
    """kafka-python, imported quietly (3.0 warns about its own importlib.resources use)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        import kafka
        import kafka.admin
        import kafka.errors
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # refused connections are our errors
    return kafka


def create_topics(bootstrap: str, names: Sequence[str]) -> None:
    """Create this run's topics. Raises DemoError."""
    kafka = _kafka()
    try:
        admin = kafka.KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000,
                                       client_id="presacop-demo")
    except kafka.errors.KafkaError as exc:
        raise DemoError(f"Kafka {bootstrap} is not reachable: {exc!r}") from exc
    try:
        admin.create_topics([kafka.admin.NewTopic(n, TOPIC_PARTITIONS, 1) for n in names])
    except kafka.errors.KafkaError as exc:
        raise DemoError(f"cannot create the demo's Kafka topics {list(names)}: {exc!r}") from exc
    finally:
        admin.close()


def delete_topics(bootstrap: str, names: Sequence[str]) -> str | None:
    """Delete this run's topics; returns a problem to report, or None."""
    kafka = _kafka()
    try:
        admin = kafka.KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000,
                                       client_id="presacop-demo")
        try:
            admin.delete_topics(list(names), timeout_ms=15000)
        finally:
            admin.close()
    except kafka.errors.KafkaError as exc:
        return f"could not delete the demo's topics {list(names)}: {exc!r}"
    return None


class KafkaWatch:
    """Reads this run's topics from the beginning into a `Tally`, on its own thread.

    The consumer lives on that thread only (kafka-python consumers are not thread-safe); other
    threads read the tally through `read()` and ask for a full read with `catch_up()`.
    """

    def __init__(self, bootstrap: str, topics: Mapping[str, str], drones: frozenset[str]) -> None:
        self.bootstrap = bootstrap
        self.topics = dict(topics)  # role -> topic name
        self.tally = Tally(drones)
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._catch_up = threading.Event()
        self._caught_up = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-kafka-watch", daemon=True)

    def start(self, timeout: float = 60.0) -> KafkaWatch:
        """Raises DemoError if the consumer cannot see the topics in time."""
        self._thread.start()
        if not self._ready.wait(timeout) or self.error is not None:
            self.stop()
            raise DemoError(f"cannot read the demo's topics from Kafka {self.bootstrap}: "
                            f"{self.error or 'timed out'!r}")
        return self

    def read(self, fn: Callable[[Tally], Any]) -> Any:
        """`fn(tally)` under the watcher's lock (a consistent view)."""
        with self._lock:
            return fn(self.tally)

    def check(self) -> None:
        """Raises DemoError if the watcher thread failed."""
        if self.error is not None:
            raise DemoError(f"reading Kafka failed: {self.error!r}")

    def catch_up(self, timeout: float) -> bool:
        """Read up to the topics' current end offsets. True if done in time."""
        self._caught_up.clear()
        self._catch_up.set()
        return self._caught_up.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10.0)

    def _run(self) -> None:
        try:
            kafka = _kafka()
            consumer = kafka.KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                           enable_auto_commit=False, client_id="presacop-demo")
        except Exception as exc:
            self.error = exc
            self._ready.set()
            return
        try:
            self._assign(consumer, kafka)
            self._ready.set()
            self._poll(consumer)
        except Exception as exc:  # reported through check() / start()
            self.error = exc
        finally:
            self._ready.set()
            consumer.close()

    def _assign(self, consumer: Any, kafka: Any) -> None:
        deadline = time.monotonic() + 30.0
        partitions = []
        for name in self.topics.values():
            # Metadata of a topic created a moment ago may take a few refreshes to show up.
            while not (found := consumer.partitions_for_topic(name)):
                if time.monotonic() > deadline or self._stop.is_set():
                    raise DemoError(f"topic {name} does not appear in Kafka's metadata")
                time.sleep(0.2)
            partitions += [kafka.TopicPartition(name, p) for p in sorted(found)]
        consumer.assign(partitions)
        consumer.seek_to_beginning()

    def _poll(self, consumer: Any) -> None:
        role_of = {name: role for role, name in self.topics.items()}
        ends: dict[Any, int] | None = None
        while not self._stop.is_set():
            batches = consumer.poll(timeout_ms=300)
            with self._lock:
                for tp, records in batches.items():
                    for record in records:
                        self.tally.add(role_of[tp.topic], record.value, record.timestamp)
            if self._catch_up.is_set():
                self._catch_up.clear()
                ends = consumer.end_offsets(list(consumer.assignment()))
            if ends is not None and all(consumer.position(tp) >= end for tp, end in ends.items()):
                ends = None
                self._caught_up.set()


# -- the gateway -----------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the gateway child: get SIGTERM if the demo dies without cleaning up (kill -9)."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class GatewayProcess:
    """`presacop gateway` as a child process with a generated config; stopped by PID."""

    def __init__(self, workdir: Path, endpoints: Endpoints, topics: Mapping[str, str],
                 run_id: str) -> None:
        from presacop.stack import free_port

        self.config_path = workdir / "gateway.toml"
        self.log_path = workdir / "gateway.log"
        self.metrics = f"127.0.0.1:{free_port()}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None
        self.config_path.write_text(self._config(endpoints, topics, run_id))

    def _config(self, ep: Endpoints, topics: Mapping[str, str], run_id: str) -> str:
        q = json.dumps  # a JSON string is a valid TOML basic string
        lines = [
            "# Generated by `presacop demo` for one run.",
            "[mqtt]", f"host = {q(ep.mqtt_host)}", f"port = {ep.mqtt_port}",
            # Our own client id and share group: a gateway already running on this broker
            # must not split this run's messages with ours.
            f"client_id = {q(f'presacop-demo-{run_id}-gateway')}",
            f"share_group = {q(f'presacop-demo-{run_id}')}",
            # The session outlives the demo by a minute only, not the default week.
            "session_expiry_s = 60",
            "[kafka]", f"bootstrap_servers = {q(ep.kafka)}",
            "create_topics = false  # the demo creates (and deletes) them",
            "[kafka.topics]", *(f"{role} = {q(name)}" for role, name in topics.items()),
            "[metrics]", f"address = {q(self.metrics)}",
            "[log]", 'format = "text"',
        ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = GATEWAY_READY_TIMEOUT_S) -> None:
        """Start and wait for /healthz to say ready. Raises DemoError with the log's tail."""
        with self.log_path.open("ab") as log_file:
            # Its own session: Ctrl-C reaches only the demo, which stops the gateway after the
            # drones have drained.
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "presacop.cli", "gateway", "--config",
                 str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if self._healthy():
                return
            time.sleep(0.3)
        raise DemoError(f"the gateway did not become ready within {timeout:.0f} s; last lines "
                        f"of {self.log_path}:\n{self.tail()}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.metrics}/healthz", timeout=2) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def check_alive(self) -> None:
        """Raises DemoError if the gateway exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise DemoError(f"the gateway exited with code {self.proc.returncode}; last lines of "
                            f"{self.log_path}:\n{self.tail()}")

    def stop(self, timeout: float = GATEWAY_STOP_TIMEOUT_S) -> int | None:
        """SIGTERM (the gateway drains), SIGKILL after `timeout`. Returns its exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return self.exit_code
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.exit_code = proc.returncode
        return self.exit_code

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# -- the fleet -------------------------------------------------------------------------------

# Real drones see about 1% unqualified violations; a short demo at 1% would often show none, so
# the demo's recognizer leaves 5% unqualified to exercise the alert path every run.
DEMO_UNQUALIFIED_RATE = 0.05
# The drones' MQTT sessions outlive the demo by minutes, not the agent's default week.
DEMO_AGENT = {"mqtt": {"session_expiry_s": 300}}


def ledger_of(fleet: Any) -> Ledger:
    """What the fleet's agents accepted (call after `fleet.stop()`: the counts are final)."""
    import protocol

    accepted = [v for vs in fleet.accepted().values() for v in vs]
    rows = fleet.stats()["drones"]
    return Ledger(
        violations=frozenset(protocol.message_id(v) for v in accepted),
        unqualified=frozenset(protocol.message_id(v) for v in accepted if v.code is None),
        telemetry={d: int(row.get("telemetry", 0)) for d, row in rows.items()},
        queued=sum(int(row.get("outbox_depth", 0)) for row in rows.values()),
    )


def delivered_all(ledger: Ledger, tally: Tally) -> bool:
    """True once Kafka holds everything in `ledger` (and the alerts it implies)."""
    if not ledger.violations <= tally.ids("violation"):
        return False
    if not ledger.unqualified <= set(tally.alerts):
        return False
    found = Counter(mid.rpartition(":")[0] for mid in tally.ids("telemetry"))
    return all(found[d] >= n for d, n in ledger.telemetry.items())


# -- the run ---------------------------------------------------------------------------------


class Demo:
    """One demo run. `run()` returns the summary; `cleanup()` (always) stops what it started."""

    def __init__(self, args: argparse.Namespace, progress: Progress) -> None:
        self.args = args
        self.p = progress
        self.seed: int = args.seed if args.seed is not None else secrets.randbelow(2**31)
        self.run_id = secrets.token_hex(3)
        self.topics = {role: f"presacop.demo.{self.run_id}.{role}" for role in ROLES}
        self.stack = StackHandle(args)
        self.endpoints: Endpoints | None = None
        self.workdir: Path | None = None
        self.gateway: GatewayProcess | None = None
        self.watch: KafkaWatch | None = None
        self.fleet: Any = None
        self._topics_made = False
        self._log_handler: logging.Handler | None = None
        self.planned_cuts = 0

    # -- phases ----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Raises DemoError, `presacop.stack.StackError`, `hw_sim.FleetError`."""
        args, say = self.args, self.p.say
        self.workdir = Path(tempfile.mkdtemp(prefix=f"presacop-demo-{self.run_id}-"))
        self._log_to_file(self.workdir / "demo.log")
        say(f"PresaCop demo {self.run_id}: {_n(args.drones, 'drone')} for {args.duration:.0f} s, "
            f"{_n(args.link_cuts, 'link cut')}, seed {self.seed}")
        ep = self.endpoints = self.stack.up(say)
        say(f"  brokers  MQTT {ep.mqtt_host}:{ep.mqtt_port}, Kafka {ep.kafka} ({ep.origin})")
        create_topics(ep.kafka, list(self.topics.values()))
        self._topics_made = True
        say(f"  topics   presacop.demo.{self.run_id}.{{{','.join(ROLES)}}}")
        self.gateway = GatewayProcess(self.workdir, ep, self.topics, self.run_id)
        self.gateway.start()
        assert self.gateway.proc is not None
        say(f"  gateway  pid {self.gateway.proc.pid}, metrics http://{self.gateway.metrics}"
            "/metrics")
        self.fleet = self._make_fleet(ep)
        self.watch = KafkaWatch(ep.kafka, self.topics, frozenset(self.fleet.drone_ids)).start()
        self.fleet.start()
        ids = self.fleet.drone_ids
        say(f"  drones   {ids[0]} .. {ids[-1]}: real agents on simulated hardware, each through "
            "its own link proxy")
        self._fly()
        return self._finish()

    def _make_fleet(self, ep: Endpoints) -> Any:
        from hw_sim.fleet import Fleet

        assert self.workdir is not None
        return Fleet(self.args.drones, ep.mqtt_host, ep.mqtt_port, self.workdir / "drones",
                     seed=self.seed, recognizer={"unqualified_rate": DEMO_UNQUALIFIED_RATE},
                     agent=DEMO_AGENT, id_prefix=f"demo-{self.run_id}")

    def _fly(self) -> None:
        args, fleet = self.args, self.fleet
        plan = plan_cuts(args.link_cuts, args.drones, args.duration,
                         random.Random(f"presacop.demo:{self.seed}"))
        self.planned_cuts = len(plan)
        if len(plan) < args.link_cuts:
            self.p.say(f"  note     only {len(plan)} of {args.link_cuts} link cuts fit in "
                       f"{args.duration:.0f} s with {args.drones} drones (one cut at a time "
                       "per drone)")
        start = time.monotonic()
        shown = 0
        while (now := time.monotonic() - start) < args.duration:
            while plan and plan[0].at_s <= now:
                cut = plan.pop(0)
                fleet.cut_links(duration_s=cut.length_s, drones=[fleet.drone_ids[cut.drone]])
            shown = self._show_events(shown)
            self._check_health()
            self.p.show(self._line(now, "flying"))
            time.sleep(TICK_S)
        self._show_events(shown)

    def _finish(self) -> dict[str, Any]:
        assert self.gateway is not None and self.watch is not None
        args, say, watch = self.args, self.p.say, self.watch
        say("time is up: the drones stop and drain their outboxes ...")
        self.fleet.stop(timeout=30.0)
        ledger = ledger_of(self.fleet)
        say(f"waiting for the gateway to deliver the rest to Kafka (at most "
            f"{DELIVERY_TIMEOUT_S:.0f} s) ...")
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while not watch.read(lambda t: delivered_all(ledger, t)):
            if time.monotonic() > deadline:
                say("  gave up waiting: the summary shows what is missing")
                break
            self._check_health()
            self.p.show(self._line(args.duration, "draining"))
            time.sleep(TICK_S)
        say("stopping the gateway (SIGTERM: it drains and exits) ...")
        code = self.gateway.stop()
        caught_up = watch.catch_up(30.0)
        watch.stop()
        watch.check()
        cuts = [e for e in self.fleet.events() if e.action in ("cut", "stall")]
        extra = [
            Check("link faults", len(cuts) >= self.planned_cuts,
                  f"{len(cuts)} link cuts injected ({self.planned_cuts} planned, "
                  f"{args.link_cuts} asked for)"),
            Check("drones drained", ledger.queued == 0,
                  f"{ledger.queued} messages left in the drones' outboxes after the drain"),
            Check("gateway", code == 0, f"the gateway stopped with exit code {code}"),
            Check("Kafka read to the end", caught_up,
                  "every record up to the topics' end offsets was read" if caught_up
                  else "could not read up to the topics' end offsets in 30 s"),
        ]
        ep = self.endpoints
        assert ep is not None
        meta = {
            "run_id": self.run_id, "seed": self.seed, "drones": args.drones,
            "duration_s": args.duration, "link_faults": len(cuts),
            "link_fault_detail": ", ".join(f"{e.drone_id} at {e.at_s:.0f} s" for e in cuts),
            "topics": self.topics, "stack": ep.origin,
            "mqtt": f"{ep.mqtt_host}:{ep.mqtt_port}", "kafka": ep.kafka,
        }
        return watch.read(lambda t: summarize(ledger, t, meta, extra))

    # -- helpers ---------------------------------------------------------------------------

    def _check_health(self) -> None:
        assert self.gateway is not None and self.watch is not None
        self.gateway.check_alive()
        self.watch.check()

    def _show_events(self, shown: int) -> int:
        events = self.fleet.events()
        for event in events[shown:]:
            what = {"cut": "link CUT", "stall": "link stalled", "restore": "link restored"}
            if event.action in what:
                self.p.say(f"  {event.at_s:5.1f} s  {event.drone_id}: {what[event.action]}")
        return len(events)

    def _line(self, now: float, phase: str) -> str:
        assert self.watch is not None
        stats = self.fleet.stats()
        totals = {**stats["totals"], "drones": len(stats["drones"])}
        cuts = sum(1 for e in self.fleet.events() if e.action in ("cut", "stall"))
        return progress_line(now, self.args.duration, phase, totals,
                             self.watch.read(lambda t: t.progress()), cuts)

    def _log_to_file(self, path: Path) -> None:
        # The agents, proxies and kafka-python log a lot; the terminal shows the progress line.
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        self._log_handler = handler

    def cleanup(self, keep_workdir: bool) -> None:
        """Stop everything this run started, in order; never raises. Idempotent."""
        say = self.p.say
        steps: list[tuple[str, Callable[[], Any]]] = []
        if self.fleet is not None:
            steps.append(("stop the drones", lambda: self.fleet.stop(timeout=15.0)))
        if self.watch is not None:
            steps.append(("stop reading Kafka", self.watch.stop))
        if self.gateway is not None:
            steps.append(("stop the gateway", self.gateway.stop))
        if self._topics_made and self.endpoints is not None:
            steps.append(("delete the demo's topics", self._drop_topics))
        steps.append(("stop the local stack", lambda: self.stack.release(self.args.keep_stack,
                                                                          say)))
        for what, step in steps:
            try:
                step()
            except Exception as exc:  # keep cleaning up the rest
                say(f"presacop demo: could not {what}: {exc!r}")
        self._topics_made = False
        if self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None
        if self.workdir is not None:
            # Keep the logs of a failed run, once there is more in them than the demo's own.
            if keep_workdir and self.gateway is not None:
                kept = ", ".join(sorted(p.name for p in self.workdir.iterdir()))
                say(f"logs kept in {self.workdir} ({kept})")
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def _drop_topics(self) -> None:
        assert self.endpoints is not None
        if self.args.keep_topics:
            self.p.say(f"kept the topics presacop.demo.{self.run_id}.* (--keep-topics)")
            return
        problem = delete_topics(self.endpoints.kafka, list(self.topics.values()))
        if problem:
            self.p.say(f"presacop demo: {problem}")


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
