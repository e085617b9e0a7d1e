"""Tests of ClickHouseWriter: round trips and replays on the real chdb engine, retries on a client double."""

from __future__ import annotations

import random
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError, ProgrammingError

from modelmon.events import (
    Alert,
    AlertState,
    DeadLetter,
    GroundTruthEvent,
    MetricPoint,
    RetrainRequested,
    Severity,
)
from sinks.clickhouse import ClickHouseError, Client
from sinks.queries import MetricTotal, dead_letter_count, metric_totals, read_events
from sinks.writer import (
    TABLES,
    ClickHouseWriter,
    Event,
    WriteFailed,
    is_transient,
    to_utc_millis,
)
from tests.clickhouse_fixtures import FlakyClient

# Recent times: the tables have a TTL, so rows far in the past could be dropped by a merge.
NOW = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
MINUTE = timedelta(minutes=1)
CEST = timezone(timedelta(hours=2))


def point(model_id: str, **overrides: Any) -> MetricPoint:
    fields: dict[str, Any] = {
        "model_id": model_id,
        "metric": "events",
        "window_start": NOW,
        "window_end": NOW + MINUTE,
        "value": 10.0,
        "source": "predictions:0",
        "emitted_at": NOW + MINUTE + timedelta(microseconds=123_456),
    }
    return MetricPoint(**(fields | overrides))


def alert(model_id: str) -> Alert:
    return Alert(
        dedup_key=f"{model_id}|psi|age|",
        model_id=model_id,
        rule="psi",
        state=AlertState.FIRING,
        severity=Severity.CRITICAL,
        metric="psi",
        feature="age",
        value=0.31,
        threshold=0.2,
        window_start=NOW.astimezone(CEST),
        window_end=NOW + MINUTE,
        message="PSI 0.31 > 0.2 — drift in «age»",
        ts=NOW + 2 * MINUTE,
    )


def retrain(model_id: str) -> RetrainRequested:
    return RetrainRequested(
        idempotency_key=f"{model_id}:psi:{NOW.isoformat()}",
        model_id=model_id,
        model_version="3",
        reason="sustained drift",
        evidence=[{"metric": "psi", "value": 0.31, "window_start": NOW.isoformat()}, {"n": [1, 2]}],
        alert_ids=["a-1", "a-2"],
        requested_at=NOW + 3 * MINUTE,
    )


def dead_letter(
    offset: int | None = 42, payload: str = "{not json", topic: str = "predictions"
) -> DeadLetter:
    return DeadLetter(
        topic=topic,
        partition=None if offset is None else 3,
        offset=offset,
        key=None if offset is None else "k-1",
        payload=payload,
        reason="Expecting property name enclosed in double quotes",
        error_type="invalid_json",
        ts=NOW,
    )


def stored_form(event: Any) -> Any:
    """The event as it reads back: every timestamp in UTC, at millisecond resolution."""
    return event.model_copy(
        update={
            name: to_utc_millis(value)
            for name, value in event.__dict__.items()
            if isinstance(value, datetime)
        }
    )


# --- round trips on the real engine -------------------------------------------------------------


@pytest.mark.parametrize("make", [point, alert, retrain], ids=["MetricPoint", "Alert", "RetrainRequested"])
def test_write_then_read_back_equal(
    clickhouse_client: Client, model_id: str, make: Callable[[str], Any]
) -> None:
    event = make(model_id)
    assert ClickHouseWriter(clickhouse_client).write([event]) == 1
    assert read_events(clickhouse_client, type(event), model_id=model_id) == [stored_form(event)]


