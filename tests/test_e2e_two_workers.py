"""Two `modelmon worker` processes in one group on 4 partitions give the totals of one worker."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from modelmon.sdk import MonitorClient
from sinks.consumer import ClickHouseSink
from sinks.writer import ClickHouseWriter
from streams.run import prepare_topics
from tests.workers import WorkerProcess, make_settings, wait_until, write_spec

pytestmark = pytest.mark.integration

TOTAL = 4000
STEP_MS = 41


def totals(client: Any, model_id: str) -> dict[str, dict[datetime, float]]:
    rows = client.query(
        "SELECT metric, window_start, value FROM metric_points FINAL WHERE model_id = {m:String} "
        "AND segment = '' AND feature = '' AND metric IN ('events', 'labels', 'accuracy')",
        parameters={"m": model_id},
    ).result_rows
    out: dict[str, dict[datetime, float]] = {}
    for metric, start, value in rows:
        out.setdefault(metric, {})[start.astimezone(UTC)] = float(value)
    return out


def predictions_seen(worker: WorkerProcess) -> int:
    """The last count of predictions a worker's stage 1 logged."""
    found = re.findall(r"stage1 \{'predictions': (\d+)", worker.log_path.read_text(errors="replace"))
    return int(found[-1]) if found else 0


def summary(worker: WorkerProcess) -> str:
    """The lines of a worker's log that tell what the group and the stages did."""
    wanted = ("Joined group", "dropped", "data plane", "Stage2Stats", "Heartbeat", "Error", "Traceback")
    lines = worker.log_path.read_text(errors="replace").splitlines()
    return "\n".join(line[:300] for line in lines if any(w in line for w in wanted))[-6000:]


def run(kafka_broker: Any, clickhouse_client: Any, tmp_path: Path, prefix: str, workers: int) -> dict:
    model_id = write_spec(tmp_path / "models", model_id=f"two-{prefix.strip('.')}")
    settings = make_settings(
        kafka_broker.bootstrap,
        prefix,
        tmp_path,
        tmp_path / "models",
        topic_partitions=4,
        allowed_lateness_seconds=0,
        window_grace_seconds=2.0,
        idle_flush_seconds=0.5,
    )
    prepare_topics(settings)
    procs = []
    for n in range(workers):
        # Each worker owns its data dir: it names the worker's static group membership.
        own = settings.model_copy(update={"worker_data_dir": tmp_path / f"worker-{n}"})
        procs.append(WorkerProcess(own, tmp_path / f"worker-{n}.log"))
    sink = ClickHouseSink(settings, ClickHouseWriter(clickhouse_client))
    sink.start_thread()
    base = datetime(2026, 4, 1, tzinfo=UTC)
    try:
        with MonitorClient(kafka_broker.bootstrap, prefix) as client:
            for i in range(TOTAL):
                ts = base + timedelta(milliseconds=STEP_MS * i)
                client.log_prediction(model_id, {"amount": float(i)}, i % 2, prediction_id=f"q{i}", ts=ts)
                if i % 3:
                    client.log_ground_truth(model_id, f"q{i}", (i // 2) % 2)
            assert client.flush(30) == 0
        windows = len({(STEP_MS * i) // 60_000 for i in range(TOTAL)})

        def done() -> bool:
            t = totals(clickhouse_client, model_id)
            return sum(t.get("events", {}).values()) >= TOTAL and len(t.get("labels", {})) == windows

        assert wait_until(done, 240), (totals(clickhouse_client, model_id), [summary(p) for p in procs])
        # Every worker really took part: each one's stage 1 reports predictions it processed
        # (the stats line is logged every 10 s).
        assert wait_until(lambda: all(predictions_seen(p) > 0 for p in procs), 30), [p.log() for p in procs]
        assert all(p.alive for p in procs), [p.log() for p in procs]
    finally:
        sink.stop()
        for p in procs:
            p.stop()
    return totals(clickhouse_client, model_id)


def test_two_workers_give_the_totals_of_one(kafka_broker, clickhouse_client, tmp_path: Path) -> None:
    one = run(kafka_broker, clickhouse_client, tmp_path / "one", "one1.", workers=1)
    two = run(kafka_broker, clickhouse_client, tmp_path / "two", "two2.", workers=2)
    assert sum(one["events"].values()) == TOTAL
    assert two["events"] == one["events"]
    assert two["labels"] == one["labels"]
    assert two["accuracy"] == one["accuracy"]
    labelled = sum(1 for i in range(TOTAL) if i % 3)
    assert sum(two["labels"].values()) == labelled
