"""One MAVLink 2 link to the flight controller (PX4 or ArduPilot), read by one owned thread.

The link locks onto the first autopilot that sends a HEARTBEAT (or `target_system`), then keeps
the latest of what the agent needs, each with its arrival time:

    HEARTBEAT            link liveness, armed state
    GLOBAL_POSITION_INT  lat, lon (1e-7 deg), altitude MSL (mm), ground velocity, heading
    GPS_RAW_INT          fix type (the no-fix flag below `min_fix_type`)
    SYS_STATUS           battery remaining %, voltage (BATTERY_STATUS id 0 is preferred)
    BATTERY_STATUS       battery remaining %, cell voltages, charge state (low)
    SYSTEM_TIME          the autopilot's Unix time (GNSS-derived once it has a fix)

At each (re)connection it asks for the rates it needs with MAV_CMD_SET_MESSAGE_INTERVAL, one
message at a time, each until a COMMAND_ACK (retried three times); an autopilot that refuses
(some ArduPilot builds) gets REQUEST_DATA_STREAM instead. It sends its own HEARTBEAT once a second
as an onboard computer (component 191): a UDP peer learns our address from it, and ground
stations see the companion.

Bad traffic never reaches the state: garbage bytes, frames with a bad CRC, messages of unknown
ids and messages from another system id are dropped and counted (`counters`).

Liveness: no HEARTBEAT for `heartbeat_timeout_s` is a lost link (logged, `alive` false). No
HEARTBEAT within `connect_timeout_s` of opening the port, or of losing the link, logs
"no HEARTBEAT from <connection> in N s: check port/baud" and reopens the port, with backoff.

Raises: `ValueError` (bad options) and `HardwareError` (the port cannot be opened) from the
constructor; `AutopilotTimeout` from `wait_connected`. The reader thread never raises.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pymavlink.dialects.v20 import ardupilotmega as mav

from common.backoff import Backoff
from drone_agent.hardware import HardwareError
from drone_agent.mavlink_transport import (
    Transport,
    UdpTransport,
    open_transport,
    parse_connection,
    serial_speed,
)

log = logging.getLogger(__name__)

POSITION_MSGS = (mav.MAVLINK_MSG_ID_GLOBAL_POSITION_INT,)
STATUS_MSGS = (mav.MAVLINK_MSG_ID_GPS_RAW_INT, mav.MAVLINK_MSG_ID_SYS_STATUS,
               mav.MAVLINK_MSG_ID_BATTERY_STATUS, mav.MAVLINK_MSG_ID_SYSTEM_TIME)
# REQUEST_DATA_STREAM groups (ArduPilot) holding the same messages.
FALLBACK_STREAMS = ((mav.MAV_DATA_STREAM_POSITION, "position_hz"),
                    (mav.MAV_DATA_STREAM_EXTENDED_STATUS, "status_hz"),
                    (mav.MAV_DATA_STREAM_EXTRA3, "status_hz"))
ACK_WAIT_S = 1.0
REQUEST_TRIES = 3
RECV_SLICE_S = 0.1
NOT_AN_AUTOPILOT = (mav.MAV_TYPE_GCS, mav.MAV_TYPE_ONBOARD_CONTROLLER, mav.MAV_TYPE_GIMBAL,
                    mav.MAV_TYPE_ADSB, mav.MAV_TYPE_CAMERA)
COUNTERS = ("mavlink_messages", "mavlink_bad_crc", "mavlink_bad_frames", "mavlink_garbage_bytes",
            "mavlink_unknown", "mavlink_foreign", "mavlink_link_lost", "mavlink_reconnects",
            "mavlink_connect_timeouts", "mavlink_rate_requests", "mavlink_rate_acks",
            "mavlink_rate_refused", "mavlink_stream_fallbacks", "mavlink_port_errors")


class AutopilotTimeout(HardwareError):
    """No HEARTBEAT from the autopilot in time (wrong port, baud, or autopilot off)."""


@dataclass(frozen=True)
class Seen:
    """A message and the monotonic time it arrived."""

    msg: Any
    at: float


class MavlinkLink:
    """The shared link. See the module docstring for what it reads and how it fails.

    Args:
        connection: ``udpin:HOST:PORT``, ``udpout:HOST:PORT``, ``tcp:HOST:PORT`` or a serial
            device. baud: for a serial device.
        system_id: ours; None takes the autopilot's (the usual choice for a companion computer).
        component_id: ours, 191 (MAV_COMP_ID_ONBOARD_COMPUTER) by default.
        target_system: the autopilot's system id; None locks onto the first autopilot heard.
        heartbeat_timeout_s, connect_timeout_s: liveness limits (see the module docstring).
        position_hz, status_hz: rates requested for GLOBAL_POSITION_INT, and for GPS_RAW_INT,
            SYS_STATUS, BATTERY_STATUS, SYSTEM_TIME.
        reconnect_min_s, reconnect_max_s: backoff between attempts to reopen the port.
    """

    def __init__(self, connection: str, baud: int = 57600, system_id: int | None = None,
                 component_id: int = mav.MAV_COMP_ID_ONBOARD_COMPUTER,
                 target_system: int | None = None, heartbeat_timeout_s: float = 3.0,
                 connect_timeout_s: float = 10.0, position_hz: float = 5.0,
                 status_hz: float = 1.0, reconnect_min_s: float = 1.0,
                 reconnect_max_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        _check_options(system_id, component_id, target_system, heartbeat_timeout_s,
                       connect_timeout_s, position_hz, status_hz)
        self.connection, self.baud = connection, baud
        self.system_id, self.component_id, self.target_system = system_id, component_id, \
            target_system
        self.heartbeat_timeout_s, self.connect_timeout_s = heartbeat_timeout_s, connect_timeout_s
        self.rates = {"position_hz": position_hz, "status_hz": status_hz}
        self._clock = clock
        self._backoff = Backoff(reconnect_min_s, reconnect_max_s)
        self._mav = mav.MAVLink(None, srcSystem=system_id or 1, srcComponent=component_id)
        self._mav.robust_parsing = True
        self._lock = threading.Lock()
        self._latest: dict[str, Seen] = {}
        self.counters = dict.fromkeys(COUNTERS, 0)
        self._target: tuple[int, int] | None = None
        self._foreign: set[int] = set()  # other system ids already logged
        self._alive = False
        self._waiting_since = clock()  # for the connect timeout: opened, or link lost
        self._heartbeat_at = float("-inf")  # last HEARTBEAT from the autopilot
        self._sent_heartbeat_at = float("-inf")
        self._requests: list[tuple[int, float]] = []  # (message id, interval us) to ask for
        self._request_sent_at = float("-inf")
        self._request_tries = 0
        self._awaiting_ack = False
        self._connected = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._transport: Transport | None = open_transport(connection, baud)  # fail fast
        self._thread = threading.Thread(target=self._run, name="mavlink-link", daemon=True)
        self._thread.start()

    # -- what the sources read ------------------------------------------------------------------

    def latest(self, name: str) -> Seen | None:
        """The last message of type `name` (e.g. "GLOBAL_POSITION_INT") from the autopilot."""
        with self._lock:
            return self._latest.get(name)

    @property
    def alive(self) -> bool:
        """A HEARTBEAT from the autopilot arrived within `heartbeat_timeout_s`."""
        with self._lock:
            return self._alive

    def armed(self) -> bool | None:
        beat = self.latest("HEARTBEAT")
        return None if beat is None else bool(beat.msg.base_mode & mav.MAV_MODE_FLAG_SAFETY_ARMED)

    def now(self) -> float:
        return self._clock()

    def stats(self) -> dict[str, int]:
        with self._lock:
            out = dict(self.counters)
        out["mavlink_alive"] = int(self.alive)
        return out

    def wait_connected(self, timeout: float) -> None:
        """Block until the link is alive. Raises `AutopilotTimeout` with the usual causes."""
        with self._connected:
            if not self._connected.wait_for(lambda: self._alive or self._stop.is_set(), timeout):
                raise AutopilotTimeout(self._timeout_text(timeout))

    def close(self) -> None:
        """Stop the reader thread and close the port. Safe to call twice."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(5.0)
        self._close_transport()

    # -- the reader thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._transport is None and not self._reopen():
                continue
            try:
                data = self._transport.recv(RECV_SLICE_S) if self._transport else b""
                if data:
                    self._feed(data)
                self._housekeeping(self._clock())
            except OSError as exc:
                self._count("mavlink_port_errors")
                log.error("MAVLink port %s failed: %s (reopening)", self.connection, exc)
                self._close_transport()
            except Exception:  # a bug must not end the link silently
                log.exception("MAVLink reader: unexpected error (carrying on)")

    def _reopen(self) -> bool:
        if self._stop.wait(self._backoff.next()):
            return False
        try:
            self._transport = open_transport(self.connection, self.baud)
        except (HardwareError, ValueError) as exc:
            log.error("%s (retrying)", exc)
            return False
        self._count("mavlink_reconnects")
        self._reset_parser()  # half a frame from the old port is not the start of the next
        with self._lock:
            self._waiting_since = self._clock()
        log.info("MAVLink port %s reopened", self.connection)
        return True

    def _close_transport(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            with contextlib.suppress(OSError):  # closing a port that already failed
                transport.close()

    def _feed(self, data: bytes) -> None:
        for msg in self._mav.parse_buffer(data) or ():
            self._handle(msg)
        if isinstance(self._transport, UdpTransport) and self._mav.buf_len():
            # A datagram holds whole frames: a frame cut short by its end (or a stray magic
            # byte in garbage) must not swallow the start of the next datagram.
            self._count("mavlink_bad_frames")
            self._reset_parser()

    def _reset_parser(self) -> None:
        """Drop pymavlink's partial frame (public attributes of its parser; the UDP test with a
        cut frame pins this)."""
        self._mav.buf, self._mav.buf_index = bytearray(), 0
        self._mav.expected_length = mav.HEADER_LEN_V1 + 2

    def _handle(self, msg: Any) -> None:
        kind = msg.get_type()
        if kind == "BAD_DATA":
            self._count_bad(msg)
            return
        if kind == "UNKNOWN" or msg.get_msgId() < 0:
            self._count("mavlink_unknown")
            return
        source = (msg.get_srcSystem(), msg.get_srcComponent())
        if self._target is None and kind == "HEARTBEAT" and self._is_autopilot(msg, source):
            self._lock_onto(source)
        if self._target is None or source[0] != self._target[0]:
            self._count("mavlink_foreign")
            self._note_foreign(source[0])
            return
        if source[1] != self._target[1]:
            return  # a gimbal, camera or another companion on the same vehicle: not ours to read
        self._count("mavlink_messages")
        if isinstance(self._transport, UdpTransport):
            self._transport.reply_to_last_sender()
        if kind == "BATTERY_STATUS" and msg.id != 0:
            return  # the agent reports one battery: the main one
        now = self._clock()
        with self._lock:
            self._latest[kind] = Seen(msg, now)
        if kind == "HEARTBEAT":
            self._on_heartbeat(now)
        elif kind == "COMMAND_ACK" and msg.command == mav.MAV_CMD_SET_MESSAGE_INTERVAL:
            self._on_rate_ack(msg.result)

    def _note_foreign(self, system: int) -> None:
        """Log the first message of each other system id (a ground station or another vehicle on
        the link is normal; a stream of them is worth a look), at most 16 of them."""
        if self._target is None or system in self._foreign or len(self._foreign) >= 16:
            return
        self._foreign.add(system)
        log.warning("MAVLink %s: ignoring system %d (the autopilot is system %d); counted in "
                    "mavlink_foreign", self.connection, system, self._target[0])

    def _count_bad(self, msg: Any) -> None:
        reason = str(getattr(msg, "reason", ""))
        if reason == "Bad prefix":
            self._count("mavlink_garbage_bytes", len(msg.get_msgbuf()))
            return
        self._count("mavlink_bad_crc" if "CRC" in reason else "mavlink_bad_frames")
        bad = self.counters["mavlink_bad_crc"] + self.counters["mavlink_bad_frames"]
        if bad in (1, 10, 100) or bad % 1000 == 0:
            log.warning("MAVLink %s: %d bad frames so far, ignored (latest: %s)",
                        self.connection, bad, reason)

    def _is_autopilot(self, msg: Any, source: tuple[int, int]) -> bool:
        if self.target_system is not None:
            return source[0] == self.target_system and msg.autopilot != mav.MAV_AUTOPILOT_INVALID
        return msg.autopilot != mav.MAV_AUTOPILOT_INVALID and msg.type not in NOT_AN_AUTOPILOT

    def _lock_onto(self, source: tuple[int, int]) -> None:
        self._target = source
        if self.system_id is None:
            self._mav.srcSystem = source[0]  # a companion uses its vehicle's system id
        log.info("MAVLink %s: autopilot is system %d component %d", self.connection, *source)

    def _on_heartbeat(self, now: float) -> None:
        self._heartbeat_at = now
        with self._lock:
            was_alive, self._alive = self._alive, True
            self._connected.notify_all()
        if not was_alive:
            self._backoff.reset()
            log.info("MAVLink %s: autopilot link up (system %d, %s)", self.connection,
                     self._target[0] if self._target else -1,
                     "armed" if self.armed() else "disarmed")
            self._queue_rate_requests()

    def _housekeeping(self, now: float) -> None:
        if now - self._sent_heartbeat_at >= 1.0:
            self._sent_heartbeat_at = now
            self._send(self._mav.heartbeat_encode(
                mav.MAV_TYPE_ONBOARD_CONTROLLER, mav.MAV_AUTOPILOT_INVALID, 0, 0,
                mav.MAV_STATE_ACTIVE))
        if self._alive and now - self._heartbeat_at > self.heartbeat_timeout_s:
            self._on_lost(now)
        elif not self._alive and now - self._waiting_since > self.connect_timeout_s:
            self._count("mavlink_connect_timeouts")
            log.error("%s", self._timeout_text(self.connect_timeout_s))
            self._close_transport()  # reopened by _run after a backoff delay
            with self._lock:
                self._waiting_since = now
        self._send_rate_request(now)

    def _on_lost(self, now: float) -> None:
        with self._lock:
            self._alive = False
            self._waiting_since = now
        self._count("mavlink_link_lost")
        self._requests = []
        log.error("MAVLink %s: autopilot link LOST: no HEARTBEAT for %.1f s (AUTOPILOT_LOST set "
                  "in telemetry until it returns)", self.connection, now - self._heartbeat_at)

    def _timeout_text(self, seconds: float) -> str:
        what = f"system {self.target_system}" if self.target_system is not None else "an autopilot"
        baud = f" at {self.baud} baud" if not self.connection.startswith(("udp", "tcp")) else ""
        return (f"no HEARTBEAT from {what} on {self.connection}{baud} in {seconds:g} s: check "
                "port/baud, that the autopilot sends MAVLink 2 on that port, and its wiring")

    # -- message rates --------------------------------------------------------------------------

    def _queue_rate_requests(self) -> None:
        wanted = [(m, self.rates["position_hz"]) for m in POSITION_MSGS]
        wanted += [(m, self.rates["status_hz"]) for m in STATUS_MSGS]
        self._requests = [(m, 1e6 / hz) for m, hz in wanted]
        self._request_tries, self._awaiting_ack = 0, False
        self._request_sent_at = float("-inf")

    def _send_rate_request(self, now: float) -> None:
        if not self._requests or self._target is None or now - self._request_sent_at < ACK_WAIT_S:
            return
        if self._request_tries >= REQUEST_TRIES:
            msg_id = self._requests.pop(0)[0]
            log.warning("MAVLink: no COMMAND_ACK for SET_MESSAGE_INTERVAL(%d) after %d tries; "
                        "using what the autopilot streams", msg_id, REQUEST_TRIES)
            self._request_tries = 0
            if not self._requests:
                return
        msg_id, interval_us = self._requests[0]
        self._request_sent_at, self._request_tries = now, self._request_tries + 1
        self._awaiting_ack = True
        self._count("mavlink_rate_requests")
        self._send(self._mav.command_long_encode(
            self._target[0], self._target[1], mav.MAV_CMD_SET_MESSAGE_INTERVAL, 0,
            msg_id, interval_us, 0, 0, 0, 0, 0))

    def _on_rate_ack(self, result: int) -> None:
        # A COMMAND_ACK does not say which message it is for: one request is outstanding at a
        # time, and after a retried one the next waits ACK_WAIT_S, so that the answers to the
        # earlier tries arrive (and are ignored) before it goes out.
        if not self._requests or not self._awaiting_ack:
            return
        self._requests.pop(0)
        retried, self._awaiting_ack = self._request_tries > 1, False
        self._request_tries = 0
        self._request_sent_at = self._clock() if retried else float("-inf")
        if result == mav.MAV_RESULT_ACCEPTED:
            self._count("mavlink_rate_acks")
            return
        self._count("mavlink_rate_refused")
        log.warning("MAVLink: autopilot refused SET_MESSAGE_INTERVAL (result %d); asking with "
                    "REQUEST_DATA_STREAM instead", result)
        self._requests = []
        self._request_streams()

    def _request_streams(self) -> None:
        assert self._target is not None
        self._count("mavlink_stream_fallbacks")
        for stream, rate_key in FALLBACK_STREAMS:
            self._send(self._mav.request_data_stream_encode(
                self._target[0], self._target[1], stream, max(1, round(self.rates[rate_key])), 1))

    # -- helpers --------------------------------------------------------------------------------

    def _send(self, msg: Any) -> None:
        if self._transport is None:
            return
        data = msg.pack(self._mav)
        self._mav.seq = (self._mav.seq + 1) % 256
        self._transport.send(data)

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n


def _check_options(system_id: int | None, component_id: int, target_system: int | None,
                   heartbeat_timeout_s: float, connect_timeout_s: float, position_hz: float,
                   status_hz: float) -> None:
    for name, value in (("system_id", system_id), ("target_system", target_system),
                        ("component_id", component_id)):
        if value is not None and not 1 <= value <= 255:
            raise ValueError(f"{name} must be 1..255, got {value}")
    for name, value in (("heartbeat_timeout_s", heartbeat_timeout_s),
                        ("connect_timeout_s", connect_timeout_s), ("position_hz", position_hz),
                        ("status_hz", status_hz)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be > 0, got {value}")


def check_link_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """`options` checked as `MavlinkLink` would check them, without opening anything (for
    `presacop agent --check-config` too). Raises `ValueError` naming the option: an unknown one
    (a typo would otherwise be silently ignored), a missing connection, a bad value."""
    unknown = sorted(set(options) - LINK_PARAMS)
    if unknown:
        raise ValueError(f"unknown MAVLink option(s) {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(LINK_PARAMS))}")
    try:
        bound = inspect.signature(MavlinkLink).bind(**options)
    except TypeError as exc:
        raise ValueError(f"MAVLink options: {exc}") from None
    bound.apply_defaults()
    v = bound.arguments
    _check_options(v["system_id"], v["component_id"], v["target_system"],
                   v["heartbeat_timeout_s"], v["connect_timeout_s"], v["position_hz"],
                   v["status_hz"])
    if not 0 < v["reconnect_min_s"] <= v["reconnect_max_s"]:
        raise ValueError("reconnect_min_s and reconnect_max_s need 0 < min <= max")
    if parse_connection(v["connection"])[0] == "serial":
        serial_speed(v["baud"])
    return dict(options)


LINK_PARAMS = frozenset(inspect.signature(MavlinkLink).parameters) - {"clock"}
