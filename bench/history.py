"""History ingest and statistics latency, measured in one run on one machine.

    1. a 1 GB-class "Parking Violations Issued" file (generated: a seeded sample of 200,000 rows,
       repeated with fresh summons numbers until --rows)
    2. Kafka's producer limit on this machine, on the same Kafka, for records of the same size:
       Kafka's own Java tool (org.apache.kafka.tools.ProducerPerformance, from the broker's jars),
       run before and again after the ingest (the machine is shared: the ingest is compared with
       the mean of both; a first, unreported run warms the fresh broker up), and the ingest's two
       senders sending ready-made records with its settings
    3. `presacop history ingest` of the file as a child process: rows/s, peak RSS (VmHWM)
    4. event -> statistic: `presacop stats run` (local Spark) running; single violation records
       produced one at a time; time from Kafka's acknowledgement to the statistics file counting it

Usage: .venv/bin/python bench/history.py [--rows N] [--probes K] [--kafka HOST:PORT] [--json]
(--rows 300000: 3-8 minutes on this shared 2-core machine; the default 1 GB file: 30-40 minutes)
Starts its own Kafka on free ports in a temporary directory (stopped at the end) unless --kafka.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # our packages, not bench/*.py

from _common import REPO, cpu_seconds, machine, machine_line, peak_rss, table

from backoffice import kafka_clients
from backoffice.config import load_config
from backoffice.history.records import HEADER, BadRow, normalize
from backoffice.history.sample import generate_lines
from backoffice.history.sender import open_sender
from presacop.stack import Kafka, ensure_kafka_classpath, free_ports

SEED_ROWS = 200_000
ONE_GB_ROWS = 5_600_000  # ~194 bytes a row


def log(msg: str) -> None:
    print(f"[history bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_file(path: Path, rows: int) -> int:
    """The bench file; returns its size. Rows past SEED_ROWS repeat the seed with new numbers."""
    seed = [line for line, _ in generate_lines(min(rows, SEED_ROWS), seed=17)]
    with path.open("w", encoding="utf-8") as fh:
        fh.write(",".join(HEADER) + "\n")
        for i, line in zip(range(rows), itertools.cycle(seed), strict=False):
            # A bad row without a summons number stays bad; the others get a unique number.
            fh.write(line if line[0] == "," else f"{9_000_000_000 + i}{line[line.index(','):]}")
    return path.stat().st_size


def write_config(tmp: Path, bootstrap: str, backend: str, name: str) -> Path:
    """A backoffice.toml under tmp/name whose topics are named after `name` too."""
    d = tmp / name
    d.mkdir()
    topics = "\n".join(f'{t} = "{name}.{t}"' for t in ("telemetry", "violations", "alerts",
                                                       "deadletter"))
    path = d / "backoffice.toml"
    path.write_text(f"""[kafka]
bootstrap_servers = "{bootstrap}"
backend = "{backend}"
partitions = 6
[kafka.topics]
{topics}
[history]
topic = "{name}.history"
state_dir = "{d / 'history-state'}"
[stats]
archive_dir = "{d / 'archive'}"
stats_dir = "{d / 'stats'}"
checkpoint_dir = "{d / 'checkpoints'}"
trigger_s = 1.0
""")
    return path


def sample_values(count: int) -> list[bytes]:
    """Normalized records as the ingest sends them, for the producer-limit runs."""
    import csv

    out = []
    for line, _ in generate_lines(count, seed=3, bad_fraction=0):
        try:
            rec = normalize(next(csv.reader([line])))
        except BadRow:  # a stray quote: the ingest's reader fixes it, plain csv does not
            continue
        else:
            rec.update(source_file="x.csv", source_file_id="0" * 16, source_line=1,
                       ingested_ms=int(time.time() * 1000))
            out.append(json.dumps(rec, separators=(",", ":"), ensure_ascii=False).encode())
    return out


def client_limit(cfg: Any, backend: str, topic: str, values: list[bytes], count: int) -> float:
    """records/s of the ingest's own sender (same settings) with ready-made records."""
    cfg = dataclasses.replace(cfg, kafka=dataclasses.replace(cfg.kafka, backend=backend))
    kafka_clients.ensure_topics(cfg.kafka, [topic])
    sender = open_sender(cfg)
    try:
        started = time.perf_counter()
        for i in range(count):
            sender.send(topic, str(8_000_000_000 + i).encode(), values[i % len(values)], [])
        sender.flush(timeout=300)
        return count / (time.perf_counter() - started)
    finally:
        sender.close()


