"""The demo's own errors (the tree is drawn in `presacop.demo`'s docstring)."""

from __future__ import annotations


class DemoError(Exception):
    """The demo cannot run: the stack, the gateway, Kafka or the fleet failed to come up."""


class Interrupted(Exception):
    """SIGTERM arrived: stop, clean up, exit 130 (Ctrl-C arrives as KeyboardInterrupt)."""
