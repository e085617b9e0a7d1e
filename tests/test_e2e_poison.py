"""Events that used to stop or starve a worker, between good ones, on the real broker and ClickHouse.

Each odd event is dead-lettered with its reason, the worker stays up, and every good event is counted
exactly: event times far from the clock, oversized messages, strings and feature maps; a window
whose partial is larger than the broker takes (sent in fragments); live traffic with a backfill of
months-old events under its own model version; events dated 2100 cannot move the watermark.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from modelmon.events import DeadLetter
from sinks.consumer import ClickHouseSink
from sinks.queries import events_per_model, metric_totals, read_events
from sinks.writer import ClickHouseWriter
from streams.run import prepare_topics
from tests.workers import WorkerProcess, make_settings, wait_until, write_spec

pytestmark = pytest.mark.integration


def prediction(model_id: str, ts: datetime | str, **overrides: Any) -> tuple[bytes, bytes]:
    pid = str(uuid.uuid4())
    body = {
        "prediction_id": pid,
        "model_id": model_id,
        "ts": ts if isinstance(ts, str) else ts.isoformat(),
        "features": {"amount": 3.5, "country": "DE", "comment": f"c-{pid}"},
        "prediction": 1,
        "score": 0.7,
        **overrides,
    }
    return pid.encode(), orjson.dumps(body)


def test_odd_events_are_dead_lettered_and_every_good_one_counts(
    kafka_broker, topic_prefix: str, clickhouse_client, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    comment = {"comment": {"type": "categorical"}}
    live = write_spec(models, features={"amount": {"type": "numerical"}, "country": {"type": "categorical"},
                                        **comment}, max_event_age="400d")  # fmt: skip
    settings = make_settings(
        kafka_broker.bootstrap, topic_prefix, tmp_path, models,
        max_event_age="7d", max_partial_bytes=8_192, max_message_bytes=500_000,
        window_grace_seconds=2.0, idle_flush_seconds=0.5, allowed_lateness_seconds=0,
    )  # fmt: skip
    prepare_topics(settings)
    topic = settings.topics.predictions
    sink = ClickHouseSink(settings, ClickHouseWriter(clickhouse_client))
    sink.start_thread()
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap, "partitioner": "murmur2_random"})
    now = datetime.now(UTC).replace(microsecond=0)
    good_live = [prediction(live, now - timedelta(seconds=s)) for s in range(300)]
    # Eleven months ago, under a version of its own: windowed on its own clock (docs/operations.md).
    old = now - timedelta(days=330)
    backfill = [prediction(live, old - timedelta(seconds=s), model_version="backfill") for s in range(200)]
    odd = {
        "ts_out_of_range": [
            prediction(live, "9999-12-31T23:59:00Z"),
            prediction(live, "2100-01-01T00:00:00Z"),
            prediction(live, "1970-01-01T00:00:00Z"),
            prediction(live, now - timedelta(days=500)),
        ],
        "too_large": [
            prediction(live, now, features={"amount": 1.0, "country": "DE", "comment": "x" * 400_000}),
            prediction(live, now, features={f"f{i}": i for i in range(5000)}),
            # Over MODELMON_MAX_MESSAGE_BYTES (noida-db drops messages over 1 MB without a word, a real
            # Kafka refuses them at the producer: the limit is set below the broker's here).
            (b"big", b'{"model_id": "' + b"m" * 600_000 + b'"}'),
        ],
    }
    try:
        messages = good_live[:150] + [m for group in odd.values() for m in group] + backfill + good_live[150:]
        for key, value in messages:
            producer.produce(topic, key=key, value=value)
        assert producer.flush(30) == 0

        def counted() -> int:
            return events_per_model(clickhouse_client).get(live, 0)

        assert wait_until(lambda: counted() >= 500, 120), (counted(), worker.log())
        wait_until(lambda: False, timeout=3)  # replays or late partials must not change it
        assert worker.alive, worker.log()
        assert counted() == 500
        totals = metric_totals(clickhouse_client, "events", live)
        day_ago = now - timedelta(days=1)
        assert sum(t.value for t in totals if t.window_start >= day_ago) == 300  # live
        assert sum(t.value for t in totals if t.window_start < day_ago) == 200  # backfill

        def letters() -> dict[str, int]:
            stored = read_events(clickhouse_client, DeadLetter)
            return {kind: sum(d.topic == topic and d.error_type == kind for d in stored) for kind in odd}

        expected = {kind: len(group) for kind, group in odd.items()}
        wait_until(lambda: letters() == expected, 30)
        assert letters() == expected
        # Nothing was silently discarded as expired: live windows survived the backfill and the year 2100.
        assert metric_totals(clickhouse_client, "expired_events", live) == []
    finally:
        sink.stop()
        worker.stop()
