"""The shipped broker policy (deploy/mosquitto/) holds on a real Mosquitto 2.0.

Since the payload no longer carries the drone id, the broker's ACL is what stops one drone from
publishing as another, and the drone listener's `use_username_as_clientid` what stops one from
knocking another offline by taking its client id; the gateways, which share a username, keep
their own client ids on a listener of their own. These tests run the shipped files, not copies:

- `deploy/mosquitto/presacop.conf` is the only drop-in of a copy of Debian's main mosquitto.conf
  (as `apt-get install mosquitto` leaves it). Rewritten in it, and nothing else: the password files
  and the certificates point into tmp_path, the ACL path points at `deploy/mosquitto/presacop.acl`
  in this repository, and the drone listener 8883 and the gateway listener 8884 become free ports
  on 127.0.0.1. TLS stays on, with a throwaway CA made by openssl. In Debian's main config the pid
  file, persistence location, log file and include_dir point into tmp_path, and
  `user <current user>` is added so that a run as root does not switch to user mosquitto, which
  cannot read tmp_path.
- The password files are made with `mosquitto_passwd`: drone-a and drone-b in the drones' file,
  presacop-gateway in the gateways' file.

"Never delivered" is shown without sleeping: the test waits for a later message that the broker
must deliver after the forbidden one, had it routed that one at all (a marker from another
client, the drone's own PUBACK, or `sync_point` for last wills).
"""

from __future__ import annotations

import getpass
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from presacop.stack import Mosquitto, free_ports
from tests.support import wait_until

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto"
SHIPPED_CONF = DEPLOY / "presacop.conf"
SHIPPED_ACL = DEPLOY / "presacop.acl"
SHIPPED_GATEWAY_ACL = DEPLOY / "presacop-gateway.acl"

DRONES = {"drone-a": "pw-a", "drone-b": "pw-b"}
GATEWAYS = {"presacop-gateway": "pw-gateway"}
PASSWORDS = DRONES | GATEWAYS
SHARED = "$share/g/presacop/v1/drones/+/+"  # what the gateway subscribes (gateway/mqtt_source.py)
KINDS = ("telemetry", "violation", "status")
TIMEOUT = 15.0

# MQTT 5 reason codes
SUCCESS = 0x00
GRANTED_QOS_1 = 0x01
NO_MATCHING_SUBSCRIBERS = 0x10
NOT_AUTHORIZED = 0x87

# /etc/mosquitto/mosquitto.conf of Debian 12's mosquitto 2.0.11 package.
DEBIAN_MAIN_CONF = """\
# Place your local configuration in /etc/mosquitto/conf.d/
#
# A full description of the configuration file is at
# /usr/share/doc/mosquitto/examples/mosquitto.conf.example

pid_file /run/mosquitto/mosquitto.pid

persistence true
persistence_location /var/lib/mosquitto/

log_dest file /var/log/mosquitto/mosquitto.log

include_dir /etc/mosquitto/conf.d
"""


def topic(drone: str, kind: str) -> str:
    return f"presacop/v1/drones/{drone}/{kind}"


def rewrite(text: str, key: str, shipped: str, ours: str, times: int = 1) -> str:
    """Replace the value of the config lines `key <shipped>` with `ours`; fail unless that exact
    line is there `times` times (so a changed production value shows up here)."""
    pattern = re.compile(rf"^{re.escape(key)} {re.escape(shipped)}$", re.MULTILINE)
    new, count = pattern.subn(f"{key} {ours}", text)
    assert count == times, f"expected {times} lines {key!r} {shipped!r}, found {count}"
    return new


# -- the broker ----------------------------------------------------------------------------------


