"""The gateway's signature check: the key registry of `security.keys_dir` as a router verifier.

Raises nothing at build time for a missing directory (a drone without keys is an unknown key);
`router.route` turns a failed check into a `bad_signature` dead letter.
"""

from __future__ import annotations

from pathlib import Path

from common.signing import KeyRegistry

from .config import SecurityConfig
from .router import Verifier


def verifier_for(security: SecurityConfig) -> Verifier | None:
    """A verifier over `security.keys_dir`, or None when no directory is configured."""
    if not security.keys_dir:
        return None
    return KeyRegistry(Path(security.keys_dir), security.keys_reload_s).check
