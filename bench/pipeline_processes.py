"""The bench's child processes and their CPU time: the worker, faust readers, optional uvloop."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

from modelmon.settings import Settings

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds per thread of a process, keyed "tid name" (the main thread's tid is the pid)."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                name = (task / "comm").read_text().strip()
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                out[f"{task.name} {name}"] = (int(fields[11]) + int(fields[12])) / TICKS
    return out


def own_cpu_seconds() -> float:
    usage = os.times()
    return usage.user + usage.system


class Child:
    """A Python subprocess of this bench with its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            args, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO_DIR
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:]

    def wait_log(self, needle: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log_path.read_text(errors="replace"):
                return True
            if not self.alive():
                return False
            time.sleep(0.2)
        return False

    def stop(self, timeout: float = 20.0) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


def worker_env(settings: Settings, extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **settings.to_env(), **extra}


_UVLOOP = "import runpy, sys, uvloop; uvloop.install(); "
UVLOOP_MODULE = (
    _UVLOOP + "sys.argv = [sys.argv[1], *sys.argv[2:]]; runpy.run_module(sys.argv[0], run_name='__main__')"
)
UVLOOP_SCRIPT = _UVLOOP + "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"


def python_module(module: str, uvloop: bool) -> list[str]:
    """``python -m module``, optionally with uvloop installed as asyncio's event loop first."""
    return [sys.executable, "-c", UVLOOP_MODULE, module] if uvloop else [sys.executable, "-m", module]


def python_script(script: str, uvloop: bool) -> list[str]:
    return [sys.executable, "-c", UVLOOP_SCRIPT, script] if uvloop else [sys.executable, script]
