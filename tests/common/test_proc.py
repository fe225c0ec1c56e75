"""common.proc.ChildProcess with real child processes: output, stop, kill, PID checks."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import pytest

from common.proc import ChildProcess, ProcessError, is_ours

PY = sys.executable
# A child that says "ready", echoes stdin lines, and on SIGTERM says "bye" and exits 3.
ECHO = (
    "import signal, sys\n"
    "def bye(*_):\n"
    "    print('bye', flush=True); sys.exit(3)\n"
    "signal.signal(signal.SIGTERM, bye)\n"
    "print('ready', flush=True)\n"
    "for line in sys.stdin:\n"
    "    print('echo ' + line.strip(), flush=True)\n"
)


class Lines:
    """The child's stdout lines, and a way to wait for one."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._changed = threading.Condition()

    def add(self, line: str) -> None:
        with self._changed:
            self.seen.append(line)
            self._changed.notify_all()

    def wait_for(self, line: str, timeout: float = 30.0) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: line in self.seen, timeout), \
                f"no {line!r} line from the child within {timeout} s; saw {self.seen}"


STUBBORN = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n" \
           "print('ready', flush=True)\ntime.sleep(600)\n"


def test_lines_are_read_stdin_is_written_and_sigterm_ends_it(tmp_path: Path) -> None:
    lines = Lines()
    child = ChildProcess([PY, "-c", ECHO], name="echo", log=tmp_path / "echo.log",
                         on_line=lines.add, stdin=True).start()
    lines.wait_for("ready")
    child.send("hello")
    lines.wait_for("echo hello")
    assert child.stop(timeout=30) == 3
    assert lines.seen[-1] == "bye" and child.lines_done() and not child.running()
    assert child.stop() == 3  # idempotent


def test_a_child_ignoring_sigterm_is_killed_after_the_timeout(tmp_path: Path) -> None:
    lines = Lines()
    child = ChildProcess([PY, "-c", STUBBORN], on_line=lines.add).start()
    lines.wait_for("ready")
    assert child.stop(timeout=0.5) == -signal.SIGKILL


def test_output_goes_to_the_log_file(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    script = "import sys; print('to out'); print('to err', file=sys.stderr)"
    child = ChildProcess([PY, "-c", script], log=log).start()
    assert child.wait(30) == 0
    child.stop()
    assert sorted(log.read_text().splitlines()) == ["to err", "to out"]


def test_adopt_checks_the_command_line_before_signalling(tmp_path: Path) -> None:
    marker = str(tmp_path / "marker.conf")
    lines = Lines()
    owner = ChildProcess([PY, "-c", STUBBORN, marker], on_line=lines.add).start()
    lines.wait_for("ready")
    pid = owner.pid
    assert pid is not None and is_ours(pid, marker)
    assert ChildProcess.adopt(pid, str(tmp_path / "other.conf")) is None  # not ours: untouched
    adopted = ChildProcess.adopt(pid, marker, name="stubborn")
    assert adopted is not None and adopted.running()
    adopted.stop(timeout=0.5)  # SIGTERM is ignored: SIGKILL by PID after the check
    assert owner.wait(30) == -signal.SIGKILL
    owner.stop()
    assert not adopted.running()


def test_a_missing_program_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ProcessError, match="cannot start /nonexistent/prog"):
        ChildProcess(["/nonexistent/prog"]).start()