def test_metric_point_details_and_timestamps_survive(clickhouse_client: Client, model_id: str) -> None:
    details = {"threshold": 0.2, "counts": {"a": 3, "b": [1, 2.5]}, "note": "ünïcode ✓", "missing": None}
    written = point(
        model_id,
        metric="psi",
        feature="age",
        segment="country=DE",
        model_version="7",
        window_start=NOW.astimezone(CEST),
        revision=4,
        details=details,
    )
    ClickHouseWriter(clickhouse_client).write([written])
    [back] = read_events(clickhouse_client, MetricPoint, model_id=model_id)
    assert back == stored_form(written)
    assert back.details == details
    assert back.window_start == NOW and back.window_start.utcoffset() == timedelta(0)
    assert back.emitted_at == NOW + MINUTE + timedelta(microseconds=123_000)  # truncated to ms
    text = clickhouse_client.command(
        "SELECT toString(window_start) FROM metric_points WHERE model_id = {m:String}", {"m": model_id}
    )
    assert text == NOW.strftime("%Y-%m-%d %H:%M:%S.000")


def test_non_finite_details_are_stored_as_null(clickhouse_client: Client, model_id: str) -> None:
    ClickHouseWriter(clickhouse_client).write(
        [point(model_id, details={"ratio": float("nan"), "x": [float("inf")]})]
    )
    [back] = read_events(clickhouse_client, MetricPoint, model_id=model_id)
    assert back.details == {"ratio": None, "x": [None]}


def test_dead_letter_round_trip(clickhouse: Client) -> None:
    letters = [dead_letter(), dead_letter(offset=None)]
    ClickHouseWriter(clickhouse).write(letters)
    back = read_events(clickhouse, DeadLetter)
    assert sorted(back, key=lambda d: d.offset or -1) == sorted(
        map(stored_form, letters), key=lambda d: d.offset or -1
    )
    assert dead_letter_count(clickhouse) == 2


def test_mixed_batch_is_one_insert_per_table(model_id: str) -> None:
    double = FlakyClient()
    batch: list[Event] = [
        point(model_id),
        alert(model_id),
        point(model_id, source="p:1"),
        dead_letter(),
        retrain(model_id),
    ]
    assert ClickHouseWriter(double).write(batch) == 5
    assert sorted(double.calls) == ["alerts", "dead_letters", "metric_points", "retrain_requests"]
    assert len(double.inserted["metric_points"]) == 2
    assert double.inserted["dead_letters"][0]["partition"] == 3
    assert double.inserted["metric_points"][0]["window_start"].tzinfo == UTC


