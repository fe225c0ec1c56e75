"""Evidence upload end to end on the real parts: agent process -> link proxy -> Mosquitto ->
gateway process -> staging -> store (directory, or S3 through a real s3proxy) -> Kafka.

- two gateways in one share group (shared staging); a link cut, a kill -9 of one gateway and an
  agent kill -9, each while an upload is half staged: every image arrives once, verifies by
  SHA-256, is confirmed and deleted on the drone, and the bytes sent twice stay a few chunks (no
  restart from zero);
- a bit flip between the drone's manifest and its chunks: a dead letter, nothing stored, the drone
  keeps the file;
- the S3 store down: the gateway answers BUSY, events keep flowing, nothing on the drone is
  deleted, and the uploads complete once the store is back.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from gateway_testlib import read_topic, topic_names, unique

from common.config import dump_toml
from gateway.evidence.config import StoreConfig
from gateway.evidence.store import open_store
from hw_sim.link import LinkProxy
from presacop.stack import Stack
from presacop.stack.s3proxy import S3Proxy
from tests.agent.agent_helpers import config_dict
from tests.support import wait_until

AGENT = [sys.executable, "-m", "presacop.cli", "agent", "--config"]
CHUNK = 1024


def agent_config(tmp_path: Path, drone: str, port: int, **evidence: Any) -> Path:
    """The agent tests' simulated drone (tests/agent/agent_helpers.py), its camera stopping after
    30 frames, uploading in chunks of CHUNK bytes."""
    cfg = config_dict(tmp_path / "drone", port, drone_id=drone, telemetry={"period_s": 0.5},
                      camera={"options": {"seed": 11, "fail_after": 30}},
                      evidence={"chunk_size": CHUNK, **evidence})
    path = tmp_path / "agent.toml"
    path.write_text(dump_toml(cfg))
    return path


def evidence_section(tmp_path: Path, store: str = "") -> str:
    store = store or f"path = {json.dumps(str(tmp_path / 'store'))}"
    staging = json.dumps(str(tmp_path / "staging"))
    return (f"\n[evidence]\nstaging_dir = {staging}\nbusy_retry_s = 0.5\n"
            f"[evidence.store]\n{store}\n")


def uploads(tmp_path: Path) -> dict[str, tuple[str, str, int]]:
    """evidence id -> (state, sha256, size), read from the agent's upload queue."""
    db = sqlite3.connect(tmp_path / "drone" / "uploads.sqlite3")
    try:
        rows = db.execute("SELECT evidence_id, state, sha256, size FROM uploads").fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def counter(tmp_path: Path, name: str) -> int:
    db = sqlite3.connect(tmp_path / "drone" / "uploads.sqlite3")
    try:
        row = db.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()
    finally:
        db.close()
    return int(row[0]) if row else 0


def half_staged(staging: Path) -> bool:
    """An upload is in progress at the gateway: some of its chunks staged, not all."""
    return any(any(d.glob("*.part")) for d in staging.glob("*/*") if d.is_dir())


