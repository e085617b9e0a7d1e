"""End-to-end throughput and latency of the streaming pipeline, with a profile of the worker (issue #4).

Usage (from the repository root)::

    .venv/bin/pip install py-spy                      # once, for the worker profile (optional)
    .venv/bin/python bench/bench_pipeline.py          # 200k events, 10-15 minutes on 2 cores
    .venv/bin/python bench/bench_pipeline.py --quick  # 20k events, 2-3 minutes
    .venv/bin/python bench/bench_pipeline.py --help

One embedded broker (noida-db), one ``modelmon worker`` subprocess, the ClickHouse sink in this
process writing to an embedded chDB, and the SDK (``MonitorClient``) producing from this process.
The model is a binary classifier with 20 features (16 numerical, 4 categorical); a fraction of the
predictions get a label right after the prediction.

Phases (see bench/README.md, section "Pipeline", for the definitions):

1. per-event costs of the hot-path steps, in process (CPU time);
2. references, without the worker: the SDK's produce rate; consume-only rates of the same messages
   with confluent-kafka, with a no-op faust agent and with a faust agent that validates; the same
   predictions packed 100 per message, validated per message by a faust agent;
3. throughput: the worker is started and warmed up, then N events are produced as fast as the SDK
   goes; events/s = N / (first produce -> the insert after which ClickHouse holds all N). The
   worker is profiled with py-spy meanwhile (``--no-profile`` to skip);
4. latency: events produced at a fixed rate in a timed pattern of windows; per window, the time from
   its last event being logged to the insert of its ``events`` row with the final count.

Prints tables, ``RESULT`` lines and the command to reproduce; writes ``bench/results/pipeline.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent

from modelmon.settings import Settings  # noqa: E402

N_NUMERICAL = 16
N_CATEGORICAL = 4
CATEGORY_COUNTS = (3, 5, 12, 40)
POOL_SIZE = 4096
THROUGHPUT_MODEL = "bench-20f"
LATENCY_MODEL = "bench-20f-latency"
WARMUP_MODEL = "bench-20f-warmup"
WARMUP_EVENTS = 300
WINDOW_MS = 60_000  # the worker's default window (MODELMON_WINDOW_SECONDS=60)
TICKS = os.sysconf("SC_CLK_TCK")
PROFILE_RATE = 100  # py-spy samples per second
VERSIONED = (
    "faust-streaming",
    "aiokafka",
    "confluent-kafka",
    "pydantic",
    "orjson",
    "numpy",
    "chdb",
    "noida-db",
    "py-spy",
)


# -- the model and its traffic --------------------------------------------------------------------
def feature_names() -> tuple[list[str], list[str]]:
    return [f"num_{i:02d}" for i in range(N_NUMERICAL)], [f"cat_{i}" for i in range(N_CATEGORICAL)]


def write_spec(directory: Path, model_id: str) -> None:
    """A binary model with 16 numerical and 4 categorical features, no segments.

    No ``reference`` section: the default applies (``first_n``, 5,000 events), so as in production the
    worker builds a reference from the first events and computes drift for the windows after it.
    """
    numerical, categorical = feature_names()
    features: dict[str, Any] = {name: {"type": "numerical"} for name in numerical}
    features["num_00"] = {"type": "numerical", "min": 0, "required": True}
    for name, n in zip(categorical, CATEGORY_COUNTS, strict=True):
        features[name] = {"type": "categorical", "allowed": [f"{name}_v{j}" for j in range(n)]}
    spec = {"model_id": model_id, "task": "binary", "positive_class": "1", "features": features}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{model_id}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


@dataclass(frozen=True)
class Traffic:
    """A pool of pre-generated feature rows, predictions and scores, cycled through by index.

    Generated up front so that the SDK figure measures the SDK, not the random number generator.
    """

    features: list[dict[str, Any]]
    predictions: list[int]
    scores: list[float]
    labels: list[int]
    label_fraction: float

    @classmethod
    def generate(cls, seed: int, label_fraction: float, size: int = POOL_SIZE) -> Traffic:
        rng = np.random.default_rng(seed)
        numerical, categorical = feature_names()
        values = np.round(rng.lognormal(0.0, 1.0, (size, N_NUMERICAL)), 4)
        choices = [rng.integers(0, n, size) for n in CATEGORY_COUNTS]
        rows = []
        for i in range(size):
            row: dict[str, Any] = {name: float(values[i, j]) for j, name in enumerate(numerical)}
            for name, picked in zip(categorical, choices, strict=True):
                row[name] = f"{name}_v{int(picked[i])}"
            rows.append(row)
        scores = np.round(rng.random(size), 6)
        labels = (rng.random(size) < scores).astype(int)
        return cls(rows, [int(s >= 0.5) for s in scores], scores.tolist(), labels.tolist(), label_fraction)

    def labelled(self, i: int) -> bool:
        """Deterministically spread: event i gets a label iff i is in the first fraction of its 1000."""
        return (i * 7919) % 1000 < self.label_fraction * 1000


def log_event(client: Any, traffic: Traffic, model_id: str, i: int, ts: int | None = None) -> int:
    """Log prediction ``i`` (and its label, if it gets one); returns the number of messages sent."""
    k = i % POOL_SIZE
    pid = client.log_prediction(
        model_id, traffic.features[k], traffic.predictions[k], score=traffic.scores[k], ts=ts
    )
    if traffic.labelled(i):
        client.log_ground_truth(model_id, pid, traffic.labels[k], ts=ts)
        return 2
    return 1


def produce(client: Any, traffic: Traffic, model_id: str, n: int) -> tuple[int, float]:
    """Log ``n`` events as fast as the SDK goes and flush; returns (messages, seconds)."""
    messages = 0
    started = time.perf_counter()
    for i in range(n):
        messages += log_event(client, traffic, model_id, i)
    if client.flush(120):
        raise RuntimeError("SDK: messages still undelivered after 120 s")
    return messages, time.perf_counter() - started


# -- the sink, recording when each metric row reached ClickHouse ----------------------------------
def recording_writer_class() -> type:
    from modelmon.events import MetricPoint
    from sinks.writer import ClickHouseWriter

    class RecordingWriter(ClickHouseWriter):
        """A ClickHouseWriter that notes when each whole-model ``events``/``labels`` row was stored.

        ``write`` returns once ClickHouse has acknowledged the insert, so the time taken right
        after it is when the row became readable.
        """

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.cond = threading.Condition()
            # (model, metric, window_start_ms) -> (revision, value) of the newest row: what FINAL reads
            self.latest: dict[tuple[str, str, int], tuple[int, float]] = {}
            # (model, metric, window_start_ms, value) -> wall time the first row with that value landed
            self.first_landed: dict[tuple[str, str, int, float], float] = {}
            self.rows = 0

        def write(self, events: Sequence[Any]) -> int:
            written = super().write(events)
            now = time.time()
            with self.cond:
                for event in events:
                    if (
                        not isinstance(event, MetricPoint)
                        or event.segment
                        or event.metric
                        not in (
                            "events",
                            "labels",
                        )
                    ):
                        continue
                    start = int(event.window_start.timestamp() * 1000)
                    key = (event.model_id, event.metric, start)
                    if key not in self.latest or self.latest[key][0] <= event.revision:
                        self.latest[key] = (event.revision, event.value)
                    self.first_landed.setdefault((*key, event.value), now)
                self.rows += written
                self.cond.notify_all()
            return written

        def total(self, model_id: str, metric: str) -> int:
            with self.cond:
                return int(
                    sum(v for (m, k, _), (_, v) in self.latest.items() if m == model_id and k == metric)
                )

        def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
            deadline = time.monotonic() + timeout
            with self.cond:
                while not predicate():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self.cond.wait(min(remaining, 1.0))
            return True

    return RecordingWriter


# -- processes ------------------------------------------------------------------------------------
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


# -- reference points -----------------------------------------------------------------------------
def consume_confluent(bootstrap: str, topics: list[str], expected: int) -> tuple[int, float]:
    """Read ``expected`` messages raw (no parsing) with confluent-kafka; returns (messages, seconds)."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-consume-{os.getpid()}-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe(topics)
    seen, first, deadline = 0, 0.0, time.monotonic() + 300
    while seen < expected and time.monotonic() < deadline:
        batch = consumer.consume(5000, timeout=1.0)
        good = sum(1 for m in batch if m.error() is None)
        if good and not first:
            first = time.perf_counter()
        seen += good
    elapsed = time.perf_counter() - first if first else float("nan")
    consumer.close()
    return seen, elapsed


