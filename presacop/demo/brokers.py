"""The brokers a demo run uses: given ones, the running local stack, or a stack it starts (and
then stops, unless --keep-stack).

Raises: `DemoError` (a given broker is unreachable, a port is taken), `StackError`.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from presacop.demo.errors import DemoError


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
