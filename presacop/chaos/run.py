"""One chaos run: private brokers, topics, the gateway, drone processes, the seeded faults one at
a time (each one's recovery timed), the drain, and the comparison of ledgers with Kafka.

Raises (from `Chaos.run`): `ChaosError`, `presacop.stack.StackError`, `DemoError` (topics).
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from presacop.chaos.check import KafkaView, Ledgers, compare
from presacop.chaos.parts import Brokers, ChaosError, DroneProc, Gateway, wait_for
from presacop.chaos.plan import DRONE_KINDS, GATEWAY_KINDS, Fault, plan_faults
from presacop.demo.gateway import make_receipt_key
from presacop.demo.kafka_view import create_topics
from presacop.demo.ledger import ROLES

RECOVERY_TIMEOUT_S = 180.0  # a fault not recovered from by then is reported as such
WARMUP_TIMEOUT_S = 180.0
DRAIN_TIMEOUT_S = 240.0  # cameras paused: outboxes and uploads empty within this
DRAIN_SAY_EVERY_S = 15.0  # while draining, say which drones are still busy this often
DELIVERY_TIMEOUT_S = 120.0  # drones stopped: Kafka holds every ledger entry within this


class Chaos:
    """`run()` returns the summary; `cleanup()` (always) stops everything it started."""

    def __init__(self, args: argparse.Namespace, say: Callable[[str], None]) -> None:
        self.args, self.say = args, say
        self.seed: int = args.seed if args.seed is not None else secrets.randbelow(2**31)
        self.run_id = secrets.token_hex(3)
        self.topics = {role: f"presacop.chaos.{self.run_id}.{role}" for role in ROLES}
        self.workdir = Path(tempfile.mkdtemp(prefix=f"presacop-chaos-{self.run_id}-"))
        self.brokers: Brokers | None = None
        self.gateways: list[Gateway] = []
        self.drones: list[DroneProc] = []
        self.faults: list[dict[str, Any]] = []
        self._drain_said = 0.0  # when the drain last said what it waits for
        self.plan = plan_faults(args.duration, args.drones, self.seed, args.faults,
                                args.gateways)

    # -- phases ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        from common.signing import generate_key

        args, say = self.args, self.say
        say(f"PresaCop chaos {self.run_id}: {args.drones} drones for {args.duration:.0f} s, "
            f"{len(self.plan)} faults, seed {self.seed} (logs in {self.workdir})")
        self.brokers = Brokers(self.workdir)
        say("  starting a private Mosquitto and Kafka (the run kills them; 10-60 s) ...")
        self.brokers.start()
        ep = self.brokers.endpoints
        create_topics(ep.kafka, list(self.topics.values()))
        keys = self.workdir / "drone-keys"
        prefix = f"chaos-{self.run_id}"
        for i in range(1, args.drones + 1):
            generate_key(keys, f"{prefix}-{i:04d}")
        receipt_key, receipt_keys = make_receipt_key(self.workdir)  # gateways sign, drones check
        for n in range(args.gateways):  # one share group; "", "-2", ... tell the client ids apart
            self.gateways.append(Gateway(self.workdir, ep, self.topics, self.run_id, keys,
                                         f"-{n + 1}" if n else "", receipt_key))
            self.gateways[-1].start()
        say(f"  brokers  MQTT {ep.mqtt_host}:{ep.mqtt_port}, Kafka {ep.kafka}; "
            f"{args.gateways} gateway(s) ready")
        for i in range(1, args.drones + 1):
            drone = DroneProc(i, prefix, ep, self.workdir / "fleet", self.seed, keys,
                              receipt_keys)
            self.drones.append(drone)
            drone.start()
        if wait_for(lambda: all(d.state().get("acked", 0) > 0 for d in self.drones),
                    WARMUP_TIMEOUT_S) is None:
            raise ChaosError("the drones did not all deliver within "
                             f"{WARMUP_TIMEOUT_S:.0f} s of starting")
        say(f"  drones   {self.drones[0].drone_id} .. {self.drones[-1].drone_id}: agent "
            "processes, each through its own link proxy; flying")
        t0 = time.monotonic()
        for fault in self.plan:
            self._sleep_until(t0 + fault.at_s)
            self.faults.append(self._inject(fault, time.monotonic() - t0))
        self._sleep_until(t0 + args.duration)
        return self._finish()

    def _sleep_until(self, when: float) -> None:
        while time.monotonic() < when:
            for d in self.drones:
                d.check()
            for gw in self.gateways:
                if gw.proc is not None:
                    gw.proc.check_alive()  # DemoError when it exited by itself
            time.sleep(min(0.5, max(0.0, when - time.monotonic())))

    def _inject(self, fault: Fault, at_s: float) -> dict[str, Any]:
        assert self.brokers is not None
        b, kind = self.brokers, fault.kind
        d = self.drones[fault.target] if kind in DRONE_KINDS else None
        gw = self.gateways[fault.target or 0] if kind in GATEWAY_KINDS else None
        where = f" ({d.drone_id})" if d is not None else \
            f" (gateway {(fault.target or 0) + 1})" if len(self.gateways) > 1 and gw else ""
        self.say(f"  {at_s:6.1f} s  {kind}{where} for {fault.length_s:.1f} s")
        begin: dict[str, Callable[[], Any]] = {
            "mosquitto-kill": b.mosquitto.kill, "mosquitto-restart": b.mosquitto.stop,
            "kafka-stop": b.kafka.stop, "kafka-pause": lambda: b.pause(b.kafka, True),
        }
        end: dict[str, Callable[[], Any]] = {
            "mosquitto-kill": b.mosquitto.start, "mosquitto-restart": b.mosquitto.start,
            "kafka-stop": lambda: b.kafka.start(timeout=180.0),
            "kafka-pause": lambda: b.pause(b.kafka, False),
        }
        if gw is not None:
            begin = {"gateway-kill": gw.kill, "gateway-pause": lambda: gw.signal(signal.SIGSTOP)}
            end = {"gateway-kill": gw.start, "gateway-pause": lambda: gw.signal(signal.SIGCONT)}
        if d is not None:
            begin = {"agent-kill": d.kill, "link-cut": d.proxy.cut,
                     "link-stall": lambda: d.proxy.cut(mode="stall")}
            end = {"agent-kill": d.start, "link-cut": d.proxy.restore,
                   "link-stall": d.proxy.restore}
        begin[kind]()
        time.sleep(fault.length_s)
        end[kind]()
        recovery = self._recovery(d, gw)
        if recovery is None:
            self.say(f"           not recovered within {RECOVERY_TIMEOUT_S:.0f} s")
        return {"kind": kind, "at_s": round(at_s, 1), "length_s": fault.length_s,
                "drone": d.drone_id if d is not None else None,
                "gateway": None if gw is None else (fault.target or 0) + 1,
                "recovery_s": None if recovery is None else round(recovery, 1)}

    def _recovery(self, drone: DroneProc | None, gw: Gateway | None) -> float | None:
        """Seconds from a fault's end until messages flow again: that drone's acks grow (its
        link or process), that gateway writes to Kafka again, or (brokers) the gateways do."""
        if drone is not None:
            acked = drone.state().get("acked", 0)
            return wait_for(lambda: drone.state().get("connected") == 1
                            and drone.state().get("acked", 0) > acked, RECOVERY_TIMEOUT_S)
        watched = [gw] if gw is not None else self.gateways
        produced = sum(g.produced() for g in watched)
        return wait_for(lambda: sum(g.produced() for g in watched) > produced,
                        RECOVERY_TIMEOUT_S)

    def _drained(self) -> bool:
        """Every drone's last report: camera settled, everything queued before the pause
        acknowledged (the telemetry after it is drained by the agent's stop), no upload queued.
        Says what it still waits for every DRAIN_SAY_EVERY_S."""
        waiting = []
        for d in self.drones:
            s = d.state()
            if not (s.get("settled") == 1 and s.get("backlog", 1) == 0
                    and s.get("uploads_pending", 1) == 0):
                waiting.append(f"{d.drone_id} (backlog {s.get('backlog', '?')}, uploads "
                               f"{s.get('uploads_pending', '?')}, connected "
                               f"{s.get('connected', '?')}, settled {s.get('settled', '?')})")
        now = time.monotonic()
        if waiting and now >= self._drain_said + DRAIN_SAY_EVERY_S:
            if self._drain_said > 0:
                self.say("  still draining: " + "; ".join(waiting))
            self._drain_said = now
        return not waiting

    def _finish(self) -> dict[str, Any]:
        from drone_agent.outbox import Outbox

        assert self.brokers is not None
        say = self.say
        say("time is up: cameras stop; outboxes and evidence uploads drain ...")
        for d in self.drones:
            d.pause_camera()
        drained = wait_for(self._drained, DRAIN_TIMEOUT_S, 1.0)
        uploads_left = sum(int(d.state().get("uploads_pending", 0)) for d in self.drones)
        for d in self.drones:
            d.stop()  # SIGTERM: the agent says goodbye and exits
        leftovers = 0
        for d in self.drones:
            box = Outbox(self.workdir / "fleet" / "drones" / d.drone_id / "outbox.sqlite3",
                         disk_reserve_bytes=0)
            leftovers += box.depth
            box.close()
        ledgers = Ledgers.read(self.workdir / "fleet" / "ledger")
        kafka = self.brokers.endpoints.kafka
        drones = frozenset(d.drone_id for d in self.drones)

        def delivered() -> bool:
            t = compare(ledgers, KafkaView.read(kafka, self.topics), drones)["topics"]
            return t["telemetry"]["lost"] == 0 and t["violations"]["lost"] == 0

        say("waiting for Kafka to hold every accepted message ...")
        wait_for(delivered, DELIVERY_TIMEOUT_S, 3.0)
        codes = [gw.stop() for gw in self.gateways]
        result = compare(ledgers, KafkaView.read(kafka, self.topics), drones)
        topics = result["topics"]
        lost = sum(t.get("lost", 0) for t in topics.values())
        dups = sum(t["duplicates"] for r, t in topics.items() if r != "deadletter")
        return {
            "run_id": self.run_id, "seed": self.seed, "drones": self.args.drones,
            "duration_s": self.args.duration, "topics": topics, "gaps": result["gaps"],
            "gateways": len(self.gateways), "faults": self.faults,
            "outbox_leftovers": leftovers,
            "uploads_pending": uploads_left, "drained_s": drained,
            "ledger_unreadable_lines": ledgers.unreadable, "gateway_exits": codes,
            "gateway_starts": sum(gw.starts for gw in self.gateways),
            "drone_starts": sum(d.starts for d in self.drones),
            "lost": lost, "duplicates": dups,
            "ok": lost == 0 and dups == 0 and leftovers == 0 and uploads_left == 0
            and codes == [0] * len(codes)
            and all(f["recovery_s"] is not None for f in self.faults),
        }

    def cleanup(self, keep_workdir: bool) -> None:
        """Stop everything this run started; never raises."""
        for what, step in [*((f"stop {d.drone_id}", d.close) for d in self.drones),
                           *(("stop a gateway", gw.stop) for gw in self.gateways),
                           ("stop the brokers", lambda: self.brokers and self.brokers.stop())]:
            try:
                step()
            except Exception as exc:  # keep cleaning up the rest
                self.say(f"presacop chaos: could not {what}: {exc!r}")
        if keep_workdir:
            self.say(f"logs kept in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
