"""Byte transports for a MAVLink link: UDP (listening or sending), TCP, and a serial port.

Connection strings (as MAVProxy and mavlink-router spell them):

    udpin:HOST:PORT     listen; replies go to whoever sent the last valid autopilot message
    udpout:HOST:PORT    send to HOST:PORT (the peer learns our address from our HEARTBEATs)
    tcp:HOST:PORT       connect (mavlink-router's TCP server, SITL)
    /dev/ttyAMA0        a serial device (also ``serial:/dev/ttyAMA0``), at `baud`

The serial port is opened with the standard library's `termios` (raw mode, 8N1, no flow control),
so the agent needs no pyserial.

Raises: `ValueError` for a malformed connection string or an unsupported baud rate;
`HardwareError` when the port cannot be opened (device missing, address in use); `OSError` from
`recv`/`send` when an open port fails (the link then reopens it).
"""

from __future__ import annotations

import os
import select
import socket
import termios
import tty
from typing import Protocol

from drone_agent.hardware import HardwareError

MAX_DATAGRAM = 65535


class Transport(Protocol):
    """What the link needs from a port."""

    def recv(self, timeout: float) -> bytes:
        """Bytes that arrived within `timeout` seconds; b"" if none."""

    def send(self, data: bytes) -> None:
        """Send `data`; silently nothing when there is no peer to send to yet."""

    def close(self) -> None: ...


def parse_connection(spec: str) -> tuple[str, str, int]:
    """(scheme, host or device, port or 0). Raises `ValueError` naming the problem."""
    if spec.startswith("/dev/") or spec.startswith("serial:"):
        device = spec.removeprefix("serial:")
        if not device:
            raise ValueError(f"connection {spec!r}: serial needs a device path")
        return "serial", device, 0
    scheme, _, rest = spec.partition(":")
    host, _, port_text = rest.rpartition(":")
    if scheme not in ("udpin", "udpout", "tcp") or not host or not port_text.isdigit():
        raise ValueError(f"connection {spec!r}: expected udpin:HOST:PORT, udpout:HOST:PORT, "
                         "tcp:HOST:PORT or a serial device such as /dev/ttyAMA0")
    port = int(port_text)
    if not 0 <= port <= 65535 or (port == 0 and scheme != "udpin"):
        raise ValueError(f"connection {spec!r}: port must be 1..65535")
    return scheme, host, port


def open_transport(spec: str, baud: int) -> Transport:
    """The transport `spec` names, opened. Raises `ValueError` or `HardwareError`."""
    scheme, host, port = parse_connection(spec)
    try:
        if scheme == "serial":
            return SerialTransport(host, baud)
        if scheme == "tcp":
            return TcpTransport(host, port)
        return UdpTransport(host, port, listen=scheme == "udpin")
    except OSError as exc:
        raise HardwareError(f"cannot open MAVLink connection {spec}: {exc.strerror or exc}") \
            from exc


def serial_speed(baud: object) -> int:
    """The termios speed constant for `baud`. Raises `ValueError` if there is none."""
    speed = getattr(termios, f"B{baud}", None) if isinstance(baud, int) else None
    if speed is None:
        raise ValueError(f"baud {baud!r} is not a serial rate this system supports "
                         "(e.g. 57600, 115200, 460800, 921600)")
    return int(speed)


class UdpTransport:
    """udpin (bound, replies to `peer`) or udpout (sends to the given address)."""

    def __init__(self, host: str, port: int, listen: bool) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.listen = listen
        self.peer: tuple[str, int] | None = None
        self.last_sender: tuple[str, int] | None = None
        if listen:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, port))
        else:
            self.peer = (host, port)
            self.sock.bind(("0.0.0.0", 0))

    @property
    def address(self) -> tuple[str, int]:
        """The local address (for udpin:HOST:0, the port the system picked)."""
        host, port = self.sock.getsockname()[:2]
        return host, port

    def recv(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return b""
        data, self.last_sender = self.sock.recvfrom(MAX_DATAGRAM)
        return data

    def reply_to_last_sender(self) -> None:
        """udpin: send from now on to the sender of the last datagram (called for valid
        autopilot traffic only, so garbage from elsewhere cannot take the link over)."""
        if self.listen and self.last_sender is not None:
            self.peer = self.last_sender

    def send(self, data: bytes) -> None:
        if self.peer is not None:
            self.sock.sendto(data, self.peer)

    def close(self) -> None:
        self.sock.close()


class TcpTransport:
    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=5.0)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def recv(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return b""
        data = self.sock.recv(MAX_DATAGRAM)
        if not data:
            raise ConnectionResetError("MAVLink TCP peer closed the connection")
        return data

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


class SerialTransport:
    """A UART in raw mode, 8N1, no flow control, at `baud`."""

    def __init__(self, device: str, baud: int) -> None:
        speed = serial_speed(baud)
        self.fd = os.open(device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            tty.setraw(self.fd)
            attrs = termios.tcgetattr(self.fd)
            attrs[2] &= ~(termios.CSTOPB | termios.PARENB | termios.CRTSCTS)
            attrs[2] |= termios.CLOCAL | termios.CREAD | termios.CS8
            attrs[4] = attrs[5] = speed  # ispeed, ospeed
            termios.tcsetattr(self.fd, termios.TCSANOW, attrs)
            termios.tcflush(self.fd, termios.TCIOFLUSH)
        except (OSError, termios.error) as exc:
            os.close(self.fd)
            raise OSError(f"{device} is not a usable serial port: {exc}") from exc

    def recv(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return b""
        data = os.read(self.fd, 4096)
        if not data:
            raise ConnectionResetError("serial device returned end of file (unplugged?)")
        return data

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            _, writable, _ = select.select([], [self.fd], [], 1.0)
            if not writable:
                raise TimeoutError("serial port not writable for 1 s")
            view = view[os.write(self.fd, view):]

    def close(self) -> None:
        os.close(self.fd)
