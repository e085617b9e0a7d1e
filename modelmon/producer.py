"""Sending synthetic traffic through the SDK, at a steady rate, for the demo and `modelmon produce`."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from modelmon.sdk import MonitorClient
from modelmon.settings import Settings
from modelmon.spec import ModelSpec
from modelmon.synthetic import SyntheticModel, malformed_messages


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
        raise RuntimeError(f"{undelivered} messages undelivered, {client.failed} failed")
    return sent
