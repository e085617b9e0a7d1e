"""Declares stage 2 on the faust control plane: the partials topic, its tables, agent and timers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import faust
from confluent_kafka import Producer
from faust.types import StreamT

from modelmon.events import model_to_json
from modelmon.settings import Settings
from modelmon.spec import ModelSpec, parse_duration
from streams.app import StaleAssignment, publish_all, seeker
from streams.auto_reference import AutoReferenceBuilder, Publish
from streams.batching import EventBatcher, StartOf
from streams.change import ChangeTracker
from streams.reference_id import ReferenceLookup
from streams.stage2 import Stage2
from streams.state import StateStores
from streams.validation import EventLimits, dead_letter, processing_error

log = logging.getLogger(__name__)

PARTIALS = "monitor-partials"


def partials_topic_name(settings: Settings) -> str:
    """The internal topic from stage 1 to stage 2 (keyed by model id)."""
    return f"{settings.topic_prefix}{PARTIALS}"


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
    start_offsets: StartOf | None = None,
    producer: Producer,
) -> Stage2:
    """Declare stage 2 (partials, keyed by model) on ``app``; stage 1 runs on the data plane.

    With ``publish_reference``, stage 2 builds the automatic (first_n / first_period) references
    (``streams.auto_reference``) once ``references_ready()`` says the catalog has caught up.
    """
    topics = settings.topics
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    partials = app.topic(partials_topic_name(settings), **raw)
    metrics = app.topic(topics.monitor_metrics, **raw)
    dead = app.topic(topics.dead_letter, **raw)
    state = StateStores(app, settings, partials_topic_name(settings), ["closed-windows", "change-detectors"],
                        producer)  # fmt: skip
    closed_windows, change_detectors = state["closed-windows"], state["change-detectors"]

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
        flush_state=state.flush,
        state_ready=state.ready,
        change=ChangeTracker(specs, change_detectors),
        auto_references=None
        if publish_reference is None
        else AutoReferenceBuilder(
            specs, references, publish_reference, closed_windows, ready=references_ready
        ),
    )
    running = {"stage2": False}

    async def poisoned(event: Any, error: BaseException) -> None:
        letter = dead_letter(event.message, processing_error(error))
        await publish_all(dead, [(letter.dedup_key().encode(), model_to_json(letter))])

    batcher = EventBatcher(
        stage2.process,
        size=settings.batch_size,
        within=settings.batch_within,
        is_current=lambda event: bool(event.message.generation_id == app.consumer_generation_id),
        on_poison=poisoned,
        start_of=start_offsets,
        seek=seeker(app),
    )

    @app.agent(partials, name="stage2")
    async def stage2_agent(stream: StreamT) -> None:
        running["stage2"] = True
        await batcher.consume(stream)

    @app.timer(interval=min(settings.batch_within, 0.5))
    async def flush_partial_batches() -> None:
        await batcher.flush_if_due()

    @app.timer(interval=1.0)
    async def close_windows() -> None:
        if running["stage2"]:
            await state.ready()
            async with batcher.lock:
                try:
                    await stage2.close_ready(batcher)
                except StaleAssignment as error:  # a rebalance came while windows were published
                    log.info("closing windows stopped by a rebalance (%s): the new owners close them", error)

    @app.timer(interval=10.0)
    async def report() -> None:
        log.info("stage2 %s", stage2.stats)
        if stage2.change is not None:
            log.info("change detectors %s", stage2.change.stats)
        if stage2.auto_references is not None:
            log.info("automatic references %s", stage2.auto_references.stats)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app: faust.App, revoked: set[Any], **kwargs: Any) -> None:
        # No await before the drops: a batch must not fold partials of revoked partitions afterwards
        # (the generation does not change until the new assignment, so the batcher cannot tell).
        batcher.discard({(tp.topic, tp.partition) for tp in revoked})
        stage2.drop_partitions({tp.partition for tp in revoked if tp.topic == partials_topic_name(settings)})

    return stage2
