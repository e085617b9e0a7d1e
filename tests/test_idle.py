"""streams.idle against the real broker: a consumer pauses only when every partition is read to its end."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from modelmon.admin import ensure_topics
from modelmon.app.broker import EmbeddedBroker
from streams.idle import IdleCheck, pause_while_idle

pytestmark = pytest.mark.integration


def _consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )


def _assigned(consumer: Consumer, topic: str, partitions: int) -> list:
    consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
    return consumer.assignment()


def _poll_until(consumer: Consumer, check: IdleCheck, seconds: float = 15.0) -> bool:
    """Poll (reading nothing, the topics are read or empty) until ``check`` says caught up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = consumer.poll(0.2)
        assert message is None or message.error() is not None, "expected nothing to read"
        if check.caught_up():
            return True
    return False


@pytest.fixture
def topic(kafka_broker: EmbeddedBroker, topic_prefix: str) -> Iterator[str]:
    name = f"{topic_prefix}idle"
    ensure_topics(kafka_broker.bootstrap, [name], 2)
    yield name


def _produce(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(count):
        producer.produce(topic, value=b"x", partition=i % 2)
    assert producer.flush(15) == 0


def _committed_at(bootstrap: str, topic: str, *offsets: int) -> Consumer:
    """10 messages on the topic's 2 partitions, the group's offsets committed; a new group member."""
    _produce(bootstrap, topic, 10)
    first = _consumer(bootstrap, f"{topic}-g")
    try:
        committed = [TopicPartition(topic, p, offset) for p, offset in enumerate(offsets)]
        first.commit(offsets=committed, asynchronous=False)
    finally:
        first.close()
    return _consumer(bootstrap, f"{topic}-g")


def test_empty_topics_count_as_read_to_the_end(kafka_broker: EmbeddedBroker, topic: str) -> None:
    # Nothing was ever consumed: no position; the low watermark equals the high one.
    consumer = _consumer(kafka_broker.bootstrap, f"{topic}-g")
    try:
        _assigned(consumer, topic, 2)
        check = IdleCheck(consumer)
        assert _poll_until(consumer, check)
        assert all(tp.offset < 0 for tp in consumer.position(consumer.assignment()))
    finally:
        consumer.close()


def test_a_backlog_is_not_read_until_consumed(kafka_broker: EmbeddedBroker, topic: str) -> None:
    _produce(kafka_broker.bootstrap, topic, 10)
    consumer = _consumer(kafka_broker.bootstrap, f"{topic}-g")
    try:
        _assigned(consumer, topic, 2)
        check = IdleCheck(consumer)
        got = 0
        deadline = time.monotonic() + 20
        while got < 10 and time.monotonic() < deadline:
            assert not check.caught_up(), f"caught up with {got} of 10 read"
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                got += 1
        assert got == 10
        assert check.caught_up()
        # A new message: read, and then caught up again.
        _produce(kafka_broker.bootstrap, topic, 1)
        deadline = time.monotonic() + 20
        message = None
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                break
        assert message is not None and message.error() is None
        assert check.caught_up()
    finally:
        consumer.close()


def test_a_committed_group_starts_at_its_end(kafka_broker: EmbeddedBroker, topic: str) -> None:
    consumer = _committed_at(kafka_broker.bootstrap, topic, 5, 5)
    try:
        consumer.subscribe([topic])
        check = IdleCheck(consumer)
        assert _poll_until(consumer, check, 30)  # committed 5 = high watermark 5 on both partitions
    finally:
        consumer.close()


def test_a_committed_group_behind_its_end_is_not_caught_up(kafka_broker: EmbeddedBroker, topic: str) -> None:
    consumer = _committed_at(kafka_broker.bootstrap, topic, 5, 3)
    try:
        _assigned(consumer, topic, 2)
        check = IdleCheck(consumer)
        # The fetches have not answered yet, or partition 1 starts at 3 of 5: never caught up
        # before both messages of partition 1 are read.
        seen = 0
        deadline = time.monotonic() + 20
        while seen < 2 and time.monotonic() < deadline:
            assert not check.caught_up()
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                assert (message.partition(), message.offset()) in {(1, 3), (1, 4)}
                seen += 1
        assert seen == 2
        assert check.caught_up()
    finally:
        consumer.close()


def test_pause_while_idle_resumes_and_stops_early(kafka_broker: EmbeddedBroker, topic: str) -> None:
    consumer = _consumer(kafka_broker.bootstrap, f"{topic}-g")
    try:
        _assigned(consumer, topic, 2)
        stop = threading.Event()
        stop.set()
        started = time.monotonic()
        pause_while_idle(consumer, 30, stop)  # returns at once when stopped
        assert time.monotonic() - started < 5
        _produce(kafka_broker.bootstrap, topic, 2)
        got = 0
        deadline = time.monotonic() + 20
        while got < 2 and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            got += message is not None and message.error() is None
        assert got == 2  # the assignment was resumed
    finally:
        consumer.close()
