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

import orjson

from streams.bundle import BundleKey, WindowBundle


@dataclass
class Chunk:
    """The open chunk of one topic partition."""

    topic: str
    partition: int
    index: int
    bundles: dict[tuple[BundleKey, str], WindowBundle] = field(default_factory=dict)
    held: list[Any] = field(default_factory=list)
    last_offset: int = -1
    watermark_ms: int = 0
    dirty: bool = False
    changed_at: float = 0.0

    @property
    def source(self) -> str:
        return f"{self.topic}|{self.partition}|{self.index}"

    def touch(self, offset: int, event_ms: int) -> None:
        self.last_offset = max(self.last_offset, offset)
        self.watermark_ms = max(self.watermark_ms, event_ms)
        self.dirty = True
        self.changed_at = time.monotonic()

    def partial_messages(self, *, final: bool) -> list[tuple[bytes, bytes]]:
        """One message per bundle, keyed by model id (stage 2 is partitioned by model)."""
        messages = []
        for (key, reference_id), bundle in self.bundles.items():
            value = {
                "source": self.source,
                "input": f"{self.topic}|{self.partition}",
                "revision": self.last_offset + 1,
                "final": final,
                "watermark_ms": self.watermark_ms,
                "reference_id": reference_id,
                "bundle": bundle.to_dict(),
            }
            messages.append((key.model_id.encode(), orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)))
        return messages


def chunk_index(offset: int, size: int) -> int:
    """The chunk an offset belongs to.

    >>> chunk_index(4999, 5000), chunk_index(5000, 5000)
    (0, 1)
    """
    return offset // size