def floor_main(mode: str, out: Path, expected: int) -> None:
    """Child process: a faust app whose only agent reads predictions + ground-truth and counts them.

    ``mode`` ``noop`` does nothing per message (faust's own per-message cost); ``validate`` parses
    and validates each message as stage 1 does (JSON, the pydantic contract, the model spec);
    ``packed`` reads messages that each hold a JSON array of events and validates each message in
    one ``TypeAdapter(list[PredictionEvent]).validate_json`` call plus the spec check per event.
    Writes {"messages", "events", "seconds"} to ``out`` once ``expected`` events were taken.
    """
    import faust
    from pydantic import TypeAdapter, ValidationError

    from modelmon.events import GroundTruthEvent, PredictionEvent
    from modelmon.spec import load_specs
    from streams.app import build_app
    from streams.validation import InvalidEvent, check_against_spec, parse_event

    packed = TypeAdapter(list[PredictionEvent])
    settings = Settings()
    specs = load_specs(settings.models_path)
    app = build_app(settings, partitions=settings.topic_partitions)
    predictions = settings.topics.predictions
    topic = app.topic(predictions, settings.topics.ground_truth, key_serializer="raw", value_serializer="raw")
    state = {"seen": 0, "events": 0, "first": 0.0, "invalid": 0, "done": False}

    def handle(message: Any) -> int:
        """Validate one message as ``mode`` says; returns the number of events it held."""
        if mode == "validate":
            if message.topic == predictions:
                check_against_spec(parse_event(message.value, PredictionEvent), specs)
            else:
                parse_event(message.value, GroundTruthEvent)
        elif mode == "packed":
            batch = packed.validate_json(message.value)
            for item in batch:
                check_against_spec(item, specs)
            return len(batch)
        return 1

    @app.agent(topic, name="bench-floor")
    async def floor(stream: Any) -> None:
        # The plain per-message iteration, as the worker's agents read (streams/batching.py).
        async for event in stream.events():
            if not state["first"]:
                state["first"] = time.perf_counter()
            try:
                state["events"] += handle(event.message)
            except (InvalidEvent, ValidationError):
                state["invalid"] += 1
            state["seen"] += 1
            if state["events"] >= expected and not state["done"]:
                state["done"] = True
                seconds = time.perf_counter() - state["first"]
                result = {"messages": state["seen"], "events": state["events"], "seconds": seconds}
                out.write_text(json.dumps({**result, "invalid": state["invalid"]}))

    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


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


def run_floor(
    mode: str,
    settings: Settings,
    workdir: Path,
    expected: int,
    extra_env: dict[str, str],
    uvloop: bool = False,
) -> dict:
    """Run :func:`floor_main` in a subprocess; returns its result plus its CPU seconds."""
    out = workdir / f"floor-{mode}.json"
    floor_settings = settings.model_copy(
        update={"app_id": f"bench-floor-{mode}", "worker_data_dir": workdir / f"floor-{mode}"}
    )
    args = [
        *python_script(str(Path(__file__).resolve()), uvloop),
        "--floor",
        mode,
        "--floor-out",
        str(out),
        "--floor-expected",
        str(expected),
    ]
    child = Child(args, worker_env(floor_settings, extra_env), workdir / f"floor-{mode}.log")
    cpu_start = cpu_seconds(child.pid)
    try:
        deadline = time.monotonic() + max(120.0, expected / 500)
        while not out.exists():
            if not child.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"faust {mode} reader failed or timed out:\n{child.log_tail()}")
            time.sleep(0.2)
        cpu = cpu_seconds(child.pid) - cpu_start
    finally:
        child.stop()
    result = json.loads(out.read_text())
    result["cpu_seconds"] = cpu  # whole process, start-up included
    return result


