"""The paho-mqtt adapter of `Source` (source.py): a paho-mqtt 2.x client with manual
acknowledgement, on one owned thread.

The thread `gateway-mqtt` owns the paho client outright: it connects, runs paho's loop, hands
each pass's PUBLISHes to the intake as one batch (`Intake.deliver`), and sends every PUBACK.
Other threads never touch the client; they hand acknowledgements over with `ack()`, a lock-free
deque drained after each loop pass. That keeps paho single-threaded (its non-threaded mode
writes to the socket directly from whichever thread queues a packet) and lets the acks be
checked against the connection they belong to.

Connection: MQTT 5, `clean_start=False` with a session expiry, so the broker keeps our shared
subscription and queues QoS 1 messages while we are away. Reconnects use jittered exponential
backoff, also when the broker is down at start.

Flow control: a Receive Maximum on CONNECT asks the broker to keep at most that many
unacknowledged messages in flight to us. Mosquitto 2.0.11 does not hold to it once PUBACKs flow
(measured: 3249 unacknowledged with Receive Maximum 50), so the gateway also enforces its own
limit: `Intake.room()` says how many more messages it can hold, and when it is 0 this thread stops
reading PUBLISHes from the socket (TCP backpressure) while still sending acks. A stall longer than
half a keepalive (Kafka down) would starve paho's keepalive, so then it reads again but defers
PUBLISHes (not held, not acknowledged) and reconnects once there is room, which makes the broker
redeliver them. Memory stays bounded by the limit either way.

Why acks carry a connection generation: a packet id only means something within the session that
issued it. An ack computed for a delivery of an earlier connection is dropped, not sent: after a
reconnect the broker redelivers what we had not acknowledged (persistent session), and the
gateway's dedupe window acknowledges that copy without producing it again. Sending the old id
could instead acknowledge an unrelated message if the broker had lost the session.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

from common.backoff import Backoff

from .config import MqttConfig
from .source import Delivery, Intake, SourceCounts

log = logging.getLogger("gateway.mqtt")

_LOOP_TIMEOUT_S = 0.01  # also the longest an ack waits for the loop to send it
_READ_BURST = 64  # packets read per loop pass when the socket has more
_SYNC_FILTER = "presacop-gateway/never-subscribed"  # see _sync_with_broker


class PahoSource:
    """Subscribes `$share/<group>/<filter>` at QoS 1 and delivers messages until stopped.

    `limit` is the gateway's in-flight limit (deferred messages are fetched again once half of
    it is free); `retire` leaves the share group and drains this client id's session."""

    def __init__(self, cfg: MqttConfig, client_id: str, *, limit: int = 1000,
                 retire: bool = False) -> None:
        self._cfg = cfg
        self._intake: Intake | None = None
        self._batch: list[Delivery] = []  # this loop pass's deliveries, handed over after it
        self.counts = SourceCounts()
        self._limit = limit
        self._full_since: float | None = None
        self._deferred = 0  # PUBLISHes read while full: not acknowledged, redelivered later
        self._leaving = False  # we are closing this connection on purpose
        self._sync_mid: int | None = None
        self._retire = retire
        self._retire_mid: int | None = None
        self._end_session = False
        self._last_delivery = time.monotonic()
        self._paused = False
        self.client_id = client_id
        self._acks: collections.deque[tuple[int, int, int]] = collections.deque()
        self._outgoing: collections.deque[tuple[str, bytes]] = collections.deque()
        self._generation = 0
        self._subscribed = threading.Event()
        self._stop = threading.Event()
        self._connack_at: float | None = None
        self._client = self._make_client()
        self._thread = threading.Thread(target=self._run, name="gateway-mqtt", daemon=True)

    @property
    def subscription(self) -> str:
        return f"$share/{self._cfg.share_group}/{self._cfg.subscription}"

    @property
    def connected(self) -> bool:
        """Connected and subscribed."""
        return self._subscribed.is_set()

    @property
    def paused(self) -> bool:
        """The in-flight limit stopped reading."""
        return self._paused

    def start(self, intake: Intake) -> None:
        self._intake = intake
        self._thread.start()

    def ack(self, delivery: Delivery) -> None:
        """Acknowledge a delivery (thread-safe; sent by the MQTT thread within ~10 ms)."""
        if delivery.qos > 0:
            self._acks.append((delivery.generation, delivery.mid, delivery.qos))

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish QoS 1 from the MQTT thread's next pass (thread-safe); dropped if the
        connection is down then (evidence receipts: the drone asks again)."""
        self._outgoing.append((topic, payload))

    def pending_acks(self) -> int:
        return len(self._acks)

    def stop(self, timeout: float = 10.0, *, end_session: bool = False) -> None:
        """Send the acks already handed over, disconnect cleanly and join the thread. The
        session stays on the broker for `session_expiry_s`, unless `end_session` (retiring)."""
        self._end_session = end_session
        self._stop.set()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def idle_s(self) -> float:
        """Seconds since the last PUBLISH arrived (or since connecting)."""
        return time.monotonic() - self._last_delivery

    # -- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        backoff = Backoff(self._cfg.reconnect_min_s, self._cfg.reconnect_max_s)
        prepare = True  # at start, and after an accepted connection was lost
        while not self._stop.is_set():
            try:
                if prepare:
                    assert self._intake is not None
                    self._intake.prepare()
                    prepare = False
                if self._connect() and self._serve():
                    backoff.reset()
                    # Not after our own reconnect to fetch deferred messages: nothing changed
                    # but what the broker redelivers to us, which our window already covers.
                    prepare = not self._leaving
            except Exception:  # a paho or socket surprise: drop this connection, not the thread
                log.exception("mqtt loop failed; reconnecting")
                self._drop_connection()
            self._hand_over()  # deliveries of a pass cut short are handed on all the same
            if self._stop.is_set():
                break
            delay = backoff.next()
            log.info("mqtt reconnecting in %.2f s", delay)
            self._stop.wait(delay)

    def _connect(self) -> bool:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._cfg.session_expiry_s
        props.ReceiveMaximum = self._cfg.receive_maximum
        # The broker drops (never sends) larger packets: no message outgrows this in memory.
        props.MaximumPacketSize = self._cfg.max_packet_size
        self._connack_at = None
        try:
            self._client.connect(self._cfg.host, self._cfg.port, keepalive=self._cfg.keepalive_s,
                                 clean_start=False, properties=props)
        except (OSError, ValueError) as exc:
            log.warning("mqtt connect failed: %s", exc,
                        extra={"host": self._cfg.host, "port": self._cfg.port})
            return False
        return True

    def _serve(self) -> bool:
        """Run the loop until the connection ends. True if it had been accepted (CONNACK)."""
        from paho.mqtt.client import MQTTErrorCode

        started = time.monotonic()
        self._leaving = False
        self._full_since = None
        self._deferred = 0
        while not self._stop.is_set():
            room = self._room()
            if self._hold_back(room):
                rc = self._idle_without_reading()
            else:
                rc = self._client.loop(timeout=_LOOP_TIMEOUT_S)  # reads at most one packet
                # Under load, parse more of what was read, never beyond the room we have. One
                # packet per loop_read call: paho 2.2 ignores its max_packets argument.
                ok = MQTTErrorCode.MQTT_ERR_SUCCESS
                burst = min(_READ_BURST, room - 1)
                while burst > 0 and rc == ok and self._client.buffered():
                    rc = self._client.loop_read()
                    burst -= 1
            self._hand_over()
            self._send_acks()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                log.warning("mqtt connection lost (%s)", rc.name if hasattr(rc, "name") else rc)
                break
            waited = time.monotonic() - started
            if self._connack_at is None and waited > self._cfg.connect_timeout_s:
                log.warning("mqtt: no CONNACK within %.1f s", self._cfg.connect_timeout_s)
                break
            if self._deferred and self._room() >= max(1, self._limit // 2):
                # Deferred messages come back only as redeliveries on a new connection.
                log.info("reconnecting to receive %d deferred message(s)", self._deferred)
                self._leaving = True
                self._disconnect_cleanly()
                break
        else:
            self._disconnect_cleanly()
        self._lost()
        return self._connack_at is not None

    def _room(self) -> int:
        """Messages the intake can still take, less those read in this pass."""
        assert self._intake is not None
        return self._intake.room() - len(self._batch)

    def _hand_over(self) -> None:
        """Give this pass's deliveries to the intake (after each pass of the loop)."""
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        assert self._intake is not None
        try:
            self._intake.deliver(batch)
        except Exception:  # a bug downstream must not kill the loop; the messages stay unacked
            log.exception("delivery handler failed", extra={"messages": len(batch)})

    def _hold_back(self, room: int) -> bool:
        """Whether to leave incoming PUBLISHes in the socket this pass.

        When full, stop reading (TCP backpressure). Past half a keepalive, keep reading so
        PINGRESPs get through (else paho drops the connection), deferring PUBLISHes instead."""
        full = room <= 0 and self._connack_at is not None
        if not full:
            self._full_since = None
            self._set_paused(False)
            return False
        now = time.monotonic()
        if self._full_since is None:
            self._full_since = now
        hold = now - self._full_since < self._cfg.keepalive_s / 2
        self._set_paused(True)
        return hold

    def _idle_without_reading(self) -> Any:
        """Full: leave PUBLISHes in the socket (TCP backpressure) but keep sending acks and
        keepalives. A pause longer than about two keepalives ends in paho closing the
        connection; the broker then redelivers what we had not acknowledged."""
        from paho.mqtt.client import MQTTErrorCode

        self._send_acks()
        rc = self._client.loop_write() if self._client.want_write() else \
            MQTTErrorCode.MQTT_ERR_SUCCESS
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            rc = self._client.loop_misc()
        self._stop.wait(_LOOP_TIMEOUT_S)
        return rc

    def _set_paused(self, paused: bool) -> None:
        if paused != self._paused:
            self._paused = paused
            log.log(logging.INFO if paused else logging.DEBUG,
                    "intake paused: in-flight limit reached" if paused else "intake resumed")

    def _send_acks(self) -> None:
        mids: list[int] = []  # QoS 1 acks, sent as one write
        while self._acks:
            generation, mid, qos = self._acks.popleft()
            # Not "subscribed": after a resumed session the broker redelivers before our SUBACK.
            if generation != self._generation or self._connack_at is None:
                self.counts.stale_acks += 1
            elif qos == 1:
                mids.append(mid)
            else:
                self._client.ack(mid, qos)
        if mids:
            self._client.ack_many(mids)
        while self._outgoing:
            topic, payload = self._outgoing.popleft()
            if self._connack_at is not None:
                self._client.publish(topic, payload, qos=1)

    def _disconnect_cleanly(self) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self._send_acks()
        self._sync_with_broker()
        props = None
        if self._end_session and self._stop.is_set():
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0  # the broker deletes the session now
            log.info("ending the MQTT session", extra={"client_id": self.client_id})
        try:
            self._client.disconnect(properties=props)
            # Let the DISCONNECT (and the last PUBACKs queued before it) reach the socket.
            deadline = time.monotonic() + 2.0
            while self._client.want_write() and time.monotonic() < deadline:
                self._client.loop_write()
        except Exception:
            log.debug("mqtt disconnect", exc_info=True)

    def _sync_with_broker(self, timeout: float = 5.0) -> None:
        """Make sure the broker has processed every PUBACK sent so far: one round trip
        (UNSUBSCRIBE of a filter we never subscribed, answered by UNSUBACK in order).

        Needed before DISCONNECT: paho closes the socket right after writing it, and with
        PUBLISHes still arriving the close becomes a TCP reset, which makes the broker drop
        our unread PUBACKs (measured: 49 of 50 acks lost) and redeliver those messages."""
        from paho.mqtt.client import MQTTErrorCode

        if self._connack_at is None:
            return
        rc, mid = self._client.unsubscribe(_SYNC_FILTER)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return
        self._sync_mid = mid
        deadline = time.monotonic() + timeout
        while self._sync_mid is not None and time.monotonic() < deadline:
            rc = self._client.loop(timeout=_LOOP_TIMEOUT_S)
            self._hand_over()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            self._send_acks()
        if self._sync_mid is not None:
            log.warning("mqtt: no UNSUBACK before disconnect; recent acks may be redelivered")

    def _on_unsubscribe(self, _client: object, _userdata: object, mid: int, _reasons: object,
                        _props: object) -> None:
        if mid == self._sync_mid:
            self._sync_mid = None
        elif mid == self._retire_mid:
            log.info("mqtt: left the share group, draining this session",
                     extra={"subscription": self.subscription})
            self._subscribed.set()
            self.counts.connects += 1

    def _drop_connection(self) -> None:
        try:
            self._client.disconnect()
        except Exception:
            log.debug("mqtt disconnect after a failure", exc_info=True)
        self._lost()

    def _lost(self) -> None:
        self._subscribed.clear()

    # -- paho callbacks (run on this thread, inside loop()) -------------------------------------

    def _make_client(self) -> Any:
        import paho.mqtt.client as mqtt

        from .mqtt_wire import Client

        client = Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                        client_id=self.client_id, protocol=mqtt.MQTTv5, manual_ack=True,
                        reconnect_on_failure=False)
        client.connect_timeout = self._cfg.connect_timeout_s
        if self._cfg.username:
            client.username_pw_set(self._cfg.username, self._cfg.password or None)
        tls = self._cfg.tls
        if tls.enabled:
            client.tls_set(ca_certs=tls.ca_file or None, certfile=tls.cert_file or None,
                           keyfile=tls.key_file or None)
            client.tls_insecure_set(tls.insecure)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish_lean = self._on_publish_lean
        client.on_disconnect = self._on_disconnect
        client.on_unsubscribe = self._on_unsubscribe
        return client

    def _on_connect(self, client: Any, _userdata: object, flags: Any, reason: Any,
                    _props: object) -> None:
        if getattr(reason, "is_failure", False):
            log.error("mqtt connection refused: %s", reason)
            return
        self._connack_at = self._last_delivery = time.monotonic()
        self._generation += 1
        log.info("mqtt connected", extra={"session_present": flags.session_present,
                                           "client_id": self.client_id})
        # Subscribing again on a resumed session covers a broker that lost it. Retain handling 1:
        # Mosquitto 2.0.11 sends stored retained messages (the drones' last status) even to a
        # shared subscription; only when the subscription is new, so a reconnect does not replay
        # every drone's retained status.
        from paho.mqtt.subscribeoptions import SubscribeOptions

        if self._retire:
            # Leave the share group: the broker stops dealing us new messages but still
            # delivers what it queued for this session (verified with Mosquitto 2.0.11).
            self._retire_mid = client.unsubscribe(self.subscription)[1]
            return
        client.subscribe(self.subscription, options=SubscribeOptions(qos=1, retainHandling=1))

    def _on_subscribe(self, _client: object, _userdata: object, _mid: int, reasons: list[object],
                      _props: object) -> None:
        failed = [r for r in reasons if getattr(r, "is_failure", False)]
        if failed:
            log.error("mqtt subscription refused: %s", failed[0],
                      extra={"subscription": self.subscription})
            return
        log.info("mqtt subscribed", extra={"subscription": self.subscription})
        self._subscribed.set()
        self.counts.connects += 1

    def _on_disconnect(self, _client: object, _userdata: object, _flags: object, reason: object,
                       _props: object) -> None:
        if self._stop.is_set() or self._leaving:
            log.info("mqtt disconnected: %s", reason)
        elif self._subscribed.is_set():
            log.warning("mqtt disconnected: %s", reason)
        self._lost()

    def _on_message(self, _client: object, _userdata: object, message: Any) -> None:
        """What paho decodes itself (QoS 0/2, PUBLISHes with properties)."""
        try:
            topic: str | bytes = message.topic
        except UnicodeDecodeError:
            topic = bytes(message._topic)  # paho keeps the raw bytes only privately
        self._take(topic, bytes(message.payload), message.qos, bool(message.retain),
                   bool(message.dup), message.mid)

    def _on_publish_lean(self, raw_topic: bytes, payload: bytes, mid: int, dup: bool,
                         retain: bool) -> None:
        """A QoS 1 PUBLISH from mqtt_wire's lean decode (most of them)."""
        try:
            topic: str | bytes = raw_topic.decode("utf-8")
        except UnicodeDecodeError:
            topic = raw_topic
        self._take(topic, payload, 1, retain, dup, mid)

    def _take(self, topic: str | bytes, payload: bytes, qos: int, retain: bool, dup: bool,
              mid: int) -> None:
        if qos > 0 and self._room() <= 0:
            # Read only to keep the connection alive while full (see _hold_back): not taken,
            # not acknowledged; the broker redelivers it after the reconnect in _serve.
            self._deferred += 1
            self.counts.deferred += 1
            return
        self._last_delivery = time.monotonic()
        self._batch.append(Delivery(topic, payload, qos, retain, dup, mid, self._generation))
