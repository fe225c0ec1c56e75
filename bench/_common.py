"""Helpers shared by the bench scripts (private): child processes with accounting, percentiles,
tables, and a description of the machine the figures came from.

Nothing here is a benchmark; the scripts are `gateway.py` and `agent.py` beside this file.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import queue
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

from common.proc import ChildProcess, tail

REPO = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent


class BenchError(Exception):
    """A run could not be measured (a process failed, a broker refused); the message says which."""


class BenchTimeout(BenchError):
    """The global time budget (--timeout) ran out."""


# -- processes -----------------------------------------------------------------------------------


def peak_rss(pid: int) -> int:
    """Peak resident set size of a live process in bytes: the kernel's high-water mark (VmHWM),
    or the current RSS where /proc has no such line."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (0.0 if it is gone)."""
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system)


@dataclass
class Usage:
    """CPU seconds and peak RSS of one process over a measured interval."""

    cpu_s: float
    peak_rss: int


class Child:
    """A subprocess we own (`common.proc.ChildProcess`), with its stdout read line by line.

    `expect(prefix)` waits for a line; `send(line)` writes one to its stdin; `stop()` ends it by
    PID (SIGTERM, then SIGKILL) and never touches anything else. Raises `BenchError` when the
    process exits or stays silent while we wait for it.
    """

    def __init__(self, name: str, cmd: Sequence[str], *, log: Path, stdout: IO[bytes] | None = None,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.log = log
        self._lines: queue.Queue[str] = queue.Queue()
        self.process = ChildProcess(cmd, name=name, log=log, stdout=stdout,
                                    on_line=self._lines.put if stdout is None else None,
                                    stdin=True, env=env, cwd=cwd).start()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def expect(self, prefix: str, timeout: float) -> str:
        """The next stdout line starting with `prefix` (other lines are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{self.name}: no {prefix!r} line within {timeout:.0f} s; "
                                 f"log {self.log}:\n{tail(self.log)}")
            try:
                line = self._lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.process.lines_done() and self._lines.empty():
                    raise BenchError(f"{self.name} exited ({self.process.wait()}) before "
                                     f"{prefix!r}; log {self.log}:\n{tail(self.log)}") from None
                continue
            if line.startswith(prefix):
                return line[len(prefix):].strip()

    def send(self, line: str) -> None:
        self.process.send(line)

    def alive(self) -> bool:
        return self.process.running()

    def wait(self, timeout: float) -> int | None:
        """Its exit code once it ends; raises `common.proc.ProcessError` after `timeout` s."""
        return self.process.wait(timeout)

    def usage(self, since_cpu: float = 0.0) -> Usage:
        """CPU seconds since `since_cpu` (a `cpu_seconds` reading) and the peak RSS so far."""
        return Usage(cpu_seconds(self.pid) - since_cpu, peak_rss(self.pid))

    def stop(self, timeout: float = 20.0, sig: int = signal.SIGTERM) -> int | None:
        """End the process (`sig`, then SIGKILL after `timeout`) and return its exit code."""
        return self.process.stop(timeout, sig=sig)


def python_cmd(script: str, *args: str) -> list[str]:
    """Run a helper script of bench/ with this interpreter, unbuffered."""
    return [sys.executable, "-u", str(BENCH / script), *args]


# -- figures -------------------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile of unsorted `values`; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return float(ordered[rank - 1])


def fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        out = [cells[0].ljust(widths[0])]
        out += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def machine() -> dict[str, Any]:
    """Where the figures came from: date, cores, memory, CPU model, load, versions."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = psutil.virtual_memory()
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": model or platform.processor() or "unknown",
        "mem_total_gib": round(mem.total / 2**30, 1),
        "mem_available_gib": round(mem.available / 2**30, 1),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": _commit(),
    }


def _commit() -> str:
    """The checked-out commit, and whether the measured code differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=10, check=False).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "protocol", "gateway",
                    "drone_agent", "hw_sim", "presacop", "bench")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}{' + uncommitted changes' if dirty else ''}" if head else "unknown"


def machine_line(info: dict[str, Any]) -> str:
    return (f"{info['date']}  nproc={info['nproc']}  cpu={info['cpu_model']}  "
            f"mem={info['mem_total_gib']} GiB (avail {info['mem_available_gib']})  "
            f"load(1m)={info['loadavg_1m']}  python {info['python']}  code {info['commit']}")


class Alarm:
    """The global time budget: raises `BenchTimeout` in the main thread when it runs out, so the
    `finally` blocks stop every process we started."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def __enter__(self) -> Alarm:
        signal.signal(signal.SIGALRM, self._fire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def _fire(self, _signo: int, _frame: object) -> None:
        raise BenchTimeout(f"global timeout of {self.seconds:.0f} s reached; stopping")