class ShippedMosquitto(Mosquitto):
    """Debian's main mosquitto.conf plus the shipped drop-in, paths and ports rewritten.

    `port` is the drone listener (8883), `gateway_port` the gateway listener (8884). The readiness
    probe is a TLS login as presacop-gateway: the shipped policy allows no anonymous client, so
    presacop.stack's anonymous round trip cannot pass here."""

    def __init__(self, state_dir: Path, port: int, gateway_port: int, certs: Path,
                 passwd_dir: Path) -> None:
        super().__init__(state_dir, port)
        self.gateway_port = gateway_port
        self.certs = certs
        self.passwd_dir = passwd_dir
        self.ca = certs / "ca.pem"
        self.drop_in = self.state_dir / "conf.d" / "presacop.conf"
        self.db_path = self.state_dir / "mosquitto.db"
        # (shipped text, replacement) pairs a test applies on top, e.g. the documented mutual-TLS
        # lines; each shipped text must occur exactly once.
        self.extra_rewrites: list[tuple[str, str]] = []

    def listen_ports(self) -> list[int]:
        return [self.port, self.gateway_port]

    def config_text(self) -> str:
        text = DEBIAN_MAIN_CONF
        text = rewrite(text, "pid_file", "/run/mosquitto/mosquitto.pid",
                       str(self.state_dir / "broker.pid"))
        text = rewrite(text, "persistence_location", "/var/lib/mosquitto/", f"{self.state_dir}/")
        text = rewrite(text, "log_dest", "file /var/log/mosquitto/mosquitto.log",
                       f"file {self.log_path}")
        text = rewrite(text, "include_dir", "/etc/mosquitto/conf.d", str(self.drop_in.parent))
        return f"user {getpass.getuser()}\n{text}"

    def drop_in_text(self) -> str:
        text = SHIPPED_CONF.read_text()
        for name in ("presacop-drones.passwd", "presacop-gateways.passwd"):
            text = rewrite(text, "password_file", f"/etc/mosquitto/{name}",
                           str(self.passwd_dir / name))
        text = rewrite(text, "acl_file", "/etc/mosquitto/presacop.acl", str(SHIPPED_ACL))
        text = rewrite(text, "acl_file", "/etc/mosquitto/presacop-gateway.acl",
                       str(SHIPPED_GATEWAY_ACL))
        text = rewrite(text, "listener", "8883", f"{self.port} 127.0.0.1")
        text = rewrite(text, "listener", "8884 127.0.0.1", f"{self.gateway_port} 127.0.0.1")
        for old, new in self.extra_rewrites:
            assert text.count(old) == 1, f"expected one {old!r} in the drop-in"
            text = text.replace(old, new)
        for key, name in (("cafile", "ca.pem"), ("certfile", "server.pem"),
                          ("keyfile", "server.key")):
            text = rewrite(text, key, f"/etc/mosquitto/certs/{name}", str(self.certs / name),
                           times=2)
        return text

    def _prepare(self) -> None:
        super()._prepare()
        self.drop_in.parent.mkdir(exist_ok=True)
        self.drop_in.write_text(self.drop_in_text())

    def health_check(self, timeout: float = 10.0) -> None:
        peer = Peer(self, self.gateway_port, "presacop-gateway", "readiness-probe",
                    timeout=timeout)
        try:
            assert peer.connack().value == SUCCESS, f"login refused: {peer.connack()}"
        finally:
            peer.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def sync_disconnect(self, client_id: str) -> None:
        """Wait until the broker has handled `client_id`'s DISCONNECT."""
        line = f"Client {client_id} disconnected."
        wait_until(lambda: line in self.log(), TIMEOUT, f"the broker to log {line!r}")

    def sync_point(self, client_id: str, times: int = 1) -> None:
        """Wait until the broker has handled the loss of `client_id`'s `times`-th connection.

        Mosquitto is single-threaded and logs "Client <id> closed its connection." in the same call
        that then sends (or, refused by the ACL, drops) the client's last will. So once the line is
        in the log, a message published afterwards reaches a subscriber after that will would."""
        line = f"Client {client_id} closed its connection."
        wait_until(lambda: self.log().count(line) >= times, TIMEOUT,
                   f"the broker to log {line!r} {times} times")


# -- an MQTT 5 client whose broker answers the test can wait on -----------------------------------


