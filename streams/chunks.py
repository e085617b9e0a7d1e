"""Stage 1's unit of output: the window bundles of one offset-aligned chunk of one input partition.

Guarantee: exactly-once partial aggregates on top of at-least-once delivery. Chunk ``k`` of a topic
partition holds the messages with offsets ``[k*size, (k+1)*size)``: its boundaries depend only on
offsets, never on batch sizes or timing. Its partials are published under the key
``topic|partition|k`` with ``revision`` = last offset + 1. Offsets are committed only up to the
first offset of the open chunk, after its predecessors' final partials were delivered, so the
committed offset never passes an unpublished chunk; a replay rebuilds the same chunk from its first
offset and its partials replace the earlier copies in stage 2 instead of adding to them.

While a chunk is open, the bundles that changed are published every ``MODELMON_IDLE_FLUSH_SECONDS``
as non-final revisions (:meth:`Chunk.changed_messages`): stage 2 closes windows from them without
waiting for the chunk to fill, and a revision of the same source replaces the previous one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from streams.bundle import BundleKey, WindowBundle
from streams.partials import Partial


@dataclass
class Chunk:
    """The open chunk of one topic partition.

    ``watermarks`` holds the event-time watermark per (model id, model version): a backfill under its
    own version has its own clock, so old events neither count as late against live traffic nor
    move its windows (docs/operations.md, Backfill).
    """

    topic: str
    partition: int
    index: int
    bundles: dict[tuple[BundleKey, str], WindowBundle] = field(default_factory=dict)
    first_offset: int = -1
    last_offset: int = -1
    watermarks: dict[tuple[str, str], int] = field(default_factory=dict)
    dirty: bool = False
    changed_at: float = 0.0
    published_at: float = field(default_factory=time.monotonic)
    changed: set[tuple[BundleKey, str]] = field(default_factory=set)

    @property
    def source(self) -> str:
        return f"{self.topic}|{self.partition}|{self.index}"

    def watermark(self, model_id: str, version: str) -> int:
        return self.watermarks.get((model_id, version), 0)

    def touch(self, offset: int, clock: tuple[str, str] | None = None, event_ms: int = 0) -> None:
        if self.first_offset < 0:
            self.first_offset = offset
        self.last_offset = max(self.last_offset, offset)
        if clock is not None:
            self.watermarks[clock] = max(self.watermarks.get(clock, 0), event_ms)
        self.dirty = True
        self.changed_at = time.monotonic()

    def add(self, key: BundleKey, reference_id: str, bundle: WindowBundle) -> None:
        """Merge a freshly folded bundle into the chunk's bundle of that key and reference."""
        slot = (key, reference_id)
        existing = self.bundles.get(slot)
        self.bundles[slot] = bundle if existing is None else existing.merge(bundle)
        self.changed.add(slot)
        self.dirty = True

    def _partial(self, slot: tuple[BundleKey, str], *, final: bool) -> Partial:
        key, reference_id = slot
        return Partial(
            source=self.source,
            input=f"{self.topic}|{self.partition}",
            revision=self.last_offset + 1,
            final=final,
            watermark_ms=self.watermark(key.model_id, key.model_version),
            reference_id=reference_id,
            bundle=self.bundles[slot],
            references=tuple(sorted(ref for k, ref in self.bundles if k == key)),
        )

    def partials(self, *, final: bool) -> list[Partial]:
        return [self._partial(slot, final=final) for slot in self.bundles]

    def partial_messages(self, *, final: bool, max_bytes: int) -> list[tuple[bytes, bytes]]:
        """Every bundle's messages, keyed by model id (stage 2 is partitioned by model), fragments if big."""
        self._published()
        return [message for partial in self.partials(final=final) for message in partial.messages(max_bytes)]

    def changed_messages(self, *, max_bytes: int) -> list[tuple[bytes, bytes]]:
        """Non-final revisions of the windows that changed since the chunk last published.

        A window folded on two references (one arrived mid-chunk) is published whole, every
        reference's bundle at the same revision: stage 2 takes a source's revision as replacing its
        older revisions under any reference (a replay may fold the same events on another one).
        """
        keys = {key for key, _ in self.changed}
        slots = [slot for slot in self.bundles if slot[0] in keys]
        self._published()
        return [m for slot in slots for m in self._partial(slot, final=False).messages(max_bytes)]

    def _published(self) -> None:
        self.changed = set()
        self.dirty = False
        self.published_at = time.monotonic()


def chunk_index(offset: int, size: int) -> int:
    """The chunk an offset belongs to.

    >>> chunk_index(4999, 5000), chunk_index(5000, 5000)
    (0, 1)
    """
    return offset // size
