"""The bench's worker subprocesses, their logs, and CPU time and memory read from /proc."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from modelmon.settings import Settings

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
TICKS = os.sysconf("SC_CLK_TCK")
ASSIGNED = "data plane: assigned"
_DATA_PLANE_STATS = re.compile(r"data plane: (\d+) events in (\d+) batches")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def thread_cpu_seconds(pid: int, names: dict[int, str] | None = None) -> dict[str, float]:
    """CPU seconds per thread of a process, keyed "name (tid)": ``names`` (Python's) or the kernel's."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                name = (names or {}).get(int(task.name)) or (task / "comm").read_text().strip()
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                out[f"{name} ({task.name})"] = (int(fields[11]) + int(fields[12])) / TICKS
    return out


def rss_mb(pid: int) -> float:
    """Resident memory of a process (VmRSS), MB; 0 if it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def own_cpu_seconds() -> float:
    usage = os.times()
    return usage.user + usage.system


class Worker:
    """A ``python -m modelmon worker`` subprocess with its output in a log file read as it grows."""

    def __init__(self, settings: Settings, extra_env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        env = {**os.environ, **settings.to_env(), **extra_env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "modelmon", "worker"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO_DIR,
        )
        self._read = 0
        self._partial = ""
        self.assigned_at: float | None = None  # wall time the data plane's first assignment was seen
        self.data_plane_events = 0  # from the data plane's periodic log line

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def poll_log(self) -> None:
        """Read what the worker logged since the last call; note its assignment and its counts."""
        chunk = b""
        with contextlib.suppress(OSError), self.log_path.open("rb") as handle:
            handle.seek(self._read)
            chunk = handle.read()
        if not chunk:
            return
        self._read += len(chunk)
        text = self._partial + chunk.decode(errors="replace")
        lines = text.split("\n")
        self._partial = lines.pop()
        for line in lines:
            if self.assigned_at is None and ASSIGNED in line:
                self.assigned_at = time.time()
            match = _DATA_PLANE_STATS.search(line)
            if match:
                self.data_plane_events = int(match.group(1))

    def log_tail(self, lines: int = 20, width: int = 200) -> str:
        """The end of the worker's log (from its last traceback, if any), as indented lines."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            text = []
        starts = [i for i, line in enumerate(text) if line.startswith("Traceback")]
        picked = text[-lines:]
        if starts and starts[-1] < len(text) - lines:
            picked = [*text[starts[-1] : starts[-1] + lines - 4], "...", *text[-3:]]
        cut = [line[:width] + (" ..." if len(line) > width else "") for line in picked]
        body = "\n".join(f"    | {line}" for line in cut)
        return f"\n  log of worker pid {self.pid} ({self.log_path}):\n{body}"

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
        return self.process.returncode


def start_workers(
    settings: list[Settings], extra_env: dict[str, str], logs: list[Path], timeout: float = 120.0
) -> list[Worker]:
    """Start one worker per settings at once; return once each data plane has had its partitions."""
    workers = [Worker(s, extra_env, log) for s, log in zip(settings, logs, strict=True)]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for worker in workers:
            worker.poll_log()
        if all(w.assigned_at is not None for w in workers):
            return workers
        failed = [w for w in workers if not w.alive()]
        if failed:
            break
        time.sleep(0.02)
    for worker in workers:
        worker.stop()
    bad = next((w for w in workers if w.assigned_at is None), workers[0])
    state = (
        f"exited with status {bad.process.returncode}"
        if bad.process.returncode is not None
        else (f"had no partitions after {timeout:.0f} s")
    )
    raise PhaseFailed(f"worker pid {bad.pid} {state}{bad.log_tail()}")


class PhaseFailed(RuntimeError):
    """A phase could not be measured; the message says why (the bench prints it, no traceback)."""
