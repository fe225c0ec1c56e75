"""A fleet of simulated drones: N real drone agents, each behind its own link proxy.

Each drone is a real `drone_agent.agent.Agent` (its own outbox, evidence store and MQTT session
under ``data_root/<drone id>/``) fed by a `SimCamera`, a `RoutePosition`, a `SimBattery` and the
simulator's recognizer (`SimRecognizer`, reading what the camera drew), and connected to the
broker through its own `LinkProxy`, so link faults are real TCP faults. Everything is derived
from one seed: drone N always flies the same route start and sees the same street, and scheduled
link cuts fall at the same offsets.

    fleet = Fleet(3, "127.0.0.1", 1883, "/tmp/fleet", seed=7,
                  link_faults=LinkFaults(every_s=20, down_s=4))
    fleet.start()
    fleet.cut_links(duration_s=5)          # all drones, now, for 5 s
    ...
    fleet.wait_drained(30)                 # every accepted message acknowledged by the broker
    fleet.stop()
    fleet.accepted()                       # {drone id: [protocol.Violation, ...]} the agents queued
    fleet.stats()["totals"]["acked"]

"Accepted" means the agent stored the violation in its durable outbox (the point from which the
agent promises delivery); the fleet records each one, decoded, with its message id
("<drone id>:<seq>"), so a checker can compare them with what reached Kafka.

Raises: `FleetError` when the fleet cannot start (the cause chained); `ValueError` for bad
arguments.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import protocol
from hw_sim import FleetError
from hw_sim.camera import SimCamera
from hw_sim.faults import FaultEvent, LinkFaults, Scheduler, fault_schedule
from hw_sim.link import LinkProxy
from hw_sim.position import RoutePosition
from hw_sim.power import SimBattery
from hw_sim.recognizer import SimRecognizer

log = logging.getLogger(__name__)

_DRONE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")  # the protocol's drone id rule

# What a simulated drone looks like unless the caller says otherwise.
CAMERA_DEFAULTS: dict[str, Any] = {"width": 1280, "height": 720, "fps": 2.0,
                                   "violation_rate": 0.3}
POSITION_DEFAULTS: dict[str, Any] = {"speed_mps": 8.0, "altitude_m": 40.0}
POWER_DEFAULTS: dict[str, Any] = {"start_pct": 100, "drain_pct_per_min": 1.0, "low_pct": 20}
RECOGNIZER_DEFAULTS: dict[str, Any] = {"misread_rate": 0.0, "unqualified_rate": 0.01}
# Agent settings suited to a laptop: quick reconnects and keepalives so faults show in seconds.
AGENT_DEFAULTS: dict[str, Any] = {
    "mqtt": {"keepalive_s": 10, "backoff_min_s": 0.2, "backoff_max_s": 2.0},
    "telemetry": {"period_s": 1.0},
    "evidence": {"quota_bytes": 512 * 1024 * 1024, "min_free_bytes": 64 * 1024 * 1024},
}


@dataclass
class Drone:
    """One simulated drone's parts. `agent` is a `drone_agent.agent.Agent`."""

    drone_id: str
    number: int  # from the id: sim-0007 -> 7
    data_dir: Path
    proxy: LinkProxy
    camera: SimCamera
    position: RoutePosition
    battery: SimBattery
    agent: Any = None
    accepted: list[protocol.Violation] = field(default_factory=list)
    autopilot: Any = None  # a hw_sim.autopilot.SimAutopilot when the fleet flies on MAVLink
    ledger: Any = None  # the open ledger file (ledger_dir), closed by Fleet.stop


