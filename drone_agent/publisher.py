"""The MQTT publisher: moves messages from the outbox to the broker, QoS 1, acknowledged.

One owned thread (``agent-publisher``) runs paho's network loop itself (``client.loop()``), so
every paho call and callback happens on that thread and reconnection is ours:

- A session: connect with client id = drone id and a persistent session (MQTT 5 clean_start=False
  with a session expiry; 3.1.1 clean_session=False), a last will that sets the retained status to
  offline, then publish the retained online status.
- In-flight window: at most `inflight` publishes await their PUBACK. The next messages come from
  the outbox in (priority, seq) order: violations before the telemetry backlog.
- A message leaves the outbox only when its PUBACK arrives (paho's on_publish for a QoS 1 mid).
  An MQTT 5 PUBACK carrying a failure reason (e.g. 0x87 not authorized) counts as ``rejected``:
  the row stays queued but is moved behind everything else and retried only every
  `REFUSED_RETRY_S`, so a refused row cannot block the queue (Mosquitto 2.0 also closes the
  connection after refusing a publish, eclipse-mosquitto/mosquitto#2579).
- An MQTT 5 PUBACK 0x10 "No matching subscribers" is not a delivery: the broker accepted the
  message and dropped it, because nobody (no gateway) was subscribed. It happens for real after a
  Mosquitto restart, which does not keep shared subscriptions, until the gateways subscribe
  again. The row stays queued in place and publishing pauses (`UNROUTED_RETRY_MIN_S` doubling to
  `UNROUTED_RETRY_MAX_S`) before the next try; the first routed PUBACK ends the pause.
- Link lost: the paho client is discarded and a new one connects after a jittered exponential
  backoff. Whatever was in flight is simply sent again from the outbox: paho's own offline queue
  is memory only and is never relied on. Duplicates are harmless: the message id
  (drone id, seq) lets the gateway drop them.
- Stop: keep publishing until the outbox is empty or the deadline nears, wait for in-flight
  PUBACKs, publish the retained offline status (a clean disconnect does not fire the will), then
  DISCONNECT.

Status messages take their seqs from the outbox's sequence, so they never collide with queued
messages, and each reserved seq is meant to be published once (docs/agent.md, "Sequence numbers"):
per connection two consecutive seqs s, s + 1 are reserved before the first CONNECT attempt and kept
(in the outbox: across restarts too) until a CONNACK accepts one; s is the last will (offline,
published by the broker if the connection dies) and s + 1 the online status. A clean goodbye
publishes the offline status with s itself, then DISCONNECT (which cancels the will). So a consumer
sees s exactly once either way; a gap in a drone's seqs is a loss, except the two cases documented
there (a broker crash forgets a registered will; an online status whose connection dropped before
its PUBACK), both recognisable by the status next to the gap.

Raises: nothing from the thread (errors are logged, counted and retried); `start` raises
`RuntimeError` if called twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from common.backoff import Backoff
from drone_agent.config import MqttConfig
from drone_agent.outbox import Outbox
from drone_agent.uploader import Uploader

log = logging.getLogger(__name__)

ACK_BATCH = 64  # delete delivered rows in batches: one fsync'ed commit per batch, not per PUBACK
ACK_FLUSH_S = 0.1
REFUSED_RETRY_S = 300.0  # a row the broker refused is tried again after this long
NO_MATCHING_SUBSCRIBERS = 0x10  # MQTT 5 PUBACK reason: accepted, delivered to nobody
UNROUTED_RETRY_MIN_S = 1.0  # the pause after the first unrouted PUBACK, doubling per retry ...
UNROUTED_RETRY_MAX_S = 30.0  # ... up to this
IDLE_POLL_S = 0.1  # select() timeout when idle: bounds the latency of new messages and of stop()
BUSY_POLL_S = 0.01
WILL_SEQ_KEY = "will_seq"  # outbox meta: the reserved will seq not yet used by a connection


class Publisher:
    """Publishes the outbox over MQTT. `make_status(seq, online)` encodes a Status message."""

    def __init__(self, config: MqttConfig, drone_id: str, outbox: Outbox, *,
                 make_status: Callable[[int, bool], bytes],
                 topic_for: Callable[[str], str], uploader: Uploader | None = None) -> None:
        self.config = config
        self.uploader = uploader  # evidence chunks, sent when no event waits (drone_agent.uploader)
        self.drone_id = drone_id
        self.outbox = outbox
        self._make_status = make_status
        self._topic_for = topic_for
        self._stopping = threading.Event()
        self._drain_until = 0.0
        self._deadline = 0.0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.connected = False
        self.session_started_ms: int | None = None
        self.counters = {"published": 0, "acked": 0, "rejected": 0, "unrouted": 0, "connects": 0,
                         "reconnects": 0, "connect_failures": 0, "connection_lost": 0}
        self._will_seq: int | None = None  # reserved for the next CONNECT (s; s + 1 online)
        self._session_will = 0  # the will seq of the current connection
        self._held: dict[int, float] = {}  # refused seq -> monotonic time of the next try
        self._reset_session()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the publisher thread. Raises `RuntimeError` if already started."""
        if self._thread is not None:
            raise RuntimeError("publisher already started")
        self._thread = threading.Thread(target=self._run, name="agent-publisher", daemon=True)
        self._thread.start()

    def stop(self, deadline: float) -> bool:
        """Drain, say offline, disconnect, by `deadline` (time.monotonic()). True if joined."""
        remaining = max(0.0, deadline - time.monotonic())
        # Keep the last part of the budget for in-flight PUBACKs and the offline status.
        self._drain_until = deadline - min(2.0, 0.3 * remaining)
        self._deadline = deadline
        self._stopping.set()
        if self._thread is None:
            return True
        self._thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
        return not self._thread.is_alive()

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        # Jittered: a fleet that lost the same broker does not come back in lockstep.
        backoff = Backoff(self.config.backoff_min_s, self.config.backoff_max_s)
        client: Any = None
        while not self._stopping.is_set():
            try:
                client = client or self._make_client()
                if self._connect(client):
                    backoff.reset()
                    self._session(client)
                    self._discard(client)
                    client = None
                    continue
            except Exception:  # a bug here must not end delivery for good: log, back off, retry
                log.exception("publisher: unexpected error")
                self._discard(client)
                client = None
            self.counters["connect_failures"] += 1
            delay = backoff.next()
            log.info("publisher: reconnecting in %.1f s", delay)
            self._stopping.wait(delay)
        self._discard(client)

    def _make_client(self) -> Any:
        import paho.mqtt.client as mqtt

        cfg = self.config
        v5 = cfg.protocol == "5"
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=self.drone_id,
            clean_session=None if v5 else False, protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            reconnect_on_failure=False)
        # The window is ours; paho's limits only back it up (+2 for the status messages).
        extra = 2 + (self.uploader.window + 1 if self.uploader else 0)
        client.max_inflight_messages_set(cfg.inflight + extra)
        client.max_queued_messages_set(cfg.inflight + extra)
        client.connect_timeout = cfg.connect_timeout_s
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls:
            client.tls_set(ca_certs=cfg.ca_file, certfile=cfg.cert_file, keyfile=cfg.key_file)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        if self.uploader is not None:
            client.on_message = self._on_message
        return client

    def _connect(self, client: Any) -> bool:
        import paho.mqtt.client as mqtt

        cfg = self.config
        if self._will_seq is None:  # kept across failed attempts and restarts: see above
            self._will_seq = self.outbox.kept(WILL_SEQ_KEY).get(WILL_SEQ_KEY)
            if self._will_seq is None:
                self._will_seq = self.outbox.reserve_seq(2, keep_as=WILL_SEQ_KEY)
        client.will_set(self._topic_for("status"), self._make_status(self._will_seq, False),
                        qos=1, retain=True)
        self._connack: Any = None
        self._lost = False
        try:
            if cfg.protocol == "5":
                from paho.mqtt.packettypes import PacketTypes
                from paho.mqtt.properties import Properties

                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = cfg.session_expiry_s
                client.connect(cfg.host, cfg.port, cfg.keepalive_s, clean_start=False,
                               properties=props)
            else:
                client.connect(cfg.host, cfg.port, cfg.keepalive_s)
        except OSError as exc:
            log.warning("publisher: cannot connect to %s:%s: %s", cfg.host, cfg.port, exc)
            return False
        give_up = time.monotonic() + cfg.connect_timeout_s
        while self._connack is None and not self._lost and time.monotonic() < give_up:
            if client.loop(IDLE_POLL_S) != mqtt.MQTT_ERR_SUCCESS:
                break
        if self._connack is None or self._connack.is_failure:
            why = "timed out" if self._connack is None else str(self._connack)
            log.warning("publisher: broker %s:%s refused or did not answer: %s",
                        cfg.host, cfg.port, why)
            # The will seq is reused by the next attempt. If this CONNECT was accepted after
            # all (CONNACK lost), its will may fire too: the same message id twice, which the
            # gateway drops as a duplicate; no seq is left unpublished.
            return False
        self._session_will, self._will_seq = self._will_seq, None
        self.outbox.forget([WILL_SEQ_KEY])  # in use: the broker or our goodbye publishes it
        log.debug("publisher: connected, will seq %d", self._session_will)
        return True

    def _session(self, client: Any) -> None:
        import paho.mqtt.client as mqtt

        self._reset_session()
        self.counters["connects"] += 1
        if self.counters["connects"] > 1:
            self.counters["reconnects"] += 1
        self.session_started_ms = int(time.time() * 1000)
        self.connected = True
        log.info("publisher: connected to %s:%s", self.config.host, self.config.port)
        try:
            if not self._publish_status(client, self._session_will + 1, online=True):
                return
            if self.uploader is not None:
                self.uploader.on_connect(client)
            while not self._lost:
                busy = self._fill(client)
                if self.uploader is not None and not self._stopping.is_set():
                    idle = not self.outbox.pending(1, self._excluded())
                    busy = self.uploader.fill(client, idle) or busy
                if client.loop(BUSY_POLL_S if busy else IDLE_POLL_S) != mqtt.MQTT_ERR_SUCCESS:
                    break
                self._flush_acks()
                if self._stopping.is_set() and self._drained():
                    self._goodbye(client)
                    return
            self.counters["connection_lost"] += 1
            log.warning("publisher: connection lost; %d in flight will be sent again",
                        len(self._inflight))
        finally:
            self.connected = False
            self._flush_acks(force=True)

    def _drained(self) -> bool:
        """While stopping: done when nothing is queued or in flight, or the drain time is up."""
        if time.monotonic() >= self._drain_until:
            return not self._inflight or time.monotonic() >= self._deadline - 0.5
        return not self._inflight and not self.outbox.pending(1, self._excluded())

    def _goodbye(self, client: Any) -> None:
        import paho.mqtt.client as mqtt

        self._flush_acks(force=True)
        if self._publish_status(client, self._session_will, online=False):
            while self._status_mid is not None and not self._lost \
                    and time.monotonic() < self._deadline:
                if client.loop(BUSY_POLL_S) != mqtt.MQTT_ERR_SUCCESS:
                    break
        client.disconnect()
        # Let paho write the DISCONNECT packet.
        give_up = time.monotonic() + 0.5
        while not self._lost and time.monotonic() < give_up:
            if client.loop(BUSY_POLL_S) != mqtt.MQTT_ERR_SUCCESS:
                break
        log.info("publisher: disconnected cleanly (%d still queued)", self.outbox.depth)

    # -- publishing ---------------------------------------------------------------------------

    def _fill(self, client: Any) -> bool:
        """Publish from the outbox up to the window. True if anything is in flight."""
        import paho.mqtt.client as mqtt

        room = self.config.inflight - len(self._inflight)
        if time.monotonic() < self._unrouted_until:
            room = 0  # nobody is subscribed: wait before sending more into the void
        if room > 0 and not (self._stopping.is_set() and time.monotonic() >= self._drain_until):
            for entry in self.outbox.pending(room, self._excluded()):
                info = client.publish(self._topic_for(entry.kind), entry.payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    break  # connection trouble: loop() reports it next
                self._inflight[info.mid] = entry.seq
                self.counters["published"] += 1
        return bool(self._inflight)

    def _publish_status(self, client: Any, seq: int, *, online: bool) -> bool:
        import paho.mqtt.client as mqtt

        payload = self._make_status(seq, online)
        info = client.publish(self._topic_for("status"), payload, qos=1, retain=True)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        self._status_mid = info.mid
        return True

    def _excluded(self) -> set[int]:
        now = time.monotonic()
        for seq in [s for s, due in self._held.items() if due <= now]:
            del self._held[seq]  # time to try it again (it is behind everything else by now)
        return {*self._inflight.values(), *self._acked, *self._held}

    def _flush_acks(self, force: bool = False) -> None:
        if not self._acked:
            return
        if force or len(self._acked) >= ACK_BATCH \
                or time.monotonic() - self._acked_since >= ACK_FLUSH_S:
            self.outbox.ack(self._acked)
            self._acked = []

    # -- paho callbacks (on this thread, inside client.loop) ----------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        self._connack = reason_code

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        self._lost = True

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if self.uploader is not None and message.topic == self.uploader.receipt_topic:
            self.uploader.on_receipt(message.payload, message.topic)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any,
                    properties: Any) -> None:
        if self.uploader is not None and self.uploader.on_publish(mid, reason_code):
            return
        if mid == self._status_mid:
            self._status_mid = None
            return
        seq = self._inflight.pop(mid, None)
        if seq is None:
            return
        if reason_code.is_failure:
            # The broker refused it (MQTT 5 reason code): keep it, behind everything else.
            self._held[seq] = time.monotonic() + REFUSED_RETRY_S
            self.outbox.hold([seq])
            self.counters["rejected"] += 1
            log.error("publisher: broker refused seq %d: %s (kept in the outbox, retried in "
                      "%.0f s)", seq, reason_code, REFUSED_RETRY_S)
            return
        if getattr(reason_code, "value", None) == NO_MATCHING_SUBSCRIBERS:
            self._unrouted(seq)
            return
        self._unrouted_backoff.reset()
        if not self._acked:
            self._acked_since = time.monotonic()
        self._acked.append(seq)
        self.counters["acked"] += 1

    def _unrouted(self, seq: int) -> None:
        """PUBACK 0x10: the broker dropped `seq` for want of a subscriber. The row stays queued,
        in its place; publishing pauses, longer after each round that met nobody."""
        self.counters["unrouted"] += 1
        now = time.monotonic()
        if now < self._unrouted_until:
            return  # one of the window sent before the pause began: the pause stands
        pause = self._unrouted_backoff.next()
        self._unrouted_until = now + pause
        if self._unrouted_backoff.attempt == 1:
            log.warning("publisher: seq %d reached no subscriber (PUBACK 0x10: is the gateway "
                        "subscribed?); kept in the outbox, publishing paused %.1f s and "
                        "retried", seq, pause)

    # -- helpers ------------------------------------------------------------------------------

    def _reset_session(self) -> None:
        self._inflight: dict[int, int] = {}  # mid -> seq
        self._acked: list[int] = []  # PUBACKed, not yet deleted from the outbox
        self._acked_since = 0.0
        self._status_mid: int | None = None
        self._unrouted_until = 0.0  # monotonic: no publishing before this (PUBACK 0x10 pause)
        # The pause after each round of PUBACK 0x10 in a row.
        self._unrouted_backoff = Backoff(UNROUTED_RETRY_MIN_S, UNROUTED_RETRY_MAX_S)
        self._lost = False
        self._connack = None

    @staticmethod
    def _discard(client: Any) -> None:
        if client is not None:
            # paho 2.2 has no public close(): this closes the socket and its wake-up socketpair
            # now rather than at garbage collection.
            client._reset_sockets()
