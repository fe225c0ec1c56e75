"""The `gpsd` sources against a real gpsd: Debian's gpsfake runs a private gpsd on a free port and
feeds it an NMEA log that hw_sim writes from a NYC route (the system gpsd is never touched)."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_helpers import Collector, config_dict

import protocol
from common.config import from_dict
from drone_agent.assembly import from_config
from drone_agent.config import AgentConfig
from drone_agent.gpsd_source import GpsdPosition, GpsdTime
from hw_sim.nmea import Epoch, epochs, write_log
from hw_sim.position import RoutePosition
from presacop.stack.ports import free_port
from protocol import StatusFlags
from tests.support import wait_until

SENTENCE_DELAY_S = 0.1  # gpsfake -c: three sentences an epoch, so 0.3 s per epoch
FIX_LOSS = (5.0, 3.0)  # epochs 5..7 of each pass have no fix


@pytest.fixture(scope="module")
def track(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Epoch]]:
    # One straight street (Broadway's south end), so every epoch has the same heading: a report
    # without a track repeats the last known one, which is then still right.
    route = RoutePosition(seed=11, route=[(40.7060, -74.0130), (40.7200, -74.0000)],
                          speed_mps=12.0, altitude_m=57.0)
    items = epochs(route, seconds=14, rate_hz=1.0, fix_loss=FIX_LOSS)
    assert len({e.fix.heading_deg for e in items}) == 1
    return write_log(tmp_path_factory.mktemp("nmea") / "route.nmea", items), items


@contextlib.contextmanager
def gpsfake(log: Path, port: int, output: Path) -> Iterator[None]:
    """gpsfake (its own gpsd) replaying `log` in a loop on 127.0.0.1:`port`; stopped by PID."""
    assert shutil.which("gpsfake"), "gpsfake missing: apt-get install gpsd gpsd-clients"
    with output.open("ab") as out:
        proc = subprocess.Popen(["gpsfake", "-P", str(port), "-c", str(SENTENCE_DELAY_S),
                                 str(log)], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            wait_until(lambda: socket.create_connection(("127.0.0.1", port), 0.5).close() or True,
                       15, f"gpsd listening on {port}", ignoring=(OSError,))
            yield
        finally:
            proc.send_signal(signal.SIGTERM)  # gpsfake stops and reaps its gpsd
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()  # only when it hangs; its gpsd would outlive it
                proc.wait(5)


@pytest.fixture
def gpsd(track: tuple[Path, list[Epoch]], tmp_path: Path) -> Iterator[int]:
    port = free_port()
    with gpsfake(track[0], port, tmp_path / "gpsfake.log"):
        yield port


def _matches(lat: float, lon: float, items: list[Epoch]) -> Epoch | None:
    """The epoch at (lat, lon) within the protocol's 1e-7 degree (NMEA carries ~2e-8)."""
    for e in items:
        if e.has_fix and abs(e.fix.lat - lat) <= 1.01e-7 and abs(e.fix.lon - lon) <= 1.01e-7:
            return e
    return None


def test_agent_telemetry_follows_gpsd_and_flags_the_fix_loss(
        tmp_path: Path, mosquitto_factory, gpsd: int, track: tuple[Path, list[Epoch]]) -> None:
    items = track[1]
    broker = mosquitto_factory()
    collector = Collector(broker.host, broker.port, "gpsd-collector")
    data = config_dict(tmp_path / "data", broker.port)
    data["position"] = {"factory": "gpsd", "options": {"port": gpsd}}
    data["camera"] = {"factory": "agent_helpers:FakeCamera", "options": {"period": 0.1}}
    agent = from_config(from_dict(AgentConfig, data, env={}))
    telemetry = lambda: [r.message for r in collector.of(protocol.Telemetry)]  # noqa: E731
    try:
        agent.start()
        with_fix = wait_until(lambda: (fixed := [t for t in telemetry()
                                                 if not t.flags & StatusFlags.GPS_NO_FIX])
                              and sum(1 for t in fixed if t.heading_deg) >= 3 and fixed, 20,
                              "3 telemetry messages with gpsd's fix and track")
        n = len(telemetry())
        no_fix = wait_until(lambda: [t for t in telemetry()[n:]
                                     if t.flags & StatusFlags.GPS_NO_FIX],
                            20, "GPS_NO_FIX during the log's fix loss")
        after = len(telemetry())
        wait_until(lambda: [t for t in telemetry()[after:] if not t.flags & StatusFlags.GPS_NO_FIX],
                   20, "the fix back after the loss")
    finally:
        agent.stop(timeout=10.0)
        collector.close()
    for t in with_fix:
        epoch = _matches(t.position.lat, t.position.lon, items)
        assert epoch is not None, f"telemetry at {t.position} is no epoch of the log"
        assert t.position.alt_m == round(epoch.fix.alt_m)
        # 0 only while gpsd has not yet reported a track or speed at all
        assert t.heading_deg in (0.0, pytest.approx(epoch.fix.heading_deg, abs=0.051))
        assert t.speed_mps in (0.0, pytest.approx(epoch.fix.speed_mps, abs=0.051))
    assert not no_fix[0].flags & StatusFlags.AUTOPILOT_LOST
    stats = agent.stats()
    assert stats["gpsd_reports"] >= 5 and stats["gpsd_bad_lines"] == 0


def test_position_and_clock_share_one_connection_and_carry_the_receivers_time(
        gpsd: int, track: tuple[Path, list[Epoch]]) -> None:
    items = track[1]
    position = GpsdPosition(port=gpsd, reconnect_min_s=0.05, reconnect_max_s=0.2)
    clock = GpsdTime(port=gpsd)
    try:
        assert clock.link is position.link
        fix = wait_until(position.fix, 15, "a fix from gpsd")
        assert _matches(fix.lat, fix.lon, items) is not None
        now = wait_until(clock.gnss_time, 5, "gpsd's time")
        assert items[0].time - 1 <= now <= items[-1].time + 5  # the log's clock, carried forward
        stats = position.stats()
        assert stats["gpsd_connected"] == 1 and stats["gpsd_reconnects"] == 1
    finally:
        position.close()
        clock.close()
    assert not position.link._thread.is_alive()


def test_unreachable_gpsd_is_retried_and_counted() -> None:
    position = GpsdPosition(port=free_port(), reconnect_min_s=0.05, reconnect_max_s=0.1)
    try:
        wait_until(lambda: position.stats()["gpsd_connect_failures"] >= 3, 10,
                   "three failed connection attempts")
        assert position.fix() is None and position.gnss_time() is None
    finally:
        position.close()


def test_a_restarted_gpsd_is_reconnected(track: tuple[Path, list[Epoch]], tmp_path: Path) -> None:
    port = free_port()
    position = GpsdPosition(port=port, stale_after_s=1.0, reconnect_min_s=0.05,
                            reconnect_max_s=0.2)
    try:
        with gpsfake(track[0], port, tmp_path / "gpsfake.log"):
            wait_until(position.fix, 15, "a fix from the first gpsd")
        wait_until(lambda: position.stats()["gpsd_connected"] == 0, 10, "the loss noticed")
        wait_until(lambda: position.fix() is None, 5, "no fix without gpsd")
        with gpsfake(track[0], port, tmp_path / "gpsfake.log"):
            fix = wait_until(position.fix, 20, "a fix from the restarted gpsd")
            assert _matches(fix.lat, fix.lon, track[1]) is not None
        assert position.stats()["gpsd_reconnects"] == 2
    finally:
        position.close()
