"""The gateway's cheaper paho paths (gateway.mqtt_wire), without real brokers: a scripted MQTT 5
peer on a loopback socket. (The per-pass handoff to Kafka is tested through the Source interface
in test_gateway_service.py.)
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from gateway.mqtt_wire import BufferedSocket, Client

# -- BufferedSocket ---------------------------------------------------------------------------


def test_buffered_socket_reads_once_and_serves_small_reads_from_memory():
    a, b = socket.socketpair()
    a.setblocking(False)
    s = BufferedSocket(a)
    with pytest.raises(BlockingIOError):  # nothing there: the socket's own would-block
        s.recv(1)
    b.sendall(b"\x30\x03abc\x30\x02de")
    assert s.recv(1) == b"\x30"
    b.sendall(b"more")  # not read yet: the first recv took only what was there
    assert s.pending() == 8
    assert [s.recv(1), s.recv(3), s.recv(1), s.recv(1)] == [b"\x03", b"abc", b"\x30", b"\x02"]
    assert s.recv(5) == b"de"  # a short read, as a socket may give (paho reads the rest later)
    assert s.pending() == 0
    assert s.recv(100) == b"more"
    b.close()
    assert s.recv(1) == b""  # end of stream passes through
    s.close()
    assert a.fileno() == -1


# -- a scripted MQTT 5 peer -------------------------------------------------------------------


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _publish_qos1(topic: str, mid: int, payload: bytes) -> bytes:
    name = topic.encode()
    body = struct.pack("!H", len(name)) + name + struct.pack("!H", mid) + b"\x00" + payload
    return b"\x32" + _remaining_length(len(body)) + body


def _read_packet(conn: socket.socket) -> bytes:
    """One whole MQTT packet (fixed header included)."""
    head = conn.recv(1)
    length, shift, raw = 0, 0, b""
    while True:
        byte = conn.recv(1)
        raw += byte
        length |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            break
    body = b""
    while len(body) < length:
        body += conn.recv(length - len(body))
    return head + raw + body


def test_a_burst_read_in_one_recv_is_delivered_whole_and_acked_in_one_write():
    """All PUBLISHes that arrived in one TCP read are delivered without any further bytes from
    the broker (paho's loop asks `pending()`), and `ack_many` sends exactly paho's PUBACKs."""
    count = 50
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    peer: dict[str, Any] = {}

    def broker() -> None:
        conn, _ = listener.accept()
        with conn:
            peer["connect"] = _read_packet(conn)
            burst = b"\x20\x03\x00\x00\x00" + b"".join(
                _publish_qos1("presacop/v1/drones/d1/telemetry", mid, b"x" * mid)
                for mid in range(1, count + 1))
            conn.sendall(burst)  # CONNACK and every PUBLISH in one write
            conn.settimeout(10)
            got = b""
            while len(got) < 4 * count:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                got += chunk
            peer["acks"] = got

    server = threading.Thread(target=broker, daemon=True)
    server.start()
    received: list[tuple[int, bytes]] = []
    client = Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="t-wire",
                    protocol=mqtt.MQTTv5, manual_ack=True, reconnect_on_failure=False)
    client.on_message = lambda _c, _u, m: received.append((m.mid, bytes(m.payload)))
    client.connect("127.0.0.1", port)
    try:
        deadline = time.monotonic() + 10
        while len(received) < count and time.monotonic() < deadline:
            client.loop(timeout=0.05)
        assert [mid for mid, _ in received] == list(range(1, count + 1))
        assert all(payload == b"x" * mid for mid, payload in received)
        assert client.buffered() == 0
        assert client.lean_publishes == count  # paho's own read path feeds the lean decode
        client.ack_many([mid for mid, _ in received])
        server.join(10)
    finally:
        client.disconnect()
        listener.close()
    assert peer["acks"] == b"".join(struct.pack("!BBH", 0x40, 2, mid)
                                    for mid in range(1, count + 1))


def test_ack_many_queues_the_bytes_paho_acks_would_send(monkeypatch):
    client = Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="t-acks",
                    protocol=mqtt.MQTTv5, manual_ack=True)
    queued: list[bytes] = []
    monkeypatch.setattr(client, "_packet_queue",
                        lambda command, packet, mid, qos, info=None: queued.append(packet))
    mids = [1, 2, 300, 65535]
    for mid in mids:
        client.ack(mid, 1)
    one_by_one, queued[:] = b"".join(queued), []
    client.ack_many(mids)
    assert queued == [one_by_one]


# -- PUBLISH decoding -------------------------------------------------------------------------


def _publish(cmd: int, topic: bytes, mid: int | None, props: bytes, payload: bytes) -> bytes:
    return (struct.pack("!H", len(topic)) + topic + (b"" if mid is None else struct.pack("!H", mid))
            + bytes([len(props)]) + props + payload)


def _decoded(handle: Any, cmd: int, packet: bytes) -> tuple[Any, ...]:
    got: list[mqtt.MQTTMessage] = []
    c = Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    c.on_message = lambda client, userdata, m: got.append(m)
    c._in_packet = {"command": cmd, "packet": bytearray(packet)}  # paho reads into a bytearray
    rc = handle(c)
    (m,) = got
    props = None if m.properties is None else m.properties.json()
    return (rc, m._topic, bytes(m.payload), type(m.payload), m.mid, m.qos, m.dup, m.retain,
            props or None)


@pytest.mark.parametrize(("cmd", "packet"), [
    (0x32, _publish(0x32, b"presacop/v1/drones/d1/telemetry", 7, b"", b"\x9b\x11\x00")),
    (0x3A, _publish(0x3A, b"a/b", 65535, b"", b"")),  # dup, empty payload
    (0x33, _publish(0x33, b"a/\xff", 1, b"", b"x" * 300)),  # retain, topic not UTF-8
])
def test_the_lean_publish_decode_gives_what_paho_gives(cmd: int, packet: bytes) -> None:
    lean = _decoded(Client._handle_publish, cmd, packet)
    paho = _decoded(mqtt.Client._handle_publish, cmd, packet)
    assert lean == paho
    assert lean[3] is bytes  # the payload's type too


@pytest.mark.parametrize(("cmd", "packet"), [
    (0x32, _publish(0x32, b"presacop/v1/drones/d1/telemetry", 7, b"", b"\x9b\x11\x00")),
    (0x3B, _publish(0x3B, b"a/\xff", 65535, b"", b"")),  # dup, retain, not UTF-8, empty payload
])
def test_the_lean_callback_gets_what_paho_gives(cmd: int, packet: bytes) -> None:
    got: list[tuple[Any, ...]] = []
    c = Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    c.on_message = lambda client, userdata, m: pytest.fail("on_message called")
    c.on_publish_lean = lambda *fields: got.append(fields)
    c._in_packet = {"command": cmd, "packet": bytearray(packet)}
    assert c._handle_publish() == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
    paho = _decoded(mqtt.Client._handle_publish, cmd, packet)
    (topic, payload, mid, dup, retain), = got
    assert (mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS, topic, payload, type(payload), mid, 1, dup,
            retain, None) == paho
    assert type(topic) is bytes


@pytest.mark.parametrize(("cmd", "packet"), [
    (0x32, _publish(0x32, b"a/b", 7, b"\x01\x01", b"payload")),  # a property: paho decodes it
    (0x30, _publish(0x30, b"a/b", None, b"", b"qos0")),
])
def test_publishes_the_lean_decode_does_not_take_go_to_paho(cmd: int, packet: bytes,
                                                            monkeypatch: Any) -> None:
    calls: list[int] = []
    original = mqtt.Client._handle_publish
    monkeypatch.setattr(mqtt.Client, "_handle_publish",
                        lambda self: calls.append(1) or original(self))
    assert _decoded(Client._handle_publish, cmd, packet)[0] == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
    assert calls == [1]


@pytest.mark.parametrize("packet", [b"\x00\x05ab", b"\x00\x05abcdef"])
def test_a_truncated_publish_is_malformed_as_paho_says(packet: bytes) -> None:
    from paho.mqtt.exception import MalformedPacket

    c = Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    c._in_packet = {"command": 0x32, "packet": packet}
    with pytest.raises(MalformedPacket):
        c._handle_publish()
