"""One chaos drone in its own process, so the run can kill -9 it: `python -m
presacop.chaos.child --index I --prefix P --mqtt HOST:PORT --root DIR --seed K --keys DIR
--receipt-keys DIR` (the drones' signing keys; the back office's public receipt keys).

A one-drone `hw_sim.fleet.Fleet` (a real agent on simulated hardware) with a ledger: each message
the agent accepts is appended to <root>/ledger/<drone>.ledger and fsync'ed (`Fleet(ledger_dir)`),
so what it accepted is known even after its kill -9. Reusing --root resumes the drone's outbox.
Prints one JSON line of the agent's counters per second on stdout; after the pause also "settled"
(1 once every frame the paused camera gave out is through the agent) and "backlog" (messages
queued before the pause and not yet acknowledged: telemetry goes on, so the depth never settles).
SIGUSR1 pauses the camera (no new violations, uploads can finish); SIGTERM stops it: the agent
drains and says goodbye.
Exit 0 after a stop, 2 when the fleet cannot start.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

AGENT = {"mqtt": {"session_expiry_s": 600}}
CAMERA = {"width": 640, "height": 360, "fps": 2.0, "violation_rate": 0.3}
UNQUALIFIED_RATE = 0.05  # some alerts every run
REPORTED = ("connected", "acked", "published", "violations", "telemetry", "outbox_depth",
            "uploads_pending", "telemetry_dropped", "refused", "reconnects")


def main(argv: list[str] | None = None) -> int:
    from hw_sim import SimError
    from hw_sim.fleet import Fleet

    p = argparse.ArgumentParser(prog="presacop.chaos.child")
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--mqtt", required=True)
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keys", type=Path, required=True)
    p.add_argument("--receipt-keys", type=Path, required=True,
                   help="the back office's public receipt keys (evidence.receipt_keys_dir)")
    args = p.parse_args(argv)
    host, _, port = args.mqtt.rpartition(":")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop, pause = threading.Event(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, lambda *_: pause.set())
    fleet = Fleet(1, host, int(port), args.root / "drones", seed=args.seed, camera=CAMERA,
                  recognizer={"unqualified_rate": UNQUALIFIED_RATE},
                  agent={**AGENT, "evidence": {"receipt_keys_dir": str(args.receipt_keys)}},
                  id_prefix=args.prefix, first_index=args.index, keys_dir=args.keys,
                  ledger_dir=args.root / "ledger")
    try:
        fleet.start()
    except SimError as exc:
        print(f"chaos drone {args.index}: {exc}", file=sys.stderr)
        return 2
    mark: int | None = None  # the outbox's next seq when the camera paused
    while not stop.wait(1.0):
        if pause.is_set() and mark is None:
            fleet.pause_cameras()
            (drone,) = fleet.drones.values()
            mark = drone.agent.outbox.next_seq
        _report(fleet, mark)
    fleet.stop(timeout=20.0)
    with contextlib.suppress(Exception):  # the parent reads the outbox itself after the exit
        _report(fleet, final=True)
    return 0


def _report(fleet: Any, mark: int | None = None, final: bool = False) -> None:
    (row,) = fleet.stats()["drones"].values()
    out = {k: int(row.get(k, 0)) for k in REPORTED}
    out["settled"] = int(fleet.frames_settled())
    if mark is not None and not final:
        # Telemetry goes on after the pause: what must drain is what was queued before it.
        # (The outbox lists violations first, then by seq: the backlog is at its front.)
        (drone,) = fleet.drones.values()
        out["backlog"] = sum(1 for e in drone.agent.outbox.pending(1000) if e.seq < mark)
    out["final"] = final
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