class Peer:
    """A paho MQTT 5 client over TLS, recording CONNACK, PUBACKs, SUBACKs and messages."""

    def __init__(self, broker: ShippedMosquitto, port: int, username: str | None,
                 client_id: str, *,
                 password: str | None = None, will: tuple[str, bytes] | None = None,
                 clean_start: bool = True, session_expiry: int = 0,
                 timeout: float = TIMEOUT, cert: tuple[Path, Path] | None = None) -> None:
        self.client_id = client_id
        self.connack_properties: Any = None
        self.disconnect_reason: ReasonCode | None = None
        self.timeout = timeout
        self._cond = threading.Condition()
        self._connack: ReasonCode | None = None
        self.session_present = False
        self.pubacks: dict[int, ReasonCode] = {}
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.messages: list[tuple[str, bytes]] = []
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        client.tls_set(ca_certs=str(broker.ca), certfile=str(cert[0]) if cert else None,
                       keyfile=str(cert[1]) if cert else None)
        if username is not None:
            client.username_pw_set(username, PASSWORDS[username] if password is None else password)
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=True)  # as the agent sets its will
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry
        self._client = client
        try:
            client.connect(broker.host, port, keepalive=30, clean_start=clean_start,
                           properties=props)
        except BaseException:
            self._close_socket()
            raise
        client.loop_start()

    # paho callbacks, on paho's thread
    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        with self._cond:
            self._connack = reason
            self.connack_properties = props
            self.session_present = bool(flags.session_present)
            self._cond.notify_all()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        with self._cond:
            self.pubacks[mid] = reason
            self._cond.notify_all()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, reasons: list[ReasonCode],
                      _p: Any) -> None:
        with self._cond:
            self.subacks[mid] = reasons
            self._cond.notify_all()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        with self._cond:
            self.disconnect_reason = reason
            self._cond.notify_all()

    def wait_disconnected(self) -> ReasonCode:
        """The reason of the connection's end (the broker's DISCONNECT, or a lost socket)."""
        self._wait(lambda: self.disconnect_reason is not None, "disconnect")
        assert self.disconnect_reason is not None
        return self.disconnect_reason

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((msg.topic, msg.payload))
            self._cond.notify_all()

    def _wait(self, predicate: Callable[[], bool], what: str) -> None:
        with self._cond:
            if not self._cond.wait_for(predicate, self.timeout):
                raise AssertionError(f"{self.client_id}: no {what} within {self.timeout} s")

    # what tests call
    def connack(self) -> ReasonCode:
        self._wait(lambda: self._connack is not None, "CONNACK")
        assert self._connack is not None
        return self._connack

    def publish(self, name: str, payload: bytes, retain: bool = False) -> ReasonCode:
        """Publish at QoS 1 and return the PUBACK's reason code."""
        info = self.publish_nowait(name, payload, retain)
        self._wait(lambda: info.mid in self.pubacks, f"PUBACK for {name}")
        return self.pubacks[info.mid]

    def publish_nowait(self, name: str, payload: bytes, retain: bool = False) -> Any:
        """Send a QoS 1 PUBLISH without waiting for its PUBACK; paho's MQTTMessageInfo."""
        info = self._client.publish(name, payload, qos=1, retain=retain)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"publish not sent: {info.rc}"
        return info

    def subscribe(self, name: str) -> list[ReasonCode]:
        """Subscribe at QoS 1 and return the SUBACK's reason codes."""
        rc, mid = self._client.subscribe(name, options=SubscribeOptions(qos=1))
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"subscribe not sent: {rc}"
        self._wait(lambda: mid in self.subacks, f"SUBACK for {name}")
        return self.subacks[mid]

    def wait_for(self, payload: bytes) -> None:
        self._wait(lambda: any(p == payload for _, p in self.messages), f"message {payload!r}")

    def wait_for_count(self, count: int) -> None:
        self._wait(lambda: len(self.messages) >= count, f"{count} messages")

    def payloads(self) -> list[bytes]:
        with self._cond:
            return [p for _, p in self.messages]

    def connected(self) -> bool:
        return self._client.is_connected()

    def crash(self) -> None:
        """Drop the connection without DISCONNECT, as a lost link does: the will is sent."""
        self._client.loop_stop()
        self._close_socket()

    def close(self) -> None:
        if self._client.is_connected():
            self._client.disconnect()
        self._client.loop_stop()
        self._close_socket()

    def _close_socket(self) -> None:
        # With the loop stopped paho leaves the socket open; close it ourselves.
        sock = self._client.socket()
        if sock is not None:
            sock.close()


