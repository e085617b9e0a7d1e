"""Phases with live traffic or none: (e) the SDK alone, (f) latency at a fixed rate, (h) an idle worker."""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from typing import Any

import numpy as np
from pipeline_context import Context
from pipeline_processes import PhaseFailed, cpu_seconds, start_workers, thread_cpu_seconds
from pipeline_profile import python_thread_names
from pipeline_traffic import POOL_SIZE, sdk_call_times, sdk_rate

from modelmon.sdk import MonitorClient
from streams.run import prepare_topics


def phase_e(ctx: Context) -> dict[str, Any]:
    """``log_prediction`` as fast as possible (+ flush), then each of ``--sdk-calls`` calls timed."""
    settings = ctx.settings("e")
    prepare_topics(settings)
    n = ctx.args.sdk_calls
    ctx.log("e", f"SDK alone: {n:,} log_prediction calls as fast as possible + flush, then {n:,} timed")
    with MonitorClient(ctx.bootstrap, settings.topic_prefix) as client:
        sdk_call_times(client, ctx.traffic, "bench-e", min(n, 2000))  # warm-up: connection, first batch
        seconds = sdk_rate(client, ctx.traffic, "bench-e", n)
        calls = sdk_call_times(client, ctx.traffic, "bench-e", n) / 1000.0
    out = {
        "calls": n,
        "seconds": seconds,
        "events_per_s": n / seconds,
        "median_us": float(np.median(calls)),
        "p99_us": float(np.percentile(calls, 99)),
        "mean_us": float(calls.mean()),
        "max_us": float(calls.max()),
    }
    ctx.log(
        "e",
        f"  {out['events_per_s']:,.0f} events/s; log_prediction median {out['median_us']:.1f} µs, "
        f"p99 {out['p99_us']:.1f} µs",
    )
    return out


