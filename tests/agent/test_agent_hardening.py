"""The agent's own security (issue 14): it signs violations with its key, keeps what it writes
to its own user whatever umask it was started with, and keeps delivering on a full disk.

The full-disk test mounts a small tmpfs (root, as CI runs) and fills it for real: SQLite's own
"database or disk is full", not a fake."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_helpers import Collector, config_dict, to_toml

import protocol
from common.signing import KeyRegistry, generate_key
from drone_agent.errors import OutboxError
from drone_agent.outbox import Outbox
from tests.support import wait_until

AGENT = [sys.executable, "-m", "presacop.cli", "agent"]


def test_the_agent_signs_violations_and_keeps_its_files_to_itself(
        tmp_path: Path, mosquitto_factory) -> None:
    broker = mosquitto_factory()
    keys = generate_key(tmp_path / "keys", "drone-t1")
    config = tmp_path / "agent.toml"
    config.write_text(to_toml(config_dict(tmp_path / "data", broker.port,
                                          signing={"key_file": str(keys.private)},
                                          evidence={"min_free_bytes": 0, "upload": "none"})))
    collector = Collector(broker.host, broker.port, "hardening-collector")
    log = tmp_path / "agent.log"
    with open(log, "ab") as out:
        # umask 022, as a shell gives it: before the fix the outbox was created 0644.
        agent = subprocess.Popen([*AGENT, "--config", str(config)], stdout=out,
                                 stderr=subprocess.STDOUT, preexec_fn=lambda: os.umask(0o022))
    try:
        wait_until(lambda: len(collector.of(protocol.Violation)) >= 2, 90,
                   "2 violations at the collector")
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0
    finally:
        agent.kill()
        agent.wait()
        collector.close()
    registry = KeyRegistry(tmp_path / "keys")
    for r in collector.of(protocol.Violation):
        msg = r.message
        assert isinstance(msg, protocol.Violation) and msg.key_id == keys.key_id
        assert registry.check(r.topic, protocol.encode(msg), msg) is None
    written = [p for p in (tmp_path / "data").rglob("*")]
    assert any(p.suffix == ".jpg" for p in written) and any(
        p.name.startswith("outbox.sqlite3") for p in written)
    loose = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in written
             if stat.S_IMODE(p.stat().st_mode) & 0o077}
    assert loose == {}, "readable by others than the agent's user"


# -- a full disk -------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs, unmounted at teardown."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True,
                   capture_output=True, timeout=30)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True,
                       timeout=30)


def fill(directory: Path) -> None:
    """Write a file until the file system says it is full."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == 28  # ENOSPC
        with_small_writes(fd)
    finally:
        os.close(fd)


def with_small_writes(fd: int) -> None:
    try:
        while True:
            os.write(fd, b"\0" * 512)
    except OSError:
        pass


@pytest.mark.parametrize("reserve", [0, 1024 * 1024])
def test_on_a_full_disk_acks_and_new_violations_still_work(small_disk: Path,
                                                          reserve: int) -> None:
    box = Outbox(small_disk / "outbox.sqlite3", disk_reserve_bytes=reserve)
    try:
        queued = [box.put("violation", lambda _s: b"v" * 120) for _ in range(300)]
        fill(small_disk)
        if not reserve:  # how it was: the first ack fails, so delivery stops for good
            with pytest.raises(OutboxError, match="disk is full"):
                for start in range(0, 300, 50):
                    box.ack(queued[start:start + 50])
            return
        for start in range(0, 300, 50):  # the publisher acks in batches
            assert box.ack(queued[start:start + 50]) == 50
        assert box.put("violation", lambda _s: b"n" * 120) is not None
        assert box.disk_full_events == 1 and box.reserve_released  # loud: DISK_LOW, logged
        # Past the reserve, a violation that cannot be stored is refused loudly, never dropped.
        with pytest.raises(OutboxError, match="disk is full"):
            while True:
                box.put("violation", lambda _s: b"n" * 120)
        (small_disk / "filler").unlink()
        box.ack([e.seq for e in box.pending(100)])
        assert not box.reserve_released  # space is back: the reserve is taken again
    finally:
        box.close()
