"""The local broker stack: a real Mosquitto and a real Apache Kafka (KRaft) on loopback.

Used by `presacop stack`, the test fixtures and the demo. Nothing here is a mock: each service is
the real broker process, started from a generated config in its own state directory, and counted
as ready only after a real round trip (MQTT publish/subscribe, Kafka produce with acks=all and
consume).

Each service can be driven two ways:

- by the process that started it (it holds the child), e.g. a pytest fixture;
- by a later process that finds it through the PID file in the state directory, e.g.
  `presacop stack down`. Before signalling such a PID we check that its command line still names our
  config file, so a recycled PID is never signalled.

Errors (all raised by `start()`, `ensure_kafka_classpath()` and `Stack.load()`):

    StackError
     +-- PortInUseError      a port is taken before we start; names the service and the port
     +-- MissingToolError    mosquitto, java or mvn is not installed; says what to install
     +-- StartError          the broker exited or failed its round trip in time; has a log tail
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
KAFKA_VERSION = "4.1.1"
HEALTH_TOPIC = "__presacop_health"
MQTT_HEALTH_TOPIC = "presacop/_health"

# Kafka's Maven artifacts bring slf4j-api 1.7 but no binding, which leaves the broker silent;
# slf4j-api 2.x pinned next to log4j-slf4j2-impl gives it a working log4j2 binding.
# kafka-tools brings ProducerPerformance for the benchmarks.
_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>presacop</groupId><artifactId>kafka-runtime</artifactId><version>{kafka}</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId>
      <version>2.0.16</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId>
      <version>2.24.3</version></dependency>
  </dependencies>
</project>
"""


class StackError(Exception):
    """Root of the stack's errors."""


class PortInUseError(StackError):
    """A port we were asked to listen on is already taken."""

    def __init__(self, service: str, port: int) -> None:
        super().__init__(
            f"{service}: port {port} on {HOST} is already in use; "
            f"stop whatever listens there or choose another port"
        )
        self.service = service
        self.port = port


class MissingToolError(StackError):
    """An external program the stack needs is not installed."""


