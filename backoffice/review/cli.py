"""presacop review: the officer console.

    presacop review serve --config review.toml
    presacop review user add NAME --role officer|supervisor --config review.toml
    presacop review user passwd NAME [--role ROLE] --config review.toml
    presacop review user disable NAME --config review.toml

Passwords are read from the terminal (asked twice) or, when stdin is not a terminal, as one line
from stdin; never from the command line. Exit codes: 0 ok, 1 refused (bad name, role or
password, unknown or existing account), 2 bad config.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable

from argon2 import PasswordHasher

from common.config import ConfigError

from .accounts import ROLES, Accounts, now_ms
from .config import ReviewConfig, load_config
from .errors import AccountError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="review_action", required=True)
    serve = sub.add_parser("serve", help="run the console (Kafka feeder + web pages)")
    serve.add_argument("--config", "-c", default=None, help="review.toml")
    user = sub.add_parser("user", help="add, disable or set the password of an account")
    user.add_argument("user_action", choices=("add", "disable", "passwd"))
    user.add_argument("name", help="the account name (recorded with every decision)")
    user.add_argument("--role", choices=ROLES, default=None,
                      help="officer (decides alerts) or supervisor (also changes drone codes "
                      "and sees the audit log); add: default officer")
    user.add_argument("--config", "-c", default=None, help="review.toml")


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"bad config: {exc}", file=sys.stderr)
        return 2
    if args.review_action == "serve":
        import logging

        from .server import serve

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        return serve(cfg)
    try:
        print(manage(cfg, args.user_action, args.name, args.role))
    except AccountError as exc:
        print(f"presacop review user {args.user_action}: {exc}", file=sys.stderr)
        return 1
    return 0


def manage(cfg: ReviewConfig, action: str, name: str, role: str | None,
           read_password: Callable[[], str] | None = None,
           hasher: PasswordHasher | None = None) -> str:
    """Do one account action; the audit record waits in the outbox for the console to send.
    Raises AccountError."""
    from . import audit
    from .db import Database

    db = Database(cfg.review.state_dir)
    accounts = Accounts(db, hasher=hasher)
    reader = read_password or _read_password
    if action == "add":
        done = accounts.add(name, role or "officer", reader())
        event = "account_added"
    elif action == "passwd":
        done = accounts.set_password(name, reader(), role)
        event = "password_set"
    else:
        done = accounts.disable(name)
        event = "account_disabled"
    with db.connect() as conn:
        audit.add(conn, event, done.name, now_ms(), cfg.review.console_id, "cli",
                  role=done.role)
    return f"{event.replace('_', ' ')}: {done.name} ({done.role})"


def _read_password() -> str:
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise AccountError("the two passwords differ")
    return first
