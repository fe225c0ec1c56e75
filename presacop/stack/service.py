"""A broker process owned through a PID file: the base of Mosquitto and Kafka.

A service is driven either by the process that started it (it holds the `ChildProcess`, e.g. a
pytest fixture) or by a later process that finds it through `<state>/<name>.pid`, e.g.
`presacop stack down`; such a PID is signalled only while its command line still names our config
file (`marker`), so a recycled PID is never signalled. Whoever starts a service stops it: nothing
is stopped behind the caller's back at interpreter exit (`presacop stack up` leaves its brokers
running on purpose).

Raises (from `start`): PortInUseError, MissingToolError, StartError.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from common.proc import ChildProcess, ProcessError, tail
from presacop.stack.errors import PortInUseError, StartError
from presacop.stack.ports import accepts, port_is_free

READY_POLL_S = 0.3
KILL_WAIT_S = 10.0


class Service:
    """One broker: subclasses give `name`, `marker`, `log_path`, `_prepare`, `_command`,
    `listen_ports` and `health_check`."""

    name = "service"
    marker: Path
    log_path: Path

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir).resolve()
        self._child: ChildProcess | None = None

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
    def out_path(self) -> Path:
        """The process's own stdout and stderr (the broker's log is `log_path`)."""
        return self.state_dir / f"{self.name.lower()}.out"

    def _process(self) -> ChildProcess | None:
        """Ours if we started it, else the one the PID file names if it is still ours."""
        if self._child is not None:
            return self._child
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        return ChildProcess.adopt(pid, str(self.marker), name=self.name)

    @property
    def pid(self) -> int | None:
        """PID of our running broker, or None."""
        child = self._process()
        return child.pid if child is not None and child.running() else None

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
        # Own session: Ctrl-C in a terminal running `stack up` must not kill the brokers.
        child = ChildProcess(self._command(), name=self.name, log=self.out_path,
                             cwd=self.state_dir, new_session=True)
        try:
            child.start()
        except ProcessError as exc:
            raise StartError(str(exc)) from exc
        self._child = child
        self.pid_path.write_text(f"{child.pid}\n")
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
                raise StartError(
                    f"{self.name} exited during start-up; last lines of {self.log_path}:\n"
                    f"{tail(self.log_path)}\n{tail(self.out_path)}"
                )
            if all(accepts(p) for p in self.listen_ports()):
                try:
                    self.health_check(timeout=max(1.0, min(15.0, deadline - time.monotonic())))
                    return
                except (ImportError, Warning):
                    raise  # a broken environment, not a broker that is still starting
                except Exception as exc:  # not ready yet: any client error means "try again"
                    last = exc
            time.sleep(READY_POLL_S)
        raise StartError(
            f"{self.name} did not complete a round trip within {timeout:.0f} s "
            f"(last error: {last!r}); last lines of {self.log_path}:\n{tail(self.log_path)}"
        )

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM our broker, wait up to `timeout` s for a clean exit, then SIGKILL. Idempotent;
        a broker that survives even SIGKILL is left recorded (`running()` stays true)."""
        child = self._process()
        if child is not None:
            with contextlib.suppress(ProcessError):
                child.stop(timeout, kill_timeout=KILL_WAIT_S)
        self._forget()

    def kill(self) -> None:
        """SIGKILL our broker (a crash: no clean shutdown, no final persistence save)."""
        child = self._process()
        if child is not None:
            with contextlib.suppress(ProcessError):
                child.kill(KILL_WAIT_S)
        self._forget()

    def _forget(self) -> None:
        if self.running():
            return
        with contextlib.suppress(OSError):
            self.pid_path.unlink()
        self._child = None
