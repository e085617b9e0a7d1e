"""The two-stage topology end to end on the real broker and ClickHouse: joins, late labels, drift."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from confluent_kafka import Consumer

from detectors.profiles import ReferenceProfile
from modelmon.events import epoch_ms, parse_timestamp
from modelmon.sdk import MonitorClient
from sinks.consumer import ClickHouseSink
from sinks.writer import ClickHouseWriter
from streams.references import publish_reference
from streams.run import prepare_topics
from streams.state import state_topic
from tests.workers import WorkerProcess, make_settings, wait_until, write_spec

pytestmark = pytest.mark.integration

BASE = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def window_metric(client: Any, model_id: str, metric: str, feature: str = "") -> dict[datetime, float]:
    rows = client.query(
        "SELECT window_start, value FROM metric_points FINAL WHERE model_id = {m:String} "
        "AND metric = {metric:String} AND feature = {f:String} AND segment = '' ORDER BY window_start",
        parameters={"m": model_id, "metric": metric, "f": feature},
    ).result_rows
    return {start.astimezone(UTC): float(value) for start, value in rows}


def change_records(
    bootstrap: str, topic: str, done: Callable[[dict[str, Any]], bool], timeout: float = 30.0
) -> dict[str, Any]:
    """The change detectors' state changelog: the latest record per series, read until ``done``."""
    config = {"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:6]}"}
    consumer = Consumer({**config, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    latest: dict[str, Any] = {}

    def read() -> bool:
        for message in consumer.consume(500, timeout=0.5):
            if message.error() is None and message.key():
                latest[message.key().decode()] = orjson.loads(message.value() or b"null")
        return done(latest)

    try:
        wait_until(read, timeout, interval=0)
    finally:
        consumer.close()
    return latest


def expected_late(kafka_broker: Any, topic_prefix: str, model_id: str) -> dict[datetime, float]:
    """Late predictions per window, from the predictions topic as stored: in each partition, in offset
    order, a prediction is late once an earlier one of that partition is past its window's end
    (allowed lateness 0)."""
    consumer = Consumer(kafka_broker.consumer_config(f"late-{uuid.uuid4().hex[:6]}"))
    consumer.subscribe([f"{topic_prefix}predictions"])
    rows: dict[int, list[tuple[int, int]]] = defaultdict(list)
    try:
        idle = 0
        while idle < 5:
            message = consumer.poll(1.0)
            if message is None:
                idle += 1
                continue
            if message.error():
                continue
            value = orjson.loads(message.value())
            if value["model_id"] == model_id:
                ts_ms = epoch_ms(parse_timestamp(value["ts"]))
                rows[message.partition()].append((message.offset(), ts_ms))
    finally:
        consumer.close()
    late: dict[datetime, float] = defaultdict(float)
    for partition_rows in rows.values():
        watermark = 0
        for _, ts_ms in sorted(partition_rows):
            start = ts_ms - ts_ms % 60_000
            late[datetime.fromtimestamp(start / 1000, UTC)] += float(watermark >= start + 60_000)
            watermark = max(watermark, ts_ms)
    return dict(late)


def run_topology(
    kafka_broker: Any, topic_prefix: str, clickhouse_client: Any, tmp_path: Path, **settings_extra: Any
) -> tuple[Any, WorkerProcess, ClickHouseSink]:
    settings = make_settings(
        kafka_broker.bootstrap,
        topic_prefix,
        tmp_path,
        tmp_path / "models",
        allowed_lateness_seconds=0,
        window_grace_seconds=2.0,
        idle_flush_seconds=0.5,
        **settings_extra,
    )
    prepare_topics(settings)
    return (
        settings,
        WorkerProcess(settings, tmp_path / "worker.log"),
        ClickHouseSink(settings, ClickHouseWriter(clickhouse_client)),
    )


def test_late_and_out_of_order_labels_give_the_exact_accuracy(
    kafka_broker, topic_prefix: str, clickhouse_client, tmp_path: Path
) -> None:
    model_id = write_spec(tmp_path / "models")
    _, worker, sink = run_topology(kafka_broker, topic_prefix, clickhouse_client, tmp_path)
    rng = np.random.default_rng(7)
    n = 900
    ids = [f"p{i}" for i in range(n)]
    window_of = {pid: BASE + timedelta(minutes=i % 3) for i, pid in enumerate(ids)}
    predicted = {pid: int(rng.integers(2)) for pid in ids}
    truth = {pid: int(rng.integers(2)) if rng.random() < 0.3 else predicted[pid] for pid in ids}
    order = rng.permutation(n)
    labelled = [ids[i] for i in order[: int(n * 0.8)]]  # 20% never get a label
    early, on_time, late = labelled[:150], labelled[150:500], labelled[500:]

    def expected(pids: list[str]) -> tuple[dict[datetime, float], dict[datetime, float]]:
        counts: dict[datetime, int] = defaultdict(int)
        correct: dict[datetime, int] = defaultdict(int)
        for pid in pids:
            counts[window_of[pid]] += 1
            correct[window_of[pid]] += int(predicted[pid] == truth[pid])
        return {w: float(c) for w, c in counts.items()}, {w: correct[w] / counts[w] for w in counts}

    sink.start_thread()
    try:
        with MonitorClient(kafka_broker.bootstrap, topic_prefix) as client:
            # Labels before their predictions, then predictions (shuffled), then more labels.
            for pid in early:
                client.log_ground_truth(model_id, pid, truth[pid], ts=window_of[pid] + timedelta(seconds=59))
            for i in order:
                pid = ids[i]
                ts = window_of[pid] + timedelta(milliseconds=int(rng.integers(60_000)))
                features = {"amount": float(i)}
                client.log_prediction(model_id, features, predicted[pid], prediction_id=pid, ts=ts)
            for pid in on_time:
                client.log_ground_truth(model_id, pid, truth[pid])
            assert client.flush(30) == 0
        first_labels, _ = expected(early + on_time)
        assert wait_until(lambda: window_metric(clickhouse_client, model_id, "labels") == first_labels, 90), (
            window_metric(clickhouse_client, model_id, "labels"),
            worker.log(),
        )
        # Hours later in event time: the rest of the labels, after the windows were closed.
        with MonitorClient(kafka_broker.bootstrap, topic_prefix) as client:
            for pid in late:
                client.log_ground_truth(model_id, pid, truth[pid], ts=window_of[pid] + timedelta(hours=3))
            for pid in early[:10]:  # duplicates: counted, never joined twice
                client.log_ground_truth(model_id, pid, 1 - truth[pid])
            assert client.flush(30) == 0
        all_labels, accuracy = expected(labelled)
        assert wait_until(lambda: window_metric(clickhouse_client, model_id, "labels") == all_labels, 90), (
            window_metric(clickhouse_client, model_id, "labels"),
            worker.log(),
        )
        wait_until(lambda: False, timeout=3)  # any further (wrong) re-emission would land now
        assert worker.alive, worker.log()
    finally:
        sink.stop()
        worker.stop()

    assert window_metric(clickhouse_client, model_id, "labels") == all_labels
    measured = window_metric(clickhouse_client, model_id, "accuracy")
    assert measured.keys() == accuracy.keys()
    for window, value in accuracy.items():
        assert measured[window] == pytest.approx(value, abs=1e-12)
    events = window_metric(clickhouse_client, model_id, "events")
    assert events == {w: 300.0 for w in accuracy}
    coverage = window_metric(clickhouse_client, model_id, "label_coverage")
    assert coverage == {w: pytest.approx(all_labels[w] / 300.0) for w in accuracy}
    # Predictions were produced shuffled over three windows: those read after their partition's
    # watermark passed their window's end are counted as late (and still counted in events).
    late = expected_late(kafka_broker, topic_prefix, model_id)
    assert sum(late.values()) > 0
    expected_counts = {w: late.get(w, 0.0) for w in accuracy}
    assert window_metric(clickhouse_client, model_id, "late_events") == expected_counts


def test_drift_is_flagged_from_the_injected_window_on_not_before(
    kafka_broker, topic_prefix: str, clickhouse_client, tmp_path: Path
) -> None:
    model_id = write_spec(
        tmp_path / "models",
        features={
            "x1": {"type": "numerical"},
            "x2": {"type": "numerical"},
        },
        drift={"method": "psi"},
        # Six windows: Page-Hinkley may judge from the third one on (threshold in PSI units).
        change={
            "detectors": ["page_hinkley"],
            "params": {"page_hinkley": {"min_instances": 3, "threshold": 0.5}},
        },
    )
    settings, worker, sink = run_topology(kafka_broker, topic_prefix, clickhouse_client, tmp_path)
    rng = np.random.default_rng(11)
    reference = ReferenceProfile.from_data(
        {"x1": rng.normal(0, 1, 5000), "x2": rng.normal(5, 2, 5000)}, {"x1": "numerical", "x2": "numerical"}
    )
    publish_reference(settings, model_id, "1", reference, "test")
    drift_from = 3  # windows 0-2 as the reference; from window 3 on, x1 moves by 1.5 standard deviations
    windows = 6
    per_window = 400
    sink.start_thread()
    try:
        with MonitorClient(kafka_broker.bootstrap, topic_prefix) as client:
            for w in range(windows):
                shift = 1.5 if w >= drift_from else 0.0
                x1 = rng.normal(shift, 1, per_window)
                x2 = rng.normal(5, 2, per_window)
                for i in range(per_window):
                    ts = BASE + timedelta(minutes=w, milliseconds=int(i * 60_000 / per_window))
                    features = {"x1": float(x1[i]), "x2": float(x2[i])}
                    client.log_prediction(model_id, features, 1, score=0.7, ts=ts)
            assert client.flush(30) == 0
        closed = lambda: len(window_metric(clickhouse_client, model_id, "drifted", "x1")) == windows  # noqa: E731
        assert wait_until(closed, 90), (
            window_metric(clickhouse_client, model_id, "drifted", "x1"),
            worker.log(),
        )
        changed = lambda: bool(window_metric(clickhouse_client, model_id, "change_detected", "x1"))  # noqa: E731
        assert wait_until(changed, 30), worker.log()
        assert worker.alive, worker.log()
    finally:
        sink.stop()
        worker.stop()

    starts = [BASE + timedelta(minutes=w) for w in range(windows)]
    drifted_x1 = window_metric(clickhouse_client, model_id, "drifted", "x1")
    psi_x1 = window_metric(clickhouse_client, model_id, "psi", "x1")
    assert [drifted_x1[s] for s in starts] == [0.0] * drift_from + [1.0] * (windows - drift_from)
    assert all(psi_x1[s] < 0.2 for s in starts[:drift_from])
    assert all(psi_x1[s] >= 0.2 for s in starts[drift_from:])
    assert set(window_metric(clickhouse_client, model_id, "drifted", "x2").values()) == {0.0}
    # The change detectors ran on the per-window PSI of each feature and on drift_share.
    assert min(window_metric(clickhouse_client, model_id, "change_detected", "x1")) >= starts[drift_from]
    assert window_metric(clickhouse_client, model_id, "change_detected", "x2") == {}
    assert all(s >= starts[drift_from] for s in window_metric(clickhouse_client, model_id, "change_detected"))
    # Their state is in the store's changelog: each window fed once (re-emissions are not), the last one last.
    series = f"{model_id}|1||feature_drift|x1|psi"
    last_start = int(starts[-1].timestamp() * 1000)
    changelog = state_topic(settings, "change-detectors")
    records = change_records(
        kafka_broker.bootstrap,
        changelog,
        lambda r: (r.get(series) or {}).get("last_window_start_ms") == last_start,
    )
    assert (records.get(series) or {}).get("last_window_start_ms") == last_start, records
    assert 3 <= records[series]["detectors"]["page_hinkley"]["n_seen"] <= windows
