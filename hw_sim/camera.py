"""A synthetic street camera: parked cars with legible plates, some of them in violation.

The drone flies along a kerb; each frame shows the street scrolled a little further, so the same
car appears in several consecutive frames (the agent dedupes). Everything in a frame is a pure
function of (seed, frame index, resolution): the same seed gives the same plates, codes and
pixel-identical frames. The ground truth of each frame (a `TruthPlate` per fully visible plate) is
filed in `hw_sim.truth`, beside the frame, for the simulator's recognizer
(`hw_sim.recognizer.SimRecognizer`); the frame itself is a plain production `Frame`.

Costs: the street background is drawn once per resolution (shared by every camera in the process)
and each frame is a slice copy plus a handful of OpenCV primitives per car.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from drone_agent.hardware import Frame, HardwareError
from hw_sim import nyc
from hw_sim.truth import TruthPlate, remember

# Violation codes this camera can draw, with what shows them and a rough frequency (street
# cleaning, meters and no-standing dominate NYC tickets). Descriptions live in
# protocol.VIOLATION_CODES; codes missing there are not used (see `drawable_codes`).
SCENES: dict[int, tuple[str, float]] = {
    21: ("street_cleaning_sign", 0.18),  # NO PARKING-STREET CLEANING
    38: ("meter_no_receipt", 0.12),      # FAIL TO DSPLY MUNI METER RECPT
    14: ("no_standing_sign", 0.12),      # NO STANDING-DAY/TIME LIMITS
    40: ("hydrant", 0.12),               # FIRE HYDRANT
    37: ("meter_expired", 0.10),         # EXPIRED MUNI METER
    46: ("double_parked", 0.10),         # DOUBLE PARKING
    19: ("bus_stop_sign", 0.08),         # NO STANDING-BUS STOP
    20: ("no_parking_sign", 0.07),       # NO PARKING-DAY/TIME LIMITS
    48: ("bike_lane", 0.06),             # BIKE LANE
    98: ("driveway", 0.05),              # OBSTRUCTING DRIVEWAY
}

_PLATE_LETTERS = "ABCDEFGHJKLMNPRSTVWXYZ"  # no I, O, Q, U: states avoid them (look like 1, 0)
_DIGITS = "0123456789"

# Body type -> (width, height) of the rear view at scale 1 (720p).
_BODY_SIZE: dict[str, tuple[int, int]] = {
    "4DSD": (220, 135), "2DSD": (214, 130), "SUBN": (236, 160), "PICK": (236, 155),
    "VAN": (240, 185), "DELV": (250, 220),
}
_SLOT = 300  # world pixels per parking slot at scale 1
_PLATE_W, _PLATE_H = 104, 52  # a 12 x 6 inch plate at scale 1


def measure_render(width: int = 1280, height: int = 720, frames: int = 200,
                   seed: int = 0) -> dict[str, float]:
    """Cost of rendering frames of this size in this process: wall and CPU ms per frame.
    Benchmarks subtract it from the agent's CPU per frame (the simulator is not the drone)."""
    cam = SimCamera(seed=seed, width=width, height=height, fps=0)
    cam.render(0)  # the shared background is built once; do not count it
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(1, frames + 1):
        cam.render(i)
    return {"wall_ms": (time.perf_counter() - wall) * 1000 / frames,
            "cpu_ms": (time.process_time() - cpu) * 1000 / frames}


def drawable_codes() -> tuple[int, ...]:
    """Codes this camera can draw that `protocol.VIOLATION_CODES` knows, in SCENES order."""
    import protocol

    return tuple(c for c in SCENES if c in protocol.VIOLATION_CODES)


@dataclass(frozen=True)
class _Car:
    plate: str
    region: str
    code: int | None
    make: str
    colour: str
    body: str
    x: int  # world x of the left edge, in pixels at this camera's scale
    double_parked: bool


@dataclass(frozen=True)
class _Slot:
    cars: tuple[_Car, ...]  # kerb car first, then a double-parked car if any
    scene: str | None  # what is drawn for the kerb car's violation (sign, hydrant...)
    legal_meter: bool  # a paid meter beside a legal car, so meters alone prove nothing