class StartError(StackError):
    """A broker exited during start-up or did not pass its round trip in time."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """Return `count` distinct ports on 127.0.0.1 that were free a moment ago."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def port_is_free(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:`port` and we could bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as the brokers use it: a port in TIME_WAIT after a restart counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def accepts(port: int) -> bool:
    """True if something accepts TCP connections on 127.0.0.1:`port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((HOST, port)) == 0


def cache_dir() -> Path:
    """Where resolved artefacts live, outside the repository: $PRESACOP_CACHE_DIR or XDG cache."""
    env = os.environ.get("PRESACOP_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "presacop"


# -- process bookkeeping -------------------------------------------------------------------------

_LIVE: set[_Service] = set()
_LIVE_LOCK = threading.Lock()


def _stop_all_at_exit() -> None:
    # Last resort for a crashed test session: never leave brokers behind us.
    with _LIVE_LOCK:
        live = list(_LIVE)
    for service in live:
        with contextlib.suppress(Exception):
            service.stop(timeout=15)


atexit.register(_stop_all_at_exit)


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The state letter follows the parenthesised command name, which may itself hold spaces.
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


class _Service:
    """A broker process owned through a PID file whose command line names `self.marker`."""

    name = "service"

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir).resolve()
        self._proc: subprocess.Popen[bytes] | None = None

    # subclasses provide these
    marker: Path
    log_path: Path

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        raise NotImplementedError

    def listen_ports(self) -> list[int]:
        """The TCP ports this broker listens on."""
        raise NotImplementedError

    def health_check(self, timeout: float = 10.0) -> None:
        raise NotImplementedError

    @property
    def pid_path(self) -> Path:
        return self.state_dir / f"{self.name.lower()}.pid"

    @property
    def pid(self) -> int | None:
        """PID of our running broker, or None."""
        if self._proc is not None:
            return self._proc.pid if self._proc.poll() is None else None
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._is_ours(pid) else None

    def _is_ours(self, pid: int) -> bool:
        return not _is_zombie(pid) and str(self.marker) in _cmdline(pid)

    def running(self) -> bool:
        """True if our broker process is alive (not necessarily ready)."""
        return self.pid is not None

    def check_ports(self) -> None:
        """Raise PortInUseError if one of our ports is taken."""
        for port in self.listen_ports():
            if not port_is_free(port):
                raise PortInUseError(self.name, port)

    def start(self, timeout: float = 30.0) -> None:
        """Start the broker and wait for a real round trip.

        No-op if it already runs. Raises PortInUseError, MissingToolError, StartError.
        """
        if self.running():
            return
        self.check_ports()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._prepare()
        out = (self.state_dir / f"{self.name.lower()}.out").open("ab")
        try:
            # Own session: Ctrl-C in a terminal running `stack up` must not kill the brokers.
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.state_dir,
            )
        finally:
            out.close()
        self.pid_path.write_text(f"{self._proc.pid}\n")
        with _LIVE_LOCK:
            _LIVE.add(self)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self.running():
                out = self.state_dir / f"{self.name.lower()}.out"
                raise StartError(
                    f"{self.name} exited during start-up; last lines of {self.log_path}:\n"
                    f"{_tail(self.log_path)}\n{_tail(out)}"
                )
            if all(accepts(p) for p in self.listen_ports()):
                try:
                    self.health_check(timeout=max(1.0, min(15.0, deadline - time.monotonic())))
                    return
                except (ImportError, Warning):
                    raise  # a broken environment, not a broker that is still starting
                except Exception as exc:  # not ready yet: any client error means "try again"
                    last = exc
            time.sleep(0.3)
        raise StartError(
            f"{self.name} did not complete a round trip within {timeout:.0f} s "
            f"(last error: {last!r}); last lines of {self.log_path}:\n{_tail(self.log_path)}"
        )

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM our broker, wait up to `timeout` s for a clean exit, then SIGKILL. Idempotent."""
        self._signal_and_wait(signal.SIGTERM, timeout)
        if self.running():
            self._signal_and_wait(signal.SIGKILL, 10.0)
        self._forget()

    def kill(self) -> None:
        """SIGKILL our broker (a crash: no clean shutdown, no final persistence save)."""
        self._signal_and_wait(signal.SIGKILL, 10.0)
        self._forget()

    def _signal_and_wait(self, sig: signal.Signals, timeout: float) -> None:
        pid = self.pid
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=0.2)
            else:
                time.sleep(0.2)
            if not self.running():
                return

    def detach(self) -> None:
        """Leave the broker running when this process exits (`presacop stack up` does this)."""
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def _forget(self) -> None:
        if self.running():
            return
        with contextlib.suppress(OSError):
            self.pid_path.unlink()
        self._proc = None
        with _LIVE_LOCK:
            _LIVE.discard(self)


# -- Mosquitto -----------------------------------------------------------------------------------


class Mosquitto(_Service):
    """A real Mosquitto broker on 127.0.0.1:`port`, with its state in `state_dir`.

    Config: no silent drop of QoS 1 (max_queued_messages 0, memory bounded by max_queued_bytes),
    persistence on (restart keeps sessions and queued messages), loopback only, anonymous allowed
    (development only). `extra_config` lines are appended for tests that need more.
    """

    name = "Mosquitto"

    def __init__(
        self,
        state_dir: Path,
        port: int,
        *,
        autosave_interval: int = 5,
        max_queued_bytes: int = 512 * 1024 * 1024,
        max_inflight_messages: int = 1000,
        extra_config: str = "",
    ) -> None:
        super().__init__(state_dir)
        self.host = HOST
        self.port = port
        self.autosave_interval = autosave_interval
        self.max_queued_bytes = max_queued_bytes
        self.max_inflight_messages = max_inflight_messages
        self.extra_config = extra_config
        self.marker = self.state_dir / "mosquitto.conf"
        self.log_path = self.state_dir / "mosquitto.log"

    def listen_ports(self) -> list[int]:
        return [self.port]

    def config_text(self) -> str:
        """The generated mosquitto.conf."""
        # Run as root, Mosquitto switches to user `mosquitto`, which cannot write our state dir.
        user = pwd.getpwuid(os.getuid()).pw_name
        return "\n".join(
            [
                "# Generated by presacop.stack; edits are overwritten on the next start.",
                f"user {user}",
                f"listener {self.port} {HOST}",
                "allow_anonymous true",
                # Debian's default of 1000 silently drops QoS 1 messages to a slow subscriber.
                "max_queued_messages 0",
                f"max_queued_bytes {self.max_queued_bytes}",
                f"max_inflight_messages {self.max_inflight_messages}",
                "persistence true",
                f"persistence_location {self.state_dir}/",
                "persistence_file mosquitto.db",
                # Snapshots are periodic, not per message: keep the window a crash loses short.
                f"autosave_interval {self.autosave_interval}",
                f"log_dest file {self.log_path}",
                "log_timestamp_format %Y-%m-%dT%H:%M:%S",
                "set_tcp_nodelay true",
                self.extra_config,
                "",
            ]
        )

    def _prepare(self) -> None:
        if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
            raise MissingToolError(
                "mosquitto is not installed; run: "
                "sudo apt-get install -y mosquitto mosquitto-clients"
            )
        self.marker.write_text(self.config_text())

    def _command(self) -> list[str]:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        return [binary, "-c", str(self.marker)]

    def health_check(self, timeout: float = 10.0) -> None:
        """Publish a QoS 1 message and receive it back through the broker; raise on failure."""
        mqtt_round_trip(self.host, self.port, timeout=timeout)


