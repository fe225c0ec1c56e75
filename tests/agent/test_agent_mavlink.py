"""The `mavlink` sources against hw_sim's simulated autopilot: real MAVLink 2 over UDP on 127.0.0.1
(and a pty for the serial path), the agent's telemetry read back from a real Mosquitto."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_helpers import Collector, config_dict, to_toml
from pymavlink.dialects.v20 import ardupilotmega as mav

import protocol
from common.config import from_dict
from drone_agent import plugins
from drone_agent.agent import Agent
from drone_agent.assembly import from_config
from drone_agent.config import AgentConfig
from drone_agent.errors import PluginError
from drone_agent.mavlink_link import AutopilotTimeout, MavlinkLink
from drone_agent.mavlink_source import MavlinkPosition, MavlinkPower
from hw_sim.autopilot import SimAutopilot
from presacop.stack.ports import free_port
from protocol import StatusFlags, TimeSource
from tests.support import wait_until

FAST = {"heartbeat_timeout_s": 2.5, "connect_timeout_s": 2.0, "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.2}


@pytest.fixture
def autopilot() -> Iterator[SimAutopilot]:
    """A simulated PX4 waiting for the agent to connect (udpout from the agent's side); its
    battery starts at 24 % and drains 30 %/min, so BATTERY_LOW (20 %) comes within the test."""
    offset = [0.0]
    ap = SimAutopilot(seed=5, battery_pct=24, drain_pct_per_min=30, low_pct=20,
                      wall_clock=lambda: time.time() + offset[0])
    ap.clock_offset = offset  # type: ignore[attr-defined]  # the test moves the GNSS clock
    with ap:
        yield ap


def _options(ap: SimAutopilot) -> dict[str, object]:
    return {"connection": f"udpout:127.0.0.1:{ap.address[1]}", **FAST}


def _sent(ap: SimAutopilot, kind: str) -> list[object]:
    return [m for m in list(ap.history) if m.get_type() == kind]


def _telemetry(collector: Collector) -> list[protocol.Telemetry]:
    return [r.message for r in collector.of(protocol.Telemetry)]


def _after(collector: Collector, n: int) -> list[protocol.Telemetry]:
    return _telemetry(collector)[n:]


def test_agent_flies_on_the_autopilots_position_battery_and_time(
        tmp_path: Path, mosquitto_factory, autopilot: SimAutopilot) -> None:
    broker = mosquitto_factory()
    collector = Collector(broker.host, broker.port, "mavlink-collector")
    opts = _options(autopilot)
    shared = {"connection": opts["connection"]}  # the same link: power and clock share it
    data = config_dict(tmp_path / "data", broker.port,
                       clock={"factory": "mavlink", "sync_check": "assume_unsynced",
                              "options": shared})
    data["position"] = {"factory": "mavlink", "options": opts}  # replaced, not merged
    data["power"] = {"factory": "mavlink", "options": shared}
    data["camera"] = {"factory": "agent_helpers:FakeCamera", "options": {"period": 0.1}}
    config = from_dict(AgentConfig, data, env={})
    agent = from_config(config)
    try:
        agent.start()
        # The rate requests went out and were answered, one COMMAND_ACK each.
        wait_until(lambda: agent.stats()["mavlink_rate_acks"] >= 5, 10, "5 accepted rate requests")
        assert ("interval", (mav.MAVLINK_MSG_ID_GLOBAL_POSITION_INT, 200_000.0)) \
            in autopilot.requests
        assert autopilot.intervals["GLOBAL_POSITION_INT"] == pytest.approx(0.2)

        good = wait_until(lambda: [t for t in _telemetry(collector) if not t.flags & (
            StatusFlags.GPS_NO_FIX | StatusFlags.AUTOPILOT_LOST)][2:], 15,
            "telemetry with the autopilot's fix")
        _assert_positions_are_the_autopilots(good, autopilot)
        assert all(t.header.time_source is TimeSource.GPS for t in good)
        batteries = {m.battery_remaining for m in _sent(autopilot, "BATTERY_STATUS")}
        assert {t.battery_pct for t in good} <= batteries

        # The battery drains below low_pct: BATTERY_LOW, from the autopilot's charge state.
        low = wait_until(lambda: [t for t in _telemetry(collector)
                                  if t.flags & StatusFlags.BATTERY_LOW], 30, "BATTERY_LOW")
        assert low[0].battery_pct <= 20

        # A GNSS clock that disagrees with ours is not a GPS time source.
        autopilot.clock_offset[0] = 100.0  # type: ignore[attr-defined]
        n = len(_telemetry(collector))
        wait_until(lambda: any(t.header.time_source is TimeSource.UNSYNCED
                               for t in _after(collector, n)), 10, "time_source UNSYNCED")
        autopilot.clock_offset[0] = 0.0  # type: ignore[attr-defined]

        _fix_loss_raises_and_clears_gps_no_fix(autopilot, collector)
        _link_loss_raises_and_clears_autopilot_lost(autopilot, collector, agent)
    finally:
        agent.stop(timeout=10.0)
        collector.close()
    stats = agent.stats()
    assert stats["mavlink_bad_crc"] == stats["mavlink_foreign"] == 0
    assert stats["position_errors"] == 0


def _assert_positions_are_the_autopilots(telemetry: list[protocol.Telemetry],
                                         ap: SimAutopilot) -> None:
    """Each telemetry position is one GLOBAL_POSITION_INT the autopilot sent, to the protocol's
    resolution: lat/lon in 1e-7 degree (MAVLink's own unit), altitude in whole metres."""
    sent = {(m.lat, m.lon): m for m in _sent(ap, "GLOBAL_POSITION_INT")}
    for t in telemetry:
        key = (round(t.position.lat * 1e7), round(t.position.lon * 1e7))
        assert key in sent, f"telemetry position {key} was never sent by the autopilot"
        m = sent[key]
        assert t.position.alt_m == round(m.alt / 1000)
        assert t.heading_deg == pytest.approx(round(m.hdg / 10) / 10 % 360, abs=1e-9)
        assert t.speed_mps == pytest.approx((m.vx ** 2 + m.vy ** 2) ** 0.5 / 100, abs=0.051)


def _fix_loss_raises_and_clears_gps_no_fix(ap: SimAutopilot, collector: Collector) -> None:
    ap.lose_fix()
    n = len(_telemetry(collector))
    lost = wait_until(lambda: [t for t in _after(collector, n) if t.flags & StatusFlags.GPS_NO_FIX],
                      10, "GPS_NO_FIX in telemetry")
    assert not lost[0].flags & StatusFlags.AUTOPILOT_LOST  # the link is fine, the GNSS is not
    ap.regain_fix()
    n = len(_telemetry(collector))
    wait_until(lambda: [t for t in _after(collector, n) if not t.flags & StatusFlags.GPS_NO_FIX],
               10, "GPS_NO_FIX cleared")


def _link_loss_raises_and_clears_autopilot_lost(ap: SimAutopilot, collector: Collector,
                                                agent: Agent) -> None:
    ap.go_silent()
    n = len(_telemetry(collector))
    lost = wait_until(lambda: [t for t in _after(collector, n)
                               if t.flags & StatusFlags.AUTOPILOT_LOST], 10, "AUTOPILOT_LOST")
    assert lost[0].flags & StatusFlags.GPS_NO_FIX  # no link, no position
    assert agent.stats()["mavlink_link_lost"] == 1
    ap.resume()
    n = len(_telemetry(collector))
    wait_until(lambda: [t for t in _after(collector, n) if not t.flags & (
        StatusFlags.AUTOPILOT_LOST | StatusFlags.GPS_NO_FIX)], 10, "AUTOPILOT_LOST cleared")
    assert agent.stats()["mavlink_alive"] == 1


def test_bad_traffic_is_counted_and_changes_nothing(autopilot: SimAutopilot,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    # A generous heartbeat timeout: the autopilot is silenced below, and only the bad traffic
    # may speak, however slowly a loaded machine gets to count it.
    position = MavlinkPosition(**{**_options(autopilot), "heartbeat_timeout_s": 30.0})
    link = position.link
    try:
        wait_until(position.fix, 10, "a first fix")
        autopilot.go_silent()  # no more real positions: any change now would be the bad traffic's
        last = wait_until(lambda: (seen := link.latest("GLOBAL_POSITION_INT")) is not None
                          and seen.msg.lat == autopilot.sent["GLOBAL_POSITION_INT"].lat and seen,
                          5, "the autopilot's last position at the link")
        far = mav.MAVLink(None, srcSystem=1, srcComponent=1).global_position_int_encode(
            0, 100_000_000, 100_000_000, 5_000_000, 0, 0, 0, 0, 0)  # 10 N, 10 E, 5 km up
        corrupt = bytearray(autopilot.frame(far))
        corrupt[-1] ^= 0xFF  # a flipped CRC byte
        autopilot.send_raw(bytes(corrupt))
        autopilot.send_raw(b"\x00garbage from a confused radio\xfd\x09")  # ends in a false start
        autopilot.send_raw(os.urandom(64).replace(b"\xfd", b"").replace(b"\xfe", b""))
        autopilot.send_as(42, far)  # another vehicle's autopilot on the same link
        stats = wait_until(lambda: (s := position.stats())["mavlink_bad_crc"] == 1
                           and s["mavlink_foreign"] == 1 and s["mavlink_bad_frames"] == 1
                           and s["mavlink_garbage_bytes"] >= 60 and s, 10,
                           "the bad traffic counted")
        assert link.latest("GLOBAL_POSITION_INT") is last  # nothing replaced the real position
        assert stats["mavlink_unknown"] == 0 and stats["mavlink_link_lost"] == 0
        assert "ignoring system 42 (the autopilot is system 1)" in caplog.text
        assert "1 bad frames so far, ignored (latest: invalid MAVLink CRC" in caplog.text
        autopilot.resume()
        wait_until(lambda: link.latest("GLOBAL_POSITION_INT") is not last, 5, "positions again")
        fix = wait_until(position.fix, 5, "a fix after the bad traffic")
        assert abs(fix.lat - 40.7) < 0.2 and fix.alt_m == 40.0
    finally:
        position.close()


def test_udpin_replies_reach_the_autopilot_and_power_shares_the_link() -> None:
    port = free_port()
    connection = f"udpin:127.0.0.1:{port}"
    with SimAutopilot(peer=("127.0.0.1", port), seed=2) as ap:
        position = MavlinkPosition(connection, **FAST)
        power = MavlinkPower(connection)
        try:
            assert power.link is position.link  # one port, one reader
            wait_until(lambda: position.stats()["mavlink_rate_acks"] >= 5, 10,
                       "rate requests answered through udpin")
            reading = wait_until(lambda: power.read().battery_pct > 0 and power.read(), 10,
                                 "a battery reading", ignoring=(ConnectionError,))
            assert reading.voltage == pytest.approx(sum(
                v for v in ap.sent["BATTERY_STATUS"].voltages if v != 65535) / 1000, abs=0.2)
        finally:
            power.close()
            position.close()
        assert not position.link._thread.is_alive()  # the last user closed it


def test_refused_message_intervals_fall_back_to_data_streams() -> None:
    with SimAutopilot(seed=4, refuse_intervals=True) as ap:
        position = MavlinkPosition(f"udpout:127.0.0.1:{ap.address[1]}", **FAST)
        try:
            wait_until(lambda: position.stats()["mavlink_stream_fallbacks"] == 1, 10,
                       "the REQUEST_DATA_STREAM fallback")
            assert position.stats()["mavlink_rate_refused"] == 1
            wait_until(lambda: ap.intervals["GLOBAL_POSITION_INT"] == pytest.approx(0.2), 5,
                       "the position stream at 5 Hz")
            assert wait_until(position.fix, 5, "a fix")
        finally:
            position.close()


def test_silence_times_out_with_a_clear_error_and_the_port_is_reopened() -> None:
    link = MavlinkLink(f"udpout:127.0.0.1:{free_port()}", connect_timeout_s=0.3,
                       reconnect_min_s=0.05, reconnect_max_s=0.1)
    try:
        with pytest.raises(AutopilotTimeout, match=r"no HEARTBEAT from an autopilot on "
                           r"udpout:127\.0\.0\.1:\d+ in 0\.5 s: check port/baud"):
            link.wait_connected(0.5)
        wait_until(lambda: link.stats()["mavlink_reconnects"] >= 2, 10, "the port reopened")
        assert link.stats()["mavlink_connect_timeouts"] >= 2
    finally:
        link.close()


def test_serial_port_through_a_pty() -> None:
    """The serial transport (termios, raw, 115200) with an autopilot writing to a pty."""
    master, slave = os.openpty()
    ap_mav = mav.MAVLink(None, srcSystem=1, srcComponent=1)
    position = MavlinkPosition(os.ttyname(slave), baud=115200, **FAST)
    try:
        def beat() -> object:
            os.write(master, ap_mav.heartbeat_encode(
                mav.MAV_TYPE_QUADROTOR, mav.MAV_AUTOPILOT_ARDUPILOTMEGA, 0, 0, 4).pack(ap_mav)
                + ap_mav.global_position_int_encode(
                    1, 407_579_747, -739_855_426, 12_400, 0, 100, 0, 0, 9000).pack(ap_mav))
            return position.fix()
        fix = wait_until(beat, 10, "a fix over the pty")
        assert (fix.lat, fix.lon, fix.alt_m, fix.heading_deg) == (40.7579747, -73.9855426,
                                                                  12.4, 90.0)
        assert os.read(master, 4096)[:1] == b"\xfd"  # our HEARTBEAT/requests went out, MAVLink 2
    finally:
        position.close()
        os.close(master)
        os.close(slave)


def test_conflicting_link_options_are_refused(autopilot: SimAutopilot) -> None:
    opts = _options(autopilot)
    position = plugins.build(plugins.POSITION, "mavlink", {**opts, "baud": 57600})
    try:
        with pytest.raises(PluginError, match=r"option baud is 921600 here but 57600"):
            plugins.build(plugins.POWER, "mavlink", {"connection": opts["connection"],
                                                     "baud": 921600})
        with pytest.raises(PluginError, match=r"unknown MAVLink option\(s\) bauds"):
            plugins.build(plugins.POWER, "mavlink", {"connection": "udpin:127.0.0.1:0",
                                                     "bauds": 1})
    finally:
        position.close()


@pytest.mark.parametrize(("baud", "expected"), [(921600, None),
                                               (9601, "baud 9601 is not a serial rate")])
def test_check_config_checks_the_mavlink_options_without_opening_the_port(
        tmp_path: Path, baud: int, expected: str | None) -> None:
    """`presacop agent --check-config` (the unit's ExecStartPre) catches bad options before a
    flight; /dev/serial0 need not exist for that."""
    data = config_dict(tmp_path / "data", 1883)
    data["position"] = {"factory": "mavlink", "options": {"connection": "/dev/serial0",
                                                          "baud": baud}}
    data["power"] = {"factory": "mavlink", "options": {"connection": "/dev/serial0"}}
    path = tmp_path / "agent.toml"
    path.write_text(to_toml(data))
    done = subprocess.run([sys.executable, "-m", "presacop.cli", "agent", "--config", str(path),
                           "--check-config"], capture_output=True, text=True, timeout=60,
                          check=False)
    if expected is None:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode == 2 and "position.options" in done.stderr, done.stderr
        assert expected in done.stderr


@pytest.mark.parametrize(("part", "spec", "options", "expected"), [
    (plugins.POSITION, "mavlink", {"connection": "udp:127.0.0.1:14550"}, "expected udpin:"),
    (plugins.POSITION, "mavlink", {"connection": "udpin:0.0.0.0:1", "heartbeat_timeout": 3},
     "unknown MAVLink option(s) heartbeat_timeout"),
    (plugins.POSITION, "mavlink", {"connection": "udpin:0.0.0.0:1", "min_fix_type": 9},
     "min_fix_type must be 0..8"),
    (plugins.POWER, "mavlink", {"connection": "tcp:h:1", "low_pct": 101}, "low_pct must be"),
    (plugins.POWER, "mavlink", {}, "missing a required argument: 'connection'"),
    (plugins.POSITION, "gpsd", {"port": 0}, "gpsd port must be 1..65535"),
    (plugins.POSITION, "gpsd", {"min_mode": 1}, "min_mode must be 2 (2D) or 3 (3D)"),
    (plugins.CLOCK, "gpsd", {"hots": "x"}, "unexpected keyword argument 'hots'"),
])
def test_plugin_options_are_checked_without_opening_anything(
        part: plugins.Part, spec: str, options: dict[str, object], expected: str) -> None:
    with pytest.raises(PluginError, match=re.escape(expected)) as info:
        plugins.check(part, spec, options)
    assert info.value.key == f"{part.section}.options"
    plugins.check(plugins.POSITION, "gpsd", {"port": 2948, "device": "/dev/ttyACM0"})  # fine


def test_tcp_link_reopens_after_the_peer_drops_it() -> None:
    """tcp: (mavlink-router's server, SITL): a dropped connection is a port error, and the link
    connects again and reads on."""
    server = socket.create_server(("127.0.0.1", 0))
    ap_mav = mav.MAVLink(None, srcSystem=1, srcComponent=1)

    def frames(lat: int) -> bytes:
        return (ap_mav.heartbeat_encode(mav.MAV_TYPE_QUADROTOR, mav.MAV_AUTOPILOT_PX4, 0, 0, 4)
                .pack(ap_mav)
                + ap_mav.global_position_int_encode(1, lat, -739_855_426, 40_000, 0, 0, 0, 0,
                                                    0).pack(ap_mav))

    position = MavlinkPosition(f"tcp:127.0.0.1:{server.getsockname()[1]}", **FAST)
    try:
        for lat in (407_579_747, 407_600_000):  # one connection, then the next
            peer, _ = server.accept()
            with peer:
                wait_until(lambda lat=lat, peer=peer: peer.sendall(frames(lat)) or (
                    (f := position.fix()) is not None and round(f.lat * 1e7) == lat and f),
                    10, f"a fix at {lat} over TCP")
                assert peer.recv(4096)[:1] == b"\xfd"  # our HEARTBEAT, MAVLink 2
                stats = position.stats()  # before this connection closes too
        assert stats["mavlink_port_errors"] == 1 and stats["mavlink_reconnects"] == 1
    finally:
        position.close()
        server.close()
