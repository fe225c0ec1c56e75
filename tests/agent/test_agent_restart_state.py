"""State the agent keeps across connections and restarts: every seq it reserves is published
(no gap that is not a loss), and a car already reported is not reported again after a restart."""

from __future__ import annotations

from pathlib import Path

import pytest
from agent_helpers import (
    Collector,
    FakeCamera,
    FakePosition,
    FakePower,
    make_config,
    truth,
)

import protocol
from drone_agent.agent import Agent
from drone_agent.assembly import from_config
from drone_agent.dedupe import Dedupe
from drone_agent.outbox import Outbox
from hw_sim.link import LinkProxy
from hw_sim.recognizer import SimRecognizer
from presacop.stack import free_port
from tests.support import wait_until


def test_every_reserved_seq_is_published_through_failed_connects_and_a_restart(
        tmp_path: Path, mosquitto_factory) -> None:
    """Link cuts make connect attempts fail (each used to reserve a will seq never published),
    an agent stops while its link is down (its reserved will seq used to be lost with it): the
    drone's seqs received at the broker are still exactly 0..next_seq-1.

    Each cut waits for the online status of the connection it cuts to reach the collector: a
    connection cut before that loses its online seq, one of the exceptions docs/agent.md lists
    (not re-sent), not what this test is about. Cutting right after `connected` hit that window
    under load (the status still in the agent's socket or the proxy)."""
    broker = mosquitto_factory()
    collector = Collector(broker.host, broker.port, "seq-collector")
    proxy = LinkProxy(broker.host, broker.port, name="seq-link").start()
    data = tmp_path / "data"
    cfg = make_config(data, proxy.port, mqtt={"backoff_min_s": 0.05, "backoff_max_s": 0.1})

    def online_statuses() -> int:
        return sum(r.message.online for r in collector.first_arrivals(protocol.Status))

    def cut_once_online(agent: Agent) -> None:
        """Cut the link once the online status of every connection so far is at the collector."""
        want = agent.stats()["connects"]
        wait_until(lambda: online_statuses() >= want, 60,
                   f"{want} online statuses at the collector before the cut")
        proxy.cut()  # the broker fires the will of this connection

    def failures_grow(agent: Agent, by: int) -> None:
        start = agent.stats()["connect_failures"]
        wait_until(lambda: agent.stats()["connect_failures"] >= start + by, 60,
                   f"{by} failed connect attempts while the link is cut")

    try:
        agent = from_config(cfg)
        agent.start()
        wait_until(lambda: agent.stats()["acked"] >= 5, 60, "5 messages acknowledged")
        for _ in range(2):
            cut_once_online(agent)
            failures_grow(agent, 3)
            proxy.restore()
            wait_until(lambda: agent.stats()["connected"], 30, "the agent to reconnect")
        cut_once_online(agent)
        failures_grow(agent, 3)
        agent.stop(timeout=3.0)  # stopped while the link is down: its will seq is kept
        proxy.restore()
        agent = from_config(cfg)  # a restart on the same data dir
        agent.start()
        wait_until(lambda: agent.stats()["connected"] and agent.stats()["acked"] >= 3, 60,
                   "the restarted agent to deliver")
        agent.stop(timeout=10.0)  # clean: the offline status takes the will's seq
        assert agent.stats()["outbox_depth"] == 0
    finally:
        proxy.stop()
    next_seq = Outbox(data / "outbox.sqlite3").next_seq
    wait_until(lambda: {r.message.header.seq for r in collector.snapshot()}
               >= set(range(next_seq)), 60, "every reserved seq at the collector",
               interval=0.2)
    seqs = {r.message.header.seq for r in collector.snapshot()}
    collector.close()
    assert seqs == set(range(next_seq)), f"never published: {sorted(set(range(next_seq)) - seqs)}"
    statuses = [r.message for r in collector.first_arrivals(protocol.Status)]
    assert sum(not s.online for s in statuses) >= 3  # two wills and the clean goodbye
    print(f"{next_seq} seqs reserved, all published; {len(statuses)} status messages")


def test_a_car_reported_before_a_restart_is_not_reported_again(tmp_path: Path) -> None:
    parked = truth("ABC1234", code=21)
    cfg = make_config(tmp_path, free_port(), recognizer={"max_rate_hz": 50.0})

    def run() -> dict[str, int]:
        cam = FakeCamera([(parked,)] * 40, period=0.01)
        agent = Agent(cfg, camera=cam, position=FakePosition(), power=FakePower(),
                      recognizer=SimRecognizer(unqualified_rate=0.0, seed=1))
        with agent:
            wait_until(lambda: cam.index >= 40 and agent.stats()["recognized"] >= 20, 30,
                       "the camera to show the parked car 40 times")
            return agent.stats()

    first, second = run(), run()
    assert first["violations"] == 1 and first["deduped"] > 0
    assert second["violations"] == 0 and second["deduped"] > 0, second
    queued = Outbox(tmp_path / "outbox.sqlite3").pending(1000)
    assert [e.kind for e in queued].count("violation") == 1  # the broker was never reachable


@pytest.mark.parametrize(("age_s", "suppressed"), [(10.0, True), (-3600.0, True),
                                                   (60.0, False)])
def test_restored_keys_keep_their_remaining_window(age_s: float, suppressed: bool) -> None:
    d = Dedupe(window_s=60.0)
    d.restore(("ABC1234", 21), age_s, now=1000.0)
    assert d.suppressed(("ABC1234", 21), 1000.0) is suppressed
    assert not d.suppressed(("ABC1234", 21), 1000.0 + 61.0)  # never beyond one window
