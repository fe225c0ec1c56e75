"""Position, power and time from the flight controller over MAVLink: the `mavlink` plug-ins.

    [position]
    factory = "mavlink"                     # presacop.positions
    options = { connection = "/dev/serial0", baud = 921600 }
    [power]
    factory = "mavlink"                     # presacop.power
    options = { connection = "/dev/serial0" }
    [clock]
    factory = "mavlink"                     # presacop.clocks (optional: fixes carry it anyway)
    options = { connection = "/dev/serial0" }

Every source naming the same `connection` shares one `MavlinkLink` (one port, one reader thread),
opened by the first and closed with the last. Link options may be given in any of the sections;
the same option given twice with different values is a `ValueError` naming it.

What each reports (docs/agent.md has the field-by-field table):

- `MavlinkPosition.fix()`: GLOBAL_POSITION_INT, or None (no fix) while the link is down, the
  position is older than `stale_after_s`, GPS_RAW_INT's fix type is below `min_fix_type`
  (3 = 3D), or the autopilot reports 0, 0. `gps_time` is SYSTEM_TIME carried forward.
- `MavlinkPower.read()`: BATTERY_STATUS (battery 0), else SYS_STATUS; `low` at `low_pct` or
  when the autopilot's charge state says low. Before the first report it raises (the agent counts
  a power error); afterwards, while the link is down, it repeats the last reading.
- `MavlinkTime.gnss_time()`: SYSTEM_TIME's Unix time, carried forward on the monotonic clock.
- All three: `status_flags()` is AUTOPILOT_LOST while the link is down; `stats()` the link's
  counters (bad CRC, garbage, foreign system ids, reconnects...).

Raises: `ValueError` for bad or conflicting options; `HardwareError` when the port cannot be
opened. `fix()` and `gnss_time()` never raise.
"""

from __future__ import annotations

import math
from typing import Any

from pymavlink.dialects.v20 import ardupilotmega as mav

from drone_agent.hardware import Fix, PowerReading
from drone_agent.mavlink_link import MavlinkLink, check_link_options
from drone_agent.shared_link import LinkUser, SharedLinks
from protocol import StatusFlags

UNKNOWN_U16 = 65535  # MAVLink's "not known" for uint16 fields (hdg, voltages)
EARLIEST_UNIX_US = 1_577_836_800_000_000  # 2020-01-01: below it, SYSTEM_TIME is time since boot

LINKS: SharedLinks[MavlinkLink] = SharedLinks(MavlinkLink, lambda o: o["connection"])


class _Shared(LinkUser[MavlinkLink]):
    """What the three sources have in common: the link, AUTOPILOT_LOST, counters, close."""

    OWN: tuple[str, ...] = ()  # the source's own options; the others configure the link

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(LINKS, check_link_options(options))

    @classmethod
    def check_options(cls, **options: Any) -> None:
        """Check `options` without opening anything (`presacop agent --check-config`).
        Raises `ValueError` naming the option."""
        cls.check_own(**{k: v for k, v in options.items() if k in cls.OWN})
        check_link_options({k: v for k, v in options.items() if k not in cls.OWN})

    @staticmethod
    def check_own() -> None:
        """Raises `ValueError` for a bad value of the source's own options."""

    def status_flags(self) -> StatusFlags:
        return StatusFlags.NONE if self.link.alive else StatusFlags.AUTOPILOT_LOST


def gnss_time(link: MavlinkLink) -> float | None:
    """The autopilot's Unix time now (SYSTEM_TIME carried forward), or None if unknown."""
    seen = link.latest("SYSTEM_TIME")
    if seen is None or not link.alive or seen.msg.time_unix_usec < EARLIEST_UNIX_US:
        return None
    return seen.msg.time_unix_usec / 1e6 + (link.now() - seen.at)