def mqtt_round_trip(host: str, port: int, timeout: float = 10.0) -> None:
    """Subscribe, publish one QoS 1 message and receive it. Raises StackError on failure."""
    import paho.mqtt.client as mqtt

    token = uuid.uuid4().hex
    topic = f"{MQTT_HEALTH_TOPIC}/{token}"
    subscribed, received = threading.Event(), threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"presacop-health-{token[:8]}")
    client.on_subscribe = lambda *_args: subscribed.set()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.payload == token.encode():
            received.set()

    client.on_message = on_message
    try:
        client.connect(host, port, keepalive=10)
        client.loop_start()
        client.subscribe(topic, qos=1)
        if not subscribed.wait(timeout):
            raise StackError(f"MQTT {host}:{port}: no SUBACK within {timeout:.0f} s")
        client.publish(topic, token, qos=1)
        if not received.wait(timeout):
            raise StackError(f"MQTT {host}:{port}: published message not received back")
    finally:
        client.loop_stop()
        client.disconnect()
        # disconnect() leaves the socket to the loop, which we just stopped: close it ourselves.
        sock = client.socket()
        if sock is not None:
            sock.close()


# -- Kafka ---------------------------------------------------------------------------------------


def ensure_kafka_classpath(version: str = KAFKA_VERSION) -> str:
    """Return the JVM classpath of Kafka `version`, resolving it with mvn into the cache once.

    Raises MissingToolError (no mvn/java) or StackError (resolution failed, with mvn's output).
    """
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise MissingToolError(
                f"{tool} is not installed; run: "
                "sudo apt-get install -y openjdk-17-jre-headless maven"
            )
    directory = cache_dir() / f"kafka-{version}"
    directory.mkdir(parents=True, exist_ok=True)
    pom = _POM.format(kafka=version)
    stamp = hashlib.sha256(pom.encode()).hexdigest()[:16]
    cp_file = directory / "classpath.txt"
    # Several test sessions may resolve at once: one resolves, the others wait and reuse.
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cached = _cached_classpath(directory, stamp)
        if cached is not None:
            return cached
        (directory / "pom.xml").write_text(pom)
        result = subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(directory / "pom.xml"),
                "dependency:build-classpath",
                f"-Dmdep.outputFile={cp_file}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or not cp_file.exists():
            raise StackError(
                f"mvn could not resolve Kafka {version} (exit {result.returncode}):\n"
                f"{(result.stdout + result.stderr)[-3000:]}"
            )
        (directory / "stamp").write_text(stamp)
        classpath = cp_file.read_text().strip()
        if not _jars_exist(classpath):
            raise StackError(f"mvn reported a classpath with missing jars: {cp_file}")
        return classpath


def _cached_classpath(directory: Path, stamp: str) -> str | None:
    try:
        if (directory / "stamp").read_text() != stamp:
            return None
        classpath = (directory / "classpath.txt").read_text().strip()
    except OSError:
        return None
    return classpath if _jars_exist(classpath) else None


