"""One owned child process: started with its output in a log file or read line by line, stopped
by PID, and never anything else.

Two ways to hold a process:

- `ChildProcess(cmd, ...).start()`: we forked it and hold its `Popen`, so its PID cannot be reused
  before we reap it; signals go through `Popen`.
- `ChildProcess.adopt(pid, marker)`: a process an earlier program started (found through a PID
  file). Before every signal we check in /proc that the PID is alive, not a zombie, and that its
  command line still contains `marker` (e.g. its config file), so a recycled PID is never
  signalled.

`stop()` is terminate -> wait -> kill -> wait, each with a timeout, then it joins the stdout
reader thread and checks that the join finished.

Errors:

    ProcessError       the command could not be started; the process or its reader did not end
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

READER_JOIN_S = 5.0  # the pipe closes when the child exits; longer means a grandchild holds it
POLL_S = 0.1


class ProcessError(Exception):
    """A child process could not be started, or did not end (or its reader did not finish)."""


def cmdline(pid: int) -> str:
    """The command line of `pid` with spaces between the arguments ('' if there is no such PID)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def is_zombie(pid: int) -> bool:
    """True if `pid` has exited (a zombie waiting to be reaped) or does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The state letter follows the parenthesised command name, which may itself hold spaces.
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def is_ours(pid: int, marker: str) -> bool:
    """True if `pid` is alive and its command line contains `marker`."""
    return not is_zombie(pid) and marker in cmdline(pid)


def tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log file (or a note that there is none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _die_with_parent() -> None:
    # In the child before exec: SIGTERM when our parent dies without cleaning up (kill -9).
    pr_set_pdeathsig = 1
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def die_with_parent() -> None:
    """SIGTERM this process when the thread that started it ends (Linux; elsewhere nothing): for
    children that are not a ChildProcess, e.g. multiprocessing workers (as their initializer)."""
    _die_with_parent()


class ChildProcess:
    """A child process we own; `start()` it, `stop()` it.

    - `log`: stderr is appended there, and stdout too unless `stdout` or `on_line` takes it;
      None leaves both to this process's own.
    - `stdout`: an open file for stdout (closed by the caller after `start()`).
    - `on_line`: stdout is read on a named thread and each line (decoded, without the newline) is
      passed to it; `lines_done()` tells when the stream ended.
    - `stdin=True`: a pipe for `send()`; otherwise stdin is /dev/null.
    - `new_session`: its own session, so a Ctrl-C in our terminal does not reach it.
    - `die_with_parent`: it gets SIGTERM if we die without stopping it.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        name: str | None = None,
        log: Path | None = None,
        stdout: IO[bytes] | None = None,
        on_line: Callable[[str], None] | None = None,
        stdin: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        new_session: bool = False,
        die_with_parent: bool = False,
    ) -> None:
        self.command = [str(c) for c in command]
        self.name = name or Path(self.command[0]).name
        self.log = log
        self._stdout, self._on_line, self._stdin = stdout, on_line, stdin
        self._env, self._cwd = env, cwd
        self._new_session, self._die_with_parent = new_session, die_with_parent
        self._popen: subprocess.Popen[bytes] | None = None
        self._adopted: tuple[int, str] | None = None
        self._reader: threading.Thread | None = None
        self._lines_done = threading.Event()
        self._returncode: int | None = None

    # -- starting and finding -------------------------------------------------------------------

    def start(self) -> ChildProcess:
        """Fork and exec the command. Raises ProcessError if it cannot be started."""
        if self._popen is not None or self._adopted is not None:
            raise ProcessError(f"{self.name}: already started")
        log_file = self.log.open("ab") if self.log is not None else None
        try:
            out: IO[bytes] | int | None = self._stdout or log_file
            if self._on_line is not None:
                out = subprocess.PIPE
            self._popen = subprocess.Popen(
                self.command,
                stdin=subprocess.PIPE if self._stdin else subprocess.DEVNULL,
                stdout=out,
                stderr=log_file if log_file is not None else None,
                env=dict(self._env) if self._env is not None else None,
                cwd=self._cwd,
                start_new_session=self._new_session,
                preexec_fn=_die_with_parent if self._die_with_parent else None,
            )
        except OSError as exc:
            raise ProcessError(f"{self.name}: cannot start {self.command[0]}: {exc}") from exc
        finally:
            if log_file is not None:
                log_file.close()  # the child holds its own descriptor
        if self._on_line is not None:
            self._reader = threading.Thread(target=self._read, name=f"read-{self.name}",
                                            daemon=True)
            self._reader.start()
        return self

    @classmethod
    def adopt(cls, pid: int, marker: str, *, name: str | None = None) -> ChildProcess | None:
        """The running process `pid` started by an earlier program, or None if `pid` is gone
        or is no longer ours (its command line lacks `marker`)."""
        if not is_ours(pid, marker):
            return None
        child = cls(cmdline(pid).split() or [str(pid)], name=name)
        child._adopted = (pid, marker)
        return child

    def _read(self) -> None:
        assert self._popen is not None and self._popen.stdout is not None
        assert self._on_line is not None
        try:
            for raw in self._popen.stdout:
                self._on_line(raw.decode(errors="replace").rstrip("\n"))
        finally:
            self._lines_done.set()

    # -- state ----------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The PID (also after exit, until the next start), or None if never started."""
        if self._popen is not None:
            return self._popen.pid
        return self._adopted[0] if self._adopted is not None else None

    def running(self) -> bool:
        """True while the process is alive (for an adopted one: and still ours)."""
        if self._popen is not None:
            return self._popen.poll() is None
        if self._adopted is not None:
            return is_ours(*self._adopted)
        return False

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has ended and was reaped (None for an adopted one)."""
        if self._popen is not None:
            return self._popen.poll()
        return self._returncode

    def lines_done(self) -> bool:
        """True once the stdout reader has seen the end of the stream (`on_line` only)."""
        return self._lines_done.is_set()

    # -- talking to it --------------------------------------------------------------------------

    def send(self, line: str) -> None:
        """Write one line to its stdin (`stdin=True`); a child that has exited is ignored."""
        if self._popen is None or self._popen.stdin is None:
            raise ProcessError(f"{self.name}: started without stdin=True")
        with contextlib.suppress(BrokenPipeError, ValueError):
            self._popen.stdin.write(line.encode() + b"\n")
            self._popen.stdin.flush()

    def send_signal(self, sig: int) -> None:
        """Send `sig` if the process still runs (and, adopted, is still ours)."""
        if self._popen is not None:
            if self._popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self._popen.send_signal(sig)
        elif self._adopted is not None and is_ours(*self._adopted):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._adopted[0], sig)

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the process to end; its exit code (None for an adopted one).
        Raises ProcessError if it still runs after `timeout` seconds."""
        if self._popen is not None:
            try:
                return self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                raise ProcessError(f"{self.name} (pid {self.pid}) still runs after "
                                   f"{timeout:.0f} s") from None
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.running():
            if deadline is not None and time.monotonic() >= deadline:
                raise ProcessError(f"{self.name} (pid {self.pid}) still runs after "
                                   f"{timeout:.0f} s")
            time.sleep(POLL_S)
        return None

    # -- stopping -------------------------------------------------------------------------------

    def stop(self, timeout: float = 30.0, *, sig: int = signal.SIGTERM,
             kill_timeout: float = 10.0) -> int | None:
        """`sig` (default SIGTERM), wait up to `timeout` s, then SIGKILL and wait `kill_timeout`;
        then close our pipe ends and join the reader. Returns the exit code. Idempotent.

        Raises ProcessError if the process survives SIGKILL or the reader does not finish."""
        if self.running():
            self.send_signal(sig)
            with contextlib.suppress(ProcessError):
                self.wait(timeout)
        if self.running():
            self.kill(kill_timeout)
        return self._release()

    def kill(self, timeout: float = 10.0) -> int | None:
        """SIGKILL (a crash: no clean shutdown) and wait up to `timeout` s for the exit.
        Raises ProcessError if it still runs."""
        self.send_signal(signal.SIGKILL)
        self.wait(timeout)
        return self.returncode

    def _release(self) -> int | None:
        if self._popen is None:
            return None
        if self._reader is not None:
            self._reader.join(READER_JOIN_S)
            if self._reader.is_alive():
                raise ProcessError(f"{self.name}: stdout reader still open {READER_JOIN_S:.0f} s "
                                   "after the exit (a grandchild holds the pipe?)")
        for stream in (self._popen.stdin, self._popen.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        return self._popen.returncode
