"""The join state of one input partition: pending predictions and labels, in memory, logged per batch.

Entries are those of :mod:`streams.join` (the replay-safe join), keyed by ``prediction_id``. What a
batch changed goes to the compacted-by-time changelog topic ``<prefix>monitor-joins`` as **one
message per batch and partition** (a JSON list of ``[id, entry or null]``), produced before the
batch's offsets are committed; a worker that is assigned the partition reads that changelog
partition from its start and applies it in order before it processes an event (:meth:`apply`).
Applying a batch twice, or a batch whose inputs are replayed, leaves the same state: entries are
whole values, the last write wins, and the join recognises replayed messages by their origin.

Memory is bounded: beyond ``max_entries`` the oldest entries (by first arrival) are evicted and
their deletion logged; an evicted prediction that was still waiting for its label is returned by
:meth:`evict` so stage 1 counts it as ``label_missing`` in its window. Entries older than their
model's label TTL (by event time) are expired the same way (:meth:`expire`), not counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import orjson

Entry = dict[str, Any]


class JoinState(MutableMapping[str, Entry]):
    """A dict of join entries that remembers which keys changed since the last :meth:`take_changes`.

    >>> state = JoinState(max_entries=2)
    >>> state["a"] = {"p": {"t": 1, "m": "m"}}
    >>> state["b"] = {"l": {"t": 2}}
    >>> state["c"] = {"p": {"t": 3, "m": "m"}}
    >>> [key for key, _ in state.evict()]  # over the cap: the oldest, a waiting prediction
    ['a']
    >>> (payload,) = state.take_changes()
    >>> copy = JoinState()
    >>> copy.apply(payload); sorted(copy)
    ['b', 'c']
    >>> state.take_changes()  # nothing changed since
    []
    """

    def __init__(self, max_entries: int = 250_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[str, Entry] = {}
        self._changed: dict[str, Entry | None] = {}

    @property
    def entries(self) -> dict[str, Entry]:
        """The plain dict, for the hot path: whoever writes to it calls :meth:`written` for the key."""
        return self._entries

    def written(self, key: str) -> None:
        self._changed[key] = self._entries[key]

    # -- the mapping the join reads and writes -----------------------------------------------------
    def __getitem__(self, key: str) -> Entry:
        return self._entries[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._entries.get(key, default)

    def __setitem__(self, key: str, value: Entry) -> None:
        self._entries[key] = value
        self._changed[key] = value

    def __delitem__(self, key: str) -> None:
        del self._entries[key]
        self._changed[key] = None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    # -- the changelog -----------------------------------------------------------------------------
    def take_changes(self, max_bytes: int = 900_000) -> list[bytes]:
        """What changed since the last call, as changelog messages of at most ``max_bytes`` each.

        Usually one message; a large batch is split into messages with disjoint keys, so they can be
        applied in any order (one entry larger than ``max_bytes`` goes alone).
        """
        if not self._changed:
            return []
        items = list(self._changed.items())
        self._changed = {}
        return _pieces(items, max_bytes)

    def apply(self, payload: bytes | None) -> None:
        """Apply one changelog message (restoring: nothing is recorded as changed)."""
        if not payload:
            return
        for key, value in orjson.loads(payload):
            if value is None:
                self._entries.pop(key, None)
            else:
                # Re-inserted at the end: a restored entry is as old as its last write.
                self._entries.pop(key, None)
                self._entries[key] = value

    # -- bounds --------------------------------------------------------------------------------------
    def evict(self) -> list[tuple[str, Entry]]:
        """Delete the oldest entries beyond ``max_entries``; returns the waiting predictions among them."""
        waiting = []
        while len(self._entries) > self.max_entries:
            key = next(iter(self._entries))
            entry = self._entries[key]
            del self[key]
            if "p" in entry and "l" not in entry:
                waiting.append((key, entry))
        return waiting

    def expire(self, now_ms: int, ttl_ms: Callable[[str | None], int]) -> int:
        """Delete entries older than their model's label TTL (event time); returns how many."""
        old = []
        for key, entry in self._entries.items():
            side = entry.get("p") or entry.get("l") or {}
            model = (entry.get("p") or {}).get("m")
            if now_ms - int(side.get("t", 0)) > ttl_ms(model):
                old.append(key)
        for key in old:
            del self[key]
        return len(old)


def _pieces(items: list[tuple[str, Entry | None]], max_bytes: int) -> list[bytes]:
    """``items`` as JSON lists of at most ``max_bytes`` each, halving until they fit.

    >>> items = [(f"k{i}", {"t": i}) for i in range(100)]
    >>> pieces = _pieces(items, 600)
    >>> len(pieces) > 1 and all(len(p) <= 600 for p in pieces)
    True
    >>> sum(len(orjson.loads(p)) for p in pieces)
    100
    """
    payload = orjson.dumps(items)
    if len(payload) <= max_bytes or len(items) == 1:
        return [payload]
    half = len(items) // 2
    return _pieces(items[:half], max_bytes) + _pieces(items[half:], max_bytes)
