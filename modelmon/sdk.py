"""The producer SDK: what a model server calls to log predictions and ground truth to Kafka.

Example (needs a running broker)::

    from modelmon.sdk import MonitorClient

    with MonitorClient("localhost:9092") as monitor:
        pid = monitor.log_prediction("fraud-detector", {"amount": 12.5, "country": "DE"}, 0, score=0.12)
        ...
        monitor.log_ground_truth("fraud-detector", pid, 1)

Delivery: the producer is idempotent (no duplicates from its own retries) and batches messages in
the background; ``log_*`` only enqueue. When the local queue is full they wait at most
``max_block`` seconds and then raise :class:`BufferFullError`, so a slow broker never stalls the
caller's request path for longer than that. Delivery failures are reported to ``on_error`` (default:
logged and counted in :attr:`MonitorClient.failed`); :meth:`flush` returns how many are still
undelivered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from modelmon.events import FeatureValue, GroundTruthEvent, PredictionEvent, model_to_json
from modelmon.topics import Topics

log = logging.getLogger(__name__)

DeliveryErrorHandler = Callable[[KafkaError, Message], None]

DEFAULT_PRODUCER_CONFIG: dict[str, Any] = {
    "enable.idempotence": True,
    # The Java client's partitioner (and aiokafka's, inside faust): a key lands on the same
    # partition whichever of them produced it, so predictions and labels stay co-partitioned.
    "partitioner": "murmur2_random",
    "acks": "all",
    "linger.ms": 20,
    "batch.num.messages": 10_000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 200_000,
    "message.timeout.ms": 120_000,
}


class BufferFullError(RuntimeError):
    """The local send queue stayed full for ``max_block`` seconds (broker slow or down)."""


class MonitorClient:
    """Logs predictions and ground truth to modelmon's Kafka topics.

    ``producer_config`` is passed to confluent-kafka (librdkafka names, e.g.
    ``security.protocol="SASL_SSL"``) and overrides :data:`DEFAULT_PRODUCER_CONFIG`.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic_prefix: str = "",
        *,
        on_error: DeliveryErrorHandler | None = None,
        max_block: float = 0.5,
        **producer_config: Any,
    ) -> None:
        if max_block < 0:
            raise ValueError("max_block must be >= 0 seconds")
        self.topics = Topics(topic_prefix)
        self.max_block = max_block
        self.on_error = on_error
        self.delivered = 0
        self.failed = 0
        config = {**DEFAULT_PRODUCER_CONFIG, **producer_config, "bootstrap.servers": bootstrap_servers}
        self._producer = Producer(config)

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            self.delivered += 1
            return
        self.failed += 1
        if self.on_error is not None:
            self.on_error(error, message)
        else:
            log.error("modelmon: delivery to %s failed: %s", message.topic(), error)

    def _produce(self, topic: str, key: str, value: bytes) -> None:
        deadline = time.monotonic() + self.max_block
        while True:
            try:
                self._producer.produce(topic, key=key.encode(), value=value, on_delivery=self._on_delivery)
                break
            except BufferError:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BufferFullError(
                        f"send queue full for {self.max_block}s; the broker is slow or unreachable"
                    ) from None
                self._producer.poll(min(remaining, 0.05))
        self._producer.poll(0)

    def log_prediction(
        self,
        model_id: str,
        features: Mapping[str, FeatureValue],
        prediction: float | int | str,
        *,
        model_version: str = "1",
        prediction_id: str | None = None,
        score: float | None = None,
        scores: Mapping[str, float] | None = None,
        ts: datetime | int | str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Enqueue one prediction; returns its prediction id (generated when not given).

        Raises ``pydantic.ValidationError`` for an event that breaks the contract, so mistakes
        show up in the caller's tests rather than in the dead-letter topic.
        """
        fields: dict[str, Any] = {
            "model_id": model_id,
            "model_version": model_version,
            "features": dict(features),
            "prediction": prediction,
            "score": score,
            "scores": dict(scores) if scores is not None else None,
            "tags": dict(tags or {}),
        }
        if prediction_id is not None:
            fields["prediction_id"] = prediction_id
        if ts is not None:
            fields["ts"] = ts
        event = PredictionEvent.model_validate(fields)
        self._produce(self.topics.predictions, event.prediction_id, model_to_json(event))
        return event.prediction_id

    def log_ground_truth(
        self,
        model_id: str,
        prediction_id: str,
        label: float | int | str,
        ts: datetime | int | str | None = None,
    ) -> None:
        """Enqueue the true label of an earlier (or later) prediction."""
        fields: dict[str, Any] = {"model_id": model_id, "prediction_id": prediction_id, "label": label}
        if ts is not None:
            fields["ts"] = ts
        event = GroundTruthEvent.model_validate(fields)
        self._produce(self.topics.ground_truth, event.prediction_id, model_to_json(event))

    def produce_raw(self, topic: str, value: bytes, key: str | None = None) -> None:
        """Send bytes as they are (for tools and tests that need malformed messages)."""
        self._producer.produce(topic, key=key.encode() if key else None, value=value)
        self._producer.poll(0)

    def flush(self, timeout: float = 10.0) -> int:
        """Wait up to ``timeout`` seconds for delivery; returns the number still undelivered."""
        return int(self._producer.flush(timeout))

    def close(self, timeout: float = 10.0) -> None:
        remaining = self.flush(timeout)
        if remaining:
            log.error("modelmon: %d messages were not delivered before close", remaining)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["BufferFullError", "KafkaException", "MonitorClient"]
