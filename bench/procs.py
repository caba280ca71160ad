"""Processes the bench starts (each in a process group of its own) and CPU time from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Processes:
    """Everything the bench starts, each in a session (process group) of its own, so stopping
    one stops its children too (gunicorn's workers) and nothing else."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self._procs: list[tuple[str, subprocess.Popen[Any]]] = []
        self._files: list[IO[Any]] = []

    def start(
        self,
        name: str,
        args: Sequence[str | os.PathLike[str]],
        *,
        env: dict[str, str],
        log_path: Path | None = None,
        stdin: int | None = None,
        stdout: int | None = None,
        text: bool = False,
    ) -> subprocess.Popen[Any]:
        out: IO[Any] | int | None = stdout
        err: IO[Any] | int | None = None
        if log_path is not None:
            handle = open(log_path, "wb")  # noqa: SIM115 - closed in stop_all()
            self._files.append(handle)
            err = handle
            if out is None:
                out = handle
        proc = subprocess.Popen(
            [str(a) for a in args],
            cwd=self.cwd,
            env=env,
            stdin=stdin,
            stdout=out,
            stderr=err,
            text=text,
            start_new_session=True,
        )
        self._procs.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
        """SIGTERM to the process's group, SIGKILL if it is still there after ``timeout``."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            # Members that outlived their leader (a stuck worker) keep the group id alive.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        self._procs = [(n, p) for n, p in self._procs if p is not proc]

    def stop_all(self) -> None:
        for name, proc in reversed(list(self._procs)):
            try:
                self.stop(proc)
            except Exception as exc:  # keep stopping the others
                log(f"could not stop {name} (pid {proc.pid}): {exc}")
        for handle in self._files:
            handle.close()
        self._files.clear()


def wait_until(
    check: Callable[[], bool], *, timeout: float, what: str, every: float = 0.25
) -> None:
    """Poll ``check`` (exceptions count as "not yet") until true; bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except RuntimeError:
            raise
        except Exception as exc:
            last = exc
        time.sleep(every)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what} ({last})")


# --- CPU time from /proc ----------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat from field 3 (state) on: [1] ppid, [11] utime, [12] stime, [13] cutime,
    [14] cstime (all in clock ticks)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def proc_cpu_s(pid: int, *, with_reaped_children: bool = False) -> float:
    """utime + stime of a process (plus its waited-for children), in seconds."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def children_of(pid: int) -> list[int]:
    found = []
    for child in _pids():
        fields = _stat_fields(child)
        if fields is not None and int(fields[1]) == pid:
            found.append(child)
    return found


def tree_cpu_s(root: int) -> float:
    """A process, its live children (gunicorn's workers) and every child it has reaped."""
    total = proc_cpu_s(root, with_reaped_children=True)
    for child in children_of(root):
        total += proc_cpu_s(child, with_reaped_children=True)
    return total


def comm_cpu_by_pid(names: set[str]) -> dict[int, float]:
    """CPU seconds of every process of these names (machine-wide: PostgreSQL's backends serve
    other databases too)."""
    return {pid: proc_cpu_s(pid) for pid in _pids() if _comm(pid) in names}


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two snapshots by the processes alive at the second (a backend that
    exited in between takes its share with it; one that started counts whole)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first[:8]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class CpuWindow:
    """CPU seconds each process group used during a window, and how busy the machine was."""

    wall_s: float = 0.0
    app_s: float = 0.0
    fake_s: float = 0.0
    postgres_s: float = 0.0
    redis_s: float = 0.0
    machine_busy: float = 0.0
    """Share of all CPUs' time that was busy (0..1), whoever used it."""
    machine_busy_s: float = 0.0
    """CPU seconds used on the whole machine."""


class CpuMeter:
    def __init__(self, app_pid: int, fake_pid: int) -> None:
        self.app_pid = app_pid
        self.fake_pid = fake_pid

    def _snapshot(
        self,
    ) -> tuple[float, float, float, dict[int, float], dict[int, float], tuple[int, int]]:
        return (
            time.monotonic(),
            tree_cpu_s(self.app_pid),
            proc_cpu_s(self.fake_pid),
            comm_cpu_by_pid({"postgres"}),
            comm_cpu_by_pid({"redis-server"}),
            machine_ticks(),
        )

    @contextlib.contextmanager
    def window(self) -> Iterator[CpuWindow]:
        result = CpuWindow()
        before = self._snapshot()
        yield result
        after = self._snapshot()
        result.wall_s = after[0] - before[0]
        result.app_s = after[1] - before[1]
        result.fake_s = after[2] - before[2]
        result.postgres_s = cpu_delta(before[3], after[3])
        result.redis_s = cpu_delta(before[4], after[4])
        busy = after[5][0] - before[5][0]
        total = after[5][1] - before[5][1]
        result.machine_busy = busy / total if total else 0.0
        result.machine_busy_s = busy / CLK_TCK