def test_round_trip_in_a_non_utc_process(
    python_subprocess: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    result = python_subprocess(
        """
        import time
        from datetime import datetime, timedelta, timezone
        from modelmon.events import MetricPoint
        from sinks.clickhouse import connect
        from sinks.migrate import migrate
        from sinks.queries import read_events
        from sinks.writer import ClickHouseWriter
        assert time.localtime().tm_gmtoff != 0
        client = connect("chdb://memory")
        migrate(client)
        start = datetime.now(timezone(timedelta(hours=-7))).replace(microsecond=0)
        written = MetricPoint(model_id="m", metric="events", window_start=start,
                              window_end=start + timedelta(minutes=1), value=1, emitted_at=start)
        ClickHouseWriter(client).write([written])
        [back] = read_events(client, MetricPoint)
        assert back == written, (back, written)
        utc_text = start.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        assert client.command("SELECT toString(toDateTime(window_start)) FROM metric_points") == utc_text
        print("ok")
        """,
        env={"TZ": "Asia/Kolkata"},
    )
    assert result.stdout.strip().endswith("ok")


# --- idempotence: replays and revisions ----------------------------------------------------------


def test_replayed_batch_does_not_double_count(clickhouse: Client, model_id: str) -> None:
    batch: list[Event] = [
        point(model_id, source="predictions:0", value=10),
        point(model_id, source="predictions:1", value=5),
        point(model_id, window_start=NOW + MINUTE, window_end=NOW + 2 * MINUTE, value=7),
        alert(model_id),
        retrain(model_id),
        dead_letter(),
        dead_letter(offset=None),
    ]
    writer = ClickHouseWriter(clickhouse)
    writer.write(batch)
    first = (metric_totals(clickhouse, "events", model_id), dead_letter_count(clickhouse))
    writer.write(batch)
    writer.write(batch[:3])
    assert (metric_totals(clickhouse, "events", model_id), dead_letter_count(clickhouse)) == first
    assert first[0] == [
        MetricTotal(model_id, NOW, NOW + MINUTE, 15.0),
        MetricTotal(model_id, NOW + MINUTE, NOW + 2 * MINUTE, 7.0),
    ]
    assert len(read_events(clickhouse, Alert, model_id=model_id)) == 1
    assert len(read_events(clickhouse, RetrainRequested, model_id=model_id)) == 1
    raw = clickhouse.command("SELECT count() FROM metric_points WHERE model_id = {m:String}", {"m": model_id})
    assert isinstance(raw, int) and raw > 3  # the copies are there; FINAL hides them


def test_view_gives_the_same_totals(clickhouse_client: Client, model_id: str) -> None:
    writer = ClickHouseWriter(clickhouse_client)
    for _ in range(2):
        writer.write([point(model_id, source=f"p:{i}", value=i) for i in range(4)])
    rows = clickhouse_client.query(
        "SELECT value, sources FROM metric_totals WHERE model_id = {m:String} AND metric = 'events'",
        parameters={"m": model_id},
    ).result_rows
    assert rows == [(6.0, 4)]


@pytest.mark.parametrize("order", ["low_then_high", "high_then_low"])
def test_higher_revision_wins(clickhouse_client: Client, model_id: str, order: str) -> None:
    low, high = point(model_id, value=3, revision=1), point(model_id, value=9, revision=2)
    writer = ClickHouseWriter(clickhouse_client)
    for event in [low, high] if order == "low_then_high" else [high, low]:
        writer.write([event])
    assert [p.value for p in read_events(clickhouse_client, MetricPoint, model_id=model_id)] == [9]
    assert metric_totals(clickhouse_client, "events", model_id)[0].value == 9


def test_same_revision_replay_keeps_the_last_write(clickhouse_client: Client, model_id: str) -> None:
    writer = ClickHouseWriter(clickhouse_client)
    writer.write([point(model_id, value=1)])
    writer.write([point(model_id, value=2)])
    assert [p.value for p in read_events(clickhouse_client, MetricPoint, model_id=model_id)] == [2]


def test_dead_letters_dedup_by_coordinates_or_payload(clickhouse: Client) -> None:
    writer = ClickHouseWriter(clickhouse)
    writer.write([dead_letter(offset=1), dead_letter(offset=1), dead_letter(offset=2)])
    writer.write([dead_letter(None, "a"), dead_letter(None, "a"), dead_letter(None, "b")])
    writer.write([dead_letter(offset=1, topic="ground-truth")])
    assert dead_letter_count(clickhouse) == 5
    assert dead_letter_count(clickhouse, topic="predictions") == 4
    assert dead_letter_count(clickhouse, topic="predictions", error_type="nope") == 0


def test_ttl_drops_old_rows_and_keeps_far_future_ones(clickhouse: Client) -> None:
    old, far = NOW - timedelta(days=500), datetime(2150, 1, 1, tzinfo=UTC)
    letters = [dead_letter(offset=1), dead_letter(offset=2), dead_letter(offset=3)]
    letters[0].ts, letters[1].ts = old, far
    ClickHouseWriter(clickhouse).write(letters)
    clickhouse.command("OPTIMIZE TABLE dead_letters FINAL")  # applies the TTL now
    assert sorted(d.ts for d in read_events(clickhouse, DeadLetter)) == [NOW, far]


# --- validation and retries (in-memory client double) --------------------------------------------


def test_empty_batch_inserts_nothing() -> None:
    double = FlakyClient()
    assert ClickHouseWriter(double).write([]) == 0
    assert double.calls == []


def test_unstorable_event_is_refused_before_any_insert(model_id: str) -> None:
    double = FlakyClient()
    truth = GroundTruthEvent(prediction_id="p", model_id=model_id, label=1)
    with pytest.raises(TypeError, match="cannot store a GroundTruthEvent; storable events: MetricPoint"):
        ClickHouseWriter(double).write([point(model_id), truth])  # type: ignore[list-item]
    assert double.calls == []


def test_transient_failures_are_retried_with_backoff(model_id: str) -> None:
    double, sleeps = FlakyClient(failures=3), list[float]()
    writer = ClickHouseWriter(double, max_attempts=4, base_delay=0.1, max_delay=0.3, sleep=sleeps.append)
    assert writer.write([point(model_id), alert(model_id)]) == 2
    assert double.calls == ["metric_points"] * 4 + ["alerts"]
    assert len(sleeps) == 3
    for delay, cap in zip(sleeps, [0.1, 0.2, 0.3], strict=True):
        assert cap / 2 <= delay <= cap


def test_write_failed_after_the_last_attempt(model_id: str) -> None:
    double, sleeps = FlakyClient(failures=10), list[float]()
    writer = ClickHouseWriter(double, max_attempts=3, sleep=sleeps.append)
    with pytest.raises(WriteFailed, match="metric_points failed after 3 attempt") as info:
        writer.write([point(model_id)])
    assert (info.value.table, info.value.attempts, info.value.retryable) == ("metric_points", 3, True)
    assert isinstance(info.value.__cause__, OperationalError)
    assert len(double.calls) == 3 and len(sleeps) == 2


def test_permanent_error_fails_at_once_and_reports_rows_written(model_id: str) -> None:
    bad_table = ProgrammingError("Unrecognized column 'x' in table alerts")
    double, sleeps = FlakyClient(failures=1, error=bad_table, fail_tables=["alerts"]), list[float]()
    with pytest.raises(WriteFailed) as info:
        ClickHouseWriter(double, sleep=sleeps.append).write(
            [point(model_id), point(model_id), alert(model_id)]
        )
    assert (info.value.table, info.value.attempts, info.value.retryable) == ("alerts", 1, False)
    assert info.value.written == 2
    assert sleeps == []


def test_lazy_connection_failure_is_a_write_failed() -> None:
    writer = ClickHouseWriter.from_dsn("http://u:pw@127.0.0.1:1/mm", max_attempts=2, sleep=lambda _: None)
    with pytest.raises(WriteFailed) as info:
        writer.write([dead_letter()])
    assert info.value.retryable and info.value.attempts == 2
    assert "pw@" not in str(info.value)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (OperationalError("connection refused"), True),
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (DatabaseError("Code: 252. Too many parts", code=252), True),
        (DatabaseError("Code: 241. Memory limit", code=241), True),
        (DatabaseError("Code: 60. Unknown table", code=60), False),
        (OperationalError("Code: 62. Syntax error", code=62), False),
        (ProgrammingError("The client has been closed"), False),
        (TypeError("bad value"), False),
        (ClickHouseError("cannot connect"), False),
    ],
)
def test_is_transient(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def test_backoff_doubles_up_to_the_cap() -> None:
    writer = ClickHouseWriter(FlakyClient(), base_delay=1, max_delay=5, rng=random.Random(7))
    for attempt, cap in [(1, 1), (2, 2), (3, 4), (4, 5), (9, 5)]:
        assert cap / 2 <= writer.backoff(attempt) <= cap


@pytest.mark.parametrize(
    "options", [{"max_attempts": 0}, {"base_delay": -1}, {"base_delay": 2, "max_delay": 1}]
)
def test_bad_retry_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"must be|need"):
        ClickHouseWriter(FlakyClient(), **options)


def test_every_storable_event_type_has_a_table() -> None:
    assert set(TABLES) == {MetricPoint, Alert, RetrainRequested, DeadLetter}
