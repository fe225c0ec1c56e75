"""Position and time from gpsd (a GNSS receiver on the companion computer): the `gpsd` plug-ins.

    [position]
    factory = "gpsd"                        # presacop.positions
    options = { host = "127.0.0.1", port = 2947 }
    [clock]
    factory = "gpsd"                        # presacop.clocks (optional: fixes carry it anyway)

gpsd's JSON protocol over TCP, with the standard library only: the client sends
``?WATCH={"enable":true,"json":true}`` and reads one JSON object per line; TPV reports carry the
fix. `GpsdPosition.fix()` is the latest TPV while it is fresh (`stale_after_s`) and its mode is
at least `min_mode` (2 = 2D, 3 = 3D), else None (no fix). Altitude is `altMSL` (gpsd >= 3.20;
older ones send `alt`); heading is `track` (true), speed `speed` (m/s), each the last known one
when a report lacks it; `gps_time` is the TPV's `time` carried forward on the monotonic clock.
Position and clock naming the same host and port share one connection.

Bad lines (not JSON, not an object, no class) are skipped and counted; gpsd ERROR reports are
logged and counted; a lost connection is retried with backoff, logging "cannot reach gpsd at
HOST:PORT" with the cause. `stats()`: gpsd_reports, gpsd_bad_lines, gpsd_errors,
gpsd_reconnects, gpsd_connect_failures, gpsd_connected.

Raises: `ValueError` for bad options. `fix()` and `gnss_time()` never raise.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from common.backoff import Backoff
from drone_agent.hardware import Fix
from drone_agent.shared_link import LinkUser, SharedLinks

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024  # gpsd's longest reports (SKY with many satellites) are a few KiB
COUNTERS = ("gpsd_reports", "gpsd_bad_lines", "gpsd_errors", "gpsd_reconnects",
            "gpsd_connect_failures")


class GpsdClient:
    """One watching connection to gpsd, read by the owned thread ``gpsd-reader``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 2947, device: str | None = None,
                 connect_timeout_s: float = 5.0, reconnect_min_s: float = 1.0,
                 reconnect_max_s: float = 30.0, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.check(host, port, device, connect_timeout_s, reconnect_min_s, reconnect_max_s)
        self.host, self.port, self.device = host, port, device
        self.name = f"{host}:{port}"
        self.connect_timeout_s = connect_timeout_s
        self._backoff = Backoff(reconnect_min_s, reconnect_max_s)
        self._clock = clock
        self._lock = threading.Lock()
        self.counters = dict.fromkeys(COUNTERS, 0)
        self._tpv: tuple[dict[str, Any], float] | None = None
        self._connected = False
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpsd-reader", daemon=True)
        self._thread.start()

    @staticmethod
    def check(host: str = "127.0.0.1", port: int = 2947, device: str | None = None,
              connect_timeout_s: float = 5.0, reconnect_min_s: float = 1.0,
              reconnect_max_s: float = 30.0) -> None:
        """Raises `ValueError` naming a bad option (and `TypeError` for an unknown one)."""
        if not isinstance(host, str) or not host:
            raise ValueError(f"gpsd host must be a host name or address, got {host!r}")
        if not (isinstance(port, int) and 1 <= port <= 65535):
            raise ValueError(f"gpsd port must be 1..65535, got {port!r}")
        if device is not None and not isinstance(device, str):
            raise ValueError(f"gpsd device must be a path, got {device!r}")
        if not (isinstance(connect_timeout_s, (int, float)) and connect_timeout_s > 0):
            raise ValueError(f"connect_timeout_s must be > 0, got {connect_timeout_s!r}")
        if not 0 < reconnect_min_s <= reconnect_max_s:
            raise ValueError("reconnect_min_s and reconnect_max_s need 0 < min <= max")

    def latest_tpv(self) -> tuple[dict[str, Any], float] | None:
        """The last TPV report and its monotonic arrival time."""
        with self._lock:
            return self._tpv

    def now(self) -> float:
        return self._clock()

    def stats(self) -> dict[str, int]:
        with self._lock:
            out = dict(self.counters)
            out["gpsd_connected"] = int(self._connected)
        return out

    def close(self) -> None:
        self._stop.set()
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed by the peer
                sock.shutdown(socket.SHUT_RDWR)  # wakes the reader blocked in recv
        self._thread.join(5.0)

    # -- the reader thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._session()
            except OSError as exc:
                if self._stop.is_set():
                    break
                self._count("gpsd_connect_failures")
                log.error("cannot reach gpsd at %s: %s (is gpsd running? retrying)", self.name,
                          exc.strerror or exc)
            except Exception:
                log.exception("gpsd reader: unexpected error (reconnecting)")
            with self._lock:
                self._connected = False
            self._stop.wait(self._backoff.next())

    def _session(self) -> None:
        with socket.create_connection((self.host, self.port), self.connect_timeout_s) as sock:
            self._sock = sock
            watch: dict[str, Any] = {"enable": True, "json": True}
            if self.device:
                watch["device"] = self.device
            sock.sendall(f"?WATCH={json.dumps(watch)}\n".encode())
            sock.settimeout(None)
            with self._lock:
                self._connected = True
            self._backoff.reset()
            self._count("gpsd_reconnects")
            log.info("gpsd %s: watching%s", self.name, f" {self.device}" if self.device else "")
            self._read_lines(sock)

    def _read_lines(self, sock: socket.socket) -> None:
        buf = b""
        while not self._stop.is_set():
            data = sock.recv(65536)
            if not data:
                raise ConnectionResetError("gpsd closed the connection")
            buf += data
            *lines, buf = buf.split(b"\n")
            if len(buf) > MAX_LINE:
                self._count("gpsd_bad_lines")
                buf = b""
            for line in lines:
                if line.strip():
                    self._handle(line)

    def _handle(self, line: bytes) -> None:
        try:
            report = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            report = None
        if not isinstance(report, dict) or not isinstance(report.get("class"), str):
            self._count("gpsd_bad_lines")
            return
        if report["class"] == "ERROR":
            self._count("gpsd_errors")
            log.warning("gpsd %s: %s", self.name, report.get("message"))
        elif report["class"] == "TPV" and (not self.device or report.get("device") == self.device):
            with self._lock:
                self._tpv = (report, self._clock())
                self.counters["gpsd_reports"] += 1

    def _count(self, name: str) -> None:
        with self._lock:
            self.counters[name] += 1


