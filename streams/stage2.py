"""Stage 2 agent: merge the partial bundles of a window from all partitions and publish its metrics.

Partials are keyed by model id, so one worker sees every partial of a model. A window closes when
every input partition that reported for the model has an event-time watermark past the window's
end plus the allowed lateness, or when it has had no new partial for ``grace`` seconds. Closing
publishes its ``MetricPoint``s (source ``stage2``); a later partial for a closed window (a late
label, a late event) re-publishes them with a higher revision, so ClickHouse keeps the newest.

Guarantee: at-least-once outputs; partial messages of a window are acknowledged only after the
window's metrics are acknowledged by the broker, so a crash replays them. Partials of one source
replace each other by revision; a final partial whose source was already merged is ignored.
Closed windows' final parts are saved in a faust table (``closed-windows``) before their partials
are acknowledged, so a partial replayed after a restart, or a late one, merges into the saved
window instead of an empty one. The saved windows are kept for ``retention_ms`` of event time
(the longer of the worker's retention and the model's label TTL) behind the watermark of the
model's slowest prediction partition, then swept; in memory only the ``keep_closed`` newest closed
windows stay, older ones are restored from the table when a late partial arrives. A partial for
a window older than the retention that is no longer saved is counted (``expired_partials``),
logged and not applied: it would otherwise replace the window's full metrics by those of the
late fraction.

Ready windows close in start order; at its close a window's series are fed to the change
detectors (``streams.change``, state in the ``change-detectors`` table, saved like
``closed-windows``) and their ``change_detected`` points are published with its metrics.

What is held per window, and saved of a closed one, is :mod:`streams.window_state`. Two versions of
a model with the same window held are compared at each emission (:mod:`streams.version_pairs`).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import faust
from faust.types import EventT

from detectors.profiles import ReferenceProfile
from modelmon.events import model_to_json
from modelmon.spec import ModelSpec
from streams.app import changelog_partition_of, publish_all
from streams.batching import Acknowledger, is_infrastructure_error, release
from streams.bundle import BundleKey, WindowBundle
from streams.change import ChangeTracker
from streams.finalize import window_metrics
from streams.partials import Fragment, FragmentAssembler, InvalidPartial, Partial, parse_message
from streams.reference_id import ReferenceLookup, reference_id
from streams.validation import InvalidEvent, dead_letter, processing_error
from streams.version_pairs import version_pair_points
from streams.window_key import window_id
from streams.window_state import WindowState, WindowStates, expired_points, window_parts

if TYPE_CHECKING:
    from streams.auto_reference import AutoReferenceBuilder

log = logging.getLogger(__name__)


def _start(state: WindowState) -> int:
    return state.key.window_start_ms


@dataclass
class Stage2Stats:
    partials: int = 0
    invalid_partials: int = 0
    windows_closed: int = 0
    emissions: int = 0
    dropped_closed: int = 0
    expired_partials: int = 0
    expired_events: int = 0
    dead_lettered: int = 0
    swept_closed: int = 0


class Stage2:
    """The state and logic of stage 2 in one worker."""

    def __init__(
        self,
        specs: dict[str, ModelSpec],
        references: ReferenceLookup,
        metrics_topic: faust.TopicT,
        closed_store: MutableMapping[str, Any],
        *,
        allowed_lateness_ms: int,
        grace_seconds: float,
        keep_closed: int = 500,
        retention_ms: int | Callable[[str], int] = 86_400_000,
        sweep_seconds: float = 60.0,
        clock_inputs: Callable[[str], bool] = lambda _input: True,
        max_age_ms: Callable[[str], int] = lambda _model: 7 * 86_400_000,
        dead_topic: faust.TopicT | None = None,
        fragment_timeout_seconds: float = 600.0,
        flush_state: Callable[[], Awaitable[None]] | None = None,
        state_ready: Callable[[], Awaitable[None]] | None = None,
        change: ChangeTracker | None = None,
        auto_references: AutoReferenceBuilder | None = None,
    ) -> None:
        self.specs = specs
        self.references = references
        self.metrics_topic = metrics_topic
        self.closed_store = closed_store
        self.allowed_lateness_ms = allowed_lateness_ms
        self.grace_seconds = grace_seconds
        self.keep_closed = keep_closed
        self._retention = retention_ms if callable(retention_ms) else (lambda _model: retention_ms)
        self.sweep_seconds = sweep_seconds
        self.clock_inputs = clock_inputs
        self._max_age = max_age_ms
        self.dead_topic = dead_topic
        self.fragment_timeout_seconds = fragment_timeout_seconds
        self.flush_state = flush_state
        self.state_ready = state_ready
        self._swept_at = time.monotonic()
        self.change = change
        self.auto_references = auto_references
        self.windows = WindowStates()
        self.watermarks: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
        """(model id, version) -> input partition -> event-time watermark."""
        self.fragments = FragmentAssembler()
        self.stats = Stage2Stats()

    async def process(self, acks: Acknowledger, events: Sequence[EventT]) -> None:
        if self.state_ready is not None:
            await self.state_ready()  # closed windows and detectors of this assignment are restored
        for event in events:
            try:
                item = parse_message(event.message.value)
                if isinstance(item, Fragment):
                    done = self.fragments.add(item, event)
                    if done is None:
                        continue  # held until the last piece arrives
                    partial, carriers = done
                else:
                    partial, carriers = item, [event]
            except InvalidPartial as error:
                # An internal topic written by stage 1 only: a bad message is a bug; say so, set it aside.
                self.stats.invalid_partials += 1
                log.error("invalid partial at %s[%s]@%s: %s", event.message.topic, event.message.partition,
                          event.message.offset, error)  # fmt: skip
                await self._dead_letter(acks, [event], InvalidEvent("invalid_partial", str(error)))
                continue
            try:
                await self._take(acks, partial, carriers)
            except Exception as error:
                if is_infrastructure_error(error):
                    raise
                log.exception("partial %s of %s could not be applied", partial.source, partial.key)
                await self._dead_letter(acks, carriers, processing_error(error))
            await release(acks, self.fragments.superseded(partial))
        await self.close_ready(acks)
        if events and time.monotonic() - self._swept_at >= self.sweep_seconds:
            self.sweep({e.message.partition: e for e in events})

    async def _take(self, acks: Acknowledger, partial: Partial, carriers: list[EventT]) -> None:
        key, ref = partial.key, partial.reference_id
        self.stats.partials += 1
        inputs = self.watermarks[(key.model_id, key.model_version)]
        inputs[partial.input] = max(inputs.get(partial.input, 0), partial.watermark_ms)
        state = self.windows.get((key, ref))
        if state is None:
            if self._expired(key) and window_id(key, ref) not in self.closed_store:
                self.stats.expired_partials += 1
                self.stats.expired_events += partial.bundle.events if key.segment == "" else 0
                log.warning(
                    "partial %s for %s is older than the retention: counted as expired_events, not applied",
                    partial.source, key,
                )  # fmt: skip
                await publish_all(self.metrics_topic, expired_points(partial))
                await release(acks, carriers)
                return
            state = self._restore(key, ref, carriers[0].message.partition)
            self.windows[(key, ref)] = state
        # A source's window is published with a part per reference it was folded on (a reference
        # that arrived mid-chunk), all at one revision. A replay after a restart may fold the same
        # events on other references: a part on a reference the partial does not list belongs to
        # another fold. Newer revisions (and newer folds) replace older ones; a fold already final and
        # saved stays, and an older revision is ignored.
        listed = partial.published_with
        for sibling in self._siblings(key, ref):
            held = sibling.revision_of(partial.source)
            if held is None:
                continue
            other_fold = sibling.reference_id not in listed
            if held > partial.revision or (other_fold and partial.source in sibling.base_sources):
                await release(acks, carriers)
                return
            if other_fold:
                await release(acks, sibling.drop_older(partial.source, partial.revision + 1))
            else:
                await release(acks, sibling.drop_older(partial.source, partial.revision))
        # Held since read (streams.batching) until their content is durable (WindowState).
        await release(
            acks, state.add(partial.source, partial.revision, partial.final, partial.bundle, carriers)
        )

    def _siblings(self, key: BundleKey, ref: str) -> list[WindowState]:
        """The states of the same window under other references."""
        return [self.windows[(key, r)] for r in self.windows.refs.get(key, ()) if r != ref]

    async def _dead_letter(self, acks: Acknowledger, events: Sequence[EventT], error: InvalidEvent) -> None:
        """Set events aside on ``dead-letter`` with the reason, then release them: the worker goes on."""
        letters = [dead_letter(event.message, error) for event in events]
        if self.dead_topic is not None:
            await publish_all(self.dead_topic, [(d.dedup_key().encode(), model_to_json(d)) for d in letters])
        self.stats.dead_lettered += len(letters)
        await release(acks, events)

    def _expired(self, key: BundleKey) -> bool:
        """Whether a window ended longer than the retention before the slowest clock of its model version.

        Clock inputs are the prediction partitions (``clock_inputs``): label partitions carry label
        times, which run ahead of the predictions' windows by up to the label TTL (or, with
        synthetic timestamps, by anything). The slowest one, so no partition's windows expire early.
        Each model version has its own clock, so a backfill under its own version is windowed
        in its own time and never expires because live traffic is months ahead. Windows of a
        version that no longer runs expire by the newest clock of the model, less the retention
        and the oldest event age stage 1 accepts (``max_age_ms``).
        """
        end = key.window_start_ms + key.window_ms
        retention = self._retention(key.model_id)
        clocks = self._clocks(key.model_id, key.model_version)
        if clocks and end < min(clocks) - retention:
            return True
        newest = max((max(self._clocks(model, version), default=0) for model, version in self.watermarks
                      if model == key.model_id), default=0)  # fmt: skip
        return newest > 0 and end < newest - retention - self._max_age(key.model_id)

    def _clocks(self, model_id: str, version: str) -> list[int]:
        inputs = self.watermarks.get((model_id, version), {})
        return [mark for name, mark in inputs.items() if self.clock_inputs(name)]

    def sweep(self, anchors: Mapping[int, EventT]) -> int:
        """Delete saved windows older than the retention; each under an event of its own partition."""
        self._swept_at = time.monotonic()
        expired = []
        for name, record in list(self.closed_store.items()):
            if not isinstance(record, dict) or "model_id" not in record:
                continue  # saved before the retention fields existed: kept
            version = str(record.get("model_version", name.split("|")[1]))
            key = BundleKey(
                record["model_id"], version, "", int(record["window_start_ms"]), int(record["window_ms"])
            )
            if self._expired(key) and int(record["partition"]) in anchors:
                expired.append((name, int(record["partition"])))
        for name, partition in expired:
            with changelog_partition_of(anchors[partition]):
                del self.closed_store[name]
        self.stats.swept_closed += len(expired)
        return len(expired)

    def _restore(self, key: BundleKey, ref: str, partition: int) -> WindowState:
        """A new window state, or a closed window's saved state (a partial replayed after a restart)."""
        return WindowState.restored(key, ref, partition, self.closed_store.get(window_id(key, ref)))

    def _save(self, state: WindowState) -> None:
        """Remember a closed window's final parts, so a replay cannot re-emit it from a fraction."""
        carriers = state.carriers()
        anchor = carriers[0] if carriers else None
        if anchor is None:
            return
        with changelog_partition_of(anchor):
            self.closed_store[window_id(state.key, state.reference_id)] = state.record(
                anchor.message.partition
            )

    def _ready(self, state: WindowState, now: float) -> bool:
        if not state.dirty:
            return False
        if now - state.changed_at >= self.grace_seconds:
            return True
        if state.closed:
            return False  # updates of closed windows wait for the grace period: fewer re-emissions
        inputs = self.watermarks.get((state.key.model_id, state.key.model_version), {})
        end = state.key.window_start_ms + state.key.window_ms
        return bool(inputs) and min(inputs.values()) >= end + self.allowed_lateness_ms

    async def close_ready(self, acks: Acknowledger) -> int:
        """Publish the metrics of every window that is ready; release its partials afterwards.

        A window whose metrics cannot be computed (a bug, or data no check foresaw) is set aside:
        its partials go to ``dead-letter`` with the exception, and the other windows go on.
        """
        now = time.monotonic()
        # In start order: change detectors are fed each series once per window, in event-time order.
        ready = sorted((s for s in self.windows.values() if self._ready(s, now)), key=_start)
        published: set[BundleKey] = set()
        by_key: dict[BundleKey, list[WindowState]] = defaultdict(list)
        if ready:
            for (key, _ref), window in self.windows.items():
                by_key[key].append(window)
        for state in ready:
            if state.key in published:
                continue  # published with a part of the same window folded on another reference
            if self.windows.get((state.key, state.reference_id)) is not state:
                continue  # dropped by a rebalance while an earlier window was published: not ours now
            profile = self.references(state.key.model_id, state.key.model_version)
            parts = window_parts(by_key[state.key], state, reference_id(profile))
            try:
                emitted = await self._emit(state, parts, profile, acks)
            except Exception as error:
                if is_infrastructure_error(error):
                    raise
                log.exception("window %s could not be closed: its partials go to dead-letter", state.key)
                for part in parts:
                    await self._dead_letter(acks, part.carriers(), processing_error(error))
                    self.windows.pop((part.key, part.reference_id), None)
                continue
            if emitted:
                published.add(state.key)
        for ident, carriers in self.fragments.expired(self.fragment_timeout_seconds):
            reason = f"fragments of partial {ident} incomplete after {self.fragment_timeout_seconds:g} s"
            await self._dead_letter(acks, carriers, InvalidEvent("invalid_partial", reason))
        if self.auto_references is not None:
            await self.auto_references.build_ready()
        self._evict()
        return len(ready)

    async def _emit(
        self,
        state: WindowState,
        parts: list[WindowState],
        profile: ReferenceProfile | None,
        acks: Acknowledger,
    ) -> bool:
        spec = self.specs.get(state.key.model_id)
        merged = parts[0].merged()
        if merged is None or spec is None:
            return False
        for part in parts[1:]:
            other = part.merged()
            merged = merged if other is None else merged.with_counts_of(other)
        usable = profile if reference_id(profile) == parts[0].reference_id else None
        segments = self._segment_bundles(state.key) if not state.key.segment and spec.segments else None
        points = window_metrics(merged, spec, usable, source="stage2", revision=time.time_ns() // 1000,
                                segments=segments)  # fmt: skip
        held_by = next((p for p in parts if p.carriers()), None)
        change = self.change.feed(state.key, points) if self.change is not None and held_by else None
        points += change.points if change is not None else []
        points += version_pair_points(self.windows, self.watermarks, state.key)  # docs/versions.md
        await publish_all(self.metrics_topic, [(p.model_id.encode(), model_to_json(p)) for p in points])
        state.emissions += 1
        for part in parts:
            self._save(part)
            own = part.merged()
            if self.auto_references is not None and part.carriers() and own is not None:
                self.auto_references.observe(part.key, part.reference_id, own, part.partition)
        if change is not None and self.change is not None and held_by is not None:
            self.change.save(change, held_by.carriers()[0])
        if self.flush_state is not None:
            await (
                self.flush_state()
            )  # saved windows and detectors are logged before the partials are released
        for part in parts:
            await release(acks, part.held)
            part.held.clear()
            part.dirty = False
            part.closed = True
        if state.emissions == 1:
            self.stats.windows_closed += 1
        self.stats.emissions += 1
        return True

    def _segment_bundles(self, key: BundleKey) -> dict[str, WindowBundle]:
        """The merged bundles held for the segments of ``key``'s window (attribution of a drop)."""
        found: dict[str, WindowBundle] = {}
        for (other, _ref), state in self.windows.items():
            if other.segment and replace(other, segment="") == key:
                merged = state.merged()
                if merged is not None:
                    held = found.get(other.segment)
                    found[other.segment] = merged if held is None else held.with_counts_of(merged)
        return found

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget windows fed by revoked partials partitions; their new owner replays them."""
        if self.auto_references is not None:
            self.auto_references.drop_partitions(partitions)
        for key in [k for k, s in self.windows.items() if s.partition in partitions]:
            del self.windows[key]

    def _evict(self) -> None:
        """Keep the newest ``keep_closed`` closed windows in memory; the table keeps them all."""
        closed = [k for k, s in self.windows.items() if s.closed and not s.dirty and not s.carriers()]
        excess = len(closed) - self.keep_closed
        if excess > 0:
            closed.sort(key=lambda k: k[0].window_start_ms)
            for key in closed[:excess]:
                del self.windows[key]
            self.stats.dropped_closed += excess
