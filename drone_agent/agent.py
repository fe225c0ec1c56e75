"""The agent: owned threads from camera to broker.

    agent-capture    camera.read() as fast as the camera delivers; keeps only the newest frame
    agent-recognize  takes the newest frame at most recognizer.max_rate_hz times a second,
                     recognizes, dedupes, stores evidence, queues violations in the outbox
    agent-telemetry  every telemetry.period_s: position + power + flags -> outbox
    agent-publisher  outbox -> MQTT (see `drone_agent.publisher`)

Capture and recognition are separate threads joined by a one-frame slot: a slow recognizer never
has frames queued behind it (a newer frame replaces an unrecognized one, counted as
``skipped_frames``) and never stalls the camera, whose driver would otherwise hand out stale
buffered frames.

`stop()` stops capture, recognition and telemetry, lets the publisher drain and wait for in-flight
PUBACKs, publishes the retained offline status and disconnects, all within its timeout.

Raises: `start` raises `OutboxError` (database unusable) or `OSError` (data directory). Building
an agent from its config is `drone_agent.assembly.from_config`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from common.backoff import Backoff
from drone_agent import messages, plugins, source_extras
from drone_agent.config import AgentConfig
from drone_agent.dedupe import REPORTED_PREFIX, Dedupe, parse_reported, reported_key
from drone_agent.encoders import upload_options, violation_encoder
from drone_agent.errors import EvidenceRefused, OutboxError, OutboxFull
from drone_agent.evidence import EvidenceStore, encode_jpeg, evidence_id
from drone_agent.hardware import (
    Camera,
    Fix,
    Frame,
    HardwareError,
    PositionSource,
    PowerReading,
    PowerSource,
    TimeReference,
)
from drone_agent.outbox import Outbox
from drone_agent.publisher import Publisher
from drone_agent.recognizer import PlateRead, Recognizer
from drone_agent.timesource import TimeSourceDetector
from drone_agent.uploader import Uploader
from drone_agent.workers import LatestFrame, close_quietly, start_thread
from protocol import VIOLATION_CODES, Kind, LocalProtocolError, StatusFlags, topic

__all__ = ["Agent", "LatestFrame"]

log = logging.getLogger(__name__)

CAMERA_STALL_S = 5.0  # no frame for this long -> CAMERA_FAULT
ERROR_LOG_EVERY = 100  # repeated plug-in errors: log the first and every 100th
CAMERA_RETRY_MIN_S, CAMERA_RETRY_MAX_S = 0.1, 5.0  # pause after a failed read, doubling
COUNTERS = ("captured", "processed", "recognized", "skipped_frames", "reads", "violations",
            "deduped", "telemetry", "camera_errors", "recognizer_errors", "invalid_reads",
            "position_errors", "power_errors", "evidence_errors", "outbox_errors")


class Agent:
    """One drone's agent. Use `start()`/`stop()` or as a context manager."""

    def __init__(self, config: AgentConfig, *, camera: Camera, position: PositionSource,
                 power: PowerSource, recognizer: Recognizer | None = None,
                 time_reference: TimeReference | None = None) -> None:
        """Raises `PluginError` if `recognizer` is None and config's recognizer cannot be built."""
        self.config = config
        self.camera, self.position, self.power = camera, position, power
        self.time_reference = time_reference  # GNSS time other than the fixes' (clock.factory)
        self.recognizer: Recognizer = recognizer if recognizer is not None else plugins.build(
            plugins.RECOGNIZER, config.recognizer.factory, config.recognizer.options)
        self.data_dir = Path(config.data_dir)
        self._encode_violation = violation_encoder(config)
        self._upload = upload_options(config)  # manifest key, receipt keys: loaded now
        self.dedupe = Dedupe(config.violations.dedupe_window_s)
        self.clock = TimeSourceDetector(config.clock.sync_check, config.clock.gps_tolerance_s,
                                        reference=time_reference)
        self.outbox: Outbox | None = None
        self.evidence: EvidenceStore | None = None
        self.publisher: Publisher | None = None
        self.uploader: Uploader | None = None
        self._slot = LatestFrame()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sources = threading.Lock()  # position/power are read from two threads
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._count_lock = threading.Lock()
        self._last_fix: Fix | None = None
        self._have_fix = False
        self._last_power: PowerReading | None = None
        self._camera_dead = False
        self._last_frame_at = time.monotonic()
        self._last_camera_error_at = float("-inf")
        self._outbox_full_latched = False
        self._full_events = 0  # refusals so far: a refusal racing a telemetry is not lost
        self._last_flags = StatusFlags.NONE
        self._started = False
        self._stopped = False

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Agent:
        """Open the outbox and evidence store and start the threads. Raises `OutboxError`,
        `OSError`, `RuntimeError` (already started)."""
        if self._started:
            raise RuntimeError("agent already started")
        self._started = True
        cfg = self.config
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(self.data_dir / "outbox.sqlite3", max_bytes=cfg.outbox.max_bytes,
                             max_rows=cfg.outbox.max_rows,
                             telemetry_reserve_rows=cfg.outbox.telemetry_reserve_rows)
        self.evidence = EvidenceStore(self.data_dir / "evidence",
                                      quota_bytes=cfg.evidence.quota_bytes,
                                      min_free_bytes=cfg.evidence.min_free_bytes,
                                      referenced=self._kept_evidence)
        if cfg.evidence.upload != "none":
            self.uploader = Uploader(self.data_dir / "uploads.sqlite3", cfg.drone_id,
                                     file_for=self.evidence.path, delete=self.evidence.remove,
                                     **self._upload)
            self.uploader.sweep()
        self.publisher = Publisher(cfg.mqtt, cfg.drone_id, self.outbox,
                                   make_status=self._status_payload,
                                   topic_for=lambda kind: topic(cfg.drone_id, Kind(kind)),
                                   uploader=self.uploader)
        self._last_frame_at = time.monotonic()
        self._restore_reported()
        log.info("agent %s starting: outbox %d queued (next seq %d), evidence %d files",
                 cfg.drone_id, self.outbox.depth, self.outbox.next_seq, self.evidence.count)
        self._spawn("agent-capture", self._capture_loop)
        self._spawn("agent-recognize", self._recognize_loop)
        self._spawn("agent-telemetry", self._telemetry_loop)
        self.publisher.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop everything within `timeout` seconds: capture, telemetry, then the publisher
        drains, waits for in-flight PUBACKs, says offline and disconnects. Safe to call twice."""
        deadline = time.monotonic() + timeout
        self._stopped = True
        self._stop.set()
        capture_share = time.monotonic() + 0.3 * timeout
        for thread in self._threads:
            thread.join(max(0.0, capture_share - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            # A camera blocked in read() may only return once closed.
            close_quietly(self.camera)
            for thread in self._threads:
                thread.join(max(0.0, capture_share - time.monotonic()))
        if self.publisher is not None and not self.publisher.stop(deadline):
            log.warning("publisher did not stop within %.1f s", timeout)
        stuck = [t.name for t in self._threads if t.is_alive()]
        if stuck:
            log.warning("threads still running after stop: %s", ", ".join(stuck))
        for source in (self.camera, self.position, self.power, self.recognizer,
                       self.time_reference):
            close_quietly(source)
        if self.outbox is not None and not stuck:
            self.outbox.close()
            if self.uploader is not None:
                self.uploader.close()
        self._threads = []

    def __enter__(self) -> Agent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_drained(self, timeout: float) -> bool:
        """Wait until the outbox is empty (everything acknowledged). True if it emptied."""
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            if self.outbox is not None and self.outbox.depth == 0:
                return True
            time.sleep(0.05)
        return False

    def stats(self) -> dict[str, int]:
        """Counters (see docs/agent.md), the outbox depth, refusals and the current flags."""
        replaced = self._slot.replaced  # read before the counts: a race over-counts pending
        with self._count_lock:
            out = dict(self._counts)
        out["skipped_frames"] = replaced
        # Captured frames not yet through recognition, evidence and the outbox.
        out["frames_pending"] = max(0, out["captured"] - out["processed"] - out["skipped_frames"])
        if self.publisher is not None:
            out.update(self.publisher.counters)
            out["connected"] = int(self.publisher.connected)
        ob, ev = self.outbox, self.evidence
        out["outbox_depth"] = ob.depth if ob else 0
        out["outbox_bytes"] = ob.size_bytes if ob else 0
        out["refused"] = ob.refused if ob else 0
        out["telemetry_dropped"] = ob.telemetry_dropped if ob else 0
        out["evidence_written"] = ev.written if ev else 0
        out["evidence_evicted"] = ev.evicted if ev else 0
        out["evidence_refused"] = ev.refused if ev else 0
        out["evidence_files"] = ev.count if ev else 0
        out["evidence_uploaded"] = ev.uploaded if ev else 0
        if self.uploader is not None:
            out.update(self.uploader.stats())
        out.update(source_extras.stats(self.position, self.power, self.time_reference))
        live = ob is not None and not self._stopped
        out["flags"] = int(self._flags(self._last_fix, self._last_power) if live
                           else self._last_flags)
        return out

    # -- capture ------------------------------------------------------------------------------

    def _capture_loop(self) -> None:
        retry = Backoff(CAMERA_RETRY_MIN_S, CAMERA_RETRY_MAX_S)  # attempt = failures in a row
        while not self._stop.is_set():
            try:
                frame = self.camera.read()
            except HardwareError as exc:
                self._camera_dead = True
                self._count("camera_errors")
                log.error("camera failed for good: %s (CAMERA_FAULT; telemetry continues)", exc)
                return
            except Exception as exc:
                delay = retry.next()
                self._count("camera_errors")
                self._last_camera_error_at = time.monotonic()
                if retry.attempt == 1 or retry.attempt % ERROR_LOG_EVERY == 0:
                    log.warning("camera read failed (%d so far): %s", retry.attempt, exc)
                self._stop.wait(delay)
                continue
            if frame is None:
                self._stop.wait(0.01)
                continue
            retry.reset()
            self._last_frame_at = time.monotonic()
            self._count("captured")
            self._slot.put(frame)

    # -- recognition --------------------------------------------------------------------------

    def _recognize_loop(self) -> None:
        period = 1.0 / self.config.recognizer.max_rate_hz
        next_at = 0.0
        while not self._stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            frame = self._slot.take(timeout=0.2)
            if frame is None:
                continue
            next_at = time.monotonic() + period
            try:
                self._process(frame)
            finally:
                self._count("processed")

    def _process(self, frame: Frame) -> None:
        reads = self._recognize(frame)
        if reads is None:
            return
        now = time.monotonic()
        fresh: list[PlateRead] = []
        keys: set[tuple[str, int | None]] = set()
        for read in reads:
            if not read.in_violation:
                continue
            key = (messages.normalise_plate(read.text), read.code)
            if key in keys or self.dedupe.suppressed(key, now):
                self._count("deduped")
                continue
            keys.add(key)
            fresh.append(read)
        if fresh:
            self._queue_violations(frame, fresh, now)

    def _recognize(self, frame: Frame) -> list[PlateRead] | None:
        try:
            reads = list(self.recognizer.recognize(frame))
        except Exception:
            n = self._count("recognizer_errors")
            if n == 1 or n % ERROR_LOG_EVERY == 0:
                log.exception("recognizer failed on frame %d (%d failures so far)", frame.index, n)
            return None
        self._count("recognized")
        self._count("reads", len(reads))
        return reads

    def _queue_violations(self, frame: Frame, reads: list[PlateRead], now: float) -> None:
        ident, pinned = self._store_evidence(frame)
        try:
            for read in reads:
                seq = self._queue_violation(frame, read, ident)
                if seq is not None:
                    self.dedupe.emitted((messages.normalise_plate(read.text), read.code), now)
                    if pinned:
                        self._queue_upload(ident, seq, read.code is not None)
        finally:
            if pinned and self.evidence is not None:
                self.evidence.unpin(ident)

    def _store_evidence(self, frame: Frame) -> tuple[str, bool]:
        """The evidence id for `frame` and whether it is stored (and pinned). A violation goes
        out even when its image cannot be kept: losing the record would be worse."""
        assert self.evidence is not None
        try:
            jpeg = encode_jpeg(frame.image, self.config.evidence.jpeg_quality)
        except Exception as exc:
            self._count("evidence_errors")
            log.error("cannot encode frame %d as JPEG: %s", frame.index, exc)
            return evidence_id(b""), False
        try:
            return self.evidence.put(jpeg, pin=True), True
        except EvidenceRefused as exc:
            return exc.evidence_id, False  # counted by the store; DISK_LOW is raised
        except OSError as exc:
            self._count("evidence_errors")
            log.error("cannot write evidence for frame %d: %s", frame.index, exc)
            return evidence_id(jpeg), False

    def _queue_upload(self, ident: str, seq: int, qualified: bool) -> None:
        """Queue the evidence's upload (durably) if the policy wants it. A failure is logged and
        counted: the violation is out, and its file stays on disk under the quota rules."""
        if self.uploader is None or self.evidence is None or not self.uploader.wanted(qualified):
            return
        try:
            self.uploader.enqueue(ident, seq, self.evidence.path(ident).read_bytes())
        except (OSError, OutboxError) as exc:
            self._count("evidence_errors")
            log.error("cannot queue the upload of evidence %s: %s", ident, exc)

    def _kept_evidence(self) -> set[str]:
        """Evidence the quota may not evict: named by an undelivered violation or not yet
        confirmed by the back office."""
        kept = self.outbox.referenced_evidence() if self.outbox is not None else set()
        return kept | (self.uploader.unconfirmed() if self.uploader is not None else set())

    def _restore_reported(self) -> None:
        """The (plate, code) keys reported before a restart, kept in the outbox (dedupe.py)."""
        assert self.outbox is not None
        kept, now_ms, expired = self.outbox.kept(REPORTED_PREFIX), time.time() * 1000, []
        for name, emitted_ms in kept.items():
            age_s = (now_ms - emitted_ms) / 1000
            if age_s >= self.dedupe.window_s:
                expired.append(name)
                continue
            with contextlib.suppress(ValueError):  # a name we cannot read: not ours to keep
                self.dedupe.restore(parse_reported(name), age_s, time.monotonic())
        if expired:
            self.outbox.forget(expired)

    def _queue_violation(self, frame: Frame, read: PlateRead, ident: str) -> int | None:
        assert self.outbox is not None
        fix = self._fix()
        where = fix or self._last_fix
        source = self.clock.source(fix, frame.captured_at)
        if read.code is not None and read.code not in VIOLATION_CODES:
            log.warning("recognizer gave unknown code %s for %s: sent unqualified", read.code,
                        read.text)

        def build(seq: int) -> bytes:
            hdr = messages.header(self.config.drone_id, seq, frame.captured_at, source)
            return messages.violation(hdr, where, read, ident, self._encode_violation)

        try:
            key = reported_key((messages.normalise_plate(read.text), read.code))
            seq = self.outbox.put("violation", build, evidence_id=ident,
                                  keep={key: int(time.time() * 1000)})
        except OutboxFull as exc:
            self._outbox_full_latched = True
            self._full_events += 1
            log.error("VIOLATION REFUSED (plate %s, code %s): %s", read.text, read.code, exc)
            return None
        except OutboxError as exc:
            self._count("outbox_errors")
            self._outbox_full_latched = True
            self._full_events += 1
            log.error("VIOLATION NOT RECORDED (plate %s, code %s): %s", read.text, read.code, exc)
            return None
        except LocalProtocolError as exc:
            self._count("invalid_reads")
            log.error("recognizer read cannot be sent (%s): %r", exc, read)
            return None
        self._count("violations")
        log.info("violation seq=%s plate=%s code=%s evidence=%s", seq, read.text, read.code, ident)
        return seq

    # -- telemetry ----------------------------------------------------------------------------

    def _telemetry_loop(self) -> None:
        period = self.config.telemetry.period_s
        next_at = time.monotonic()
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at = max(next_at + period, time.monotonic())
            try:
                self._send_telemetry()
            except Exception:  # never let one bad reading end telemetry
                log.exception("telemetry failed")

    def _send_telemetry(self) -> None:
        assert self.outbox is not None
        fix = self._fix()
        power = self._power()
        events = self._full_events
        flags = self._flags(fix, power)
        self._last_flags = flags
        now = time.time()
        source = self.clock.source(fix, now)
        last = self._last_fix

        def build(seq: int) -> bytes:
            hdr = messages.header(self.config.drone_id, seq, now, source)
            return messages.telemetry(hdr, fix, last, power, flags)

        if self.outbox.put("telemetry", build) is None:
            return  # no room: counted as telemetry_dropped by the outbox
        self._count("telemetry")
        if flags & StatusFlags.OUTBOX_FULL and events == self._full_events \
                and not self.outbox.full_for_violations():
            self._outbox_full_latched = False  # reported once; the outbox has room again

    def _flags(self, fix: Fix | None, power: PowerReading | None) -> StatusFlags:
        flags = source_extras.status_flags(self.position, self.power, self.time_reference)
        if power is not None and power.low:
            flags |= StatusFlags.BATTERY_LOW
        if fix is None:
            flags |= StatusFlags.GPS_NO_FIX
        if self._camera_fault():
            flags |= StatusFlags.CAMERA_FAULT
        ob = self.outbox
        if ob is not None and (self._outbox_full_latched or ob.full_for_violations()):
            flags |= StatusFlags.OUTBOX_FULL
        if (self.evidence is not None and self.evidence.is_low()) or \
                (ob is not None and ob.reserve_released):  # the disk was full
            flags |= StatusFlags.DISK_LOW
        if self._link_backlog():
            flags |= StatusFlags.LINK_BACKLOG
        return flags

    def _camera_fault(self) -> bool:
        return (self._camera_dead or self._last_camera_error_at > self._last_frame_at
                or time.monotonic() - self._last_frame_at > CAMERA_STALL_S)

    def _link_backlog(self) -> bool:
        ob, pub = self.outbox, self.publisher
        if ob is None or pub is None or ob.depth == 0:
            return False
        if not pub.connected or pub.session_started_ms is None:
            return True
        oldest = ob.oldest_created_ms()
        return oldest is not None and oldest < pub.session_started_ms

    # -- sources ------------------------------------------------------------------------------

    def _fix(self) -> Fix | None:
        try:
            with self._sources:
                fix = messages.valid_fix(self.position.fix())
        except Exception as exc:
            n = self._count("position_errors")
            if n == 1 or n % ERROR_LOG_EVERY == 0:
                log.warning("position source failed (%d so far): %s", n, exc)
            return None
        if fix is not None:
            self._last_fix = fix
        return fix

    def _power(self) -> PowerReading | None:
        try:
            with self._sources:
                reading = self.power.read()
        except Exception as exc:
            n = self._count("power_errors")
            if n == 1 or n % ERROR_LOG_EVERY == 0:
                log.warning("power source failed (%d so far): %s", n, exc)
            return self._last_power
        self._last_power = reading
        return reading

    # -- helpers ------------------------------------------------------------------------------

    def _status_payload(self, seq: int, online: bool) -> bytes:
        now = time.time()
        source = self.clock.source(self._last_fix, now)
        hdr = messages.header(self.config.drone_id, seq, now, source)
        return messages.status(hdr, online)

    def _count(self, name: str, n: int = 1) -> int:
        with self._count_lock:
            self._counts[name] += n
            return self._counts[name]

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        self._threads.append(start_thread(name, target))
