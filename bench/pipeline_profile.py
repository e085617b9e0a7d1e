"""py-spy on the worker: recording while it drains, and the top frames of the data plane and the rest."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

RATE = 100  # samples per second
REPO_DIR = Path(__file__).resolve().parents[1]
DATA_PLANE = "data-plane"
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
ROOT_FRAMES = (
    "runpy",
    "click/",
    "modelmon/app/cli/",
    "modelmon/__main__.py",
    "streams/run.py",
    "mode/worker.py",
    "asyncio/base_events.py",
    "asyncio/events.py",
    "threading.py",
    "mode/threads.py",
    "faust/cli/",
)
"""Frames every stack of a thread runs through (entry points, the event loop, thread bootstrap): left
out of the inclusive shares, where they would sit at ~100% and say nothing."""


class Profiler:
    """``py-spy record --threads --format raw --nonblocking`` on a process until :meth:`stop`."""

    def __init__(self, pid: int, output: Path) -> None:
        self.output = output
        self.process: subprocess.Popen[bytes] | None = None
        self.error = ""
        self.seconds = 0.0
        pyspy = _pyspy()
        if pyspy is None:
            self.error = "py-spy not found (.venv/bin/pip install py-spy, or pip install -e '.[bench]')"
            return
        args = [pyspy, "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw", "--threads"]
        # --nonblocking: the worker is not paused per sample (less overhead, rare torn stacks).
        args += ["--nonblocking", "--output", str(output)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._started = time.monotonic()

    def stop(self) -> dict[str, Any]:
        """Stop recording (SIGINT makes py-spy write its file) and analyse what it wrote."""
        if self.process is None:
            return {"error": self.error}
        self.seconds = time.monotonic() - self._started
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            _, err = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        if not self.output.exists() or not self.output.stat().st_size:
            return {"error": err.decode(errors="replace")[-1500:] or "py-spy wrote nothing"}
        result = analyse(self.output, self.seconds)
        result["file"] = str(self.output)
        return result


def _pyspy() -> str | None:
    return shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")


def python_thread_names(pid: int) -> dict[int, str]:
    """Native thread id -> Python thread name of a process, from ``py-spy dump`` ({} without py-spy)."""
    pyspy = _pyspy()
    if pyspy is None:
        return {}
    try:
        dump = subprocess.run(
            [pyspy, "dump", "--pid", str(pid), "--nonblocking"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {int(tid): name for tid, name in re.findall(r'^Thread (\d+) \([^)]*\): "([^"]*)"', dump, re.M)}


def _parse_frame(text: str) -> tuple[str, str]:
    match = _FRAME.match(text.strip())
    return (match["func"], match["file"]) if match else (text.strip(), "")


def short_path(path: str) -> str:
    """A frame's file relative to the repository, site-packages or the standard library."""
    for marker in ("site-packages/", f"{REPO_DIR}/"):
        if marker in path:
            return path.split(marker, 1)[1]
    stdlib = re.search(r"/lib/python3\.\d+/(.*)", path)
    return stdlib.group(1) if stdlib else path


def _thread_name(label: str) -> str:
    """``thread (123): data-plane`` -> ``data-plane``."""
    return label.split(": ", 1)[1] if ": " in label else label


def analyse(raw: Path, seconds: float, rate: int = RATE, top: int = 15) -> dict[str, Any]:
    """Busy share per thread, and per group (the data plane, all other threads) the top frames.

    A thread's *busy* share is its samples over ``seconds * rate`` (py-spy records a thread only when
    it is not idle). *Inclusive* share of a frame: the group's samples whose stack contains it
    (counted once per sample), leaving out :data:`ROOT_FRAMES`; *own*: samples where it is the leaf.
    """
    threads: Counter[str] = Counter()
    own: dict[str, Counter[str]] = defaultdict(Counter)
    inclusive: dict[str, Counter[str]] = defaultdict(Counter)
    totals: Counter[str] = Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        label = frames.pop(0) if frames and frames[0].startswith("thread ") else "thread: ?"
        while frames and frames[0].startswith("process "):
            frames.pop(0)
        name, count = _thread_name(label), int(count_text)
        threads[name] += count
        group = DATA_PLANE if DATA_PLANE in name else "other threads"
        totals[group] += count
        parsed = [_parse_frame(f) for f in frames]
        if parsed:
            func, path = parsed[-1]
            own[group][f"{func} ({short_path(path)})"] += count
        names = {f"{f} ({short_path(p)})" for f, p in parsed if not any(r in p for r in ROOT_FRAMES)}
        for frame in names:
            inclusive[group][frame] += count
    possible = max(1.0, seconds * rate)
    groups = {
        group: {
            "samples": total,
            "inclusive": [(k, v / total) for k, v in inclusive[group].most_common(top)],
            "own": [(k, v / total) for k, v in own[group].most_common(top)],
        }
        for group, total in totals.items()
    }
    return {
        "seconds": round(seconds, 1),
        "rate": rate,
        "samples": sum(threads.values()),
        "threads": [(name, n, n / possible) for name, n in threads.most_common()],
        "groups": groups,
    }
