"""The hardware the agent talks to, as small interfaces.

Real implementations live in `drone_agent` (OpenCV camera, replay position source); `hw_sim`
implements the same interfaces for laptops and tests. Nothing here imports `hw_sim`, and nothing
here knows about simulation: a `Frame` is what a real camera delivers (the simulator keeps the
truth about its frames to itself, `hw_sim.truth`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from drone_agent.errors import AgentError

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # BGR uint8, H x W x 3 (OpenCV's layout)
    index: int  # frame counter from the camera, increasing
    captured_at: float  # time.time() when captured


@runtime_checkable
class Camera(Protocol):
    def read(self) -> Frame | None:
        """The next frame, or None when no frame is available now (the agent retries later).

        Raises `HardwareError` when the camera has failed for good."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class Fix:
    lat: float  # degrees
    lon: float  # degrees
    alt_m: float  # metres above mean sea level
    heading_deg: float  # 0 <= h < 360
    speed_mps: float
    gps_time: float | None = None  # Unix seconds from the GNSS receiver, if it has one


@runtime_checkable
class PositionSource(Protocol):
    def fix(self) -> Fix | None:
        """The latest position, or None while there is no fix."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class PowerReading:
    battery_pct: int  # 0..100
    voltage: float | None = None
    low: bool = False


@runtime_checkable
class PowerSource(Protocol):
    def read(self) -> PowerReading: ...

    def close(self) -> None: ...


@runtime_checkable
class TimeReference(Protocol):
    """A GNSS-disciplined clock other than the position source (config `clock.factory`)."""

    def gnss_time(self) -> float | None:
        """Unix seconds now by the reference, or None while it does not know."""

    def close(self) -> None: ...


# Optional methods any source above may have (the MAVLink and gpsd sources do):
#   status_flags() -> protocol.StatusFlags   flags it raises now (AUTOPILOT_LOST), ORed in
#   stats() -> dict[str, int]                counters merged into Agent.stats()


class HardwareError(AgentError, RuntimeError):
    """A device failed in a way retrying will not fix (camera unplugged, file missing)."""
