"""Idempotent per-partition event counts per model and event-time window.

Guarantee: exactly-once counts on top of at-least-once delivery. Each (partition, model, version,
window) count lives under its own key in a key-value store (a faust table, whose changelog is
flushed before input offsets are committed) together with the next input offset it has not yet
seen. A replayed message whose offset is below that is skipped, so a crash and replay neither
loses nor double counts. Counts are emitted as cumulative values with ``revision`` = next offset,
so the ClickHouse row for the key is replaced, never added to.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelmon.events import MetricPoint

WATERMARK = "__watermark__"


@dataclass(frozen=True, slots=True)
class CountedEvent:
    """What counting needs of one valid event."""

    partition: int
    offset: int
    model_id: str
    model_version: str
    ts_ms: int


@dataclass(frozen=True, slots=True)
class TooLate:
    """An event older than the counting retention: it cannot be counted and goes to dead-letter."""

    event: CountedEvent
    watermark_ms: int


def window_start_ms(ts_ms: int, window_ms: int) -> int:
    """Start of the tumbling window holding ``ts_ms``.

    >>> window_start_ms(125_000, 60_000)
    120000
    """
    return ts_ms - ts_ms % window_ms


def _ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC)


class WindowCounter:
    """Counts valid events per (model, version, window) for the partitions of one worker.

    ``store`` maps string keys to JSON-able dicts; in the worker it is a faust table.
    ``allowed_lateness_ms``: an event arriving after its window's end plus this is counted as late
    (it still counts). ``retention_ms``: windows older than the watermark minus this are dropped
    from the store; an event for such a window is returned as :class:`TooLate`.
    """

    def __init__(
        self,
        store: MutableMapping[str, Any],
        *,
        window_ms: int,
        allowed_lateness_ms: int,
        retention_ms: int,
        source_prefix: str = "count",
    ) -> None:
        if window_ms <= 0:
            raise ValueError("window_ms must be positive")
        if retention_ms < window_ms + allowed_lateness_ms:
            raise ValueError("retention_ms must be at least window_ms + allowed_lateness_ms")
        self.store = store
        self.window_ms = window_ms
        self.allowed_lateness_ms = allowed_lateness_ms
        self.retention_ms = retention_ms
        self.source_prefix = source_prefix

    @staticmethod
    def key(partition: int, model_id: str, version: str, start_ms: int) -> str:
        return f"{partition}|{model_id}|{version}|{start_ms}"

    @staticmethod
    def _parse_key(key: str) -> tuple[str, str, str, int]:
        # A model id matches the spec's pattern (no '|'), but a model version is free text and
        # may hold '|': split the partition and model id from the left, the start from the right.
        partition, model_id, rest = key.split("|", 2)
        version, start = rest.rsplit("|", 1)
        return partition, model_id, version, int(start)

    def apply(self, events: Iterable[CountedEvent]) -> tuple[list[str], list[TooLate]]:
        """Fold events in offset order per partition; return the changed keys and too-late events."""
        changed: dict[str, None] = {}
        too_late: list[TooLate] = []
        for event in events:
            mark_key = f"{event.partition}|{WATERMARK}"
            mark = self.store.get(mark_key) or {"watermark_ms": event.ts_ms, "next_offset": 0}
            start = window_start_ms(event.ts_ms, self.window_ms)
            if start + self.retention_ms < mark["watermark_ms"]:
                if event.offset >= mark["next_offset"]:
                    too_late.append(TooLate(event, mark["watermark_ms"]))
            else:
                key = self.key(event.partition, event.model_id, event.model_version, start)
                entry = self.store.get(key) or {"events": 0, "late": 0, "next_offset": 0}
                if event.offset >= entry["next_offset"]:
                    late = mark["watermark_ms"] > start + self.window_ms + self.allowed_lateness_ms
                    self.store[key] = {
                        "events": entry["events"] + 1,
                        "late": entry["late"] + int(late),
                        "next_offset": event.offset + 1,
                    }
                    changed[key] = None
            if event.offset >= mark["next_offset"]:
                self.store[mark_key] = {
                    "watermark_ms": max(mark["watermark_ms"], event.ts_ms),
                    "next_offset": event.offset + 1,
                }
        return list(changed), too_late

    def metric_points(self, keys: Iterable[str]) -> list[MetricPoint]:
        """The cumulative ``events`` (and ``late_events``) points of the given keys."""
        points = []
        for key in keys:
            entry = self.store.get(key)
            if entry is None:
                continue
            partition, model_id, version, start = self._parse_key(key)
            common: dict[str, Any] = {
                "model_id": model_id,
                "model_version": version,
                "window_start": _ms_to_dt(start),
                "window_end": _ms_to_dt(start + self.window_ms),
                "source": f"{self.source_prefix}/p{partition}",
                "revision": entry["next_offset"],
            }
            points.append(MetricPoint(metric="events", value=float(entry["events"]), **common))
            if entry["late"]:
                points.append(MetricPoint(metric="late_events", value=float(entry["late"]), **common))
        return points

    def expired_keys(self, partitions: Iterable[int]) -> list[str]:
        """Keys of windows past the retention of their partition's watermark (to delete)."""
        marks = {}
        for partition in partitions:
            mark = self.store.get(f"{partition}|{WATERMARK}")
            if mark is not None:
                marks[str(partition)] = mark["watermark_ms"]
        expired = []
        for key in list(self.store.keys()):
            if key.endswith(WATERMARK):
                continue
            partition, _, _, start = self._parse_key(key)
            if partition in marks and start + self.retention_ms < marks[partition]:
                expired.append(key)
        return expired


class StagedWrites(MutableMapping[str, Any]):
    """A view of a store that keeps writes and deletes aside until :meth:`apply_to_base`.

    The worker computes a batch's new counts here, publishes the outputs, waits for the broker's
    acknowledgement, and only then writes the store: state never runs ahead of published output.
    """

    def __init__(self, base: MutableMapping[str, Any]) -> None:
        self.base = base
        self.writes: dict[str, Any] = {}
        self.deletes: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        if key in self.writes:
            return self.writes[key]
        if key in self.deletes:
            raise KeyError(key)
        return self.base[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes[key] = value
        self.deletes.discard(key)

    def __delitem__(self, key: str) -> None:
        self.writes.pop(key, None)
        self.deletes.add(key)

    def __iter__(self) -> Iterator[str]:
        seen = set(self.writes)
        yield from self.writes
        for key in self.base:
            if key not in seen and key not in self.deletes:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def pending_keys(self) -> list[str]:
        """Keys written or deleted since the last apply."""
        return [*self.writes, *self.deletes]

    def apply_to_base(self, keys: Iterable[str] | None = None) -> None:
        """Write the staged changes of ``keys`` (default: all) to the base store."""
        for key in list(self.pending_keys() if keys is None else keys):
            if key in self.writes:
                self.base[key] = self.writes.pop(key)
            elif key in self.deletes:
                self.deletes.discard(key)
                if key in self.base:
                    del self.base[key]