# -- microbenchmarks: per-event cost of each hot-path step, in this process ----------------------
def _per_event_us(fn: Callable[[], Any], n_events: int, min_seconds: float = 0.3) -> float:
    """CPU microseconds per event (process time: robust to other jobs sharing the cores)."""
    fn()  # warm-up
    best = math.inf
    for _ in range(3):
        rounds, started = 0, time.process_time()
        while True:
            fn()
            rounds += 1
            elapsed = time.process_time() - started
            if elapsed >= min_seconds / 3:
                break
        best = min(best, elapsed / (rounds * n_events) * 1e6)
    return best


def microbench(traffic: Traffic, model_dir: Path) -> list[tuple[str, float]]:
    """Microseconds per event of the steps stage 1 runs per message (one core, no Kafka, no faust)."""
    from pydantic import TypeAdapter

    from modelmon.events import PredictionEvent, model_to_json
    from modelmon.spec import load_specs
    from streams.bundle import WindowBundle
    from streams.join import on_prediction, prediction_record
    from streams.stage1 import bundle_keys
    from streams.validation import check_against_spec, parse_event

    specs = load_specs(model_dir)
    spec = specs[THROUGHPUT_MODEL]
    n = 1000
    events = [
        PredictionEvent(
            model_id=THROUGHPUT_MODEL,
            features=traffic.features[i],
            prediction=traffic.predictions[i],
            score=traffic.scores[i],
        )
        for i in range(n)
    ]
    payloads = [model_to_json(e) for e in events]
    sdk_fields = [
        {
            "model_id": THROUGHPUT_MODEL,
            "model_version": "1",
            "features": dict(traffic.features[i]),
            "prediction": traffic.predictions[i],
            "score": traffic.scores[i],
            "scores": None,
            "tags": {},
        }
        for i in range(n)
    ]  # what MonitorClient.log_prediction validates
    packed = b"[" + b",".join(payloads) + b"]"
    batch_adapter = TypeAdapter(list[PredictionEvent])
    keys = bundle_keys(spec, events[0], WINDOW_MS)
    ingest = np.full(n, int(time.time() * 1000), dtype=np.int64)

    def validate_each() -> None:
        for p in payloads:
            check_against_spec(parse_event(p, PredictionEvent), specs)

    def join_each() -> None:
        store: dict[str, Any] = {}
        for e in events:
            ts = int(e.ts.timestamp() * 1000)
            record = prediction_record(
                e.model_id,
                e.model_version,
                ts,
                e.prediction,
                e.score,
                e.scores,
                [k.segment for k in bundle_keys(spec, e, WINDOW_MS)],
                "t|0|1",
            )
            on_prediction(store, e.prediction_id, record)

    def bundle_add() -> None:
        WindowBundle.empty(keys[0], spec, None).add_predictions(events, ingest, spec)

    def bundle_ship() -> None:
        bundle = WindowBundle.empty(keys[0], spec, None)
        bundle.add_predictions(events, ingest, spec)
        WindowBundle.from_dict(orjson.loads(orjson.dumps(bundle.to_dict())))

    steps: list[tuple[str, Callable[[], Any]]] = [
        (
            "SDK: PredictionEvent.model_validate + model_to_json",
            lambda: [model_to_json(PredictionEvent.model_validate(f)) for f in sdk_fields],
        ),
        ("stage 1: orjson.loads only", lambda: [orjson.loads(p) for p in payloads]),
        ("stage 1: parse_event + check_against_spec (orjson + pydantic, per message)", validate_each),
        (
            "alternative: one TypeAdapter(list[PredictionEvent]).validate_json per 1000 (packed)",
            lambda: batch_adapter.validate_json(packed),
        ),
        ("stage 1: join record + on_prediction (plain dict, no faust table)", join_each),
        ("stage 1: WindowBundle.add_predictions, batches of 1000", bundle_add),
        ("stage 1->2: + to_dict, orjson, from_dict of the bundle (per 1000 events)", bundle_ship),
    ]
    return [(name, _per_event_us(fn, n)) for name, fn in steps]


# -- the profile ----------------------------------------------------------------------------------
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


# -- the phases -----------------------------------------------------------------------------------
@dataclass
class Results:
    config: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    micro: list[tuple[str, float]] = field(default_factory=list)
    throughput: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def stage1_complete_at(settings: Settings, model_id: str, events: int, labels: int) -> float | None:
    """When stage 1 had published partials covering all ``events`` and ``labels`` of ``model_id``.

    Reads the internal partials topic after the run (no load during it) and replays its messages
    in the order of their timestamps (set by the worker's producer when it sent them): the newest
    revision of each (chunk, window) counts, as in stage 2. Returns epoch seconds, or None.
    """
    from confluent_kafka import Consumer, TopicPartition

    from streams.topology import partials_topic_name

    topic = partials_topic_name(settings)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"bench-partials-{time.time_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    records: list[tuple[int, tuple[str, int], int, int, int]] = []
    open_partitions, deadline = set(partitions), time.monotonic() + 60
    while open_partitions and time.monotonic() < deadline:
        for message in consumer.consume(500, timeout=1.0):
            if message.error() is not None:
                open_partitions.discard(message.partition())
                continue
            data = orjson.loads(message.value())
            bundle = data["bundle"]
            if bundle["key"]["model_id"] != model_id or bundle["key"]["segment"]:
                continue
            key = (str(data["source"]), int(bundle["key"]["window_start_ms"]))
            records.append(
                (message.timestamp()[1], key, int(data["revision"]), bundle["events"], bundle["labels"])
            )
    consumer.close()
    latest: dict[tuple[str, int], tuple[int, int, int]] = {}
    for ts_ms, key, revision, n_events, n_labels in sorted(records, key=lambda r: r[0]):
        if key not in latest or latest[key][0] <= revision:
            latest[key] = (revision, n_events, n_labels)
        if sum(v[1] for v in latest.values()) >= events and sum(v[2] for v in latest.values()) >= labels:
            return ts_ms / 1000
    return None


