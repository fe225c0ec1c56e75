"""Helpers for the agent tests: small fakes for pure logic, a real MQTT collector, config."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt

import protocol
from common.config import from_dict
from common.merge import deep_merge
from drone_agent.config import AgentConfig
from drone_agent.hardware import Fix, Frame, HardwareError, PowerReading
from hw_sim.truth import TruthPlate, remember


def config_dict(data_dir: Path, port: int, **sections: Any) -> dict[str, Any]:
    """A test config: hw_sim hardware, fast telemetry, quick reconnects, `sections` merged in."""
    base: dict[str, Any] = {
        "drone_id": "drone-t1",
        "data_dir": str(data_dir),
        "mqtt": {"host": "127.0.0.1", "port": port, "backoff_min_s": 0.1, "backoff_max_s": 0.5,
                 "keepalive_s": 5, "connect_timeout_s": 3.0},
        "telemetry": {"period_s": 0.25},
        "camera": {"factory": "hw_sim.camera:SimCamera",
                   "options": {"seed": 7, "width": 320, "height": 180, "fps": 10.0,
                               "violation_rate": 0.6, "scroll": 0.5}},
        "position": {"factory": "hw_sim.position:RoutePosition", "options": {"seed": 7}},
        "power": {"factory": "hw_sim.power:SimBattery"},
        "recognizer": {"factory": "hw_sim.recognizer:SimRecognizer", "options": {"seed": 1},
                       "max_rate_hz": 10.0},
        "evidence": {"min_free_bytes": 0},
        "clock": {"sync_check": "assume_synced"},
    }
    return deep_merge(base, sections)


def make_config(data_dir: Path, port: int, **sections: Any) -> AgentConfig:
    return from_dict(AgentConfig, config_dict(data_dir, port, **sections), env={})


def to_toml(d: Mapping[str, Any], prefix: str = "") -> str:
    """Just enough TOML for test configs (scalars, nested tables)."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in d.items():
        if isinstance(value, Mapping):
            tables.append((f"{prefix}{key}", value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    out = "\n".join(lines) + "\n"
    for name, table in tables:
        out += f"\n[{name}]\n" + to_toml(table, f"{name}.")
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


# -- fakes for pure logic ---------------------------------------------------------------------


class FakeCamera:
    """Frames with given truth (filed in `hw_sim.truth`, where `SimRecognizer` reads it), one per
    read; `period` seconds between frames (sleeping)."""

    def __init__(self, truths: Iterable[tuple[TruthPlate, ...]] | None = None, period: float = 0.0,
                 fail_with: Exception | None = None, size: tuple[int, int] = (48, 64)) -> None:
        self._truths = iter(truths) if truths is not None else None
        self.period = period
        self.fail_with = fail_with
        self.size = size
        self.index = 0
        self.closed = False
        self._rng = np.random.default_rng(0)

    def read(self) -> Frame | None:
        if self.closed:
            raise HardwareError("closed")
        if self.fail_with is not None:
            raise self.fail_with
        if self.period:
            time.sleep(self.period)
        truth: tuple[TruthPlate, ...] = ()
        if self._truths is not None:
            truth = next(self._truths, ())
        image = self._rng.integers(0, 255, (*self.size, 3), dtype=np.uint8)
        frame = remember(Frame(image=image, index=self.index, captured_at=time.time()), truth)
        self.index += 1
        return frame

    def close(self) -> None:
        self.closed = True


HERE = Fix(40.75, -73.99, 30.0, 90.0, 5.0)


class FakePosition:
    def __init__(self, fix: Fix | None = HERE) -> None:
        self.current = fix

    def fix(self) -> Fix | None:
        return self.current

    def close(self) -> None:
        pass


class FakePower:
    def __init__(self, pct: int = 80, low: bool = False) -> None:
        self.reading = PowerReading(battery_pct=pct, low=low)

    def read(self) -> PowerReading:
        return self.reading

    def close(self) -> None:
        pass


def truth(text: str, code: int | None = 21, region: str = "NY") -> TruthPlate:
    return TruthPlate(text=text, region=region, code=code, box=(1, 2, 30, 15))


# -- a real MQTT subscriber -------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    order: int  # arrival index
    topic: str
    message: protocol.Message
    retained: bool


class Collector:
    """A persistent-session QoS 1 subscriber to every drone topic that reconnects by itself
    (paho's loop thread), so it survives a broker restart and gets what was queued for it."""

    def __init__(self, host: str, port: int, client_id: str = "test-collector") -> None:
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=False)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()
        if not self.connected.wait(10):
            self.close()
            raise TimeoutError(f"collector could not connect to {host}:{port}")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        client.subscribe(protocol.SUBSCRIPTION, qos=1)
        self.connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if protocol.is_evidence_topic(msg.topic):
            return  # evidence upload frames (protocol section 14) are not messages
        decoded = protocol.decode(msg.payload, msg.topic)
        with self._lock:
            self.received.append(Received(len(self.received), msg.topic, decoded, msg.retain))

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def of(self, kind: type) -> list[Received]:
        return [r for r in self.snapshot() if isinstance(r.message, kind)]

    def first_arrivals(self, kind: type | None = None) -> list[Received]:
        """Each message id once, at its first arrival (duplicates after a resend dropped)."""
        seen: set[str] = set()
        out = []
        for r in self.snapshot():
            if kind is not None and not isinstance(r.message, kind):
                continue
            mid = protocol.message_id(r.message)
            if mid not in seen:
                seen.add(mid)
                out.append(r)
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.client._reset_sockets()  # paho 2.2 has no public close()


def violation_seqs(received: Iterable[Received]) -> list[int]:
    return [r.message.header.seq for r in received if isinstance(r.message, protocol.Violation)]
