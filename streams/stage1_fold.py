"""Stage 1, join and fold: a run's checked events joined per partition and folded per window key.

:class:`Folder` takes the events that passed decoding and checks (:mod:`streams.stage1`), joins
each in the partition's :class:`~streams.join_state.JoinState`, groups predictions and joined pairs
by window key (model, version, segment, window start) and folds each group into a fresh bundle
merged into the chunk's. A fold that raises is repeated event by event, and the event that still
raises is dead-lettered (``processing_error``). Predictions evicted from a full join state before
their label came are counted as ``label_missing`` of their window.

Also here: what stage 1 reads of a consumed message (:class:`Message`) and its counters
(:class:`Stage1Stats`), shared by both parts of stage 1.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Protocol, cast

import numpy as np

from modelmon.spec import ModelSpec
from streams.bundle import BundleKey, JoinedPair, WindowBundle
from streams.chunks import Chunk
from streams.columns import PredictionColumns
from streams.decode import Label, Prediction
from streams.fairness import record_groups
from streams.join import JoinStatus, label_record, on_label, on_prediction, prediction_record, read_at
from streams.join_state import JoinState
from streams.reference_id import ReferenceLookup, reference_id
from streams.validation import InvalidEvent, processing_error

log = logging.getLogger(__name__)


class Message(Protocol):
    """What stage 1 reads of a consumed message (confluent-kafka's ``Message``)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def timestamp(self) -> tuple[int, int]: ...
    def headers(self) -> list[tuple[str, bytes]] | None: ...


Kept = tuple[Message, "Prediction | Label", str, str]
"""A message that passed decoding: its event, its origin and where it was read."""


@dataclass
class Stage1Stats:
    """Counters of one worker's stage 1 (the data plane reports those that are not zero)."""

    predictions: int = 0
    labels: int = 0
    joined: int = 0
    routed: int = 0
    routed_copies: int = 0
    duplicate_predictions: int = 0
    duplicate_labels: int = 0
    dead_lettered: int = 0
    partials_published: int = 0
    chunks_closed: int = 0
    expired_entries: int = 0
    evicted_waiting: int = 0
    dead_by_type: dict[str, int] = field(default_factory=lambda: defaultdict(int))


@dataclass
class _Group:
    """The events of one window key in one run: predictions (rows of the run's columns), joined pairs."""

    rows: list[int] = field(default_factory=list)
    late: int = 0
    pairs: list[tuple[JoinedPair, Any]] = field(default_factory=list)  # (pair, the message that joined it)


class Folder:
    """Joins and folds the runs of one worker's stage 1; counts in ``stats``, dead-letters with ``dead``."""

    def __init__(
        self,
        specs: dict[str, ModelSpec],
        references: ReferenceLookup,
        stats: Stage1Stats,
        dead: Callable[[Message, InvalidEvent], None],
        *,
        window_ms: int,
        allowed_lateness_ms: int,
        join_max_pending: int,
    ) -> None:
        self.specs = specs
        self.references = references
        self.stats = stats
        self._dead = dead
        self.window_ms = window_ms
        self.allowed_lateness_ms = allowed_lateness_ms
        self.join_max_pending = join_max_pending
        self._segment_tags = {m: list(s.segments) for m, s in specs.items()}

    def join_and_fold(self, chunk: Chunk, state: JoinState, kept: list[Kept], now_ms: int) -> None:
        """Join a run's checked events in its partition's ``state`` and fold them into ``chunk``."""
        entries, written = state.entries, state.written
        window_ms, lateness = self.window_ms, self.allowed_lateness_ms
        marks = chunk.watermarks
        stats = self.stats
        groups: dict[tuple[str, str, str, int], _Group] = defaultdict(_Group)
        predictions: list[Prediction] = []
        ingest: list[int] = []
        rows_message: list[Message] = []  # the message of each prediction row
        for message, event, origin, consumed in kept:
            t = event.ts
            if type(event) is Prediction:
                model, version, tags = event.model_id, event.model_version, event.tags
                clock = (model, version)
                start = t - t % window_ms  # type: ignore[operator]
                mark = marks.get(clock, 0)
                is_late = mark >= start + window_ms + lateness
                if t > mark:  # type: ignore[operator]
                    marks[clock] = t  # type: ignore[assignment]
                wanted = self._segment_tags[model]
                segments = (
                    [""] + [f"{tag}={tags[tag]}" for tag in wanted if tag in tags]
                    if wanted and tags
                    else [""]
                )
                record = prediction_record(model, version, t, event.prediction, event.score, event.scores,  # type: ignore[arg-type]
                                           segments, origin)  # fmt: skip
                if origin != consumed:
                    read_at(record, consumed)
                if self.specs[model].fairness is not None:  # labels carry no features: keep the groups
                    record["g"] = record_groups(self.specs[model], event.features, tags)
                pid = str(event.prediction_id)
                outcome = on_prediction(entries, pid, record)
                if outcome.stored:
                    written(pid)
                status = outcome.status
                if status is JoinStatus.COPY:
                    stats.routed_copies += 1
                    continue
                stats.predictions += 1
                row = len(predictions)
                predictions.append(event)
                stamp = message.timestamp()
                ingest.append(stamp[1] if stamp[0] else now_ms)
                rows_message.append(message)
                for segment in segments:
                    group = groups[(model, version, segment, start)]
                    group.rows.append(row)
                    group.late += is_late
            else:
                label = cast(Label, event)
                record = label_record(label.label, cast(int, t), origin)
                if origin != consumed:
                    read_at(record, consumed)
                outcome = on_label(entries, label.prediction_id, record)
                if outcome.stored:
                    written(label.prediction_id)
                status = outcome.status
                if status is JoinStatus.COPY:
                    stats.routed_copies += 1
                    continue
                stats.labels += 1
            if status is JoinStatus.DUPLICATE:
                if type(event) is Prediction:
                    stats.duplicate_predictions += 1
                else:
                    stats.duplicate_labels += 1
            elif status is JoinStatus.JOINED and outcome.prediction and outcome.label:
                stats.joined += 1
                p, lab = outcome.prediction, outcome.label
                if type(event) is Label:
                    chunk.touch(message.offset() or 0, (p["m"], p["v"]), lab["t"])
                start = p["t"] - p["t"] % window_ms
                pair = JoinedPair(p["y"], p["sc"], p["ss"], lab["y"], p["t"], lab["t"], p.get("g"))
                for segment in p["s"]:
                    groups[(p["m"], p["v"], segment, start)].pairs.append((pair, message))
        columns = _columns(predictions, ingest)
        for (model, version, segment, start), group in groups.items():
            self._fold(
                chunk, BundleKey(model, version, segment, start, window_ms), group, columns, rows_message
            )

    def _fold(self, chunk: Chunk, key: BundleKey, group: _Group, columns: PredictionColumns,
              rows_message: list[Message]) -> None:  # fmt: skip
        """Fold one key's events into a fresh bundle, merged into the chunk's; isolate what raises."""
        spec = self.specs[key.model_id]
        profile = self.references(key.model_id, key.model_version)

        def fold(bundle: WindowBundle, rows: list[int], pairs: list[tuple[JoinedPair, Any]]) -> None:
            if rows:
                bundle.add_columns(_take(columns, rows), spec)
            if pairs:
                bundle.add_labels([pair for pair, _ in pairs], spec)

        fresh = WindowBundle.empty(key, spec, profile)
        try:
            fold(fresh, group.rows, group.pairs)
        except Exception:
            fresh = WindowBundle.empty(key, spec, profile)
            singles: list[tuple[list[int], list[tuple[JoinedPair, Any]], Any]]
            singles = [([row], [], rows_message[row]) for row in group.rows]
            singles += [([], [item], item[1]) for item in group.pairs]
            for rows, pairs, message in singles:
                single = WindowBundle.empty(key, spec, profile)
                try:
                    fold(single, rows, pairs)
                    fresh = fresh.merge(single)
                except Exception as error:
                    self._dead(message, processing_error(error))
        fresh.late_events += group.late
        chunk.add(key, reference_id(profile), fresh)

    def count_evicted(self, chunk: Chunk, evicted: list[tuple[str, dict[str, Any]]]) -> None:
        if not evicted:
            return
        self.stats.evicted_waiting += len(evicted)
        log.warning(
            "join state of partition %s is full (%d entries): %d waiting predictions evicted, counted as "
            "label_missing", chunk.partition, self.join_max_pending, len(evicted),
        )  # fmt: skip
        counts: dict[BundleKey, int] = defaultdict(int)
        for _, entry in evicted:
            p = entry["p"]
            if p.get("m") in self.specs:
                counts[BundleKey(p["m"], p["v"], "", p["t"] - p["t"] % self.window_ms, self.window_ms)] += 1
        for key, n in counts.items():
            profile = self.references(key.model_id, key.model_version)
            bundle = WindowBundle.empty(key, self.specs[key.model_id], profile)
            bundle.label_missing = n
            chunk.add(key, reference_id(profile), bundle)


def _columns(events: list[Prediction], ingest: list[int]) -> PredictionColumns:
    return PredictionColumns(
        ids=[str(e.prediction_id) for e in events],
        ts_ms=np.fromiter((int(e.ts) for e in events), np.int64, len(events)),  # type: ignore[arg-type]
        features=[e.features for e in events],
        predictions=[e.prediction for e in events],
        scores=np.array([e.score for e in events], dtype=np.float64),
        ingest_ms=np.asarray(ingest, dtype=np.int64),
        class_scores=list(map(attrgetter("scores"), events)),
        tags=list(map(attrgetter("tags"), events)),
    )


def _take(columns: PredictionColumns, rows: list[int]) -> PredictionColumns:
    if len(rows) == len(columns.ids) and rows[-1] == len(rows) - 1:
        return columns
    index = np.asarray(rows)
    return PredictionColumns(
        ids=[columns.ids[r] for r in rows],
        ts_ms=columns.ts_ms[index],
        features=[columns.features[r] for r in rows],
        predictions=[columns.predictions[r] for r in rows],
        scores=columns.scores[index],
        ingest_ms=columns.ingest_ms[index],
        class_scores=None if columns.class_scores is None else [columns.class_scores[r] for r in rows],
        tags=None if columns.tags is None else [columns.tags[r] for r in rows],
    )
