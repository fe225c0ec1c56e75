"""Accounts: argon2id password hashes, roles, disabling, and lockout after failed logins.

No account exists until `presacop review user add` makes one; passwords come from a prompt or
stdin, never the command line. A login is refused the same way for an unknown name, a wrong
password and a disabled account ("wrong name or password"), so the page does not tell which
names exist; a locked name says so (with the wait), unknown names lock the same way.
Raises: AccountError (management), LoginRefused (authenticate).
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .db import Database
from .errors import AccountError, LoginRefused

ROLES = ("officer", "supervisor")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 accepts more; a login form does not need to hash a megabyte


@dataclasses.dataclass(frozen=True)
class Account:
    name: str
    role: str
    disabled: bool
    changed_ms: int

    @property
    def supervisor(self) -> bool:
        return self.role == "supervisor"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Accounts:
    """The users table. `hasher` defaults to argon2id with RFC 9106's low-memory profile
    (64 MiB, 3 passes); tests pass a cheaper one."""

    def __init__(self, db: Database, *, hasher: PasswordHasher | None = None,
                 max_failures: int = 5, lockout_s: int = 300,
                 clock: Callable[[], int] = now_ms) -> None:
        self.db = db
        self.hasher = hasher or PasswordHasher()
        self.max_failures = max_failures
        self.lockout_ms = lockout_s * 1000
        self.clock = clock
        self._dummy = ""  # made on first use (an unknown name), not by every CLI call
        self._unknown: dict[str, tuple[int, int]] = {}  # name -> (failures, locked until ms)

    def add(self, name: str, role: str, password: str) -> Account:
        """Raises AccountError for a bad name, role or password, or an existing name."""
        _check_name(name)
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        digest = self.hasher.hash(_check_password(password))
        with self.db.connect() as conn:
            if conn.execute("SELECT 1 FROM users WHERE name=?", (name,)).fetchone():
                raise AccountError(f"account {name!r} exists (use passwd or disable)")
            conn.execute("INSERT INTO users(name, role, hash, changed_ms) VALUES (?,?,?,?)",
                         (name, role, digest, self.clock()))
        return self.get(name)

    def set_password(self, name: str, password: str, role: str | None = None) -> Account:
        """New password (and role), account enabled and unlocked, its sessions ended."""
        if role is not None and role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        digest = self.hasher.hash(_check_password(password))
        with self.db.connect() as conn:
            cur = conn.execute(
                "UPDATE users SET hash=?, role=COALESCE(?, role), disabled=0, failures=0, "
                "locked_until_ms=0, changed_ms=? WHERE name=?", (digest, role, self.clock(), name))
            _must_exist(cur.rowcount, name)
            conn.execute("DELETE FROM sessions WHERE user=?", (name,))
        return self.get(name)

    def disable(self, name: str) -> Account:
        """Refuse the account's logins and end its sessions (its cookies stop working)."""
        with self.db.connect() as conn:
            cur = conn.execute("UPDATE users SET disabled=1, changed_ms=? WHERE name=?",
                               (self.clock(), name))
            _must_exist(cur.rowcount, name)
            conn.execute("DELETE FROM sessions WHERE user=?", (name,))
        return self.get(name)

    def get(self, name: str) -> Account:
        """Raises AccountError if there is no such account."""
        with self.db.connect() as conn:
            row = conn.execute("SELECT * FROM users WHERE name=?", (name,)).fetchone()
        _must_exist(0 if row is None else 1, name)
        return Account(row["name"], row["role"], bool(row["disabled"]), row["changed_ms"])

    def authenticate(self, name: str, password: str) -> Account:
        """The account if the password is right and it may log in. Raises LoginRefused
        (reason "bad_credentials" or "locked"); every failure counts towards the lockout."""
        now = self.clock()
        with self.db.connect() as conn:
            row = conn.execute("SELECT * FROM users WHERE name=?", (name,)).fetchone()
        locked_until = row["locked_until_ms"] if row is not None else self._unknown.get(
            name, (0, 0))[1]
        if locked_until > now:
            wait = -(-(locked_until - now) // 1000)
            raise LoginRefused(f"too many failed logins for {name!r}: try again in {wait} s",
                               "locked", wait)
        ok = self._verify(row["hash"] if row is not None else None, password)
        if row is None or not ok or row["disabled"]:
            (self._failed if row is not None else self._failed_unknown)(name, now)
            raise LoginRefused("wrong name or password", "bad_credentials")
        with self.db.connect() as conn:
            conn.execute("UPDATE users SET failures=0 WHERE name=?", (name,))
            if self.hasher.check_needs_rehash(row["hash"]):
                conn.execute("UPDATE users SET hash=? WHERE name=?",
                             (self.hasher.hash(password), name))
        return Account(row["name"], row["role"], False, row["changed_ms"])

    def _verify(self, digest: str | None, password: str) -> bool:
        if len(password) > MAX_PASSWORD:
            return False
        if digest is None and not self._dummy:
            # Verified against unknown names so that they cost as much time as known ones.
            self._dummy = self.hasher.hash("presacop-no-such-account")
        try:
            return self.hasher.verify(digest or self._dummy, password) and digest is not None
        except (VerificationError, InvalidHashError):
            return False

    def _failed_unknown(self, name: str, now: int) -> None:
        """Unknown names lock like real ones (in memory), so a lockout message does not tell
        which names exist."""
        failures = self._unknown.get(name, (0, 0))[0] + 1
        if len(self._unknown) >= 10_000:  # bounded under a spray of names
            self._unknown.clear()
        locked = failures >= self.max_failures
        self._unknown[name] = (0, now + self.lockout_ms) if locked else (failures, 0)

    def _failed(self, name: str, now: int) -> None:
        with self.db.connect() as conn:
            conn.execute(
                "UPDATE users SET locked_until_ms=CASE WHEN failures+1>=? "
                "THEN ? ELSE locked_until_ms END, failures=CASE WHEN failures+1>=? THEN 0 "
                "ELSE failures+1 END WHERE name=?",
                (self.max_failures, now + self.lockout_ms, self.max_failures, name))


def _check_name(name: str) -> None:
    if not NAME.match(name):
        raise AccountError(f"bad account name {name!r}: 1..32 chars of [A-Za-z0-9._-], "
                           "starting with a letter or digit")


def _check_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountError(f"password must be {MIN_PASSWORD}..{MAX_PASSWORD} characters")
    return password


def _must_exist(count: int, name: str) -> None:
    if count == 0:
        raise AccountError(f"no account {name!r}")