def java_limit(cfg: Any, topic: str, size: int, count: int) -> float | None:
    kafka_clients.ensure_topics(cfg.kafka, [topic])
    h = cfg.history
    cmd = ["java", "-Xmx512m", "-cp", ensure_kafka_classpath(),
           "org.apache.kafka.tools.ProducerPerformance", "--topic", topic,
           "--num-records", str(count), "--record-size", str(size), "--throughput", "-1",
           "--producer-props", f"bootstrap.servers={cfg.kafka.bootstrap_servers}", "acks=all",
           "enable.idempotence=true", f"linger.ms={h.linger_ms}", f"batch.size={h.batch_size}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    found = re.findall(r"records sent, ([\d.]+) records/sec", done.stdout)
    if done.returncode != 0 or not found:
        log(f"ProducerPerformance failed (exit {done.returncode}): {done.stderr[-500:]}")
        return None
    return float(found[-1])


def ingest(config: Path, file: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "presacop.cli", "history", "ingest", str(file), "-c", str(config)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    # The ingest and its parser processes: CPU summed over all, peak RSS the sum of each one's
    # high-water mark (an upper bound of what they held at once).
    peaks: dict[int, int] = {}
    cpus: dict[int, float] = {}
    try:
        while proc.poll() is None:
            for pid in [proc.pid, *_children(proc.pid)]:
                peaks[pid] = max(peaks.get(pid, 0), peak_rss(pid))
                cpus[pid] = max(cpus.get(pid, 0.0), cpu_seconds(pid))
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"ingest failed ({proc.returncode}): {err[-2000:]}")
    wall = time.perf_counter() - started
    rows = int(re.search(r"([\d,]+) rows read", out).group(1).replace(",", ""))
    return {"rows": rows, "seconds": wall, "rows_per_s": rows / wall,
            "peak_rss": sum(peaks.values()), "cpu_s": sum(cpus.values()),
            "processes": len(peaks), "summary": out.strip()}


def _children(pid: int) -> list[int]:
    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def latency(config: Path, cfg: Any, probes: int) -> list[float]:
    """Seconds from Kafka's ack of one violation to the statistics file counting it."""
    stats = Path(cfg.stats.stats_dir) / "current.json"
    cmd = [sys.executable, "-m", "presacop.cli", "stats", "run", "-c", str(config)]
    with (Path(cfg.stats.stats_dir).parent / "stats-run.log").open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=out)
    try:
        producer = kafka_clients.producer(cfg.kafka, linger_ms=0)
        kafka_clients.ensure_topics(cfg.kafka, [cfg.kafka.topics.violations])
        _probe(producer, cfg, "warm-up")  # Spark runs no batch before there is data
        deadline = time.monotonic() + 900
        while _drone_count(stats) < 1:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("stats run did not count the warm-up record")
            time.sleep(0.5)
        found = []
        for i in range(probes):
            before = _drone_count(stats)
            _probe(producer, cfg, str(i))
            acked = time.monotonic()
            while _drone_count(stats) <= before:
                if time.monotonic() - acked > 120:
                    raise RuntimeError("a probe was not counted within 120 s")
                time.sleep(0.02)
            found.append(time.monotonic() - acked)
            log(f"probe {i + 1}/{probes}: {found[-1]:.2f} s")
            time.sleep(1.3)  # land at a different point of the trigger interval each time
        producer.close(timeout=10)
        return found
    finally:
        proc.terminate()
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


def _probe(producer: Any, cfg: Any, name: str) -> None:
    """One violation record, sent and acknowledged."""
    now = int(time.time() * 1000)
    value = {"message_id": f"bench:{name}", "drone_id": "bench", "time_ms": now,
             "lat_deg": 40.7128, "lon_deg": -74.006, "code": 21, "revision": 0,
             "code_status": "drone", "received_ms": now}
    producer.send(cfg.kafka.topics.violations, key=b"bench",
                  value=json.dumps(value).encode()).get(timeout=30)