# -- fixtures ------------------------------------------------------------------------------------


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def broker(tmp_path: Path, certs: Path) -> Iterator[ShippedMosquitto]:
    """A started private Mosquitto running the shipped config and ACL; stopped at teardown."""
    for name, users in (("presacop-drones.passwd", DRONES),
                        ("presacop-gateways.passwd", GATEWAYS)):
        for i, (user, password) in enumerate(users.items()):
            run("mosquitto_passwd", *(["-c"] if i == 0 else []), "-b", str(tmp_path / name),
                user, password)
    drone_port, gateway_port = free_ports(2)
    running = ShippedMosquitto(tmp_path / "mosquitto", drone_port, gateway_port, certs, tmp_path)
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture
def connect(broker: ShippedMosquitto) -> Iterator[Callable[..., Peer]]:
    """connect(username, client_id=username, port=..., **Peer kwargs) -> a Peer, closed at
    teardown. The port defaults to the listener of the user's kind: the gateway listener for
    presacop-gateway, the drone listener for everyone else."""
    peers: list[Peer] = []

    def factory(username: str | None, client_id: str | None = None, *, port: int | None = None,
                **kwargs: Any) -> Peer:
        if port is None:
            port = broker.gateway_port if username in GATEWAYS else broker.port
        peer = Peer(broker, port, username, client_id or username or "anonymous", **kwargs)
        peers.append(peer)
        return peer

    try:
        yield factory
    finally:
        for peer in peers:
            peer.close()


def gateway(connect: Callable[..., Peer], client_id: str = "gateway-1", **kwargs: Any) -> Peer:
    """A gateway-user client in the share group, as gateway/mqtt_source.py subscribes."""
    peer = connect("presacop-gateway", client_id, **kwargs)
    assert peer.connack().value == SUCCESS
    assert [r.value for r in peer.subscribe(SHARED)] == [GRANTED_QOS_1]
    return peer


# -- the config ----------------------------------------------------------------------------------


def test_shipped_config_runs_under_debians_main_config(broker: ShippedMosquitto) -> None:
    # The fixture's broker passed a TLS login as presacop-gateway on the rewritten 8884 listener.
    assert broker.running()
    log = broker.log()
    # presacop.stack's readiness check first opens and closes a bare TCP connection to each port,
    # which Mosquitto may log as "OpenSSL Error[0]: ... unexpected eof while reading".
    errors = [line for line in log.splitlines()
              if "Error" in line and "unexpected eof while reading" not in line]
    assert errors == [], log
    # Two listeners, both TLS (the drop-in rewrites exactly these two): no plain port slipped in.
    ports = set(re.findall(r"Opening ipv[46] listen socket on port (\d+)\.", log))
    assert ports == {str(broker.port), str(broker.gateway_port)}, log
    # autosave_interval 5: a snapshot appears while the broker runs (Debian's default is 1800 s),
    # in Debian's persistence_location, which the drop-in does not repeat.
    wait_until(broker.db_path.exists, 20, "the broker's persistence snapshot")


def test_queue_limits_keep_more_than_mosquittos_default_1000_for_an_absent_gateway(
        broker: ShippedMosquitto, connect: Callable[..., Peer]) -> None:
    count = 2500  # more than the default max_queued_messages 1000 plus the inflight window
    gw = gateway(connect, "gateway-q", clean_start=False, session_expiry=300)
    gw.close()
    broker.sync_disconnect("gateway-q")
    drone = connect("drone-a")
    assert drone.connack().value == SUCCESS
    for i in range(count):
        assert drone.publish(topic("drone-a", "telemetry"), b"%d" % i).value == SUCCESS
    back = connect("presacop-gateway", "gateway-q", clean_start=False, session_expiry=300)
    assert back.connack().value == SUCCESS and back.session_present
    back.wait_for(b"%d" % (count - 1))
    assert sorted(back.payloads(), key=int) == [b"%d" % i for i in range(count)]


