"""The agent's capture -> recognize -> evidence -> outbox pipeline, with fake hardware.

No broker here (the publisher retries a closed port): these tests look at the outbox, which is
what the publisher sends. Delivery is tested against real Mosquitto in test_agent_delivery.py.
"""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import pytest
from agent_helpers import FakeCamera, FakePosition, FakePower, make_config, truth

import protocol
from drone_agent.agent import Agent
from drone_agent.hardware import Frame, HardwareError
from drone_agent.recognizer import PlateRead
from hw_sim.recognizer import SimRecognizer
from presacop.stack import free_port
from protocol import StatusFlags
from tests.support import wait_until


def queued(agent: Agent, kind: type) -> list:
    assert agent.outbox is not None
    msgs = [protocol.decode(e.payload, protocol.topic(agent.config.drone_id, protocol.Kind(e.kind)))
            for e in agent.outbox.pending(100_000)]
    return [m for m in msgs if isinstance(m, kind)]


@pytest.fixture
def closed_port() -> int:
    return free_port()  # nothing listens: the publisher keeps retrying, the outbox keeps all


class SlowRecognizer:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls: list[tuple[float, int]] = []

    def recognize(self, frame: Frame) -> list[PlateRead]:
        self.calls.append((time.monotonic(), frame.index))
        time.sleep(self.delay)
        return []


def test_slow_recognizer_is_sampled_not_queued(tmp_path: Path, closed_port: int) -> None:
    rec = SlowRecognizer(0.15)
    cfg = make_config(tmp_path, closed_port, recognizer={"max_rate_hz": 4.0})
    agent = Agent(cfg, camera=FakeCamera(period=0.005), position=FakePosition(),
                  power=FakePower(), recognizer=rec)
    with agent:
        wait_until(lambda: len(rec.calls) >= 6, 30, "6 recognizer calls")
        stats = agent.stats()
    starts = [t for t, _ in rec.calls]
    assert all(b - a >= 0.25 - 0.01 for a, b in itertools.pairwise(starts))  # <= max_rate_hz
    assert stats["skipped_frames"] > 0 and stats["captured"] > stats["recognized"]
    # Each call got the newest frame, not the next one in a queue.
    indexes = [i for _, i in rec.calls]
    assert all(b - a > 1 for a, b in itertools.pairwise(indexes))


def test_a_car_in_many_frames_is_one_violation(tmp_path: Path, closed_port: int) -> None:
    parked = truth("ABC1234", code=21)
    frames = [(parked, truth("LEGAL1", code=None))] * 30 + [(parked, truth("XYZ9", code=40))] * 20
    cam = FakeCamera(frames, period=0.01)
    cfg = make_config(tmp_path, closed_port, recognizer={"max_rate_hz": 50.0})
    agent = Agent(cfg, camera=cam, position=FakePosition(), power=FakePower(),
                  recognizer=SimRecognizer(unqualified_rate=0.0, seed=1))
    with agent:
        wait_until(lambda: len(queued(agent, protocol.Violation)) >= 2, 30, "2 queued violations")
        wait_until(lambda: cam.index > 80, 30,
                   "the camera past frame 80 (a duplicate would be queued by then)")
        violations = queued(agent, protocol.Violation)
        stats = agent.stats()
    assert sorted((v.plate, v.code) for v in violations) == [("ABC1234", 21), ("XYZ9", 40)]
    assert stats["violations"] == 2 and stats["deduped"] > 0
    evidence = {v.evidence_id for v in violations}
    assert all((tmp_path / "evidence" / f"{e}.jpg").exists() for e in evidence)
    first = violations[0]
    assert (first.position.lat, first.position.lon) == (40.75, -73.99)
    assert first.header.drone_id == "drone-t1"
    assert first.header.time_source == protocol.TimeSource.NTP


def test_violation_is_queued_even_when_evidence_is_refused(tmp_path: Path,
                                                          closed_port: int) -> None:
    # Each car stays in view for a while: sampling may skip frames, never a whole car.
    cam = FakeCamera([(truth("FULL1"),)] * 20 + [(truth("FULL2"),)] * 20, period=0.01)
    cfg = make_config(tmp_path, closed_port, evidence={"quota_bytes": 10},
                      recognizer={"max_rate_hz": 50.0})
    agent = Agent(cfg, camera=cam, position=FakePosition(), power=FakePower(),
                  recognizer=SimRecognizer(unqualified_rate=0.0))
    with agent:
        wait_until(lambda: len(queued(agent, protocol.Violation)) == 2, 30, "2 queued violations")
        wait_until(lambda: agent.stats()["flags"] & StatusFlags.DISK_LOW, 10, "the DISK_LOW flag")
        stats = agent.stats()
    assert stats["evidence_refused"] == 2 and stats["evidence_files"] == 0


