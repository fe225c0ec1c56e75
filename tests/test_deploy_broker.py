"""The shipped broker policy (deploy/mosquitto/) holds on a real Mosquitto 2.0.

Since the payload no longer carries the drone id, the broker's ACL is what stops one drone from
publishing as another. These tests run the shipped files, not copies:

- `deploy/mosquitto/presacop.conf` is the only drop-in of a copy of Debian's main mosquitto.conf
  (as `apt-get install mosquitto` leaves it). Rewritten in it, and nothing else: the password file
  and the certificates point into tmp_path, the ACL path points at `deploy/mosquitto/presacop.acl`
  in this repository, and `listener 8883` becomes a free port on 127.0.0.1. TLS stays on, with a
  throwaway CA made by openssl. In Debian's main config the pid file, persistence location, log
  file and include_dir point into tmp_path, and `user <current user>` is added so that a run as
  root does not switch to user mosquitto, which cannot read tmp_path.
- The password file is made with `mosquitto_passwd` for drone-a, drone-b and presacop-gateway.

"Never delivered" is shown without sleeping: the test waits for a later message that the broker
must deliver after the forbidden one, had it routed that one at all (a marker from another
client, the drone's own PUBACK, or `sync_point` for last wills).
"""

from __future__ import annotations

import getpass
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from presacop.stack import Mosquitto, free_port

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto"
SHIPPED_CONF = DEPLOY / "presacop.conf"
SHIPPED_ACL = DEPLOY / "presacop.acl"

PASSWORDS = {"drone-a": "pw-a", "drone-b": "pw-b", "presacop-gateway": "pw-gateway"}
SHARED = "$share/g/presacop/v1/drones/+/+"  # what the gateway subscribes (gateway/mqtt_source.py)
KINDS = ("telemetry", "violation", "status")
TIMEOUT = 15.0

# MQTT 5 reason codes
SUCCESS = 0x00
GRANTED_QOS_1 = 0x01
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


def rewrite(text: str, key: str, shipped: str, ours: str) -> str:
    """Replace the value of the one config line `key <shipped>` with `ours`; fail if that exact
    line is not there once (so a changed production value shows up here)."""
    pattern = re.compile(rf"^{re.escape(key)} {re.escape(shipped)}$", re.MULTILINE)
    new, count = pattern.subn(f"{key} {ours}", text)
    assert count == 1, f"expected one line {key!r} {shipped!r}, found {count}"
    return new


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# -- the broker ----------------------------------------------------------------------------------


class ShippedMosquitto(Mosquitto):
    """Debian's main mosquitto.conf plus the shipped drop-in, paths and port rewritten.

    The readiness probe is a TLS login as presacop-gateway: the shipped policy allows no
    anonymous client, so presacop.stack's anonymous round trip cannot pass here."""

    def __init__(self, state_dir: Path, port: int, certs: Path, passwd: Path) -> None:
        super().__init__(state_dir, port)
        self.certs = certs
        self.passwd = passwd
        self.ca = certs / "ca.pem"
        self.drop_in = self.state_dir / "conf.d" / "presacop.conf"
        self.db_path = self.state_dir / "mosquitto.db"

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
        text = rewrite(text, "password_file", "/etc/mosquitto/presacop.passwd", str(self.passwd))
        text = rewrite(text, "acl_file", "/etc/mosquitto/presacop.acl", str(SHIPPED_ACL))
        text = rewrite(text, "listener", "8883", f"{self.port} 127.0.0.1")
        for key, name in (("cafile", "ca.pem"), ("certfile", "server.pem"),
                          ("keyfile", "server.key")):
            text = rewrite(text, key, f"/etc/mosquitto/certs/{name}", str(self.certs / name))
        return text

    def _prepare(self) -> None:
        super()._prepare()
        self.drop_in.parent.mkdir(exist_ok=True)
        self.drop_in.write_text(self.drop_in_text())

    def health_check(self, timeout: float = 10.0) -> None:
        peer = Peer(self, "presacop-gateway", "readiness-probe", timeout=timeout)
        try:
            assert peer.connack().value == SUCCESS, f"login refused: {peer.connack()}"
        finally:
            peer.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def sync_point(self, client_id: str) -> None:
        """Wait until the broker has handled the loss of `client_id`'s connection.

        Mosquitto is single-threaded and logs "Client <id> closed its connection." in the same call
        that then sends (or, refused by the ACL, drops) the client's last will. So once the line is
        in the log, a message published afterwards reaches a subscriber after that will would."""
        line = f"Client {client_id} closed its connection."
        assert wait_until(lambda: line in self.log()), f"broker never logged {line!r}"


# -- an MQTT 5 client whose broker answers the test can wait on -----------------------------------


