"""Automatic references on the real broker and ClickHouse: the sink mirrors the reference topic, and a
worker builds a first_n reference, publishes it, and computes drift for the windows after it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Producer

from detectors.profiles import ReferenceProfile
from modelmon.references import PREDICTION_FEATURE, record_key
from modelmon.sdk import MonitorClient
from sinks.consumer import ClickHouseSink
from sinks.references import load_reference, load_reference_records
from sinks.writer import ClickHouseWriter
from streams.references import publish_reference
from tests.test_auto_reference import _close
from tests.test_e2e_topology import run_topology, window_metric
from tests.workers import make_settings, wait_until, write_spec

pytestmark = pytest.mark.integration

BASE = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
KINDS = {"x1": "numerical", "x2": "numerical", "country": "categorical", PREDICTION_FEATURE: "numerical"}


def stored_features(client: Any, model_id: str, version: str = "1") -> set[str]:
    return {record.feature for record in load_reference_records(client, model_id, version)}


def dead_letters(client: Any, topic: str) -> list[tuple[str, str]]:
    return client.query(
        "SELECT error_type, reason FROM dead_letters FINAL WHERE topic = {t:String}", parameters={"t": topic}
    ).result_rows


def test_the_sink_mirrors_the_reference_topic_into_clickhouse(
    kafka_broker: Any, topic_prefix: str, clickhouse_client: Any, tmp_path: Path, model_id: str
) -> None:
    settings = make_settings(kafka_broker.bootstrap, topic_prefix, tmp_path, tmp_path / "models")
    rng = np.random.default_rng(1)
    profile = ReferenceProfile.from_data(
        {"x": rng.normal(0, 1, 500), "plan": rng.choice(["free", "pro"], 500)},
        {"x": "numerical", "plan": "categorical"},
    )
    topic = settings.topics.reference_profiles
    sink = ClickHouseSink(settings, ClickHouseWriter(clickhouse_client))
    sink.start_thread()
    try:
        publish_reference(settings, model_id, "1", profile, "first_n")
        assert wait_until(lambda: load_reference(clickhouse_client, model_id, "1") == profile, 60), sink.stats
        producer = Producer(settings.kafka_common())
        producer.produce(topic, key=record_key(model_id, "1", "plan").encode(), value=None)  # tombstone
        producer.produce(topic, key=record_key(model_id, "2", "x").encode(), value=b"{not json")
        assert producer.flush(30) == 0
        assert wait_until(lambda: stored_features(clickhouse_client, model_id) == {"x"}, 60), sink.stats
        assert wait_until(lambda: len(dead_letters(clickhouse_client, topic)) == 1, 60), sink.stats
    finally:
        sink.stop()
    [(error_type, reason)] = dead_letters(clickhouse_client, topic)
    assert error_type == "sink_invalid_message" and "ReferenceRecord" in reason
    assert load_reference(clickhouse_client, model_id, "2") is None
    assert sink.stats.invalid == 1


def send_window(client: MonitorClient, model_id: str, window: int, rows: dict[str, np.ndarray]) -> None:
    n = rows["x1"].size
    for i in range(n):
        ts = BASE + timedelta(minutes=window, milliseconds=int(i * 60_000 / n))
        features = {
            "x1": float(rows["x1"][i]),
            "x2": float(rows["x2"][i]),
            "country": str(rows["country"][i]),
        }
        client.log_prediction(
            model_id, features, int(rows["score"][i] > 0.5), score=float(rows["score"][i]), ts=ts
        )


def make_rows(rng: np.random.Generator, n: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    return {
        "x1": np.round(rng.normal(shift, 1, n), 4),
        "x2": np.round(rng.normal(5, 2, n), 4),
        "country": rng.choice(["DE", "FR"], n, p=[0.6, 0.4]),
        "score": np.round(rng.random(n), 4),
    }


def test_a_worker_builds_a_first_n_reference_and_drift_starts_after_it(
    kafka_broker: Any, topic_prefix: str, clickhouse_client: Any, tmp_path: Path
) -> None:
    model_id = write_spec(
        tmp_path / "models",
        features={
            "x1": {"type": "numerical"},
            "x2": {"type": "numerical"},
            "country": {"type": "categorical", "allowed": ["DE", "FR"]},
        },
        drift={"method": "psi"},
        reference={"source": "first_n", "n": 200},
    )
    _, worker, sink = run_topology(kafka_broker, topic_prefix, clickhouse_client, tmp_path)
    rng = np.random.default_rng(17)
    first = make_rows(rng, 200)  # window 0: exactly n events, all in one window's sample (256)
    later = [make_rows(rng, 100), make_rows(rng, 300), make_rows(rng, 300), make_rows(rng, 300, shift=3.0)]
    sink.start_thread()
    try:
        with MonitorClient(kafka_broker.bootstrap, topic_prefix) as client:
            send_window(client, model_id, 0, first)
            send_window(client, model_id, 1, later[0])  # closes window 0 (its watermark passes)
            assert client.flush(30) == 0
        assert wait_until(lambda: stored_features(clickhouse_client, model_id) == set(KINDS), 90), (
            sink.stats,
            worker.log(),
        )
        # Window 0 is built into the reference; windows 2-4 are binned on it (4 is shifted).
        with MonitorClient(kafka_broker.bootstrap, topic_prefix) as client:
            for window, rows in enumerate(later[1:], start=2):
                send_window(client, model_id, window, rows)
            assert client.flush(30) == 0
        starts = [BASE + timedelta(minutes=w) for w in range(5)]
        drifted = lambda: window_metric(clickhouse_client, model_id, "drifted", "x1")  # noqa: E731
        assert wait_until(lambda: set(starts[2:]) <= drifted().keys(), 90), (drifted(), worker.log())
        assert worker.alive, worker.log()
    finally:
        sink.stop()
        worker.stop()

    records = load_reference_records(clickhouse_client, model_id, "1")
    assert {record.source for record in records} == {"first_n"}
    built = load_reference(clickhouse_client, model_id, "1")
    assert built is not None
    expected = ReferenceProfile.from_data(
        {
            "x1": first["x1"],
            "x2": first["x2"],
            "country": first["country"],
            PREDICTION_FEATURE: first["score"],
        },
        KINDS,
    )
    assert _close(built, expected)  # window 0's rows, exactly
    assert worker.log_path.read_text(errors="replace").count("built the first_n reference") == 1
    assert starts[0] not in drifted()  # closed before its reference existed: no drift
    psi = window_metric(clickhouse_client, model_id, "psi", "x1")
    assert drifted()[starts[4]] == 1.0
    assert psi[starts[4]] > 4 * max(psi[starts[2]], psi[starts[3]])
    events = window_metric(clickhouse_client, model_id, "events")
    # Window 1 may be split in two (before and after the reference): only the others are whole.
    assert [events[starts[w]] for w in (0, 2, 3, 4)] == [200.0, 300.0, 300.0, 300.0]
