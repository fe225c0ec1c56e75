"""Names that are never drone ids: the broker's service accounts.

A drone logs in to the broker with its drone id as the username, and the broker's ACL gives each
username its own topics (deploy/mosquitto/presacop.acl). Service accounts (the gateways, the
console) are named `presacop-...`; if one of those names were also a drone id, a password or a
client certificate issued for the drone would carry the service account's name. So the agent's
config check and `presacop keys gen` refuse every drone id starting with `presacop`, and the ACL
denies the service accounts in use everything on the drone listener.
"""

from __future__ import annotations

RESERVED_PREFIX = "presacop"


def reserved_drone_id(drone_id: str) -> bool:
    """True when `drone_id` is reserved for service accounts (any case of `presacop...`)."""
    return drone_id.lower().startswith(RESERVED_PREFIX)


def check_drone_id(drone_id: str) -> str | None:
    """A reason why `drone_id` cannot be a drone's, or None (for config checks)."""
    if reserved_drone_id(drone_id):
        return (f"{drone_id!r} is reserved for service accounts (names starting with "
                f"{RESERVED_PREFIX!r} are never drone ids)")
    return None
