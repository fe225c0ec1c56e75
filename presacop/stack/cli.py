"""Start, stop or inspect the local development stack: a real Mosquitto and a real Apache Kafka
(KRaft, single node) on 127.0.0.1, with all state (data, logs, PID files, generated configs) in one
state directory.

  up      start what is not running, wait for a real MQTT publish/subscribe and Kafka
          produce/consume round trip, then print the endpoints (safe to repeat)
  down    stop exactly the broker processes `up` started, by PID
  status  say what runs (exit 0 if both brokers run, 3 otherwise)

Default ports avoid the system services on 1883/9092. See docs/stack.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from presacop.stack.errors import PortInUseError, StackError
from presacop.stack.kafka import Kafka
from presacop.stack.mosquitto import Mosquitto
from presacop.stack.ports import accepts
from presacop.stack.stack import Stack

DEFAULT_MQTT_PORT = 11883
DEFAULT_KAFKA_PORT = 19092
DEFAULT_CONTROLLER_PORT = 19093
EXIT_NOT_RUNNING = 3


def default_state_dir() -> Path:
    """$PRESACOP_STATE_DIR, else $XDG_STATE_HOME/presacop/stack (~/.local/state/...)."""
    env = os.environ.get("PRESACOP_STATE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "presacop" / "stack"


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 1-65535: {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("action", choices=["up", "down", "status"], help="what to do")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where data, logs, PID files and configs live "
        "(default: $PRESACOP_STATE_DIR or ~/.local/state/presacop/stack)",
    )
    # Port defaults are applied in run(): an explicit flag must be told apart from the default
    # when a stack already runs on other ports.
    parser.add_argument(
        "--mqtt-port", type=_port, help=f"Mosquitto port (default {DEFAULT_MQTT_PORT})"
    )
    parser.add_argument(
        "--kafka-port", type=_port, help=f"Kafka client port (default {DEFAULT_KAFKA_PORT})"
    )
    parser.add_argument(
        "--controller-port",
        type=_port,
        help=f"Kafka KRaft controller port (default {DEFAULT_CONTROLLER_PORT})",
    )
    parser.add_argument("--kafka-heap", default="1g", help="Kafka JVM heap (default 1g)")


def run(args: argparse.Namespace) -> int:
    state_dir = (args.state_dir or default_state_dir()).expanduser().resolve()
    # kafka-python logs every refused connection while the broker boots; our errors say enough.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    try:
        if args.action == "up":
            return _up(args, state_dir)
        if args.action == "down":
            return _down(state_dir)
        return _status(state_dir)
    except StackError as exc:
        print(f"presacop stack {args.action}: {exc}", file=sys.stderr)
        return 1


def _up(args: argparse.Namespace, state_dir: Path) -> int:
    recorded = Stack.load(state_dir)
    if recorded is not None and any(s.running() for s in recorded.services):
        conflict = _port_conflict(args, recorded)
        if conflict:
            print(
                f"presacop stack up: a stack already runs from {state_dir} with {conflict}; "
                "run `presacop stack down` first to change ports",
                file=sys.stderr,
            )
            return 2
        stack = recorded
        already = [s.name for s in stack.services if s.running()]
        print(f"already running: {', '.join(already)}; checking health")
    else:
        stack = Stack(
            state_dir,
            args.mqtt_port or DEFAULT_MQTT_PORT,
            args.kafka_port or DEFAULT_KAFKA_PORT,
            args.controller_port or DEFAULT_CONTROLLER_PORT,
            kafka_heap=args.kafka_heap,
        )
    try:
        stack.check_ports()  # before anything starts, so nothing is left half up
    except PortInUseError as exc:
        flag = _flag_for(stack, exc.port)
        print(f"presacop stack up: {exc} (option {flag})", file=sys.stderr)
        return 1
    missing = [s.name for s in stack.services if not s.running()]
    if missing:
        print(f"starting {', '.join(missing)} (state in {state_dir}) ...", flush=True)
    # Started for the user: they outlive this command (nothing stops a broker at exit).
    stack.start()
    stack.health_check()
    print("stack is up: MQTT publish/subscribe and Kafka produce/consume (acks=all) round trips ok")
    _print_endpoints(stack)
    return 0


def _flag_for(stack: Stack, port: int) -> str:
    flags = {
        stack.ports.mqtt: "--mqtt-port",
        stack.ports.kafka: "--kafka-port",
        stack.ports.controller: "--controller-port",
    }
    return flags.get(port, "--state-dir")


def _port_conflict(args: argparse.Namespace, stack: Stack) -> str:
    wanted = {
        "--mqtt-port": (args.mqtt_port, stack.ports.mqtt),
        "--kafka-port": (args.kafka_port, stack.ports.kafka),
        "--controller-port": (args.controller_port, stack.ports.controller),
    }
    return ", ".join(
        f"{flag} {have} (asked for {want})"
        for flag, (want, have) in wanted.items()
        if want is not None and want != have
    )


def _print_endpoints(stack: Stack) -> None:
    print(f"  MQTT   {stack.mqtt_host}:{stack.mqtt_port}   {_describe(stack.mosquitto)}")
    print(f"  Kafka  {stack.kafka_bootstrap}   {_describe(stack.kafka)}")
    print(f"  state  {stack.state_dir}")


def _describe(service: Mosquitto | Kafka) -> str:
    return f"pid {service.pid}, log {service.log_path}"


def _down(state_dir: Path) -> int:
    stack = Stack.load(state_dir)
    if stack is None:
        print(f"no stack recorded in {state_dir}; nothing to stop")
        return 0
    for service in stack.services:
        pid = service.pid
        if pid is None:
            print(f"{service.name}: not running")
            continue
        service.stop()
        if service.running():
            print(f"{service.name}: pid {pid} survived SIGTERM and SIGKILL", file=sys.stderr)
            return 1
        print(f"{service.name}: stopped (pid {pid})")
    return 0


def _status(state_dir: Path) -> int:
    stack = Stack.load(state_dir)
    if stack is None:
        print(f"no stack recorded in {state_dir}: not running")
        return EXIT_NOT_RUNNING
    endpoints = {
        stack.mosquitto.name: f"mqtt://{stack.mqtt_host}:{stack.mqtt_port}",
        stack.kafka.name: stack.kafka_bootstrap,
    }
    for service in stack.services:
        if service.running():
            accepting = all(accepts(p) for p in service.listen_ports())
            state = "running" if accepting else "running, not accepting connections yet"
            print(f"{service.name:10} {state} (pid {service.pid}) {endpoints[service.name]}")
        else:
            print(f"{service.name:10} stopped")
    print(f"state dir  {state_dir}")
    return 0 if stack.running() else EXIT_NOT_RUNNING