def warm_up(settings: Settings, traffic: Traffic, writer: Any, worker: Child) -> None:
    """A few events of their own model through the whole pipeline, so first-call costs are paid."""
    from modelmon.sdk import MonitorClient

    with MonitorClient(settings.kafka_bootstrap, settings.topic_prefix) as client:
        for i in range(WARMUP_EVENTS):
            log_event(client, traffic, WARMUP_MODEL, i)
    if not writer.wait_for(lambda: writer.total(WARMUP_MODEL, "events") >= WARMUP_EVENTS, 120):
        raise RuntimeError(f"warm-up events did not reach ClickHouse:\n{worker.log_tail()}")


def run_throughput(
    settings: Settings,
    traffic: Traffic,
    writer: Any,
    worker: Child,
    args: argparse.Namespace,
    results: Results,
) -> None:
    from modelmon.sdk import MonitorClient

    n = args.events
    labels = sum(1 for i in range(n) if traffic.labelled(i))
    print(f"[throughput] producing {n:,} events ({labels:,} labelled) while the worker runs", flush=True)
    profiler = None
    raw = Path(args.workdir_path) / "worker-profile.txt"
    worker_cpu0, own_cpu0, broker_cpu0 = (
        cpu_seconds(worker.pid),
        own_cpu_seconds(),
        cpu_seconds(args.broker_pid),
    )
    threads0 = thread_cpu_seconds(worker.pid)
    load0 = os.getloadavg()[0]
    t0 = time.time()
    timer = None
    if args.profile:
        # Profile the steady part: start once the worker has a backlog, stop before the window tail.
        def begin() -> None:
            nonlocal profiler
            profiler = start_profile(worker.pid, args.profile_seconds, raw)

        timer = threading.Timer(args.profile_delay, begin)
        timer.start()
    with MonitorClient(settings.kafka_bootstrap, settings.topic_prefix) as client:
        messages, produce_seconds = produce(client, traffic, THROUGHPUT_MODEL, n)
    t_produced = time.time()
    print(
        f"  SDK done after {produce_seconds:.1f} s ({n / produce_seconds:,.0f} events/s while the worker ran)"
    )

    def complete() -> bool:
        return (
            writer.total(THROUGHPUT_MODEL, "events") >= n
            and writer.total(THROUGHPUT_MODEL, "labels") >= labels
        )

    timeout = args.timeout or max(300.0, n / 200)
    last_report = [time.monotonic()]

    def progress() -> bool:
        if not worker.alive():
            raise RuntimeError(f"the worker exited:\n{worker.log_tail()}")
        if time.monotonic() - last_report[0] > 15:
            last_report[0] = time.monotonic()
            print(f"  ... {writer.total(THROUGHPUT_MODEL, 'events'):,} events in ClickHouse", flush=True)
        return complete()

    ok = writer.wait_for(progress, timeout)
    with writer.cond:
        landed = [
            t for (m, k, _, _), t in writer.first_landed.items() if m == THROUGHPUT_MODEL and k == "events"
        ]
    t_done = max(landed) if ok and landed else time.time()
    worker_cpu = cpu_seconds(worker.pid) - worker_cpu0
    threads = {k: v - threads0.get(k, 0.0) for k, v in thread_cpu_seconds(worker.pid).items()}
    main_cpu = next((v for k, v in threads.items() if k.split(" ", 1)[0] == str(worker.pid)), 0.0)
    own_cpu = own_cpu_seconds() - own_cpu0
    broker_cpu = cpu_seconds(args.broker_pid) - broker_cpu0
    if timer is not None:
        timer.cancel()
    if profiler is not None:
        _, err = profiler.communicate(timeout=args.profile_seconds + 60)
        if raw.exists() and raw.stat().st_size:
            results.profile = analyse_profile(raw, round(args.profile_seconds), PROFILE_RATE)
            results.profile["file"] = str(raw)
            if args.json:  # keep the collapsed stacks (speedscope, flamegraph.pl) beside the results
                kept = args.json.with_name(args.json.stem + "-worker-profile.txt")
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(raw, kept)
                results.profile["file"] = str(kept)
            results.profile["started_after"] = args.profile_delay
        else:
            results.profile = {"error": err.decode(errors="replace")[-2000:]}
    elapsed = t_done - t0
    stage1_at = stage1_complete_at(settings, THROUGHPUT_MODEL, n, labels) if ok else None
    stage1_s = stage1_at - t0 if stage1_at is not None else float("nan")
    results.throughput = {
        "complete": ok,
        "events": n,
        "labels": labels,
        "messages": messages,
        "counted_events": writer.total(THROUGHPUT_MODEL, "events"),
        "counted_labels": writer.total(THROUGHPUT_MODEL, "labels"),
        "seconds": elapsed,
        "events_per_s": n / elapsed,
        "messages_per_s": messages / elapsed,
        "sdk_seconds": produce_seconds,
        "sdk_events_per_s": n / produce_seconds,
        "tail_after_produced_s": t_done - t_produced,
        "stage1_seconds": stage1_s,
        "stage1_events_per_s": n / stage1_s,
        "tail_after_stage1_s": t_done - stage1_at if stage1_at is not None else float("nan"),
        "worker_cpu_s": worker_cpu,
        "worker_events_per_cpu_s": n / worker_cpu if worker_cpu else float("nan"),
        "worker_main_thread_cpu_s": main_cpu,
        "worker_main_thread_us_per_event": 1e6 * main_cpu / n,
        "worker_thread_cpu_s": {
            k: round(v, 2) for k, v in sorted(threads.items(), key=lambda x: -x[1]) if v > 0.05
        },
        "broker_cpu_s": broker_cpu,
        "bench_process_cpu_s": own_cpu,
        "loadavg_1m_before": load0,
        "loadavg_1m_after": os.getloadavg()[0],
    }
    state = "complete" if ok else "INCOMPLETE (timed out)"
    counted = (results.throughput["counted_events"], results.throughput["counted_labels"])
    results.throughput["exact"] = counted == (n, labels)
    if counted != (n, labels):
        print(f"  WARNING: ClickHouse holds {counted[0]:,} events and {counted[1]:,} labels of {n:,} and "
              f"{labels:,} sent (worker log: {worker.log_path})", flush=True)  # fmt: skip
    print(
        f"  {state}: {n:,} events in {elapsed:.1f} s = {n / elapsed:,.0f} events/s end to end "
        f"(stage 1 had published them all after {stage1_s:.1f} s = {n / stage1_s:,.0f} events/s); "
        f"worker CPU {worker_cpu:.1f} s = {n / max(worker_cpu, 1e-9):,.0f} events per CPU-second, "
        f"main thread {1e6 * main_cpu / n:,.0f} µs per event",
        flush=True,
    )