# -- the ACL -------------------------------------------------------------------------------------


def test_anonymous_and_wrong_password_are_refused(connect: Callable[..., Peer]) -> None:
    assert connect(None, "anonymous").connack().value == NOT_AUTHORIZED
    # Mosquitto 2.0.11 answers a wrong password with 0x87 too, not 0x86 "Bad user name or password".
    wrong = connect("drone-a", "drone-a", password="not-pw-a")
    assert wrong.connack().value == NOT_AUTHORIZED


def test_a_drones_own_topics_reach_the_gateway_share_group(connect: Callable[..., Peer]) -> None:
    gw = gateway(connect)
    drone = connect("drone-a")
    assert drone.connack().value == SUCCESS
    for kind in KINDS:
        # status is retained, as the agent publishes it
        rc = drone.publish(topic("drone-a", kind), kind.encode(), retain=kind == "status")
        assert rc.value == SUCCESS, (kind, rc)
    gw.wait_for_count(len(KINDS))
    assert gw.messages == [(topic("drone-a", kind), kind.encode()) for kind in KINDS]


def test_a_drone_cannot_publish_as_another_drone_or_off_its_topics(
        connect: Callable[..., Peer]) -> None:
    gw = gateway(connect)
    forbidden = [topic("drone-b", kind) for kind in KINDS] + [
        topic("drone-a", "other"),            # not a kind
        topic("drone-a", "telemetry") + "/x",  # below a kind
        "presacop/v1/drones/drone-a",         # above
        "presacop/_health/x",                 # the local stack's probe: not in production
    ]
    for name in forbidden:
        # One connection per attempt: over TLS, Mosquitto 2.0.11 drops the connection right after
        # the refusing PUBACK (eclipse-mosquitto/mosquitto#2579; a plain listener keeps it).
        drone_a = connect("drone-a")
        assert drone_a.connack().value == SUCCESS
        rc = drone_a.publish(name, b"spoof:" + name.encode(), retain=name.endswith("status"))
        assert rc.value == NOT_AUTHORIZED, (name, rc)
    # Each refusal came after the broker decided on that message; drone-b's marker, published
    # now, is queued to the gateway after anything routed before it.
    drone_b = connect("drone-b")
    assert drone_b.publish(topic("drone-b", "telemetry"), b"marker").value == SUCCESS
    gw.wait_for(b"marker")
    assert gw.messages == [(topic("drone-b", "telemetry"), b"marker")]


def test_a_drone_cannot_read_other_drones(connect: Callable[..., Peer]) -> None:
    gw = gateway(connect)
    drone_a, drone_b = connect("drone-a"), connect("drone-b")
    assert drone_a.connack().value == SUCCESS and drone_b.connack().value == SUCCESS
    # Mosquitto 2.0.11 does not check SUBSCRIBE against the ACL file: the SUBACK grants it ...
    for name in ("presacop/v1/drones/#", "$share/x/presacop/v1/drones/+/+"):
        assert [r.value for r in drone_a.subscribe(name)] == [GRANTED_QOS_1], name
    assert drone_b.publish(topic("drone-b", "violation"), b"b-secret").value == SUCCESS
    # ... but checks read access per message. drone-a's own publish is the sync point: the broker
    # routes a message before it sends its PUBACK, down the same connection, so whatever it had
    # routed to drone-a (drone-b's message, or this one) would arrive before this PUBACK.
    assert drone_a.publish(topic("drone-a", "telemetry"), b"a-own").value == SUCCESS
    assert drone_a.messages == []
    gw.wait_for(b"a-own")  # both messages did go through the broker
    assert sorted(gw.payloads()) == [b"a-own", b"b-secret"]