def _drone_count(path: Path) -> int:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return -1
    return data["values"].get("violations", {}).get("drone", {}).get("", 0)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # so the broker and children are stopped


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=ONE_GB_ROWS, help="rows in the file (~1 GB)")
    p.add_argument("--limit-records", type=int, default=None,
                   help="records for each producer-limit run (default: --rows, at most 300,000)")
    p.add_argument("--probes", type=int, default=8, help="latency probes")
    p.add_argument("--kafka", default=None, help="use this Kafka instead of starting one")
    p.add_argument("--backend", choices=("confluent", "kafka-python"), default="confluent",
                   help="the ingest's producer (kafka.backend; default confluent)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="presacop-history-bench-") as tmpdir:
        tmp = Path(tmpdir)
        broker = None
        if args.kafka is None:
            broker = Kafka(tmp / "kafka", *free_ports(2), heap="1g")
            broker.start()
        try:
            return _run(args, tmp, args.kafka or broker.bootstrap)
        finally:
            if broker is not None:
                broker.stop()


def _run(args: argparse.Namespace, tmp: Path, bootstrap: str) -> int:
    config = write_config(tmp, bootstrap, args.backend, "ingest")
    cfg = load_config(config)
    log(f"generating {args.rows:,} rows")
    size = make_file(tmp / "violations.csv", args.rows)
    log(f"file: {size / 1e9:.2f} GB; producer limits")
    values = sample_values(20_000)
    avg = sum(map(len, values)) // len(values)
    count = args.limit_records or min(args.rows, 300_000)
    # A fresh broker is slow at first (its JIT, new log segments): measured, the first Java run
    # gave 12-15k records/s and the same run after the ingest 40-73k. Warm it up, unreported.
    java_limit(cfg, "bench.warmup", avg, count)
    java_before = java_limit(cfg, "bench.java", avg, count)
    limits = {b: client_limit(cfg, b, f"bench.{b}", values, count)
              for b in ("confluent", "kafka-python")}
    py = limits[args.backend]
    log(f"limits: java {java_before}, {limits} records/s; latency probes")
    # Its own topics: the statistics job must not first chew through the 1 GB ingest.
    lat_config = write_config(tmp, bootstrap, args.backend, "latency")
    lat = latency(lat_config, load_config(lat_config), args.probes)
    log("ingesting")
    result = ingest(config, tmp / "violations.csv")
    log(f"ingest: {result['rows_per_s']:,.0f} rows/s; the Java producer again")
    java_after = java_limit(cfg, "bench.java2", avg, count)
    found = [j for j in (java_before, java_after) if j]
    java = sum(found) / len(found) if found else None
    info = machine()
    out = {"file_bytes": size, "record_bytes": avg, "java_limit": java,
           "java_before_after": [java_before, java_after], "client_limits": limits,
           "ingest": result, "latency_s": lat, "machine": info}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    r = result
    print(machine_line(info))
    print(f"file: {args.rows:,} rows, {size / 1e9:.2f} GB; history records ~{avg} bytes of JSON")
    rows = [[f"Kafka ProducerPerformance (Java), {when}", f"{j:,.0f}" if j else "-", "", "", ""]
            for when, j in (("before", java_before), ("after", java_after))]
    rows.append(["Kafka ProducerPerformance (Java), mean", f"{java:,.0f}" if java else "-",
                 "100%", "", ""])
    rows += [[f"{b} sender, ready-made records", f"{n:,.0f}",
              f"{n / java:.0%}" if java else "-", "100%" if b == args.backend else "", ""]
             for b, n in limits.items()]
    rows.append([f"presacop history ingest ({args.backend})", f"{r['rows_per_s']:,.0f}",
                 f"{r['rows_per_s'] / java:.0%}" if java else "-", f"{r['rows_per_s'] / py:.0%}",
                 f"{r['peak_rss'] / 2**20:.0f} MB"])
    print(table(["what", "records/s", "vs Java", f"vs {args.backend} limit", "peak RSS"], rows))
    print(f"ingest: {r['rows']:,} rows in {r['seconds']:.0f} s wall, {r['cpu_s']:.0f} CPU s in "
          f"{r['processes']} processes (peak RSS: the sum of theirs) "
          f"({r['rows'] / max(r['cpu_s'], 1e-9):,.0f} rows per CPU second)")
    lat_sorted = sorted(lat)
    print(f"event -> statistic (stats.trigger_s {cfg.stats.trigger_s:g}, archive_trigger_s "
          f"{cfg.stats.archive_trigger_s:g}, local[2]): {len(lat)} probes, "
          f"median {lat_sorted[len(lat) // 2]:.2f} s, max {lat_sorted[-1]:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