class SimCamera:
    """A `drone_agent.hardware.Camera` that draws NYC street frames with ground truth.

    Args:
        seed: picks every car, plate and violation; same seed, same frames.
        width, height: frame size in pixels (160..7680 x 120..4320).
        fps: `read()` paces itself to this rate by sleeping; 0 returns frames as fast as asked.
        violation_rate: fraction of parking slots with a violation (0..1).
        scroll: fraction of the frame width the street moves per frame (0 < scroll <= 1);
            a car stays fully in view for about (1 - 0.2) / scroll frames.
        codes: restrict violations to these codes (default: all of `drawable_codes()`).
        fail_after: after this many frames `read()` raises HardwareError (a camera fault).
        paused: start paused: `read()` returns None (no frame yet) until `resume()`.
        clock, wall_clock, sleep: injectable time for tests.

    Raises:
        ValueError: a bad argument (names it).
    """

    def __init__(self, seed: int = 0, width: int = 1280, height: int = 720, fps: float = 5.0,
                 violation_rate: float = 0.3, *, scroll: float = 0.2,
                 codes: Iterable[int] | None = None, fail_after: int | None = None,
                 paused: bool = False,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        _check_args(width, height, fps, violation_rate, scroll, fail_after)
        self.seed = int(seed)
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.violation_rate = float(violation_rate)
        self.codes = _check_codes(codes)
        self._code_weights = [SCENES[c][1] for c in self.codes]
        self._fail_after = fail_after
        self._clock, self._wall_clock, self._sleep = clock, wall_clock, sleep
        self._geo = _Geometry(self.width, self.height)
        self._scroll_px = max(1, round(scroll * self.width))
        self._background = _background(self.width, self.height)
        self._slot = functools.lru_cache(maxsize=256)(self._make_slot)
        self._next_index = 0
        self._next_due: float | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._running = threading.Event()
        if not paused:
            self._running.set()

    # -- the Camera interface ------------------------------------------------------------------

    def read(self) -> Frame | None:
        """The next frame, paced to `fps`. Raises HardwareError: the camera was closed, or the
        simulated fault (`fail_after`) fired."""
        if not self._running.wait(0.05):
            return None  # paused: no frame now, the caller retries
        with self._lock:
            if self._closed:
                raise HardwareError("SimCamera is closed")
            if not self._running.is_set():
                return None  # paused while this read waited: pause() guarantees no frame after it
            if self._fail_after is not None and self._next_index >= self._fail_after:
                raise HardwareError(f"SimCamera: simulated failure after {self._fail_after} frames")
            self._pace()
            index = self._next_index
            self._next_index += 1
        return self.render(index)

    def close(self) -> None:
        self._closed = True
        self._running.set()  # a paused read() returns and sees the close

    def pause(self) -> None:
        """Deliver no frames (read() returns None) until `resume()`: a camera that went dark. On
        return `delivered` is final until `resume()` (a read already counted still renders)."""
        self._running.clear()
        with self._lock:  # a read() holding the lock has counted its frame; later ones see pause
            pass

    @property
    def delivered(self) -> int:
        """Frames handed out (or being rendered for a read() in progress) so far."""
        with self._lock:
            return self._next_index

    def resume(self) -> None:
        self._running.set()

    # -- pure rendering --------------------------------------------------------------------------

    def render(self, index: int) -> Frame:
        """Frame `index` of this camera's street; a pure function of (seed, index, size)."""
        if index < 0:
            raise ValueError(f"frame index must be >= 0, got {index}")
        offset = index * self._scroll_px
        period = self._geo.period
        start = offset % period
        image = np.ascontiguousarray(self._background[:, start:start + self.width])
        slots = [self._slot(k) for k in self._visible_slots(offset)]
        truth = _draw(image, self._geo, slots, offset)
        return remember(Frame(image=image, index=index, captured_at=self._wall_clock()), truth)

    def slot_cars(self, first: int, count: int) -> list[TruthPlate]:
        """Ground truth of the cars in parking slots first..first+count-1 (box is world x, 0 y).

        Lets tests and the demo know what a drone will see without rendering frames."""
        out = []
        for k in range(first, first + count):
            for car in self._slot(k).cars:
                out.append(TruthPlate(car.plate, car.region, car.code, (car.x, 0, 0, 0),
                                      car.make, car.colour, car.body))
        return out

    # -- internals -------------------------------------------------------------------------------

    def _pace(self) -> None:
        if self.fps <= 0:
            return
        now = self._clock()
        if self._next_due is None or now - self._next_due > 1.0:
            # First frame, or we fell more than a second behind: restart the schedule rather than
            # bursting frames to catch up (a real camera drops them).
            self._next_due = now
        elif now < self._next_due:
            self._sleep(self._next_due - now)
        self._next_due += 1.0 / self.fps

    def _visible_slots(self, offset: int) -> range:
        slot = self._geo.slot
        first = max(0, (offset - 2 * slot) // slot)
        return range(first, (offset + self.width) // slot + 1)

    def _make_slot(self, k: int) -> _Slot:
        # One RNG per slot, seeded by (seed, k) as a string (hashed with SHA-512 by `random`):
        # any slot can be built on its own, and results do not depend on PYTHONHASHSEED.
        rng = random.Random(f"hw_sim.camera:{self.seed}:{k}")
        g = self._geo
        if rng.random() < 0.12:
            return _Slot((), None, False)  # an empty space
        code: int | None = None
        if self.codes and rng.random() < self.violation_rate:
            code = rng.choices(self.codes, self._code_weights)[0]
        body = _pick(rng, nyc.BODIES)
        jitter = rng.randrange(0, max(1, g.slot - g.s(_BODY_SIZE[body][0]) - g.s(20)))
        kerb_code = None if code == 46 else code
        cars = [_new_car(rng, kerb_code, body, k * g.slot + jitter, False)]
        if code == 46:
            dp_body = _pick(rng, nyc.BODIES)
            cars.append(_new_car(rng, 46, dp_body, k * g.slot + rng.randrange(0, g.s(40)), True))
        scene = SCENES[code][0] if code is not None else None
        return _Slot(tuple(cars), scene, code is None and rng.random() < 0.3)


def _check_args(width: int, height: int, fps: float, violation_rate: float, scroll: float,
                fail_after: int | None) -> None:
    if not 160 <= width <= 7680:
        raise ValueError(f"SimCamera width must be 160..7680 pixels, got {width}")
    if not 120 <= height <= 4320:
        raise ValueError(f"SimCamera height must be 120..4320 pixels, got {height}")
    if not fps >= 0:
        raise ValueError(f"SimCamera fps must be >= 0 (0 = unpaced), got {fps}")
    if not 0.0 <= violation_rate <= 1.0:
        raise ValueError(f"SimCamera violation_rate must be 0..1, got {violation_rate}")
    if not 0.0 < scroll <= 1.0:
        raise ValueError(f"SimCamera scroll must be in (0, 1], got {scroll}")
    if fail_after is not None and fail_after < 0:
        raise ValueError(f"SimCamera fail_after must be >= 0 or None, got {fail_after}")


def _check_codes(codes: Iterable[int] | None) -> tuple[int, ...]:
    available = drawable_codes()
    if codes is None:
        return available
    chosen = tuple(int(c) for c in codes)
    bad = [c for c in chosen if c not in available]
    if bad:
        raise ValueError(f"SimCamera codes {bad} cannot be drawn; choose from {list(available)}")
    return chosen


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), list(weights.values()))[0]


def _new_car(rng: random.Random, code: int | None, body: str, x: int, double: bool) -> _Car:
    region = _pick(rng, nyc.REGION_WEIGHTS)
    plate = "".join(rng.choice(_PLATE_LETTERS if ch == "L" else _DIGITS)
                    for ch in nyc.PLATE_FORMATS[region])
    return _Car(plate, region, code, _pick(rng, nyc.MAKES), _pick(rng, nyc.COLOURS), body, x,
                double)


# -- geometry and drawing ------------------------------------------------------------------------


class _Geometry:
    """Where things are in a frame of a given size. Lengths are given at 720p and scaled."""

    def __init__(self, width: int, height: int) -> None:
        # Scale with the height (plates stay as legible as the sensor allows), unless the frame
        # is too narrow to show at least two parking slots.
        self.scale = min(height / 720, width / (2 * _SLOT))
        self.width, self.height = width, height
        self.period = self.s(320)  # the background repeats every `period` pixels
        self.slot = self.s(_SLOT)
        self.facade_bottom = round(0.22 * height)
        self.kerb_y = round(0.36 * height)
        self.kerb_bottom = round(0.38 * height)
        self.lane_line_y = round(0.665 * height)
        self.kerb_ground = round(0.64 * height)  # wheel bottoms of kerb cars
        self.double_ground = round(0.98 * height)  # wheel bottoms of double-parked cars
        self.plate_w, self.plate_h = self.s(_PLATE_W), self.s(_PLATE_H)
        self.thin = max(1, self.s(1))
        self.thick = max(1, self.s(2))
        self.serial_scale = _fit_scale("MMM8888", cv2.FONT_HERSHEY_SIMPLEX, self.thick,
                                       0.86 * self.plate_w, 0.5 * self.plate_h)
        self.header_scale = _fit_scale("PENNSYLVANIA", cv2.FONT_HERSHEY_PLAIN, 1,
                                       0.8 * self.plate_w, 0.18 * self.plate_h)
        self.small_scale = 0.4 * self.scale

    def s(self, v: float) -> int:
        return max(1, round(v * self.scale))


def _fit_scale(text: str, font: int, thickness: int, max_w: float, max_h: float) -> float:
    (w, h), _ = cv2.getTextSize(text, font, 1.0, thickness)
    return max(0.1, min(max_w / w, max_h / h))


_BACKGROUNDS: dict[tuple[int, int], np.ndarray] = {}
_BACKGROUNDS_LOCK = threading.Lock()


def _background(width: int, height: int) -> np.ndarray:
    """The static street, width + one period wide, read-only, shared per size in this process."""
    with _BACKGROUNDS_LOCK:
        bg = _BACKGROUNDS.get((width, height))
        if bg is None:
            bg = _draw_background(_Geometry(width, height))
            bg.flags.writeable = False
            _BACKGROUNDS[(width, height)] = bg
        return bg


def _draw_background(g: _Geometry) -> np.ndarray:
    p = g.period
    tile = np.empty((g.height, p, 3), np.uint8)
    tile[:g.facade_bottom] = (70, 80, 130)  # brick
    tile[:g.facade_bottom, p // 2:] = (150, 160, 170)  # stone, the next building
    for col in range(8):  # windows
        x = col * p // 8 + g.s(10)
        for y in (g.s(20), g.facade_bottom // 2 + g.s(5)):
            cv2.rectangle(tile, (x, y), (x + g.s(20), y + g.s(36)), (90, 70, 55), -1)
    tile[g.facade_bottom:g.kerb_y] = (172, 176, 178)  # sidewalk
    for col in range(4):  # slab joints
        x = col * p // 4
        cv2.line(tile, (x, g.facade_bottom), (x, g.kerb_y), (140, 142, 145), g.thin)
    tile[g.kerb_y:g.kerb_bottom] = (205, 205, 205)  # kerb
    tile[g.kerb_bottom:] = (72, 74, 76)  # asphalt
    cv2.line(tile, (0, g.kerb_bottom), (p, g.kerb_bottom), (40, 40, 40), g.thin)
    cv2.rectangle(tile, (0, g.lane_line_y), (p // 2, g.lane_line_y + g.s(6)), (230, 230, 230), -1)
    # Mild fixed grain, so JPEG sizes look like a real street rather than flat fills.
    noise = np.random.default_rng(0).integers(-6, 7, tile.shape, dtype=np.int16)
    tile = np.clip(tile.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    reps = -(-(g.width + p) // p)
    return np.ascontiguousarray(np.tile(tile, (1, reps, 1))[:, :g.width + p])


def _draw(image: np.ndarray, g: _Geometry, slots: Sequence[_Slot], offset: int
          ) -> tuple[TruthPlate, ...]:
    """Draw the slots' scenes and cars onto `image`; return the truth of fully visible plates."""
    truth: list[TruthPlate] = []
    for slot in slots:  # ground paint first, under the cars
        if slot.cars and slot.scene in ("bike_lane", "driveway"):
            _draw_ground(image, g, slot.scene, slot.cars[0].x - offset)
    for slot in slots:
        if slot.cars:
            _draw_street_furniture(image, g, slot, slot.cars[0].x - offset)
    for double in (False, True):  # kerb cars, then the nearer double-parked ones over them
        for slot in slots:
            for car in slot.cars:
                if car.double_parked == double:
                    box = _draw_car(image, g, car, car.x - offset)
                    if box[0] >= 0 and box[0] + box[2] <= g.width:
                        truth.append(TruthPlate(car.plate, car.region, car.code, box, car.make,
                                                car.colour, car.body))
    return tuple(truth)


def _draw_ground(image: np.ndarray, g: _Geometry, scene: str, x: int) -> None:
    if scene == "bike_lane":
        cv2.rectangle(image, (x - g.s(30), g.kerb_bottom + g.thin),
                      (x + g.slot - g.s(30), g.lane_line_y - g.s(4)), (60, 140, 60), -1)
        cv2.putText(image, "BIKE LANE", (x, g.lane_line_y - g.s(10)), cv2.FONT_HERSHEY_SIMPLEX,
                    g.small_scale * 1.5, (235, 235, 235), g.thick, cv2.LINE_AA)
    else:  # driveway: a curb cut and a garage door
        cv2.rectangle(image, (x, g.facade_bottom), (x + g.s(200), g.kerb_bottom), (190, 192, 194),
                      -1)
        cv2.rectangle(image, (x + g.s(20), g.s(40)), (x + g.s(180), g.facade_bottom),
                      (110, 110, 110), -1)
        for y in range(g.s(50), g.facade_bottom, g.s(14)):
            cv2.line(image, (x + g.s(20), y), (x + g.s(180), y), (80, 80, 80), g.thin)


def _draw_street_furniture(image: np.ndarray, g: _Geometry, slot: _Slot, x: int) -> None:
    scene = slot.scene
    if scene == "hydrant":
        _draw_hydrant(image, g, x + g.s(110))
    elif scene in ("street_cleaning_sign", "no_standing_sign", "bus_stop_sign",
                   "no_parking_sign"):
        _draw_sign(image, g, scene, x + g.s(40))
    elif scene in ("meter_expired", "meter_no_receipt") or slot.legal_meter:
        _draw_meter(image, g, scene, x + g.s(60))


_SIGNS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int], tuple[str, ...]]] = {
    "street_cleaning_sign": ((240, 240, 240), (30, 30, 200), ("NO", "PARKING", "8-11AM", "TUES")),
    "no_standing_sign": ((240, 240, 240), (30, 30, 200), ("NO", "STANDING", "7AM-7PM", "")),
    "bus_stop_sign": ((150, 70, 20), (245, 245, 245), ("BUS", "STOP", "M15", "")),
    "no_parking_sign": ((240, 240, 240), (30, 30, 200), ("NO", "PARKING", "7AM-4PM", "EXC SUN")),
}


def _draw_sign(image: np.ndarray, g: _Geometry, scene: str, x: int) -> None:
    cv2.rectangle(image, (x - g.s(3), g.s(50)), (x + g.s(3), g.kerb_y), (90, 90, 90), -1)
    bg, fg, lines = _SIGNS[scene]
    top, w, h = g.s(36), g.s(84), g.s(92)
    cv2.rectangle(image, (x - w // 2, top), (x + w // 2, top + h), bg, -1)
    cv2.rectangle(image, (x - w // 2, top), (x + w // 2, top + h), fg, g.thin)
    for i, line in enumerate(lines):
        if line:
            cv2.putText(image, line, (x - w // 2 + g.s(6), top + g.s(20) + i * g.s(21)),
                        cv2.FONT_HERSHEY_SIMPLEX, g.small_scale, fg, g.thin, cv2.LINE_AA)


def _draw_hydrant(image: np.ndarray, g: _Geometry, x: int) -> None:
    base = g.kerb_y - g.s(4)
    red = (30, 30, 200)
    cv2.rectangle(image, (x - g.s(11), base - g.s(44)), (x + g.s(11), base), red, -1)
    cv2.ellipse(image, (x, base - g.s(44)), (g.s(13), g.s(9)), 0, 180, 360, red, -1)
    cv2.rectangle(image, (x - g.s(19), base - g.s(32)), (x + g.s(19), base - g.s(22)), red, -1)
    cv2.rectangle(image, (x - g.s(15), base - g.s(4)), (x + g.s(15), base), (20, 20, 150), -1)


def _draw_meter(image: np.ndarray, g: _Geometry, scene: str | None, x: int) -> None:
    cv2.rectangle(image, (x - g.s(3), g.s(120)), (x + g.s(3), g.kerb_y), (70, 70, 70), -1)
    cv2.rectangle(image, (x - g.s(22), g.s(80)), (x + g.s(22), g.s(130)), (60, 60, 60), -1)
    text, colour = {"meter_expired": ("EXPIRED", (40, 40, 230)),
                    "meter_no_receipt": ("NO RCPT", (30, 160, 240))}.get(
                        scene or "", ("PAID", (60, 200, 60)))
    cv2.rectangle(image, (x - g.s(18), g.s(88)), (x + g.s(18), g.s(104)), (20, 20, 20), -1)
    cv2.putText(image, text, (x - g.s(17), g.s(100)), cv2.FONT_HERSHEY_PLAIN,
                g.small_scale * 1.3, colour, g.thin)


def _draw_car(image: np.ndarray, g: _Geometry, car: _Car, x: int) -> tuple[int, int, int, int]:
    """Draw a car seen from behind with its left edge at x; return its plate box (x, y, w, h)."""
    k = 1.1 if car.double_parked else 1.0  # nearer the camera, a little bigger
    w0, h0 = _BODY_SIZE[car.body]
    w, h = g.s(w0 * k), g.s(h0 * k)
    ground = g.double_ground if car.double_parked else g.kerb_ground
    paint = nyc.PAINT[car.colour]
    wheel_h, bumper_h = g.s(20 * k), g.s(14 * k)
    bottom = ground - wheel_h // 2
    top = bottom - h
    lower_top = bottom - round(0.6 * h)
    for wx in (x + g.s(10), x + w - g.s(46)):  # tyres
        cv2.rectangle(image, (wx, ground - wheel_h), (wx + g.s(36), ground), (25, 25, 25), -1)
    cv2.rectangle(image, (x, lower_top), (x + w, bottom), paint, -1)
    inset = g.s(6) if car.body in ("SUBN", "VAN", "DELV", "PICK") else g.s(26)
    cabin = np.array([[x + g.s(4), lower_top], [x + inset, top], [x + w - inset, top],
                      [x + w - g.s(4), lower_top]], np.int32)
    cv2.fillConvexPoly(image, cabin, paint)
    if car.body == "DELV":  # a box truck: roll-up door, no rear window
        for y in range(top + g.s(10), bottom - bumper_h, g.s(16)):
            cv2.line(image, (x + g.s(12), y), (x + w - g.s(12), y), (150, 150, 150), g.thin)
    else:
        win_bottom = lower_top - g.s(6) if car.body != "PICK" else top + (lower_top - top) // 2
        pad = g.s(10)
        window = np.array([[x + g.s(4) + pad, win_bottom], [x + inset + pad, top + pad],
                           [x + w - inset - pad, top + pad], [x + w - g.s(4) - pad, win_bottom]],
                          np.int32)
        cv2.fillConvexPoly(image, window, (70, 55, 45))
    for lx in (x + g.s(8), x + w - g.s(34)):  # tail lights
        cv2.rectangle(image, (lx, lower_top + g.s(8)), (lx + g.s(26), lower_top + g.s(26)),
                      (30, 30, 180), -1)
    cv2.rectangle(image, (x, bottom - bumper_h), (x + w, bottom), (45, 45, 45), -1)
    cv2.putText(image, car.make, (x + g.s(12), bottom - g.s(3)), cv2.FONT_HERSHEY_PLAIN,
                g.small_scale * 1.6, (200, 200, 200), g.thin)
    px = x + (w - g.plate_w) // 2
    py = bottom - bumper_h - g.plate_h - g.s(3)
    _draw_plate(image, g, car, px, py)
    return (px, py, g.plate_w, g.plate_h)


def _draw_plate(image: np.ndarray, g: _Geometry, car: _Car, x: int, y: int) -> None:
    bg, fg = nyc.PLATE_COLOURS[car.region]
    cv2.rectangle(image, (x, y), (x + g.plate_w, y + g.plate_h), bg, -1)
    cv2.rectangle(image, (x, y), (x + g.plate_w, y + g.plate_h), (60, 60, 60), g.thin)
    header = nyc.REGION_NAMES[car.region]
    (hw, hh), _ = cv2.getTextSize(header, cv2.FONT_HERSHEY_PLAIN, g.header_scale, 1)
    cv2.putText(image, header, (x + (g.plate_w - hw) // 2, y + hh + g.s(3)),
                cv2.FONT_HERSHEY_PLAIN, g.header_scale, fg, 1, cv2.LINE_AA)
    (tw, th), _ = cv2.getTextSize(car.plate, cv2.FONT_HERSHEY_SIMPLEX, g.serial_scale, g.thick)
    baseline = y + g.plate_h - (g.plate_h - th) // 3
    cv2.putText(image, car.plate, (x + (g.plate_w - tw) // 2, baseline),
                cv2.FONT_HERSHEY_SIMPLEX, g.serial_scale, fg, g.thick, cv2.LINE_AA)
