"""`presacop agent` as a real process: kill -9 and restart, SIGTERM, plug-in and config errors."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from agent_helpers import Collector, config_dict, to_toml

import protocol
from drone_agent.outbox import Outbox
from hw_sim.link import LinkProxy
from tests.support import wait_until

AGENT = [sys.executable, "-m", "presacop.cli", "agent"]
LOGGED = re.compile(r"violation seq=(\d+) ")


def write_config(tmp_path: Path, port: int, **sections: object) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(to_toml(config_dict(tmp_path / "data", port, **sections)))
    return path


def start_agent(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([*AGENT, "--config", str(config)], stdout=out,
                                stderr=subprocess.STDOUT)


def logged_violations(log: Path) -> set[int]:
    return {int(m.group(1)) for m in LOGGED.finditer(log.read_text())}


def test_kill_9_then_restart_loses_nothing_and_reuses_no_seq(tmp_path: Path,
                                                              mosquitto_factory) -> None:
    broker = mosquitto_factory()
    collector = Collector(broker.host, broker.port, "kill-collector")
    link = LinkProxy(broker.host, broker.port, name="kill-link").start()
    # The recognizer comes from a dotted path (not the entry point name) in this test.
    config = write_config(tmp_path, link.port, recognizer={
        "factory": "hw_sim.recognizer:SimRecognizer", "options": {"seed": 4}})
    log1, log2 = tmp_path / "run1.log", tmp_path / "run2.log"
    first = start_agent(config, log1)
    try:
        wait_until(lambda: len(collector.of(protocol.Violation)) >= 8, 90,
                   "8 violations at the collector")
        link.cut(mode="stall")  # a quiet radio: PUBACKs stop coming, the outbox backs up
        wait_until(lambda: len(logged_violations(log1)) > len(
            {r.message.header.seq for r in collector.of(protocol.Violation)}) + 2, 60,
                   "more violations logged than received (the outbox backs up)")
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
    finally:
        first.kill()
        first.wait()
    link.restore()
    # What the dead agent had accepted: logged after commit, or found in its outbox on disk.
    box = Outbox(tmp_path / "data" / "outbox.sqlite3")
    try:
        on_disk = {e.seq: e.payload for e in box.pending(1_000_000)}
        disk_violations = {e.seq for e in box.pending(1_000_000) if e.kind == "violation"}
        first_run_next_seq = box.next_seq
    finally:
        box.close()
    accepted = logged_violations(log1) | disk_violations
    assert disk_violations, "the kill should leave undelivered violations behind"
    # The broker noticed the dead connection: the will made the retained status offline.
    wait_until(lambda: not collector.of(protocol.Status)[-1].message.online, 30,
               "the first agent's offline status (its will)")

    second = start_agent(config, log2)
    try:
        wait_until(lambda: any(r.message.online and r.message.header.seq
                               >= first_run_next_seq
                               for r in collector.of(protocol.Status)), 60,
                   "the second agent's online status with a seq past the first run's")
        wait_until(lambda: accepted <= {r.message.header.seq
                                        for r in collector.of(protocol.Violation)}, 90,
                   "every violation the broker accepted from the first run")
        wait_until(lambda: set(on_disk) <= {r.message.header.seq
                                            for r in collector.snapshot()}, 30,
                   "every message left on disk by the first run")
        wait_until(lambda: bool(logged_violations(log2)), 60,
                   "the second agent to log a new violation")  # it numbers new ones too
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0  # SIGTERM: drain, offline status, clean exit
    finally:
        second.kill()
        second.wait()
        link.stop()
    wait_until(lambda: not collector.of(protocol.Status)[-1].message.online, 10,
               "the second agent's offline status")
    received = collector.snapshot()
    collector.close()

    # No seq ever carried two different messages, across both runs and every resend.
    by_seq: dict[int, protocol.Message] = {}
    for r in received:
        seq = r.message.header.seq
        assert by_seq.setdefault(seq, r.message) == r.message, f"seq {seq} reused"
    # Queued rows went out byte for byte; the second run only used fresh numbers.
    topic_of = {r.message.header.seq: r.topic for r in received}
    assert all(protocol.decode(on_disk[s], topic_of[s]) == by_seq[s] for s in on_disk)
    second_run = logged_violations(log2)
    assert second_run and min(second_run) >= first_run_next_seq
    assert "Traceback" not in log1.read_text() + log2.read_text()


def test_bad_recognizer_path_is_a_clear_error_at_start(tmp_path: Path) -> None:
    config = write_config(tmp_path, 1, recognizer={"factory": "no_such_pkg.models:Recognizer"})
    for extra in ([], ["--check-config"]):
        done = subprocess.run([*AGENT, "--config", str(config), *extra], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2
        assert "recognizer.factory" in done.stderr
        assert "cannot import module 'no_such_pkg.models'" in done.stderr


def test_recognizer_without_recognize_method_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, 1, recognizer={"factory": "collections:OrderedDict"})
    done = subprocess.run([*AGENT, "--config", str(config)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "recognizer.factory" in done.stderr and "lacks recognize()" in done.stderr


@pytest.mark.parametrize(("sections", "key"), [
    ({"mqtt": {"port": 0}}, "mqtt.port"),
    ({"outbox": {"max_rows": "many"}}, "outbox.max_rows"),
])
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, sections: dict, key: str) -> None:
    config = write_config(tmp_path, 1883, **sections)
    done = subprocess.run([*AGENT, "--config", str(config)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert key in done.stderr and str(config) in done.stderr


def test_check_config_accepts_a_good_config(tmp_path: Path) -> None:
    config = write_config(tmp_path, 1883)
    done = subprocess.run([*AGENT, "--config", str(config), "--check-config"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "config OK" in done.stdout
