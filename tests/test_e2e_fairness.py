"""Fairness end to end: real broker, real worker process, ClickHouse sink.

A binary model with a sensitive feature (``gender``) and a sensitive tag (``region``); the model
favours one gender. Two windows of labelled traffic: the gaps that land in ClickHouse equal
fairlearn's on the same events, and a rule on ``demographic_parity_difference`` fires.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelmon.sdk import MonitorClient
from tests.test_e2e_alerting import alert_rows
from tests.test_e2e_topology import run_topology, window_metric
from tests.workers import wait_until, write_spec

fm = pytest.importorskip("fairlearn.metrics", reason="fairlearn is a dev dependency (pyproject [dev])")
pytestmark = pytest.mark.integration

BASE = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
PER_WINDOW = 500
WINDOWS = (0, 1)
RULE = {
    "name": "parity", "metric": "demographic_parity_difference", "feature": "gender", "segment": "",
    "op": ">", "threshold": 0.1, "for": 1, "severity": "warning",
}  # fmt: skip


def traffic(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    gender = rng.choice(np.array(["F", "M"]), n, p=[0.4, 0.6])
    region = rng.choice(np.array(["eu", "us", "apac"]), n, p=[0.45, 0.5, 0.05])  # apac: too few
    label = (rng.random(n) < 0.5).astype(int)
    favour = np.where(gender == "M", 0.25, 0.0)  # the model favours M
    prediction = (rng.random(n) < 0.2 + 0.45 * label + favour).astype(int)
    return {"gender": gender, "region": region, "label": label, "prediction": prediction}


def test_fairness_gaps_land_in_clickhouse_equal_to_fairlearn_and_a_parity_rule_fires(
    kafka_broker: Any, topic_prefix: str, clickhouse_client: Any, tmp_path: Path
) -> None:
    features = {"amount": {"type": "numerical"}, "gender": {"type": "categorical"}}
    fairness = {"attributes": ["gender", "tag:region"], "favourable": 1, "min_group_size": 30}
    model_id = write_spec(tmp_path / "models", features=features, fairness=fairness, alerts=[RULE])
    _settings, worker, sink = run_topology(kafka_broker, topic_prefix, clickhouse_client, tmp_path)
    rng = np.random.default_rng(16)
    sent = {w: traffic(rng, PER_WINDOW) for w in WINDOWS}
    sink.start_thread()
    try:
        with MonitorClient(kafka_broker.bootstrap, topic_prefix) as client:
            for w, data in sent.items():
                start = BASE + timedelta(minutes=w)
                for i in range(PER_WINDOW):
                    ts = start + timedelta(milliseconds=int(i * 60_000 / PER_WINDOW))
                    pid = client.log_prediction(
                        model_id, {"amount": 1.0, "gender": str(data["gender"][i])},
                        int(data["prediction"][i]), tags={"region": str(data["region"][i])}, ts=ts,
                    )  # fmt: skip
                    client.log_ground_truth(
                        model_id, pid, int(data["label"][i]), ts=ts + timedelta(seconds=1)
                    )
            assert client.flush(30) == 0
        gaps = lambda: window_metric(clickhouse_client, model_id, "equalized_odds_difference", "gender")  # noqa: E731
        assert wait_until(lambda: len(gaps()) == 2, 120), (gaps(), worker.log())
        firing = lambda: alert_rows(clickhouse_client, model_id).get(f"{model_id}|parity|gender|")  # noqa: E731
        assert wait_until(lambda: "firing" in (firing() or []), 60), (
            alert_rows(clickhouse_client, model_id),
            worker.log(),
        )
        assert worker.alive, worker.log()
    finally:
        sink.stop()
        worker.stop()

    worst = 0.0
    for w, data in sent.items():
        start = BASE + timedelta(minutes=w)
        y, p = data["label"], data["prediction"]
        for attribute, groups in (("gender", data["gender"]), ("tag:region", data["region"])):
            big = np.isin(groups, [g for g in set(groups) if (groups == g).sum() >= 30])
            kw = {"sensitive_features": groups[big]}
            expected = {
                "demographic_parity_difference": fm.demographic_parity_difference(y[big], p[big], **kw),
                "demographic_parity_ratio": fm.demographic_parity_ratio(y[big], p[big], **kw),
                "equal_opportunity_difference": fm.equal_opportunity_difference(y[big], p[big], **kw),
                "equalized_odds_difference": fm.equalized_odds_difference(y[big], p[big], **kw),
            }
            for metric, value in expected.items():
                landed = window_metric(clickhouse_client, model_id, metric, attribute)[start]
                worst = max(worst, abs(landed - value))
        too_few = window_metric(clickhouse_client, model_id, "fairness_groups_too_few", "tag:region")[start]
        assert too_few == float((data["region"] == "apac").sum() < 30)
    assert worst <= 1e-9, worst
    parity = window_metric(clickhouse_client, model_id, "demographic_parity_difference", "gender")
    assert min(parity.values()) > 0.15  # the favoured gender shows