def _jars_exist(classpath: str) -> bool:
    jars = [j for j in classpath.split(os.pathsep) if j]
    return bool(jars) and all(Path(j).is_file() for j in jars)


def _kafka_cluster_id() -> str:
    # Kafka's Uuid string: URL-safe base64 of 16 random bytes, unpadded, not starting with "-".
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


_LOG4J2 = """# Generated by presacop.stack: one readable broker log.
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
# Per-request and per-partition chatter drowns the useful lines at INFO.
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.logcleaner.name = kafka.log.LogCleaner
logger.logcleaner.level = WARN
"""


class Kafka(_Service):
    """A real single-node Apache Kafka (KRaft, broker+controller) on 127.0.0.1.

    Storage is formatted once (when `data/meta.properties` is missing), so a restart keeps the data.
    `extra_properties` are appended to server.properties (later keys win in Java properties).
    """

    name = "Kafka"

    def __init__(
        self,
        state_dir: Path,
        port: int,
        controller_port: int,
        heap: str = "512m",
        *,
        extra_properties: dict[str, str] | None = None,
    ) -> None:
        super().__init__(state_dir)
        self.host = HOST
        self.port = port
        self.controller_port = controller_port
        self.heap = heap
        self.extra_properties = dict(extra_properties or {})
        self.marker = self.state_dir / "server.properties"
        self.log_path = self.state_dir / "kafka.log"
        self.data_dir = self.state_dir / "data"
        self._classpath = ""

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def listen_ports(self) -> list[int]:
        return [self.port, self.controller_port]

    def server_properties(self) -> str:
        """The generated server.properties."""
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{HOST}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            # One node: every internal topic must be satisfiable with a single replica.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Fewer internal partitions: start-up and first group join are much faster on 2 cores.
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.num.partitions": "4",
            "group.initial.rebalance.delay.ms": "0",
            "num.partitions": "4",
            # Topics are created on purpose (the gateway creates its own), never by a typo.
            "auto.create.topics.enable": "false",
        }
        props.update(self.extra_properties)
        lines = ["# Generated by presacop.stack; edits are overwritten on the next start."]
        lines += [f"{k}={v}" for k, v in props.items()]
        return "\n".join(lines) + "\n"

    def _java(self, classpath: str) -> list[str]:
        return [
            "java",
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.state_dir / 'log4j2.properties'}",
            "-cp",
            classpath,
        ]

    def _prepare(self) -> None:
        classpath = ensure_kafka_classpath()
        self._classpath = classpath
        self.marker.write_text(self.server_properties())
        (self.state_dir / "log4j2.properties").write_text(_LOG4J2.format(log=self.log_path))
        if (self.data_dir / "meta.properties").exists():
            return
        cmd = [
            *self._java(classpath),
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            _kafka_cluster_id(),
            "-c",
            str(self.marker),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise StartError(
                f"Kafka storage format failed (exit {result.returncode}):\n"
                f"{(result.stdout + result.stderr)[-3000:]}"
            )

    def _command(self) -> list[str]:
        return [*self._java(self._classpath), "kafka.Kafka", str(self.marker)]

    def start(self, timeout: float = 120.0) -> None:
        """Start Kafka (JVM start-up takes 10-20 s on 2 cores) and wait for a round trip.

        Raises PortInUseError, MissingToolError, StartError, StackError (classpath resolution).
        """
        super().start(timeout)

    def health_check(self, timeout: float = 10.0) -> None:
        """Produce one record with acks=all and consume it back; raise on failure."""
        kafka_round_trip(self.bootstrap, timeout=timeout)


def kafka_round_trip(bootstrap: str, timeout: float = 10.0) -> None:
    """Create the health topic if needed, produce (acks=all) and consume one record back.

    Raises a kafka-python error or StackError on failure.
    """
    with warnings.catch_warnings():
        # kafka-python 3.0 uses the deprecated importlib.resources.read_text at import time.
        warnings.filterwarnings("ignore", "(read|open)_text is deprecated", DeprecationWarning)
        from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

    ms = int(timeout * 1000)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=ms)
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics([NewTopic(HEALTH_TOPIC, 1, 1)], timeout_ms=ms)
    finally:
        admin.close()
    token = uuid.uuid4().hex.encode()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=ms)
    try:
        meta = producer.send(HEALTH_TOPIC, token).get(timeout=timeout)
    finally:
        producer.close(timeout=5)
    tp = TopicPartition(HEALTH_TOPIC, meta.partition)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        consumer.assign([tp])
        consumer.seek(tp, meta.offset)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                if any(r.value == token for r in records):
                    return
        raise StackError(f"Kafka {bootstrap}: produced record not consumed back")
    finally:
        consumer.close()