def test_a_last_will_counts_only_on_the_drones_own_status_topic(
        broker: ShippedMosquitto, connect: Callable[..., Peer]) -> None:
    gw = gateway(connect)
    own = connect("drone-a", will=(topic("drone-a", "status"), b"own-will"))
    assert own.connack().value == SUCCESS
    own.crash()
    gw.wait_for(b"own-will")  # the will fires when the link drops
    spoof = connect("drone-a", will=(topic("drone-b", "status"), b"spoof-will"))
    # Mosquitto accepts a will it would refuse and checks the ACL only when sending it.
    assert spoof.connack().value == SUCCESS
    spoof.crash()
    broker.sync_point("drone-a", times=2)  # own's connection, then spoof's
    marker = connect("drone-b")
    assert marker.publish(topic("drone-b", "telemetry"), b"marker").value == SUCCESS
    gw.wait_for(b"marker")
    assert gw.payloads() == [b"own-will", b"marker"]


# -- the listeners: who chooses the client id ----------------------------------------------------


def test_each_listener_takes_only_its_own_logins(
        broker: ShippedMosquitto, connect: Callable[..., Peer]) -> None:
    # A drone password on the gateway listener, where the client picks its own client id, would
    # undo use_username_as_clientid; the gateway's on the drone listener would give every gateway
    # the client id presacop-gateway, so each would knock the others off.
    assert connect("drone-a", port=broker.gateway_port).connack().value == NOT_AUTHORIZED
    assert connect("presacop-gateway", port=broker.port).connack().value == NOT_AUTHORIZED
    assert connect(None, port=broker.gateway_port).connack().value == NOT_AUTHORIZED


def test_a_drone_cannot_knock_another_drone_off_or_take_its_session(
        broker: ShippedMosquitto, connect: Callable[..., Peer]) -> None:
    gw = gateway(connect)
    drone_b = connect("drone-b", clean_start=False, session_expiry=300)
    assert drone_b.connack().value == SUCCESS
    impostor = connect("drone-a", "drone-b", clean_start=False, session_expiry=300)
    assert impostor.connack().value == SUCCESS
    # Mosquitto closes the older connection with a client id while it handles the CONNECT, before
    # its CONNACK: had the impostor been drone-b, drone-b would be gone by now.
    assert drone_b.publish(topic("drone-b", "telemetry"), b"b-still-here").value == SUCCESS
    assert drone_b.connected()
    gw.wait_for(b"b-still-here")
    assert "already connected, closing old connection" not in broker.log()
    # The impostor's persistent session is drone-a's: a later drone-a login finds it.
    impostor.close()
    broker.sync_disconnect("drone-a")
    again = connect("drone-a", clean_start=False, session_expiry=300)
    assert again.connack().value == SUCCESS and again.session_present


def test_gateways_share_the_subscription_each_under_its_own_client_id(
        broker: ShippedMosquitto, connect: Callable[..., Peer]) -> None:
    count = 20
    gateways = [gateway(connect, f"presacop-gateway-{n}", clean_start=False, session_expiry=300)
                for n in (1, 2)]
    drone = connect("drone-a")
    for i in range(count):
        assert drone.publish(topic("drone-a", "telemetry"), b"%d" % i).value == SUCCESS
    wait_until(lambda: sum(len(gw.payloads()) for gw in gateways) >= count, TIMEOUT,
               f"{count} messages across the two gateways")
    shares = [gw.payloads() for gw in gateways]
    assert all(shares), shares  # both take part ...
    assert sorted(shares[0] + shares[1], key=int) == [b"%d" % i for i in range(count)]  # ... once
    assert all(gw.connected() for gw in gateways)
    assert "already connected, closing old connection" not in broker.log()


def test_the_gateway_login_only_reads(connect: Callable[..., Peer]) -> None:
    # With per_listener_settings true the gateway listener needs its own acl_file line: without
    # it, this login could publish as any drone (Mosquitto 2.0.11 then accepts with 0x10).
    gw = connect("presacop-gateway", "gateway-w")
    assert gw.connack().value == SUCCESS
    assert gw.publish(topic("drone-a", "telemetry"), b"forged").value == NOT_AUTHORIZED


