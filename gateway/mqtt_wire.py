"""paho-mqtt 2.x, made cheaper per message for the gateway's one-thread loop.

Two costs of paho that the gateway pays per message, measured (bench/README.md, "What limits the
gateway"), and what this module does about them:

- Reads: paho reads each packet with two or three `recv` calls (one byte of command, the
  length byte by byte, then the rest), each a system call that also releases the GIL, so every
  message gave the Kafka threads a chance to take the GIL and the MQTT thread had to wait for it
  back. `BufferedSocket` reads up to 64 KiB per system call and hands paho its bytes from memory.
  Its `pending()` (the hook paho already uses for TLS sockets, whose decrypted bytes are not
  visible to select) tells paho's loop that buffered bytes are waiting, so none sits unread while
  the loop waits in select. Backpressure is unchanged: bytes in this buffer are not messages
  taken; the in-flight limit still stops the loop from reading packets.
- PUBACKs: `Client.ack` queues each PUBACK as its own packet, writes a wake-up byte to paho's
  socket pair and sends the packet: two system calls per message. `Client.ack_many` queues the
  PUBACKs of one loop pass as one packet (the same bytes, back to back): two system calls per
  pass.

- PUBLISH decoding (issue 16): paho builds an MQTT 5 `Properties` object per PUBLISH (its
  constructor and `clear()` were 8.7% of the gateway's GIL time in the profile, bench/README.md)
  and formats a debug line. `Client._handle_publish` takes the gateway's own case, a QoS 1 PUBLISH
  with no properties under manual acks, itself: the same `MQTTMessage` fields (topic, payload,
  mid, qos, dup, retain, timestamp; `properties` None, which nothing of ours reads) handed to the
  same `_handle_on_message`; anything else (properties, QoS 0/2, MQTT 3, a malformed packet) goes
  to paho's own code. With `Client.on_publish_lean` set (the gateway's `PahoSource` sets it), such
  a PUBLISH skips the `MQTTMessage` and paho's dispatch (two locks and a topic-filter match per
  message) and goes straight to that callback: 6-8% of the gateway's GIL time in the profile.

All use paho internals (`Client._create_socket`, `Client._packet_queue`, `Client._in_packet`,
`Client._handle_on_message`, stable across 2.x; pyproject pins paho-mqtt < 3). `ack_many` falls
back to `ack` if `_packet_queue` is missing.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt

_CHUNK = 65536  # bytes read per system call
_PUBACK = struct.Struct("!BBH")  # PUBACK, remaining length 2, packet id (as paho builds it)


class BufferedSocket:
    """A socket (plain or TLS) whose `recv` is served from a buffer filled by large reads."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0
        self._inner_pending = getattr(sock, "pending", None)  # TLS; looked up once, not per packet

    def recv(self, bufsize: int) -> bytes:
        pos, buf = self._pos, self._buf
        if pos < len(buf):
            self._pos = pos + bufsize
            return buf[pos:pos + bufsize]
        data = self._sock.recv(max(bufsize, _CHUNK))  # raises as the socket does (would-block)
        if len(data) <= bufsize:  # includes b"" at end of stream
            self._buf, self._pos = b"", 0
            return data
        self._buf, self._pos = data, bufsize
        return data[:bufsize]

    def pending(self) -> int:
        """Bytes readable without a system call (paho's loop then does not wait in select)."""
        inner = self._inner_pending
        return max(0, len(self._buf) - self._pos) + (inner() if inner is not None else 0)

    def send(self, data: bytes | bytearray) -> int:
        return int(self._sock.send(data))

    def close(self) -> None:
        self._buf, self._pos = b"", 0
        self._sock.close()

    def fileno(self) -> int:
        return int(self._sock.fileno())

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def __getattr__(self, name: str) -> Any:  # anything else paho or a callback may ask for
        return getattr(self._sock, name)


class Client(mqtt.Client):
    """`paho.mqtt.client.Client` with buffered reads, batched PUBACKs and a lean PUBLISH decode
    (see the module doc). `lean_publishes` counts the PUBLISHes decoded the lean way."""

    lean_publishes = 0
    # (topic bytes, payload, mid, dup, retain) of each PUBLISH the lean decode takes, instead of
    # on_message; None: on_message. Filters of `message_callback_add` are not consulted then
    # (the gateway has none: they never match a $share subscription, docs/FIELD_NOTES).
    on_publish_lean: Callable[[bytes, bytes, int, bool, bool], None] | None = None

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def buffered(self) -> int:
        """Bytes already read from the broker and not yet parsed."""
        sock = self.socket()
        return sock.pending() if isinstance(sock, BufferedSocket) else 0

    def _handle_publish(self) -> Any:
        """A QoS 1 PUBLISH without properties under manual acks, decoded here (see the module
        doc); everything else by paho."""
        packet, command = self._in_packet["packet"], self._in_packet["command"]
        if (command & 0x06) != 0x02 or not self._manual_ack or self._protocol != mqtt.MQTTv5 \
                or not isinstance(packet, (bytes, bytearray)) or len(packet) < 5:
            return super()._handle_publish()
        end = 2 + (packet[0] << 8 | packet[1])  # after the topic
        if end == 2 or len(packet) < end + 3 or packet[end + 2] != 0:  # no topic, or properties
            return super()._handle_publish()
        self.lean_publishes += 1
        # bytes, as paho's struct.unpack gives them (paho reads into a bytearray)
        mid, topic, payload = packet[end] << 8 | packet[end + 1], bytes(packet[2:end]), \
            bytes(packet[end + 3:])
        direct = self.on_publish_lean
        if direct is not None:
            direct(topic, payload, mid, bool(command & 0x08), bool(command & 0x01))
            return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        message = mqtt.MQTTMessage(mid=mid, topic=topic)
        message.dup, message.qos, message.retain = bool(command & 0x08), 1, bool(command & 0x01)
        message.payload = payload
        message.timestamp = mqtt.time_func()
        self._handle_on_message(message)
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack_many(self, mids: Iterable[int]) -> None:
        """PUBACK each QoS 1 packet id, in order, as one write."""
        queue = getattr(self, "_packet_queue", None)
        if queue is None or not self._manual_ack:
            for mid in mids:
                self.ack(mid, 1)
            return
        data = b"".join([_PUBACK.pack(mqtt.PUBACK, 2, mid) for mid in mids])
        if data:
            queue(mqtt.PUBACK, data, 0, 1)
