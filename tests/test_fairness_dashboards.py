"""The Fairness row of the performance dashboard and the report's fairness picture, on chDB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dashboards.catalog import build_dashboards
from dashboards.fairness import fairness_thresholds
from dashboards.report import write_report
from dashboards.runner import TimeRange, resolve_variables, run_query
from modelmon.spec import load_specs, parse_spec
from tests.dashboard_seed import CLASSIFIER, REGRESSOR, seed

pytestmark = pytest.mark.integration


def specs() -> dict[str, Any]:
    """The example specs, the classifier with a fairness section and a rule on a gap."""
    out = load_specs("models")
    data = out[CLASSIFIER].model_dump(by_alias=True, exclude_none=True)
    data["features"]["region"] = {"type": "categorical"}
    data["fairness"] = {"attributes": ["tag:region"], "min_group_size": 30}
    rule = {"name": "parity", "metric": "demographic_parity_difference", "feature": "any", "op": ">",
            "threshold": 0.1}  # fmt: skip
    data["alerts"] = [*data["alerts"], rule]
    out[CLASSIFIER] = parse_spec(data)
    return out


def test_gap_rules_give_threshold_lines_whatever_their_feature() -> None:
    assert fairness_thresholds(specs()) == {(CLASSIFIER, "demographic_parity_difference"): 0.1}


def test_fairness_panels_show_the_gaps_with_the_threshold_and_the_latest_groups(clickhouse: Any) -> None:
    data = seed(clickhouse)
    time_range = TimeRange(*data.range)
    perf = next(d for d in build_dashboards(specs()) if d.uid == "modelmon-performance")
    gaps = next(p for p in perf.panels if p.key == "fairness_gaps")
    table = next(p for p in perf.panels if p.key == "fairness_groups")
    variables = resolve_variables(clickhouse, perf, time_range, {"model": CLASSIFIER, "segment": ""})
    series = run_query(clickhouse, gaps.queries[0], gaps, time_range, variables)
    names = {row[1] for row in series.rows}
    assert "demographic_parity_difference tag:region v1" in names and len(names) == 4
    line = run_query(clickhouse, gaps.queries[1], gaps, time_range, variables)
    assert {(row[1], row[2]) for row in line.rows} == {("demographic_parity_difference alert threshold", 0.1)}
    rows = run_query(clickhouse, table.queries[0], table, time_range, variables)
    by_group = {row[1]: dict(zip(rows.columns, row, strict=True)) for row in rows.rows}
    assert set(by_group) == {"eu", "us", "xx"} and {r["attribute"] for r in by_group.values()} == {
        "tag:region"
    }
    assert by_group["us"]["selection_rate"] == pytest.approx(0.30 + 0.02 * 11)  # the latest window
    assert by_group["xx"]["note"] == "too few" and by_group["xx"]["selection_rate"] is None
    assert by_group["eu"]["note"] == "" and by_group["eu"]["tpr"] == pytest.approx(0.70)


def test_the_report_draws_fairness_only_for_a_model_with_fairness_points(
    clickhouse: Any, tmp_path: Path
) -> None:
    seed(clickhouse)
    write_report(clickhouse, [CLASSIFIER, REGRESSOR], tmp_path, "1h", specs=specs())
    assert (tmp_path / f"{CLASSIFIER}-fairness.png").stat().st_size > 10_000
    assert not (tmp_path / f"{REGRESSOR}-fairness.png").exists()
