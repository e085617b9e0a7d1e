"""Joining ground truth to predictions in a key-value store, in either arrival order, replay-safe.

Each ``prediction_id`` has one entry: the prediction (``p``), the label (``l``) or both, plus the
origin (``topic|partition|offset``) of the message that completed the join (``j``). A message
replayed after a crash finds its own origin in the entry and gets the same outcome as the first
time, so a join is counted exactly once however often its messages are read. A second, different
prediction or label for the same id is a duplicate: counted, never joined again.

A message the data plane routed to its partner's partition (``streams.routing``) keeps its original
``o`` and records where it was read (``c``): a second copy of it (the original partition replayed
and routed again after a crash) is a :attr:`JoinStatus.COPY` and is not processed again.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

Record = dict[str, Any]


class JoinStatus(StrEnum):
    WAITING = "waiting"
    """Stored; its counterpart has not arrived yet."""
    JOINED = "joined"
    """This message completed the join (or is a replay of the message that did)."""
    DUPLICATE = "duplicate"
    """Another prediction or label with this id was seen first."""
    ALREADY_STORED = "already_stored"
    """A replay of a message that was stored, not joined, the first time."""
    COPY = "copy"
    """Another routed copy of a message already read from another offset: skip it."""


@dataclass(frozen=True, slots=True)
class JoinOutcome:
    status: JoinStatus
    prediction: Record | None = None
    label: Record | None = None
    stored: bool = False
    """Whether the store's entry was written (a new entry, or the join completed now)."""


def prediction_record(
    model_id: str,
    version: str,
    ts_ms: int,
    prediction: Any,
    score: float | None,
    scores: dict[str, float] | None,
    segments: list[str],
    origin: str,
) -> Record:
    """What a prediction leaves in the join store while it waits (kept small: no features)."""
    return {
        "m": model_id,
        "v": version,
        "t": ts_ms,
        "y": prediction,
        "sc": score,
        "ss": scores,
        "s": segments,
        "o": origin,
    }


def label_record(label: Any, ts_ms: int, origin: str) -> Record:
    return {"y": label, "t": ts_ms, "o": origin}


def read_at(record: Record, consumed: str) -> Record:
    """``record`` of a routed message, read at ``consumed`` (topic|partition|offset of the copy)."""
    record["c"] = consumed
    return record


_WAITING = JoinOutcome(JoinStatus.WAITING, stored=True)


def _arrive(store: MutableMapping[str, Any], key: str, side: str, record: Record) -> JoinOutcome:
    entry = store.get(key)
    if entry is None:
        store[key] = {side: record}
        return _WAITING
    if side in entry:
        mine = entry[side]
        if mine["o"] != record["o"]:
            return JoinOutcome(JoinStatus.DUPLICATE)
        if mine.get("c") != record.get("c"):
            return JoinOutcome(JoinStatus.COPY)
        if entry.get("j") == record["o"]:
            return JoinOutcome(JoinStatus.JOINED, entry.get("p"), entry.get("l"))
        return JoinOutcome(JoinStatus.ALREADY_STORED)
    joined = {**entry, side: record, "j": record["o"]}
    store[key] = joined
    return JoinOutcome(JoinStatus.JOINED, joined.get("p"), joined.get("l"), stored=True)


def on_prediction(store: MutableMapping[str, Any], prediction_id: str, record: Record) -> JoinOutcome:
    """A prediction arrives: store it, or complete the join with a waiting label.

    >>> store = {}
    >>> on_label(store, "p1", label_record(1, 5, "gt|0|7")).status
    <JoinStatus.WAITING: 'waiting'>
    >>> p = prediction_record("m", "1", 3, 0, 0.2, None, [""], "pred|0|9")
    >>> on_prediction(store, "p1", p).status
    <JoinStatus.JOINED: 'joined'>
    >>> on_prediction(store, "p1", p).status  # the same message replayed
    <JoinStatus.JOINED: 'joined'>
    >>> on_label(store, "p1", label_record(0, 6, "gt|0|8")).status  # another label for p1
    <JoinStatus.DUPLICATE: 'duplicate'>
    """
    return _arrive(store, prediction_id, "p", record)


def on_label(store: MutableMapping[str, Any], prediction_id: str, record: Record) -> JoinOutcome:
    """A label arrives: store it, or complete the join with a waiting prediction."""
    return _arrive(store, prediction_id, "l", record)


def entry_time_ms(entry: dict[str, Any]) -> int:
    """Event time of an entry: its prediction's, else its label's."""
    side = entry.get("p") or entry.get("l") or {}
    return int(side.get("t", 0))
