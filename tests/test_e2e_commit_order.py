"""The kill -9 loss of a held partial, reproduced deterministically on the real broker.

Stage 2 holds a partial (window W2, still open) and releases a later one (window W1, closed and
published) out of offset order. faust-streaming 0.15's own commit computation then committed past
the held partial (its gap check is off by one, and skipped while nothing is committed), so a kill
lost W2's events for good. The worker now hands acknowledgements to faust in offset order only
(``streams.acks``): the committed offset stays at the held partial, and a restarted worker publishes
W2 whole.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from modelmon.events import PredictionEvent
from modelmon.spec import load_specs
from streams.bundle import BundleKey, WindowBundle
from streams.partials import Partial
from streams.run import prepare_topics
from streams.topology import partials_topic_name
from tests.workers import WorkerProcess, make_settings, wait_until, write_spec

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
WINDOW_MS = 60_000


def partial(spec_dir: Path, model_id: str, window: int, n: int, source: str, watermark_ms: int) -> Partial:
    spec = load_specs(spec_dir)[model_id]
    key = BundleKey(model_id, "1", "", T0 + window * WINDOW_MS, WINDOW_MS)
    bundle = WindowBundle.empty(key, spec, None)
    events = [
        PredictionEvent(
            prediction_id=f"{source}-{i}",
            model_id=model_id,
            ts=key.window_start_ms + i,
            features={"amount": float(i), "country": "DE"},
            prediction=1,
            score=0.5,
        )
        for i in range(n)
    ]
    bundle.add_predictions(events, [T0] * n, spec)
    topic_partition = source.rsplit("|", 1)[0]
    return Partial(source, topic_partition, n, True, watermark_ms, "", bundle)


def window_events(bootstrap: str, topic: str, model_id: str) -> dict[str, float]:
    """The newest stage-2 ``events`` value per window start (ISO text), read from ``monitor-metrics``."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"r-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    found: dict[str, tuple[int, float]] = {}
    try:
        for _ in range(6):
            for message in consumer.consume(1000, timeout=0.5):
                if message.error() is not None:
                    continue
                point = orjson.loads(message.value() or b"{}")
                if point.get("model_id") == model_id and point.get("metric") == "events":
                    start, revision = str(point["window_start"]), int(point["revision"])
                    if start not in found or found[start][0] < revision:
                        found[start] = (revision, float(point["value"]))
    finally:
        consumer.close()
    return {start: value for start, (_, value) in found.items()}


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        offsets = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in offsets}


def test_a_held_partial_survives_out_of_order_release_commit_and_kill(
    kafka_broker, topic_prefix: str, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    model_id = write_spec(models)
    # Windows close by watermark only (a long grace), and offsets are committed every 0.2 s.
    settings = make_settings(
        kafka_broker.bootstrap, topic_prefix, tmp_path, models,
        allowed_lateness_seconds=0, window_grace_seconds=3600.0, commit_interval=0.2,
    )  # fmt: skip
    prepare_topics(settings)
    topic = partials_topic_name(settings)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap, "partitioner": "murmur2_random"})

    def send(*partials: Partial) -> None:
        for item in partials:
            for key, value in item.messages(settings.max_partial_bytes):
                producer.produce(topic, key=key, value=value)
        assert producer.flush(10) == 0

    worker = WorkerProcess(settings, tmp_path / "worker-1.log")
    second = None
    try:
        # Offset 0: W2 from partition 0, watermark inside W2: held, its window stays open.
        # Offset 1: W1 from partition 1, watermark past W1 on both inputs: W1 closes and is released.
        held = partial(models, model_id, 1, 7, "predictions|0|0", T0 + 70_000)
        closing = partial(models, model_id, 0, 5, "predictions|1|0", T0 + 90_000)
        send(held, closing)
        metrics = settings.topics.monitor_metrics
        events = lambda: window_events(kafka_broker.bootstrap, metrics, model_id)  # noqa: E731
        assert wait_until(lambda: len(events()) >= 1, 90), worker.log()
        assert events() == {"2026-01-01T00:00:00Z": 5.0}
        wait_until(lambda: False, timeout=3)  # many commit intervals
        offsets = committed(kafka_broker.bootstrap, settings.app_id, topic, settings.topic_partitions)
        assert all(offset <= 0 for offset in offsets.values()), (offsets, worker.log())
        worker.kill()

        second = WorkerProcess(settings, tmp_path / "worker-2.log")
        # W3 from both partitions, watermarks past W2: W2 closes, with the held partial's events.
        send(
            partial(models, model_id, 2, 3, "predictions|0|1", T0 + 200_000),
            partial(models, model_id, 2, 4, "predictions|1|1", T0 + 200_000),
        )

        assert wait_until(lambda: "2026-01-01T00:01:00Z" in events(), 120), second.log()
        # W2 whole: the held partial's 7 events (W3 closed too: 3 + 4 events).
        assert events() == {
            "2026-01-01T00:00:00Z": 5.0,
            "2026-01-01T00:01:00Z": 7.0,
            "2026-01-01T00:02:00Z": 7.0,
        }
    finally:
        if second is not None:
            second.stop()
        if worker.alive:
            worker.stop()
