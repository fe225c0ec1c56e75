"""Fixtures of the console tests: a running `presacop review serve` on the session's Kafka, and
headless Chromium browsers (Debian's chromium + chromium-driver; never a download)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from review_testlib import PASSWORD, create_topics, evidence_record, gateway_records, jpeg, produce

from gateway.evidence.config import StoreConfig
from gateway.evidence.store import open_store
from presacop.stack import free_port
from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[3]


class RunningConsole:
    """A `presacop review serve` subprocess with its own topics, state and evidence store."""

    def __init__(self, bootstrap: str, base: Path, *, tls: Path | None = None) -> None:
        tag = uuid.uuid4().hex[:8]
        self.bootstrap = bootstrap
        self.topics = {k: f"rv-{tag}.{k}" for k in ("violations", "alerts", "evidence",
                                                     "audit", "telemetry", "deadletter")}
        # The audit topic is left to the console (kafka.create_topics, the default).
        create_topics(bootstrap, [t for k, t in self.topics.items() if k != "audit"])
        self.base = base
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.ssl = ssl.create_default_context(cafile=str(tls / "ca.pem")) if tls else None
        served = (f'tls_certfile = "{tls / "server.pem"}"\ntls_keyfile = "{tls / "server.key"}"'
                  if tls else "")
        self.store_dir = base / "evidence"
        self.config = base / "review.toml"
        t = self.topics
        self.config.write_text(f"""
[review]
port = {self.port}
state_dir = "{base / 'state'}"
console_id = "review-test-{tag}"
audit_topic = "{t['audit']}"
max_failures = 3
{served}

[kafka]
bootstrap_servers = "{bootstrap}"
[kafka.topics]
violations = "{t['violations']}"
alerts = "{t['alerts']}"
telemetry = "{t['telemetry']}"
deadletter = "{t['deadletter']}"
evidence = "{t['evidence']}"

[evidence.store]
backend = "dir"
path = "{self.store_dir}"
""")
        self.proc: subprocess.Popen[bytes] | None = None
        self.sent: dict[tuple[str, int], Any] = {}  # (drone, seq) -> the violation message

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "presacop.cli", "review", *args,
                               "--config", str(self.config)], input=stdin, text=True,
                              capture_output=True, cwd=ROOT, timeout=60)

    def start(self) -> None:
        log = open(self.base / "console.log", "ab")  # noqa: SIM115 - kept for the process' life
        self.proc = subprocess.Popen([sys.executable, "-m", "presacop.cli", "review", "serve",
                                      "--config", str(self.config)], cwd=ROOT, stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        wait_until(lambda: self.health()["feeder_alive"], 60, "the console's /healthz",
                   ignoring=(OSError,))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=5, context=self.ssl) as reply:
            return json.loads(reply.read())

    def log(self) -> str:
        return (self.base / "console.log").read_text(errors="replace")

    def add_alert(self, drone: str, seq: int, *, image: bool = True,
                  received_ms: int | None = None) -> str:
        """A violation the drone could not qualify, its alert and (unless `image` is False) its
        evidence in the store + its evidence record. Returns the alert id."""
        from review_testlib import violation

        plate = f"K{seq:03d}XY"
        evidence_id = hashlib.sha256(jpeg(plate)).hexdigest()[:16]  # the drone names its image
        msg = violation(drone, seq, None, plate=plate, evidence_id=evidence_id)
        self.sent[(drone, seq)] = msg
        extra = {} if received_ms is None else {"received_ms": received_ms}
        records = gateway_records(msg, self.topics, **extra)
        if image:
            records.append(self.put_image(msg))
        produce(self.bootstrap, records)
        return records[1][2]["alert_id"]

    def put_image(self, msg: Any) -> tuple[str, bytes, dict[str, Any]]:
        """Store the image of `msg` (drawn from its plate) and return its evidence record."""
        body = jpeg(msg.plate)
        sha = hashlib.sha256(body).hexdigest()
        assert msg.evidence_id == sha[:16]
        store = open_store(StoreConfig(backend="dir", path=str(self.store_dir)))
        with tempfile.NamedTemporaryFile(dir=self.base, delete=False) as fh:
            fh.write(body)
        uri = store.put_file(sha, Path(fh.name), "image/jpeg")
        return (self.topics["evidence"], msg.header.drone_id.encode(),
                evidence_record(msg, body, uri))

    def add_drone_violation(self, drone: str, seq: int, code: int) -> str:
        from review_testlib import violation

        msg = violation(drone, seq, code)
        produce(self.bootstrap, gateway_records(msg, self.topics))
        return f"{drone}:{seq}"


def add_accounts(running: RunningConsole) -> None:
    for name, role in (("po-1", "officer"), ("po-2", "officer"), ("sup-1", "supervisor")):
        done = running.cli("user", "add", name, "--role", role, stdin=PASSWORD + "\n")
        assert done.returncode == 0, done.stderr


@pytest.fixture
def tls_console(stack: Any, certs: Path, tmp_path: Path) -> Iterator[RunningConsole]:
    """A console serving HTTPS itself (uvicorn with the test CA's server certificate)."""
    running = RunningConsole(stack.kafka_bootstrap, tmp_path, tls=certs)
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def console(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningConsole]:
    running = RunningConsole(stack.kafka_bootstrap, tmp_path_factory.mktemp("review"))
    add_accounts(running)
    try:
        running.start()
        yield running
    finally:
        running.stop()


def _chrome() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--disable-gpu", "--no-first-run"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


@pytest.fixture(scope="module")
def browsers() -> Iterator[Callable[[int], list[Any]]]:
    """browsers(n) -> n headless Chromium drivers (module-wide), cookies cleared for each test."""
    started: list[Any] = []

    def get(n: int) -> list[Any]:
        while len(started) < n:
            started.append(_chrome())
        for driver in started[:n]:
            driver.delete_all_cookies()
        return started[:n]

    try:
        yield get
    finally:
        for driver in started:
            driver.quit()


@pytest.fixture
def doc_screenshot() -> Path | None:
    """Where to save the docs' queue screenshot: docs/review-queue.png when the run is asked to
    refresh it (PRESACOP_DOC_SCREENSHOTS=1), else nowhere."""
    if os.environ.get("PRESACOP_DOC_SCREENSHOTS") == "1":
        return ROOT / "docs" / "review-queue.png"
    return None