def run_latency(
    settings: Settings,
    traffic: Traffic,
    writer: Any,
    worker: Child,
    args: argparse.Namespace,
    results: Results,
) -> None:
    """Windows produced one after another at a fixed rate; per window: last event logged -> final row.

    Event times are synthetic: window k of ``LATENCY_MODEL`` gets event times in the k-th window after
    a base an hour ahead, so one window of event time is produced in ``1/windows_per_second`` s of
    wall time and each window is finished at a known instant. The worker runs with a large
    ``allowed_lateness`` so windows close as under steady real-time traffic (by the grace period
    after their last partial) and not early through the compressed event-time watermark.
    Production goes on (unmeasured filler windows) until every measured window has landed, so the
    measured ones see steady traffic to the end. Compressing event time gives a chunk more windows
    (bundles) than real-time traffic would, so stage 2 works harder per event than in production.
    """
    from modelmon.sdk import MonitorClient

    rate = args.latency_rate or max(100.0, round(0.5 * results.throughput.get("events_per_s", 400), -1))
    per_window = max(1, round(rate / args.windows_per_second))
    measured = max(1, round(args.latency_seconds * args.windows_per_second))
    window_ms = settings.window_seconds * 1000
    base = (int(time.time() * 1000) // window_ms + 3_600_000 // window_ms + 1) * window_ms
    # A window's last partial comes when the chunks holding it rotate (chunk_size offsets per partition).
    rotation = settings.chunk_size * settings.topic_partitions / rate
    timeout = args.latency_timeout if args.latency_timeout is not None else 2 * rotation + 60
    print(
        f"[latency] {rate:,.0f} events/s, {per_window} events per window, {measured} measured windows "
        f"({args.windows_per_second}/s), filler until they have landed; chunk rotation ~{rotation:.0f} s",
        flush=True,
    )
    last_logged: dict[int, float] = {}
    landed: dict[int, float] = {}

    def check_landed() -> None:
        with writer.cond:
            for k in range(measured):
                if k not in landed:
                    t = writer.first_landed.get(
                        (LATENCY_MODEL, "events", base + k * window_ms, float(per_window))
                    )
                    if t is not None:
                        landed[k] = t

    started = time.perf_counter()
    deadline = time.monotonic() + args.latency_seconds + timeout
    i = window = 0
    with MonitorClient(settings.kafka_bootstrap, settings.topic_prefix) as client:
        while time.monotonic() < deadline:
            window, within = divmod(i, per_window)
            ts = base + window * window_ms + within * window_ms // per_window
            log_event(client, traffic, LATENCY_MODEL, i, ts=ts)
            if within == per_window - 1:
                last_logged[window] = time.time()
                if window >= measured - 1:
                    check_landed()
                    if len(landed) == measured:
                        break
                    if not worker.alive():
                        raise RuntimeError(f"the worker exited:\n{worker.log_tail()}")
            i += 1
            ahead = started + i / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        client.flush(30)
    check_landed()
    lat = [landed[k] - last_logged[k] for k in range(measured) if k in landed]
    results.latency = {
        "rate": rate,
        "events_per_window": per_window,
        "windows_per_second": args.windows_per_second,
        "measured_windows": measured,
        "landed_windows": len(lat),
        "filler_windows": max(0, window + 1 - measured),
        "p50_s": percentile(lat, 50),
        "p90_s": percentile(lat, 90),
        "p99_s": percentile(lat, 99),
        "min_s": min(lat) if lat else float("nan"),
        "max_s": max(lat) if lat else float("nan"),
        "chunk_rotation_s": rotation,
    }
    print(
        f"  {len(lat)}/{measured} windows landed: latency p50 {results.latency['p50_s']:.2f} s, "
        f"p99 {results.latency['p99_s']:.2f} s (max {results.latency['max_s']:.2f} s)",
        flush=True,
    )


def run_references(
    settings: Settings, traffic: Traffic, workdir: Path, args: argparse.Namespace, results: Results
) -> None:
    from modelmon.sdk import MonitorClient
    from streams.run import prepare_topics

    n = args.reference_events
    ref = settings.model_copy(update={"topic_prefix": "ref."})
    prepare_topics(ref)
    print(f"[reference] SDK producing {n:,} events (no worker running)", flush=True)
    cpu0 = own_cpu_seconds()
    with MonitorClient(settings.kafka_bootstrap, ref.topic_prefix) as client:
        messages, seconds = produce(client, traffic, THROUGHPUT_MODEL, n)
    results.reference["sdk"] = {
        "events": n,
        "messages": messages,
        "seconds": seconds,
        "events_per_s": n / seconds,
        "cpu_s": own_cpu_seconds() - cpu0,
    }
    print(f"  SDK: {n / seconds:,.0f} events/s ({messages / seconds:,.0f} messages/s)", flush=True)
    topics = [ref.topics.predictions, ref.topics.ground_truth]
    got, seconds = consume_confluent(settings.kafka_bootstrap, topics, messages)
    results.reference["confluent"] = {"messages": got, "seconds": seconds, "messages_per_s": got / seconds}
    print(f"  confluent-kafka consume only: {got / seconds:,.0f} messages/s", flush=True)
    for mode in [m for m in args.floors if m != "packed"]:
        print(f"  faust agent ({mode}) reading the same {messages:,} messages ...", flush=True)
        result = run_floor(mode, ref, workdir, messages, args.extra_env, args.uvloop)
        result["messages_per_s"] = result["messages"] / result["seconds"]
        results.reference[f"faust-{mode}"] = result
        print(f"  faust agent ({mode}): {result['messages_per_s']:,.0f} messages/s", flush=True)
    if "packed" in args.floors:
        packed = settings.model_copy(update={"topic_prefix": "refpacked."})
        prepare_topics(packed)
        print(f"  packing {n:,} predictions, {args.pack} per message (what a packing SDK would send) ...")
        cpu0 = own_cpu_seconds()
        sent, seconds = produce_packed(packed, traffic, n, args.pack)
        results.reference["sdk-packed"] = {
            "events": n, "messages": sent, "seconds": seconds, "events_per_s": n / seconds,
            "cpu_s": own_cpu_seconds() - cpu0, "pack": args.pack,
        }  # fmt: skip
        print(f"  packed produce: {n / seconds:,.0f} events/s", flush=True)
        result = run_floor("packed", packed, workdir, n, args.extra_env, args.uvloop)
        result["messages_per_s"] = result["messages"] / result["seconds"]
        result["events_per_s"] = result["events"] / result["seconds"]
        result["pack"] = args.pack
        results.reference["faust-packed"] = result
        print(f"  faust agent (packed, validate): {result['events_per_s']:,.0f} events/s", flush=True)


def produce_packed(settings: Settings, traffic: Traffic, n: int, pack: int) -> tuple[int, float]:
    """``n`` predictions as JSON arrays of ``pack`` events per message (no labels); (messages, seconds).

    Each event is validated and serialised as the SDK does; only the Kafka message is shared.
    """
    from confluent_kafka import Producer

    from modelmon.events import PredictionEvent, model_to_json
    from modelmon.sdk import DEFAULT_PRODUCER_CONFIG

    producer = Producer({**DEFAULT_PRODUCER_CONFIG, "bootstrap.servers": settings.kafka_bootstrap})
    topic, messages = settings.topics.predictions, 0
    started = time.perf_counter()
    for first in range(0, n, pack):
        items = []
        for i in range(first, min(n, first + pack)):
            k = i % POOL_SIZE
            fields = {"model_id": THROUGHPUT_MODEL, "features": traffic.features[k],
                      "prediction": traffic.predictions[k], "score": traffic.scores[k]}  # fmt: skip
            items.append(model_to_json(PredictionEvent.model_validate(fields)))
        while True:
            try:
                producer.produce(topic, key=str(first).encode(), value=b"[" + b",".join(items) + b"]")
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        messages += 1
    undelivered = producer.flush(120)
    seconds = time.perf_counter() - started
    del producer  # librdkafka's client goes now, not when the broker is already gone
    if undelivered:
        raise RuntimeError("packed produce: messages still undelivered after 120 s")
    return messages, seconds


# -- report ---------------------------------------------------------------------------------------
def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def git_revision() -> str:
    """The checked-out commit, with "+dirty" if the work tree differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_DIR, capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_DIR,
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(), "cpu": model, "kernel": platform.release(), "loadavg": os.getloadavg(),
        "git": git_revision(),
    }  # fmt: skip


def table(rows: list[tuple[str, ...]], header: tuple[str, ...], right: set[int]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: tuple[str, ...]) -> str:
        cells = [
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "| " + " | ".join(cells) + " |"

    rule = (
        "|"
        + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths))
        + "|"
    )
    return "\n".join([fmt(header), rule, *(fmt(r) for r in rows)])


def report(results: Results, command: str) -> str:
    ref, thr, lat = results.reference, results.throughput, results.latency
    rows: list[tuple[str, ...]] = []
    if "sdk" in ref:
        s = ref["sdk"]
        rows.append(
            (
                "SDK produce only (no worker)",
                f"{s['events']:,} ev",
                f"{s['events_per_s']:,.0f} ev/s",
                f"{s['messages'] / s['seconds']:,.0f} msg/s",
                "MonitorClient.log_prediction/log_ground_truth + flush",
            )
        )
    if "confluent" in ref:
        c = ref["confluent"]
        rows.append(
            (
                "consume only: confluent-kafka",
                f"{c['messages']:,} msg",
                "",
                f"{c['messages_per_s']:,.0f} msg/s",
                "consume(5000), no parsing",
            )
        )
    for mode, note in (
        ("noop", "stream.events(), nothing per message"),
        ("validate", "stream.events() + parse_event + check_against_spec"),
    ):
        if f"faust-{mode}" in ref:
            f = ref[f"faust-{mode}"]
            rows.append(
                (
                    f"consume only: faust agent, {mode}",
                    f"{f['messages']:,} msg",
                    "",
                    f"{f['messages_per_s']:,.0f} msg/s",
                    note,
                )
            )
    if "sdk-packed" in ref:
        s = ref["sdk-packed"]
        rows.append(
            (
                f"produce packed, {s['pack']} events per message",
                f"{s['events']:,} ev",
                f"{s['events_per_s']:,.0f} ev/s",
                f"{s['messages'] / s['seconds']:,.0f} msg/s",
                "per event: model_validate + model_to_json (as the SDK); no labels",
            )
        )
    if "faust-packed" in ref:
        f = ref["faust-packed"]
        rows.append(
            (
                f"consume only: faust agent, packed x{f['pack']}",
                f"{f['events']:,} ev",
                f"{f['events_per_s']:,.0f} ev/s",
                f"{f['messages_per_s']:,.0f} msg/s",
                "TypeAdapter(list[PredictionEvent]).validate_json + check_against_spec",
            )
        )
    if thr:
        rows.append(
            (
                "pipeline, SDK -> ClickHouse row",
                f"{thr['events']:,} ev",
                f"{thr['events_per_s']:,.0f} ev/s",
                f"{thr['messages_per_s']:,.0f} msg/s",
                f"{thr['seconds']:.1f} s; worker {thr['worker_events_per_cpu_s']:,.0f} ev per CPU-s, "
                f"main thread {thr['worker_main_thread_us_per_event']:,.0f} µs CPU/ev"
                + ("" if thr["complete"] else "; INCOMPLETE"),
            )
        )
        if not math.isnan(thr.get("stage1_seconds", math.nan)):
            rows.append(
                (
                    "  of which stage 1: SDK -> all partials published",
                    f"{thr['events']:,} ev",
                    f"{thr['stage1_events_per_s']:,.0f} ev/s",
                    f"{thr['messages'] / thr['stage1_seconds']:,.0f} msg/s",
                    f"{thr['stage1_seconds']:.1f} s; then {thr['tail_after_stage1_s']:.1f} s to close + sink",
                )
            )
    out = [table(rows, ("measurement", "size", "events/s", "messages/s", "note"), {1, 2, 3})]
    if lat:
        out.append("")
        out.append(
            table(
                [
                    (
                        f"{lat['rate']:,.0f} ev/s, {lat['events_per_window']} ev/window",
                        str(lat["landed_windows"]),
                        f"{lat['p50_s']:.2f}",
                        f"{lat['p90_s']:.2f}",
                        f"{lat['p99_s']:.2f}",
                        f"{lat['max_s']:.2f}",
                    )
                ],
                (
                    "latency: last event logged -> window's final `events` row",
                    "windows",
                    "p50 s",
                    "p90 s",
                    "p99 s",
                    "max s",
                ),
                {1, 2, 3, 4, 5},
            )
        )
    if results.micro:
        out.append("")
        out.append(
            table(
                [(name, f"{us:,.1f}", f"{1e6 / us:,.0f}") for name, us in results.micro],
                ("per-event cost, one core, in process", "µs/event", "events/s alone"),
                {1, 2},
            )
        )
    prof = results.profile
    if prof.get("samples"):
        out.append("")
        out.append(
            table(
                [(role, f"{n:,}", f"{100 * busy:.0f}%") for role, n, busy in prof["threads"]],
                (f"worker threads, py-spy {prof['seconds']} s at {prof['rate']} Hz", "samples", "busy"),
                {1, 2},
            )
        )
        for key, title in (
            ("categories", "main thread by category (leaf-most match)"),
            ("self", "main thread, top frames by own time"),
            ("inclusive", "main thread, top frames including callees"),
        ):
            out.append("")
            rows = [(name, f"{100 * share:.1f}%") for name, share in prof[key]]
            out.append(table(rows, (title, "share"), {1}))
    elif prof.get("error"):
        out.append(f"\nprofile failed: {prof['error']}")
    m = results.machine
    if m:
        versions_text = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
        load = ", ".join(f"{x:.1f}" for x in m.get("loadavg", ()))
        out.append("")
        where = f"{m.get('cpus')} CPUs ({m.get('cpu')}), load average {load}"
        out.append(f"Measured {m.get('date')} at git {m.get('git')} on {where}; {versions_text}")
    out.append("")
    if thr and thr["complete"]:
        out.append(
            f"RESULT pipeline: {thr['events_per_s']:,.0f} events/s per worker process end to end "
            f"({thr['events']:,} events, 20 features)"
        )
    elif thr:
        out.append(
            f"RESULT pipeline: INCOMPLETE, {thr['counted_events']:,} of {thr['events']:,} events "
            f"in ClickHouse after {thr['seconds']:.0f} s; no rate reported"
        )
    if lat:
        out.append(
            f"RESULT latency: p50 {lat['p50_s']:.2f} s, p99 {lat['p99_s']:.2f} s "
            f"({lat['landed_windows']} windows at {lat['rate']:,.0f} events/s)"
        )
    out.append(f"Reproduce: {command}")
    return "\n".join(out)


# -- main -----------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--events", type=int, default=None, help="events in the throughput run [200000; --quick 20000]"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small run: 20k events, short latency phase, short profile"
    )
    parser.add_argument(
        "--label-fraction", type=float, default=0.2, help="share of predictions that get a label"
    )
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the input topics")
    parser.add_argument(
        "--reference-events",
        type=int,
        default=None,
        help="events for the produce/consume reference points [= --events, at most 100000]",
    )
    parser.add_argument(
        "--floors",
        default="noop,validate,packed",
        help="faust reference readers to run (noop, validate, packed), comma-separated; '' for none",
    )
    parser.add_argument("--pack", type=int, default=100, help="events per message for the 'packed' reader")
    parser.add_argument(
        "--uvloop",
        action="store_true",
        help="run the worker and faust readers on uvloop (pip install uvloop)",
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the produce/consume reference points"
    )
    parser.add_argument(
        "--no-micro", action="store_true", help="skip the in-process per-event microbenchmarks"
    )
    parser.add_argument("--no-latency", action="store_true", help="skip the latency phase")
    parser.add_argument(
        "--latency-rate",
        type=float,
        default=0.0,
        help="events/s in the latency phase [0 = half the measured throughput]",
    )
    parser.add_argument(
        "--latency-seconds",
        type=float,
        default=None,
        help="measured part of the latency phase [60; --quick 10]",
    )
    parser.add_argument(
        "--windows-per-second", type=float, default=0.5, help="windows produced per wall-clock second"
    )
    parser.add_argument(
        "--latency-timeout",
        type=float,
        default=None,
        help="extra seconds for measured windows to land [2 chunk rotations + 60]",
    )
    parser.add_argument(
        "--no-profile", dest="profile", action="store_false", help="do not run py-spy on the worker"
    )
    parser.add_argument(
        "--profile-seconds", type=float, default=None, help="py-spy sampling time [30; --quick 4]"
    )
    parser.add_argument(
        "--profile-delay",
        type=float,
        default=None,
        help="start py-spy this long after produce begins [5; --quick 1]",
    )
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the worker and faust readers, e.g. STREAM_BUFFER_MAXSIZE=16384 "
        "or MODELMON_BATCH_SIZE=5000 (repeatable)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=0.0,
        help="seconds to wait for the throughput run [max(300, events/200)]",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep broker, ClickHouse and logs here (default: a temp dir, removed)",
    )
    parser.add_argument(
        "--json", type=Path, default=BENCH_DIR / "results" / "pipeline.json", help="write results here"
    )
    parser.add_argument("--floor", help=argparse.SUPPRESS)
    parser.add_argument("--floor-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--floor-expected", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.events is None:
        args.events = 20_000 if args.quick else 200_000
    if args.reference_events is None:
        args.reference_events = min(args.events, 100_000)
    if args.latency_seconds is None:
        args.latency_seconds = 10.0 if args.quick else 60.0
    if args.profile_seconds is None:
        args.profile_seconds = 4.0 if args.quick else 30.0
    if args.profile_delay is None:
        args.profile_delay = 1.0 if args.quick else 5.0
    args.floors = [f for f in args.floors.split(",") if f]
    if unknown := set(args.floors) - {"noop", "validate", "packed"}:
        parser.error(f"unknown --floors {sorted(unknown)}; valid: noop, validate, packed")
    args.extra_env = dict(item.split("=", 1) for item in args.worker_env)
    prefix = "MODELMON_"
    args.settings_overrides = {
        k[len(prefix) :].lower(): v for k, v in args.extra_env.items() if k.startswith(prefix)
    }
    return args


@contextlib.contextmanager
def workdir_for(args: argparse.Namespace) -> Iterator[Path]:
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        yield args.workdir.resolve()
        return
    path = Path(tempfile.mkdtemp(prefix="modelmon-bench-pipeline-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.floor:
        floor_main(args.floor, args.floor_out, args.floor_expected)
        return 0
    from modelmon.broker import EmbeddedBroker
    from sinks.clickhouse import connect
    from sinks.consumer import ClickHouseSink
    from sinks.migrate import migrate
    from streams.run import prepare_topics

    command = shlex.join(
        [".venv/bin/python", "bench/bench_pipeline.py", *(argv if argv is not None else sys.argv[1:])]
    )
    results = Results()
    results.machine = {
        **machine(),
        "versions": versions(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    traffic = Traffic.generate(args.seed, args.label_fraction)
    with workdir_for(args) as workdir:
        args.workdir_path = workdir
        models = workdir / "models"
        for model_id in (THROUGHPUT_MODEL, LATENCY_MODEL, WARMUP_MODEL):
            write_spec(models, model_id)
        if not args.no_micro:
            print("[micro] per-event costs in this process", flush=True)
            results.micro = microbench(traffic, models)
        with EmbeddedBroker("noida", data_dir=workdir / "broker") as broker:
            args.broker_pid = broker.pid or 0
            settings = Settings(
                kafka_bootstrap=broker.bootstrap,
                topic_prefix="bench.",
                app_id="bench-pipeline",
                models_path=models,
                worker_data_dir=workdir / "worker",
                clickhouse_dsn=f"chdb://{workdir / 'clickhouse'}",
                topic_partitions=args.partitions,
                # Windows close by their grace period, as under steady real-time traffic; see run_latency.
                allowed_lateness_seconds=86_400,
                _env_file=None,  # type: ignore[call-arg]
                **args.settings_overrides,
            )
            results.config = {
                "events": args.events,
                "label_fraction": args.label_fraction,
                "partitions": args.partitions,
                "features": f"{N_NUMERICAL} numerical + {N_CATEGORICAL} categorical",
                "worker_env": args.extra_env,
                "batch_size": settings.batch_size,
                "batch_within": settings.batch_within,
                "chunk_size": settings.chunk_size,
                "window_seconds": settings.window_seconds,
                "grace_seconds": settings.window_grace_seconds,
                "idle_flush_seconds": settings.idle_flush_seconds,
                "sink_flush_seconds": settings.sink_flush_seconds,
                "command": command,
            }
            if not args.no_reference:
                run_references(settings, traffic, workdir, args, results)
            prepare_topics(settings)
            client = connect(settings.clickhouse_dsn)
            migrate(client)
            writer = recording_writer_class()(client)
            sink = ClickHouseSink(settings, writer)
            sink.start_thread()
            worker = Child(
                [*python_module("modelmon", args.uvloop), "worker"],
                worker_env(settings, args.extra_env),
                workdir / "worker.log",
            )
            try:
                if not worker.wait_log("[^Worker]: Ready", 120):
                    raise RuntimeError(f"the worker did not start:\n{worker.log_tail()}")
                print(
                    f"[warm-up] worker pid {worker.pid} ready; {WARMUP_EVENTS} events through the pipeline",
                    flush=True,
                )
                warm_up(settings, traffic, writer, worker)
                run_throughput(settings, traffic, writer, worker, args, results)
                if not args.no_latency:
                    run_latency(settings, traffic, writer, worker, args, results)
            finally:
                worker.stop()
                sink.stop()
                if args.workdir is not None:
                    print(f"worker log: {worker.log_path}")
    text = report(results, command)
    print()
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {k: v for k, v in results.__dict__.items()}
        args.json.write_text(json.dumps(payload, indent=2, default=str))
        print(f"results: {args.json}")
    ok = results.throughput.get("complete", False) and (
        args.no_latency or results.latency.get("landed_windows") == results.latency.get("measured_windows")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
