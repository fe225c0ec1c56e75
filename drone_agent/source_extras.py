"""The optional extras of a hardware source: flags it raises and counters it keeps.

A source (position, power, time reference) may have `status_flags() -> StatusFlags` (the MAVLink
sources raise AUTOPILOT_LOST while the flight controller is silent) and `stats() -> dict[str,
int]` (bad CRC frames, gpsd reconnects...). The agent ORs the flags into telemetry and merges
the counters into `Agent.stats()`. Sources without them are skipped.

Raises nothing: an extra that fails is logged once and treated as absent, since telemetry must
go on.
"""

from __future__ import annotations

import logging

from protocol import StatusFlags

log = logging.getLogger(__name__)
_warned: set[tuple[str, str]] = set()


def status_flags(*sources: object) -> StatusFlags:
    """The OR of the sources' `status_flags()`."""
    flags = StatusFlags.NONE
    for source in sources:
        value = _call(source, "status_flags")
        if value is not None:
            flags |= StatusFlags(int(value))
    return flags


def stats(*sources: object) -> dict[str, int]:
    """The sources' `stats()` merged (a link shared by two sources reports the same numbers)."""
    out: dict[str, int] = {}
    for source in sources:
        value = _call(source, "stats")
        if value:
            out.update({str(k): int(v) for k, v in dict(value).items()})
    return out


def _call(source: object, name: str) -> object:
    method = getattr(source, name, None)
    if not callable(method):
        return None
    try:
        return method()
    except Exception as exc:
        key = (type(source).__name__, name)
        if key not in _warned:
            _warned.add(key)
            log.warning("%s.%s() failed: %s (ignored)", *key, exc)
        return None
