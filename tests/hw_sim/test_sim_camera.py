"""SimCamera: deterministic frames, protocol-valid truth, legible plates, cars that persist."""

from __future__ import annotations

import re
import threading
from collections import Counter

import numpy as np
import pytest

import protocol
from drone_agent.hardware import Camera, Frame, HardwareError
from hw_sim import nyc
from hw_sim.camera import SCENES, SimCamera, drawable_codes
from hw_sim.truth import TruthPlate, plates_in
from tests.support import wait_until

FORMATS = {
    "NY": r"[A-Z]{3}[0-9]{4}", "NJ": r"[A-Z][0-9]{2}[A-Z]{3}", "PA": r"[A-Z]{3}[0-9]{4}",
    "CT": r"[A-Z]{2}[0-9]{5}", "FL": r"[A-Z]{4}[0-9]{2}",
}


def frames(cam: SimCamera, n: int) -> list[Frame]:
    return [cam.render(i) for i in range(n)]


def test_every_drawable_code_is_a_protocol_code() -> None:
    assert set(SCENES) <= set(protocol.VIOLATION_CODES)
    assert drawable_codes() == tuple(SCENES)


def test_same_seed_same_truth_and_identical_pixels() -> None:
    a = SimCamera(seed=42, width=640, height=360, fps=0)
    b = SimCamera(seed=42, width=640, height=360, fps=0)
    assert isinstance(a, Camera)
    for fa, fb in zip(frames(a, 30), [b.read() for _ in range(30)], strict=True):
        assert fb is not None
        assert fa.index == fb.index
        assert plates_in(fa) == plates_in(fb)
        assert np.array_equal(fa.image, fb.image)


def test_render_is_independent_of_order() -> None:
    cam = SimCamera(seed=5, width=640, height=360, fps=0)
    later = cam.render(40)
    fresh = SimCamera(seed=5, width=640, height=360, fps=0)
    frames(fresh, 41)
    again = fresh.render(40)
    assert plates_in(later) == plates_in(again) and np.array_equal(later.image, again.image)


def test_different_seeds_differ() -> None:
    plates_a = {t.text for f in frames(SimCamera(seed=1, fps=0), 20) for t in plates_in(f)}
    plates_b = {t.text for f in frames(SimCamera(seed=2, fps=0), 20) for t in plates_in(f)}
    assert plates_a and plates_b and not plates_a & plates_b
    img_a = SimCamera(seed=1, fps=0).render(0).image
    img_b = SimCamera(seed=2, fps=0).render(0).image
    assert not np.array_equal(img_a, img_b)


def violation_from(truth: TruthPlate, seq: int) -> protocol.Violation:
    return protocol.Violation(
        header=protocol.Header("sim-0001", seq, 1_750_000_000_000 + seq,
                               protocol.TimeSource.GPS),
        position=protocol.Position(40.75, -73.98, 40.0),
        plate=truth.text, region=truth.region, confidence=0.93, code=truth.code,
        evidence_id="0123456789abcdef",
        vehicle=protocol.Vehicle(make=truth.make, colour=truth.colour, body=truth.body))


def test_every_plate_region_code_and_vehicle_is_valid_per_protocol() -> None:
    cam = SimCamera(seed=3, width=640, height=360, fps=0, violation_rate=0.5)
    seen: Counter[int | None] = Counter()
    regions: Counter[str] = Counter()
    plates: dict[str, TruthPlate] = {}
    for seq, frame in enumerate(frames(cam, 400)):
        for truth in plates_in(frame):
            msg = violation_from(truth, seq)
            on = protocol.topic(msg.header.drone_id, protocol.Kind.VIOLATION)
            assert protocol.decode(protocol.encode(msg), on) == msg
            assert re.fullmatch(FORMATS[truth.region], truth.text), truth
            assert truth.make in nyc.MAKES and truth.colour in nyc.COLOURS
            assert truth.body in nyc.BODIES
            seen[truth.code] += 1
            regions[truth.region] += 1
            plates.setdefault(truth.text, truth)
    # Every drawable code shows up, and NY plates dominate as on NYC streets.
    assert set(SCENES) <= set(seen)
    assert regions.most_common(1)[0][0] == "NY" and len(regions) >= 4
    violating = sum(1 for t in plates.values() if t.code is not None)
    assert 0.3 < violating / len(plates) < 0.7


def test_violation_rate_zero_and_code_restriction() -> None:
    legal = SimCamera(seed=1, fps=0, violation_rate=0.0)
    assert all(t.code is None for f in frames(legal, 40) for t in plates_in(f))
    hydrants = SimCamera(seed=1, fps=0, violation_rate=1.0, codes=[40])
    codes = {t.code for f in frames(hydrants, 40) for t in plates_in(f)}
    assert codes == {40}


