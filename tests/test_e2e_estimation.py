"""Estimated performance end to end: real broker, real worker process, ClickHouse sink.

A binary model whose scores are calibrated gets a reference file with labels (so a calibration).
Three windows of ordinary traffic are labelled at once; three more come under covariate shift
(inputs near the decision boundary: scores near 0.5, accuracy lower), with their labels withheld.
The estimated accuracy drops and an alert on ``estimated_accuracy`` fires while those windows
have no label; then the labels arrive, and the realized accuracy (and the estimation error) land
in the same windows.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detectors.profiles.files import load_reference_file
from modelmon.sdk import MonitorClient
from modelmon.spec import load_specs
from streams.references import publish_reference
from tests.test_e2e_alerting import alert_rows
from tests.test_e2e_topology import run_topology, window_metric
from tests.workers import wait_until, write_spec

pytestmark = pytest.mark.integration

BASE = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
PER_WINDOW = 400
NORMAL, SHIFTED = (0, 1, 2), (3, 4, 5)
RULE = {
    "name": "estimate-low", "metric": "estimated_accuracy", "feature": "", "segment": "", "op": "<",
    "threshold": 0.75, "for": 1, "severity": "critical",
}  # fmt: skip


def calibrated(rng: np.random.Generator, n: int, spread: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs, calibrated scores P(y = 1 | x) = sigmoid(2x) and labels drawn from them."""
    x = rng.normal(0.0, spread, n)
    score = np.round(1.0 / (1.0 + np.exp(-2.0 * x)), 6)
    return x, score, (rng.random(n) < score).astype(int)


def reference_file(path: Path, rng: np.random.Generator) -> Path:
    x, score, label = calibrated(rng, 20_000, spread=2.0)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["x", "prediction", "score", "label"])
        writer.writerows(zip(np.round(x, 5), (score >= 0.5).astype(int), score, label, strict=True))
    return path


def at(window: int) -> datetime:
    return BASE + timedelta(minutes=window)


def test_estimated_accuracy_drops_and_alerts_before_labels_and_realized_fills_in(
    kafka_broker: Any, topic_prefix: str, clickhouse_client: Any, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    model_id = write_spec(models, features={"x": {"type": "numerical"}}, alerts=[RULE])
    settings, worker, sink = run_topology(kafka_broker, topic_prefix, clickhouse_client, tmp_path)
    rng = np.random.default_rng(2026)
    loaded = load_reference_file(reference_file(tmp_path / "ref.csv", rng), load_specs(models)[model_id])
    assert loaded.profile.calibration is not None and loaded.calibration_rows == 20_000
    publish_reference(settings, model_id, "1", loaded.profile, loaded.source)
    truth: dict[int, list[tuple[str, int]]] = {}
    sink.start_thread()
    try:
        with MonitorClient(kafka_broker.bootstrap, topic_prefix) as client:
            for window in (*NORMAL, *SHIFTED):
                x, score, label = calibrated(rng, PER_WINDOW, spread=0.3 if window in SHIFTED else 2.0)
                truth[window] = []
                for i in range(PER_WINDOW):
                    ts = at(window) + timedelta(milliseconds=int(i * 60_000 / PER_WINDOW))
                    pid = client.log_prediction(
                        model_id, {"x": float(x[i])}, int(score[i] >= 0.5), score=float(score[i]), ts=ts
                    )
                    truth[window].append((pid, int(label[i])))
            for window in NORMAL:  # the shifted windows' labels are withheld
                for pid, y in truth[window]:
                    client.log_ground_truth(model_id, pid, y, ts=at(window) + timedelta(seconds=59))
            assert client.flush(30) == 0
        estimated = lambda: window_metric(clickhouse_client, model_id, "estimated_accuracy")  # noqa: E731
        assert wait_until(lambda: len(estimated()) == 6, 120), (estimated(), worker.log())
        firing = lambda: alert_rows(clickhouse_client, model_id).get(f"{model_id}|estimate-low||")  # noqa: E731
        assert wait_until(lambda: bool(firing()), 60), (alert_rows(clickhouse_client, model_id), worker.log())
        # Fired while the shifted windows have no label: no realized accuracy for them yet.
        realized = lambda: window_metric(clickhouse_client, model_id, "accuracy")  # noqa: E731
        # The normal windows' labels were sent with their predictions; under load their accuracy may
        # land a little after the estimates: wait for it, then check the shifted windows have none.
        assert wait_until(lambda: set(realized()) >= {at(w) for w in NORMAL}, 60), realized()
        before = realized()
        assert set(before) == {at(w) for w in NORMAL}, before
        assert window_metric(clickhouse_client, model_id, "labels").get(at(SHIFTED[0])) == 0.0
        assert firing() == ["firing"]
        first_estimates = estimated()

        # Weeks later in event time, the labels of the shifted windows arrive.
        with MonitorClient(kafka_broker.bootstrap, topic_prefix) as client:
            for window in SHIFTED:
                for pid, y in truth[window]:
                    client.log_ground_truth(model_id, pid, y, ts=at(window) + timedelta(days=14))
            assert client.flush(30) == 0
        realized = lambda: window_metric(clickhouse_client, model_id, "accuracy")  # noqa: E731
        assert wait_until(lambda: len(realized()) == 6, 120), (realized(), worker.log())
        errors = lambda: window_metric(clickhouse_client, model_id, "estimation_error_accuracy")  # noqa: E731
        assert wait_until(lambda: len(errors()) == 6, 60), (errors(), worker.log())
        assert worker.alive, worker.log()
    finally:
        sink.stop()
        worker.stop()

    estimates = estimated()
    assert estimates == first_estimates  # the labels did not move the estimate (same seeded band)
    normal = [estimates[at(w)] for w in NORMAL]
    shifted = [estimates[at(w)] for w in SHIFTED]
    assert min(normal) > 0.8 and max(shifted) < 0.7 and min(normal) - max(shifted) > 0.15
    accuracy, error = realized(), errors()
    lower = window_metric(clickhouse_client, model_id, "estimated_accuracy_lower")
    upper = window_metric(clickhouse_client, model_id, "estimated_accuracy_upper")
    for window in (*NORMAL, *SHIFTED):
        start = at(window)
        assert error[start] == pytest.approx(abs(estimates[start] - accuracy[start]), abs=1e-9)
        assert error[start] < 0.1  # calibrated scores, covariate shift only: the estimate holds
        assert lower[start] <= estimates[start] <= upper[start]
    assert max(accuracy[at(w)] for w in SHIFTED) < min(accuracy[at(w)] for w in NORMAL)
    firing_rows = clickhouse_client.query(
        "SELECT window_start FROM alerts FINAL WHERE model_id = {m:String} AND state = 'firing'",
        parameters={"m": model_id},
    ).result_rows
    assert [row[0].astimezone(UTC) for row in firing_rows] == [at(SHIFTED[0])]
