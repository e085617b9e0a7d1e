"""Idempotent window counts (WindowCounter over a plain dict): replays, lateness, retention, emission."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.counting import WATERMARK, CountedEvent, TooLate, WindowCounter, window_start_ms

WINDOW = 10
LATENESS = 5
RETENTION = 40


def counter(store: dict[str, Any] | None = None, **overrides: Any) -> WindowCounter:
    options = {"window_ms": WINDOW, "allowed_lateness_ms": LATENESS, "retention_ms": RETENTION, **overrides}
    return WindowCounter({} if store is None else store, **options)


def stream(*timestamps: int, partition: int = 0, model: str = "m", version: str = "1") -> list[CountedEvent]:
    """Events of one partition at offsets 0, 1, 2, ... with the given event times (ms)."""
    return [CountedEvent(partition, offset, model, version, ts) for offset, ts in enumerate(timestamps)]


def counts(c: WindowCounter) -> dict[str, tuple[int, int]]:
    """(events, late) of every window key in the store."""
    return {k: (v["events"], v["late"]) for k, v in c.store.items() if not k.endswith(WATERMARK)}


def key(start: int, partition: int = 0, model: str = "m", version: str = "1") -> str:
    return WindowCounter.key(partition, model, version, start)


# -- counting -------------------------------------------------------------------------------------


def test_counts_per_window_model_version_and_partition() -> None:
    c = counter()
    events = [
        CountedEvent(0, 0, "m", "1", 0),
        CountedEvent(0, 1, "m", "1", 9),
        CountedEvent(0, 2, "m", "1", 10),
        CountedEvent(0, 3, "m", "2", 3),
        CountedEvent(0, 4, "other", "1", 3),
        CountedEvent(1, 0, "m", "1", 3),
    ]
    changed, too_late = c.apply(events)
    assert too_late == []
    assert counts(c) == {
        key(0): (2, 0),
        key(10): (1, 0),
        key(0, version="2"): (1, 0),
        key(0, model="other"): (1, 0),
        key(0, partition=1): (1, 0),
    }
    assert changed == [key(0), key(10), key(0, version="2"), key(0, model="other"), key(0, partition=1)]


def test_window_start_is_floor_of_event_time() -> None:
    assert [window_start_ms(ts, 10) for ts in (0, 9, 10, 19, -1, -10, -11)] == [0, 0, 10, 10, -10, -10, -20]


def test_replaying_the_same_events_changes_nothing() -> None:
    c = counter()
    events = stream(1, 2, 11, 3, 25)
    c.apply(events)
    before = dict(c.store)
    changed, too_late = c.apply(events)
    assert (changed, too_late) == ([], [])
    assert c.store == before
    assert counts(c) == {key(0): (3, 0), key(10): (1, 0), key(20): (1, 0)}


def test_replay_from_an_earlier_offset_after_partial_application() -> None:
    events = stream(1, 2, 11, 3, 25, 14, 26, 31)
    once = counter()
    once.apply(events)

    replayed = counter()
    replayed.apply(events[:5])  # crashed after offset 4; the last commit was at offset 2
    changed, _ = replayed.apply(events[2:])
    assert replayed.store == once.store
    assert changed == [key(10), key(20), key(30)]


def test_each_partition_keeps_its_own_offsets() -> None:
    c = counter()
    c.apply(stream(1, 2, partition=0))
    changed, _ = c.apply(stream(1, 2, partition=1))  # the same offsets on another partition are new
    assert changed == [key(0, partition=1)]
    assert counts(c) == {key(0): (2, 0), key(0, partition=1): (2, 0)}


def test_offsets_need_not_start_at_zero_or_be_contiguous() -> None:
    c = counter()
    events = [CountedEvent(0, offset, "m", "1", 1) for offset in (1000, 1003, 1010)]
    c.apply(events)
    c.apply(events[1:])
    assert counts(c) == {key(0): (3, 0)}
    assert c.store[f"0|{WATERMARK}"] == {"watermark_ms": 1, "next_offset": 1011}


def test_model_version_with_the_key_separator() -> None:
    # Versions are free text; one with '|' used to make metric_points and expired_keys crash.
    c = counter()
    changed, _ = c.apply(stream(1, 100, version="v1|beta"))
    [point] = c.metric_points(changed[:1])
    assert (point.model_id, point.model_version, point.value) == ("m", "v1|beta", 1.0)
    assert point.window_start == datetime.fromtimestamp(0, tz=UTC)
    assert c.expired_keys([0]) == [key(0, version="v1|beta")]


# -- lateness and retention -----------------------------------------------------------------------


def test_late_events_are_counted_and_marked_late() -> None:
    c = counter(retention_ms=100)
    # watermark 30: window [0, 10) closes for late data at 15, window [10, 20) at 25.
    c.apply(stream(0, 30, 5, 12))
    assert counts(c) == {key(0): (2, 1), key(10): (1, 1), key(30): (1, 0)}


def test_lateness_boundary_is_exclusive() -> None:
    c = counter(retention_ms=100)
    c.apply(stream(25, 12))  # watermark 25 == end of [10, 20) + 5: still on time
    c.apply([CountedEvent(0, 2, "m", "1", 26), CountedEvent(0, 3, "m", "1", 13)])  # 26 > 25: late
    assert counts(c)[key(10)] == (2, 1)


def test_out_of_order_event_within_lateness_is_not_late() -> None:
    c = counter()
    c.apply(stream(12, 3))  # watermark 12 <= 10 + 5
    assert counts(c)[key(0)] == (1, 0)


def test_events_older_than_retention_are_too_late_exactly_once() -> None:
    c = counter(retention_ms=50)
    events = stream(200, 100, 150, 155)
    _, too_late = c.apply(events)
    # window 100 + 50 < 200: too late; window 150 + 50 == 200: still counted (and late).
    assert too_late == [TooLate(events[1], 200)]
    assert counts(c) == {key(200): (1, 0), key(150): (2, 2)}

    changed, again = c.apply(events)
    assert (changed, again) == ([], [])
    _, later = c.apply([*events, CountedEvent(0, 4, "m", "1", 1)])
    assert later == [TooLate(CountedEvent(0, 4, "m", "1", 1), 200)]


def test_watermark_never_moves_back() -> None:
    c = counter()
    c.apply(stream(50, 20, 45))
    assert c.store[f"0|{WATERMARK}"] == {"watermark_ms": 50, "next_offset": 3}


# -- metric points --------------------------------------------------------------------------------


def test_metric_points_are_cumulative_with_revision_and_source() -> None:
    c = counter(retention_ms=100)
    first, _ = c.apply([CountedEvent(2, 7, "m", "3", 1), CountedEvent(2, 8, "m", "3", 2)])
    [point] = c.metric_points(first)
    assert (point.model_id, point.model_version, point.metric, point.value) == ("m", "3", "events", 2.0)
    assert (point.revision, point.source, point.segment, point.feature) == (9, "count/p2", "", "")
    assert point.window_start == datetime(1970, 1, 1, tzinfo=UTC)
    assert point.window_end == datetime(1970, 1, 1, 0, 0, 0, 10_000, tzinfo=UTC)

    second, _ = c.apply([CountedEvent(2, 9, "m", "3", 40), CountedEvent(2, 10, "m", "3", 3)])
    points = {(p.window_start.timestamp(), p.metric): p for p in c.metric_points(second)}
    assert set(points) == {(0.0, "events"), (0.0, "late_events"), (0.04, "events")}
    assert (points[(0.0, "events")].value, points[(0.0, "events")].revision) == (3.0, 11)
    assert (points[(0.0, "late_events")].value, points[(0.0, "late_events")].revision) == (1.0, 11)
    assert (points[(0.04, "events")].value, points[(0.04, "events")].revision) == (1.0, 10)
    # Same dedup key as the first emission: ClickHouse replaces the row (higher revision).
    assert points[(0.0, "events")].dedup_key() == point.dedup_key()


def test_metric_points_skip_unknown_keys_and_use_the_source_prefix() -> None:
    c = counter(source_prefix="count-v2")
    changed, _ = c.apply(stream(1))
    points = c.metric_points([*changed, key(990), key(0, partition=5)])
    assert [(p.source, p.value) for p in points] == [("count-v2/p0", 1.0)]


def test_no_late_point_without_late_events() -> None:
    c = counter()
    changed, _ = c.apply(stream(1, 2))
    assert [p.metric for p in c.metric_points(changed)] == ["events"]


# -- pruning --------------------------------------------------------------------------------------


def test_expired_keys_are_only_windows_past_retention_of_listed_partitions() -> None:
    c = counter()
    c.apply(stream(0, 10, 20, 100))  # watermark 100: windows starting before 60 are past retention
    c.apply(stream(0, 100, partition=1))
    assert set(c.expired_keys([0])) == {key(0), key(10), key(20)}
    assert set(c.expired_keys([0, 1])) == {key(0), key(10), key(20), key(0, partition=1)}
    assert c.expired_keys([7]) == []


def test_expired_keys_keep_the_retention_boundary() -> None:
    c = counter()
    c.apply(stream(10, 50))  # 10 + 40 == 50: not yet expired
    assert c.expired_keys([0]) == []
    c.apply([CountedEvent(0, 2, "m", "1", 51)])
    assert c.expired_keys([0]) == [key(10)]


def test_pruned_windows_do_not_come_back_on_replay() -> None:
    c = counter()
    events = stream(0, 10, 100)
    c.apply(events)
    for expired in c.expired_keys([0]):
        del c.store[expired]
    changed, too_late = c.apply(events)  # replay after pruning
    assert (changed, too_late) == ([], [])
    assert counts(c) == {key(100): (1, 0)}


# -- constructor ----------------------------------------------------------------------------------


@pytest.mark.parametrize("window_ms", [0, -10])
def test_window_must_be_positive(window_ms: int) -> None:
    with pytest.raises(ValueError, match="window_ms must be positive"):
        counter(window_ms=window_ms)


def test_retention_must_cover_window_and_lateness() -> None:
    with pytest.raises(ValueError, match="retention_ms must be at least window_ms \\+ allowed_lateness_ms"):
        counter(window_ms=10, allowed_lateness_ms=5, retention_ms=14)
    assert counter(window_ms=10, allowed_lateness_ms=5, retention_ms=15).retention_ms == 15


# -- property: batching and replays never change the result --------------------------------------


@st.composite
def streams_with_replays(draw: st.DrawFn) -> tuple[list[CountedEvent], list[tuple[int, int]]]:
    """Events of two partitions interleaved, and a schedule of (start, end) slices to apply.

    The schedule covers the stream in order; after any slice it may go back to an earlier start
    (a replay from the last committed position) before continuing.
    """
    rows = draw(
        st.lists(
            st.tuples(st.integers(0, 1), st.sampled_from(["a", "b"]), st.integers(0, 200), st.integers(1, 3)),
            max_size=40,
        )
    )
    next_offset = {0: draw(st.integers(0, 5)), 1: 0}
    events = []
    for partition, model, ts, gap in rows:
        events.append(CountedEvent(partition, next_offset[partition], model, "1", ts))
        next_offset[partition] += gap
    schedule: list[tuple[int, int]] = []
    done = 0
    while done < len(events):
        end = draw(st.integers(done + 1, len(events)))
        schedule.append((done, end))
        done = end
        if draw(st.booleans()):
            replay_from = draw(st.integers(0, done))
            replay_to = draw(st.integers(replay_from, done))
            schedule.append((replay_from, replay_to))  # crash: re-applied up to any point before
    return events, schedule


def one_pass(events: list[CountedEvent]) -> tuple[dict[str, Any], list[TooLate]]:
    c = counter()
    _, too_late = c.apply(events)
    return dict(c.store), too_late


@settings(max_examples=300, deadline=None)
@given(streams_with_replays())
def test_any_batching_with_replays_gives_the_one_pass_result(
    case: tuple[list[CountedEvent], list[tuple[int, int]]],
) -> None:
    events, schedule = case
    expected_store, expected_late = one_pass(events)

    c = counter()
    reported: list[TooLate] = []
    for start, end in schedule:
        _, too_late = c.apply(events[start:end])
        reported.extend(too_late)

    assert c.store == expected_store
    assert reported == expected_late  # each too-late event exactly once, in stream order


class CrashingStore(dict[str, Any]):
    """A dict that fails once after ``budget`` writes, like a worker killed between two table writes."""

    def __init__(self, budget: int) -> None:
        super().__init__()
        self.budget = budget

    def __setitem__(self, key: str, value: Any) -> None:
        if self.budget == 0:
            self.budget = -1
            raise ConnectionError("killed")
        self.budget -= 1
        super().__setitem__(key, value)


@settings(max_examples=300, deadline=None)
@given(streams_with_replays(), st.integers(0, 80), st.data())
def test_crash_between_any_two_store_writes_then_replay_gives_the_one_pass_counts(
    case: tuple[list[CountedEvent], list[tuple[int, int]]], budget: int, data: st.DataObject
) -> None:
    events, _ = case
    expected_store, _ = one_pass(events)
    store = CrashingStore(budget)
    c = counter(store)
    fed: list[int] = []

    def feed() -> Iterator[CountedEvent]:
        for index, event in enumerate(events):
            fed.append(index)
            yield event

    try:
        c.apply(feed())
    except ConnectionError:
        # The input position committed before the crash is at or before the event being applied.
        replay_from = data.draw(st.integers(0, fed[-1]), label="replay_from")
        c.apply(events[replay_from:])

    assert dict(store) == expected_store
