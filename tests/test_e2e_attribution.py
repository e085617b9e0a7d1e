"""Attribution end to end: real broker, real worker process, ClickHouse sink, webhooks on a real HTTP server.

Ten numerical features; the label follows their sum (so every feature is about equally important,
as the mutual information estimated on the labelled reference file says). Two windows of ordinary
traffic, then two where features ``f3`` and ``f7`` move 1.5 sd and, in segment ``region=r2`` only,
the labels turn against the model. The accuracy alert must name ``f3`` and ``f7`` as the first two
features and ``region=r2`` as the first segment, in ClickHouse, in the JSON and Slack webhooks and in
the retrain request's evidence.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detectors.profiles.files import load_reference_file
from modelmon.sdk import MonitorClient
from modelmon.spec import load_specs
from streams.references import publish_reference
from tests.http_receiver import WebhookReceiver
from tests.test_e2e_alerting import alert_rows
from tests.test_e2e_topology import run_topology
from tests.workers import wait_until, write_spec

pytestmark = pytest.mark.integration

BASE = datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
FEATURES = [f"f{i}" for i in range(10)]
DRIFTED = ("f3", "f7")
REGIONS = ("r0", "r1", "r2", "r3")
BAD_REGION = "region=r2"
PER_WINDOW = 800
NORMAL, BAD = (0, 1), (2, 3)
RULE = {
    "name": "accuracy-drop", "metric": "accuracy", "feature": "", "segment": "", "op": "<",
    "threshold": 0.8, "for": 1, "severity": "critical",
}  # fmt: skip


def rows(rng: np.random.Generator, n: int, shift: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, the model's predictions (the sign of their sum) and true labels (with noise)."""
    x = rng.normal(0.0, 1.0, (n, len(FEATURES)))
    for name in DRIFTED:
        x[:, FEATURES.index(name)] += shift
    signal = x.sum(axis=1) - len(DRIFTED) * shift  # the model is right on the shifted inputs too
    predicted = (signal > 0).astype(int)
    label = (signal + rng.normal(0.0, 1.0, n) > 0).astype(int)
    return x, predicted, label


def reference_file(path: Path, rng: np.random.Generator) -> Path:
    x, _, label = rows(rng, 20_000, 0.0)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*FEATURES, "label"])
        writer.writerows([*np.round(row, 5), y] for row, y in zip(x, label, strict=True))
    return path


def at(window: int) -> datetime:
    return BASE + timedelta(minutes=window)


def test_drifted_features_and_the_dropped_segment_rank_first_end_to_end(
    kafka_broker: Any, topic_prefix: str, clickhouse_client: Any, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    with WebhookReceiver() as receiver:
        model_id = write_spec(
            models,
            features={name: {"type": "numerical"} for name in FEATURES},
            segments=["region"],
            alerts=[RULE],
            retrain={"enabled": True, "on_rules": ["accuracy-drop"], "webhook": receiver.url("/pipeline")},
        )
        hooks = [
            {"url": receiver.url("/json"), "format": "json", "kinds": ["alerts"]},
            {"url": receiver.url("/slack"), "format": "slack", "kinds": ["alerts"]},
        ]
        settings, worker, sink = run_topology(
            kafka_broker, topic_prefix, clickhouse_client, tmp_path, webhooks=hooks
        )
        rng = np.random.default_rng(16)
        loaded = load_reference_file(reference_file(tmp_path / "ref.csv", rng), load_specs(models)[model_id])
        importances = loaded.profile.importances
        assert set(importances) == set(FEATURES) and max(importances.values()) < 2 * min(importances.values())
        publish_reference(settings, model_id, "1", loaded.profile, loaded.source)
        sink.start_thread()
        try:
            with MonitorClient(kafka_broker.bootstrap, topic_prefix) as client:
                for window in (*NORMAL, *BAD):
                    bad = window in BAD
                    x, predicted, label = rows(rng, PER_WINDOW, 1.5 if bad else 0.0)
                    for i in range(PER_WINDOW):
                        region = REGIONS[i % len(REGIONS)]
                        ts = at(window) + timedelta(milliseconds=int(i * 50_000 / PER_WINDOW))
                        features = {name: float(v) for name, v in zip(FEATURES, x[i], strict=True)}
                        pid = client.log_prediction(
                            model_id, features, int(predicted[i]), ts=ts, tags={"region": region}
                        )
                        y = (
                            1 - int(predicted[i])
                            if bad and f"region={region}" == BAD_REGION
                            else int(label[i])
                        )
                        client.log_ground_truth(model_id, pid, y, ts=at(window) + timedelta(seconds=55))
                assert client.flush(30) == 0
            key = f"{model_id}|accuracy-drop||"
            assert wait_until(
                lambda: "firing" in alert_rows(clickhouse_client, model_id).get(key, []), 150
            ), (
                alert_rows(clickhouse_client, model_id),
                worker.log(),
            )
            assert wait_until(lambda: receiver.at("/json") and receiver.at("/slack"), 60), worker.log()
            assert wait_until(lambda: bool(receiver.at("/pipeline")), 60), worker.log()
            assert worker.alive, worker.log()
        finally:
            sink.stop()
            worker.stop()

        stored = clickhouse_client.query(
            "SELECT window_start, details, message FROM alerts FINAL WHERE model_id = {m:String} "
            "AND state = 'firing' ORDER BY window_start",
            parameters={"m": model_id},
        ).result_rows
        assert [row[0].astimezone(UTC) for row in stored] == [at(BAD[0])]
        details, message = json.loads(stored[0][1]), stored[0][2]
        attribution = details["attribution"]
        features = [line["feature"] for line in attribution["features"]]
        segments = [line["segment"] for line in attribution["segments"]]
        print(
            "features ranked:", [(f["feature"], f["ratio"], f["weighted"]) for f in attribution["features"]]
        )
        print("segments ranked:", [(s["segment"], s["contribution"]) for s in attribution["segments"]])
        print("message:", message)
        assert set(features[:2]) == set(DRIFTED) and len(features) == len(FEATURES)
        assert all(line["importance_source"] == "reference" for line in attribution["features"])
        assert segments[0] == BAD_REGION and len(segments) == len(REGIONS)
        assert "f3" in message and "f7" in message and f"worst segment {BAD_REGION}" in message

        payload = json.loads(receiver.at("/json")[0].body)
        sent = payload["alerts"][0]["details"]["attribution"]
        assert sent == attribution  # the JSON webhook carries the whole list
        slack = json.loads(receiver.at("/slack")[0].body)["text"]
        print("slack:", slack)
        shown = [name for name in FEATURES if f"feature {name}:" in slack]
        assert len(shown) == 3 and set(DRIFTED) <= set(shown)  # the top three lines
        assert f"segment {BAD_REGION}:" in slack
        request = json.loads(receiver.at("/pipeline")[0].body)["retrain_request"]
        assert request["evidence"][0]["attribution"] == attribution
