"""The worker's py-spy profile: recording it, and splitting its samples by thread, category and frame."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline_processes import REPO_DIR

PROFILE_RATE = 100  # py-spy samples per second


_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _in(*parts: str) -> Callable[[str, str], bool]:
    return lambda func, path: any(part in path for part in parts)


CATEGORIES: list[tuple[str, Callable[[str, str], bool]]] = [
    ("validation: orjson + pydantic (streams/validation.py)", _in("pydantic", "streams/validation.py")),
    ("window bundles: numpy aggregates (streams/bundle.py, detectors)",
     _in("streams/bundle.py", "streams/columns.py", "streams/exact_sums.py", "detectors/", "numpy/",
         "fractions.py")),
    ("stage 2: merge bundles, window metrics", _in("streams/stage2.py", "streams/finalize.py")),
    ("stage 1 partials: bundle to_dict + orjson (streams/chunks.py)", _in("streams/chunks.py")),
    ("faust table 'joins' (dict, changelog send_soon)",
     _in("faust/tables", "faust/stores", "mode/utils/collections.py")),
    ("aiokafka: produce requests, protocol, socket writes", _in("aiokafka/")),
    ("faust: streams, conductor, topics, producer buffer", _in("faust/")),
    ("mode: faust's service/timer machinery", _in("mode/")),
    ("stage 1: join, chunks, loop over events (streams/stage1.py, join.py)", _in("streams/", "modelmon/")),
    ("logging", _in("logging/")),
]  # fmt: skip
"""Categories of the main thread's samples, most specific first. A sample goes to the first category
matched walking its stack from the leaf up; time in asyncio/selectors/sockets goes to its caller's
category, and only samples with no other match count as the event loop's own (select, dispatch)."""
EVENT_LOOP = "asyncio event loop itself: select(), callback dispatch"


def _parse_frame(text: str) -> tuple[str, str]:
    match = _FRAME.match(text.strip())
    if not match:
        return text.strip(), ""
    return match["func"], match["file"]


def _thread_role(label: str, paths: set[str]) -> str:
    """A readable name for a thread of the worker, from its py-spy label and the files on its stacks."""
    if label.endswith("MainThread"):
        return "main thread: event loop (agents, table, producer, timers)"
    if any("streams/references.py" in p for p in paths):
        return "reference catalog thread (confluent-kafka poll)"
    if any("mode/threads.py" in p for p in paths):
        return "faust consumer thread (aiokafka fetcher)"
    return label.split(": ", 1)[-1] or "other"


def _shares(counter: Counter[str], total: int, n: int | None = None) -> list[tuple[str, float]]:
    return [(k, v / total) for k, v in counter.most_common(n)] if total else []


_ROOT_FRAMES = (
    "runpy", "click/", "modelmon/cli.py", "modelmon/__main__.py", "streams/run.py", "mode/worker.py",
    "asyncio/base_events.py", "asyncio/events.py", "threading.py", "mode/threads.py",
)  # fmt: skip


def analyse_profile(raw: Path, seconds: float, rate: int, top: int = 15) -> dict[str, Any]:
    """Threads, categories and top frames of a py-spy ``--format raw --threads`` file.

    A thread's *busy* share is its samples over ``seconds * rate``: py-spy records only threads that
    are not idle. Category (main thread): the first frame from the leaf upwards that matches one of
    :data:`CATEGORIES`, so time in numpy called by the bundle counts as "bundle", time in aiokafka's
    send called by faust's producer as "aiokafka". Inclusive shares leave out the frames every stack
    runs through (runpy, click, the event loop's run_forever, ...).
    """
    stacks: dict[str, list[tuple[list[tuple[str, str]], int]]] = defaultdict(list)
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        label = frames.pop(0) if frames and frames[0].startswith("thread ") else "thread: ?"
        while frames and frames[0].startswith("process "):
            frames.pop(0)
        if frames:
            stacks[label].append(([_parse_frame(f) for f in frames], int(count_text)))
    threads: Counter[str] = Counter()
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    main_total = 0
    for label, items in stacks.items():
        role = _thread_role(label, {p for parsed, _ in items for _, p in parsed})
        threads[role] += sum(count for _, count in items)
        if not role.startswith("main thread"):
            continue
        for parsed, count in items:
            main_total += count
            func, path = parsed[-1]
            self_counts[f"{func} ({_short(path)})"] += count
            for name in {f"{f} ({_short(p)})" for f, p in parsed if not any(r in p for r in _ROOT_FRAMES)}:
                inclusive[name] += count
            for f, p in reversed(parsed):
                if any(r in p for r in _ROOT_FRAMES):
                    continue
                category = next((name for name, test in CATEGORIES if test(f, p)), None)
                if category is not None:
                    categories[category] += count
                    break
            else:
                generic = any(s in p for _, p in parsed for s in ("asyncio/", "selectors.py"))
                categories[EVENT_LOOP if generic else "other"] += count
    possible = max(1.0, seconds * rate)
    return {
        "samples": sum(threads.values()),
        "main_samples": main_total,
        "seconds": seconds,
        "rate": rate,
        "threads": [(role, n, n / possible) for role, n in threads.most_common()],
        "categories": _shares(categories, main_total),
        "self": _shares(self_counts, main_total, top),
        "inclusive": _shares(inclusive, main_total, top * 2),
    }


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", str(REPO_DIR) + "/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def start_profile(pid: int, seconds: float, raw: Path) -> subprocess.Popen[bytes] | None:
    pyspy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if pyspy is None:
        print("  py-spy not found: .venv/bin/pip install py-spy to profile the worker", flush=True)
        return None
    duration, rate = str(max(1, round(seconds))), str(PROFILE_RATE)
    args = [pyspy, "record", "--pid", str(pid), "--duration", duration, "--rate", rate, "--format", "raw"]
    # --nonblocking: do not pause the worker per sample (less overhead, rare torn stacks).
    args += ["--nonblocking", "--threads", "--output", str(raw)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
