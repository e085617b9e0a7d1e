"""Acknowledging faust events in offset order, so a commit never passes an event that is still held.

faust commits, per partition, the end of the first run of consecutive acknowledged offsets; with
acknowledgements out of offset order that computation can skip a held offset (faust-streaming 0.15's
gap check is off by one, and skipped while nothing is committed yet). Stage 2 finishes windows out of
offset order and the alert notifier finishes webhooks out of order, so whoever releases an event
here does not acknowledge it to faust: :class:`OrderedAcks` passes on, per partition, only the
longest prefix of read offsets that are all released. faust then only ever sees consecutive
acknowledgements starting at the first offset read after an assignment, whatever its own commit
logic does with them.

State is per (topic, partition) and per consumer generation: events of an older generation are
never acknowledged (their partition is read again from the committed offset), and an offset read
twice in one generation is reported as a duplicate so it is not processed twice.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]


@dataclass
class _Partition:
    generation: int
    held: deque[tuple[int, Any]] = field(default_factory=deque)
    released: set[int] = field(default_factory=set)
    last_read: int = -1


class OrderedAcks:
    """Holds events per partition in read order and acknowledges the released prefix.

    ``ack`` is faust's acknowledgement (``stream.ack``).

    >>> import asyncio
    >>> from types import SimpleNamespace as NS
    >>> def event(offset):
    ...     return NS(message=NS(topic="t", partition=0, offset=offset, generation_id=1))
    >>> acked = []
    >>> async def ack(e):
    ...     acked.append(e.message.offset)
    >>> acks = OrderedAcks(ack)
    >>> e0, e1, e2 = event(0), event(1), event(2)
    >>> [acks.hold(e) for e in (e0, e1, e2)], acks.hold(event(1))  # offset 1 read again: a duplicate
    ([True, True, True], False)
    >>> asyncio.run(acks.release(e2)); acked  # 0 and 1 are still held: nothing goes to faust
    []
    >>> asyncio.run(acks.release(e0)); acked
    [0]
    >>> asyncio.run(acks.release(e1)); acked
    [0, 1, 2]
    """

    def __init__(self, ack: Callable[[Any], Awaitable[Any]]) -> None:
        self._ack = ack
        self._partitions: dict[TopicPartition, _Partition] = {}
        self.duplicates = 0
        self.stale = 0

    @staticmethod
    def _tp(event: Any) -> TopicPartition:
        return (event.message.topic, event.message.partition)

    def hold(self, event: Any) -> bool:
        """Start holding a freshly read event; False for a duplicate or an event of an older generation."""
        message = event.message
        tp = self._tp(event)
        generation = int(getattr(message, "generation_id", 0) or 0)
        part = self._partitions.get(tp)
        if part is None or generation > part.generation:
            # A new assignment reads the partition again from its committed offset: what was held
            # under the older generation is never acknowledged (it is dropped as stale elsewhere).
            part = self._partitions[tp] = _Partition(generation)
        elif generation < part.generation:
            self.stale += 1
            return False
        if message.offset <= part.last_read:
            self.duplicates += 1
            return False
        part.last_read = message.offset
        part.held.append((message.offset, event))
        return True

    async def release(self, event: Any) -> None:
        """This event's output is safe; acknowledge it as soon as every earlier offset is released too."""
        part = self._partitions.get(self._tp(event))
        offset = event.message.offset
        if part is None or int(getattr(event.message, "generation_id", 0) or 0) != part.generation:
            return  # read under an older assignment (or forgotten on revocation): never acknowledged
        if not part.held or offset < part.held[0][0]:
            return  # already acknowledged
        part.released.add(offset)
        while part.held and part.held[0][0] in part.released:
            head, held_event = part.held.popleft()
            part.released.discard(head)
            await self._ack(held_event)

    async def release_all(self, events: Iterable[Any]) -> None:
        for event in events:
            await self.release(event)

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop the state of revoked partitions: nothing of theirs is acknowledged any more."""
        for tp in partitions:
            self._partitions.pop(tp, None)

    def held_count(self, tp: TopicPartition) -> int:
        part = self._partitions.get(tp)
        return len(part.held) if part is not None else 0

    def first_held(self, tp: TopicPartition) -> int | None:
        """The lowest offset of ``tp`` not yet acknowledged (what a commit must stay at or below)."""
        part = self._partitions.get(tp)
        return part.held[0][0] if part is not None and part.held else None