class MavlinkPosition(_Shared):
    """A `PositionSource` from GLOBAL_POSITION_INT and GPS_RAW_INT (see the module docstring)."""

    OWN = ("min_fix_type", "stale_after_s")

    def __init__(self, connection: str, min_fix_type: int = mav.GPS_FIX_TYPE_3D_FIX,
                 stale_after_s: float = 2.0, **link: Any) -> None:
        self.check_own(min_fix_type, stale_after_s)
        self.min_fix_type, self.stale_after_s = min_fix_type, stale_after_s
        super().__init__({"connection": connection, **link})

    @staticmethod
    def check_own(min_fix_type: int = mav.GPS_FIX_TYPE_3D_FIX,  # type: ignore[override]
                  stale_after_s: float = 2.0) -> None:
        if not (isinstance(min_fix_type, int) and 0 <= min_fix_type <= 8):
            raise ValueError(f"min_fix_type must be 0..8 (GPS_FIX_TYPE), got {min_fix_type!r}")
        if not (isinstance(stale_after_s, (int, float)) and stale_after_s > 0):
            raise ValueError(f"stale_after_s must be > 0, got {stale_after_s!r}")

    def fix(self) -> Fix | None:
        link = self.link
        pos = link.latest("GLOBAL_POSITION_INT")
        if not link.alive or pos is None or link.now() - pos.at > self.stale_after_s:
            return None
        gps = link.latest("GPS_RAW_INT")
        if gps is not None and gps.msg.fix_type < self.min_fix_type:
            return None
        m = pos.msg
        if m.lat == 0 and m.lon == 0:
            return None
        speed = math.hypot(m.vx, m.vy) / 100.0  # cm/s, north and east
        if m.hdg != UNKNOWN_U16:
            heading = m.hdg / 100.0
        else:  # no heading from the autopilot: the course over ground, when moving
            heading = math.degrees(math.atan2(m.vy, m.vx)) if speed > 0.5 else 0.0
        return Fix(lat=m.lat / 1e7, lon=m.lon / 1e7, alt_m=m.alt / 1000.0,
                   heading_deg=heading % 360.0, speed_mps=speed, gps_time=gnss_time(link))


class MavlinkPower(_Shared):
    """A `PowerSource` from BATTERY_STATUS / SYS_STATUS (see the module docstring)."""

    OWN = ("low_pct",)

    def __init__(self, connection: str, low_pct: int = 20, **link: Any) -> None:
        self.check_own(low_pct)
        self.low_pct = low_pct
        self._last: PowerReading | None = None
        super().__init__({"connection": connection, **link})

    @staticmethod
    def check_own(low_pct: int = 20) -> None:  # type: ignore[override]
        if not (isinstance(low_pct, (int, float)) and 0 <= low_pct <= 100):
            raise ValueError(f"low_pct must be 0..100, got {low_pct!r}")

    def read(self) -> PowerReading:
        reading = self._reading()
        if reading is not None:
            self._last = reading
        elif self._last is None:
            raise ConnectionError(f"no battery report from the autopilot on "
                                  f"{self.link.connection} yet")
        return self._last

    def _reading(self) -> PowerReading | None:
        battery, status = self.link.latest("BATTERY_STATUS"), self.link.latest("SYS_STATUS")
        if battery is not None and battery.msg.battery_remaining >= 0:
            b = battery.msg
            cells = [mv for mv in b.voltages if mv != UNKNOWN_U16]
            volts = sum(cells) / 1000.0 if cells else None
            low = b.charge_state >= mav.MAV_BATTERY_CHARGE_STATE_LOW
            return self._make(b.battery_remaining, volts, low)
        if status is not None and status.msg.battery_remaining >= 0:
            s = status.msg
            volts = s.voltage_battery / 1000.0 if s.voltage_battery != UNKNOWN_U16 else None
            return self._make(s.battery_remaining, volts, False)
        return None

    def _make(self, pct: int, volts: float | None, low: bool) -> PowerReading:
        pct = min(100, max(0, int(pct)))
        return PowerReading(battery_pct=pct, voltage=volts, low=low or pct <= self.low_pct)


class MavlinkTime(_Shared):
    """A time reference (`clock.factory`): the autopilot's GNSS-derived Unix time."""

    def __init__(self, connection: str, **link: Any) -> None:
        super().__init__({"connection": connection, **link})

    def gnss_time(self) -> float | None:
        return gnss_time(self.link)
