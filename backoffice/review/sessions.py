"""Sessions and CSRF: server-side session ids in a signed cookie, one CSRF token per session.

The cookie carries a random 256-bit id and its HMAC; the database keeps only the id's SHA-256, so
a copy of the database holds no usable cookie. Every request looks the session up and joins its
account: a disabled account, a changed password, an idle or too old session ends it at once.
The login form (no session yet) gets its own signed token, checked against a short-lived cookie.
Nothing here raises on bad input: a bad cookie or token is simply refused (None / False).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from .accounts import Account, now_ms
from .db import Database

COOKIE = "presacop_session"
LOGIN_COOKIE = "presacop_login"


@dataclasses.dataclass(frozen=True)
class Session:
    account: Account
    csrf: str
    id_hash: str


class Sessions:
    def __init__(self, db: Database, key: bytes, *, idle_s: int, max_s: int,
                 clock: Callable[[], int] = now_ms) -> None:
        self.db = db
        self.key = key
        self.idle_ms = idle_s * 1000
        self.max_ms = max_s * 1000
        self.clock = clock

    def create(self, account: Account) -> str:
        """A new session for `account`; returns the cookie value."""
        sid = secrets.token_urlsafe(32)
        now = self.clock()
        with self.db.connect() as conn:
            conn.execute("INSERT INTO sessions(id_hash, user, csrf, created_ms, seen_ms) "
                         "VALUES (?,?,?,?,?)",
                         (_digest(sid), account.name, secrets.token_urlsafe(32), now, now))
        return self._sign(sid)

    def resolve(self, cookie: str | None) -> Session | None:
        """The live session of a cookie, or None (bad signature, ended, expired, account
        disabled or its password changed since the login)."""
        sid = self._unsign(cookie)
        if sid is None:
            return None
        now = self.clock()
        with self.db.connect() as conn:
            row = conn.execute(
                "SELECT s.*, u.role, u.disabled, u.changed_ms FROM sessions s "
                "JOIN users u ON u.name = s.user WHERE s.id_hash=?", (_digest(sid),)).fetchone()
            if row is None:
                return None
            dead = (row["disabled"] or row["changed_ms"] > row["created_ms"]
                    or now - row["seen_ms"] > self.idle_ms or now - row["created_ms"] > self.max_ms)
            if dead:
                conn.execute("DELETE FROM sessions WHERE id_hash=?", (row["id_hash"],))
                return None
            conn.execute("UPDATE sessions SET seen_ms=? WHERE id_hash=?", (now, row["id_hash"]))
        account = Account(row["user"], row["role"], False, row["changed_ms"])
        return Session(account, row["csrf"], row["id_hash"])

    def end(self, session: Session) -> None:
        with self.db.connect() as conn:
            conn.execute("DELETE FROM sessions WHERE id_hash=?", (session.id_hash,))

    def login_token(self) -> tuple[str, str]:
        """(cookie value, form token) for the login form's CSRF check."""
        token = secrets.token_urlsafe(24)
        return self._sign(token), token

    def login_token_ok(self, cookie: str | None, submitted: str) -> bool:
        token = self._unsign(cookie)
        return token is not None and hmac.compare_digest(token.encode(), submitted.encode())

    def _sign(self, value: str) -> str:
        mac = hmac.new(self.key, value.encode(), hashlib.sha256).hexdigest()
        return f"{value}.{mac}"

    def _unsign(self, cookie: str | None) -> str | None:
        value, _, mac = (cookie or "").rpartition(".")
        if not value or len(cookie or "") > 256:
            return None
        good = hmac.new(self.key, value.encode(), hashlib.sha256).hexdigest()
        return value if hmac.compare_digest(good.encode(), mac.encode()) else None


def csrf_ok(session: Session, submitted: object) -> bool:
    """The form's token is this session's (constant-time compare)."""
    return isinstance(submitted, str) and hmac.compare_digest(session.csrf.encode(),
                                                              submitted.encode())


class LoginThrottle:
    """Failed logins per client address in a sliding window (in memory): beyond `limit`, the
    address is refused for a while whichever names it tries (guessing across many accounts)."""

    def __init__(self, limit: int = 20, window_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, collections.deque[float]] = {}

    def retry_after(self, address: str) -> int:
        """Seconds this address must wait, 0 when it may try."""
        times = self._recent(address)
        if len(times) < self.limit:
            return 0
        return max(1, int(times[0] + self.window_s - self.clock()) + 1)

    def failed(self, address: str) -> None:
        self._recent(address).append(self.clock())
        if len(self._failures) > 10_000:  # bounded memory under a spray of addresses
            self._failures = {a: t for a, t in self._failures.items() if t}

    def _recent(self, address: str) -> collections.deque[float]:
        times = self._failures.setdefault(address, collections.deque())
        while times and times[0] < self.clock() - self.window_s:
            times.popleft()
        return times


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()
