"""The whole local stack: Mosquitto + Kafka under one state directory, found again by later
processes through `<state>/stack.json`.

Raises: PortInUseError, MissingToolError, StartError (`start`); StackError (`load`).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from presacop.stack.errors import StackError
from presacop.stack.kafka import Kafka
from presacop.stack.mosquitto import Mosquitto
from presacop.stack.ports import HOST, free_ports


@dataclass(frozen=True)
class StackPorts:
    mqtt: int
    kafka: int
    controller: int


class Stack:
    """Mosquitto + Kafka under one state directory (`<state>/mosquitto`, `<state>/kafka`).

    The chosen ports are recorded in `<state>/stack.json` so that `status` and `down` in a later
    process find the same services.
    """

    def __init__(
        self,
        state_dir: Path,
        mqtt_port: int,
        kafka_port: int,
        controller_port: int,
        kafka_heap: str = "1g",
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.ports = StackPorts(mqtt_port, kafka_port, controller_port)
        self.mosquitto = Mosquitto(self.state_dir / "mosquitto", mqtt_port)
        self.kafka = Kafka(self.state_dir / "kafka", kafka_port, controller_port, heap=kafka_heap)

    @property
    def mqtt_host(self) -> str:
        return HOST

    @property
    def mqtt_port(self) -> int:
        return self.ports.mqtt

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka.bootstrap

    @property
    def services(self) -> tuple[Mosquitto, Kafka]:
        return (self.mosquitto, self.kafka)

    @staticmethod
    def record_path(state_dir: Path) -> Path:
        return Path(state_dir) / "stack.json"

    @classmethod
    def load(cls, state_dir: Path) -> Stack | None:
        """The stack recorded in `state_dir`, or None if there is none.

        Raises StackError if the record is unreadable.
        """
        path = cls.record_path(Path(state_dir))
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            return cls(
                Path(state_dir),
                int(data["mqtt_port"]),
                int(data["kafka_port"]),
                int(data["controller_port"]),
                kafka_heap=str(data.get("kafka_heap", "1g")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise StackError(f"{path}: unreadable stack record ({exc}); remove it") from exc

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "mqtt_port": self.ports.mqtt,
            "kafka_port": self.ports.kafka,
            "controller_port": self.ports.controller,
            "kafka_heap": self.kafka.heap,
        }
        self.record_path(self.state_dir).write_text(json.dumps(record, indent=2) + "\n")

    def check_ports(self) -> None:
        """Raise PortInUseError for the first taken port of a service that is not running."""
        for service in self.services:
            if not service.running():
                service.check_ports()

    def start(self, timeout: float = 180.0) -> None:
        """Start what is not running (ports checked first for both), then wait for round trips.

        Raises PortInUseError, MissingToolError, StartError.
        """
        self.check_ports()
        self.save()
        deadline = time.monotonic() + timeout
        # On failure stop only what this call started: a broker that already ran stays up.
        was_running = [s for s in self.services if s.running()]
        try:
            self.mosquitto.start(timeout=min(30.0, timeout))
            self.kafka.start(timeout=max(30.0, deadline - time.monotonic()))
        except BaseException:
            for service in self.services:
                if service not in was_running:
                    service.stop()
            raise

    def health_check(self, timeout: float = 15.0) -> None:
        """A real round trip through both brokers; raises on failure."""
        self.mosquitto.health_check(timeout)
        self.kafka.health_check(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop both brokers (Kafka first: it takes longest). Idempotent."""
        self.kafka.stop(timeout)
        self.mosquitto.stop(timeout)

    def running(self) -> bool:
        """True if both brokers run."""
        return all(s.running() for s in self.services)


@contextlib.contextmanager
def running_stack(state_dir: Path, kafka_heap: str = "512m") -> Iterator[Stack]:
    """A started stack on free ports, stopped on exit."""
    stack = Stack(state_dir, *free_ports(3), kafka_heap=kafka_heap)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
