"""End to end on real components: SDK → broker → `modelmon worker` → broker → sink → ClickHouse."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer

from modelmon.app.synthetic import malformed_messages
from modelmon.sdk import MonitorClient
from sinks.consumer import ClickHouseSink
from sinks.queries import dead_letters_by_type, events_per_model, events_per_window
from sinks.writer import ClickHouseWriter
from streams.run import prepare_topics
from tests.workers import WorkerProcess, make_settings, wait_until, write_spec

pytestmark = pytest.mark.integration

VALID = 1000
MALFORMED = 50


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[dict]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    out: list[dict] = []
    wait_until(lambda: _drain(consumer, out) >= expected, timeout, interval=0)
    consumer.close()
    return out


def _drain(consumer: Consumer, out: list[dict]) -> int:
    for message in consumer.consume(500, timeout=0.5):
        if message.error() is None:
            out.append(orjson.loads(message.value()))
    return len(out)


def test_valid_events_counted_and_malformed_dead_lettered(
    kafka_broker, topic_prefix: str, clickhouse, tmp_path: Path
) -> None:
    clickhouse_client = clickhouse  # emptied: dead letters of earlier tests must not count here
    model_id = write_spec(tmp_path / "models")
    settings = make_settings(kafka_broker.bootstrap, topic_prefix, tmp_path, tmp_path / "models")
    prepare_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    sink = ClickHouseSink(settings, ClickHouseWriter(clickhouse_client))
    sink.start_thread()
    try:
        # Event times spread over three one-minute windows, in the past, in shuffled order.
        base = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        offsets_ms = [(i * 173) % 180_000 for i in range(VALID)]
        expected_windows = Counter(base + timedelta(minutes=ms // 60_000) for ms in offsets_ms)
        with MonitorClient(kafka_broker.bootstrap, topic_prefix) as client:
            for i, ms in enumerate(offsets_ms):
                client.log_prediction(
                    model_id,
                    {"amount": float(i), "country": "DE" if i % 3 else "FR"},
                    i % 2,
                    score=0.5,
                    ts=base + timedelta(milliseconds=ms),
                )
            for _, body in malformed_messages(MALFORMED, model_id, base):
                client.produce_raw(settings.topics.predictions, body)
            assert client.flush(30) == 0
        assert client.failed == 0

        def landed() -> bool:
            assert worker.alive, worker.log()
            return (
                events_per_model(clickhouse_client).get(model_id, 0) >= VALID
                and sum(dead_letters_by_type(clickhouse_client).values()) >= MALFORMED
            )

        assert wait_until(landed, timeout=120), (
            events_per_model(clickhouse_client),
            dead_letters_by_type(clickhouse_client),
            sink.stats,
            worker.log(),
        )
        assert worker.alive, worker.log()
    finally:
        sink.stop()
        worker.stop()

    assert events_per_model(clickhouse_client)[model_id] == VALID
    windows = {start.replace(tzinfo=UTC): n for start, n in events_per_window(clickhouse_client, model_id)}
    assert windows == dict(expected_windows)
    by_type = dead_letters_by_type(clickhouse_client)
    assert sum(by_type.values()) == MALFORMED
    assert by_type == {
        "contract_violation": 10,
        "invalid_json": 10,
        "missing_model_id": 10,
        "not_an_object": 10,
        "unknown_model": 10,
    }
    letters = read_topic(kafka_broker.bootstrap, settings.topics.dead_letter, MALFORMED)
    assert len(letters) == MALFORMED
    assert all(letter["reason"] and letter["topic"] == settings.topics.predictions for letter in letters)
