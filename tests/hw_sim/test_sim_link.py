"""LinkProxy against a real echo server over loopback: bytes, cuts, stalls, slowness, cleanup."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from hw_sim import LinkError
from hw_sim.link import LinkProxy
from tests.support import wait_until

WAIT = 10.0  # generous: the machine is shared


class EchoServer:
    """Echoes every byte back, one thread per connection."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            self._conns.append(conn)
            t = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _echo(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        try:
            self._echo_until_closed(conn)
        finally:
            conn.close()

    def _echo_until_closed(self, conn: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            try:
                conn.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        for c in self._conns:
            c.close()
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[LinkProxy]:
    p = LinkProxy("127.0.0.1", echo.port, name="test").start()
    yield p
    p.stop()
    assert p.stats()["active"] == 0


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    return s


def recv_exactly(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def test_bytes_pass_both_ways_unchanged(proxy: LinkProxy) -> None:
    payload = os.urandom(1_000_000)
    with connect(proxy.port) as s:
        sender = threading.Thread(target=s.sendall, args=(payload,))
        sender.start()
        echoed = recv_exactly(s, len(payload))
        sender.join(WAIT)
        assert not sender.is_alive()
    assert echoed == payload
    stats = proxy.stats()
    assert stats["bytes_up"] == len(payload)
    assert stats["bytes_down"] == len(payload)
    assert stats["connections"] == 1


def test_cut_resets_live_connections_and_refuses_new_ones_until_restore(
        proxy: LinkProxy, echo: EchoServer) -> None:
    with connect(proxy.port) as s:
        s.sendall(b"hello")
        assert recv_exactly(s, 5) == b"hello"
        proxy.cut()
        assert proxy.state == "cut"
        with pytest.raises(ConnectionError):
            # Reset (or closed): either way the peer learns the link is gone.
            s.sendall(b"x")
            recv_exactly(s, 1)
    with pytest.raises(ConnectionError), connect(proxy.port) as s2:
        # The reset may come as early as connect() itself.
        s2.sendall(b"during cut")
        recv_exactly(s2, 10)
    stats = proxy.stats()
    assert stats["cuts"] == 1 and stats["refused"] >= 1
    assert echo.accepted == 1  # nothing reached the server during the cut
    proxy.restore()
    assert proxy.state == "up"
    with connect(proxy.port) as s3:
        s3.sendall(b"back")
        assert recv_exactly(s3, 4) == b"back"


def test_stall_freezes_without_closing_then_resumes_in_order(proxy: LinkProxy) -> None:
    with connect(proxy.port) as s:
        s.sendall(b"a")
        assert recv_exactly(s, 1) == b"a"
        proxy.cut(mode="stall")
        assert proxy.state == "stalled"
        s.sendall(b"bcd")
        s.settimeout(0.7)
        with pytest.raises(TimeoutError):
            s.recv(10)  # nothing moves while stalled, and the socket stays open
        s.settimeout(WAIT)
        s.sendall(b"efg")
        proxy.restore()
        assert recv_exactly(s, 6) == b"bcdefg"
    assert proxy.stats()["stalls"] == 1


def test_slow_delays_but_delivers_everything_in_order(proxy: LinkProxy) -> None:
    proxy.slow(delay_ms=50)
    start = time.monotonic()
    with connect(proxy.port) as s:
        for i in range(5):
            msg = f"message-{i}".encode()
            s.sendall(msg)
            assert recv_exactly(s, len(msg)) == msg
    # Each round trip crosses the proxy twice, 50 ms each way at least.
    assert time.monotonic() - start >= 5 * 2 * 0.05
    proxy.slow(0)


def test_rate_cap_delivers_everything(proxy: LinkProxy) -> None:
    proxy.slow(rate_bps=4_000_000)
    payload = os.urandom(100_000)
    with connect(proxy.port) as s:
        sender = threading.Thread(target=s.sendall, args=(payload,))
        sender.start()
        assert recv_exactly(s, len(payload)) == payload
        sender.join(WAIT)
        assert not sender.is_alive()


def test_client_close_is_passed_on_as_a_clean_close(proxy: LinkProxy) -> None:
    with connect(proxy.port) as s:
        s.sendall(b"bye")
        assert recv_exactly(s, 3) == b"bye"
        s.shutdown(socket.SHUT_WR)
        assert s.recv(10) == b""  # the echo server saw our FIN and closed its side
    wait_until(lambda: proxy.stats()["active"] == 0, WAIT, "the proxy to drop the connection")


def test_max_connections_refuses_extra(echo: EchoServer) -> None:
    with LinkProxy("127.0.0.1", echo.port, max_connections=1) as p:
        with connect(p.port) as s1:
            s1.sendall(b"1")
            assert recv_exactly(s1, 1) == b"1"
            with pytest.raises(ConnectionError), connect(p.port) as s2:
                s2.sendall(b"2")
                recv_exactly(s2, 1)
        assert p.stats()["refused"] == 1


def test_unreachable_broker_resets_the_client() -> None:
    with socket.create_server(("127.0.0.1", 0)) as tmp:
        dead_port = tmp.getsockname()[1]
    with LinkProxy("127.0.0.1", dead_port) as p, pytest.raises(ConnectionError), \
            connect(p.port) as s:
        recv_exactly(s, 1)
    assert p.stats()["upstream_failures"] == 1


def test_stop_closes_the_port_and_all_threads(echo: EchoServer) -> None:
    before = threading.active_count()
    p = LinkProxy("127.0.0.1", echo.port).start()
    port = p.port
    s = connect(port)
    s.sendall(b"x")
    assert recv_exactly(s, 1) == b"x"
    p.stop()
    with pytest.raises(ConnectionError):
        recv_exactly(s, 1)
    s.close()
    with pytest.raises(ConnectionRefusedError):
        connect(port).close()
    assert threading.active_count() <= before
    p.stop()  # idempotent


@pytest.mark.parametrize("kwargs, word", [
    ({"target_host": "10.1.2.3"}, "loopback"),
    ({"target_host": "no.such.host.invalid"}, "resolve"),
    ({"target_port": 0}, "target_port"),
    ({"listen_port": 70000}, "listen_port"),
    ({"max_connections": 0}, "max_connections"),
])
def test_bad_arguments(kwargs: dict, word: str) -> None:
    args = {"target_host": "127.0.0.1", "target_port": 1883, **kwargs}
    with pytest.raises(ValueError, match=word):
        LinkProxy(**args)


def test_port_before_start_and_double_start(echo: EchoServer) -> None:
    p = LinkProxy("127.0.0.1", echo.port)
    with pytest.raises(LinkError, match="not started"):
        _ = p.port
    p.start()
    try:
        with pytest.raises(LinkError, match="twice"):
            p.start()
    finally:
        p.stop()


def test_listen_port_in_use(echo: EchoServer) -> None:
    with pytest.raises(LinkError, match="cannot listen"):
        LinkProxy("127.0.0.1", echo.port, listen_port=echo.port).start()
