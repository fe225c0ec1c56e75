"""Bench the drone agent's own costs with simulated hardware (hw_sim) and its recognizer.

    .venv/bin/python bench/agent.py              # ~2 min: private Mosquitto (and a subscriber
                                                 # standing in for the gateway), every figure
    .venv/bin/python bench/agent.py --json       # one JSON object instead of the tables
    .venv/bin/python bench/agent.py --seconds 3 --rss-seconds 10 --puts 100   # quick look

Figures, each at 720p and 1080p (SimCamera with fps=0: frames as fast as asked):

    capture         CPU ms per SimCamera.read(): the simulator drawing a street frame. It stands
                    in for a camera driver, so it is NOT part of the agent's figure below.
    agent pipeline  CPU ms per recognized frame spent on the agent's recognize thread outside
                    the recognizer: dedupe, JPEG evidence encode + content hash + atomic write
                    (only for frames with a new violation), outbox put (SQLite, fsync'ed) per
                    violation. Measured inside a real `Agent` (the real threads, a real broker):
                    the thread CPU time between the end of one recognize() call and the start
                    of the next. The publisher and telemetry threads are listed separately.
    recognizer      CPU ms per call of hw_sim's recognizer (looks up the simulator's truth).
    JPEG encode     cv2.imencode at the configured quality (evidence.jpeg_quality, default 85),
                    CPU ms per frame, and the JPEG size.
    outbox put      durable enqueues per second into a fresh outbox on the real disk (a temp dir
                    under --dir), violations and telemetry separately, with the outbox's fsync
                    policy (SQLite WAL, synchronous=FULL: one fsync per put).
    agent RSS       peak resident memory of a real `presacop agent` process (subprocess, sim
                    camera at --rss-fps and 1080p, route GPS, battery, sim recognizer,
                    publishing to the broker) over --rss-seconds: the kernel's high-water mark
                    (VmHWM) and the highest psutil sample (every 0.2 s).

Target (issue 7): agent peak RSS <= 150 MB. Exit status: 0 done, 1 a measurement failed, 2 bad
flags. Everything it starts (Mosquitto, the agent process) is stopped by PID; loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # our packages, not bench/*.py

import psutil
from _common import (
    Alarm,
    BenchError,
    Child,
    cpu_seconds,
    fmt,
    machine,
    machine_line,
    peak_rss,
    percentile,
    table,
)

RESOLUTIONS = {"720p": (1280, 720), "1080p": (1920, 1080)}
RSS_TARGET_MB = 150.0

# What `presacop agent --config FILE` runs, without the other subcommands' imports.
AGENT_MAIN = (
    "import argparse, sys; from drone_agent import cli; p = argparse.ArgumentParser(); "
    "cli.add_arguments(p); sys.exit(cli.run(p.parse_args()))"
)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def stats_ms(samples: list[float]) -> dict[str, float | None]:
    """mean/p50/p99 of samples in seconds, as milliseconds."""
    ms = [s * 1000 for s in samples]
    return {"n": len(ms), "mean_ms": sum(ms) / len(ms) if ms else None,
            "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99)}


# -- capture and JPEG ----------------------------------------------------------------------------


def bench_capture(width: int, height: int, frames: int) -> tuple[dict[str, Any], list[Any]]:
    """CPU per SimCamera.read() at fps=0; returns a few frames for the JPEG bench."""
    from hw_sim.camera import SimCamera

    camera = SimCamera(seed=1, width=width, height=height, fps=0)
    try:
        for _ in range(3):  # the street background is drawn on first use
            camera.read()
        cpu, wall, kept = [], [], []
        for i in range(frames):
            c0, w0 = time.thread_time(), time.perf_counter()
            frame = camera.read()
            cpu.append(time.thread_time() - c0)
            wall.append(time.perf_counter() - w0)
            if i % max(1, frames // 10) == 0:
                kept.append(frame)
    finally:
        camera.close()
    return {"cpu": stats_ms(cpu), "wall": stats_ms(wall)}, kept


def bench_jpeg(frames: list[Any], quality: int, repeat: int) -> dict[str, Any]:
    from drone_agent.evidence import encode_jpeg

    cpu, sizes = [], []
    for _ in range(repeat):
        for frame in frames:
            c0 = time.thread_time()
            jpeg = encode_jpeg(frame.image, quality)
            cpu.append(time.thread_time() - c0)
            sizes.append(len(jpeg))
    return {"quality": quality, "cpu": stats_ms(cpu), "kb_mean": sum(sizes) / len(sizes) / 1024}


# -- the agent pipeline ----------------------------------------------------------------------------


class TimedCamera:
    """Wraps the agent's camera: CPU of each read() on the capture thread."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.cpu: list[float] = []

    def read(self) -> Any:
        c0 = time.thread_time()
        frame = self.inner.read()
        if frame is not None:
            self.cpu.append(time.thread_time() - c0)
        return frame

    def close(self) -> None:
        self.inner.close()


