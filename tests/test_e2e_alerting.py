"""Alerts end to end: real broker, real worker process, ClickHouse sink, webhooks on a real HTTP server.

One worker (restarted once) serves every assertion: the lifecycle of a metric series, grouping,
signatures in all three formats, retries, a dead endpoint, the retrain request with its evidence.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from modelmon.events import MetricPoint, model_to_json
from modelmon.sdk import MonitorClient
from sinks.consumer import ClickHouseSink
from sinks.webhooks import verify_signature
from sinks.writer import ClickHouseWriter
from streams.run import prepare_topics
from tests.http_receiver import WebhookReceiver, closed_port
from tests.workers import WorkerProcess, make_settings, wait_until, write_spec

pytestmark = pytest.mark.integration

BASE = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
SECRET = "e2e-target-secret"
PIPELINE_SECRET = "e2e-pipeline-secret"
ALERT_FORMATS = {"/json": "json", "/slack": "slack", "/am": "alertmanager"}


def publish(bootstrap: str, topic: str, model_id: str, rows: list[tuple[int, str, str, float, int]]) -> None:
    """Metric points as stage 2 publishes them: (window, metric, feature, value, revision)."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for window, metric, feature, value, revision in rows:
        start = BASE + timedelta(minutes=window)
        point = MetricPoint(
            model_id=model_id,
            metric=metric,
            feature=feature,
            window_start=start,
            window_end=start + timedelta(minutes=1),
            value=value,
            source="stage2",
            revision=revision,
        )
        producer.produce(topic, key=model_id.encode(), value=model_to_json(point))
    assert producer.flush(30) == 0


def window_rows(window: int, a: float, b: float, accuracy: float, revision: int = 1) -> list[Any]:
    return [
        (window, "psi", "a", a, revision),
        (window, "psi", "b", b, revision),
        (window, "accuracy", "", accuracy, revision),
    ]


def alert_rows(client: Any, model_id: str) -> dict[str, list[str]]:
    rows = client.query(
        "SELECT dedup_key, state FROM alerts FINAL WHERE model_id = {m:String} ORDER BY ts, state",
        parameters={"m": model_id},
    ).result_rows
    states: dict[str, list[str]] = {}
    for key, state in rows:
        states.setdefault(key, []).append(state)
    return states


def transitions(client: Any, model_id: str, state: str) -> int:
    return sum(states.count(state) for states in alert_rows(client, model_id).values())


def scalar(client: Any, sql: str, **parameters: Any) -> Any:
    return client.query(sql, parameters=parameters).result_rows[0][0]