class Fleet:
    """N real agents on simulated hardware, each through its own `LinkProxy` to the broker.

    Args:
        n_drones: how many (1..1000).
        broker_host, broker_port: the MQTT broker (loopback).
        data_root: each drone keeps its outbox and evidence in data_root/<drone id>/; reusing a
            data_root resumes the drones' outboxes (sequence numbers continue).
        seed: derives every drone's camera, route, recognizer mistakes and the fault schedule.
        camera, position, power, recognizer: keyword overrides for `SimCamera`,
            `RoutePosition`, `SimBattery`, `SimRecognizer` (seeds are derived, not given).
        agent: overrides of the agent config as a nested dict, e.g. {"telemetry": {"period_s": 5}}.
        link_faults: random cuts for every drone, or None.
        id_prefix, first_index: drone ids are f"{id_prefix}-{index:04d}" from first_index.
        autopilot: each drone's route and battery fly on a simulated flight controller
            (`hw_sim.autopilot`) that its agent reads over MAVLink 2 (the `mavlink` sources).
        keys_dir: sign each drone's violations with <keys_dir>/<drone_id>/0.key (made by
            `presacop keys gen`, or common.signing.generate_key); None: unsigned.
        ledger_dir: append "<kind> <seq>" of every message an agent accepts (violations and
            telemetry) to <ledger_dir>/<drone_id>.ledger, fsync'ed after the outbox committed
            it, so the record survives a kill -9 of this process (`presacop chaos`).

    Raises:
        ValueError: bad counts or options (at construction, before anything starts).
    """

    def __init__(self, n_drones: int, broker_host: str, broker_port: int,
                 data_root: str | Path, *, seed: int = 0,
                 camera: Mapping[str, Any] | None = None,
                 position: Mapping[str, Any] | None = None,
                 power: Mapping[str, Any] | None = None,
                 recognizer: Mapping[str, Any] | None = None,
                 agent: Mapping[str, Any] | None = None,
                 link_faults: LinkFaults | None = None,
                 id_prefix: str = "sim", first_index: int = 1, autopilot: bool = False,
                 keys_dir: str | Path | None = None,
                 ledger_dir: str | Path | None = None) -> None:
        if not isinstance(n_drones, int) or not 1 <= n_drones <= 1000:
            raise ValueError(f"Fleet n_drones must be 1..1000, got {n_drones!r}")
        if not 0 <= first_index <= 9999 - n_drones + 1:
            raise ValueError(f"Fleet first_index must keep ids within 4 digits, got {first_index}")
        self.n_drones = n_drones
        self.broker = (broker_host, int(broker_port))
        self.data_root = Path(data_root)
        self.seed = int(seed)
        self.options = {
            "camera": _options(SimCamera, CAMERA_DEFAULTS, camera, "camera"),
            "position": _options(RoutePosition, POSITION_DEFAULTS, position, "position"),
            "power": _options(SimBattery, POWER_DEFAULTS, power, "power"),
            "recognizer": _options(SimRecognizer, RECOGNIZER_DEFAULTS, recognizer,
                                   "recognizer"),
        }
        self.agent_overrides = dict(agent or {})
        self.link_faults = link_faults
        self.autopilot = autopilot
        # <keys_dir>/<drone_id>/0.key signs each drone's violations (`presacop keys gen` layout)
        self.keys_dir = Path(keys_dir) if keys_dir is not None else None
        self.ledger_dir = Path(ledger_dir) if ledger_dir is not None else None
        self.drone_ids = [f"{id_prefix}-{i:04d}" for i in range(first_index,
                                                                first_index + n_drones)]
        if not _DRONE_ID_RE.fullmatch(self.drone_ids[-1]):
            raise ValueError(f"Fleet id_prefix {id_prefix!r} does not make valid drone ids")
        self._agent_config_for(self.drone_ids[0], Path("/nonexistent"), "127.0.0.1", 1)
        self.drones: dict[str, Drone] = {}
        self._lock = threading.Lock()
        self._events: list[FaultEvent] = []
        self._t0 = 0.0
        self._scheduler: Scheduler | None = None
        self._started = False
        self._stopped = False

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Fleet:
        """Start every drone (proxy, then agent). Returns self.

        Raises:
            FleetError: a proxy or agent failed to start; whatever had started is stopped.
        """
        if self._started:
            raise FleetError("Fleet.start() called twice")
        self._started = True
        self._t0 = time.monotonic()
        try:
            for drone_id in self.drone_ids:
                self.drones[drone_id] = self._start_drone(drone_id, self._number(drone_id))
        except Exception as exc:
            self.stop(timeout=5.0)
            raise FleetError(f"fleet failed to start {drone_id}: {exc}") from exc
        except BaseException:  # Ctrl-C while starting: leave nothing running
            self.stop(timeout=5.0)
            raise
        self._scheduler = Scheduler(self._apply)
        if self.link_faults is not None:
            self._schedule_random_faults(self.link_faults)
        self._scheduler.start()
        return self

    def stop(self, timeout: float = 20.0, restore_links: bool = True) -> None:
        """Stop fault injection, restore the links (so agents can drain; pass False to stop with
        links as they are), stop every agent within `timeout` (in parallel), then the proxies.
        Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._scheduler is not None:
            self._scheduler.stop()
        drones = list(self.drones.values())
        if restore_links:
            for d in drones:
                d.proxy.restore()
        stoppers = [threading.Thread(target=d.agent.stop, args=(timeout,),
                                     name=f"fleet-stop-{d.drone_id}", daemon=True)
                    for d in drones if d.agent is not None]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(timeout + 5.0)
        for d in drones:
            d.proxy.stop()
            if d.autopilot is not None:
                d.autopilot.stop()
            if d.ledger is not None:
                d.ledger.close()

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_drained(self, timeout: float) -> bool:
        """Wait until every agent's outbox is empty (all acknowledged). True if they emptied.

        Call it before `stop()` (a stopped agent's outbox is closed); links stay as they are, so
        restore them first if they were cut."""
        deadline = time.monotonic() + timeout
        for d in self.drones.values():
            if not d.agent.wait_drained(max(0.0, deadline - time.monotonic())):
                return False
        return True

    def pause_cameras(self) -> None:
        """Stop every camera: on return no new frame can start (see `SimCamera.pause`)."""
        for d in self.drones.values():
            d.camera.pause()

    def frames_settled(self) -> bool:
        """True when every frame the paused cameras delivered has been through its agent
        (recognized, evidence stored, violations and uploads queued): after `pause_cameras()`,
        what the agents' stats show next is everything the run will produce."""
        for d in self.drones.values():
            delivered = d.camera.delivered  # before the agent's counts: a race reads False
            stats = d.agent.stats() if d.agent is not None else {}
            if stats.get("captured", 0) < delivered or stats.get("frames_pending", 0) > 0:
                return False
        return True

    # -- faults ----------------------------------------------------------------------------------

    def cut_links(self, duration_s: float | None = None, drones: Iterable[str] | None = None,
                  mode: str = "reset") -> None:
        """Cut the links of `drones` (default: all) now; restore after `duration_s` if given,
        else at `restore_links()`.

        Raises:
            ValueError: unknown drone id, bad mode or negative duration.
        """
        ids = self._select(drones)
        if mode not in ("reset", "stall"):
            raise ValueError(f"cut_links mode must be 'reset' or 'stall', got {mode!r}")
        if duration_s is not None and duration_s < 0:
            raise ValueError(f"cut_links duration_s must be >= 0, got {duration_s}")
        for drone_id in ids:
            self._apply("cut" if mode == "reset" else "stall", drone_id)
            if duration_s is not None:
                self._require_scheduler().at(time.monotonic() + duration_s, "restore", drone_id)

    def restore_links(self, drones: Iterable[str] | None = None) -> None:
        """Restore the links of `drones` (default: all). Raises ValueError for an unknown id."""
        for drone_id in self._select(drones):
            self._apply("restore", drone_id)

    def slow_links(self, delay_ms: float, rate_bps: float | None = None,
                   drones: Iterable[str] | None = None) -> None:
        """Add latency (and a bandwidth cap) to the links; `slow_links(0)` removes it."""
        for drone_id in self._select(drones):
            self.drones[drone_id].proxy.slow(delay_ms, rate_bps)
            self._log(drone_id, "slow")

    def events(self) -> list[FaultEvent]:
        """Every link fault applied so far, in order."""
        with self._lock:
            return list(self._events)

    # -- results ---------------------------------------------------------------------------------

    def accepted(self) -> dict[str, list[protocol.Violation]]:
        """The violations each agent accepted into its outbox, decoded, in sequence order."""
        with self._lock:
            return {d.drone_id: list(d.accepted) for d in self.drones.values()}

    def accepted_ids(self) -> set[str]:
        """Message ids ("<drone id>:<seq>") of every violation accepted by any agent."""
        return {protocol.message_id(v) for vs in self.accepted().values() for v in vs}

    def stats(self) -> dict[str, Any]:
        """{"elapsed_s", "drones": {id: counters}, "totals": counters, "faults": n}.

        A drone's counters are its agent's `stats()` (captured, violations, published, acked,
        outbox_depth, reconnects, ...), plus "accepted", "unqualified" (accepted with no code),
        and the link's counters prefixed "link_" with "link_up" (1 when not cut or stalled)."""
        per: dict[str, dict[str, int]] = {}
        with self._lock:
            accepted = {d.drone_id: list(d.accepted) for d in self.drones.values()}
            faults = len(self._events)
        for drone_id, d in self.drones.items():
            row: dict[str, int] = dict(d.agent.stats()) if d.agent is not None else {}
            row["accepted"] = len(accepted[drone_id])
            row["unqualified"] = sum(1 for v in accepted[drone_id] if v.code is None)
            row.update({f"link_{k}": v for k, v in d.proxy.stats().items()})
            row["link_up"] = int(d.proxy.state == "up")
            per[drone_id] = row
        totals: dict[str, int] = {}
        for row in per.values():
            for key, value in row.items():
                if key != "flags":
                    totals[key] = totals.get(key, 0) + value
        return {"elapsed_s": round(time.monotonic() - self._t0, 1) if self._t0 else 0.0,
                "drones": per, "totals": totals, "faults": faults}

    # -- internals -------------------------------------------------------------------------------

    def _start_drone(self, drone_id: str, number: int) -> Drone:
        from drone_agent.agent import Agent

        data_dir = self.data_root / drone_id
        proxy = LinkProxy(*self.broker, name=f"link-{drone_id}")
        proxy.start()
        drone = Drone(drone_id, number, data_dir, proxy,
                      SimCamera(seed=self._seed(number, "camera"), paused=True,
                                **self.options["camera"]),
                      RoutePosition(seed=self._seed(number, "position"),
                                    **self.options["position"]),
                      SimBattery(**self.options["power"]))
        recognizer = SimRecognizer(seed=self._seed(number, "recognizer"),
                                   **self.options["recognizer"])
        self.drones[drone_id] = drone  # stop() finds the proxy even if the agent fails below
        position, power = drone.position, drone.battery
        if self.autopilot:
            from hw_sim.autopilot import fly_on_autopilot  # pymavlink only when asked for

            drone.autopilot, position, power = fly_on_autopilot(drone.position, drone.battery)
        drone.agent = Agent(self._agent_config(drone), camera=drone.camera,
                            position=position, power=power, recognizer=recognizer)
        drone.agent.start()
        self._tap(drone)
        drone.camera.resume()  # frames flow only once the tap is in place: nothing is missed
        return drone

    def _agent_config(self, drone: Drone) -> Any:
        return self._agent_config_for(drone.drone_id, drone.data_dir, drone.proxy.host,
                                      drone.proxy.port)

    def _agent_config_for(self, drone_id: str, data_dir: Path, host: str, port: int) -> Any:
        """The agent's config; raises ConfigError (a ValueError) naming a bad override."""
        from drone_agent.config import from_layers

        per_drone = {
            "drone_id": drone_id,
            "data_dir": str(data_dir),
            "mqtt": {"host": host, "port": port},
            # The parts are passed in as objects; the config names them for the record (and for
            # `presacop agent` with the same settings).
            "camera": {"factory": "hw_sim.camera:SimCamera"},
            "position": {"factory": "hw_sim.position:RoutePosition"},
            "power": {"factory": "hw_sim.power:SimBattery"},
            "recognizer": {"factory": "hw_sim.recognizer:SimRecognizer"},
            **({"signing": {"key_file": str(self.keys_dir / drone_id / "0.key")}}
               if self.keys_dir is not None else {}),
        }
        return from_layers(AGENT_DEFAULTS, self.agent_overrides, per_drone,
                           source=f"fleet agent options ({drone_id})")

    def _tap(self, drone: Drone) -> None:
        """Record every violation the agent stores in its outbox, as the outbox stores it.

        The agent has no callback for this, so the outbox's `put` is wrapped on the instance,
        before the camera delivers its first frame."""
        outbox = drone.agent.outbox
        put = outbox.put
        ledger = None
        if self.ledger_dir is not None:
            self.ledger_dir.mkdir(parents=True, exist_ok=True)
            ledger = drone.ledger = open(  # noqa: SIM115 (open while the agent runs)
                self.ledger_dir / f"{drone.drone_id}.ledger", "ab", buffering=0)

        def recording_put(kind: str, build: Callable[[int], bytes], **kwargs: Any) -> Any:
            payloads: list[bytes] = []

            def keep(seq: int) -> bytes:
                payloads.append(build(seq))
                return payloads[-1]

            seq = put(kind, keep, **kwargs)
            if seq is not None and ledger is not None:
                ledger.write(f"{kind[0]} {seq}\n".encode())  # unbuffered: one write per line
                os.fsync(ledger.fileno())
            if kind == "violation" and seq is not None and payloads:
                violation = protocol.decode(
                    payloads[-1], protocol.topic(drone.drone_id, protocol.Kind.VIOLATION))
                with self._lock:
                    drone.accepted.append(violation)  # type: ignore[arg-type]
            return seq

        outbox.put = recording_put

    @staticmethod
    def _number(drone_id: str) -> int:
        """The drone's number (sim-0007 -> 7): seeds follow the drone, not its place in this
        fleet, so a fleet split over processes flies the same drones."""
        return int(drone_id.rsplit("-", 1)[1])

    def _seed(self, number: int, what: str) -> int:
        digest = hashlib.sha256(f"hw_sim.fleet:{self.seed}:{number}:{what}".encode()).digest()
        return int.from_bytes(digest[:4], "big")

    def _select(self, drones: Iterable[str] | None) -> list[str]:
        ids = list(self.drones) if drones is None else list(drones)
        unknown = [d for d in ids if d not in self.drones]
        if unknown:
            raise ValueError(f"unknown drone ids {unknown}; this fleet has {list(self.drones)}")
        return ids

    def _apply(self, action: str, drone_id: str) -> None:
        proxy = self.drones[drone_id].proxy
        if action == "restore":
            if proxy.state == "up":
                return  # nothing to restore: not an event
            proxy.restore()
        else:
            proxy.cut(mode="reset" if action == "cut" else "stall")
        self._log(drone_id, action)

    def _log(self, drone_id: str, action: str) -> None:
        event = FaultEvent(round(time.monotonic() - self._t0, 3), drone_id, action)
        log.info("link %s: %s at %.1f s", drone_id, action, event.at_s)
        with self._lock:
            self._events.append(event)

    def _require_scheduler(self) -> Scheduler:
        if self._scheduler is None:
            raise FleetError("the fleet is not started")
        return self._scheduler

    def _schedule_random_faults(self, faults: LinkFaults) -> None:
        assert self._scheduler is not None
        numbers = {drone_id: self._number(drone_id) for drone_id in self.drone_ids}
        for at_s, action, drone_id in fault_schedule(self.seed, numbers, faults):
            self._scheduler.at(self._t0 + at_s, action, drone_id)


def _options(cls: Callable[..., Any], defaults: Mapping[str, Any],
             given: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    """Defaults updated with `given`, checked against `cls`'s signature and by building one."""
    given = dict(given or {})
    if "seed" in given:
        raise ValueError(f"Fleet {what} options: 'seed' is derived from the fleet seed; "
                         "pass Fleet(seed=...) instead")
    merged = {**defaults, **given}
    try:
        inspect.signature(cls).bind(**merged)
    except TypeError as exc:
        raise ValueError(f"Fleet {what} options {sorted(given)}: {exc}") from None
    try:
        part = cls(**merged)  # its own checks raise ValueError naming the value
    except ValueError as exc:
        raise ValueError(f"Fleet {what} options: {exc}") from None
    close = getattr(part, "close", None)
    if close is not None:
        close()
    return merged