class TimedRecognizer:
    """Wraps the recognizer. On the recognize thread, the thread CPU between the end of one call
    and the start of the next is the agent's pipeline for the previous frame."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.cpu: list[float] = []
        self.pipeline: list[float] = []
        self._left_at: float | None = None

    def recognize(self, frame: Any) -> Any:
        c0 = time.thread_time()
        if self._left_at is not None:
            self.pipeline.append(c0 - self._left_at)
        try:
            return self.inner.recognize(frame)
        finally:
            self._left_at = time.thread_time()
            self.cpu.append(self._left_at - c0)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close:
            close()


def agent_toml(data_dir: Path, drone_id: str, host: str, port: int, width: int, height: int,
               fps: float, max_rate_hz: float) -> str:
    return "\n".join([
        f'drone_id = "{drone_id}"', f'data_dir = "{data_dir}"', 'log_level = "WARNING"',
        "[mqtt]", f'host = "{host}"', f"port = {port}",
        "[camera]", 'factory = "hw_sim.camera:SimCamera"',
        "[camera.options]", "seed = 1", f"width = {width}", f"height = {height}", f"fps = {fps}",
        "[position]", 'factory = "hw_sim.position:RoutePosition"',
        "[position.options]", "seed = 1",
        "[power]", 'factory = "hw_sim.power:SimBattery"',
        "[recognizer]", 'factory = "hw_sim.recognizer:SimRecognizer"',
        f"max_rate_hz = {max_rate_hz}",
        "[recognizer.options]", "seed = 1", ""])


LISTENER_ID = "bench-agent-listener"  # the stand-in gateway's client id (its thread is not ours)


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each live thread of this process, by thread name."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for t in psutil.Process().threads():
        name = names.get(t.id, f"native-{t.id}")
        out[name] = out.get(name, 0.0) + t.user_time + t.system_time
    return out


def bench_pipeline(work: Path, name: str, width: int, height: int, host: str, port: int,
                   seconds: float) -> dict[str, Any]:
    """A real Agent in this process for `seconds`, camera at fps=0, recognizer unthrottled."""
    from common.config import load
    from drone_agent.assembly import from_config
    from drone_agent.config import AgentConfig

    config_path = work / f"agent-{name}.toml"
    config_path.write_text(agent_toml(work / f"agent-{name}", f"bench-{name}", host, port,
                                      width, height, fps=0, max_rate_hz=1000))
    agent = from_config(load(AgentConfig, config_path))
    camera, recognizer = TimedCamera(agent.camera), TimedRecognizer(agent.recognizer)
    agent.camera, agent.recognizer = camera, recognizer
    before = thread_cpu()
    agent.start()
    try:
        time.sleep(seconds)
        after = thread_cpu()
        stats = agent.stats()
    finally:
        agent.stop(timeout=15)
    per_thread = {k: round(v - before.get(k, 0.0), 3) for k, v in after.items()
                  if k.startswith(("agent-", "paho")) and not k.endswith(LISTENER_ID)
                  and v - before.get(k, 0.0) > 0}
    return {
        "seconds": seconds,
        "captured": stats.get("captured"), "recognized": stats.get("recognized"),
        "violations": stats.get("violations"), "evidence_written": stats.get("evidence_written"),
        "telemetry": stats.get("telemetry"), "acked": stats.get("acked"),
        "capture_cpu": stats_ms(camera.cpu),
        "pipeline_cpu": stats_ms(recognizer.pipeline),
        "recognizer_cpu": stats_ms(recognizer.cpu),
        "thread_cpu_s": per_thread,
    }


# -- the outbox ----------------------------------------------------------------------------------


def sample_payloads() -> dict[str, bytes]:
    import protocol
    from protocol import Header, Position, Telemetry, TimeSource, Vehicle, Violation

    h = Header("bench-outbox", 1, int(time.time() * 1000), TimeSource.GPS)
    pos = Position(40.7579747, -73.9855426, 40.0)
    return {
        "violation": protocol.encode(Violation(h, pos, "ABC1234", "NY", 0.93, 21,
                                               "0123456789abcdef", Vehicle("TOYOT", "WH", "SUBN"))),
        "telemetry": protocol.encode(Telemetry(h, pos, 271.5, 8.3, 87)),
    }


def bench_outbox(directory: Path, puts: int) -> dict[str, Any]:
    """Durable puts per second of each kind into a fresh outbox on the real disk."""
    from drone_agent.outbox import Outbox

    out: dict[str, Any] = {}
    for kind, payload in sample_payloads().items():
        path = directory / f"outbox-{kind}.sqlite3"
        box = Outbox(path)
        try:
            box.put(kind, lambda _seq, p=payload: p)  # create the WAL before timing
            sync = _synchronous(box)
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(puts):
                box.put(kind, lambda _seq, p=payload: p)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        finally:
            box.close()
        out[kind] = {"puts": puts, "payload_bytes": len(payload), "per_s": puts / wall,
                     "wall_ms_per_put": wall / puts * 1000, "cpu_ms_per_put": cpu / puts * 1000,
                     "policy": f"SQLite WAL, synchronous={sync} (fsync per put)"}
    return out


def _synchronous(box: Any) -> str:
    """The outbox connection's PRAGMA synchronous, read back (0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA)."""
    db = getattr(box, "_db", None)
    if db is None:
        return "unknown"
    level = db.execute("PRAGMA synchronous").fetchone()[0]
    return {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(level, str(level))


# -- a real agent process: peak RSS ------------------------------------------------------------


def bench_rss(work: Path, host: str, port: int, seconds: float, fps: float) -> dict[str, Any]:
    width, height = RESOLUTIONS["1080p"]
    config = work / "agent-rss.toml"
    config.write_text(agent_toml(work / "agent-rss", "bench-rss", host, port, width, height,
                                 fps=fps, max_rate_hz=5.0))
    child = Child("agent", [sys.executable, "-c", AGENT_MAIN, "--config", str(config)],
                  log=work / "agent.log")
    try:
        sampled, start = 0, time.monotonic()
        while time.monotonic() - start < seconds:
            if not child.alive():
                raise BenchError(f"agent exited early ({child.returncode}); log {child.log}")
            with contextlib.suppress(psutil.Error):
                sampled = max(sampled, psutil.Process(child.pid).memory_info().rss)
            time.sleep(0.2)
        hwm, cpu = peak_rss(child.pid), cpu_seconds(child.pid)
        wall = time.monotonic() - start
    finally:
        rc = child.stop(timeout=20, sig=signal.SIGTERM)
    return {"seconds": round(wall, 1), "fps": fps, "resolution": "1080p",
            "peak_rss_mb": hwm / 2**20, "peak_sampled_mb": sampled / 2**20,
            "cpu_s": cpu, "cpu_pct_of_one_core": 100 * cpu / wall, "exit_status": rc,
            "target_mb": RSS_TARGET_MB, "met": hwm / 2**20 <= RSS_TARGET_MB}


# -- main ----------------------------------------------------------------------------------------


def run(args: argparse.Namespace, work: Path, host: str, port: int) -> dict[str, Any]:
    from drone_agent.config import EvidenceConfig

    quality = EvidenceConfig().jpeg_quality
    result: dict[str, Any] = {"resolutions": {}}
    for name, (width, height) in RESOLUTIONS.items():
        log(f"{name}: capture and JPEG")
        capture, frames = bench_capture(width, height, args.frames)
        jpeg = bench_jpeg(frames, quality, repeat=max(1, args.frames // len(frames) // 2))
        log(f"{name}: a real agent for {args.seconds:.0f} s (camera fps=0)")
        pipeline = bench_pipeline(work, name, width, height, host, port, args.seconds)
        result["resolutions"][name] = {"capture": capture, "jpeg": jpeg, "agent": pipeline}
    log(f"outbox: {args.puts} puts per kind in {work}")
    result["outbox"] = bench_outbox(work, args.puts)
    log(f"agent process: {args.rss_seconds:.0f} s at 1080p, {args.rss_fps:g} fps")
    result["agent_process"] = bench_rss(work, host, port, args.rss_seconds, args.rss_fps)
    return result


def render(result: dict[str, Any]) -> str:
    head = ["figure", *result["resolutions"].keys()]
    res = result["resolutions"].values()

    def cell(path: Callable[[dict[str, Any]], Any], digits: int = 2) -> list[str]:
        return [fmt(path(r), digits) for r in res]

    rows = [
        ["capture CPU ms/frame (sim camera, mean)",
         *cell(lambda r: r["capture"]["cpu"]["mean_ms"])],
        ["capture CPU ms/frame p99", *cell(lambda r: r["capture"]["cpu"]["p99_ms"])],
        ["agent pipeline CPU ms/frame (mean)",
         *cell(lambda r: r["agent"]["pipeline_cpu"]["mean_ms"])],
        ["agent pipeline CPU ms/frame p50", *cell(lambda r: r["agent"]["pipeline_cpu"]["p50_ms"])],
        ["agent pipeline CPU ms/frame p99", *cell(lambda r: r["agent"]["pipeline_cpu"]["p99_ms"])],
        ["recognizer (sim) CPU ms/call", *cell(lambda r: r["agent"]["recognizer_cpu"]["mean_ms"],
                                                3)],
        ["JPEG encode CPU ms (mean)", *cell(lambda r: r["jpeg"]["cpu"]["mean_ms"])],
        ["JPEG encode CPU ms p99", *cell(lambda r: r["jpeg"]["cpu"]["p99_ms"])],
        ["JPEG size KB (quality {})".format(next(iter(res))["jpeg"]["quality"]),
         *cell(lambda r: r["jpeg"]["kb_mean"], 0)],
        ["frames captured / recognized", *[f"{r['agent']['captured']} / "
                                           f"{r['agent']['recognized']}" for r in res]],
        ["violations queued / evidence JPEGs", *[f"{r['agent']['violations']} / "
                                                 f"{r['agent']['evidence_written']}" for r in res]],
        ["messages acked by the broker", *[fmt(r["agent"]["acked"]) for r in res]],
    ]
    out = [f"machine: {machine_line(result['machine'])}", "", table(head, rows), ""]
    threads = sorted({k for r in res for k in r["agent"]["thread_cpu_s"]})
    out.append(table(["agent thread CPU s (fps=0 run)", *result["resolutions"].keys()],
                     [[t, *[fmt(r["agent"]["thread_cpu_s"].get(t), 2) for r in res]]
                      for t in threads]))
    out.append("")
    ob = result["outbox"]
    out.append(table(["outbox put (real disk)", "puts/s", "wall ms/put", "CPU ms/put", "bytes",
                      "policy"],
                     [[k, fmt(v["per_s"]), fmt(v["wall_ms_per_put"], 2),
                       fmt(v["cpu_ms_per_put"], 3), fmt(v["payload_bytes"]), v["policy"]]
                      for k, v in ob.items()]))
    ap = result["agent_process"]
    out += ["", f"agent process ({ap['resolution']}, {ap['fps']:g} fps, {ap['seconds']} s): "
            f"peak RSS {ap['peak_rss_mb']:.0f} MB (VmHWM; highest sample "
            f"{ap['peak_sampled_mb']:.0f} MB), CPU {ap['cpu_pct_of_one_core']:.0f}% of one core",
            f"target: agent peak RSS <= {RSS_TARGET_MB:.0f} MB: "
            f"{'met' if ap['met'] else 'MISSED'}"]
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=60, help="frames per capture bench (default 60)")
    p.add_argument("--seconds", type=float, default=10,
                   help="seconds of the in-process agent per resolution (default 10)")
    p.add_argument("--puts", type=int, default=300, help="outbox puts per kind (default 300)")
    p.add_argument("--rss-seconds", type=float, default=30,
                   help="how long the agent process runs for its peak RSS (default 30)")
    p.add_argument("--rss-fps", type=float, default=5, help="camera fps of that run (default 5)")
    p.add_argument("--mqtt", metavar="HOST:PORT", help="use this broker instead of starting one")
    p.add_argument("--dir", metavar="DIR", default=None,
                   help="where the temporary work directory goes (default: the system temp dir; "
                   "pick a directory on the disk you want the outbox measured on)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--timeout", type=float, default=600, help="global time budget in seconds")
    args = p.parse_args(argv)
    bad = [f"--{k.replace('_', '-')} must be > 0" for k in
           ("frames", "seconds", "puts", "rss_seconds", "rss_fps", "timeout")
           if getattr(args, k) <= 0]
    if args.mqtt and (":" not in args.mqtt or not args.mqtt.rsplit(":", 1)[1].isdigit()):
        bad.append(f"--mqtt must be HOST:PORT, got {args.mqtt!r}")
    if args.dir and not Path(args.dir).is_dir():
        bad.append(f"--dir {args.dir!r} is not a directory")
    if bad:
        p.error("; ".join(bad))
    return args


def main(argv: list[str] | None = None) -> int:
    import logging

    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    info = machine()
    work = Path(tempfile.mkdtemp(prefix="presacop-bench-agent-", dir=args.dir))
    broker = listener = None
    with Alarm(args.timeout):
        try:
            if args.mqtt:
                host, port_text = args.mqtt.rsplit(":", 1)
                port = int(port_text)
            else:
                from presacop.stack import Mosquitto, free_port

                broker = Mosquitto(work / "mosquitto", free_port())
                broker.start()
                host, port = broker.host, broker.port
                listener = _listen(host, port)  # stands in for the gateway
            result = run(args, work, host, port)
        except BenchError as exc:
            print(f"bench/agent.py: {exc}", file=sys.stderr)
            return 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)  # never interrupt the clean-up
            if listener is not None:
                listener.disconnect()
                listener.loop_stop()
            if broker is not None:
                broker.stop()
            shutil.rmtree(work, ignore_errors=True)
    result["machine"] = info
    result["disk"] = _filesystem(args.dir or tempfile.gettempdir())
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(render(result))
        print(f"outbox disk: {result['disk']}")
    return 0


def _listen(host: str, port: int) -> Any:
    """A subscriber to every drone topic, as the gateway is. Without one Mosquitto answers each
    publish with PUBACK 0x10 (no matching subscribers), the agent keeps the message queued and
    pauses publishing, and the publisher's figures would measure an idle thread."""
    import threading

    import paho.mqtt.client as mqtt

    import protocol

    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=LISTENER_ID,
                         protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(protocol.SUBSCRIPTION, qos=1)
    client.on_subscribe = lambda _c, _u, _mid, _rcs, _p: subscribed.set()
    client.connect(host, port)
    client.loop_start()
    if not subscribed.wait(30):
        client.loop_stop()
        raise BenchError(f"could not subscribe at {host}:{port}")
    return client


def _filesystem(path: str) -> str:
    """The device and file system type holding `path` (from /proc/mounts)."""
    best = ("", "?", "?")
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            dev, mount, fstype = line.split()[:3]
            if os.path.realpath(path).startswith(mount) and len(mount) > len(best[0]):
                best = (mount, dev, fstype)
    return f"{path} on {best[1]} ({best[2]})"


if __name__ == "__main__":
    sys.exit(main())
