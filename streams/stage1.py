"""Stage 1 on the data plane: validate, route, join and fold one input partition's batch into chunks.

The data plane (:mod:`streams.data_plane`) hands over the messages it read, per topic partition and
in offset order. Per chunk of ``MODELMON_CHUNK_SIZE`` offsets (:mod:`streams.chunks`, the unit
whose partials replace each other in stage 2 and up to which offsets are committed):

1. **decode** each message with the typed decoder (:mod:`streams.decode`); a refused one becomes a
   dead letter with the contract's reason;
2. **check** event times against the clock and predictions against their model spec, per column;
3. **route** events that are not on their ``prediction_id``'s partition (:mod:`streams.routing`);
4. **join** in the partition's :class:`~streams.join_state.JoinState` and **fold** predictions and
   joined pairs, per window key, into fresh bundles merged into the chunk's: a fold that raises is
   repeated event by event, and the event that still raises is dead-lettered (``processing_error``).
   This step is :mod:`streams.stage1_fold`.

Nothing here talks to Kafka: outputs go through :class:`Outputs`, which the data plane produces.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from modelmon.events import DeadLetter
from modelmon.settings import Settings
from modelmon.spec import ModelSpec, Task, parse_duration
from streams.chunks import Chunk, chunk_index
from streams.decode import Label, Prediction, decode_label, decode_prediction, fill_prediction_ids, times_ms
from streams.join_state import JoinState
from streams.reference_id import ReferenceLookup
from streams.routing import LABEL, PREDICTION, misplaced, read_headers, routed_headers
from streams.stage1_fold import Folder, Kept, Message, Stage1Stats
from streams.validation import (
    EventLimits,
    InvalidEvent,
    RawMessage,
    check_event_time,
    dead_letter,
    processing_error,
)

log = logging.getLogger(__name__)

REFRESH_SECONDS = 60.0
"""An open chunk re-publishes all its bundles at least this often (see :meth:`Stage1.publish_revisions`)."""


class Outputs(Protocol):
    """Where stage 1's results go; the data plane produces them and commits only after delivery."""

    def partials(self, messages: list[tuple[bytes, bytes]]) -> None: ...
    def dead_letter(self, letter: DeadLetter) -> None: ...
    def route(
        self, partition: int, key: bytes, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None: ...


def _raw(message: Message) -> RawMessage:
    return RawMessage(message.value(), message.topic() or "", message.partition() or 0, message.offset() or 0,
                      message.key())  # fmt: skip


class Stage1:
    """Stage 1 of one worker: chunks per input partition, join state per partition number."""

    def __init__(
        self,
        settings: Settings,
        specs: dict[str, ModelSpec],
        references: ReferenceLookup,
        outputs: Outputs,
        *,
        partitions: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.specs = specs
        self.references = references
        self.outputs = outputs
        self.partitions = partitions
        self.clock = clock
        self.limits = EventLimits.from_settings(settings)
        topics = settings.topics
        self._kinds = {topics.predictions: PREDICTION, topics.ground_truth: LABEL}
        self.window_ms = settings.window_seconds * 1000
        self.allowed_lateness_ms = settings.allowed_lateness_seconds * 1000
        self.chunk_size = settings.chunk_size
        self.max_partial_bytes = settings.max_partial_bytes
        self.chunks: dict[tuple[str, int], Chunk] = {}
        self.joins: dict[int, JoinState] = {}
        self.stats = Stage1Stats()
        self._ttl_ms = {m: int(parse_duration(s.label_ttl).total_seconds() * 1000) for m, s in specs.items()}
        self._max_age = {m: self.limits.max_age_ms(s) for m, s in specs.items()}
        self._required = {
            m: (s.required_features(), frozenset(s.required_features())) for m, s in specs.items()
        }
        self._last_read: dict[tuple[str, int], int] = {}
        self.folder = Folder(
            specs,
            references,
            self.stats,
            self._dead,
            window_ms=self.window_ms,
            allowed_lateness_ms=self.allowed_lateness_ms,
            join_max_pending=settings.join_max_pending,
        )

    # -- partitions --------------------------------------------------------------------------------
    def join_state(self, partition: int) -> JoinState:
        state = self.joins.get(partition)
        if state is None:
            state = self.joins[partition] = JoinState(self.settings.join_max_pending)
        return state

    def drop_partitions(self, revoked: Sequence[tuple[str, int]]) -> None:
        """Forget chunks and join state of revoked partitions: the next owner replays from the commit."""
        for tp in revoked:
            self.chunks.pop(tp, None)
            self._last_read.pop(tp, None)
            self.joins.pop(tp[1], None)

    def commit_offsets(self) -> dict[tuple[str, int], int]:
        """Per partition read, the first offset not yet in a published chunk: what may be committed."""
        out = {}
        for tp, last in self._last_read.items():
            chunk = self.chunks.get(tp)
            out[tp] = chunk.first_offset if chunk is not None and chunk.first_offset >= 0 else last + 1
        return out

    # -- a batch -----------------------------------------------------------------------------------
    def process(self, topic: str, partition: int, messages: Sequence[Message]) -> None:
        """One partition's messages of a batch, in offset order."""
        if not messages:
            return
        start = 0
        while start < len(messages):
            index = chunk_index(messages[start].offset() or 0, self.chunk_size)
            end = start + 1
            while end < len(messages) and chunk_index(messages[end].offset() or 0, self.chunk_size) == index:
                end += 1
            chunk = self._chunk(topic, partition, index, messages[start].offset() or 0)
            self._run(chunk, messages[start:end])
            start = end
        self._last_read[(topic, partition)] = messages[-1].offset() or 0
        state = self.join_state(partition)
        self.folder.count_evicted(self.chunks[(topic, partition)], state.evict())

    def _chunk(self, topic: str, partition: int, index: int, first_offset: int) -> Chunk:
        current = self.chunks.get((topic, partition))
        if current is not None and current.index == index:
            return current
        if current is not None:
            self._close(current)
        chunk = Chunk(topic, partition, index, watermarks=dict(current.watermarks) if current else {})
        chunk.first_offset = first_offset
        self.chunks[(topic, partition)] = chunk
        return chunk

    def _close(self, chunk: Chunk) -> None:
        self.outputs.partials(chunk.partial_messages(final=True, max_bytes=self.max_partial_bytes))
        self.stats.partials_published += len(chunk.bundles)
        self.stats.chunks_closed += 1

    def publish_revisions(self, idle_seconds: float, refresh_seconds: float = REFRESH_SECONDS) -> int:
        """Publish non-final revisions of open chunks: the changed bundles of chunks not published for
        ``idle_seconds``, and every bundle of chunks not published for ``refresh_seconds``.

        The refresh lets stage 2 release the older revision it holds (``streams.stage2``), so its
        committed offset keeps moving while a quiet partition's chunk stays open.
        """
        now = time.monotonic()
        published = 0
        for chunk in self.chunks.values():
            if not chunk.bundles:
                continue
            if chunk.dirty and now - chunk.published_at >= idle_seconds:
                self.outputs.partials(chunk.changed_messages(max_bytes=self.max_partial_bytes))
            elif now - chunk.published_at >= refresh_seconds:
                self.outputs.partials(chunk.partial_messages(final=False, max_bytes=self.max_partial_bytes))
            else:
                continue
            published += 1
        return published

    def expire_entries(self) -> int:
        now_ms = int(self.clock() * 1000)
        default = max(self._ttl_ms.values(), default=0)
        expired = sum(
            state.expire(now_ms, lambda model: self._ttl_ms.get(model or "", default))
            for state in self.joins.values()
        )
        self.stats.expired_entries += expired
        return expired

    def take_changelog(self) -> dict[int, list[bytes]]:
        """Per partition, the join state's changes since the last call: changelog messages no larger
        than ``MODELMON_MAX_PARTIAL_BYTES`` (usually one per batch)."""
        out = {}
        for partition, state in self.joins.items():
            payloads = state.take_changes(self.settings.max_partial_bytes)
            if payloads:
                out[partition] = payloads
        return out

    # -- one chunk's run -----------------------------------------------------------------------------
    def _dead(self, message: Message, error: InvalidEvent) -> None:
        letter = dead_letter(_raw(message), error)
        self.outputs.dead_letter(letter)
        self.stats.dead_lettered += 1
        self.stats.dead_by_type[letter.error_type] += 1

    def _run(self, chunk: Chunk, messages: Sequence[Message]) -> None:
        topic, partition = chunk.topic, chunk.partition
        routed = topic not in self._kinds
        now_ms = int(self.clock() * 1000)
        kept: list[Kept] = []  # message, event, origin, consumed
        chunk.touch(messages[0].offset() or 0)
        chunk.touch(messages[-1].offset() or 0)
        for message in messages:
            offset = message.offset() or 0
            consumed = f"{topic}|{partition}|{offset}"
            if routed:
                found = read_headers(message.headers())
                if found is None:
                    self._dead(message, InvalidEvent("invalid_routed_message", "no modelmon routing headers"))
                    continue
                kind, origin = found
            else:
                kind, origin = self._kinds[topic], consumed
            try:
                value = message.value()
                event = (
                    decode_label(value, self.limits)
                    if kind == LABEL
                    else decode_prediction(value, self.limits)
                )
            except InvalidEvent as error:
                self._dead(message, error)
                continue
            except Exception as error:  # a value no check foresaw: this event only
                self._dead(message, processing_error(error))
                continue
            kept.append((message, event, origin, consumed))
        kept = self._checked(kept, now_ms)
        if not routed and kept:
            kept = self._route(kept, topic, partition)
        # After routing: an event without an id joins nothing and stays where it was read.
        fill_prediction_ids([event for _, event, _, _ in kept if isinstance(event, Prediction)])
        if kept:
            self.folder.join_and_fold(chunk, self.join_state(partition), kept, now_ms)

    def _checked(self, kept: list[Kept], now_ms: int) -> list[Kept]:
        """Drop (dead-letter) unknown models, spec violations and event times far from the clock."""
        events = [event for _, event, _, _ in kept]
        ts = times_ms(events, now_ms)
        out = []
        for i, (message, event, origin, consumed) in enumerate(kept):
            spec = self.specs.get(event.model_id)
            try:
                if spec is None:
                    known = ", ".join(sorted(self.specs)) or "none"
                    raise InvalidEvent(
                        "unknown_model", f"model_id {event.model_id!r} has no model spec (known: {known})"
                    )
                t = int(ts[i])
                if not now_ms - self._max_age[event.model_id] <= t <= now_ms + self.limits.max_future_skew_ms:
                    check_event_time(t, now_ms, self.limits, spec)  # raises with the reason
                if type(event) is Prediction:
                    _check_prediction(event, spec, self._required[event.model_id])
                event.ts = t
            except InvalidEvent as error:
                self._dead(message, error)
                continue
            out.append((message, event, origin, consumed))
        return out

    def _route(self, kept: list[Kept], topic: str, partition: int) -> list[Kept]:
        ids = [event.prediction_id if type(event.prediction_id) is str else "" for _, event, _, _ in kept]
        targets = misplaced(ids, partition, self.partitions)
        if targets.max() < 0:
            return kept
        local = []
        for (message, event, origin, consumed), target, pid in zip(kept, targets.tolist(), ids, strict=True):
            if target < 0 or not pid:
                local.append((message, event, origin, consumed))
                continue
            kind = LABEL if isinstance(event, Label) else PREDICTION
            headers = routed_headers(kind, topic, partition, message.offset() or 0)
            self.outputs.route(target, str(event.prediction_id).encode(), message.value(), headers)
            self.stats.routed += 1
        return local


def _check_prediction(event: Prediction, spec: ModelSpec, required: tuple[list[str], frozenset[str]]) -> None:
    """What makes a prediction unusable for its model (softer problems are fidelity metrics)."""
    features = event.features
    names, name_set = required
    # In C for the usual case (all present and not null); the names only when some are missing.
    if names and (not features.keys() >= name_set or None in map(features.__getitem__, names)):
        missing = [name for name in names if features.get(name) is None]
        raise InvalidEvent("missing_required_feature", f"required feature(s) missing or null: {missing}")
    if spec.task is Task.REGRESSION and isinstance(event.prediction, str):
        raise InvalidEvent("prediction_type", "a regression model's prediction must be a number")
