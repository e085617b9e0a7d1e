"""Kill -9 of the worker mid-stream and a restart: counts in ClickHouse equal what was produced."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelmon.sdk import MonitorClient
from sinks.consumer import ClickHouseSink
from sinks.queries import events_per_model, events_per_window
from sinks.writer import ClickHouseWriter
from streams.run import prepare_topics
from tests.workers import WorkerProcess, make_settings, wait_until, write_spec

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.environ.get("MODELMON_TEST_BROKER") == "tansu",
        reason="Tansu 0.6.0's ListOffsets bug loses table changelog updates on restart (docs/broker.md)",
    ),
]

TOTAL = 6000
STEP_MS = 37  # 6000 events span about four one-minute windows


def produce(bootstrap: str, prefix: str, model_id: str, indices: range) -> None:
    base = datetime(2026, 2, 1, tzinfo=UTC)
    with MonitorClient(bootstrap, prefix) as client:
        for i in indices:
            ts = base + timedelta(milliseconds=STEP_MS * i)
            client.log_prediction(model_id, {"amount": float(i)}, 1, prediction_id=f"e{i}", ts=ts)
        assert client.flush(30) == 0


def test_kill_dash_nine_and_restart_counts_exactly(
    kafka_broker, topic_prefix: str, clickhouse_client, tmp_path: Path
) -> None:
    model_id = write_spec(tmp_path / "models")
    # Small batches and chunks, so that the kill lands between many commits of both stages.
    settings = make_settings(
        kafka_broker.bootstrap,
        topic_prefix,
        tmp_path,
        tmp_path / "models",
        batch_size=100,
        chunk_size=500,
        allowed_lateness_seconds=0,
        window_grace_seconds=2.0,
        idle_flush_seconds=0.5,
    )
    prepare_topics(settings)
    sink = ClickHouseSink(settings, ClickHouseWriter(clickhouse_client))
    sink.start_thread()
    first = WorkerProcess(settings, tmp_path / "worker-1.log")
    second = None
    counted = lambda: events_per_model(clickhouse_client).get(model_id, 0)  # noqa: E731
    try:
        produce(kafka_broker.bootstrap, topic_prefix, model_id, range(TOTAL // 2))
        # The first window is closed and stored: the worker is mid-stream, with open windows.
        assert wait_until(lambda: counted() > 0, timeout=90), first.log()
        first.kill()
        killed_at = counted()
        produce(kafka_broker.bootstrap, topic_prefix, model_id, range(TOTAL // 2, TOTAL))
        second = WorkerProcess(settings, tmp_path / "worker-2.log")
        assert wait_until(lambda: counted() >= TOTAL, timeout=120), (counted(), second.log())
        # Let any replayed outputs land too: the total must stay exact, not grow.
        wait_until(lambda: False, timeout=3)
        assert second.alive, second.log()
    finally:
        sink.stop()
        if second is not None:
            second.stop()
    assert 0 < killed_at < TOTAL
    assert counted() == TOTAL
    windows = dict(events_per_window(clickhouse_client, model_id))
    expected: dict[int, int] = {}
    for i in range(TOTAL):
        minute = STEP_MS * i // 60_000
        expected[minute] = expected.get(minute, 0) + 1
    assert sorted(windows.values()) == sorted(expected.values())
