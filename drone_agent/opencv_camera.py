"""A real camera through OpenCV: a V4L2 device (index or /dev path), a video file or a stream URL.

- Device (``source = 0`` or ``"/dev/video0"``): width/height/fps are requested from the driver
  (it may pick the nearest mode); the driver buffer is kept at one frame so a slow consumer gets
  a fresh frame, not a stale queue.
- Stream (``"rtsp://..."``, ``"http://..."``): read failures close and reopen the stream after
  `reopen_delay_s`; `read()` returns None meanwhile (the agent flags CAMERA_FAULT while it lasts).
- File: played at its own frame rate (or `fps`) when `realtime`, looping when `loop`; without
  `loop`, `read()` returns None after the last frame.

Raises: `HardwareError` at construction if a file or device path does not exist or the source
cannot be opened; `ValueError` for bad settings.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from drone_agent.hardware import Frame, HardwareError

log = logging.getLogger(__name__)


class OpenCVCamera:
    """A `Camera` over `cv2.VideoCapture`. See the module docstring."""

    def __init__(self, source: int | str = 0, width: int | None = None, height: int | None = None,
                 fps: float | None = None, loop: bool = True, realtime: bool = True,
                 reopen_delay_s: float = 1.0) -> None:
        import cv2  # heavy: only when a real camera is configured

        self._cv2 = cv2
        self.source = _normalise(source)
        self.kind = _kind(self.source)
        if self.kind in ("file", "device") and not os.path.exists(str(self.source)):
            raise HardwareError(f"camera source {self.source}: no such {self.kind}")
        for name, value in (("width", width), ("height", height), ("fps", fps)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        self.width, self.height, self.fps = width, height, fps
        self.loop, self.realtime, self.reopen_delay_s = loop, realtime, reopen_delay_s
        self.failures = 0
        self._index = 0
        self._next_due = 0.0
        self._reopen_at = 0.0
        self._ended = False
        self._cap: Any = self._open()
        if self._cap is None:
            raise HardwareError(f"camera source {self.source}: OpenCV cannot open it")
        self._period = self._frame_period()

    def read(self) -> Frame | None:
        """The next frame, or None while reconnecting, pacing or after a file ended."""
        if self._ended:
            return None
        if self._cap is None and not self._try_reopen():
            return None
        self._pace()
        ok, image = self._cap.read()
        if not ok and self.kind == "file" and self.loop:
            self._cap.set(self._cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._cap.read()
        if not ok:
            return self._failed()
        frame = Frame(image=image, index=self._index, captured_at=time.time())
        self._index += 1
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._ended = True

    # -- internals ----------------------------------------------------------------------------

    def _open(self) -> Any:
        cap = self._cv2.VideoCapture(self.source)
        if not cap.isOpened():
            cap.release()
            return None
        if self.kind == "device":
            cv2 = self._cv2
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            if self.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            if self.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            if self.fps:
                cap.set(cv2.CAP_PROP_FPS, self.fps)
        return cap

    def _frame_period(self) -> float:
        if self.kind != "file" or not self.realtime:
            return 0.0
        fps = self.fps or self._cap.get(self._cv2.CAP_PROP_FPS) or 0.0
        return 1.0 / fps if fps > 0 else 0.0

    def _pace(self) -> None:
        if not self._period:
            return
        now = time.monotonic()
        if self._next_due > now:
            time.sleep(self._next_due - now)
        self._next_due = max(now, self._next_due) + self._period

    def _failed(self) -> None:
        if self.kind == "file":
            log.info("camera %s: end of file", self.source)
            self._ended = True
            return None
        self.failures += 1
        log.warning("camera %s: read failed, reopening in %.1f s", self.source, self.reopen_delay_s)
        self._cap.release()
        self._cap = None
        self._reopen_at = time.monotonic() + self.reopen_delay_s
        return None

    def _try_reopen(self) -> bool:
        if time.monotonic() < self._reopen_at:
            return False
        self._cap = self._open()
        if self._cap is None:
            self._reopen_at = time.monotonic() + self.reopen_delay_s
            return False
        log.info("camera %s: reopened", self.source)
        return True


def _normalise(source: int | str) -> int | str:
    if isinstance(source, str) and source.strip().isdigit():
        return int(source)
    return source


def _kind(source: int | str) -> str:
    if isinstance(source, int):
        return "index"
    if "://" in source:
        return "stream"
    if source.startswith("/dev/"):
        return "device"
    return "file"