class Exploding:
    def __init__(self) -> None:
        self.calls = 0

    def recognize(self, frame: Frame) -> list[PlateRead]:
        self.calls += 1
        raise RuntimeError("model crashed")


def test_recognizer_errors_are_counted_and_survived(tmp_path: Path, closed_port: int,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    rec = Exploding()
    cfg = make_config(tmp_path, closed_port, recognizer={"max_rate_hz": 50.0})
    with Agent(cfg, camera=FakeCamera(period=0.01), position=FakePosition(), power=FakePower(),
               recognizer=rec) as agent:
        wait_until(lambda: rec.calls >= 3, 30, "3 recognizer calls")
        assert agent.stats()["recognizer_errors"] >= 3
    assert "model crashed" in caplog.text


def test_dead_camera_raises_camera_fault_and_telemetry_goes_on(tmp_path: Path,
                                                              closed_port: int) -> None:
    cam = FakeCamera(fail_with=HardwareError("unplugged"))
    cfg = make_config(tmp_path, closed_port, telemetry={"period_s": 0.05})
    with Agent(cfg, camera=cam, position=FakePosition(None), power=FakePower(10, low=True),
               recognizer=SimRecognizer()) as agent:
        wait_until(lambda: len(queued(agent, protocol.Telemetry)) >= 3, 30,
                   "3 queued telemetry messages")
        last = queued(agent, protocol.Telemetry)[-1]
        stats = agent.stats()
    expected = StatusFlags.CAMERA_FAULT | StatusFlags.GPS_NO_FIX | StatusFlags.BATTERY_LOW \
        | StatusFlags.LINK_BACKLOG
    assert last.flags & expected == expected
    assert stats["camera_errors"] == 1 and stats["captured"] == 0


def test_stop_is_bounded_and_joins_its_threads(tmp_path: Path, closed_port: int) -> None:
    cfg = make_config(tmp_path, closed_port)
    agent = Agent(cfg, camera=FakeCamera(period=0.01), position=FakePosition(),
                  power=FakePower(), recognizer=SimRecognizer())
    agent.start()
    names = {t.name for t in threading.enumerate()}
    assert {"agent-capture", "agent-recognize", "agent-telemetry", "agent-publisher"} <= names
    agent.stop(timeout=3.0)
    names = {t.name for t in threading.enumerate()}
    assert not names & {"agent-capture", "agent-recognize", "agent-telemetry", "agent-publisher"}
    assert agent.outbox is not None and agent.stats()["connects"] == 0


class ThreeFrames:
    """A camera that delivers three frames, then none (a camera that was paused)."""

    def __init__(self) -> None:
        self.inner = FakeCamera()

    def read(self) -> Frame | None:
        return self.inner.read() if self.inner.index < 3 else None


class GatedRecognizer:
    """Holds each frame until `gate` is set: a recognizer still busy with a frame."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()

    def recognize(self, frame: Frame) -> list[PlateRead]:
        self.entered.set()
        self.gate.wait(30)
        return []


def test_frames_pending_counts_a_frame_until_it_is_through(tmp_path: Path,
                                                           closed_port: int) -> None:
    # The demo and chaos drains read "no uploads pending" only once no frame is in flight: a
    # frame in recognition must show in `frames_pending` until its violations are queued.
    rec = GatedRecognizer()
    agent = Agent(make_config(tmp_path, closed_port), camera=ThreeFrames(),
                  position=FakePosition(), power=FakePower(), recognizer=rec)
    with agent:
        assert rec.entered.wait(30), "the recognizer never got a frame"
        held = agent.stats()
        assert held["frames_pending"] >= 1 and held["processed"] == 0
        rec.gate.set()
        wait_until(lambda: agent.stats()["frames_pending"] == 0, 30, "every frame through")
        done = agent.stats()
    assert done["captured"] == 3
    assert done["processed"] + done["skipped_frames"] == 3


def test_upload_timeouts_come_from_the_config(tmp_path: Path, closed_port: int) -> None:
    cfg = make_config(tmp_path, closed_port,
                      evidence={"reply_timeout_s": 2.5, "confirm_timeout_s": 45.0})
    agent = Agent(cfg, camera=ThreeFrames(), position=FakePosition(), power=FakePower(),
                  recognizer=SlowRecognizer(0.0))
    with agent:
        assert agent.uploader is not None
        assert (agent.uploader.reply_timeout_s, agent.uploader.confirm_timeout_s) == (2.5, 45.0)
