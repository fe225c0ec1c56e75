"""SimRecognizer reads the simulator's truth (kept beside the frames, not in them), with mistakes
decided per vehicle; the truth table forgets frames that are gone."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import protocol
from drone_agent.hardware import Frame
from hw_sim.camera import SimCamera
from hw_sim.recognizer import SimRecognizer
from hw_sim.truth import _TRUTH, TruthPlate, plates_in, remember
from protocol import TimeSource

NOW = 1_760_000_000.0


def truth(text: str, code: int | None = 21, region: str = "NY") -> TruthPlate:
    return TruthPlate(text=text, region=region, code=code, box=(1, 2, 30, 15))


def frame(*truths: TruthPlate) -> Frame:
    return remember(Frame(image=np.zeros((4, 4, 3), np.uint8), index=0, captured_at=NOW), truths)


def test_reports_truth_as_reads() -> None:
    reads = SimRecognizer(unqualified_rate=0.0, seed=1).recognize(
        frame(truth("ABC1234", code=21), truth("LEGAL1", code=None, region="NJ")))
    assert [(r.text, r.region, r.in_violation, r.code) for r in reads] == [
        ("ABC1234", "NY", True, 21), ("LEGAL1", "NJ", False, None)]
    assert all(0.85 <= r.confidence <= 0.99 and r.box == (1, 2, 30, 15) for r in reads)


def test_a_frame_the_simulator_did_not_draw_gives_nothing() -> None:
    other = Frame(image=np.zeros((4, 4, 3), np.uint8), index=0, captured_at=NOW)
    assert plates_in(other) == ()
    assert SimRecognizer().recognize(other) == []
    assert SimRecognizer().recognize(frame()) == []


def test_reads_what_the_sim_camera_drew() -> None:
    cam = SimCamera(seed=3, width=320, height=180, fps=0, violation_rate=0.6)
    rec = SimRecognizer(unqualified_rate=0.0, seed=1)
    try:
        frames = [cam.read() for _ in range(30)]
    finally:
        cam.close()
    drawn = [(t.text, t.code) for f in frames if f for t in plates_in(f)]
    read = [(r.text, r.code) for f in frames if f for r in rec.recognize(f)]
    assert drawn and read == drawn
    assert any(code is not None for _, code in read)


def test_the_truth_table_forgets_collected_frames() -> None:
    gc.collect()
    before = len(_TRUTH)
    frames = [frame(truth(f"G{i}")) for i in range(50)]
    assert len(_TRUTH) == before + 50
    del frames
    gc.collect()
    assert len(_TRUTH) == before


def test_rates_apply_per_vehicle_and_are_stable_across_frames() -> None:
    rec = SimRecognizer(misread_rate=0.2, unqualified_rate=0.1, seed=5)
    plates = [truth(f"P{i:05d}", code=21) for i in range(2000)]
    first = [rec.recognize(frame(p))[0] for p in plates]
    again = [rec.recognize(frame(p))[0] for p in plates]
    assert first == again  # the same car is read the same way in every frame
    unqualified = sum(r.code is None for r in first) / len(first)
    misread = [(r, p) for r, p in zip(first, plates, strict=True) if r.text != p.text]
    assert 0.07 < unqualified < 0.13
    assert 0.16 < len(misread) / len(first) < 0.24
    for read, plate in misread:  # one character changed, still a valid plate
        assert len(read.text) == len(plate.text)
        assert sum(a != b for a, b in zip(read.text, plate.text, strict=True)) == 1
        assert protocol.encode(protocol.Violation(
            header=protocol.Header("d", 0, int(NOW * 1000), TimeSource.NTP),
            position=protocol.Position(1, 1, 1), plate=read.text, region="NY",
            confidence=read.confidence, code=None, evidence_id="0" * 16))


def test_default_is_about_one_percent_unqualified() -> None:
    rec = SimRecognizer(seed=9)
    reads = [rec.recognize(frame(truth(f"Q{i:06d}", code=38)))[0] for i in range(5000)]
    assert 0.005 < sum(r.code is None for r in reads) / len(reads) < 0.016


def test_rejects_bad_rates() -> None:
    with pytest.raises(ValueError, match="misread_rate"):
        SimRecognizer(misread_rate=1.5)
    with pytest.raises(ValueError, match="unqualified_rate"):
        SimRecognizer(unqualified_rate=-0.1)
