"""The officer console (`presacop review`): officers log in, see each open alert with its
evidence image, type the violation code; supervisors also change drone-qualified codes and read
the audit log. Decisions go back into Kafka (docs/kafka-records.md); docs/review.md for operators.

    accounts   argon2id hashes, roles, lockout          sessions  cookies, CSRF, login throttle
    view       sqlite view fed from Kafka (kafka_io)    decisions claim, then Kafka, then the view
    audit      outbox -> the audit topic                app       Starlette pages, service: wiring

Errors:

    ReviewError                 root; `.reason` is a stable code
    ├── AccountError            bad name/role/password, unknown or existing account (CLI)
    ├── LoginRefused            wrong name or password, locked (`.retry_after_s`)
    ├── DecisionRefused         bad or unknown code, missing alert, already decided, stale form
    ├── PublishFailed           Kafka did not acknowledge a decision (claim released: retry)
    └── EvidenceMissing         the image is not in the evidence store (yet)

Configuration errors are `common.config.ConfigError`.
"""

from .errors import (
    AccountError,
    DecisionRefused,
    LoginRefused,
    PublishFailed,
    ReviewError,
)
from .evidence import EvidenceMissing

__all__ = ["AccountError", "DecisionRefused", "EvidenceMissing", "LoginRefused",
           "PublishFailed", "ReviewError"]
