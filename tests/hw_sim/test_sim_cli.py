"""`presacop sim` as a user runs it: real processes, real Mosquitto, clear errors for bad flags."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

import protocol
from presacop.stack import Mosquitto

FAST = ["--fps", "4", "--resolution", "640x360", "--violation-rate", "0.5", "--interval", "1"]


def sim(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "presacop.sim", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture
def broker(mosquitto_factory: Callable[..., Mosquitto]) -> Iterator[Mosquitto]:
    """A broker with a subscriber standing in for the gateway. Without one, Mosquitto drops
    every message (PUBACK 0x10, no matching subscribers) and the agents keep them queued."""
    running = mosquitto_factory()
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sim-cli-gateway",
                         protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(protocol.SUBSCRIPTION, qos=1)
    client.on_subscribe = lambda _c, _u, _mid, _rcs, _p: subscribed.set()
    client.connect(running.host, running.port)
    client.loop_start()
    try:
        assert subscribed.wait(30)
        yield running
    finally:
        client.disconnect()
        client.loop_stop()


def test_help_is_the_module_docstring() -> None:
    import presacop.sim

    done = sim("--help")
    assert done.returncode == 0
    assert "Run a fleet of simulated drones" in done.stdout
    assert presacop.sim.__doc__ and "--link-faults" in presacop.sim.__doc__


@pytest.mark.parametrize("flags, message", [
    (["--drones", "0"], "argument --drones: must be 1..1000, got 0"),
    (["--drones", "two"], "argument --drones: must be a whole number"),
    (["--broker", "localhost"], "argument --broker: expected HOST:PORT"),
    (["--broker", "127.0.0.1:0"], "argument --broker: port must be 1..65535"),
    (["--broker", "127.0.0.1:x"], "is not a number"),
    (["--broker", "8.8.8.8:1883"], "not this machine"),
    (["--duration", "-1"], "argument --duration"),
    (["--resolution", "1280by720"], "expected WIDTHxHEIGHT"),
    (["--link-faults", "every=5,mode=flaky"], "mode must be reset or stall"),
    (["--violation-rate", "2"], "argument --violation-rate"),
])
def test_bad_flags_exit_2_naming_the_flag(flags: list[str], message: str) -> None:
    done = sim(*flags)
    assert done.returncode == 2
    assert message in done.stderr


def test_no_broker_means_nothing_acknowledged_and_exit_1(tmp_path: Path) -> None:
    from presacop.stack import free_port

    done = sim("--drones", "1", "--broker", f"127.0.0.1:{free_port()}", "--duration", "2",
               "--drain", "1", "--json", "--data-dir", str(tmp_path), *FAST)
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout)
    assert not summary["drained"] and summary["totals"]["acked"] == 0
    # What could not be sent stays on disk, in the drone's outbox.
    assert (tmp_path / "sim-0001" / "outbox.sqlite3").exists()


def test_fleet_run_with_link_faults_drains_and_reports_json(broker: Mosquitto) -> None:
    done = sim("--drones", "2", "--broker", f"{broker.host}:{broker.port}", "--duration", "8",
               "--link-faults", "every=3,down=1,jitter=0", "--seed", "5", "--json", *FAST)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["drained"] is True
    assert sorted(summary["drones"]) == ["sim-0001", "sim-0002"]
    totals = summary["totals"]
    assert totals["violations"] > 0 and totals["acked"] >= totals["violations"]
    assert totals["outbox_depth"] == 0 and totals["link_cuts"] >= 2
    assert summary["link_faults"] == totals["link_cuts"]
    assert "linked | frames" in done.stderr  # live lines go to stderr with --json


def test_processes_split_the_fleet_and_merge_the_summary(broker: Mosquitto) -> None:
    done = sim("--drones", "3", "--processes", "2", "--broker", f"{broker.host}:{broker.port}",
               "--duration", "5", *FAST)
    assert done.returncode == 0, done.stderr
    assert "sim-0001" in done.stdout and "sim-0003" in done.stdout
    assert "every accepted violation was acknowledged" in done.stdout
    total = next(line for line in done.stdout.splitlines() if line.startswith("total"))
    assert int(total.split()[1]) > 0  # violations


@pytest.mark.parametrize("processes", ["1", "2"])
def test_sigterm_lands_the_fleet_and_reports(broker: Mosquitto, processes: str) -> None:
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-m", "presacop.sim", "--drones", "2", "--processes", processes,
         "--broker", f"{broker.host}:{broker.port}", "--duration", "0", "--json", *FAST],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # live lines: the drones are flying
            if "linked | frames" in line:
                break
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    summary = json.loads(out)
    assert sorted(summary["drones"]) == ["sim-0001", "sim-0002"]
    assert summary["drained"] is True and summary["totals"]["outbox_depth"] == 0
