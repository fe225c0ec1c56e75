"""Where the drone's clock came from: GPS, NTP, or unsynchronised.

Messages carry `time.time()`; `time_source` says how far to trust it. A Pi has no RTC, so until
GPS or NTP sets the clock it runs from the time saved at the last shutdown.

- GPS: the position source reports GNSS time (or, when one is configured, the time reference:
  `clock.factory`, e.g. the autopilot's SYSTEM_TIME) and the system clock agrees with it (within
  `gps_tolerance_s`). A GPS fix next to a wrong clock does not make the clock right.
- NTP: the kernel says the clock is synchronised (adjtimex, no privileges needed; set by
  systemd-timesyncd, chrony or ntpd), or /run/systemd/timesync/synchronized exists, or config says
  `assume_synced`.
- UNSYNCED: otherwise.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from typing import Literal

from drone_agent.hardware import Fix, TimeReference
from protocol import TimeSource

TIMESYNCD_FLAG = "/run/systemd/timesync/synchronized"
TIME_ERROR = 5  # adjtimex return value: clock not synchronised
CACHE_S = 60.0  # the answer changes rarely; asking once a minute is plenty


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h>: only the leading fields matter to us; the kernel
    # writes the whole struct, so pad generously past its real size (208 bytes on 64-bit).
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long),
                ("status", ctypes.c_int), ("_rest", ctypes.c_byte * 512)]


def kernel_synchronized() -> bool | None:
    """The kernel's view via adjtimex(2) (read-only); None if it cannot be asked."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        tx = _Timex()
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return bool(state != TIME_ERROR)


def ntp_synchronized() -> bool:
    """True if the kernel or systemd-timesyncd says the clock is synchronised."""
    return bool(kernel_synchronized()) or os.path.exists(TIMESYNCD_FLAG)


class TimeSourceDetector:
    """Decides `TimeSource` for each message; the NTP answer is cached for `CACHE_S`."""

    def __init__(self, sync_check: Literal["auto", "assume_synced", "assume_unsynced"] = "auto",
                 gps_tolerance_s: float = 2.0, reference: TimeReference | None = None) -> None:
        self.sync_check = sync_check
        self.gps_tolerance_s = gps_tolerance_s
        self.reference = reference  # replaces the fixes' gps_time when given
        self._ntp: bool | None = None
        self._asked_at = float("-inf")

    def source(self, fix: Fix | None, now: float | None = None) -> TimeSource:
        """The time source for a message stamped `now` (default `time.time()`)."""
        now = time.time() if now is None else now
        gps = self._gnss_time(fix)
        if gps is not None and abs(gps - now) <= self.gps_tolerance_s:
            return TimeSource.GPS
        return TimeSource.NTP if self._synced() else TimeSource.UNSYNCED

    def _gnss_time(self, fix: Fix | None) -> float | None:
        if self.reference is None:
            return fix.gps_time if fix is not None else None
        try:
            return self.reference.gnss_time()
        except Exception:  # a plug-in's failure means "no GNSS time", never no message
            return None

    def _synced(self) -> bool:
        if self.sync_check != "auto":
            return self.sync_check == "assume_synced"
        mono = time.monotonic()
        if self._ntp is None or mono - self._asked_at >= CACHE_S:
            self._ntp = ntp_synchronized()
            self._asked_at = mono
        return self._ntp
