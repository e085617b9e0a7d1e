"""Stage 2 windows: kept for late partials (beyond memory, within the retention), published whole.

Unit tests with doubles (a plain dict as the closed-window table, a recording stream and topic); the
real table and broker are exercised by tests/test_e2e_topology.py and tests/test_e2e_restart.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from modelmon.events import DeadLetter, MetricPoint
from modelmon.spec import ModelSpec
from streams.bundle import BundleKey, WindowBundle
from streams.partials import Partial
from streams.stage2 import Stage2
from streams.window_key import window_id
from tests.test_auto_reference import T0, WINDOW_MS, make_rows, make_spec


@dataclass
class Message:
    value: bytes
    partition: int = 0
    tp: str = "partials-0"
    topic: str = "monitor-partials"
    offset: int = 0
    key: bytes | None = b"m"


@dataclass
class Event:
    message: Message


@dataclass
class Stream:
    acked: list[Event] = field(default_factory=list)

    async def ack(self, event: Event) -> bool:
        self.acked.append(event)
        return True


@dataclass
class Topic:
    sent: list[MetricPoint] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)

    async def send(self, key: bytes, value: bytes) -> asyncio.Future[None]:
        if b'"error_type"' in value:
            self.letters.append(DeadLetter.model_validate_json(value))
        else:
            self.sent.append(MetricPoint.model_validate_json(value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def make_partial(
    spec: ModelSpec, window: int, n: int, source: str, watermark_ms: int, ref: str = "", version: str = "1"
) -> Partial:
    key = BundleKey("m", version, "", T0 + window * WINDOW_MS, WINDOW_MS)
    bundle = WindowBundle.empty(key, spec, None)
    rows = [
        row.model_copy(update={"model_version": version})
        for row in make_rows(window, n, seed=hash(source) % 1000)
    ]
    bundle.add_predictions(rows, [T0] * n, spec)
    return Partial(source, "predictions|0", 1, True, watermark_ms, ref, bundle)


def partial(
    spec: ModelSpec, window: int, n: int, source: str, watermark_ms: int, ref: str = "", version: str = "1"
) -> Event:
    return Event(Message(make_partial(spec, window, n, source, watermark_ms, ref, version).to_json()))


def events_of(topic: Topic, window: int) -> list[float]:
    start = T0 + window * WINDOW_MS
    return [
        p.value
        for p in topic.sent
        if p.metric == "events" and p.feature == "" and int(p.window_start.timestamp() * 1000) == start
    ]


def make_stage2(store: dict[str, Any], topic: Topic, **options: Any) -> Stage2:
    spec = make_spec()
    return Stage2(
        {"m": spec},
        lambda model, version: None,
        topic,  # type: ignore[arg-type]
        store,
        allowed_lateness_ms=0,
        **{"grace_seconds": 0.0, **options},
    )


def run(stage2: Stage2, stream: Stream, *events: Event) -> None:
    asyncio.run(stage2.process(stream, list(events)))  # type: ignore[arg-type]


def test_a_late_partial_for_a_window_evicted_from_memory_merges_into_the_saved_window() -> None:
    spec, store, topic, stream = make_spec(), {}, Topic(), Stream()
    stage2 = make_stage2(store, topic, keep_closed=1)
    run(stage2, stream, partial(spec, 0, 100, "a", T0 + WINDOW_MS))
    run(stage2, stream, partial(spec, 1, 50, "b", T0 + 2 * WINDOW_MS))
    run(stage2, stream, partial(spec, 2, 50, "c", T0 + 3 * WINDOW_MS))
    assert all(key[0].window_start_ms != T0 for key in stage2.windows)  # window 0 left memory
    assert events_of(topic, 0) == [100.0]
    # Seven late events for window 0 from another source: the window is restored from the table.
    run(stage2, stream, partial(spec, 0, 7, "late", T0 + 3 * WINDOW_MS))
    assert events_of(topic, 0) == [100.0, 107.0]
    assert stage2.stats.expired_partials == 0


def test_a_partial_older_than_the_retention_is_counted_not_applied_and_old_windows_are_swept() -> None:
    spec, store, topic, stream = make_spec(), {}, Topic(), Stream()
    stage2 = make_stage2(store, topic, keep_closed=1, retention_ms=2 * WINDOW_MS, sweep_seconds=0.0)
    run(stage2, stream, partial(spec, 0, 100, "a", T0 + WINDOW_MS))
    assert window_id(BundleKey("m", "1", "", T0, WINDOW_MS), "") in store
    # The watermark moves 5 windows on: window 0 ended more than the retention ago and is swept.
    run(stage2, stream, partial(spec, 5, 10, "b", T0 + 6 * WINDOW_MS))
    assert window_id(BundleKey("m", "1", "", T0, WINDOW_MS), "") not in store
    assert stage2.stats.swept_closed == 1
    late = partial(spec, 0, 7, "late", T0 + 6 * WINDOW_MS)
    run(stage2, stream, late)
    assert events_of(topic, 0) == [100.0]  # not replaced by the 7 late events alone
    assert stage2.stats.expired_partials == 1
    assert late in stream.acked  # counted and released, not held forever
    expired = [(p.metric, p.value, p.source) for p in topic.sent if p.metric.startswith("expired_")]
    assert expired == [("expired_events", 7.0, "expired|late")]  # visible, never silently dropped


def test_a_window_folded_partly_before_its_reference_arrived_is_published_whole() -> None:
    # Stage 1 folded 100 events of window 0 before the model's reference existed and 50 after
    # (another reference id): one emission counts all 150, not whichever part came last.
    spec, store, topic, stream = make_spec(), {}, Topic(), Stream()
    stage2 = make_stage2(store, topic)
    before = partial(spec, 0, 100, "a", T0 + 2 * WINDOW_MS)
    after = partial(spec, 0, 50, "b", T0 + 2 * WINDOW_MS, ref="0123456789ab")
    run(stage2, stream, before, after)
    assert events_of(topic, 0) == [150.0]
    assert {id(e) for e in stream.acked} == {id(before), id(after)}
    # A late part under either reference re-publishes the whole window again.
    run(stage2, stream, partial(spec, 0, 5, "c", T0 + 2 * WINDOW_MS, ref="0123456789ab"))
    assert events_of(topic, 0) == [150.0, 155.0]


def test_a_partial_sent_in_fragments_is_joined_and_its_fragments_released_with_the_window() -> None:
    spec, store, topic, stream = make_spec(), {}, Topic(), Stream()
    stage2 = make_stage2(store, topic)
    whole = make_partial(spec, 0, 40, "a", T0 + 2 * WINDOW_MS)
    pieces = [Event(Message(value, offset=i)) for i, (_, value) in enumerate(whole.messages(max_bytes=1024))]
    assert len(pieces) > 3
    run(stage2, stream, *pieces[:-1])
    assert events_of(topic, 0) == [] and stream.acked == []  # pieces wait, held
    run(stage2, stream, pieces[-1])
    assert events_of(topic, 0) == [40.0]
    assert [id(e) for e in stream.acked] == [id(e) for e in pieces]


def test_a_window_that_cannot_be_closed_is_dead_lettered_and_the_others_go_on(monkeypatch: Any) -> None:
    import streams.stage2 as module

    spec, store, topic, stream = make_spec(), {}, Topic(), Stream()
    dead = Topic()
    stage2 = make_stage2(store, topic, dead_topic=dead)
    real = module.window_metrics

    def window_metrics(bundle: WindowBundle, *args: Any, **kwargs: Any) -> Any:
        if bundle.key.window_start_ms == T0:
            raise OverflowError("date value out of range")
        return real(bundle, *args, **kwargs)

    monkeypatch.setattr(module, "window_metrics", window_metrics)
    poisoned, healthy = (
        partial(spec, 0, 10, "a", T0 + 3 * WINDOW_MS),
        partial(spec, 1, 20, "b", T0 + 3 * WINDOW_MS),
    )
    run(stage2, stream, poisoned, healthy)
    assert events_of(topic, 1) == [20.0]
    assert [(d.error_type, d.reason) for d in dead.letters] == [
        ("processing_error", "processing this event raised OverflowError: date value out of range")
    ]
    assert {id(e) for e in stream.acked} == {id(poisoned), id(healthy)}


def test_a_backfill_under_its_own_version_is_windowed_on_its_own_clock() -> None:
    # Live traffic is 11 months ahead of the backfill: the backfill's windows are neither expired nor
    # closed by the live clock, and they do not hold back or evict the live windows.
    spec, store, topic, stream = make_spec(), {}, Topic(), Stream()
    stage2 = make_stage2(
        store, topic, retention_ms=2 * WINDOW_MS, sweep_seconds=0.0, grace_seconds=3600.0,
        max_age_ms=lambda m: 400 * 86_400_000,
    )  # fmt: skip
    eleven_months = 330 * 24 * 60
    run(stage2, stream, partial(spec, eleven_months, 30, "live", T0 + (eleven_months + 2) * WINDOW_MS))
    run(stage2, stream, partial(spec, 0, 12, "old-0", T0 + WINDOW_MS // 2, version="backfill"))
    assert stage2.stats.expired_partials == 0
    assert events_of(topic, 0) == []  # its own clock has not passed the window yet
    run(stage2, stream, partial(spec, 1, 8, "old-1", T0 + 3 * WINDOW_MS, version="backfill"))
    assert events_of(topic, 0) == [12.0] and events_of(topic, 1) == [8.0]
    assert events_of(topic, eleven_months) == [30.0]


def revision(spec: ModelSpec, n: int, source: str, rev: int, final: bool = False) -> Event:
    partial = make_partial(spec, 0, n, source, T0 + 2 * WINDOW_MS)
    return Event(
        Message(
            Partial(
                partial.source, partial.input, rev, final, partial.watermark_ms, "", partial.bundle
            ).to_json(),
            offset=rev,
        )
    )


def test_a_revision_stays_held_after_its_window_closed_until_its_source_is_final() -> None:
    # The closed-window record keeps final parts only: a revision released after the emission was
    # lost with a rebalance, and the window re-emitted from the other sources alone (100 -> 36).
    spec, store, topic, stream = make_spec(), {}, Topic(), Stream()
    stage2 = make_stage2(store, topic)
    open_part = revision(spec, 100, "s", 10)
    run(stage2, stream, open_part)
    assert events_of(topic, 0) == [100.0]
    assert open_part not in stream.acked  # still needed: its content is in no saved record
    # A rebalance: the window leaves memory; faust delivers the unacknowledged revision again.
    stage2.drop_partitions({0})
    run(stage2, stream, open_part, partial(spec, 0, 36, "other", T0 + 2 * WINDOW_MS))
    assert events_of(topic, 0)[-1] == 136.0
    # A newer revision of the source replaces it, and its final lets both go after the emission.
    newer, final = revision(spec, 100, "s", 11), revision(spec, 100, "s", 12, final=True)
    run(stage2, stream, newer)
    assert open_part in stream.acked and newer not in stream.acked
    run(stage2, stream, final)
    assert newer in stream.acked and final in stream.acked
    assert events_of(topic, 0)[-1] == 136.0


def test_an_invalid_partial_is_dead_lettered_counted_and_the_next_one_is_applied() -> None:
    spec, store, topic, stream, dead = make_spec(), {}, Topic(), Stream(), Topic()
    stage2 = make_stage2(store, topic, dead_topic=dead)
    broken = Event(Message(b'{"source": "x", "bundle": 3}', offset=0))
    good = partial(spec, 0, 10, "a", T0 + 3 * WINDOW_MS)
    good.message.offset = 1
    run(stage2, stream, broken, good)
    assert stage2.stats.invalid_partials == 1
    assert [d.error_type for d in dead.letters] == ["invalid_partial"]
    assert events_of(topic, 0) == [10.0]
    assert {id(e) for e in stream.acked} == {id(broken), id(good)}


def _revision(
    spec: ModelSpec, n: int, source: str, revision: int, final: bool, ref: str, refs: tuple[str, ...] = ()
) -> Event:
    """A partial of window 0 from ``source`` at ``revision``, folded on ``ref`` (one of ``refs``)."""
    item = make_partial(spec, 0, n, source, T0 + 3 * WINDOW_MS, ref)
    item = Partial(item.source, item.input, revision, final, item.watermark_ms, ref, item.bundle, refs)
    return Event(Message(item.to_json()))


def _events_in_window_0(stage2: Stage2) -> int:
    merged = [s.merged() for (key, _), s in stage2.windows.items() if key.window_start_ms == T0]
    return sum(b.events for b in merged if b is not None)


def test_a_replay_folded_on_another_reference_replaces_the_source_instead_of_adding_to_it() -> None:
    # Before a kill, chunk "a" had published 30 events folded without a reference; after the restart
    # the reference exists, and the replayed chunk folds the same 30 events on it (chaos kill9_random:
    # 20,394 events counted of 20,000).
    spec, store, topic, stream = make_spec(), {}, Topic(), Stream()
    stage2 = make_stage2(store, topic, grace_seconds=3600.0)
    before = _revision(spec, 30, "a", 90, False, "")
    other = _revision(spec, 10, "b", 50, True, "")
    run(stage2, stream, before, other)
    after = _revision(spec, 30, "a", 100, True, "ref-1")
    run(stage2, stream, after)
    assert _events_in_window_0(stage2) == 40  # a's 30 once, b's 10
    assert id(before) in {id(e) for e in stream.acked}  # the superseded revision is released
    # The older revision read again (a rebalance) is ignored: a newer one of "a" is held elsewhere.
    run(stage2, stream, _revision(spec, 30, "a", 90, False, ""))
    assert _events_in_window_0(stage2) == 40


def test_one_revision_folded_on_two_references_counts_both_parts() -> None:
    # A reference that arrived mid-chunk: one revision carries a part per reference; both count.
    spec, store, topic, stream = make_spec(), {}, Topic(), Stream()
    stage2 = make_stage2(store, topic, grace_seconds=3600.0)
    both = ("", "ref-1")
    first = _revision(spec, 12, "a", 90, False, "", both), _revision(spec, 8, "a", 90, False, "ref-1", both)
    run(stage2, stream, *first)
    final = _revision(spec, 12, "a", 120, True, "", both), _revision(spec, 20, "a", 120, True, "ref-1", both)
    run(stage2, stream, *final)
    assert _events_in_window_0(stage2) == 32


def test_a_replay_on_one_reference_of_a_source_saved_on_two_is_ignored() -> None:
    # chaos kill9_random (second run): chunk "a" final on two references (172 + 84 events), then the
    # same offsets replayed after a kill, all 256 folded on the newer reference.
    spec, store, topic, stream = make_spec(), {}, Topic(), Stream()
    stage2 = make_stage2(store, topic, grace_seconds=3600.0)
    both = ("", "ref-1")
    first = _revision(spec, 172, "a", 70, False, "", both), _revision(spec, 84, "a", 70, False, "ref-1", both)
    run(stage2, stream, *first)
    final = _revision(spec, 172, "a", 75, True, "", both), _revision(spec, 84, "a", 75, True, "ref-1", both)
    run(stage2, stream, *final, _revision(spec, 65, "b", 70, True, ""))
    assert _events_in_window_0(stage2) == 321
    run(stage2, stream, _revision(spec, 256, "a", 75, True, "ref-1", ("ref-1",)))
    assert _events_in_window_0(stage2) == 321


def test_a_chunk_publishes_a_changed_window_under_every_reference_at_one_revision() -> None:
    from streams.chunks import Chunk

    spec = make_spec()
    chunk = Chunk("predictions", 0, 3)
    old, new = make_partial(spec, 0, 5, "x", T0), make_partial(spec, 0, 7, "x", T0, "ref-1")
    chunk.add(old.key, "", old.bundle)
    chunk.last_offset = 10
    chunk.changed_messages(max_bytes=1_000_000)
    chunk.add(new.key, "ref-1", new.bundle)  # only the part on the new reference changed
    chunk.last_offset = 20
    sent = [Partial.from_json(value) for _, value in chunk.changed_messages(max_bytes=1_000_000)]
    assert sorted((p.reference_id, p.revision, p.bundle.events) for p in sent) == [
        ("", 21, 5),
        ("ref-1", 21, 7),
    ]
    assert {p.references for p in sent} == {("", "ref-1")}  # each part names the publication's parts
