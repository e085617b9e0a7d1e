"""Declares the two-stage topology on a faust app: topics, the join table, both agents, timers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import faust
from faust.types import StreamT

from modelmon.events import model_to_json
from modelmon.settings import Settings
from modelmon.spec import ModelSpec, parse_duration
from streams.app import publish_all
from streams.auto_reference import AutoReferenceBuilder, Publish
from streams.batching import Acknowledger, EventBatcher
from streams.change import ChangeTracker
from streams.stage1 import ReferenceLookup, Stage1
from streams.stage2 import Stage2
from streams.validation import EventLimits, dead_letter, processing_error

log = logging.getLogger(__name__)

PARTIALS = "monitor-partials"
EXPIRE_EVERY_BATCHES = 500


def partials_topic_name(settings: Settings) -> str:
    """The internal topic from stage 1 to stage 2 (keyed by model id)."""
    return f"{settings.topic_prefix}{PARTIALS}"


@dataclass
class Topology:
    stage1: Stage1
    stage2: Stage2


def window_retention_ms(settings: Settings, spec: ModelSpec | None) -> int:
    """How long stage 2 keeps a closed window for late partials: the worker's retention, or the
    model's label TTL if longer (a label may join that long after its prediction)."""
    ttl = parse_duration(spec.label_ttl) if spec is not None else timedelta(0)
    return max(settings.retention_seconds * 1000, int(ttl.total_seconds() * 1000))


def register_topology(
    app: faust.App,
    settings: Settings,
    specs: dict[str, ModelSpec],
    references: ReferenceLookup,
    *,
    publish_reference: Publish | None = None,
    references_ready: Callable[[], bool] = lambda: True,
) -> Topology:
    """Declare stage 1 (predictions + ground-truth) and stage 2 (partials) on ``app``.

    With ``publish_reference``, stage 2 builds the automatic (first_n / first_period) references
    (``streams.auto_reference``) once ``references_ready()`` says the catalog has caught up.
    """
    topics = settings.topics
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    inputs = app.topic(topics.predictions, topics.ground_truth, **raw)
    partials = app.topic(partials_topic_name(settings), **raw)
    metrics = app.topic(topics.monitor_metrics, **raw)
    dead = app.topic(topics.dead_letter, **raw)
    joins = app.Table("joins", default=None)
    closed_windows = app.Table("closed-windows", default=None)
    change_detectors = app.Table("change-detectors", default=None)

    stage1 = Stage1(settings, specs, joins, references, partials, dead)
    limits = EventLimits.from_settings(settings)
    stage2 = Stage2(
        specs,
        references,
        metrics,
        closed_windows,
        allowed_lateness_ms=settings.allowed_lateness_seconds * 1000,
        grace_seconds=settings.window_grace_seconds,
        retention_ms=lambda model_id: window_retention_ms(settings, specs.get(model_id)),
        clock_inputs=lambda source: source.startswith(f"{topics.predictions}|"),
        max_age_ms=lambda model_id: limits.max_age_ms(specs.get(model_id)),
        dead_topic=dead,
        change=ChangeTracker(specs, change_detectors),
        auto_references=None
        if publish_reference is None
        else AutoReferenceBuilder(
            specs, references, publish_reference, closed_windows, ready=references_ready
        ),
    )
    streams: dict[str, StreamT] = {}
    batches = {"stage1": 0}

    async def stage1_batch(acks: Acknowledger, events: Sequence[Any]) -> None:
        await stage1.process(acks, events)
        batches["stage1"] += 1
        if batches["stage1"] % EXPIRE_EVERY_BATCHES == 0:
            latest = {e.message.partition: e for e in events}
            stage1.expire_entries(int(time.time() * 1000), latest)

    def is_current(event: Any) -> bool:
        return bool(event.message.generation_id == app.consumer_generation_id)

    async def poisoned(event: Any, error: BaseException) -> None:
        letter = dead_letter(event.message, processing_error(error))
        await publish_all(dead, [(letter.dedup_key().encode(), model_to_json(letter))])

    options: dict[str, Any] = {
        "size": settings.batch_size,
        "within": settings.batch_within,
        "is_current": is_current,
        "on_poison": poisoned,
    }
    stage1_batcher = EventBatcher(stage1_batch, **options)
    stage2_batcher = EventBatcher(stage2.process, **options)

    @app.agent(inputs, name="stage1")
    async def stage1_agent(stream: StreamT) -> None:
        streams["stage1"] = stream
        await stage1_batcher.consume(stream)

    @app.agent(partials, name="stage2")
    async def stage2_agent(stream: StreamT) -> None:
        streams["stage2"] = stream
        await stage2_batcher.consume(stream)

    @app.timer(interval=min(settings.batch_within, 0.5))
    async def flush_partial_batches() -> None:
        await stage1_batcher.flush_if_due()
        await stage2_batcher.flush_if_due()

    @app.timer(interval=settings.idle_flush_seconds)
    async def flush_idle_chunks() -> None:
        async with stage1_batcher.lock:
            await stage1.flush_idle(settings.idle_flush_seconds)

    @app.timer(interval=1.0)
    async def close_windows() -> None:
        if "stage2" in streams:
            async with stage2_batcher.lock:
                await stage2.close_ready(stage2_batcher)

    @app.timer(interval=10.0)
    async def report() -> None:
        log.info("stage1 %s", stage1.stats)
        log.info("stage2 %s", stage2.stats)
        if stage2.change is not None:
            log.info("change detectors %s", stage2.change.stats)
        if stage2.auto_references is not None:
            log.info("automatic references %s", stage2.auto_references.stats)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app: faust.App, revoked: set[Any], **kwargs: Any) -> None:
        # No await before the drops: a batch must not fold events of revoked partitions afterwards
        # (the generation does not change until the new assignment, so the batcher cannot tell).
        tps = {(tp.topic, tp.partition) for tp in revoked}
        stage1_batcher.discard(tps)
        stage2_batcher.discard(tps)
        stage1.drop_partitions(tps)
        stage2.drop_partitions({tp.partition for tp in revoked if tp.topic == partials_topic_name(settings)})

    return Topology(stage1, stage2)
