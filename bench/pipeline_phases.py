"""The measured phases with the worker running: warm-up, throughput (with the profile) and latency."""

from __future__ import annotations

import argparse
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from pipeline_processes import Child, cpu_seconds, own_cpu_seconds, thread_cpu_seconds
from pipeline_profile import PROFILE_RATE, analyse_profile, start_profile
from pipeline_traffic import (
    LATENCY_MODEL,
    THROUGHPUT_MODEL,
    WARMUP_EVENTS,
    WARMUP_MODEL,
    Traffic,
    log_event,
    produce,
)

from modelmon.settings import Settings


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
