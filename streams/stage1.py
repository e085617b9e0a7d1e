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
from faust.types import EventT, StreamT

from detectors.profiles import ReferenceProfile
from modelmon.events import DeadLetter, GroundTruthEvent, PredictionEvent, epoch_ms, model_to_json
from modelmon.settings import Settings
from modelmon.spec import ModelSpec, parse_duration
from streams.app import changelog_partition_of, publish_all
from streams.bundle import BundleKey, JoinedPair, WindowBundle
from streams.chunks import Chunk, chunk_index
from streams.join import JoinStatus, entry_time_ms, label_record, on_label, on_prediction, prediction_record
from streams.validation import InvalidEvent, RawMessage, check_against_spec, dead_letter, parse_event

log = logging.getLogger(__name__)

ReferenceLookup = Callable[[str, str], ReferenceProfile | None]


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
    redelivered: int = 0
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
    ) -> None:
        self.settings = settings
        self.specs = specs
        self.joins = joins
        self.references = references
        self.partials_topic = partials_topic
        self.dead_topic = dead_topic
        self.window_ms = settings.window_seconds * 1000
        self.allowed_lateness_ms = settings.allowed_lateness_seconds * 1000
        self.chunk_size = settings.chunk_size
        self.chunks: dict[tuple[str, int], Chunk] = {}
        self._last_offset: dict[tuple[str, int], int] = {}
        self.stats = Stage1Stats()
        self._ttl_ms = {m: int(parse_duration(s.label_ttl).total_seconds() * 1000) for m, s in specs.items()}
        self._predictions_topic = settings.topics.predictions

    # -- helpers -----------------------------------------------------------------------------
    def _bundle(self, chunk: Chunk, key: BundleKey) -> WindowBundle:
        profile = self.references(key.model_id, key.model_version)
        ref = reference_id(profile)
        bundle = chunk.bundles.get((key, ref))
        if bundle is None:
            bundle = WindowBundle.empty(key, self.specs[key.model_id], profile)
            chunk.bundles[(key, ref)] = bundle
        return bundle

    def _chunk_for(self, topic: str, partition: int, offset: int) -> tuple[Chunk, Chunk | None]:
        """The chunk of ``offset``; returns (chunk, the previous chunk if this closed it)."""
        index = chunk_index(offset, self.chunk_size)
        current = self.chunks.get((topic, partition))
        if current is not None and current.index == index:
            return current, None
        chunk = Chunk(topic, partition, index, watermark_ms=current.watermark_ms if current else 0)
        self.chunks[(topic, partition)] = chunk
        return chunk, current

    # -- the batch ---------------------------------------------------------------------------
    def _validate(self, event: EventT) -> PredictionEvent | GroundTruthEvent:
        message = event.message
        if message.topic == self._predictions_topic:
            prediction = parse_event(message.value, PredictionEvent)
            check_against_spec(prediction, self.specs)
            return prediction
        label = parse_event(message.value, GroundTruthEvent)
        if label.model_id not in self.specs:
            raise InvalidEvent("unknown_model", f"model_id {label.model_id!r} has no model spec")
        return label

    async def process(self, stream: StreamT, events: Sequence[EventT]) -> None:
        dead: list[DeadLetter] = []
        dead_events: list[EventT] = []
        closed: list[Chunk] = []
        by_tp: dict[tuple[str, int], list[tuple[EventT, PredictionEvent | GroundTruthEvent]]] = defaultdict(
            list
        )
        for event in events:
            message = event.message
            tp = (message.topic, message.partition)
            if message.offset <= self._last_offset.get(tp, -1):
                # Read again in this process: already folded and held by its chunk, so it must not
                # count twice; its hold is left in place (at worst a commit waits for a restart).
                self.stats.redelivered += 1
                continue
            self._last_offset[tp] = message.offset
            try:
                parsed = self._validate(event)
            except InvalidEvent as error:
                raw = RawMessage(message.value, message.topic, message.partition, message.offset, message.key)
                dead.append(dead_letter(raw, error))
                dead_events.append(event)
                continue
            by_tp[(message.topic, message.partition)].append((event, parsed))

        for (topic, partition), items in by_tp.items():
            with changelog_partition_of(items[-1][0]):
                closed.extend(self._fold(topic, partition, items))

        await publish_all(self.dead_topic, [(d.dedup_key().encode(), model_to_json(d)) for d in dead])
        for event in dead_events:
            await stream.ack(event)  # its output, the dead letter, is acknowledged
        for chunk in closed:
            await publish_all(self.partials_topic, chunk.partial_messages(final=True))
            self.stats.partials_published += len(chunk.bundles)
            self.stats.chunks_closed += 1
            for held in chunk.held:
                await stream.ack(held)
        self.stats.dead_lettered += len(dead)
        for letter in dead:
            self.stats.dead_by_type[letter.error_type] += 1

    def _fold(
        self, topic: str, partition: int, items: list[tuple[EventT, PredictionEvent | GroundTruthEvent]]
    ) -> list[Chunk]:
        """Join and aggregate one partition's events of a batch; returns the chunks it closed."""
        closed: list[Chunk] = []
        predictions: dict[tuple[int, BundleKey], list[tuple[PredictionEvent, int]]] = defaultdict(list)
        late: dict[tuple[int, BundleKey], int] = defaultdict(int)
        pairs: dict[tuple[int, BundleKey], list[JoinedPair]] = defaultdict(list)
        chunks_seen: dict[int, Chunk] = {}
        for event, parsed in items:
            message = event.message
            chunk, previous = self._chunk_for(topic, partition, message.offset)
            if previous is not None:
                closed.append(previous)
            chunks_seen[chunk.index] = chunk
            chunk.held.append(event)  # held since it was read (streams.batching); released at close
            origin = f"{topic}|{partition}|{message.offset}"
            if isinstance(parsed, PredictionEvent):
                self.stats.predictions += 1
                spec = self.specs[parsed.model_id]
                keys = bundle_keys(spec, parsed, self.window_ms)
                ts_ms = epoch_ms(parsed.ts)
                # Late: its window had closed for this partition (watermark past end + lateness).
                window_end = ts_ms - ts_ms % self.window_ms + self.window_ms
                is_late = chunk.watermark_ms >= window_end + self.allowed_lateness_ms
                chunk.touch(message.offset, ts_ms)
                ingest_ms = int((message.timestamp or time.time()) * 1000)
                for key in keys:
                    predictions[(chunk.index, key)].append((parsed, ingest_ms))
                    late[(chunk.index, key)] += is_late
                record = prediction_record(
                    parsed.model_id, parsed.model_version, ts_ms, parsed.prediction, parsed.score,
                    parsed.scores, [k.segment for k in keys], origin,
                )  # fmt: skip
                outcome = on_prediction(self.joins, parsed.prediction_id, record)
            else:
                self.stats.labels += 1
                ts_ms = epoch_ms(parsed.ts)
                chunk.touch(message.offset, ts_ms)
                outcome = on_label(
                    self.joins, parsed.prediction_id, label_record(parsed.label, ts_ms, origin)
                )
            if outcome.status is JoinStatus.DUPLICATE:
                if isinstance(parsed, PredictionEvent):
                    self.stats.duplicate_predictions += 1
                else:
                    self.stats.duplicate_labels += 1
            elif outcome.status is JoinStatus.JOINED and outcome.prediction and outcome.label:
                self.stats.joined += 1
                p, lab = outcome.prediction, outcome.label
                start = p["t"] - p["t"] % self.window_ms
                pair = JoinedPair(p["y"], p["sc"], p["ss"], lab["y"], p["t"], lab["t"])
                for segment in p["s"]:
                    pairs[(chunk.index, BundleKey(p["m"], p["v"], segment, start, self.window_ms))].append(
                        pair
                    )

        all_chunks = {c.index: c for c in [*closed, *chunks_seen.values()]}
        for (index, key), group in predictions.items():
            chunk = all_chunks[index]
            bundle = self._bundle(chunk, key)
            bundle.add_predictions(
                [e for e, _ in group], np.array([t for _, t in group]), self.specs[key.model_id]
            )
            bundle.late_events += late[(index, key)]
        for (index, key), joined in pairs.items():
            self._bundle(all_chunks[index], key).add_labels(joined, self.specs[key.model_id])
        return closed

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
                await publish_all(self.partials_topic, chunk.partial_messages(final=False))
                flushed += 1
        return flushed

    def drop_partitions(self, revoked: set[tuple[str, int]]) -> None:
        """Forget chunks of revoked partitions: their new owner replays them from the commit."""
        for tp in revoked:
            self.chunks.pop(tp, None)
            self._last_offset.pop(tp, None)

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
