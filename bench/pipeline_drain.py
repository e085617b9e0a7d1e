"""Phases that drain a pre-filled backlog: (a) the consume ceiling, (b) one worker, (d) two, (g) memory."""

from __future__ import annotations

import time
from typing import Any

import orjson
from pipeline_context import Backlog, Context
from pipeline_processes import (
    PhaseFailed,
    Worker,
    cpu_seconds,
    own_cpu_seconds,
    rss_mb,
    start_workers,
    thread_cpu_seconds,
)
from pipeline_profile import Profiler, python_thread_names
from pipeline_sink import Watch

PROGRESS_EVERY = 5.0
MEMORY_SPAN_MS = 2 * 60_000  # (g): event times of the first backlog, the 2 minutes before it


def phase_a(ctx: Context, backlog: Backlog) -> dict[str, Any]:
    """A plain confluent-kafka consumer: ``consume(5000)`` + ``orjson.loads`` of every message."""
    from confluent_kafka import Consumer

    from modelmon.settings import CONSUMER_DEFAULTS

    topics = [backlog.settings.topics.predictions, backlog.settings.topics.ground_truth]
    consumer = Consumer(
        {
            "bootstrap.servers": ctx.bootstrap,
            **CONSUMER_DEFAULTS,  # as the worker's consumers (Settings.kafka_consumer)
            "group.id": f"bench-ceiling-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    assigned: list[float] = []
    consumer.subscribe(topics, on_assign=lambda c, parts: assigned.append(time.perf_counter()))
    expected, seen, decoded, last = backlog.messages, 0, 0, 0.0
    ctx.log("a", f"confluent-kafka reading {expected:,} messages with consume(5000) + orjson.loads")
    cpu0, deadline = own_cpu_seconds(), time.monotonic() + max(120.0, expected / 2000)
    loads = orjson.loads
    try:
        while seen < expected and time.monotonic() < deadline:
            for message in consumer.consume(5000, timeout=1.0):
                if message.error() is None:
                    loads(message.value())
                    decoded += 1
                    seen += 1
                    last = time.perf_counter()
    finally:
        consumer.close()
    if seen < expected or not assigned:
        raise PhaseFailed(f"the consumer read {seen:,} of {expected:,} messages before its deadline")
    seconds = last - assigned[0]
    cpu = own_cpu_seconds() - cpu0
    ctx.log(
        "a", f"  {seen:,} messages in {seconds:.2f} s = {seen / seconds:,.0f} messages/s; CPU {cpu:.2f} s"
    )
    return {
        "messages": seen,
        "seconds": seconds,
        "messages_per_s": seen / seconds,
        "cpu_s": cpu,
        "messages_per_cpu_s": seen / cpu if cpu else float("nan"),
    }


def drain(ctx: Context, phase: str, workers: list[Worker], watch: Watch, messages: int) -> float:
    """Wait until ``watch`` is met (returns the wall time of the insert that met it); print progress.

    Fails (:class:`PhaseFailed`, with the workers' log tails) when a worker exits, when neither the
    data planes' logged counts nor ClickHouse moved for ``--stall-seconds``, or after ``--timeout``.
    """
    writer, args = ctx.sinks.writer, ctx.args
    started = time.monotonic()
    deadline = started + (args.timeout or max(600.0, messages / 500))
    last_state: tuple[int, ...] = ()
    last_change = next_print = started
    while True:
        met = writer.wait(lambda: watch.done_at is not None, 0.25)
        for worker in workers:
            worker.poll_log()
        if met:
            assert watch.done_at is not None
            return watch.done_at
        now = time.monotonic()
        stored = {metric: writer.total(watch.model_id, metric) for metric in watch.targets}
        read = sum(w.data_plane_events for w in workers)
        dead = [w for w in workers if not w.alive()]
        if dead:
            raise PhaseFailed(
                f"worker pid {dead[0].pid} exited (status {dead[0].process.returncode}){dead[0].log_tail()}"
            )
        state = (read, *stored.values())
        if state != last_state:
            last_state, last_change = state, now
        elif now - last_change > args.stall_seconds:
            raise PhaseFailed(
                f"no progress for {args.stall_seconds:.0f} s: the data plane(s) had read {read:,} of "
                f"{messages:,} messages (their log line every 10 s), ClickHouse holds "
                f"{_counts(stored, watch.targets)}{workers[0].log_tail()}"
            )
        if now > deadline:
            raise PhaseFailed(
                f"timed out after {now - started:.0f} s: ClickHouse holds "
                f"{_counts(stored, watch.targets)}{workers[0].log_tail()}"
            )
        if now >= next_print:
            next_print = now + PROGRESS_EVERY
            cpu = sum(cpu_seconds(w.pid) for w in workers)
            rss = ", ".join(f"{rss_mb(w.pid):,.0f}" for w in workers)
            ctx.log(
                phase,
                f"  {now - started:5.1f} s: data plane read {read:,} of {messages:,} messages; "
                f"ClickHouse {_counts(stored, watch.targets)}; worker CPU {cpu:.1f} s, "
                f"RSS {rss} MB",
            )


def _counts(stored: dict[str, int], targets: dict[str, int]) -> str:
    return ", ".join(f"{stored.get(m, 0):,} of {t:,} {m}" for m, t in targets.items())


def _check_exact(ctx: Context, phase: str, backlog: Backlog, labels_exact: bool = True) -> dict[str, Any]:
    stored = ctx.sinks.stored(backlog.model_id)
    drift, windows = ctx.sinks.drift_windows(backlog.model_id)
    exact = stored["events"] == backlog.predictions and (
        not labels_exact or stored["labels"] == backlog.labels
    )
    ctx.log(
        phase,
        f"  ClickHouse (FINAL): {stored['events']:,} events (sent {backlog.predictions:,}), "
        f"{stored['labels']:,} labels (sent {backlog.labels:,}): {'exact' if exact else 'NOT EXACT'}; "
        f"drift computed for {drift} of {windows} windows",
    )
    return {
        "stored_events": stored["events"],
        "stored_labels": stored["labels"],
        "exact": exact,
        "drift_windows": drift,
        "windows": windows,
    }


def phase_b(ctx: Context, backlog: Backlog) -> dict[str, Any]:
    """One worker drains the backlog; profiled with py-spy meanwhile."""
    settings, model = backlog.settings, backlog.model_id
    ctx.sinks.start(settings)
    watch = ctx.sinks.writer.watch(model, events=backlog.predictions, labels=backlog.labels)
    log = ctx.workdir / "worker-b.log"
    ctx.log("b", f"one worker draining {backlog.messages:,} messages (log: {log})")
    (worker,) = start_workers([settings], ctx.extra_env, [log])
    assert worker.assigned_at is not None
    t0, cpu0, broker0 = worker.assigned_at, cpu_seconds(worker.pid), cpu_seconds(ctx.broker_pid)
    names = python_thread_names(worker.pid)
    threads0 = thread_cpu_seconds(worker.pid, names)
    profiler = Profiler(worker.pid, ctx.workdir / "worker-b-profile.txt") if ctx.args.profile else None
    try:
        done = drain(ctx, "b", [worker], watch, backlog.messages)
        cpu, rss = cpu_seconds(worker.pid) - cpu0, rss_mb(worker.pid)
        threads = {k: v - threads0.get(k, 0.0) for k, v in thread_cpu_seconds(worker.pid, names).items()}
        broker_cpu = cpu_seconds(ctx.broker_pid) - broker0
    finally:
        profile = profiler.stop() if profiler is not None else {}
        worker.stop()
        ctx.sinks.stop()
    seconds = done - t0
    out = {
        **_rates(backlog, seconds, cpu),
        "worker_cpu_s": cpu,
        "rss_mb": rss,
        "broker_cpu_s": broker_cpu,
        "sdk_fill_events_per_s": backlog.messages / backlog.fill_seconds,
        "worker_threads_cpu_s": {
            k: round(v, 2) for k, v in sorted(threads.items(), key=lambda x: -x[1]) if v >= 0.05
        },
        "profile": profile,
    }
    out.update(_check_exact(ctx, "b", backlog))
    ctx.log(
        "b",
        f"  {backlog.messages:,} events in {seconds:.1f} s = {out['events_per_s']:,.0f} events/s; "
        f"worker CPU {cpu:.1f} s = {out['events_per_cpu_s']:,.0f} events per CPU-second",
    )
    return out


def _rates(backlog: Backlog, seconds: float, cpu: float) -> dict[str, Any]:
    """What (b) and (d) report alike: the backlog, the drain time, events/s and events per CPU-second."""
    return {
        "predictions": backlog.predictions,
        "labels": backlog.labels,
        "events": backlog.messages,
        "seconds": seconds,
        "events_per_s": backlog.messages / seconds,
        "events_per_cpu_s": backlog.messages / cpu if cpu else float("nan"),
    }


def phase_d(ctx: Context, backlog: Backlog) -> dict[str, Any]:
    """Two workers (one group) drain a backlog of the same size under a fresh prefix and app id."""
    settings = [
        backlog.settings.model_copy(update={"worker_data_dir": ctx.workdir / "worker" / f"d{i}"})
        for i in (1, 2)
    ]
    ctx.sinks.start(backlog.settings)
    watch = ctx.sinks.writer.watch(backlog.model_id, events=backlog.predictions, labels=backlog.labels)
    logs = [ctx.workdir / f"worker-d{i}.log" for i in (1, 2)]
    ctx.log("d", f"two workers draining {backlog.messages:,} messages")
    workers = start_workers(settings, ctx.extra_env, logs)
    first = min(w.assigned_at or 0.0 for w in workers)
    both = max(w.assigned_at or 0.0 for w in workers)
    cpu0 = {w.pid: cpu_seconds(w.pid) for w in workers}
    try:
        done = drain(ctx, "d", workers, watch, backlog.messages)
        cpu = sum(cpu_seconds(w.pid) - cpu0[w.pid] for w in workers)
    finally:
        for worker in workers:
            worker.stop()
        ctx.sinks.stop()
    seconds = done - first
    out = {
        **_rates(backlog, seconds, cpu),
        "seconds_from_both": done - both,
        "events_per_s_from_both": backlog.messages / (done - both),
        "second_worker_after_s": both - first,
        "workers_cpu_s": cpu,
    }
    out.update(_check_exact(ctx, "d", backlog))
    ctx.log(
        "d",
        f"  {backlog.messages:,} events in {seconds:.1f} s = {out['events_per_s']:,.0f} events/s "
        f"(from the first worker's assignment; the second had its partitions "
        f"{both - first:.1f} s later)",
    )
    return out


def phase_g(ctx: Context) -> dict[str, Any]:
    """One worker's RSS after a backlog of ``--events`` predictions and after 3x as many more.

    The 3x more come in six steps of half a backlog, each drained before the next. Event times: each
    backlog over the 2 minutes before it is logged, so both together fill a handful of windows and
    what grows with events (not with windows) shows.
    """
    cap = ctx.args.memory_join_cap
    settings, model = ctx.prepare("g", join_max_pending=cap)
    n = ctx.args.events
    start1 = int(time.time() * 1000) - MEMORY_SPAN_MS
    labels1, fill1 = ctx.fill("g", settings, model, 0, n, start1, MEMORY_SPAN_MS)
    ctx.sinks.start(settings)
    log = ctx.workdir / "worker-g.log"
    ctx.log("g", f"worker with MODELMON_JOIN_MAX_PENDING={settings.join_max_pending:,} (log: {log})")
    (worker,) = start_workers([settings], ctx.extra_env, [log])
    try:
        drain(ctx, "g", [worker], ctx.sinks.writer.watch(model, events=n), n + labels1)
        rss1, windows1 = rss_mb(worker.pid), ctx.sinks.drift_windows(model)[1]
        ctx.log(
            "g", f"  RSS after {n:,} predictions + {labels1:,} labels: {rss1:,.0f} MB ({windows1} windows)"
        )
        # 3n more in steps the worker drains one after the other: one burst of 3n would make noida-db
        # answer a fetch with all of it at once (bench/README.md), and RSS would measure that response.
        start2 = max(start1 + MEMORY_SPAN_MS, int(time.time() * 1000) - MEMORY_SPAN_MS)
        step, labels2 = n // 2, 0
        for i in range(6):
            first, span = n + i * step, MEMORY_SPAN_MS // 6
            added, _ = ctx.fill("g", settings, model, first, step, start2 + i * span, span)
            labels2 += added
            watch = ctx.sinks.writer.watch(model, events=first + step)
            drain(ctx, "g", [worker], watch, first + step + labels1 + labels2)
        total = n + 6 * step
        rss4, windows4 = rss_mb(worker.pid), ctx.sinks.drift_windows(model)[1]
        stored = ctx.sinks.stored(model)
    finally:
        worker.stop()
        ctx.sinks.stop()
    ctx.log(
        "g",
        f"  RSS after {total:,} predictions + {labels1 + labels2:,} labels: {rss4:,.0f} MB "
        f"({rss4 - rss1:+,.0f} MB; {windows4} windows)",
    )
    return {
        "join_max_pending": settings.join_max_pending,
        "partitions": settings.topic_partitions,
        "predictions_1": n,
        "labels_1": labels1,
        "rss_mb_1": rss1,
        "windows_1": windows1,
        "predictions_4": total,
        "labels_4": labels1 + labels2,
        "rss_mb_4": rss4,
        "windows_4": windows4,
        "growth_mb": rss4 - rss1,
        "stored_events": stored["events"],
        "stored_labels": stored["labels"],
        "exact_events": stored["events"] == total,
        "fill_seconds_1": fill1,
    }
