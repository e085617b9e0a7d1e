"""Stage 1's unit of output: the window bundles of one offset-aligned chunk of one input partition.

Guarantee: exactly-once partial aggregates on top of at-least-once delivery. Chunk ``k`` of a topic
partition holds the messages with offsets ``[k*size, (k+1)*size)``: its boundaries depend only on
offsets, never on batch sizes or timing. Its partials are published under the key
``topic|partition|k`` with ``revision`` = last offset + 1. The chunk's input messages are held
(not acknowledged) until its final partials are acknowledged by the broker, so the committed
offset never passes an unpublished chunk; a replay rebuilds the same chunk from its first offset and
its partials replace the earlier copies in stage 2 instead of adding to them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

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
    held: list[Any] = field(default_factory=list)
    last_offset: int = -1
    watermarks: dict[tuple[str, str], int] = field(default_factory=dict)
    dirty: bool = False
    changed_at: float = 0.0

    @property
    def source(self) -> str:
        return f"{self.topic}|{self.partition}|{self.index}"

    def watermark(self, model_id: str, version: str) -> int:
        return self.watermarks.get((model_id, version), 0)

    def touch(self, offset: int, clock: tuple[str, str] | None = None, event_ms: int = 0) -> None:
        self.last_offset = max(self.last_offset, offset)
        if clock is not None:
            self.watermarks[clock] = max(self.watermarks.get(clock, 0), event_ms)
        self.dirty = True
        self.changed_at = time.monotonic()

    def partials(self, *, final: bool) -> list[Partial]:
        return [
            Partial(
                source=self.source,
                input=f"{self.topic}|{self.partition}",
                revision=self.last_offset + 1,
                final=final,
                watermark_ms=self.watermark(key.model_id, key.model_version),
                reference_id=reference_id,
                bundle=bundle,
            )
            for (key, reference_id), bundle in self.bundles.items()
        ]

    def partial_messages(self, *, final: bool, max_bytes: int) -> list[tuple[bytes, bytes]]:
        """Messages keyed by model id (stage 2 is partitioned by model); large partials in fragments."""
        return [message for partial in self.partials(final=final) for message in partial.messages(max_bytes)]


def chunk_index(offset: int, size: int) -> int:
    """The chunk an offset belongs to.

    >>> chunk_index(4999, 5000), chunk_index(5000, 5000)
    (0, 1)
    """
    return offset // size
