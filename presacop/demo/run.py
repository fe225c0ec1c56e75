"""One demo run: brokers, topics, a gateway, a fleet, link cuts, the drain and the summary.

Raises (from `Demo.run`): `DemoError`, `presacop.stack.StackError`, `hw_sim.FleetError`.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import random
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from presacop.demo.brokers import Endpoints, StackHandle
from presacop.demo.faults import plan_cuts
from presacop.demo.gateway import GatewayProcess, evidence_store_path, make_receipt_key
from presacop.demo.kafka_view import KafkaWatch, create_topics, delete_topics
from presacop.demo.ledger import ROLES, delivered_all, ledger_of
from presacop.demo.progress import Progress, progress_line
from presacop.demo.report import Check, evidence_check, evidence_summary, summarize

DELIVERY_TIMEOUT_S = 60.0  # after the drones stopped: how long the rest may take to reach Kafka
UPLOAD_TIMEOUT_S = 90.0  # after the cameras stopped: how long the evidence uploads may take
TICK_S = 0.2
# Real drones see about 1% unqualified violations; a short demo at 1% would often show none, so
# the demo's recognizer leaves 5% unqualified to exercise the alert path every run.
DEMO_UNQUALIFIED_RATE = 0.05
# The drones' MQTT sessions outlive the demo by minutes, not the agent's default week.
DEMO_AGENT = {"mqtt": {"session_expiry_s": 300}}


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


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
        self.keys_dir: Path | None = None  # the drones' signing keys, made at start
        self.receipt_keys: Path | None = None  # its public key, for the drones (made at start)
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
        # Each drone signs its violations with a key made for this run; the gateway requires it.
        # The gateway signs its evidence receipts with the run's back-office key, and the drones
        # act only on receipts that verify (docs/security.md, signed receipts).
        self.keys_dir = self.workdir / "drone-keys"
        receipt_key, self.receipt_keys = make_receipt_key(self.workdir)
        self.gateway = GatewayProcess(self.workdir, ep, self.topics, self.run_id, self.keys_dir,
                                      receipt_key=receipt_key)
        self.gateway.start()
        say(f"  gateway  pid {self.gateway.pid}, metrics http://{self.gateway.metrics}"
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
        from common.signing import generate_key
        from hw_sim.fleet import Fleet

        assert self.workdir is not None and self.keys_dir is not None
        assert self.receipt_keys is not None
        fleet = Fleet(self.args.drones, ep.mqtt_host, ep.mqtt_port, self.workdir / "drones",
                      seed=self.seed, recognizer={"unqualified_rate": DEMO_UNQUALIFIED_RATE},
                      agent={**DEMO_AGENT, "evidence": {
                          "receipt_keys_dir": str(self.receipt_keys)}},
                      id_prefix=f"demo-{self.run_id}",
                      autopilot=self.args.position_source == "mavlink", keys_dir=self.keys_dir)
        for drone_id in fleet.drone_ids:
            generate_key(self.keys_dir, drone_id)
        return fleet

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
        self._finish_uploads()
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
        evidence = watch.read(lambda t: dict(t.evidence))
        extra.append(evidence_check(ledger, evidence, self._verified(evidence)))
        meta["evidence"] = evidence_summary(ledger, evidence, self._verified(evidence))
        return watch.read(lambda t: summarize(ledger, t, meta, extra))

    def _finish_uploads(self) -> None:
        """Stop the cameras and let the drones finish uploading their evidence (bounded)."""
        say = self.p.say
        self.fleet.pause_cameras()  # no new violations: the upload queues can empty
        say(f"time is up: the cameras stop; the drones finish their evidence uploads (at most "
            f"{UPLOAD_TIMEOUT_S:.0f} s) ...")
        deadline = time.monotonic() + UPLOAD_TIMEOUT_S
        # A frame the camera gave out before the pause can still be in recognition: its upload
        # is queued only once it is through, so "no uploads pending" counts only after that.
        while (not self.fleet.frames_settled()
               or self.fleet.stats()["totals"].get("uploads_pending", 0) > 0):
            if time.monotonic() > deadline:
                say("  gave up waiting for uploads: the summary shows what is missing")
                return
            self._check_health()
            self.p.show(self._line(self.args.duration, "uploading"))
            time.sleep(TICK_S)

    def _verified(self, evidence: dict[str, Any]) -> set[str]:
        """Evidence ids whose stored object is there and hashes to its record's SHA-256."""
        from gateway.evidence.store import DirStore, StoreError

        assert self.workdir is not None
        store = DirStore(evidence_store_path(self.workdir))
        good = set()
        for ident, record in evidence.items():
            try:
                data = store.get(record["sha256"])
            except StoreError:
                continue
            if hashlib.sha256(data).hexdigest() == record["sha256"]:
                good.add(ident)
        return good

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
