"""The stack's errors (the tree is drawn in `presacop.stack`'s docstring)."""

from __future__ import annotations

from presacop.stack.ports import HOST


class StackError(Exception):
    """Root of the stack's errors."""


class PortInUseError(StackError):
    """A port we were asked to listen on is already taken."""

    def __init__(self, service: str, port: int) -> None:
        super().__init__(
            f"{service}: port {port} on {HOST} is already in use; "
            f"stop whatever listens there or choose another port"
        )
        self.service = service
        self.port = port


class MissingToolError(StackError):
    """An external program the stack needs is not installed."""


class StartError(StackError):
    """A broker exited during start-up or did not pass its round trip in time."""