class Peer:
    """A paho MQTT 5 client over TLS, recording CONNACK, PUBACKs, SUBACKs and messages."""

    def __init__(self, broker: ShippedMosquitto, username: str | None, client_id: str, *,
                 password: str | None = None, will: tuple[str, bytes] | None = None,
                 clean_start: bool = True, session_expiry: int = 0,
                 timeout: float = TIMEOUT) -> None:
        self.client_id = client_id
        self.timeout = timeout
        self._cond = threading.Condition()
        self._connack: ReasonCode | None = None
        self.session_present = False
        self.pubacks: dict[int, ReasonCode] = {}
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.messages: list[tuple[str, bytes]] = []
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        client.tls_set(ca_certs=str(broker.ca))
        if username is not None:
            client.username_pw_set(username, PASSWORDS[username] if password is None else password)
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=True)  # as the agent sets its will
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry
        self._client = client
        try:
            client.connect(broker.host, broker.port, keepalive=30, clean_start=clean_start,
                           properties=props)
        except BaseException:
            self._close_socket()
            raise
        client.loop_start()

    # paho callbacks, on paho's thread
    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason: ReasonCode, _p: Any) -> None:
        with self._cond:
            self._connack = reason
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
        info = self._client.publish(name, payload, qos=1, retain=retain)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"publish not sent: {info.rc}"
        self._wait(lambda: info.mid in self.pubacks, f"PUBACK for {name}")
        return self.pubacks[info.mid]

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


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA and a server certificate for 127.0.0.1, named as presacop.conf expects."""
    d = tmp_path_factory.mktemp("certs")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("openssl", "req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"),
        "-days", "2", "-subj", "/CN=presacop-test-ca")
    run("openssl", "req", *ec, "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"),
        "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"),
        "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-out", str(d / "server.pem"),
        "-days", "2", "-extfile", str(d / "san.ext"))
    return d


@pytest.fixture
def broker(tmp_path: Path, certs: Path) -> Iterator[ShippedMosquitto]:
    """A started private Mosquitto running the shipped config and ACL; stopped at teardown."""
    passwd = tmp_path / "presacop.passwd"
    for i, (user, password) in enumerate(PASSWORDS.items()):
        run("mosquitto_passwd", *(["-c"] if i == 0 else []), "-b", str(passwd), user, password)
    running = ShippedMosquitto(tmp_path / "mosquitto", free_port(), certs, passwd)
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture
def connect(broker: ShippedMosquitto) -> Iterator[Callable[..., Peer]]:
    """connect(username, client_id=username, **Peer kwargs) -> a Peer, closed at teardown."""
    peers: list[Peer] = []

    def factory(username: str | None, client_id: str | None = None, **kwargs: Any) -> Peer:
        peer = Peer(broker, username, client_id or username or "anonymous", **kwargs)
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
    # The fixture's broker passed a TLS login as presacop-gateway on the rewritten 8883 listener.
    assert broker.running()
    log = broker.log()
    assert "Error" not in log, log
    # One listener, the TLS one: no plain port slipped in with the drop-in.
    ports = set(re.findall(r"Opening ipv[46] listen socket on port (\d+)\.", log))
    assert ports == {str(broker.port)}, log
    # autosave_interval 5: a snapshot appears while the broker runs (Debian's default is 1800 s),
    # in Debian's persistence_location, which the drop-in does not repeat.
    assert wait_until(broker.db_path.exists, timeout=20), "no persistence snapshot within 20 s"


def test_queue_limits_keep_more_than_mosquittos_default_1000_for_an_absent_gateway(
        broker: ShippedMosquitto, connect: Callable[..., Peer]) -> None:
    count = 2500  # more than the default max_queued_messages 1000 plus the inflight window
    gw = gateway(connect, "gateway-q", clean_start=False, session_expiry=300)
    gw.close()
    assert wait_until(lambda: "Client gateway-q disconnected." in broker.log())
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
    for i, name in enumerate(forbidden):
        # One connection per attempt: over TLS, Mosquitto 2.0.11 drops the connection right after
        # the refusing PUBACK (eclipse-mosquitto/mosquitto#2579; a plain listener keeps it).
        drone_a = connect("drone-a", f"drone-a-{i}")
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
    own = connect("drone-a", "drone-a-1", will=(topic("drone-a", "status"), b"own-will"))
    assert own.connack().value == SUCCESS
    own.crash()
    gw.wait_for(b"own-will")  # the will fires when the link drops
    spoof = connect("drone-a", "drone-a-2", will=(topic("drone-b", "status"), b"spoof-will"))
    # Mosquitto accepts a will it would refuse and checks the ACL only when sending it.
    assert spoof.connack().value == SUCCESS
    spoof.crash()
    broker.sync_point("drone-a-2")
    marker = connect("drone-b")
    assert marker.publish(topic("drone-b", "telemetry"), b"marker").value == SUCCESS
    gw.wait_for(b"marker")
    assert gw.payloads() == [b"own-will", b"marker"]
