"""Run the MQTT -> Kafka gateway: subscribe to the drones' topics on a shared subscription, write
every message to Kafka (acks=all, idempotent producer) and acknowledge it to the broker only after
Kafka has. Unqualified violations also raise an alert; bad input goes to the dead-letter topic.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT drain), 2 for a bad config or flag.
The configuration reference is docs/gateway.md.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import signal
import sys
from types import FrameType


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="FILE", default=None,
                        help="TOML config file (default: built-in defaults for the local stack)")
    parser.add_argument("--retire", action="store_true",
                        help="leave the share group for good: take no new messages, forward "
                        "those still queued for this client id, end its session, exit 0 (stop "
                        "the running gateway with this client id first)")
    parser.add_argument("--check-config", action="store_true",
                        help="validate the config, print the effective values as JSON, exit 0 "
                        "(or 2 naming the bad key)")


def run(args: argparse.Namespace) -> int:
    from common.config import ConfigError

    from .config import load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"presacop gateway: bad config: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print(json.dumps(_redacted(config), indent=2))
        return 0
    from . import logs
    from .factory import build

    logs.setup(config.log.format, config.log.level)
    try:
        gateway = build(config, retire=args.retire)
    except OSError as exc:  # the metrics port is taken, or the address is not ours
        print(f"presacop gateway: metrics.address {config.metrics.address!r}: cannot listen "
              f"({exc.strerror or exc})", file=sys.stderr)
        return 2

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("gateway").info("signal %s: draining", signal.Signals(signum).name)
        gateway.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # `kill -USR1 <pid>` writes every thread's stack to stderr (the journal): for diagnosing a
    # wedged gateway without stopping it.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    return gateway.run()


def _redacted(config: object) -> dict[str, object]:
    import dataclasses

    data = dataclasses.asdict(config)  # type: ignore[call-overload]
    for section, key in (("mqtt", "password"), ("kafka", "sasl_password")):
        if data[section][key]:
            data[section][key] = "***"
    return data