@pytest.mark.parametrize("size", [(1280, 720), (640, 480), (1920, 1080), (320, 240)])
def test_plates_are_drawn_where_the_truth_says(size: tuple[int, int]) -> None:
    width, height = size
    cam = SimCamera(seed=9, width=width, height=height, fps=0, violation_rate=0.5)
    checked = 0
    for frame in frames(cam, 30):
        assert frame.image.shape == (height, width, 3) and frame.image.dtype == np.uint8
        for truth in plates_in(frame):
            x, y, w, h = truth.box
            assert x >= 0 and x + w <= width and y >= 0 and y + h <= height
            patch = frame.image[y:y + h, x:x + w].astype(int)
            bg, fg = nyc.PLATE_COLOURS[truth.region]
            plate_bg = np.all(np.abs(patch - bg) <= 1, axis=2).mean()
            # Anti-aliased text: count pixels nearer the ink colour than the plate colour.
            ink = (np.linalg.norm(patch - fg, axis=2) < np.linalg.norm(patch - bg, axis=2)).mean()
            # Mostly plate background (nothing covers it), with a visible amount of ink on it.
            assert plate_bg > 0.4, (truth, plate_bg)
            assert ink > 0.05, (truth, ink)
            checked += 1
    assert checked >= 30


def test_cars_stay_in_view_for_several_frames() -> None:
    cam = SimCamera(seed=4, fps=0, scroll=0.2)
    sightings: Counter[str] = Counter(t.text for f in frames(cam, 60) for t in plates_in(f))
    assert sightings and np.median(list(sightings.values())) >= 3


def test_read_paces_to_fps_with_an_injected_clock() -> None:
    now = [100.0]
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        now[0] += s

    cam = SimCamera(seed=0, width=320, height=240, fps=5.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(6):
        assert cam.read() is not None
    assert len(sleeps) == 5 and all(abs(s - 0.2) < 1e-9 for s in sleeps)
    now[0] += 10.0  # the agent fell far behind: no burst of catch-up frames
    assert cam.read() is not None and cam.read() is not None
    assert len(sleeps) == 6


def test_unpaced_camera_never_sleeps() -> None:
    cam = SimCamera(seed=0, width=320, height=240, fps=0, sleep=lambda s: pytest.fail("slept"))
    assert [cam.read().index for _ in range(3)] == [0, 1, 2]  # type: ignore[union-attr]


def test_simulated_fault_and_close_raise_hardware_error() -> None:
    cam = SimCamera(seed=0, width=320, height=240, fps=0, fail_after=2)
    cam.read()
    cam.read()
    with pytest.raises(HardwareError, match="simulated failure"):
        cam.read()
    other = SimCamera(seed=0, width=320, height=240, fps=0)
    other.close()
    with pytest.raises(HardwareError, match="closed"):
        other.read()


@pytest.mark.parametrize("kwargs, word", [
    ({"width": 100}, "width"), ({"height": 5000}, "height"), ({"fps": -1}, "fps"),
    ({"violation_rate": 1.5}, "violation_rate"), ({"scroll": 0}, "scroll"),
    ({"codes": [40, 7]}, "cannot be drawn"), ({"fail_after": -1}, "fail_after"),
])
def test_bad_arguments(kwargs: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        SimCamera(**kwargs)


def test_slot_cars_matches_rendered_truth() -> None:
    cam = SimCamera(seed=11, fps=0)
    planned = {t.text for t in cam.slot_cars(0, 10)}
    seen = {t.text for f in frames(cam, 6) for t in plates_in(f)}
    assert seen and seen <= planned


def test_paused_camera_returns_no_frame_until_resumed() -> None:
    cam = SimCamera(seed=0, width=320, height=240, fps=0, paused=True)
    assert cam.read() is None
    cam.resume()
    first = cam.read()
    assert first is not None and first.index == 0
    cam.pause()
    assert cam.read() is None
    cam.resume()
    again = cam.read()
    assert again is not None and again.index == 1



class SpyEvent(threading.Event):
    """An Event whose wait() says when it returned: a read() is past its pause check then."""

    def __init__(self) -> None:
        super().__init__()
        self.passed = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        result = super().wait(timeout)
        self.passed.set()
        return result


def test_pause_makes_delivered_final_even_with_a_read_in_progress() -> None:
    # A read() already past its pause check when pause() is called must not start a frame after
    # pause() returned: the demo's and chaos run's drains take `delivered` as final then.
    cam = SimCamera(seed=0, width=320, height=240, fps=0)
    assert cam.read() is not None and cam.delivered == 1
    spy = cam._running = SpyEvent()
    spy.set()
    got: list[object] = []
    at_pause: list[int] = []
    with cam._lock:  # the read() below blocks after its pause check
        reader = threading.Thread(target=lambda: got.append(cam.read()))
        reader.start()
        assert spy.passed.wait(5), "the read never passed its pause check"

        def pause() -> None:
            cam.pause()
            at_pause.append(cam.delivered)

        pauser = threading.Thread(target=pause)
        pauser.start()
        wait_until(lambda: not spy.is_set(), 5, "pause() to clear running")
    pauser.join(5)
    reader.join(5)
    assert not pauser.is_alive() and not reader.is_alive()
    assert at_pause == [cam.delivered] == [1]
    assert got == [None]
    assert cam.read() is None and cam.delivered == 1
