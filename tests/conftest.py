"""Shared fixtures: the real local brokers (see presacop.stack and docs/stack.md).

    stack               session-scoped Mosquitto + Kafka on free ports in a temp state dir
    certs               session-scoped throwaway CA + server certificate for 127.0.0.1
    mosquitto_factory   factory(**Mosquitto kwargs) -> a started private Mosquitto (fault tests)
    kafka_factory       factory(**Kafka kwargs) -> a started private Kafka (slow: Kafka faults only)
    s3proxy             a started private s3proxy (S3 API over a directory, bucket
                        presacop-evidence) that a test may stop and start again

Everything a fixture starts is stopped at teardown, also when the test fails; presacop.stack also
stops leftovers at interpreter exit as a last resort.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from presacop.stack import Kafka, Mosquitto, Stack, free_port, free_ports, running_stack
from presacop.stack.s3proxy import S3Proxy
from presacop.stack.service import Service

# Test brokers get a smaller heap than `presacop stack up`: several may run at once on 2 cores.
TEST_KAFKA_HEAP = "512m"
S = TypeVar("S", bound=Service)
_PREVIOUS_SIGTERM = pytest.StashKey[Any]()


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # SIGTERM (CI's time limit, a killed job) would end pytest without running fixture teardown,
    # leaving brokers behind; as KeyboardInterrupt, pytest tears everything down first.
    config.stash[_PREVIOUS_SIGTERM] = signal.signal(signal.SIGTERM, _interrupt)


def pytest_unconfigure(config: pytest.Config) -> None:
    previous = config.stash.get(_PREVIOUS_SIGTERM, None)
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA (ca.pem) and a server certificate for 127.0.0.1 (server.pem, server.key),
    as deploy/mosquitto/presacop.conf names them."""
    d = tmp_path_factory.mktemp("certs")

    def run(*cmd: str) -> None:
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)

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


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A real Mosquitto + Kafka for the whole session: .mqtt_host .mqtt_port .kafka_bootstrap."""
    with running_stack(tmp_path_factory.mktemp("stack"), kafka_heap=TEST_KAFKA_HEAP) as running:
        yield running


def _started(make: Callable[..., S]) -> Iterator[Callable[..., S]]:
    """A factory of started brokers (`make(n, ...)` builds the n-th); all stopped at the end,
    also one whose start failed half-way."""
    started: list[S] = []

    def factory(*args: Any, **kwargs: Any) -> S:
        broker = make(len(started), *args, **kwargs)
        started.append(broker)
        broker.start()
        return broker

    try:
        yield factory
    finally:
        for broker in started:
            broker.stop()


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """factory(port=None, **kwargs) -> a started private Mosquitto you may stop/kill/restart."""
    def make(n: int, port: int | None = None, **kwargs: Any) -> Mosquitto:
        return Mosquitto(tmp_path / f"mosquitto-{n}", port or free_port(), **kwargs)

    yield from _started(make)


@pytest.fixture
def kafka_factory(tmp_path: Path) -> Iterator[Callable[..., Kafka]]:
    """factory(**kwargs) -> a started private Kafka (free ports, 512 MB heap) you may stop/kill."""
    def make(n: int, **kwargs: Any) -> Kafka:
        kwargs.setdefault("heap", TEST_KAFKA_HEAP)
        return Kafka(tmp_path / f"kafka-{n}", *free_ports(2), **kwargs)

    yield from _started(make)


@pytest.fixture
def s3proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Proxy]:
    """A started s3proxy on a free port; its credentials are in the environment (boto3 reads
    them there, as the gateway does in production)."""
    server = S3Proxy(tmp_path / "s3proxy", free_port())
    for name, value in server.env.items():
        monkeypatch.setenv(name, value)
    try:
        server.start()
        yield server
    finally:
        server.stop()
