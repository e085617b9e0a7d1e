"""Champion and challenger on the same requests, end to end: real broker, real worker, ClickHouse.

Versions 1 and 2 of a binary model get the same 400 requests (same ``request_id`` tags) in one
window; version 2 turns 80 of version 1's negative predictions positive (20 %). What lands in
ClickHouse: ``version_agreement`` = 0.8 exactly (k = 512 > 400 requests: the sample holds every
request) and ``version_prediction_drift`` flags the shifted predictions. A second model whose two
versions predict identically: agreement 1.0 and no drift.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelmon.sdk import MonitorClient
from tests.test_e2e_topology import run_topology
from tests.workers import wait_until, write_spec

pytestmark = pytest.mark.integration

BASE = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
N = 400


def pair_point(client: Any, model_id: str, metric: str) -> tuple[float, dict[str, Any]] | None:
    rows = client.query(
        "SELECT value, details FROM metric_points FINAL WHERE model_id = {m:String} "
        "AND metric = {metric:String} AND model_version = '2' AND feature = 'versus=1' AND segment = ''",
        parameters={"m": model_id, "metric": metric},
    ).result_rows
    if not rows:
        return None
    value, details = rows[0]
    return float(value), details if isinstance(details, dict) else json.loads(details)


def test_challenger_agreement_and_prediction_drift_land_in_clickhouse(
    kafka_broker: Any, topic_prefix: str, clickhouse_client: Any, tmp_path: Path
) -> None:
    features = {"amount": {"type": "numerical"}}
    shifted = write_spec(tmp_path / "models", features=features)
    same = write_spec(tmp_path / "models", features=features)
    _settings, worker, sink = run_topology(kafka_broker, topic_prefix, clickhouse_client, tmp_path)
    rng = np.random.default_rng(16)
    champion = (rng.random(N) < 0.5).astype(int)
    challenger = champion.copy()
    flipped = rng.choice(np.flatnonzero(champion == 0), N // 5, replace=False)
    challenger[flipped] = 1
    sink.start_thread()
    try:
        with MonitorClient(kafka_broker.bootstrap, topic_prefix) as client:
            for i in range(N):
                ts = BASE + timedelta(milliseconds=int(i * 50_000 / N))
                tags = {"request_id": f"req-{i}"}
                for model_id, second in ((shifted, challenger), (same, champion)):
                    for version, predicted in (("1", champion[i]), ("2", second[i])):
                        client.log_prediction(
                            model_id, {"amount": 1.0}, int(predicted), model_version=version, tags=tags, ts=ts
                        )
            assert client.flush(30) == 0

        def landed(model_id: str, agreement: float) -> bool:
            point = pair_point(clickhouse_client, model_id, "version_agreement")
            drift = pair_point(clickhouse_client, model_id, "version_prediction_drift")
            return point is not None and point[0] == agreement and drift is not None

        assert wait_until(lambda: landed(shifted, 0.8) and landed(same, 1.0), 60), worker.log()
        assert worker.alive, worker.log()
    finally:
        sink.stop()
        worker.stop()

    value, details = pair_point(clickhouse_client, shifted, "version_agreement") or (0.0, {})
    assert (value, details["matched"], details["agreed"], details["exact"]) == (0.8, N, 320, True)
    assert details["lower"] < 0.8 < details["upper"]
    p_value, drift = pair_point(clickhouse_client, shifted, "version_prediction_drift") or (1.0, {})
    assert drift["drifted"] is True and p_value < 1e-6 and (drift["n_a"], drift["n_b"]) == (N, N)
    assert drift["method"] == "chi_square"
    value, details = pair_point(clickhouse_client, same, "version_agreement") or (0.0, {})
    assert (value, details["matched"], details["exact"]) == (1.0, N, True)
    p_value, drift = pair_point(clickhouse_client, same, "version_prediction_drift") or (0.0, {})
    assert drift["drifted"] is False and p_value == pytest.approx(1.0)
