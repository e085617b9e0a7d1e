"""The producer SDK against a real broker: what lands on which topic, and how failures surface."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from pydantic import ValidationError

from modelmon.admin import ensure_topics
from modelmon.app.broker import EmbeddedBroker, free_port
from modelmon.sdk import BufferFullError, MonitorClient
from modelmon.topics import Topics

# librdkafka logs every refused connection to stderr; the failures are asserted on, not logged.
QUIET: dict[str, Any] = {"log_level": 0}
HOLD_BACK: dict[str, Any] = {"linger.ms": 100_000}


@pytest.fixture
def topics(kafka_broker: EmbeddedBroker, topic_prefix: str) -> Topics:
    names = Topics(topic_prefix)
    ensure_topics(kafka_broker.bootstrap, [names.predictions, names.ground_truth], partitions=1)
    return names


@pytest.fixture
def client(kafka_broker: EmbeddedBroker, topics: Topics) -> Iterator[MonitorClient]:
    monitor = MonitorClient(kafka_broker.bootstrap, topics.prefix)
    yield monitor
    monitor.close()


def read_all(broker: EmbeddedBroker, topic: str, timeout: float = 30.0) -> list[Message]:
    """Every message of partition 0 of ``topic``, read from the start up to the high watermark."""
    consumer = Consumer(broker.consumer_config(f"reader-{uuid.uuid4().hex[:8]}"))
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got: list[Message] = []
        deadline = time.monotonic() + timeout
        while len(got) < high and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                raise AssertionError(f"consume error: {error}")
            if error is None:
                got.append(message)
        assert len(got) == high, f"read {len(got)} of {high} messages from {topic}"
        return got
    finally:
        consumer.close()


def value_of(message: Message) -> bytes:
    value = message.value()
    assert value is not None
    return value


def unreachable(**config: Any) -> dict[str, Any]:
    """Arguments for a client of a port nothing listens on."""
    return {"bootstrap_servers": f"127.0.0.1:{free_port()}", **QUIET, **config}


# -- what lands where -----------------------------------------------------------------------------


@pytest.mark.integration
def test_log_prediction_lands_keyed_by_its_id_with_the_contract_fields(
    kafka_broker: EmbeddedBroker, client: MonitorClient, topics: Topics
) -> None:
    returned = client.log_prediction(
        "fraud",
        {"amount": 12.5, "n": 3, "new_device": True, "country": "DE", "age": None},
        1,
        model_version="4",
        prediction_id="req-1",
        score=0.875,
        ts="2024-05-01T12:00:00+02:00",
        tags={"country": "DE"},
    )
    assert returned == "req-1"
    assert client.flush() == 0
    assert (client.delivered, client.failed) == (1, 0)

    [message] = read_all(kafka_broker, topics.predictions)
    assert message.key() == b"req-1"
    assert orjson.loads(value_of(message)) == {
        "prediction_id": "req-1",
        "model_id": "fraud",
        "model_version": "4",
        "ts": 1714557600000,  # epoch milliseconds: the worker reads them without parsing text
        "features": {"amount": 12.5, "n": 3, "new_device": True, "country": "DE", "age": None},
        "prediction": 1,
        "score": 0.875,
        "scores": None,
        "tags": {"country": "DE"},
    }


@pytest.mark.integration
def test_log_prediction_generates_the_id_it_returns(
    kafka_broker: EmbeddedBroker, client: MonitorClient, topics: Topics
) -> None:
    ids = [client.log_prediction("iris", {"petal": 1.4}, "setosa", scores={"setosa": 0.9}) for _ in range(3)]
    assert client.flush() == 0

    assert len(set(ids)) == 3
    assert all(uuid.UUID(pid).version == 4 for pid in ids)
    messages = read_all(kafka_broker, topics.predictions)
    assert [(m.key() or b"").decode() for m in messages] == ids
    assert [orjson.loads(value_of(m))["prediction_id"] for m in messages] == ids
    assert orjson.loads(value_of(messages[0]))["scores"] == {"setosa": 0.9}


@pytest.mark.integration
def test_log_ground_truth_lands_on_the_ground_truth_topic(
    kafka_broker: EmbeddedBroker, client: MonitorClient, topics: Topics
) -> None:
    client.log_ground_truth("fraud", "req-1", 0, ts=1714557600000)
    assert client.flush() == 0

    [message] = read_all(kafka_broker, topics.ground_truth)
    assert message.key() == b"req-1"
    assert orjson.loads(value_of(message)) == {
        "prediction_id": "req-1",
        "model_id": "fraud",
        "label": 0,
        "ts": 1714557600000,
    }
    assert read_all(kafka_broker, topics.predictions) == []


@pytest.mark.integration
@pytest.mark.parametrize(
    "bad_call",
    [
        pytest.param(lambda c: c.log_prediction("m", {"x": 1}, 1, score=1.5), id="score>1"),
        pytest.param(lambda c: c.log_prediction("m", {"x": 1}, 1, scores={"a": -0.1}), id="scores<0"),
        pytest.param(lambda c: c.log_prediction("", {"x": 1}, 1), id="empty-model-id"),
        pytest.param(lambda c: c.log_prediction("m", {"x": [1]}, 1), id="list-feature"),
        pytest.param(lambda c: c.log_prediction("m", {"x": 1}, float("nan")), id="nan-prediction"),
        pytest.param(lambda c: c.log_prediction("m", {"x": 1}, 1, ts=True), id="bool-ts"),
        pytest.param(lambda c: c.log_prediction("m", {"x": 1}, 1, prediction_id=""), id="empty-id"),
        pytest.param(lambda c: c.log_ground_truth("m", "", 1), id="gt-empty-id"),
        pytest.param(lambda c: c.log_ground_truth("m", "p", 1, ts="never"), id="gt-bad-ts"),
    ],
)
def test_contract_errors_raise_before_anything_is_sent(
    kafka_broker: EmbeddedBroker, client: MonitorClient, topics: Topics, bad_call: Any
) -> None:
    with pytest.raises(ValidationError):
        bad_call(client)
    client.log_prediction("m", {"x": 1}, 1, prediction_id="the-valid-one")
    assert client.flush() == 0

    assert [m.key() for m in read_all(kafka_broker, topics.predictions)] == [b"the-valid-one"]
    assert read_all(kafka_broker, topics.ground_truth) == []
    assert (client.delivered, client.failed) == (1, 0)


@pytest.mark.integration
def test_context_manager_flushes_on_exit(kafka_broker: EmbeddedBroker, topics: Topics) -> None:
    # linger.ms holds the batch back far longer than the test, so only the flush on exit sends it;
    # delivery callbacks also run only inside poll/flush.
    with MonitorClient(kafka_broker.bootstrap, topics.prefix, **HOLD_BACK) as monitor:
        monitor.log_prediction("m", {"x": 1}, 1, prediction_id="p-ctx")
        monitor.log_ground_truth("m", "p-ctx", 1)
        assert monitor.delivered == 0
    assert (monitor.delivered, monitor.failed) == (2, 0)
    assert [m.key() for m in read_all(kafka_broker, topics.predictions)] == [b"p-ctx"]
    assert [m.key() for m in read_all(kafka_broker, topics.ground_truth)] == [b"p-ctx"]


@pytest.mark.integration
def test_produce_raw_sends_the_bytes_unchanged(kafka_broker: EmbeddedBroker, client: MonitorClient) -> None:
    topic = client.topics.predictions
    client.produce_raw(topic, b'{"model_id": "m", "features": {', key="k-1")
    client.produce_raw(topic, b"[1, 2]")
    assert client.flush() == 0
    messages = read_all(kafka_broker, topic)
    assert [(m.key(), m.value()) for m in messages] == [
        (b"k-1", b'{"model_id": "m", "features": {'),
        (None, b"[1, 2]"),
    ]


# -- failures -------------------------------------------------------------------------------------


def test_delivery_failure_reaches_on_error() -> None:
    failures: list[tuple[int, str | None, bytes | None]] = []

    def on_error(error: KafkaError, message: Message) -> None:
        failures.append((error.code(), message.topic(), message.key()))

    monitor = MonitorClient(
        on_error=on_error, topic_prefix="x.", **unreachable(**{"message.timeout.ms": 100})
    )
    pid = monitor.log_prediction("m", {"x": 1}, 1)

    assert monitor.flush(timeout=30) == 0
    assert failures == [(KafkaError._MSG_TIMED_OUT, "x.predictions", pid.encode())]
    assert (monitor.delivered, monitor.failed) == (0, 1)


def test_delivery_failure_without_handler_is_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    monitor = MonitorClient(**unreachable(**{"message.timeout.ms": 100}))
    monitor.log_ground_truth("m", "p-1", 1)
    with caplog.at_level(logging.ERROR, logger="modelmon.sdk"):
        assert monitor.flush(timeout=30) == 0
    assert monitor.failed == 1
    [record] = [r for r in caplog.records if r.name == "modelmon.sdk"]
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith("modelmon: delivery to ground-truth failed: ")
    assert "_MSG_TIMED_OUT" in record.getMessage()


def test_full_queue_raises_buffer_full_error_after_max_block() -> None:
    monitor = MonitorClient(
        max_block=0.05, **unreachable(**{"queue.buffering.max.messages": 1, "message.timeout.ms": 100})
    )
    monitor.log_prediction("m", {"x": 1}, 1)
    with pytest.raises(BufferFullError, match="send queue full"):
        monitor.log_prediction("m", {"x": 1}, 1)
    # The queued message is still reported (as failed) rather than lost silently.
    assert monitor.flush(timeout=30) == 0
    assert (monitor.delivered, monitor.failed) == (0, 1)


def test_zero_max_block_raises_at_once_when_full() -> None:
    monitor = MonitorClient(
        max_block=0, **unreachable(**{"queue.buffering.max.messages": 1, "message.timeout.ms": 100})
    )
    monitor.log_ground_truth("m", "p-1", 1)
    with pytest.raises(BufferFullError):
        monitor.log_ground_truth("m", "p-2", 1)
    monitor.flush(timeout=30)


def test_negative_max_block_is_refused() -> None:
    with pytest.raises(ValueError, match="max_block must be >= 0"):
        MonitorClient("127.0.0.1:9", max_block=-1)


def test_flush_reports_what_is_still_undelivered() -> None:
    monitor = MonitorClient(**unreachable(**{"message.timeout.ms": 600_000}))
    monitor.log_prediction("m", {"x": 1}, 1)
    monitor.log_prediction("m", {"x": 2}, 1)
    assert monitor.flush(timeout=0) == 2
    assert (monitor.delivered, monitor.failed) == (0, 0)


def test_close_counts_what_it_could_not_deliver_as_failed(caplog: pytest.LogCaptureFixture) -> None:
    monitor = MonitorClient(**unreachable(**{"message.timeout.ms": 600_000}))
    monitor.log_prediction("m", {"x": 1}, 1)
    with caplog.at_level(logging.ERROR, logger="modelmon.sdk"):
        assert monitor.close(timeout=0.2) == 1
    assert (monitor.delivered, monitor.failed) == (0, 1)
    assert "1 messages not delivered before close, counted as failed" in caplog.text
