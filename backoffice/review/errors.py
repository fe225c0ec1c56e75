"""The console's errors (the tree is drawn in the package docstring)."""

from __future__ import annotations


class ReviewError(Exception):
    """Root of the console's errors. `reason` is a stable code; the text is for people."""

    reason = "error"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class AccountError(ReviewError):
    """A bad account name, role or password, or an unknown/existing account (the CLI)."""

    reason = "account"


class LoginRefused(ReviewError):
    """A login that did not succeed: wrong name or password, disabled, or locked for a while."""

    reason = "login"

    def __init__(self, message: str, reason: str = "login", retry_after_s: int = 0) -> None:
        super().__init__(message, reason)
        self.retry_after_s = retry_after_s


class DecisionRefused(ReviewError):
    """A decision that was not written: bad code, missing alert, already decided, stale form.
    Nothing was written to Kafka."""

    reason = "refused"


class PublishFailed(ReviewError):
    """Kafka did not acknowledge a decision's records in time; the claim was released so the
    decision can be retried (a repeat of the same revision is a duplicate readers drop)."""

    reason = "kafka"