def start_agent(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([*AGENT, str(config)], stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.timeout(900)  # its waits are for states a loaded machine reaches slowly
def test_link_cut_gateway_kill_and_agent_kill_mid_upload_two_gateways(tmp_path: Path, stack: Stack,
                                                         gateway_factory: Any) -> None:
    drone, prefix = unique("ev-"), unique("ev")
    topics = {**topic_names(prefix), "evidence": f"{prefix}.evidence"}
    # Two gateways in one share group, sharing the staging directory and the store: the chunks
    # of one upload reach both, and one finishes what the other began.
    group = unique("grp-")
    gw, other = (gateway_factory(stack.mqtt_port, stack.kafka_bootstrap, topics, drone=drone,
                                 share_group=group, extra=evidence_section(tmp_path)).start()
                 for _ in range(2))
    gw.wait_ready()
    other.wait_ready()
    link = LinkProxy(stack.mqtt_host, stack.mqtt_port, name="ev-link").start()
    config = agent_config(tmp_path, drone, link.port, upload_budget_bps=40_000)
    staging = tmp_path / "staging"
    agent = start_agent(config, tmp_path / "agent-1.log")
    try:
        wait_until(lambda: half_staged(staging), 180, "an upload half staged")
        link.cut()  # the radio drops mid-upload
        link.restore()
        wait_until(lambda: sum(s == "confirmed" for s, *_ in uploads(tmp_path).values()) >= 2,
                   180, "two uploads confirmed after the cut")
        wait_until(lambda: half_staged(staging), 180, "another upload half staged")
        gw.kill()  # the gateway dies mid-upload: its staged chunks stay on disk
        gw.start()
        gw.wait_ready()
        wait_until(lambda: half_staged(staging), 180, "an upload half staged again")
        os.kill(agent.pid, signal.SIGKILL)  # the agent dies mid-upload
        agent.wait(10)
        agent = start_agent(config, tmp_path / "agent-2.log")
        wait_until(lambda: uploads(tmp_path) and all(
            s == "confirmed" for s, *_ in uploads(tmp_path).values()) and
            "camera failed for good" in (tmp_path / "agent-2.log").read_text(), 120,
            "every upload confirmed once the camera stopped")
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        link.stop()
    done = uploads(tmp_path)
    store = open_store(StoreConfig(path=str(tmp_path / "store")))
    stored = {o.sha256: o for o in store.objects()}
    assert set(stored) == {sha for _, sha, _ in done.values()}  # each image once, nothing else
    for sha in stored:
        assert hashlib.sha256(store.get(sha)).hexdigest() == sha
    records = read_topic(stack.kafka_bootstrap, topics["evidence"],
                         until=lambda rs: {r.value["evidence_id"] for r in rs} >= set(done))
    ids = [r.value["evidence_id"] for r in records]
    assert set(ids) == set(done)
    assert len(ids) - len(set(ids)) <= 1  # at most the upload the gateway kill interrupted
    for ident in done:  # confirmed, so deleted on the drone
        assert not (tmp_path / "drone" / "evidence" / f"{ident}.jpg").exists()
    total = sum(size for *_, size in done.values())
    resent = counter(tmp_path, "upload_resent_bytes")
    print(f"uploads {len(done)}, {total} bytes, re-sent after cut/kills: {resent} bytes "
          f"({resent / CHUNK:.1f} chunks), duplicate records {len(ids) - len(set(ids))}")
    assert resent <= 12 * CHUNK, "three interruptions re-sent more than a few chunks"


def test_bit_flip_is_dead_lettered_and_the_drone_keeps_the_file(tmp_path: Path, stack: Stack,
                                                                gateway_factory: Any) -> None:
    from drone_agent.uploader import Uploader  # a real uploader on the agent's publisher
    from tests.gateway.evidence_drone import Drone

    drone, prefix = unique("bf-"), unique("bf")
    topics = {**topic_names(prefix), "evidence": f"{prefix}.evidence"}
    gw = gateway_factory(stack.mqtt_port, stack.kafka_bootstrap, topics, drone=drone,
                         extra=evidence_section(tmp_path)).start()
    gw.wait_ready()
    with Drone(tmp_path, drone, stack.mqtt_port) as d:
        assert isinstance(d.uploader, Uploader)
        ident, path = d.add_image(os.urandom(5000))
        flipped = bytearray(path.read_bytes())
        flipped[3000] ^= 0x10  # after the manifest was made: the chunks no longer match it
        path.write_bytes(bytes(flipped))
        d.start()
        wait_until(lambda: d.state(ident) == "rejected", 60, "the upload rejected")
        assert path.exists()  # the drone keeps it
    dead = read_topic(stack.kafka_bootstrap, topics["deadletter"],
                      until=lambda rs: len(rs) >= 1)
    assert [r.value["reason"] for r in dead] == ["evidence_hash_mismatch"]
    assert list(open_store(StoreConfig(path=str(tmp_path / "store"))).objects()) == []


def test_s3_down_backpressure_events_flow_then_uploads_complete(
        tmp_path: Path, stack: Stack, gateway_factory: Any, s3proxy: S3Proxy) -> None:
    from tests.gateway.evidence_drone import Drone

    drone, prefix = unique("s3-"), unique("s3")
    topics = {**topic_names(prefix), "evidence": f"{prefix}.evidence"}
    store_lines = (f'backend = "s3"\nbucket = "{s3proxy.bucket}"\n'
                   f'endpoint_url = "{s3proxy.endpoint_url}"\ntimeout_s = 2.0')
    gw = gateway_factory(stack.mqtt_port, stack.kafka_bootstrap, topics, drone=drone,
                         extra=evidence_section(tmp_path, store_lines), env=s3proxy.env).start()
    gw.wait_ready()
    s3proxy.stop()  # the store is down before the uploads begin
    with Drone(tmp_path, drone, stack.mqtt_port) as d:
        images = [d.add_image(os.urandom(3000 + i)) for i in range(3)]
        d.start()
        wait_until(lambda: d.uploader.stats()["upload_busy"] >= 1, 60, "a BUSY receipt")
        seqs = [d.telemetry() for _ in range(5)]  # events flow while the store is down
        got = read_topic(stack.kafka_bootstrap, topics["telemetry"],
                         until=lambda rs: {r.value["seq"] for r in rs} >= set(seqs))
        assert {r.value["seq"] for r in got} >= set(seqs)
        assert all(path.exists() for _, path in images)  # nothing deleted meanwhile
        assert all(d.state(ident) == "queued" for ident, _ in images)
        s3proxy.start()
        wait_until(lambda: all(d.state(i) == "confirmed" for i, _ in images), 90,
                   "every upload confirmed once the store is back")
    s3 = open_store(StoreConfig(backend="s3", bucket=s3proxy.bucket,
                                endpoint_url=s3proxy.endpoint_url))
    for ident, _ in images:
        (sha,) = [o.sha256 for o in s3.objects() if o.sha256.startswith(ident)]
        assert hashlib.sha256(s3.get(sha)).hexdigest() == sha
