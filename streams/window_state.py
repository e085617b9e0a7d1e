"""What stage 2 holds per window: its partials by source and revision, and the messages that carried them.

:class:`WindowState` is one window folded on one reference (and what the closed-window store saves
of it); :class:`WindowStates` indexes them by key and reference; :func:`window_parts` orders a
window's states under every reference for publication together (:mod:`streams.stage2`);
:func:`expired_points` is what a partial still publishes when its window is past the retention.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from modelmon.events import MetricPoint, model_to_json
from modelmon.metrics import EXPIRED_EVENTS, EXPIRED_LABELS
from streams.bundle import BundleKey, WindowBundle
from streams.partials import Partial

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class WindowState:
    """What stage 2 holds for one window (and one reference).

    The messages a window's content came from stay unacknowledged until that content is durable
    elsewhere: a final partial until the window's emission saved it in the closed-window store
    (``held``); a non-final revision until a newer revision or the final of its source replaces it
    (``open_held``), since the saved record keeps final parts only. A restart or a rebalance
    therefore reads again every revision whose content is not saved.
    """

    key: BundleKey
    reference_id: str
    partition: int = -1
    base: WindowBundle | None = None
    base_sources: dict[str, int] = field(default_factory=dict)
    open_parts: dict[str, tuple[int, WindowBundle]] = field(default_factory=dict)
    held: list[Any] = field(default_factory=list)
    open_held: dict[str, list[Any]] = field(default_factory=dict)
    closed: bool = False
    dirty: bool = False
    changed_at: float = 0.0
    emissions: int = 0

    def add(
        self, source: str, revision: int, final: bool, bundle: WindowBundle, carriers: list[Any]
    ) -> list[Any]:
        """Take a partial and the messages that carried it; returns the messages to release now.

        A non-final revision with the same content as the one it replaces (stage 1 re-publishes an
        open chunk's bundles: every second those that changed, every minute all of them) only takes
        the older one's place: the window stays as quiet as it was, so its grace period runs on.
        """
        if source in self.base_sources:
            return carriers  # a replay of a source that is already final and merged (and saved)
        current = self.open_parts.get(source)
        if current is not None and current[0] > revision:
            return carriers  # older than the revision held
        if final:
            self.open_parts.pop(source, None)
            self.base = bundle if self.base is None else self.base.merge(bundle)
            self.base_sources[source] = revision
            # The older revisions are obsolete once the final is saved, at the next emission.
            self.held += self.open_held.pop(source, []) + carriers
            released: list[Any] = []
        else:
            self.open_parts[source] = (revision, bundle)
            released = self.open_held.pop(source, [])
            self.open_held[source] = carriers
            if current is not None and _same_content(current[1], bundle):
                return released
        self.dirty = True
        self.changed_at = time.monotonic()
        return released

    def revision_of(self, source: str) -> int | None:
        """The revision of ``source`` held (final or not), or None."""
        if source in self.base_sources:
            return self.base_sources[source]
        current = self.open_parts.get(source)
        return None if current is None else current[0]

    def drop_older(self, source: str, revision: int) -> list[Any]:
        """Drop a non-final part of ``source`` older than ``revision``; returns its messages to release."""
        current = self.open_parts.get(source)
        if current is None or current[0] >= revision:
            return []
        del self.open_parts[source]
        self.dirty = True
        self.changed_at = time.monotonic()
        return self.open_held.pop(source, [])

    def carriers(self) -> list[Any]:
        """Every message held for this window."""
        return self.held + [event for events in self.open_held.values() for event in events]

    def record(self, partition: int) -> dict[str, Any]:
        """What the closed-window store keeps of this window: final parts, their sources, retention fields."""
        return {
            "base": self.base.to_dict() if self.base else None,
            "sources": self.base_sources,
            "model_id": self.key.model_id,
            "model_version": self.key.model_version,
            "window_start_ms": self.key.window_start_ms,
            "window_ms": self.key.window_ms,
            "partition": partition,
        }

    @classmethod
    def restored(cls, key: BundleKey, ref: str, partition: int, saved: dict[str, Any] | None) -> WindowState:
        """A new window state, or a closed window's state from its saved :meth:`record`."""
        state = cls(key, ref, partition=partition)
        if saved:
            state.base = WindowBundle.from_dict(saved["base"]) if saved.get("base") else None
            state.base_sources = dict(saved["sources"])
            state.closed = True
        return state

    def merged(self) -> WindowBundle | None:
        bundles = [b for _, b in self.open_parts.values()]
        if self.base is not None:
            bundles.insert(0, self.base)
        if not bundles:
            return None
        merged = bundles[0]
        for bundle in bundles[1:]:
            merged = merged.merge(bundle)
        return merged


def _same_content(old: WindowBundle, new: WindowBundle) -> bool:
    """Whether a later revision of one source's bundle holds nothing more (bundles only grow)."""
    return (old.events, old.labels, old.late_events, old.label_missing) == (
        new.events, new.labels, new.late_events, new.label_missing
    )  # fmt: skip


def window_parts(siblings: list[WindowState], state: WindowState, current_ref: str) -> list[WindowState]:
    """The window's states under every reference it was folded on; the current reference's first.

    A window whose events were folded partly before and partly after its model's reference
    changed (an automatic reference arriving mid-window, a file loaded mid-window) has one state
    per reference; they are published together so its counts cover every part.
    """
    return sorted(siblings, key=lambda s: (s.reference_id != current_ref, s is not state))


class WindowStates(dict[tuple[BundleKey, str], WindowState]):
    """Stage 2's window states by (key, reference id), with the reference ids of each key indexed."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: dict[BundleKey, set[str]] = {}

    def __setitem__(self, slot: tuple[BundleKey, str], state: WindowState) -> None:
        super().__setitem__(slot, state)
        self.refs.setdefault(slot[0], set()).add(slot[1])

    def __delitem__(self, slot: tuple[BundleKey, str]) -> None:
        super().__delitem__(slot)
        self._forget(slot)

    def pop(self, slot: tuple[BundleKey, str], *default: Any) -> Any:
        if slot in self:
            self._forget(slot)
        return super().pop(slot, *default)

    def _forget(self, slot: tuple[BundleKey, str]) -> None:
        refs = self.refs.get(slot[0])
        if refs is not None:
            refs.discard(slot[1])
            if not refs:
                del self.refs[slot[0]]


def expired_points(partial: Partial) -> list[tuple[bytes, bytes]]:
    """The ``expired_events`` / ``expired_labels`` points of a partial that came too late to be applied.

    Only whole-model partials (segment ``""``) count, so segments do not count an event twice. The
    source names the chunk, so a replayed or newer revision of it replaces the point instead of adding.
    """
    key, bundle = partial.key, partial.bundle
    if key.segment != "":
        return []
    start = _EPOCH + timedelta(milliseconds=key.window_start_ms)
    points = [
        MetricPoint(
            model_id=key.model_id,
            model_version=key.model_version,
            metric=metric,
            window_start=start,
            window_end=start + timedelta(milliseconds=key.window_ms),
            value=float(value),
            source=f"expired|{partial.source}",
            revision=partial.revision,
            details={"reason": "window older than the retention when its partial arrived"},
        )
        for metric, value in ((EXPIRED_EVENTS, bundle.events), (EXPIRED_LABELS, bundle.labels))
        if value
    ]
    return [(p.model_id.encode(), model_to_json(p)) for p in points]
