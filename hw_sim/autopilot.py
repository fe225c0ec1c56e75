"""A simulated flight controller speaking real MAVLink 2 over UDP (pymavlink), for tests and demos.

It flies a NYC route (`hw_sim.position.RoutePosition`), drains a battery (`hw_sim.power.SimBattery`)
and sends what a PX4 autopilot sends a companion computer:

    HEARTBEAT            1 Hz (quadrotor, PX4, armed)
    GLOBAL_POSITION_INT  route position, altitude MSL in mm, velocity north/east in cm/s, heading
    GPS_RAW_INT          fix type 3 (3D), or 1 (no fix) during a fix loss
    SYS_STATUS           battery voltage and remaining %
    BATTERY_STATUS       id 0: cell voltages, remaining %, charge state
    SYSTEM_TIME          Unix time from `wall_clock` (a GNSS-disciplined clock)

Each message goes out at its own interval (1 Hz by default), which a COMMAND_LONG
MAV_CMD_SET_MESSAGE_INTERVAL changes (answered with COMMAND_ACK ACCEPTED, or UNSUPPORTED when made
with `refuse_intervals=True`, like some ArduPilot builds); REQUEST_DATA_STREAM sets the rates of
its groups. Every request is recorded in `requests`.

Faults to test against: `lose_fix()`/`regain_fix()` (or `fix_loss=(start_s, duration_s)`),
`go_silent()`/`resume()` (the link is cut: nothing is sent), `send_raw(bytes)` (garbage or a
corrupted frame from the autopilot's own address), `send_as(system_id, msg)` (traffic from
another vehicle). `sent` keeps the last message of each type sent and `history` every one (the
last 20,000), for comparison; `send_raw`/`send_as` bytes are in neither.

Address: it sends to `peer` (the agent listening with ``udpin:``), or, without one, to whoever
sent it something last (the agent connecting with ``udpout:`` to `address`).

Raises: `ValueError` for bad arguments, `OSError` if the socket cannot be bound.
"""

from __future__ import annotations

import collections
import logging
import math
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from pymavlink.dialects.v20 import ardupilotmega as mav

from drone_agent.mavlink_source import MavlinkPosition, MavlinkPower
from hw_sim.position import RoutePosition
from hw_sim.power import SimBattery

log = logging.getLogger(__name__)

TICK_S = 0.02
CELLS = 4  # a 4S pack, as SimBattery's voltages
DEFAULT_HZ = 1.0
STREAM_GROUPS = {  # REQUEST_DATA_STREAM id -> the messages of ours it covers (ArduPilot's groups)
    mav.MAV_DATA_STREAM_ALL: ("GLOBAL_POSITION_INT", "GPS_RAW_INT", "SYS_STATUS",
                              "BATTERY_STATUS", "SYSTEM_TIME"),
    mav.MAV_DATA_STREAM_POSITION: ("GLOBAL_POSITION_INT",),
    mav.MAV_DATA_STREAM_EXTENDED_STATUS: ("GPS_RAW_INT", "SYS_STATUS"),
    mav.MAV_DATA_STREAM_EXTRA3: ("BATTERY_STATUS", "SYSTEM_TIME"),
}
MSG_IDS = {"GLOBAL_POSITION_INT": mav.MAVLINK_MSG_ID_GLOBAL_POSITION_INT,
           "GPS_RAW_INT": mav.MAVLINK_MSG_ID_GPS_RAW_INT,
           "SYS_STATUS": mav.MAVLINK_MSG_ID_SYS_STATUS,
           "BATTERY_STATUS": mav.MAVLINK_MSG_ID_BATTERY_STATUS,
           "SYSTEM_TIME": mav.MAVLINK_MSG_ID_SYSTEM_TIME}


