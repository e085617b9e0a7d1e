"""Stage 1 agent: validate predictions and labels, join them, fold them into chunk partials.

Runs per input partition (``predictions`` and ``ground-truth`` are co-partitioned by
``prediction_id``, so a label meets its prediction in the same worker). See :mod:`streams.chunks`
for the exactly-once argument and :mod:`streams.join` for the replay-safe join.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust
import numpy as np
from faust.types import EventT

from detectors.profiles import ReferenceProfile
from modelmon.events import DeadLetter, GroundTruthEvent, PredictionEvent, epoch_ms, model_to_json
from modelmon.settings import Settings
from modelmon.spec import ModelSpec, parse_duration
from streams.app import changelog_partition_of, publish_all
from streams.batching import Acknowledger
from streams.bundle import BundleKey, JoinedPair, WindowBundle
from streams.chunks import Chunk, chunk_index
from streams.join import JoinStatus, entry_time_ms, label_record, on_label, on_prediction, prediction_record
from streams.validation import (
    EventLimits,
    InvalidEvent,
    check_against_spec,
    check_event_time,
    dead_letter,
    parse_event,
    processing_error,
)

log = logging.getLogger(__name__)

ReferenceLookup = Callable[[str, str], ReferenceProfile | None]


@dataclass(frozen=True, slots=True)
class _Item:
    """One event on its way into a bundle: a prediction (with ingest time and lateness) or a joined pair."""

    event: Any
    value: Any
    ingest_ms: int
    late: bool


Fold = Callable[[WindowBundle, list[_Item]], None]


@dataclass
class Stage1Stats:
    predictions: int = 0
    labels: int = 0
    joined: int = 0
    duplicate_predictions: int = 0
    duplicate_labels: int = 0
    dead_lettered: int = 0
    partials_published: int = 0
    chunks_closed: int = 0
    expired_entries: int = 0
    dead_by_type: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def reference_id(profile: ReferenceProfile | None) -> str:
    """A short, stable id of a reference profile ('' for none): bundles merge only within one."""
    if profile is None:
        return ""
    # Asked for every bundle of every batch: hashing the profile's JSON each time took a quarter of a
    # worker's CPU. Profiles are read-only; the entry holds the profile, so its id is not reused.
    cached = _REFERENCE_IDS.get(id(profile))
    if cached is not None and cached[0] is profile:
        return cached[1]
    digest = hashlib.sha1(profile.to_json().encode()).hexdigest()[:12]
    if len(_REFERENCE_IDS) >= 256:
        _REFERENCE_IDS.clear()
    _REFERENCE_IDS[id(profile)] = (profile, digest)
    return digest


_REFERENCE_IDS: dict[int, tuple[ReferenceProfile, str]] = {}


def bundle_keys(spec: ModelSpec, event: PredictionEvent, window_ms: int) -> list[BundleKey]:
    """The whole-model key plus one per segment tag the event carries."""
    ts_ms = epoch_ms(event.ts)
    start = ts_ms - ts_ms % window_ms
    segments = [""] + [f"{tag}={event.tags[tag]}" for tag in spec.segments if tag in event.tags]
    return [BundleKey(event.model_id, event.model_version, s, start, window_ms) for s in segments]


class Stage1:
    """The state and logic of stage 1 in one worker; the faust agent feeds it batches."""

    def __init__(
        self,
        settings: Settings,
        specs: dict[str, ModelSpec],
        joins: Any,
        references: ReferenceLookup,
        partials_topic: faust.TopicT,
        dead_topic: faust.TopicT,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.specs = specs
        self.joins = joins
        self.references = references
        self.partials_topic = partials_topic
        self.dead_topic = dead_topic
        self.clock = clock
        self.limits = EventLimits.from_settings(settings)
        self.window_ms = settings.window_seconds * 1000
        self.allowed_lateness_ms = settings.allowed_lateness_seconds * 1000
        self.chunk_size = settings.chunk_size
        self.max_partial_bytes = settings.max_partial_bytes
        self.chunks: dict[tuple[str, int], Chunk] = {}
        self.stats = Stage1Stats()
        self._ttl_ms = {m: int(parse_duration(s.label_ttl).total_seconds() * 1000) for m, s in specs.items()}
        self._predictions_topic = settings.topics.predictions

    # -- helpers -----------------------------------------------------------------------------
    def _chunk_for(self, topic: str, partition: int, offset: int) -> tuple[Chunk, Chunk | None]:
        """The chunk of ``offset``; returns (chunk, the previous chunk if this closed it)."""
        index = chunk_index(offset, self.chunk_size)
        current = self.chunks.get((topic, partition))
        if current is not None and current.index == index:
            return current, None
        chunk = Chunk(topic, partition, index, watermarks=dict(current.watermarks) if current else {})
        self.chunks[(topic, partition)] = chunk
        return chunk, current

    def _fold_group(
        self,
        chunk: Chunk,
        key: BundleKey,
        items: list[_Item],
        fold: Callable[[WindowBundle, list[_Item]], None],
    ) -> list[tuple[_Item, Exception]]:
        """Fold items into a fresh bundle, then merge it into the chunk's; returns the items that raised.

        A batch that raises is folded again item by item, so one poison event cannot take its
        neighbours (or the chunk's earlier state) with it.
        """
        profile = self.references(key.model_id, key.model_version)
        spec = self.specs[key.model_id]
        failed: list[tuple[_Item, Exception]] = []
        try:
            fresh = WindowBundle.empty(key, spec, profile)
            fold(fresh, items)
        except Exception:
            fresh = WindowBundle.empty(key, spec, profile)
            for item in items:
                single = WindowBundle.empty(key, spec, profile)
                try:
                    fold(single, [item])
                    fresh = fresh.merge(single)
                except Exception as error:
                    failed.append((item, error))
        ref = reference_id(profile)
        existing = chunk.bundles.get((key, ref))
        chunk.bundles[(key, ref)] = fresh if existing is None else existing.merge(fresh)
        return failed

    # -- the batch ---------------------------------------------------------------------------
    def _validate(self, event: EventT, now_ms: int) -> PredictionEvent | GroundTruthEvent:
        message = event.message
        if message.topic == self._predictions_topic:
            prediction = parse_event(message.value, PredictionEvent, self.limits)
            spec = check_against_spec(prediction, self.specs)
            check_event_time(epoch_ms(prediction.ts), now_ms, self.limits, spec)
            return prediction
        label = parse_event(message.value, GroundTruthEvent, self.limits)
        label_spec = self.specs.get(label.model_id)
        if label_spec is None:
            raise InvalidEvent("unknown_model", f"model_id {label.model_id!r} has no model spec")
        check_event_time(epoch_ms(label.ts), now_ms, self.limits, label_spec)
        return label

    async def process(self, acks: Acknowledger, events: Sequence[EventT]) -> None:
        dead: list[tuple[EventT, DeadLetter]] = []
        closed: list[Chunk] = []
        by_tp: dict[tuple[str, int], list[tuple[EventT, PredictionEvent | GroundTruthEvent]]] = defaultdict(
            list
        )
        now_ms = int(self.clock() * 1000)
        for event in events:
            message = event.message
            try:
                parsed = self._validate(event, now_ms)
            except InvalidEvent as error:
                dead.append((event, dead_letter(event.message, error)))
                continue
            except Exception as error:  # an unforeseen value: this event only, the worker goes on
                dead.append((event, dead_letter(event.message, processing_error(error))))
                continue
            by_tp[(message.topic, message.partition)].append((event, parsed))

        for (topic, partition), items in by_tp.items():
            with changelog_partition_of(items[-1][0]):
                closed_here, failed = self._fold(topic, partition, items)
            closed.extend(closed_here)
            dead.extend(
                (event, dead_letter(event.message, processing_error(error))) for event, error in failed
            )

        letters = [letter for _, letter in dead]
        await publish_all(self.dead_topic, [(d.dedup_key().encode(), model_to_json(d)) for d in letters])
        for event, _ in dead:
            await acks.ack(event)  # its output, the dead letter, is acknowledged
        for chunk in closed:
            await publish_all(
                self.partials_topic, chunk.partial_messages(final=True, max_bytes=self.max_partial_bytes)
            )
            self.stats.partials_published += len(chunk.bundles)
            self.stats.chunks_closed += 1
            for held in chunk.held:
                await acks.ack(held)
        self.stats.dead_lettered += len(letters)
        for letter in letters:
            self.stats.dead_by_type[letter.error_type] += 1

    def _fold(
        self, topic: str, partition: int, items: list[tuple[EventT, PredictionEvent | GroundTruthEvent]]
    ) -> tuple[list[Chunk], list[tuple[EventT, Exception]]]:
        """Join and fold one partition's events of a batch; the chunks it closed, the events that raised."""
        closed: list[Chunk] = []
        failed: list[tuple[EventT, Exception]] = []
        predictions: dict[tuple[int, BundleKey], list[_Item]] = defaultdict(list)
        pairs: dict[tuple[int, BundleKey], list[_Item]] = defaultdict(list)
        chunks_seen: dict[int, Chunk] = {}
        for event, parsed in items:
            message = event.message
            chunk, previous = self._chunk_for(topic, partition, message.offset)
            if previous is not None:
                closed.append(previous)
            chunks_seen[chunk.index] = chunk
            chunk.held.append(event)  # held since it was read (streams.batching); released at close
            try:
                self._join_one(chunk, event, parsed, predictions, pairs)
            except Exception as error:
                failed.append((event, error))

        all_chunks = {c.index: c for c in [*closed, *chunks_seen.values()]}
        for (index, key), group in predictions.items():
            failures = self._fold_group(all_chunks[index], key, group, self._fold_predictions)
            failed.extend((item.event, error) for item, error in failures)
        for (index, key), group in pairs.items():
            failures = self._fold_group(all_chunks[index], key, group, self._fold_pairs)
            failed.extend((item.event, error) for item, error in failures)
        return closed, failed

    def _join_one(
        self,
        chunk: Chunk,
        event: EventT,
        parsed: PredictionEvent | GroundTruthEvent,
        predictions: dict[tuple[int, BundleKey], list[_Item]],
        pairs: dict[tuple[int, BundleKey], list[_Item]],
    ) -> None:
        message = event.message
        origin = f"{message.topic}|{message.partition}|{message.offset}"
        if isinstance(parsed, PredictionEvent):
            self.stats.predictions += 1
            spec = self.specs[parsed.model_id]
            keys = bundle_keys(spec, parsed, self.window_ms)
            ts_ms = epoch_ms(parsed.ts)
            clock = (parsed.model_id, parsed.model_version)
            # Late: its window had closed for this partition and version (watermark past end + lateness).
            window_end = ts_ms - ts_ms % self.window_ms + self.window_ms
            is_late = chunk.watermark(*clock) >= window_end + self.allowed_lateness_ms
            chunk.touch(message.offset, clock, ts_ms)
            ingest_ms = int((message.timestamp or self.clock()) * 1000)
            for key in keys:
                predictions[(chunk.index, key)].append(_Item(event, parsed, ingest_ms, is_late))
            record = prediction_record(
                parsed.model_id, parsed.model_version, ts_ms, parsed.prediction, parsed.score,
                parsed.scores, [k.segment for k in keys], origin,
            )  # fmt: skip
            outcome = on_prediction(self.joins, parsed.prediction_id, record)
        else:
            self.stats.labels += 1
            ts_ms = epoch_ms(parsed.ts)
            chunk.touch(message.offset)
            outcome = on_label(self.joins, parsed.prediction_id, label_record(parsed.label, ts_ms, origin))
        if outcome.status is JoinStatus.DUPLICATE:
            if isinstance(parsed, PredictionEvent):
                self.stats.duplicate_predictions += 1
            else:
                self.stats.duplicate_labels += 1
        elif outcome.status is JoinStatus.JOINED and outcome.prediction and outcome.label:
            self.stats.joined += 1
            p, lab = outcome.prediction, outcome.label
            if isinstance(parsed, GroundTruthEvent):
                # A label partition's clock, per version, is its joined labels' time.
                chunk.touch(message.offset, (p["m"], p["v"]), lab["t"])
            start = p["t"] - p["t"] % self.window_ms
            pair = JoinedPair(p["y"], p["sc"], p["ss"], lab["y"], p["t"], lab["t"])
            for segment in p["s"]:
                key = BundleKey(p["m"], p["v"], segment, start, self.window_ms)
                pairs[(chunk.index, key)].append(_Item(event, pair, 0, False))

    def _fold_predictions(self, bundle: WindowBundle, items: list[_Item]) -> None:
        spec = self.specs[bundle.key.model_id]
        events = [item.value for item in items]
        bundle.add_predictions(events, np.array([item.ingest_ms for item in items]), spec)
        bundle.late_events += sum(item.late for item in items)

    def _fold_pairs(self, bundle: WindowBundle, items: list[_Item]) -> None:
        bundle.add_labels([item.value for item in items], self.specs[bundle.key.model_id])

    # -- housekeeping ------------------------------------------------------------------------
    async def flush_idle(self, idle_seconds: float) -> int:
        """Publish a revision of every chunk that changed and then saw nothing for ``idle_seconds``.

        Revisions let stage 2 finish windows on quiet partitions; the chunk stays open and held.
        """
        now = time.monotonic()
        flushed = 0
        for chunk in list(self.chunks.values()):
            if chunk.dirty and now - chunk.changed_at >= idle_seconds and chunk.bundles:
                chunk.dirty = False
                messages = chunk.partial_messages(final=False, max_bytes=self.max_partial_bytes)
                await publish_all(self.partials_topic, messages)
                flushed += 1
        return flushed

    def drop_partitions(self, revoked: set[tuple[str, int]]) -> None:
        """Forget chunks of revoked partitions: their new owner replays them from the commit."""
        for tp in revoked:
            self.chunks.pop(tp, None)

    def expire_entries(self, now_ms: int, events_by_partition: dict[int, EventT]) -> int:
        """Delete join entries older than their model's label TTL (the label is then missing).

        Only entries of the given partitions are deleted, each under one of its partition's events
        so the tombstone goes to the right changelog partition. Scans the local table: run it every
        few hundred batches, not on every one.
        """
        by_partition: dict[int, list[str]] = defaultdict(list)
        for key, entry in list(self.joins.items()):
            if not entry:
                continue
            side = entry.get("p") or entry.get("l") or {}
            model = (entry.get("p") or {}).get("m")
            ttl = self._ttl_ms.get(model or "", max(self._ttl_ms.values(), default=0))
            if now_ms - entry_time_ms(entry) > ttl:
                by_partition[int(str(side.get("o", "||-1")).split("|")[1])].append(key)
        expired = 0
        for partition, keys in by_partition.items():
            event = events_by_partition.get(partition)
            if event is None:
                continue
            with changelog_partition_of(event):
                for key in keys:
                    self.joins.pop(key, None)
            expired += len(keys)
        self.stats.expired_entries += expired
        return expired
