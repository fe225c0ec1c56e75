"""Pure logic: the production stub recognizer, dedupe, message building, time source, sources."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from agent_helpers import truth

import protocol
from drone_agent import messages
from drone_agent.dedupe import Dedupe
from drone_agent.fixed_sources import FixedPosition, FixedPower
from drone_agent.hardware import Fix, Frame, HardwareError, PowerReading
from drone_agent.recognizer import PlateRead
from drone_agent.replay_position import ReplayPosition, load_track
from drone_agent.stub_recognizer import StubRecognizer
from drone_agent.timesource import TimeSourceDetector
from protocol import StatusFlags, TimeSource

NOW = 1_760_000_000.0


def frame() -> Frame:
    return Frame(image=np.zeros((4, 4, 3), np.uint8), index=0, captured_at=NOW)


# -- stub recognizer (the simulator's is tested in tests/hw_sim/test_sim_recognizer.py) ------

def test_stub_recognizes_nothing_even_in_a_simulated_frame(caplog) -> None:
    from hw_sim.truth import remember

    drawn = remember(frame(), (truth("ABC1234", code=21),))  # the simulator knows a plate is there
    stub = StubRecognizer(unqualified_rate=0.5, seed=1)  # the sim recognizer's options load
    assert stub.recognize(drawn) == [] and stub.recognize(frame()) == []
    assert "no plate model installed" in caplog.text  # a drone left on the stub shows in its log


def test_stub_rejects_bad_rates() -> None:
    with pytest.raises(ValueError, match="misread_rate"):
        StubRecognizer(misread_rate=1.5)


# -- dedupe -----------------------------------------------------------------------------------

def test_dedupe_window() -> None:
    d = Dedupe(600.0)
    key = ("ABC1234", 21)
    assert not d.suppressed(key, 0.0)
    d.emitted(key, 0.0)
    assert d.suppressed(key, 599.0)
    assert not d.suppressed(("ABC1234", None), 1.0)  # another code is another violation
    assert not d.suppressed(key, 600.0)
    d.emitted(("OTHER", 1), 1300.0)  # prunes what expired
    assert len(d) == 1


# -- messages ---------------------------------------------------------------------------------

def hdr(seq: int = 1) -> protocol.Header:
    return messages.header("d1", seq, NOW, TimeSource.NTP)


def decode(payload: bytes, kind: protocol.Kind) -> protocol.Message:
    """The message as the gateway reads it off d1's topic for `kind`."""
    return protocol.decode(payload, protocol.topic("d1", kind))


def read(**kw) -> PlateRead:
    base = {"text": "ABC1234", "region": "NY", "confidence": 0.9, "box": (0, 0, 1, 1),
            "in_violation": True, "code": 21}
    return PlateRead(**{**base, **kw})


def test_violation_message_normalises_plugin_output() -> None:
    fix = Fix(40.7, -73.9, 12.0, 10.0, 3.0)
    msg = decode(messages.violation(
        hdr(), fix, read(text="abc-12 34", region="ny", confidence=1.7, make="Toyota"),
        "0123456789abcdef"), protocol.Kind.VIOLATION)
    assert (msg.plate, msg.region, msg.confidence, msg.code) == ("ABC1234", "NY", 1.0, 21)
    assert msg.vehicle == protocol.Vehicle(make="TOYOTA")
    assert msg.evidence_id == "0123456789abcdef"


def test_unknown_code_becomes_unqualified_and_bad_vehicle_is_dropped() -> None:
    msg = decode(messages.violation(hdr(), None, read(code=99999, colour="light blue"),
                                    "0" * 16), protocol.Kind.VIOLATION)
    assert msg.code is None and msg.vehicle is None
    assert msg.position == messages.NO_POSITION


def test_empty_plate_cannot_be_sent() -> None:
    with pytest.raises(protocol.LocalProtocolError):
        messages.violation(hdr(), None, read(text=" - "), "0" * 16)


def test_clock_before_2020_is_clamped_and_marked_unsynced() -> None:
    h = messages.header("d1", 3, 86_400.0, TimeSource.GPS)
    assert h.time_ms == messages.EARLIEST_MS and h.time_source == TimeSource.UNSYNCED


def test_telemetry_without_fix_repeats_last_position() -> None:
    last = Fix(40.1, -73.1, 5.0, 359.99, 250.0)
    msg = decode(messages.telemetry(hdr(), None, last, PowerReading(140),
                                    StatusFlags.GPS_NO_FIX), protocol.Kind.TELEMETRY)
    assert (msg.position.lat, msg.position.lon) == (40.1, -73.1)
    assert msg.speed_mps == 0.0 and msg.battery_pct == 100
    assert msg.flags == StatusFlags.GPS_NO_FIX
    live = decode(messages.telemetry(hdr(), last, None, None, StatusFlags.NONE),
                  protocol.Kind.TELEMETRY)
    assert live.speed_mps == 200.0 and live.battery_pct == 0 and live.heading_deg < 360