def test_evidence_goes_up_and_each_receipt_reaches_only_its_drone(
        connect: Callable[..., Peer]) -> None:
    gw = gateway(connect)
    drone_a, drone_b = connect("drone-a"), connect("drone-b")
    assert drone_a.connack().value == SUCCESS and drone_b.connack().value == SUCCESS
    assert drone_a.publish(topic("drone-a", "evidence"), b"chunk-a").value == SUCCESS
    gw.wait_for(b"chunk-a")  # the share group's +/+ covers the evidence topic
    for drone in (drone_a, drone_b):  # both ask for every receipt; the ACL filters per drone
        assert [r.value for r in drone.subscribe("presacop/v1/drones/+/evidence/receipt")] == \
            [GRANTED_QOS_1]
    sender = connect("presacop-gateway", "gateway-receipts")
    assert sender.connack().value == SUCCESS
    for name, payload in (("drone-a", b"for-a"), ("drone-b", b"for-b"), ("drone-a", b"end-a")):
        assert sender.publish(topic(name, "evidence/receipt"), payload).value == SUCCESS
    drone_b.wait_for(b"for-b")
    drone_a.wait_for(b"end-a")  # routed after for-b: had drone-a been sent for-b, it came first
    assert drone_a.payloads() == [b"for-a", b"end-a"]
    assert drone_b.payloads() == [b"for-b"]
    # Last: over TLS the broker drops a connection after refusing a publish (mosquitto#2579).
    assert drone_a.publish(topic("drone-b", "evidence"), b"spoof").value == NOT_AUTHORIZED


def test_a_drone_added_with_mosquitto_passwd_logs_in_after_a_reload(
        broker: ShippedMosquitto, connect: Callable[..., Peer]) -> None:
    # The procedure in presacop.conf's header, with per-listener password files.
    assert connect("drone-c", password="pw-c").connack().value == NOT_AUTHORIZED
    run("mosquitto_passwd", "-b", str(broker.passwd_dir / "presacop-drones.passwd"),
        "drone-c", "pw-c")
    assert broker.pid is not None
    os.kill(broker.pid, signal.SIGHUP)  # systemctl reload mosquitto
    # Mosquitto logs this and rereads the files in one pass of its single-threaded loop, before
    # it reads a CONNECT sent after the line appeared.
    wait_until(lambda: "Reloading config." in broker.log(), TIMEOUT,
               "the broker to log 'Reloading config.'")
    drone_c = connect("drone-c", password="pw-c")
    assert drone_c.connack().value == SUCCESS
    # The ACL's pattern lines cover the new drone: accepted (no gateway here to receive it).
    assert drone_c.publish(topic("drone-c", "telemetry"), b"c").value == NO_MATCHING_SUBSCRIBERS
    assert connect("drone-c", password="pw-c", port=broker.gateway_port).connack().value == \
        NOT_AUTHORIZED


# -- a broker restart ----------------------------------------------------------------------------


def test_a_restart_keeps_what_is_queued_for_a_gateway_but_not_its_shared_subscription(
        broker: ShippedMosquitto, connect: Callable[..., Peer]) -> None:
    # Mosquitto 2.0.11 saves a session's plain subscriptions, not its $share ones (its
    # persist__subs_save walks only the plain ones). Until a gateway subscribes again, which it
    # does on every connect, nothing matches a drone's message: PUBACK 0x10 and it is gone.
    gw = gateway(connect, "gateway-r", clean_start=False, session_expiry=300)
    gw.close()
    broker.sync_disconnect("gateway-r")
    drone = connect("drone-a")
    assert drone.publish(topic("drone-a", "telemetry"), b"queued").value == SUCCESS
    broker.stop()
    broker.start()
    drone = connect("drone-a")
    assert drone.publish(topic("drone-a", "telemetry"), b"lost").value == NO_MATCHING_SUBSCRIBERS
    back = connect("presacop-gateway", "gateway-r", clean_start=False, session_expiry=300)
    assert back.connack().value == SUCCESS and back.session_present
    assert [r.value for r in back.subscribe(SHARED)] == [GRANTED_QOS_1]
    assert drone.publish(topic("drone-a", "telemetry"), b"after").value == SUCCESS
    back.wait_for(b"after")
    assert back.payloads() == [b"queued", b"after"]
