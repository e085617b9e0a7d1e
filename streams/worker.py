"""The worker's topics, table and prediction agent: validate, dead-letter, count per window, publish.

Guarantee: at-least-once delivery of every output, exactly-once counts. For each batch taken
from ``predictions`` the worker (1) publishes the dead letters and the updated cumulative
``MetricPoint``s and waits for the broker to acknowledge them, (2) writes the window counts to a
faust table (whose changelog faust flushes before it commits input offsets) only after that, and
(3) only then lets faust acknowledge the batch's input offsets. A crash anywhere replays the
batch; per-key offsets in the table (see :mod:`streams.counting`) make the replay a no-op for
counts, and the replayed outputs carry the same keys and revisions, so ClickHouse replaces rather
than adds them.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import faust
import faust.streams as faust_streams
from faust.types import EventT, StreamT

from modelmon.events import DeadLetter, PredictionEvent, model_to_json
from modelmon.settings import Settings
from modelmon.spec import ModelSpec
from streams.counting import CountedEvent, StagedWrites, TooLate, WindowCounter
from streams.validation import RawMessage, validate_predictions

log = logging.getLogger(__name__)

PRUNE_EVERY_BATCHES = 50


@dataclass
class WorkerStats:
    """Running totals of one worker process, logged periodically."""

    consumed: int = 0
    valid: int = 0
    dead_lettered: int = 0
    batches: int = 0
    dead_by_type: dict[str, int] = field(default_factory=lambda: defaultdict(int))


@contextmanager
def changelog_partition_of(event: EventT) -> Iterator[None]:
    """Make table writes inside the block go to the changelog partition of ``event``.

    faust sends a table write to the changelog partition of the *current event*, a context
    variable; a batch mixes partitions, so each partition's keys are written under one of its own
    events. Only the context variable is set (and restored): the stream's ``current_event``
    attribute must stay untouched, because ``take_events`` reads it to record the next message.
    """
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


def too_late_letter(late: TooLate, message: RawMessage) -> DeadLetter:
    return DeadLetter(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key.decode("utf-8", errors="replace") if message.key else None,
        payload=(message.value or b"").decode("utf-8", errors="replace"),
        reason=(
            f"event time is older than the counting retention: its window ended long before the "
            f"partition's watermark {late.watermark_ms} ms"
        ),
        error_type="too_late",
    )


def register_worker(app: faust.App, settings: Settings, specs: dict[str, ModelSpec]) -> WorkerStats:
    """Declare the worker's topics, table and agent on ``app``; returns the live stats."""
    topics = settings.topics
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    predictions = app.topic(topics.predictions, **raw)
    metrics_topic = app.topic(topics.monitor_metrics, **raw)
    dead_topic = app.topic(topics.dead_letter, **raw)
    counts = app.Table("window-counts", default=None)
    stats = WorkerStats()

    window_ms = settings.window_seconds * 1000
    lateness_ms = settings.allowed_lateness_seconds * 1000
    counter_params = {
        "window_ms": window_ms,
        "allowed_lateness_ms": lateness_ms,
        "retention_ms": max(settings.retention_seconds * 1000, window_ms + lateness_ms),
    }

    async def publish(topic: faust.TopicT, items: Sequence[tuple[bytes, bytes]]) -> None:
        pending = [await topic.send(key=key, value=value) for key, value in items]
        await asyncio.gather(*pending)

    async def process(events: Sequence[EventT]) -> None:
        messages = [
            RawMessage(e.message.value, e.message.topic, e.message.partition, e.message.offset, e.message.key)
            for e in events
        ]
        valid, dead = validate_predictions(messages, specs)
        by_partition: dict[int, list[tuple[RawMessage, PredictionEvent]]] = defaultdict(list)
        for message, event in valid:
            by_partition[message.partition].append((message, event))
        last_event = {e.message.partition: e for e in events}

        # New state is staged, outputs are published and acknowledged, and only then is the state
        # written: a crash in between replays the batch, which recomputes the same outputs.
        staged = StagedWrites(counts)
        counter = WindowCounter(staged, **counter_params)
        changed: list[str] = []
        for partition, items in by_partition.items():
            by_offset = {m.offset: m for m, _ in items}
            keys, too_late = counter.apply(
                CountedEvent(partition, m.offset, e.model_id, e.model_version, int(e.ts.timestamp() * 1000))
                for m, e in items
            )
            changed.extend(keys)
            dead.extend(too_late_letter(t, by_offset[t.event.offset]) for t in too_late)
            if stats.batches % PRUNE_EVERY_BATCHES == 0:
                for key in counter.expired_keys([partition]):
                    del staged[key]

        await publish(dead_topic, [(d.dedup_key().encode(), model_to_json(d)) for d in dead])
        points = counter.metric_points(changed)
        await publish(metrics_topic, [(p.model_id.encode(), model_to_json(p)) for p in points])

        pending = staged.pending_keys()
        for partition in by_partition:
            with changelog_partition_of(last_event[partition]):
                staged.apply_to_base([key for key in pending if key.startswith(f"{partition}|")])

        stats.batches += 1
        stats.consumed += len(events)
        stats.valid += len(valid)
        stats.dead_lettered += len(dead)
        for letter in dead:
            stats.dead_by_type[letter.error_type] += 1

    @app.agent(predictions, name="predictions")
    async def predictions_agent(stream: StreamT) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within):
            await process(events)

    @app.timer(interval=10.0)
    async def report() -> None:
        if stats.consumed:
            log.info(
                "consumed=%d valid=%d dead_lettered=%d (%s) batches=%d",
                stats.consumed,
                stats.valid,
                stats.dead_lettered,
                dict(stats.dead_by_type),
                stats.batches,
            )

    return stats
