"""EventBatcher: batches by size, drops what was read under an old assignment or for revoked partitions,
acknowledges in offset order and sets a poison event aside alone."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from streams.app import StaleAssignment
from streams.batching import EventBatcher


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    generation_id: int = 1
    refs: int = 0

    def incref(self) -> None:
        self.refs += 1


@dataclass
class Event:
    message: Message


@dataclass
class Stream:
    items: list[Event]
    app: Any = None

    async def events(self):  # the agent's per-message iteration
        for item in self.items:
            yield item


@dataclass
class Recorder:
    batches: list[list[tuple[str, int, int]]] = field(default_factory=list)

    async def __call__(self, stream: Any, events: Any) -> None:
        self.batches.append([(e.message.topic, e.message.partition, e.message.offset) for e in events])


def events(topic: str, partition: int, offsets: range, generation: int = 1) -> list[Event]:
    return [Event(Message(topic, partition, o, generation)) for o in offsets]


def test_full_batches_are_handed_over_and_every_event_is_held() -> None:
    recorder = Recorder()
    batcher = EventBatcher(recorder, size=3, within=60.0, is_current=lambda e: True)
    items = events("p", 0, range(7))
    asyncio.run(batcher.consume(Stream(items)))  # type: ignore[arg-type]
    assert recorder.batches == [
        [("p", 0, 0), ("p", 0, 1), ("p", 0, 2)],
        [("p", 0, 3), ("p", 0, 4), ("p", 0, 5)],
    ]
    assert all(e.message.refs == 1 for e in items)
    asyncio.run(batcher.flush())
    assert recorder.batches[-1] == [("p", 0, 6)]


def test_waiting_events_of_revoked_partitions_are_discarded_not_folded_later() -> None:
    recorder = Recorder()
    batcher = EventBatcher(recorder, size=100, within=60.0, is_current=lambda e: True)
    asyncio.run(batcher.consume(Stream(events("p", 0, range(3)) + events("p", 1, range(2)))))  # type: ignore[arg-type]
    assert batcher.discard({("p", 0)}) == 3
    asyncio.run(batcher.flush())
    assert recorder.batches == [[("p", 1, 0), ("p", 1, 1)]]
    assert batcher.stale == 3


def test_events_read_under_an_old_generation_are_dropped_at_flush() -> None:
    recorder = Recorder()
    current = {"generation": 1}
    batcher = EventBatcher(
        recorder, size=100, within=60.0, is_current=lambda e: e.message.generation_id == current["generation"]
    )
    asyncio.run(batcher.consume(Stream(events("p", 0, range(2), generation=1))))  # type: ignore[arg-type]
    current["generation"] = 2
    asyncio.run(batcher.consume(Stream(events("p", 0, range(2, 4), generation=2))))  # type: ignore[arg-type]
    asyncio.run(batcher.flush())
    assert recorder.batches == [[("p", 0, 2), ("p", 0, 3)]]
    assert batcher.stale == 2


@dataclass
class AckingStream(Stream):
    acked: list[int] = field(default_factory=list)

    async def ack(self, event: Event) -> bool:
        self.acked.append(event.message.offset)
        return True


def test_faust_is_told_of_releases_only_in_offset_order() -> None:
    held: list[Event] = []

    async def hold_everything(acks: Any, batch: Any) -> None:
        held.extend(batch)

    stream = AckingStream(events("p", 0, range(5)))
    batcher = EventBatcher(hold_everything, size=5, within=60.0, is_current=lambda e: True)

    async def scenario() -> list[list[int]]:
        await batcher.consume(stream)  # type: ignore[arg-type]
        seen = []
        for offset in (3, 1, 4, 0, 2):  # released out of order, as stage 2's windows close
            await batcher.ack(held[offset])
            seen.append(list(stream.acked))
        return seen

    assert asyncio.run(scenario()) == [[], [], [], [0, 1], [0, 1, 2, 3, 4]]


def test_an_offset_read_twice_is_processed_once_and_a_new_generation_starts_over() -> None:
    recorder = Recorder()
    batcher = EventBatcher(recorder, size=100, within=60.0, is_current=lambda e: True)
    first = events("p", 0, range(3))
    again = events("p", 0, range(1, 4))  # offsets 1 and 2 are read a second time
    asyncio.run(batcher.consume(Stream(first + again)))  # type: ignore[arg-type]
    asyncio.run(batcher.flush())
    assert recorder.batches == [[("p", 0, 0), ("p", 0, 1), ("p", 0, 2), ("p", 0, 3)]]
    assert batcher.duplicates == 2
    # After a rebalance the partition is read again from its commit: a newer generation is not a duplicate.
    asyncio.run(batcher.consume(Stream(events("p", 0, range(0, 2), generation=2))))  # type: ignore[arg-type]
    asyncio.run(batcher.flush())
    assert recorder.batches[-1] == [("p", 0, 0), ("p", 0, 1)]


def test_releases_of_an_older_generation_never_reach_faust() -> None:
    held: list[Event] = []

    async def hold_everything(acks: Any, batch: Any) -> None:
        held.extend(batch)

    stream = AckingStream(events("p", 0, range(2), generation=1) + events("p", 0, range(2), generation=2))
    batcher = EventBatcher(hold_everything, size=100, within=60.0, is_current=lambda e: True)

    async def scenario() -> None:
        await batcher.consume(stream)  # type: ignore[arg-type]
        await batcher.flush()
        for event in held[:2]:  # generation 1: its partition was re-read under generation 2
            await batcher.ack(event)
        assert stream.acked == []
        for event in held[2:]:
            await batcher.ack(event)

    asyncio.run(scenario())
    assert stream.acked == [0, 1]


def test_a_poison_event_is_dead_lettered_alone_and_its_neighbours_are_processed() -> None:
    processed: list[int] = []
    poisoned: list[tuple[int, str]] = []

    async def handler(acks: Any, batch: Any) -> None:
        if any(e.message.offset == 2 for e in batch):
            raise OverflowError("date value out of range")
        for event in batch:
            processed.append(event.message.offset)
            await acks.ack(event)

    async def on_poison(event: Any, error: BaseException) -> None:
        poisoned.append((event.message.offset, repr(error)))

    stream = AckingStream(events("p", 0, range(5)))
    batcher = EventBatcher(handler, size=5, within=60.0, is_current=lambda e: True, on_poison=on_poison)
    asyncio.run(batcher.consume(stream))  # type: ignore[arg-type]
    assert processed == [0, 1, 3, 4]
    assert poisoned == [(2, "OverflowError('date value out of range')")]
    assert stream.acked == [0, 1, 2, 3, 4]  # the poison event is released after its dead letter
    assert batcher.poisoned == 1


def test_broker_errors_are_not_blamed_on_an_event() -> None:
    async def handler(acks: Any, batch: Any) -> None:
        raise ConnectionError("broker gone")

    async def on_poison(event: Any, error: BaseException) -> None:
        raise AssertionError("no event is to blame")

    batcher = EventBatcher(handler, size=2, within=60.0, is_current=lambda e: True, on_poison=on_poison)
    with pytest.raises(ConnectionError):
        asyncio.run(batcher.consume(AckingStream(events("p", 0, range(2)))))  # type: ignore[arg-type]


def test_a_batch_overtaken_by_a_rebalance_is_abandoned_not_dead_lettered_nor_released() -> None:
    """A state write after the partitions were revoked raises StaleAssignment: the owner replays them."""
    calls: list[int] = []

    async def handler(acks: Any, batch: Any) -> None:
        calls.append(len(batch))
        raise StaleAssignment("state closed-windows: partition 0 is not held by this worker")

    async def on_poison(event: Any, error: BaseException) -> None:
        raise AssertionError("no event is to blame")

    stream = AckingStream(events("p", 0, range(4)))
    batcher = EventBatcher(handler, size=4, within=60.0, is_current=lambda e: True, on_poison=on_poison)
    asyncio.run(batcher.consume(stream))  # type: ignore[arg-type]
    assert calls == [4]  # not retried one event at a time
    assert stream.acked == []
    assert batcher.stale == 4 and batcher.poisoned == 0
