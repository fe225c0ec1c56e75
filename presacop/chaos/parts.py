"""What a chaos run starts and breaks: its own Mosquitto and Kafka, the gateway, one process per
drone behind a link proxy in this process.

Private brokers, always: the run kills them, so it must not use a stack someone else relies on
(`presacop stack`, another engineer's tests). They live in the run's directory on free ports.

Raises: `presacop.stack.StackError` (a broker cannot start), `ChaosError` (a drone process or the
gateway cannot start).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from common.proc import ChildProcess, tail
from hw_sim.link import LinkProxy
from presacop.demo.brokers import Endpoints
from presacop.demo.errors import DemoError
from presacop.demo.gateway import GatewayProcess
from presacop.stack import Kafka, Mosquitto, free_port, free_ports


class ChaosError(Exception):
    """The run could not set itself up (the message says what)."""


class Brokers:
    """This run's Mosquitto and Kafka, killed, paused and restarted on demand."""

    def __init__(self, workdir: Path) -> None:
        self.mosquitto = Mosquitto(workdir / "mosquitto", free_port())
        self.kafka = Kafka(workdir / "kafka", *free_ports(2))
        self.endpoints = Endpoints(self.mosquitto.host, self.mosquitto.port,
                                   self.kafka.bootstrap, "started")

    def start(self) -> None:
        self.mosquitto.start()
        self.kafka.start(timeout=180.0)

    def pause(self, service: Any, paused: bool) -> None:
        pid = service.pid
        if pid is not None:
            os.kill(pid, signal.SIGSTOP if paused else signal.SIGCONT)

    def stop(self) -> None:
        for service in (self.kafka, self.mosquitto):
            self.pause(service, False)  # a paused broker would not hear SIGTERM
            service.stop()


class Gateway:
    """The run's `presacop gateway` (the demo's: signatures required, receipts signed with
    `receipt_key`, evidence stored in the run's directory), restartable with the same client id
    and session after a kill -9."""

    def __init__(self, workdir: Path, endpoints: Endpoints, topics: dict[str, str],
                 run_id: str, keys_dir: Path, member: str = "",
                 receipt_key: Path | None = None) -> None:
        self._args = (workdir, endpoints, topics, run_id, keys_dir, member, receipt_key)
        self.proc: GatewayProcess | None = None
        self.starts = 0

    def start(self) -> None:
        """Start and wait until ready. Raises ChaosError with the log's tail."""
        self.proc = GatewayProcess(*self._args)
        self.starts += 1
        try:
            self.proc.start(timeout=120.0)
        except DemoError as exc:
            raise ChaosError(str(exc)) from exc

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.pid is not None:
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.stop(10.0)  # reaps it

    def metrics(self) -> dict[str, float]:
        """/metrics samples as {"name{labels}": value}; {} while it does not answer."""
        if self.proc is None:
            return {}
        try:
            with urllib.request.urlopen(f"http://{self.proc.metrics}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def produced(self) -> float:
        return sum(v for k, v in self.metrics().items()
                   if k.startswith("presacop_gateway_records_produced_total"))

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        self.signal(signal.SIGCONT)
        code = self.proc.stop()
        self.proc = None
        return code


class DroneProc:
    """One drone: its link proxy here, its agent in a child process (presacop.chaos.child)."""

    def __init__(self, index: int, prefix: str, endpoints: Endpoints, root: Path, seed: int,
                 keys_dir: Path, receipt_keys: Path) -> None:
        self.index = index
        self.drone_id = f"{prefix}-{index:04d}"
        self.root = root
        self.proxy = LinkProxy(endpoints.mqtt_host, endpoints.mqtt_port,
                               name=f"chaos-link-{index}").start()
        self._cmd = [sys.executable, "-m", "presacop.chaos.child", "--index", str(index),
                     "--prefix", prefix, "--mqtt", f"{self.proxy.host}:{self.proxy.port}",
                     "--root", str(root), "--seed", str(seed), "--keys", str(keys_dir),
                     "--receipt-keys", str(receipt_keys)]
        self.child: ChildProcess | None = None
        self.last: dict[str, Any] = {}
        self.starts = 0
        self._lock = threading.Lock()

    @property
    def log(self) -> Path:
        return self.root / f"{self.drone_id}.log"

    def start(self) -> None:
        self.last = {}
        self.root.mkdir(parents=True, exist_ok=True)
        self.child = ChildProcess(self._cmd, name=self.drone_id, log=self.log,
                                  on_line=self._line, new_session=True,
                                  die_with_parent=True).start()
        self.starts += 1

    def _line(self, line: str) -> None:
        try:
            row = json.loads(line)
        except ValueError:
            return
        with self._lock:
            self.last = row

    def state(self) -> dict[str, Any]:
        with self._lock:
            return dict(self.last)

    def alive(self) -> bool:
        return self.child is not None and self.child.running()

    def check(self) -> None:
        """Raises ChaosError when the process exited on its own."""
        if self.child is not None and not self.child.running():
            raise ChaosError(f"drone {self.drone_id} exited with code "
                             f"{self.child.returncode}:\n{tail(self.log)}")

    def kill(self) -> None:
        if self.child is not None:
            self.child.kill(10.0)
            self.child = None

    def pause_camera(self) -> None:
        if self.child is not None:
            self.child.send_signal(signal.SIGUSR1)

    def stop(self, timeout: float = 40.0) -> None:
        if self.child is not None:
            self.child.stop(timeout)
            self.child = None

    def close(self) -> None:
        self.stop()
        self.proxy.stop()


def wait_for(predicate: Any, timeout: float, interval: float = 0.25) -> float | None:
    """Seconds until `predicate()` was true, or None after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    return None
