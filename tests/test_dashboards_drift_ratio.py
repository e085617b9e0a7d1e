"""``dashboards.sql.DRIFT_RATIO``: one scale for every drift method, 1 = the method's own line.

Drift results come from the real detectors (``detect_many``, noise control on), stored with the
details stage 2 publishes (docs/metric-names.md), and read back through the drift heatmap
panel's SQL on the chDB engine: the ratio is >= 1 exactly where the stored verdict is "drifted".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from dashboards.catalog import build_dashboards
from dashboards.runner import TimeRange, resolve_variables, run_query
from detectors.drift import DriftOptions, detect_many
from modelmon.events import MetricPoint
from sinks.writer import ClickHouseWriter

pytestmark = pytest.mark.integration
MODEL = "ratio-model"
START = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)


def _window_points(w: int, rng: np.random.Generator) -> tuple[list[MetricPoint], dict[str, bool]]:
    n = 20_000
    shift = 0.1 * w  # no shift in the first window, a large one in the last
    reference = {
        "ks_feature": rng.normal(0, 1, n),
        "psi_feature": rng.normal(0, 1, n),
        "chi_feature": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]),
        "steady": rng.normal(0, 1, n),
        "tiny": rng.normal(0, 1, n),
    }
    current = {
        "ks_feature": rng.normal(shift, 1, n),
        "psi_feature": rng.normal(shift, 1, n),
        "chi_feature": rng.choice(["a", "b", "c"], n, p=[0.5 - shift / 2, 0.3, 0.2 + shift / 2]),
        "steady": rng.normal(0, 1, n),
        "tiny": rng.normal(0.06, 1, n),  # significant on 20k rows, but too small an effect to flag
    }
    kinds = {"chi_feature": "categorical"}
    methods = {"ks_feature": "ks", "tiny": "ks", "psi_feature": "psi", "chi_feature": "chi_square"}
    options = DriftOptions(per_feature=methods)  # "steady": the chooser's method
    report = detect_many(reference, current, kinds=kinds, options=options)
    points, verdicts = [], {}
    for name, drift in report.features.items():
        result = drift.result
        details = {
            "method": result.method,
            "threshold": result.threshold,
            "p_value": result.p_value,
            "drifted": drift.drifted,
            "test_drifted": result.drifted,
            "adjusted_p_value": drift.adjusted_p_value,
            "effect_size": drift.effect_size,
            "min_effect": drift.min_effect,
        }
        common = {"model_id": MODEL, "model_version": "1", "segment": "", "feature": name}
        common |= {"window_start": START + w * timedelta(minutes=1), "source": "stage2", "revision": 1}
        common |= {"window_end": START + (w + 1) * timedelta(minutes=1)}
        points.append(MetricPoint(**common, metric=result.method, value=result.score, details=details))
        points.append(MetricPoint(**common, metric="drifted", value=float(drift.drifted)))
        verdicts[f"{w}|{name}"] = drift.drifted
        verdicts[f"{w}|{name}|raw"] = result.drifted
    return points, verdicts


def test_ratio_is_at_least_one_exactly_where_the_verdict_is_drift(clickhouse: Any) -> None:
    rng = np.random.default_rng(14)
    points: list[MetricPoint] = []
    verdicts: dict[str, bool] = {}
    for w in range(8):
        window_points, window_verdicts = _window_points(w, rng)
        points += window_points
        verdicts |= window_verdicts
    ClickHouseWriter(clickhouse).write(points)  # type: ignore[arg-type]

    drift = next(d for d in build_dashboards() if d.uid == "modelmon-drift")
    panel = next(p for p in drift.panels if p.key == "drift_heatmap")
    time_range = TimeRange(START - timedelta(minutes=5), START + timedelta(minutes=15))
    variables = resolve_variables(clickhouse, drift, time_range, {"model": MODEL})
    result = run_query(clickhouse, panel.queries[0], panel, time_range, variables)
    ratios = {
        f"{(time - START) // timedelta(minutes=1)}|{feature}": value for time, feature, value in result.rows
    }
    assert len(ratios) == 8 * 5
    for key, ratio in ratios.items():
        assert (ratio >= 1.0) == verdicts[key], f"{key}: ratio {ratio:.3f}, drifted {verdicts[key]}"
    methods = set(_methods(clickhouse))
    assert {("ks_feature", "ks"), ("chi_feature", "chi_square"), ("psi_feature", "psi")} <= methods
    drifted = {key.split("|")[1] for key, ratio in ratios.items() if ratio >= 1}
    assert {"ks_feature", "psi_feature", "chi_feature"} <= drifted and not {"steady", "tiny"} & drifted
    # Noise control matters: some p-value test passed its threshold alone, yet stays below 1 (small effect).
    assert any(verdicts[f"{key}|raw"] and ratio < 1 for key, ratio in ratios.items())


def _methods(client: Any) -> list[tuple[str, str]]:
    sql = f"SELECT DISTINCT feature, metric FROM metric_points WHERE model_id = '{MODEL}'"
    sql += " AND metric != 'drifted'"
    return [(str(feature), str(metric)) for feature, metric in client.query(sql).result_rows]