CLIENTS: SharedLinks[GpsdClient] = SharedLinks(GpsdClient, lambda o: (o["host"], o["port"]))


def parse_time(text: object) -> float | None:
    """gpsd's ISO 8601 UTC time ("2026-11-30T09:50:04.000Z") as Unix seconds, or None."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class _GpsdShared(LinkUser[GpsdClient]):
    OWN: tuple[str, ...] = ("stale_after_s",)  # the source's own options; the rest: the client

    def __init__(self, host: str, port: int, stale_after_s: float,
                 options: dict[str, Any]) -> None:
        self.check_own(stale_after_s=stale_after_s)
        self.stale_after_s = stale_after_s
        super().__init__(CLIENTS, {"host": host, "port": port, **options})

    @classmethod
    def check_options(cls, **options: Any) -> None:
        """Check `options` without connecting (`presacop agent --check-config`).
        Raises `ValueError` naming the option."""
        cls.check_own(**{k: v for k, v in options.items() if k in cls.OWN})
        try:
            GpsdClient.check(**{k: v for k, v in options.items() if k not in cls.OWN})
        except TypeError as exc:
            raise ValueError(f"gpsd options: {exc}") from None

    @staticmethod
    def check_own(stale_after_s: float = 3.0, min_mode: int = 3) -> None:
        if not (isinstance(stale_after_s, (int, float)) and stale_after_s > 0):
            raise ValueError(f"stale_after_s must be > 0, got {stale_after_s!r}")
        if min_mode not in (2, 3):
            raise ValueError(f"min_mode must be 2 (2D) or 3 (3D), got {min_mode!r}")

    def _fresh_tpv(self) -> tuple[dict[str, Any], float] | None:
        seen = self.link.latest_tpv()
        if seen is None or self.link.now() - seen[1] > self.stale_after_s:
            return None
        return seen

    def gnss_time(self) -> float | None:
        """The receiver's time now (the last TPV's, carried forward), or None."""
        seen = self._fresh_tpv()
        at = parse_time(seen[0].get("time")) if seen else None
        return None if at is None or seen is None else at + (self.link.now() - seen[1])


class GpsdPosition(_GpsdShared):
    """A `PositionSource` from gpsd TPV reports (see the module docstring)."""

    OWN = ("stale_after_s", "min_mode")

    def __init__(self, host: str = "127.0.0.1", port: int = 2947, min_mode: int = 3,
                 stale_after_s: float = 3.0, **options: Any) -> None:
        self.check_own(min_mode=min_mode)
        self.min_mode = min_mode
        # A report may lack a value (2D fix: no altitude; gpsd ended the cycle before the RMC:
        # no track or speed): the last known one stands in.
        self._last = {"altMSL": 0.0, "track": 0.0, "speed": 0.0}
        super().__init__(host, port, stale_after_s, options)

    def fix(self) -> Fix | None:
        seen = self._fresh_tpv()
        if seen is None:
            return None
        tpv = seen[0]
        numbers = [tpv.get(k) for k in ("mode", "lat", "lon")]
        if not all(isinstance(v, (int, float)) for v in numbers) or numbers[0] < self.min_mode:
            return None
        for key, alias in (("altMSL", "alt"), ("track", None), ("speed", None)):
            value = tpv.get(key, tpv.get(alias) if alias else None)
            if isinstance(value, (int, float)):
                self._last[key] = float(value)
        return Fix(lat=float(tpv["lat"]), lon=float(tpv["lon"]), alt_m=self._last["altMSL"],
                   heading_deg=self._last["track"] % 360.0, speed_mps=self._last["speed"],
                   gps_time=self.gnss_time())


class GpsdTime(_GpsdShared):
    """A time reference (`clock.factory`): the GNSS receiver's time via gpsd."""

    def __init__(self, host: str = "127.0.0.1", port: int = 2947, stale_after_s: float = 3.0,
                 **options: Any) -> None:
        super().__init__(host, port, stale_after_s, options)