def test_alert_lifecycle_webhooks_and_one_retrain_request_across_a_restart(
    kafka_broker, topic_prefix: str, clickhouse_client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELMON_TEST_PIPELINE_SECRET", PIPELINE_SECRET)  # inherited by the worker
    with WebhookReceiver() as receiver:
        receiver.script["/flaky"] = [500, 500, 500, 200]
        model_id = write_spec(
            tmp_path / "models",
            features={"a": {"type": "numerical"}, "b": {"type": "numerical"}},
            alerts=[
                {"name": "psi-high", "metric": "psi", "threshold": 0.2, "resolve_threshold": 0.1, "for": 2},
                {
                    "name": "accuracy-drop",
                    "metric": "accuracy",
                    "feature": "",
                    "segment": "",
                    "op": "<",
                    "threshold": 0.8,
                    "severity": "critical",
                },
            ],
            retrain={
                "enabled": True,
                "on_rules": ["psi-high", "accuracy-drop"],
                "cooldown": "24h",
                "webhook": receiver.url("/pipeline"),
                "webhook_secret_env": "MODELMON_TEST_PIPELINE_SECRET",
            },
        )
        fast = {"backoff_seconds": 0.2, "max_backoff_seconds": 1.0}
        webhooks = [
            {"url": receiver.url(path), "format": fmt, "secret": SECRET, "kinds": ["alerts"]}
            for path, fmt in ALERT_FORMATS.items()
        ] + [
            {"url": receiver.url("/flaky"), "kinds": ["retrain"], "secret": SECRET, **fast},
            {
                "url": f"http://127.0.0.1:{closed_port()}/dead/secret-path",
                "kinds": ["alerts"],
                "max_attempts": 2,
            },
        ]
        settings = make_settings(
            kafka_broker.bootstrap,
            topic_prefix,
            tmp_path,
            tmp_path / "models",
            allowed_lateness_seconds=0,
            window_grace_seconds=1.0,
            idle_flush_seconds=0.5,
            commit_interval=0.5,
            webhooks=webhooks,
        )
        prepare_topics(settings)
        metrics_topic = settings.topics.monitor_metrics
        sink = ClickHouseSink(settings, ClickHouseWriter(clickhouse_client))
        sink.start_thread()
        worker = WorkerProcess(settings, tmp_path / "worker-1.log")
        try:
            # psi of a and b: ok, bad (pending), bad (firing, for = 2). Accuracy fine.
            rows = (
                window_rows(0, 0.05, 0.05, 0.9)
                + window_rows(1, 0.3, 0.35, 0.9)
                + window_rows(2, 0.4, 0.5, 0.9)
            )
            publish(kafka_broker.bootstrap, metrics_topic, model_id, rows)
            # Meanwhile real traffic through stage 1 and 2, while one webhook endpoint is dead.
            with MonitorClient(kafka_broker.bootstrap, topic_prefix) as client:
                for i in range(50):
                    client.log_prediction(
                        model_id, {"a": float(i), "b": 1.0}, 1, ts=BASE + timedelta(hours=2)
                    )
                assert client.flush(30) == 0
            assert wait_until(lambda: transitions(clickhouse_client, model_id, "firing") == 2, 90), (
                alert_rows(clickhouse_client, model_id),
                worker.log(),
            )
            assert wait_until(lambda: len(receiver.at("/pipeline")) == 1 and len(receiver.at("/am")) == 1, 60)
            assert wait_until(lambda: [r.status for r in receiver.at("/flaky")][-1:] == [200], 60)
            events = (
                "SELECT count() FROM metric_points FINAL WHERE model_id = {m:String} AND metric = 'events'"
            )
            assert wait_until(lambda: scalar(clickhouse_client, events, m=model_id) > 0, 60), worker.log()
            wait_until(lambda: False, timeout=2)  # let the acknowledged offsets be committed
            assert worker.alive, worker.log()
        finally:
            worker.stop()
        second = WorkerProcess(settings, tmp_path / "worker-2.log")
        try:
            # Window 2 again with a higher revision (late labels): no new window, no second firing.
            # Window 3: a between the thresholds (stays firing), accuracy drops: a second firing alert
            # inside the retrain cooldown. Window 4: everything back to normal: resolves.
            rows = window_rows(2, 0.45, 0.5, 0.9, revision=2)
            rows += window_rows(3, 0.15, 0.3, 0.7) + window_rows(4, 0.05, 0.02, 0.95)
            publish(kafka_broker.bootstrap, metrics_topic, model_id, rows)
            assert wait_until(lambda: transitions(clickhouse_client, model_id, "resolved") == 3, 90), (
                alert_rows(clickhouse_client, model_id),
                second.log(),
            )
            assert wait_until(lambda: len(receiver.at("/am")) == 4, 60), second.log()
            dead_letters = (
                "SELECT count() FROM dead_letters FINAL WHERE topic = {t:String} "
                "AND error_type = 'webhook_failed'"
            )
            assert wait_until(
                lambda: scalar(clickhouse_client, dead_letters, t=settings.topics.alerts) == 4, 60
            )
            wait_until(lambda: False, timeout=3)  # any repeated notification or request would land now
            assert second.alive, second.log()
        finally:
            sink.stop()
            second.stop()

    # Lifecycle, one row per transition.
    assert alert_rows(clickhouse_client, model_id) == {
        f"{model_id}|psi-high|a|": ["pending", "firing", "resolved"],
        f"{model_id}|psi-high|b|": ["pending", "firing", "resolved"],
        f"{model_id}|accuracy-drop||": ["firing", "resolved"],
    }
    # Notifications: psi firing (a and b in one), accuracy firing, psi resolved (one), accuracy resolved.
    for path, fmt in ALERT_FORMATS.items():
        requests = receiver.at(path)
        assert len(requests) == 4 and len({r.headers["X-Modelmon-Delivery"] for r in requests}) == 4, fmt
        for request in requests:
            headers = request.headers
            assert verify_signature(
                SECRET, request.body, headers["X-Modelmon-Signature"], headers["X-Modelmon-Timestamp"]
            )
    first = json.loads(receiver.at("/json")[0].body)
    assert (first["rule"], first["state"]) == ("psi-high", "firing")
    assert sorted(a["feature"] for a in first["alerts"]) == ["a", "b"]
    manager = [json.loads(r.body) for r in receiver.at("/am")]
    assert Counter(
        (m["groupLabels"]["alertname"], m["status"], len(m["alerts"])) for m in manager
    ) == Counter(
        {
            ("psi-high", "firing", 2): 1,
            ("psi-high", "resolved", 2): 1,
            ("accuracy-drop", "firing", 1): 1,
            ("accuracy-drop", "resolved", 1): 1,
        }
    )
    # Retries: three 500s, then delivered once.
    assert [r.status for r in receiver.at("/flaky")] == [500, 500, 500, 200]
    # Exactly one retrain request, with its evidence, signed for the pipeline too.
    rows = clickhouse_client.query(
        "SELECT idempotency_key, evidence, alert_ids FROM retrain_requests FINAL WHERE model_id = {m:String}",
        parameters={"m": model_id},
    ).result_rows
    assert len(rows) == 1
    key, evidence_json, alert_ids = rows[0]
    evidence = json.loads(evidence_json)
    assert sorted(e["feature"] for e in evidence) == ["a", "b"]
    assert {e["rule"] for e in evidence} == {"psi-high"} and sorted(alert_ids) == sorted(
        e["alert_id"] for e in evidence
    )
    assert all([w["value"] for w in e["windows"]] in ([0.3, 0.4], [0.35, 0.5]) for e in evidence)
    assert all(
        e["threshold"] == 0.2 and e["window_start"] == (BASE + timedelta(minutes=2)).isoformat()
        for e in evidence
    )
    (pipeline,) = receiver.at("/pipeline")
    assert verify_signature(
        PIPELINE_SECRET,
        pipeline.body,
        pipeline.headers["X-Modelmon-Signature"],
        pipeline.headers["X-Modelmon-Timestamp"],
    )
    assert json.loads(pipeline.body)["retrain_request"]["idempotency_key"] == key
    # The dead endpoint: dead letters without its path, and the secret nowhere in the worker logs.
    reasons = clickhouse_client.query(
        "SELECT reason FROM dead_letters FINAL WHERE error_type = 'webhook_failed'"
    ).result_rows
    assert reasons and not any("secret-path" in r[0] for r in reasons)
    logs = (tmp_path / "worker-1.log").read_text() + (tmp_path / "worker-2.log").read_text()
    assert SECRET not in logs and PIPELINE_SECRET not in logs and "secret-path" not in logs
    assert "/flaky" not in logs and "/pipeline" not in logs  # URLs are shown as scheme://host/… only
