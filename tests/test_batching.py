"""EventBatcher: batches by size, drops what was read under an old assignment or for revoked partitions."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

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
