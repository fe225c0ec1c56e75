"""A real TCP proxy between a drone agent and its broker, with faults on demand.

The agent connects to the proxy's loopback port instead of the broker; every byte crosses real
sockets, so a cut is a real network fault that the MQTT client must notice and survive:

- `cut()`: every live connection is reset (RST, bytes in flight are lost) and new connections are
  accepted and reset at once, until `restore()`. This is the link dropping out.
- `cut(mode="stall")`: nothing moves any more but sockets stay open, like a radio that went
  quiet; the client finds out only through its keepalive. `restore()` lets the bytes flow again.
- `slow(delay_ms, rate_bps)`: latency per chunk, and optionally a bandwidth cap, each way.

Threads: one accept thread, two pump threads per connection (one per direction, so each
direction keeps its order). Sockets use short timeouts so every thread notices stop or a cut
within a fraction of a second; `stop()` joins them all and closes every socket.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hw_sim import LinkError

log = logging.getLogger(__name__)

_POLL_S = 0.25  # how often blocked threads look at flags (stop, cut, stall)
_CHUNK = 65536


@dataclass
class _Conn:
    """One proxied connection: the client's socket and, once connected, the broker's."""

    cid: int
    client: socket.socket
    upstream: socket.socket | None = None
    aborted: threading.Event = field(default_factory=threading.Event)
    open_pumps: int = 2


class LinkProxy:
    """A loopback TCP proxy to `target_host:target_port` that can be cut, stalled and slowed.

    Args:
        target_host, target_port: the broker (must be a loopback address).
        listen_port: 0 picks a free port (read it from `.port` after `start()`).
        listen_host: loopback address to listen on.
        max_connections: live connections beyond this are refused (reset).
        name: used in thread names and logs.

    Raises:
        ValueError: a non-loopback host or a bad port (from the constructor).
        LinkError: `start()` cannot listen (port in use) or was already called.
    """

    def __init__(self, target_host: str, target_port: int, listen_port: int = 0,
                 listen_host: str = "127.0.0.1", *, max_connections: int = 64,
                 name: str = "link") -> None:
        _check_port("target_port", target_port, allow_zero=False)
        _check_port("listen_port", listen_port, allow_zero=True)
        if max_connections < 1:
            raise ValueError(f"LinkProxy max_connections must be >= 1, got {max_connections}")
        self.target = (_loopback("target_host", target_host), int(target_port))
        self._listen = (_loopback("listen_host", listen_host), int(listen_port))
        self.max_connections = max_connections
        self.name = name
        self._lock = threading.Lock()
        self._flowing = threading.Event()  # cleared while stalled
        self._flowing.set()
        self._stopping = threading.Event()
        self._reset_mode = False  # cut(mode="reset") in force
        self._delay_s = 0.0
        self._rate_bps: float | None = None
        self._conns: dict[int, _Conn] = {}
        self._threads: set[threading.Thread] = set()
        self._ids = itertools.count(1)
        self._listener: socket.socket | None = None
        self._stats = {"bytes_up": 0, "bytes_down": 0, "connections": 0, "refused": 0,
                       "cuts": 0, "stalls": 0, "upstream_failures": 0}

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> LinkProxy:
        """Listen and start accepting. Returns self.

        Raises:
            LinkError: already started, or the listen address cannot be bound.
        """
        if self._listener is not None or self._stopping.is_set():
            raise LinkError(f"LinkProxy {self.name}: start() called twice")
        family = socket.AF_INET6 if ":" in self._listen[0] else socket.AF_INET
        try:
            listener = socket.create_server(self._listen, family=family, backlog=64)
        except OSError as exc:
            raise LinkError(f"LinkProxy {self.name}: cannot listen on "
                            f"{self._listen[0]}:{self._listen[1]}: {exc.strerror}") from exc
        listener.settimeout(_POLL_S)
        self._listener = listener
        self._spawn(self._accept_loop, f"{self.name}-accept")
        return self

    @property
    def port(self) -> int:
        """The port the agent should connect to.

        Raises:
            LinkError: not started."""
        if self._listener is None:
            raise LinkError(f"LinkProxy {self.name}: not started")
        return int(self._listener.getsockname()[1])

    @property
    def host(self) -> str:
        return self._listen[0]

    def stop(self, timeout: float = 5.0) -> None:
        """Reset every connection, stop listening, join every thread. Idempotent."""
        self._stopping.set()
        self._flowing.set()  # wake stalled pumps so they can see the stop
        self._abort_all()
        deadline = _Deadline(timeout)
        while True:
            with self._lock:
                threads = list(self._threads)
            if not threads:
                break
            for t in threads:
                t.join(deadline.left())
            if deadline.expired():
                log.warning("LinkProxy %s: %d threads still running after stop", self.name,
                            len(self._threads))
                break
        if self._listener is not None:
            self._listener.close()

    def __enter__(self) -> LinkProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults ----------------------------------------------------------------------------------

    def cut(self, mode: str = "reset") -> None:
        """Cut the link until `restore()`.

        mode "reset": reset every live connection and every new one (the client sees a
        disconnect at once). mode "stall": freeze every connection, new ones included, without
        closing anything (the client notices through its keepalive, or not at all).

        Raises:
            ValueError: unknown mode.
        """
        if mode not in ("reset", "stall"):
            raise ValueError(f"LinkProxy.cut mode must be 'reset' or 'stall', got {mode!r}")
        with self._lock:
            if mode == "reset":
                self._stats["cuts"] += 1
                self._reset_mode = True
            else:
                self._stats["stalls"] += 1
                self._flowing.clear()
        if mode == "reset":
            self._abort_all()

    def restore(self) -> None:
        """End a cut or a stall: connections are accepted and bytes flow again."""
        with self._lock:
            self._reset_mode = False
        self._flowing.set()

    def slow(self, delay_ms: float = 0.0, rate_bps: float | None = None) -> None:
        """Delay each chunk by `delay_ms` and cap each direction at `rate_bps` bits/s.

        `slow(0)` removes both. Order and content of the bytes are unchanged.

        Raises:
            ValueError: negative delay or non-positive rate.
        """
        if delay_ms < 0:
            raise ValueError(f"LinkProxy.slow delay_ms must be >= 0, got {delay_ms}")
        if rate_bps is not None and rate_bps <= 0:
            raise ValueError(f"LinkProxy.slow rate_bps must be > 0 or None, got {rate_bps}")
        self._delay_s = delay_ms / 1000.0
        self._rate_bps = rate_bps

    @property
    def state(self) -> str:
        """"up", "cut" (reset mode) or "stalled"."""
        if self._reset_mode:
            return "cut"
        return "up" if self._flowing.is_set() else "stalled"

    def stats(self) -> dict[str, int]:
        """Counters: bytes_up (agent -> broker), bytes_down, connections (made through to the
        broker), active, refused (reset at accept: cut or over the limit), cuts, stalls,
        upstream_failures (broker unreachable)."""
        with self._lock:
            return {**self._stats, "active": len(self._conns)}

    # -- threads ---------------------------------------------------------------------------------

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        t = threading.Thread(target=self._run_thread, args=(target, *args), name=name,
                             daemon=True)
        with self._lock:
            self._threads.add(t)
        t.start()

    def _run_thread(self, target: Callable[..., None], *args: object) -> None:
        try:
            target(*args)
        except Exception:  # a bug here must not hide: log it, the thread ends
            log.exception("LinkProxy %s: thread failed", self.name)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                raise
            self._admit(client)

    def _admit(self, client: socket.socket) -> None:
        with self._lock:
            refuse = self._reset_mode or self._stopping.is_set() \
                or len(self._conns) >= self.max_connections
            if refuse:
                self._stats["refused"] += 1
            else:
                conn = _Conn(next(self._ids), client)
                self._conns[conn.cid] = conn
        if refuse:
            _reset(client)
            return
        client.settimeout(_POLL_S)
        self._spawn(self._connect_and_pump, f"{self.name}-{conn.cid}-up", conn)

    def _connect_and_pump(self, conn: _Conn) -> None:
        # While stalled, a new connection waits here: the SYN got through, nothing else does.
        if not self._wait_flowing(conn):
            self._finish(conn, abort=True)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5.0)
        except OSError as exc:
            log.info("LinkProxy %s: broker %s:%d unreachable: %s", self.name, *self.target, exc)
            with self._lock:
                self._stats["upstream_failures"] += 1
            self._finish(conn, abort=True)
            return
        upstream.settimeout(_POLL_S)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.upstream = upstream
        with self._lock:
            self._stats["connections"] += 1
        if conn.aborted.is_set():  # cut while connecting: no pump will run
            conn.open_pumps = 1
            self._finish(conn, abort=True)
            return
        self._spawn(self._pump, f"{self.name}-{conn.cid}-down", conn, upstream, conn.client,
                    "bytes_down")
        self._pump(conn, conn.client, upstream, "bytes_up")

    def _pump(self, conn: _Conn, src: socket.socket, dst: socket.socket, counter: str) -> None:
        """Copy src -> dst until EOF (passed on as a half-close) or an abort."""
        while True:
            if not self._wait_flowing(conn):
                break
            try:
                data = src.recv(_CHUNK)
            except TimeoutError:
                continue
            except OSError:
                conn.aborted.set()
                break
            if not data:
                if not conn.aborted.is_set():
                    _quiet(dst.shutdown, socket.SHUT_WR)  # pass the FIN on
                    self._finish(conn, abort=False)
                    return
                break
            if not self._delay(conn, len(data)) or not self._wait_flowing(conn):
                break
            if not _send_all(conn, dst, data):
                conn.aborted.set()
                break
            with self._lock:
                self._stats[counter] += len(data)
        self._finish(conn, abort=True)

    def _delay(self, conn: _Conn, size: int) -> bool:
        delay = self._delay_s + (size * 8 / self._rate_bps if self._rate_bps else 0.0)
        return not delay or not conn.aborted.wait(delay)

    def _wait_flowing(self, conn: _Conn) -> bool:
        """Block while stalled; False when the connection is aborted or the proxy stops."""
        while not self._flowing.wait(_POLL_S):
            if conn.aborted.is_set():
                return False
        return not conn.aborted.is_set() and not self._stopping.is_set()

    def _finish(self, conn: _Conn, abort: bool) -> None:
        """A pump ended. The last one out closes both sockets (with RST when aborted)."""
        if abort:
            conn.aborted.set()
            _wake(conn)
        with self._lock:
            conn.open_pumps -= 1
            last = conn.open_pumps <= 0 or conn.upstream is None
            if last:
                self._conns.pop(conn.cid, None)
        if last:
            for sock in (conn.client, conn.upstream):
                if sock is not None:
                    if conn.aborted.is_set():
                        _reset(sock)
                    else:
                        sock.close()

    def _abort_all(self) -> None:
        with self._lock:
            conns = list(self._conns.values())
        for conn in conns:
            conn.aborted.set()
            _wake(conn)


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self._end - time.monotonic())

    def expired(self) -> bool:
        return self.left() <= 0


def _send_all(conn: _Conn, sock: socket.socket, data: bytes) -> bool:
    view = memoryview(data)
    while view:
        if conn.aborted.is_set():
            return False
        try:
            sent = sock.send(view)
        except TimeoutError:
            continue
        except OSError:
            return False
        view = view[sent:]
    return True


def _wake(conn: _Conn) -> None:
    """Make blocked recv() calls on the connection's sockets return now (nothing is sent)."""
    for sock in (conn.client, conn.upstream):
        if sock is not None:
            _quiet(sock.shutdown, socket.SHUT_RD)


def _reset(sock: socket.socket) -> None:
    """Close with an RST rather than a FIN: the peer sees "connection reset", as on a dead link."""
    _quiet(sock.setsockopt, socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _quiet(fn: Callable[..., object], *args: object) -> None:
    # The socket may already be closed or reset: then there is nothing left to do.
    with contextlib.suppress(OSError):
        fn(*args)


def _loopback(what: str, host: str) -> str:
    """The numeric loopback address for `host`; the simulator never talks off this machine."""
    try:
        addr = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)[0][4][0]
    except (socket.gaierror, UnicodeError) as exc:
        raise ValueError(f"LinkProxy {what} {host!r} does not resolve: {exc}") from None
    if not ipaddress.ip_address(addr).is_loopback:
        raise ValueError(f"LinkProxy {what} {host!r} is not a loopback address ({addr})")
    return str(addr)


def _check_port(what: str, port: int, allow_zero: bool) -> None:
    low = 0 if allow_zero else 1
    if not isinstance(port, int) or not low <= port <= 65535:
        raise ValueError(f"LinkProxy {what} must be an integer {low}..65535, got {port!r}")