# -- the whole stack -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StackPorts:
    mqtt: int
    kafka: int
    controller: int


class Stack:
    """Mosquitto + Kafka under one state directory (`<state>/mosquitto`, `<state>/kafka`).

    The chosen ports are recorded in `<state>/stack.json` so that `status` and `down` in a later
    process find the same services.
    """

    def __init__(
        self,
        state_dir: Path,
        mqtt_port: int,
        kafka_port: int,
        controller_port: int,
        kafka_heap: str = "1g",
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.ports = StackPorts(mqtt_port, kafka_port, controller_port)
        self.mosquitto = Mosquitto(self.state_dir / "mosquitto", mqtt_port)
        self.kafka = Kafka(self.state_dir / "kafka", kafka_port, controller_port, heap=kafka_heap)

    @property
    def mqtt_host(self) -> str:
        return HOST

    @property
    def mqtt_port(self) -> int:
        return self.ports.mqtt

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka.bootstrap

    @property
    def services(self) -> tuple[Mosquitto, Kafka]:
        return (self.mosquitto, self.kafka)

    @staticmethod
    def record_path(state_dir: Path) -> Path:
        return Path(state_dir) / "stack.json"

    @classmethod
    def load(cls, state_dir: Path) -> Stack | None:
        """The stack recorded in `state_dir`, or None if there is none.

        Raises StackError if the record is unreadable.
        """
        path = cls.record_path(Path(state_dir))
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            return cls(
                Path(state_dir),
                int(data["mqtt_port"]),
                int(data["kafka_port"]),
                int(data["controller_port"]),
                kafka_heap=str(data.get("kafka_heap", "1g")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise StackError(f"{path}: unreadable stack record ({exc}); remove it") from exc

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "mqtt_port": self.ports.mqtt,
            "kafka_port": self.ports.kafka,
            "controller_port": self.ports.controller,
            "kafka_heap": self.kafka.heap,
        }
        self.record_path(self.state_dir).write_text(json.dumps(record, indent=2) + "\n")

    def check_ports(self) -> None:
        """Raise PortInUseError for the first taken port of a service that is not running."""
        for service in self.services:
            if not service.running():
                service.check_ports()

    def start(self, timeout: float = 180.0) -> None:
        """Start what is not running (ports checked first for both), then wait for round trips.

        Raises PortInUseError, MissingToolError, StartError.
        """
        self.check_ports()
        self.save()
        deadline = time.monotonic() + timeout
        # On failure stop only what this call started: a broker that already ran stays up.
        was_running = [s for s in self.services if s.running()]
        try:
            self.mosquitto.start(timeout=min(30.0, timeout))
            self.kafka.start(timeout=max(30.0, deadline - time.monotonic()))
        except BaseException:
            for service in self.services:
                if service not in was_running:
                    service.stop()
            raise

    def health_check(self, timeout: float = 15.0) -> None:
        """A real round trip through both brokers; raises on failure."""
        self.mosquitto.health_check(timeout)
        self.kafka.health_check(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop both brokers (Kafka first: it takes longest). Idempotent."""
        self.kafka.stop(timeout)
        self.mosquitto.stop(timeout)

    def running(self) -> bool:
        """True if both brokers run."""
        return all(s.running() for s in self.services)

    def detach(self) -> None:
        """Leave both brokers running when this process exits."""
        for service in self.services:
            service.detach()


@contextlib.contextmanager
def running_stack(state_dir: Path, kafka_heap: str = "512m") -> Iterator[Stack]:
    """A started stack on free ports, stopped on exit."""
    stack = Stack(state_dir, *free_ports(3), kafka_heap=kafka_heap)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
