"""Delivery through real Mosquitto with hw_sim hardware: outages, a full outbox, retained status."""

from __future__ import annotations

from pathlib import Path

from agent_helpers import Collector, make_config, violation_seqs

import protocol
from drone_agent.agent import Agent
from drone_agent.assembly import from_config
from hw_sim.link import LinkProxy
from protocol import StatusFlags
from tests.support import wait_until


def outbox_seqs(agent: Agent) -> tuple[set[int], set[int]]:
    """(violation seqs, telemetry seqs) queued in the agent's outbox now."""
    assert agent.outbox is not None
    entries = agent.outbox.pending(1_000_000)
    return ({e.seq for e in entries if e.kind == "violation"},
            {e.seq for e in entries if e.kind == "telemetry"})


def received_seqs(collector: Collector, kind: type) -> set[int]:
    return {r.message.header.seq for r in collector.of(kind)}


def test_broker_down_every_violation_arrives_in_order_before_telemetry_backlog(
        tmp_path: Path, mosquitto_factory) -> None:
    broker = mosquitto_factory()
    collector = Collector(broker.host, broker.port, "outage-collector")
    agent = from_config(make_config(tmp_path / "data", broker.port))
    try:
        agent.start()
        wait_until(lambda: len(collector.of(protocol.Violation)) >= 3, 60,
                   "3 violations at the collector")

        broker.stop()
        wait_until(lambda: not agent.stats()["connected"], 10, "the agent to see the broker gone")
        before = agent.stats()

        def backlog_built() -> bool:
            """The broker stays away until the agent has kept working without it: new
            violations and telemetry queued, reconnects failing, LINK_BACKLOG raised."""
            now, (_, telemetry) = agent.stats(), outbox_seqs(agent)
            return (now["violations"] >= before["violations"] + 3 and len(telemetry) >= 10
                    and now["connect_failures"] >= before["connect_failures"] + 3
                    and bool(now["flags"] & StatusFlags.LINK_BACKLOG))

        wait_until(backlog_built, 120, "3 new violations, 10 telemetry and 3 failed reconnects "
                   "while the broker is down")
        during = agent.stats()
        backlog_v, backlog_t = outbox_seqs(agent)
        broker.start()

        # The agent kept capturing and queueing while the broker was away.
        assert during["captured"] > before["captured"]
        assert backlog_v and backlog_t
        wait_until(lambda: backlog_v <= received_seqs(collector, protocol.Violation)
                   and backlog_t <= received_seqs(collector, protocol.Telemetry), 60,
                   "the whole backlog at the collector")
    finally:
        agent.stop(timeout=10.0)
    stats = agent.stats()
    wait_until(lambda: len({protocol.message_id(r.message) for r in
                            collector.of(protocol.Violation)}) >= stats["violations"], 20,
               "every violation the agent made, at the collector")
    collector.close()

    assert stats["outbox_depth"] == 0 and stats["reconnects"] >= 1
    violations = collector.first_arrivals(protocol.Violation)
    # Every violation the agent accepted arrived, each once after dropping resends by message id.
    assert len(violations) == stats["violations"]
    seqs = violation_seqs(violations)
    assert seqs == sorted(seqs), "violations arrived out of sequence order"
    # After the outage the queued violations went out before the queued telemetry.
    firsts = collector.first_arrivals()
    last_backlog_violation = max(r.order for r in firsts
                                 if isinstance(r.message, protocol.Violation)
                                 and r.message.header.seq in backlog_v)
    first_backlog_telemetry = min(r.order for r in firsts
                                  if isinstance(r.message, protocol.Telemetry)
                                  and r.message.header.seq in backlog_t)
    assert last_backlog_violation < first_backlog_telemetry


def test_outbox_full_drops_telemetry_first_keeps_violations_then_refuses_visibly(
        tmp_path: Path, mosquitto_factory) -> None:
    broker = mosquitto_factory()
    collector = Collector(broker.host, broker.port, "full-collector")
    proxy = LinkProxy(broker.host, broker.port, name="full-link").start()
    proxy.cut()  # no link from the start: everything stays in the outbox
    cfg = make_config(
        tmp_path / "data", proxy.port,
        outbox={"max_rows": 12, "telemetry_reserve_rows": 4},
        telemetry={"period_s": 0.05},
        camera={"options": {"fps": 20.0, "violation_rate": 0.9, "scroll": 0.5}},
        recognizer={"max_rate_hz": 20.0})
    agent = from_config(cfg)
    try:
        agent.start()
        wait_until(lambda: agent.stats()["refused"] >= 1, 90,
                   "the broker to refuse a publish (stats refused >= 1)")
        stats = agent.stats()
        kept_v, kept_t = outbox_seqs(agent)
        # Telemetry went first: only its reserve is left; all 8 accepted violations are kept.
        assert stats["telemetry_dropped"] > 0
        assert len(kept_t) <= 4
        assert len(kept_v) == 12 - 4 == stats["violations"]
        assert stats["flags"] & StatusFlags.OUTBOX_FULL

        proxy.restore()
        wait_until(lambda: kept_v <= received_seqs(collector, protocol.Violation), 60,
                   "every violation kept in the outbox, at the collector")
        wait_until(lambda: any(r.message.flags & StatusFlags.OUTBOX_FULL
                               for r in collector.of(protocol.Telemetry)), 30,
                   "a telemetry message flagged OUTBOX_FULL")
        # Once drained, the flag clears: a later telemetry no longer carries it.
        wait_until(lambda: not (collector.of(protocol.Telemetry)[-1].message.flags
                                & StatusFlags.OUTBOX_FULL), 30,
                   "a later telemetry message without OUTBOX_FULL")
    finally:
        agent.stop(timeout=5.0)
        proxy.stop()
        collector.close()