class SimAutopilot:
    """A simulated PX4 on UDP. Use `start()`/`stop()` or as a context manager.

    Args:
        peer: (host, port) to send to; None = reply to whoever sends to `bind`.
        bind: local (host, port); port 0 picks a free one (see `address`).
        system_id, component_id: the autopilot's MAVLink ids (1, 1 as PX4 and ArduPilot ship).
        seed, route, speed_mps, altitude_m: the flight (`RoutePosition`).
        battery_pct, drain_pct_per_min, low_pct: the battery (`SimBattery`).
        fix_loss: (start_s, duration_s) after start without a GNSS fix, or None.
        refuse_intervals: answer SET_MESSAGE_INTERVAL with UNSUPPORTED.
        position, battery: fly these instead of making them from the arguments above.
        clock, wall_clock: monotonic and Unix seconds, injectable.
    """

    def __init__(self, peer: tuple[str, int] | None = None,
                 bind: tuple[str, int] = ("127.0.0.1", 0), *, system_id: int = 1,
                 component_id: int = 1, seed: int = 0, route: str | None = None,
                 speed_mps: float = 8.0, altitude_m: float = 40.0, battery_pct: float = 100.0,
                 drain_pct_per_min: float = 1.0, low_pct: float = 20.0,
                 fix_loss: tuple[float, float] | None = None, refuse_intervals: bool = False,
                 position: RoutePosition | None = None, battery: SimBattery | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        if not (1 <= system_id <= 255 and 1 <= component_id <= 255):
            raise ValueError("system_id and component_id must be 1..255")
        self.route = position or RoutePosition(seed, route, speed_mps, altitude_m, clock=clock,
                                               wall_clock=wall_clock)
        self.battery = battery or SimBattery(battery_pct, drain_pct_per_min, low_pct, clock=clock)
        self.peer = peer
        self.system_id, self.component_id = system_id, component_id
        self.fix_loss, self.refuse_intervals = fix_loss, refuse_intervals
        self._clock, self._wall_clock = clock, wall_clock
        self._mav = mav.MAVLink(None, srcSystem=system_id, srcComponent=component_id)
        self._mav.robust_parsing = True
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(bind)
        self.intervals = dict.fromkeys(MSG_IDS, 1.0 / DEFAULT_HZ)
        self.requests: list[tuple[str, Any]] = []  # ("interval", (msg id, us)) / ("stream", ...)
        self.sent: dict[str, Any] = {}  # the last message of each type sent
        self.history: collections.deque[Any] = collections.deque(maxlen=20_000)  # all sent
        self.received = 0  # valid MAVLink messages received
        self._due = dict.fromkeys(["HEARTBEAT", *MSG_IDS], 0.0)  # the heartbeat first
        self._silent = threading.Event()
        self._no_fix = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._t0 = clock()
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> SimAutopilot:
        self._t0 = self._clock()
        self._thread = threading.Thread(target=self._run, name="sim-autopilot", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self.sock.close()

    def __enter__(self) -> SimAutopilot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults ---------------------------------------------------------------------------------

    def go_silent(self) -> None:
        """Cut the link: nothing is sent (requests are still read) until `resume()`."""
        self._silent.set()

    def resume(self) -> None:
        self._silent.clear()

    def lose_fix(self) -> None:
        self._no_fix.set()

    def regain_fix(self) -> None:
        self._no_fix.clear()

    def has_fix(self) -> bool:
        if self._no_fix.is_set():
            return False
        if self.fix_loss is None:
            return True
        start, duration = self.fix_loss
        return not start <= self._clock() - self._t0 < start + duration

    def send_raw(self, data: bytes) -> None:
        """Bytes from the autopilot's own port, as they are (garbage, a corrupted frame)."""
        if self.peer is not None:
            self.sock.sendto(data, self.peer)

    def send_as(self, system_id: int, msg: Any) -> None:
        """`msg` framed as coming from another vehicle's autopilot (system `system_id`)."""
        other = mav.MAVLink(None, srcSystem=system_id, srcComponent=self.component_id)
        self.send_raw(msg.pack(other))

    def frame(self, msg: Any) -> bytes:
        """`msg` as a MAVLink 2 frame from this autopilot (for tests that corrupt it)."""
        with self._lock:
            data = msg.pack(self._mav)
            self._mav.seq = (self._mav.seq + 1) % 256
        return bytes(data)

    # -- the loop -------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._receive(TICK_S)
                if self.peer is not None and not self._silent.is_set():
                    self._send_due(self._clock())
            except OSError as exc:
                if self._stop.is_set():
                    return
                log.warning("sim autopilot: %s", exc)
            except Exception:
                log.exception("sim autopilot: unexpected error (carrying on)")

    def _receive(self, timeout: float) -> None:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return
        data, sender = self.sock.recvfrom(65535)
        for msg in self._mav.parse_buffer(data) or ():
            if msg.get_type() in ("BAD_DATA", "UNKNOWN"):
                continue
            self.received += 1
            if self.peer is None or msg.get_type() == "HEARTBEAT":
                self.peer = sender
            self._on_message(msg)

    def _on_message(self, msg: Any) -> None:
        kind = msg.get_type()
        if kind == "COMMAND_LONG" and msg.target_system == self.system_id \
                and msg.command == mav.MAV_CMD_SET_MESSAGE_INTERVAL:
            self._set_interval(int(msg.param1), msg.param2)
        elif kind == "REQUEST_DATA_STREAM" and msg.target_system == self.system_id:
            self.requests.append(("stream", (msg.req_stream_id, msg.req_message_rate)))
            for name in STREAM_GROUPS.get(msg.req_stream_id, ()):
                rate = msg.req_message_rate if msg.start_stop else 0
                self.intervals[name] = 1.0 / rate if rate > 0 else math.inf

    def _set_interval(self, msg_id: int, interval_us: float) -> None:
        self.requests.append(("interval", (msg_id, interval_us)))
        names = [n for n, i in MSG_IDS.items() if i == msg_id]
        if self.refuse_intervals or not names:
            self._send(self._mav.command_ack_encode(
                mav.MAV_CMD_SET_MESSAGE_INTERVAL, mav.MAV_RESULT_UNSUPPORTED))
            return
        if interval_us < 0:
            self.intervals[names[0]] = math.inf  # -1: stop sending it
        else:
            self.intervals[names[0]] = interval_us / 1e6 if interval_us > 0 else 1.0 / DEFAULT_HZ
        self._send(self._mav.command_ack_encode(mav.MAV_CMD_SET_MESSAGE_INTERVAL,
                                                mav.MAV_RESULT_ACCEPTED))

    def _send_due(self, now: float) -> None:
        for name, due in list(self._due.items()):
            if now < due:
                continue
            interval = 1.0 if name == "HEARTBEAT" else self.intervals[name]
            self._due[name] = now + interval if math.isfinite(interval) else math.inf
            if not math.isfinite(interval) and name != "HEARTBEAT":
                continue
            self._send(self._build(name, now))

    def _send(self, msg: Any) -> None:
        if self.peer is None or self._silent.is_set():
            return
        self.sock.sendto(self.frame(msg), self.peer)
        self.sent[msg.get_type()] = msg
        self.history.append(msg)

    # -- messages -------------------------------------------------------------------------------

    def _build(self, name: str, now: float) -> Any:
        boot_ms = int((now - self._t0) * 1000) & 0xFFFFFFFF
        if name == "HEARTBEAT":
            return self._mav.heartbeat_encode(
                mav.MAV_TYPE_QUADROTOR, mav.MAV_AUTOPILOT_PX4,
                mav.MAV_MODE_FLAG_SAFETY_ARMED | mav.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, 0,
                mav.MAV_STATE_ACTIVE)
        if name == "SYSTEM_TIME":
            return self._mav.system_time_encode(int(self._wall_clock() * 1e6), boot_ms)
        if name in ("SYS_STATUS", "BATTERY_STATUS"):
            return self._power_message(name)
        fix = self.route.at(now - self._t0)
        lat, lon = round(fix.lat * 1e7), round(fix.lon * 1e7)
        alt_mm = round(fix.alt_m * 1000)
        if name == "GPS_RAW_INT":
            ok = self.has_fix()
            return self._mav.gps_raw_int_encode(
                int(self._wall_clock() * 1e6), mav.GPS_FIX_TYPE_3D_FIX if ok else
                mav.GPS_FIX_TYPE_NO_FIX, lat if ok else 0, lon if ok else 0, alt_mm if ok else 0,
                80, 120, round(fix.speed_mps * 100), round(fix.heading_deg * 100) % 36000,
                12 if ok else 0)
        rad = math.radians(fix.heading_deg)
        vx, vy = (round(fix.speed_mps * 100 * f(rad)) for f in (math.cos, math.sin))
        return self._mav.global_position_int_encode(
            boot_ms, lat, lon, alt_mm, round(alt_mm - 10_000), vx, vy, 0,
            round(fix.heading_deg * 100) % 36000)

    def _power_message(self, name: str) -> Any:
        reading = self.battery.read()
        remaining = reading.battery_pct
        volts_mv = round((reading.voltage or 0) * 1000)
        if name == "SYS_STATUS":
            return self._mav.sys_status_encode(0, 0, 0, 200, volts_mv, -1, remaining,
                                               0, 0, 0, 0, 0, 0)
        cells = [volts_mv // CELLS] * CELLS + [65535] * (10 - CELLS)
        state = mav.MAV_BATTERY_CHARGE_STATE_LOW if reading.low else \
            mav.MAV_BATTERY_CHARGE_STATE_OK
        return self._mav.battery_status_encode(
            0, mav.MAV_BATTERY_FUNCTION_ALL, mav.MAV_BATTERY_TYPE_LIPO, 2500, cells, -1, -1, -1,
            remaining, 0, state)


def fly_on_autopilot(position: RoutePosition, battery: SimBattery
                     ) -> tuple[SimAutopilot, MavlinkPosition, MavlinkPower]:
    """A started autopilot flying `position` with `battery`, and the agent's `mavlink` sources
    connected to it (``udpout:`` to its port, one shared link): what `presacop sim
    --position-source mavlink` gives each drone. Stop the autopilot after the agent."""
    autopilot = SimAutopilot(position=position, battery=battery).start()
    connection = f"udpout:127.0.0.1:{autopilot.address[1]}"
    try:
        position_source = MavlinkPosition(connection, connect_timeout_s=5.0)  # opens the link
    except BaseException:
        autopilot.stop()
        raise
    return autopilot, position_source, MavlinkPower(connection)  # shares the open link
