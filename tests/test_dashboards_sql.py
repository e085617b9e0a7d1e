"""Every panel's SQL, expanded as Grafana and the ClickHouse plugin expand it, runs on the real engine.

The session chDB engine (``clickhouse`` fixture) holds the rows of ``tests.dashboard_seed``; each
panel, variable and annotation query of every dashboard is run for each seeded model with every
other variable on "All" (Grafana's default), and must return its expected columns and rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dashboards.catalog import build_dashboards
from dashboards.grafana import Dashboard, Panel
from dashboards.macros import expand
from dashboards.runner import TimeRange, repeat_values, resolve_variables, run_query, run_sql
from modelmon.spec import load_specs
from tests.dashboard_seed import CLASSIFIER, MODELS, REGRESSOR, Seeded, seed

pytestmark = pytest.mark.integration

DASHBOARDS = build_dashboards(load_specs("models"))
# Columns each kind of query must return (the plugin's time series need a time and a value).
TIME_SERIES = {"time", "value"}


@pytest.fixture(scope="module")
def seeded(clickhouse_client: Any) -> Iterator[tuple[Any, Seeded]]:
    from tests.clickhouse_fixtures import DATA_TABLES

    for table in DATA_TABLES:
        clickhouse_client.command(f"TRUNCATE TABLE IF EXISTS {table}")
    yield clickhouse_client, seed(clickhouse_client)
    for table in DATA_TABLES:
        clickhouse_client.command(f"TRUNCATE TABLE IF EXISTS {table}")


def _panels(dashboard: Dashboard) -> list[Panel]:
    return [panel for panel in dashboard.panels if panel.queries]


def _cases() -> list[Any]:
    return [
        pytest.param(dashboard, panel, id=f"{dashboard.uid}:{panel.key}")
        for dashboard in DASHBOARDS
        for panel in _panels(dashboard)
    ]


def _models_for(panel: Panel) -> tuple[str, ...]:
    if panel.task == "classification":
        return (CLASSIFIER,)
    if panel.task == "regression":
        return (REGRESSOR,)
    return MODELS


@pytest.mark.parametrize(("dashboard", "panel"), _cases())
def test_panel_sql_runs_and_returns_rows(
    dashboard: Dashboard, panel: Panel, seeded: tuple[Any, Seeded]
) -> None:
    client, data = seeded
    time_range = TimeRange(*data.range)
    has_model = any(v.name == "model" and not v.multi for v in dashboard.variables)
    for model in _models_for(panel) if has_model else (None,):
        variables = resolve_variables(client, dashboard, time_range, {"model": model} if model else None)
        for scope in repeat_values(panel, variables):
            for query in panel.queries:
                result = run_query(client, query, panel, time_range, scope)
                assert "$" not in result.sql, f"unexpanded macro or variable in {result.sql}"
                assert result.rows, f"{panel.title} ({query.ref_id}) for {model}: no rows from\n{result.sql}"
                columns = set(result.columns)
                if query.format == "time_series":
                    assert columns >= TIME_SERIES, f"{panel.title}: columns {result.columns}"
                    assert all(row[result.columns.index("time")] is not None for row in result.rows)
                else:
                    assert len(result.columns) >= 1


def test_every_variable_and_annotation_query_returns_options(seeded: tuple[Any, Seeded]) -> None:
    client, data = seeded
    time_range = TimeRange(*data.range)
    for dashboard in DASHBOARDS:
        values = resolve_variables(client, dashboard, time_range)
        for variable in dashboard.variables:
            assert values[variable.name], f"{dashboard.uid}: variable {variable.name} has no options"
        for annotation in dashboard.annotations:
            sql = expand(annotation.sql, *data.range, 60, {**values, "model": CLASSIFIER})
            result = run_sql(client, sql)
            assert {"time", "text"} <= set(result.columns) and result.rows


def test_filters_select_what_they_say(seeded: tuple[Any, Seeded]) -> None:
    """Values, not only shapes: version and segment filters, drift scores, thresholds, events/s."""
    client, data = seeded
    time_range = TimeRange(*data.range)
    perf = next(d for d in DASHBOARDS if d.uid == "modelmon-performance")
    panel = next(p for p in perf.panels if p.key == "perf_classification")
    variables = resolve_variables(
        client, perf, time_range, {"model": CLASSIFIER, "version": "2", "segment": ""}
    )
    result = run_query(client, panel.queries[0], panel, time_range, variables)
    series = {row[1] for row in result.rows}
    assert series == {f"{m} v2" for m in ("accuracy", "precision", "recall", "f1", "roc_auc")}
    assert len(result.rows) == 5 * 6  # version 2 exists in the last 6 windows
    thresholds = run_query(client, panel.queries[1], panel, time_range, variables)
    # models/fraud-detector.yaml: accuracy-drop fires below 0.8; drawn across the whole range.
    assert {(row[1], row[2]) for row in thresholds.rows} == {("accuracy alert threshold", 0.8)}
    assert [row[0] for row in thresholds.rows] == [data.range[0], data.range[1]]

    fleet = next(d for d in DASHBOARDS if d.uid == "modelmon-fleet")
    events = next(p for p in fleet.panels if p.key == "fleet_events")
    rows = run_query(client, events.queries[0], events, time_range, {}).rows
    per_second = sum(value for _time, _model, value in rows) * time_range.interval_for(events)
    assert per_second == pytest.approx(2 * (600 * 6 + 1200 * 6))  # both models, v1 + v2 whole-model events

    drift = next(d for d in DASHBOARDS if d.uid == "modelmon-drift")
    top = next(p for p in drift.panels if p.key == "drift_top")
    variables = resolve_variables(client, drift, time_range, {"model": CLASSIFIER})
    result = run_query(client, top.queries[0], top, time_range, variables)
    by_feature = {row[0]: dict(zip(result.columns, row, strict=True)) for row in result.rows}
    assert by_feature["country"]["method"] == "chi_square"
    assert by_feature["country"]["drifted_share"] > by_feature["amount"]["drifted_share"] > 0


def test_estimated_vs_realized_returns_every_series_per_version(seeded: tuple[Any, Seeded]) -> None:
    """The seed's estimate is the realized value + 0.01 in a band [-0.02, +0.04] around it."""
    client, data = seeded
    time_range = TimeRange(*data.range)
    perf = next(d for d in DASHBOARDS if d.uid == "modelmon-performance")
    panel = next(p for p in perf.panels if p.key == "perf_estimated_accuracy")
    variables = resolve_variables(client, perf, time_range, {"model": CLASSIFIER})
    scopes = repeat_values(panel, variables)
    assert [scope["version"] for scope in scopes] == ["1", "2"]
    for scope, windows in zip(scopes, (12, 6), strict=True):
        result = run_query(client, panel.queries[0], panel, time_range, scope)
        by_time: dict[Any, dict[str, float]] = {}
        for time, series, value in result.rows:
            by_time.setdefault(time, {})[series] = value
        assert len(by_time) == windows
        for values in by_time.values():
            assert set(values) == {"estimated", "band lower", "band upper", "realized", "estimation error"}
            assert values["band lower"] < values["realized"] < values["estimated"] < values["band upper"]
            assert values["estimated"] - values["realized"] == pytest.approx(0.01)
            assert values["estimation error"] == pytest.approx(0.01)
    variables = resolve_variables(client, perf, time_range, {"model": REGRESSOR})
    for scope in repeat_values(panel, variables):
        assert not run_query(client, panel.queries[0], panel, time_range, scope).rows