def test_link_cut_and_mqtt_311_retained_status(tmp_path: Path, mosquitto_factory) -> None:
    broker = mosquitto_factory()
    collector = Collector(broker.host, broker.port, "cut-collector")
    proxy = LinkProxy(broker.host, broker.port, name="cut-link").start()
    cfg = make_config(tmp_path / "data", proxy.port, mqtt={"protocol": "3.1.1"})
    agent = from_config(cfg)
    try:
        agent.start()
        wait_until(lambda: len(collector.of(protocol.Violation)) >= 2, 60,
                   "2 violations at the collector")
        wait_until(lambda: any(r.message.online for r in collector.of(protocol.Status)), 10,
                   "an online status")
        proxy.cut()
        # The broker saw the connection die: the will sets the retained status to offline.
        wait_until(lambda: not collector.of(protocol.Status)[-1].message.online, 30,
                   "the offline status set by the will")
        wait_until(lambda: agent.stats()["violations"] > len(
            collector.first_arrivals(protocol.Violation)), 60,
                   "violations made while the link was cut")
        proxy.restore()
        wait_until(lambda: collector.of(protocol.Status)[-1].message.online, 30,
                   "the online status after the link came back")
    finally:
        agent.stop(timeout=10.0)
        proxy.stop()
    stats = agent.stats()
    wait_until(lambda: len(collector.first_arrivals(protocol.Violation))
               == stats["violations"], 20, "each violation the agent made, received once")
    collector.close()
    assert stats["outbox_depth"] == 0
    # A clean stop publishes the retained offline status itself (the will does not fire).
    late = Collector(broker.host, broker.port, "late-collector")
    try:
        wait_until(lambda: bool(late.of(protocol.Status)), 10,
                   "the retained status at a late subscriber")
        status = late.of(protocol.Status)[-1]
        assert status.retained and status.message.online is False
        assert status.message.header.drone_id == "drone-t1"
    finally:
        late.close()


def test_rows_leave_the_outbox_only_when_the_broker_acknowledged_them(
        tmp_path: Path, mosquitto_factory) -> None:
    broker = mosquitto_factory()
    collector = Collector(broker.host, broker.port, "ack-collector")
    proxy = LinkProxy(broker.host, broker.port, name="ack-link").start()
    agent = from_config(make_config(tmp_path / "data", proxy.port))
    try:
        agent.start()
        wait_until(lambda: agent.stats()["acked"] >= 3, 60, "3 acknowledged publishes")
        proxy.cut(mode="stall")  # bytes stop moving both ways: publishes go out, no PUBACK back
        wait_until(lambda: agent.stats()["published"] - agent.stats()["acked"] >= 3, 60,
                   "3 publishes waiting for a PUBACK on the stalled link")
        stats = agent.stats()
        unacked = stats["published"] - stats["acked"]
        assert stats["outbox_depth"] >= unacked  # published but unacknowledged: still queued
        waiting_v, _ = outbox_seqs(agent)
        proxy.restore()
        wait_until(lambda: waiting_v <= received_seqs(collector, protocol.Violation), 60,
                   "every unacknowledged violation, at the collector after the stall")
    finally:
        agent.stop(timeout=10.0)
        proxy.stop()
        collector.close()
    assert agent.stats()["outbox_depth"] == 0


def test_a_message_no_one_was_subscribed_to_stays_queued_until_someone_is(
        tmp_path: Path, mosquitto_factory) -> None:
    # After a Mosquitto restart no shared subscription exists until the gateways subscribe
    # again; meanwhile the broker answers PUBACK 0x10 and drops the message. The agent must not
    # take that for a delivery.
    broker = mosquitto_factory()
    agent = from_config(make_config(tmp_path / "data", broker.port))
    collector = None
    try:
        agent.start()
        wait_until(lambda: agent.stats()["unrouted"] >= 3
                   and agent.stats()["violations"] >= 2, 60,
                   "3 unrouted PUBACKs (0x10) and 2 violations")
        unheard_v, unheard_t = outbox_seqs(agent)
        assert unheard_v and unheard_t  # kept, not deleted as if delivered
        assert agent.stats()["acked"] == 0  # (the retained online status is not a queued row)
        collector = Collector(broker.host, broker.port, "late-gateway")
        wait_until(lambda: unheard_v <= received_seqs(collector, protocol.Violation)
                   and unheard_t <= received_seqs(collector, protocol.Telemetry), 60,
                   "every unrouted message, at the collector once someone subscribes")
    finally:
        agent.stop(timeout=10.0)
        if collector is not None:
            collector.close()
    assert agent.stats()["outbox_depth"] == 0
