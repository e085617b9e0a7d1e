"""Sending synthetic traffic through the SDK at a steady rate: `modelmon produce` and the demo's scenario."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelmon.app.scenario import Scenario
from modelmon.app.synthetic import SyntheticModel, malformed_messages
from modelmon.sdk import MonitorClient
from modelmon.settings import Settings
from modelmon.spec import ModelSpec


class DeliveryError(RuntimeError):
    """Messages were still undelivered after the final flush, or delivering them failed."""

    def __init__(self, bootstrap: str, undelivered: int, failed: int) -> None:
        super().__init__(
            f"{undelivered} messages undelivered and {failed} failed on the Kafka broker at {bootstrap}; "
            "check MODELMON_KAFKA_BOOTSTRAP and that the broker runs"
        )


def produce_synthetic(
    settings: Settings,
    specs: dict[str, ModelSpec],
    events: int,
    *,
    rate: float = 0.0,
    seed: int = 0,
    labels: bool = True,
    malformed: int = 0,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Log ``events`` predictions per model (and their labels), plus ``malformed`` bad messages.

    ``rate`` caps predictions per second over all models (0 = as fast as possible). Returns the
    number of valid predictions sent; raises if any is still undelivered after flushing.
    """
    generators = [SyntheticModel(spec, seed=seed + i) for i, spec in enumerate(specs.values())]
    sent = 0
    started = time.monotonic()
    producer_config: dict[str, Any] = dict(settings.kafka_config)
    with MonitorClient(settings.kafka_bootstrap, settings.topic_prefix, **producer_config) as client:
        for _ in range(events):
            for generator in generators:
                item = generator.prediction()
                pid = client.log_prediction(
                    item.model_id, item.features, item.prediction, score=item.score, tags=item.tags
                )
                if labels:
                    client.log_ground_truth(item.model_id, pid, item.label)
                sent += 1
            if on_progress is not None:
                on_progress(sent)
            if rate > 0:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        if malformed and generators:
            first = generators[0].spec.model_id
            for _, body in malformed_messages(malformed, first, datetime.now(UTC), seed=seed):
                client.produce_raw(client.topics.predictions, body)
        undelivered = client.flush(60)
    if undelivered or client.failed:
        raise DeliveryError(settings.kafka_bootstrap, undelivered, client.failed)
    return sent


@dataclass
class ScenarioProgress:
    """Counters of :func:`produce_scenario`, updated as it sends (read them from another thread)."""

    predictions: int = 0
    labels: int = 0
    malformed: int = 0
    event_time: datetime | None = None
    window: int = -1
    done: bool = False


def produce_scenario(
    settings: Settings,
    specs: dict[str, ModelSpec],
    scenario: Scenario,
    *,
    rate: float = 0.0,
    progress: ScenarioProgress | None = None,
    on_window: Callable[[int, datetime], None] | None = None,
    stop: threading.Event | None = None,
) -> ScenarioProgress:
    """Send the scenario's messages through the SDK, ``rate`` predictions per second (0 = unpaced).

    ``on_window(window, start)`` is called when the event time enters a new window. ``stop`` ends the
    run early. Raises if a message is still undelivered after flushing.
    """
    progress = progress or ScenarioProgress()
    started = time.monotonic()
    config: dict[str, Any] = dict(settings.kafka_config)
    with MonitorClient(settings.kafka_bootstrap, settings.topic_prefix, max_block=5.0, **config) as client:
        for step in scenario.steps(specs):
            if stop is not None and stop.is_set():
                break
            if step.kind == "prediction":
                item = step.item
                assert item is not None
                if progress.event_time is None or step.ts > progress.event_time:
                    window = int((step.ts - scenario.origin).total_seconds() // scenario.window_seconds)
                    if window != progress.window:
                        progress.window = window
                        if on_window is not None:
                            on_window(window, step.ts)
                    progress.event_time = step.ts
                    if rate > 0:
                        ahead = progress.predictions / rate - (time.monotonic() - started)
                        if ahead > 0:
                            time.sleep(ahead)
                client.log_prediction(
                    item.model_id,
                    item.features,
                    item.prediction,
                    prediction_id=step.prediction_id,
                    score=item.score,
                    tags=item.tags,
                    ts=step.ts,
                )
                progress.predictions += 1
            elif step.kind == "label":
                assert step.label is not None
                client.log_ground_truth(step.model_id, step.prediction_id, step.label, ts=step.ts)
                progress.labels += 1
            else:
                client.produce_raw(client.topics.predictions, step.raw)
                progress.malformed += 1
        undelivered = client.flush(60)
    progress.done = True
    if undelivered or client.failed:
        raise DeliveryError(settings.kafka_bootstrap, undelivered, client.failed)
    return progress
