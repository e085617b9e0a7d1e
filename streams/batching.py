"""Batches of faust events, built from the plain per-message iteration, acknowledged in offset order.

faust's ``take_events`` records ``stream.current_event`` from a processor while it buffers, and
under load it can record one message twice and never record its neighbour (measured: one event in
~6000 lost or doubled around a restart). This module iterates ``stream.events()`` instead, where the
event is the one just read, and groups events into batches itself.

Every event is held (``incref``) the moment it is read, because faust acknowledges an event as soon
as the iteration moves on. Whoever processes a batch releases each event with :meth:`EventBatcher.ack`
once its output is safe (or keeps it, as stage 1's chunks and stage 2's windows do); faust is told
only in offset order (:mod:`streams.acks`), so its commit never passes a held event.

A batch whose handler raises is handled again one event at a time: an event that still raises goes to
``on_poison`` (a dead letter with the reason) and is released, its neighbours are processed. Errors of
the broker connection are not an event's fault and are raised as they are.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

from faust.types import EventT, StreamT

from streams.acks import OrderedAcks
from streams.app import StaleAssignment

log = logging.getLogger(__name__)


class Acknowledger(Protocol):
    async def ack(self, event: Any) -> Any: ...


BatchHandler = Callable[[Acknowledger, Sequence[EventT]], Awaitable[None]]
PoisonHandler = Callable[[EventT, BaseException], Awaitable[None]]
StartOf = Callable[[str, int], Awaitable[int]]
"""Where reading a partition must start: its committed offset, or its first offset if none."""
Seek = Callable[[str, int, int], Awaitable[None]]


async def release(acks: Acknowledger, events: Iterable[Any]) -> None:
    """Release every one of ``events`` (their output is safe)."""
    for event in events:
        await acks.ack(event)


def is_infrastructure_error(error: BaseException) -> bool:
    """Errors of the broker, the network or a rebalance: retrying the same events later may succeed."""
    if isinstance(error, StaleAssignment | ConnectionError | TimeoutError | asyncio.TimeoutError):
        return True
    module = type(error).__module__
    return module.startswith(("aiokafka", "kafka", "confluent_kafka", "faust.exceptions", "streams.state"))


class EventBatcher:
    """Collects events into batches of ``size``, or whatever arrived within ``within`` seconds.

    ``is_current`` tells whether an event was read under the consumer's current assignment.
    ``on_poison`` dead-letters one event whose processing raised (the worker goes on).
    """

    def __init__(
        self,
        handler: BatchHandler,
        *,
        size: int,
        within: float,
        is_current: Callable[[EventT], bool],
        on_poison: PoisonHandler | None = None,
        start_of: StartOf | None = None,
        seek: Seek | None = None,
    ) -> None:
        self.handler = handler
        self.is_current = is_current
        self.on_poison = on_poison
        self.start_of = start_of
        self.seek = seek
        self._starts: dict[tuple[str, int], tuple[int | None, int, bool]] = {}  # generation, offset, waiting
        self.rewinds = 0
        self.size = size
        self.within = within
        self.lock = asyncio.Lock()
        self._pending: list[EventT] = []
        self._first_at = 0.0
        self._stream: StreamT | None = None
        self._acks = OrderedAcks(self._faust_ack)
        self.stale = 0  # events dropped because they were read under an earlier assignment
        self.poisoned = 0  # events whose processing raised: dead-lettered

    @property
    def duplicates(self) -> int:
        """Events read twice in one assignment (dropped: the first read is processed)."""
        return self._acks.duplicates

    async def _faust_ack(self, event: EventT) -> None:
        if self._stream is not None:
            await self._stream.ack(event)

    async def ack(self, event: Any) -> None:
        """The event's output is safe: acknowledge it once every earlier offset of its partition is."""
        await self._acks.release(event)

    async def consume(self, stream: StreamT) -> None:
        """The agent body: read events one by one, hand them over in batches."""
        self._stream = stream
        async for event in stream.events():
            event.message.incref()
            if self.start_of is not None and not await self._in_sequence(event):
                continue
            if not self._acks.hold(event):
                continue  # read twice in this assignment, or under an older one
            if not self._pending:
                self._first_at = time.monotonic()
            self._pending.append(event)
            if len(self._pending) >= self.size:
                await self.flush()

    async def _in_sequence(self, event: EventT) -> bool:
        """Whether the first events of a partition after an assignment start where they must.

        After a rebalance faust seeks each partition to its committed offset, but not one with
        nothing committed (aiokafka seeks only offsets above 0): records fetched and discarded
        around the rebalance would then never be read. A partition whose first event comes later
        than it must is rewound with faust's ``seek``, and the events read before the seek are dropped.
        """
        message = event.message
        tp, generation = (message.topic, message.partition), message.generation_id
        known = self._starts.get(tp)
        if known is None or known[0] != generation:
            assert self.start_of is not None and self.seek is not None
            start = await self.start_of(message.topic, message.partition)
            if message.offset > start:
                log.warning(
                    "%s[%s]: first event at offset %s after the assignment, must start at %s: rewinding",
                    message.topic, message.partition, message.offset, start,
                )  # fmt: skip
                self.rewinds += 1
                self._starts[tp] = (generation, start, True)
                await self.seek(message.topic, message.partition, start)
                return False
            self._starts[tp] = (generation, message.offset, False)
            return True
        _, start, waiting = known
        if waiting:
            if message.offset != start:
                return False  # fetched before the seek took effect
            self._starts[tp] = (generation, start, False)
        return True

    def discard(self, partitions: set[tuple[str, int]]) -> int:
        """Drop the waiting events of revoked partitions (their new owner replays them); the count."""
        keep = [e for e in self._pending if (e.message.topic, e.message.partition) not in partitions]
        dropped = len(self._pending) - len(keep)
        self._pending = keep
        self._acks.forget(partitions)
        for tp in partitions:
            self._starts.pop(tp, None)
        self.stale += dropped
        if dropped:
            log.info("discarded %d waiting events of revoked partitions: they are replayed", dropped)
        return dropped

    async def flush_if_due(self) -> None:
        """Called by a timer: hand over a partial batch that has waited ``within`` seconds."""
        if self._pending and time.monotonic() - self._first_at >= self.within:
            await self.flush()

    async def flush(self) -> None:
        async with self.lock:
            # Events read before a rebalance belong to an old assignment: their partitions are
            # replayed by whoever owns them now, so they are dropped here, not processed twice.
            batch = [e for e in self._pending if self.is_current(e)]
            if len(batch) < len(self._pending):
                dropped = len(self._pending) - len(batch)
                self.stale += dropped
                log.warning(
                    "dropped %d events read under generation %s (now %s): their partitions are replayed",
                    dropped,
                    self._pending[0].message.generation_id,
                    getattr(self._stream.app, "consumer_generation_id", "?") if self._stream else "?",
                )
            self._pending = []
            if batch:
                await self._handle(batch)

    async def _handle(self, batch: list[EventT]) -> None:
        on_poison = self.on_poison
        try:
            await self.handler(self, batch)
            return
        except StaleAssignment as error:
            self._abandon(batch, error)
            return
        except Exception as error:
            if on_poison is None or is_infrastructure_error(error):
                raise
            log.warning(
                "a batch of %d events failed (%r): processing it one event at a time", len(batch), error
            )
        for done, event in enumerate(batch):
            try:
                await self.handler(self, [event])
            except StaleAssignment as error:
                self._abandon(batch[done:], error)
                return
            except Exception as error:
                if is_infrastructure_error(error):
                    raise
                self.poisoned += 1
                message = event.message
                log.error("event %s[%s]@%s failed: %r; dead-lettered", message.topic, message.partition,
                          message.offset, error)  # fmt: skip
                await on_poison(event, error)
                await self.ack(event)

    def _abandon(self, events: list[EventT], error: StaleAssignment) -> None:
        """A rebalance overtook the batch: not acknowledged, not dead-lettered; the owner replays it."""
        self.stale += len(events)
        log.info("a batch of %d events was overtaken by a rebalance (%s): its partitions are replayed",
                 len(events), error)  # fmt: skip
