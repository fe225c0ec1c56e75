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
