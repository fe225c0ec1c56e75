"""Run the drone agent: camera -> recognizer -> evidence store -> durable outbox -> MQTT.

Reads a TOML config (see docs/agent.md), builds the camera, position, power and recognizer it
names, and runs until SIGTERM or SIGINT, then drains and disconnects cleanly.

Exit status: 0 after a clean stop (also on SIGTERM); 2 for a bad config or plug-in (the message
names the key); 1 when the hardware or the data directory fails at start.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="PATH", help="agent TOML config")
    parser.add_argument("--check-config", action="store_true",
                        help="validate the config and resolve every factory, then exit")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="override the config's log_level")
    parser.add_argument("--stop-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="on SIGTERM, drain and disconnect within this long (default 10)")


def run(args: argparse.Namespace) -> int:
    from common.config import ConfigError, load
    from drone_agent import plugins
    from drone_agent.assembly import from_config
    from drone_agent.config import AgentConfig
    from drone_agent.encoders import upload_options, violation_encoder
    from drone_agent.errors import OutboxError, PluginError
    from drone_agent.hardware import HardwareError

    KeyFileError = _key_file_error()

    # The outbox, evidence and anything else the agent writes are its user's alone, whatever
    # umask the shell or the unit (UMask=) gave: plates and positions are personal data.
    os.umask(0o077)
    # Handlers first: a SIGTERM during the (slow) start-up still ends in a clean stop.
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signo, _frame: stop.set())
    try:
        config = load(AgentConfig, args.config)
    except ConfigError as exc:
        return _fail(EXIT_CONFIG, f"bad config: {exc}")
    _setup_logging(args.log_level or config.log_level)
    try:
        if args.check_config:
            clock = (plugins.CLOCK,) if config.clock.factory else ()
            for part in (plugins.CAMERA, plugins.POSITION, plugins.POWER, plugins.RECOGNIZER,
                         *clock):  # names resolve, options are checked where a plug-in can
                section = getattr(config, part.section)
                plugins.check(part, section.factory, section.options)
            violation_encoder(config)  # the signing key loads
            upload_options(config)  # and the back office's receipt keys
            print(f"{args.config}: config OK (drone {config.drone_id})")
            return EXIT_OK
        agent = from_config(config)
    except (PluginError, KeyFileError) as exc:
        return _fail(EXIT_CONFIG, f"{args.config}: {exc}")
    except HardwareError as exc:
        return _fail(EXIT_FAILED, f"hardware failed at start: {exc}")

    try:
        agent.start()
    except (OutboxError, OSError) as exc:
        agent.stop(timeout=1.0)
        return _fail(EXIT_FAILED, f"cannot start: {exc}")
    sd_notify("READY=1")
    while not stop.wait(1.0):  # a timeout keeps the main thread responsive to signals
        pass
    sd_notify("STOPPING=1")
    logging.getLogger("drone_agent").info("stopping (signal)")
    agent.stop(timeout=args.stop_timeout)
    return EXIT_OK


def _key_file_error() -> type[Exception]:
    """common.signing.KeyFileError, imported only where it can be raised (cryptography)."""
    try:
        from common.signing import KeyFileError
    except ImportError:
        return ValueError
    return KeyFileError


def sd_notify(state: str) -> None:
    """Tell systemd (Type=notify) about `state`; a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract socket namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        logging.getLogger("drone_agent").warning("sd_notify(%s) failed: %s", state, exc)


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")


def _fail(code: int, message: str) -> int:
    print(f"presacop agent: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """`python -m drone_agent.cli --config ...`: the same as `presacop agent`, for a drone image
    that ships only the agent."""
    parser = argparse.ArgumentParser(prog="presacop-agent", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
