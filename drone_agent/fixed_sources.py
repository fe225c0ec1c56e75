"""Constant sources for benches: a fixed position and a mains-powered "battery".

`FixedPosition` is for a drone on the bench or a camera on a mast; `FixedPower` for a companion
computer without a battery monitor (it reports the configured level, never low).
"""

from __future__ import annotations

from drone_agent.hardware import Fix, PowerReading


class FixedPosition:
    """A `PositionSource` that always reports the same fix. Raises `ValueError` for bad values."""

    def __init__(self, lat: float, lon: float, alt_m: float = 0.0, heading_deg: float = 0.0,
                 speed_mps: float = 0.0) -> None:
        if not -90.0 <= lat <= 90.0:
            raise ValueError(f"lat must be in -90..90, got {lat}")
        if not -180.0 <= lon <= 180.0:
            raise ValueError(f"lon must be in -180..180, got {lon}")
        self._fix = Fix(lat=float(lat), lon=float(lon), alt_m=float(alt_m),
                        heading_deg=float(heading_deg) % 360.0, speed_mps=float(speed_mps))

    def fix(self) -> Fix | None:
        return self._fix

    def close(self) -> None:
        pass


class FixedPower:
    """A `PowerSource` reporting a constant level. Raises `ValueError` outside 0..100."""

    def __init__(self, battery_pct: int = 100, voltage: float | None = None) -> None:
        if not 0 <= battery_pct <= 100:
            raise ValueError(f"battery_pct must be in 0..100, got {battery_pct}")
        self._reading = PowerReading(battery_pct=int(battery_pct), voltage=voltage, low=False)

    def read(self) -> PowerReading:
        return self._reading

    def close(self) -> None:
        pass