def phase_f(ctx: Context, rate: float) -> dict[str, Any]:
    """Latency from an event being logged to its window's final ``events`` row in ClickHouse.

    Events are logged at ``rate`` events/s (predictions + labels); event time runs ``--latency-compress``
    times faster than the clock (1: real time, ts = now). The first window is a warm-up; the next
    ``--latency-windows`` are measured. Traffic goes on until every measured window has landed.
    """
    args, traffic = ctx.args, ctx.traffic
    compress = args.latency_compress
    # Compressed event time runs ahead of the clock, and its watermark would close windows early.
    extra = {"max_future_skew": "30d", "allowed_lateness_seconds": 86_400} if compress > 1 else {}
    settings, model = ctx.prepare("f", **extra)
    window_ms = settings.window_seconds * 1000
    window_wall = window_ms / 1000 / compress
    grace = settings.window_grace_seconds
    ctx.sinks.start(settings)
    log = ctx.workdir / "worker-f.log"
    (worker,) = start_workers([settings], ctx.extra_env, [log])
    predictions_per_s = rate / (1 + args.labels_fraction)
    t_start = time.time()
    base_ms = int(t_start * 1000)
    if compress > 1:  # whole windows, an hour ahead of the clock
        base_ms = (base_ms // window_ms + 3_600_000 // window_ms + 1) * window_ms
    first = base_ms // window_ms
    measured = list(range(first + 1, first + 1 + args.latency_windows))
    end_wall = t_start + ((measured[-1] + 1) * window_ms - base_ms) / 1000 / compress
    deadline = end_wall + grace + 5 + args.latency_timeout
    ctx.log(
        "f",
        f"{rate:,.0f} events/s ({predictions_per_s:,.0f} predictions/s), windows of "
        f"{settings.window_seconds} s event time = {window_wall:g} s wall (compression x{compress:g}); "
        f"1 warm-up + {len(measured)} measured windows, ~{end_wall - t_start:.0f} s of traffic",
    )
    counts: dict[int, int] = defaultdict(int)
    last: dict[int, float] = {}
    logged: dict[int, list[float]] = {w: [] for w in measured}
    landed: dict[int, float] = {}
    i = labels = 0
    next_print = time.monotonic() + 5
    log_prediction, log_ground_truth = None, None
    try:
        with MonitorClient(ctx.bootstrap, settings.topic_prefix) as client:
            log_prediction, log_ground_truth = client.log_prediction, client.log_ground_truth
            while True:
                now = time.time()
                target = int((now - t_start) * predictions_per_s)
                while i < target:
                    t = time.time()
                    ts = base_ms + int((t - t_start) * compress * 1000)
                    w, k = ts // window_ms, i % POOL_SIZE
                    pid = log_prediction(
                        model, traffic.features[k], traffic.predictions[k], score=traffic.scores[k], ts=ts
                    )
                    if traffic.labelled(i):
                        log_ground_truth(model, pid, traffic.labels[k], ts=ts)
                        labels += 1
                    counts[w] += 1
                    last[w] = t
                    if w in logged:
                        logged[w].append(t)
                    i += 1
                for w in measured:
                    if w not in landed and w + 1 in counts:  # the window is over: its count is final
                        at = ctx.sinks.writer.landed(model, w * window_ms, counts[w])
                        if at is not None:
                            landed[w] = at
                if len(landed) == len(measured) or now > deadline:
                    break
                if not worker.alive():
                    raise PhaseFailed(f"the worker exited{worker.log_tail()}")
                if time.monotonic() >= next_print:
                    next_print = time.monotonic() + 5
                    ctx.log(
                        "f",
                        f"  {now - t_start:5.1f} s: {i:,} predictions + {labels:,} labels logged; "
                        f"{len(landed)} of {len(measured)} measured windows landed",
                    )
                time.sleep(0.002)
    finally:
        worker.stop()
        ctx.sinks.stop()
    elapsed = time.time() - t_start
    if len(landed) < len(measured):
        missing = [w for w in measured if w not in landed]
        raise PhaseFailed(
            f"{len(missing)} of {len(measured)} measured windows had no `events` row with their final count "
            f"{args.latency_timeout:.0f} s after the bound; e.g. window {missing[0] * window_ms} with "
            f"{counts[missing[0]]:,} events, ClickHouse total {ctx.sinks.writer.total(model, 'events'):,}"
            f"{worker.log_tail()}"
        )
    per_event = np.concatenate([landed[w] - np.asarray(logged[w]) for w in measured])
    tails = np.asarray([landed[w] - last[w] for w in measured])
    bound = window_wall + grace + 5
    out = {
        "rate": rate,
        "achieved_rate": (i + labels) / elapsed,
        "compress": compress,
        "window_wall_s": window_wall,
        "grace_s": grace,
        "bound_s": bound,
        "windows": len(measured),
        "events_measured": int(per_event.size),
        "p50_s": float(np.percentile(per_event, 50)),
        "p99_s": float(np.percentile(per_event, 99)),
        "max_s": float(per_event.max()),
        "tail_p50_s": float(np.median(tails)),
        "tail_max_s": float(tails.max()),
        "tails_s": [round(float(x), 2) for x in tails],
        "events_per_window": [counts[w] for w in measured],
        "event_time": "real time (ts = now)"
        if compress == 1
        else f"compressed x{compress:g}: event time an hour ahead, MODELMON_MAX_FUTURE_SKEW="
        f"{settings.max_future_skew}, MODELMON_ALLOWED_LATENESS_SECONDS={settings.allowed_lateness_seconds}",
    }
    out["met"] = out["p99_s"] <= bound
    ctx.log(
        "f",
        f"  p50 {out['p50_s']:.1f} s, p99 {out['p99_s']:.1f} s (bound {bound:g} s: "
        f"{'met' if out['met'] else 'NOT met'}); from a window's last event: median "
        f"{out['tail_p50_s']:.1f} s, max {out['tail_max_s']:.1f} s",
    )
    return out


def phase_h(ctx: Context) -> dict[str, Any]:
    """CPU of an idle worker (one model, no traffic) and of the broker, over ``--idle-seconds``.

    Measured on the bench's broker (noida-db) and, unless ``--no-tansu``, again on Tansu, a broker that
    holds an empty fetch as Kafka does: what is left on noida-db and not on Tansu is consumers
    re-fetching at once because the broker answers at once.
    """
    ctx.sinks.stop()
    out = _idle(ctx, "h", "noida-db")
    if ctx.args.tansu:
        from modelmon.app.broker import BrokerError, EmbeddedBroker

        try:
            with EmbeddedBroker("tansu") as tansu:
                other = dataclasses.replace(ctx, bootstrap=tansu.bootstrap, broker_pid=tansu.pid or 0)
                out["tansu"] = _idle(other, "h", "Tansu")
        except BrokerError as error:
            out["tansu_error"] = str(error).split("\n", 1)[0]
            ctx.log("h", f"  no Tansu measurement: {out['tansu_error']}")
    return out


def _idle(ctx: Context, phase: str, broker: str) -> dict[str, Any]:
    settings, _ = ctx.prepare(phase)
    log = ctx.workdir / f"worker-{phase}-{broker.split('-')[0].lower()}.log"
    (worker,) = start_workers([settings], ctx.extra_env, [log])
    seconds = ctx.args.idle_seconds
    try:
        ctx.log(
            phase,
            f"idle worker on {broker} (one model, no traffic, no sink): settling 5 s, then CPU over "
            f"{seconds:g} s",
        )
        time.sleep(5)
        names = python_thread_names(worker.pid)
        w0, b0 = cpu_seconds(worker.pid), cpu_seconds(ctx.broker_pid)
        th0 = thread_cpu_seconds(worker.pid, names)
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            time.sleep(min(1.0, seconds - (time.monotonic() - t0)))
            if not worker.alive():
                raise PhaseFailed(f"the idle worker exited{worker.log_tail()}")
        wall = time.monotonic() - t0
        worker_cpu, broker_cpu = cpu_seconds(worker.pid) - w0, cpu_seconds(ctx.broker_pid) - b0
        threads = {k: v - th0.get(k, 0.0) for k, v in thread_cpu_seconds(worker.pid, names).items()}
    finally:
        worker.stop()
    out = {
        "broker": broker,
        "seconds": wall,
        "worker_cpu_s": worker_cpu,
        "worker_pct": 100 * worker_cpu / wall,
        "broker_cpu_s": broker_cpu,
        "broker_pct": 100 * broker_cpu / wall,
        "worker_threads_pct": {
            k: round(100 * v / wall, 1) for k, v in sorted(threads.items(), key=lambda x: -x[1]) if v > 0
        },
    }
    ctx.log(phase, f"  worker {out['worker_pct']:.1f}% of a core, broker {out['broker_pct']:.1f}%")
    return out