def test_valid_fix_rejects_nonsense() -> None:
    assert messages.valid_fix(Fix(91.0, 0.0, 0.0, 0.0, 0.0)) is None
    assert messages.valid_fix(Fix(float("nan"), 0.0, 0.0, 0.0, 0.0)) is None


# -- time source ------------------------------------------------------------------------------

def test_time_source_gps_only_when_clock_agrees() -> None:
    det = TimeSourceDetector("assume_unsynced", gps_tolerance_s=2.0)
    fix = Fix(1, 1, 1, 1, 1, gps_time=NOW + 1.0)
    assert det.source(fix, NOW) == TimeSource.GPS
    assert det.source(Fix(1, 1, 1, 1, 1, gps_time=NOW + 60.0), NOW) == TimeSource.UNSYNCED
    assert det.source(None, NOW) == TimeSource.UNSYNCED
    assert TimeSourceDetector("assume_synced").source(None, NOW) == TimeSource.NTP


def test_time_source_auto_answers_without_error() -> None:
    assert TimeSourceDetector("auto").source(None) in (TimeSource.NTP, TimeSource.UNSYNCED)


# -- sources ----------------------------------------------------------------------------------

def test_replay_csv_loops_at_its_rate(tmp_path: Path) -> None:
    path = tmp_path / "track.csv"
    path.write_text("lat,lon,alt,heading,speed\n40.0,-73.0,10,90,5\n40.1,-73.1,11,370,6\n")
    t = [0.0]
    src = ReplayPosition(str(path), rate_hz=2.0, clock=lambda: t[0])
    assert src.fix() == Fix(40.0, -73.0, 10.0, 90.0, 5.0)
    t[0] = 0.5
    assert src.fix() == Fix(40.1, -73.1, 11.0, 10.0, 6.0)
    t[0] = 1.0
    assert src.fix().lat == 40.0  # looped
    once = ReplayPosition(str(path), rate_hz=2.0, loop=False, clock=lambda: t[0] + 0.0)
    t[0] = 5.0
    assert once.fix() is None


def test_replay_json_lines(tmp_path: Path) -> None:
    rows = [{"lat": 40.5, "lon": -73.5, "alt_m": 3}, {"lat": 40.6, "lon": -73.6}]
    fixes = load_track("\n".join(json.dumps(r) for r in rows) + "\n")
    assert [(f.lat, f.alt_m) for f in fixes] == [(40.5, 3.0), (40.6, 0.0)]


@pytest.mark.parametrize(("text", "fragment"), [
    ("x,y\n1,2\n", "must name lat and lon"),
    ("lat,lon\n40,abc\n", "t.csv:2: lon is not a number"),
    ("lat,lon\n95,0\n", "out of range"),
    ('{"lat": 1}\n', "lat and lon are required"),
    ("lat,lon\n", "no positions"),
])
def test_replay_errors_name_the_line(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        load_track(text, "t.csv")


def test_replay_missing_file_is_a_hardware_error(tmp_path: Path) -> None:
    with pytest.raises(HardwareError, match=r"nope\.csv"):
        ReplayPosition(str(tmp_path / "nope.csv"))


def test_fixed_sources() -> None:
    assert FixedPosition(40.7, -74.0, heading_deg=450).fix().heading_deg == 90.0
    assert FixedPower(42).read() == PowerReading(42, None, False)
    with pytest.raises(ValueError, match="lat"):
        FixedPosition(100, 0)


def test_opencv_camera_reads_a_video_file_and_loops(tmp_path: Path) -> None:
    import cv2

    from drone_agent.opencv_camera import OpenCVCamera

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), i * 80, np.uint8))
    writer.release()
    cam = OpenCVCamera(str(path), realtime=False)
    try:
        frames = [cam.read() for _ in range(5)]
        assert all(f is not None and f.image.shape == (48, 64, 3) for f in frames)
        assert [f.index for f in frames] == [0, 1, 2, 3, 4]
        assert abs(int(frames[3].image.mean()) - int(frames[0].image.mean())) <= 3  # looped
    finally:
        cam.close()
    once = OpenCVCamera(str(path), realtime=False, loop=False)
    try:
        assert [once.read() is not None for _ in range(4)] == [True, True, True, False]
    finally:
        once.close()


def test_opencv_camera_missing_file_or_device(tmp_path: Path) -> None:
    from drone_agent.opencv_camera import OpenCVCamera

    with pytest.raises(HardwareError, match="no such file"):
        OpenCVCamera(str(tmp_path / "missing.mp4"))
    with pytest.raises(HardwareError, match="no such device"):
        OpenCVCamera("/dev/video-nonexistent")



# -- dependency direction -----------------------------------------------------------------------

def test_drone_agent_imports_nothing_it_must_not() -> None:
    """The drone side never imports the simulator, the gateway, Kafka or the tests."""
    import ast

    forbidden = {"hw_sim", "gateway", "kafka", "tests", "aiomqtt", "prometheus_client"}
    package = Path(__file__).resolve().parents[2] / "drone_agent"
    offenders = []
    for source in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{source.name}: {n}" for n in names if n.split(".")[0] in forbidden]
    assert not offenders
    assert len(list(package.glob("*.py"))) > 10  # the scan saw the package
