"""Dashboards as code: structure of the generated JSON, the checked-in copies, the macro expansion."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dashboards.catalog import build_dashboards, spec_thresholds
from dashboards.export import export_files
from dashboards.grafana import DATASOURCE, SCHEMA_VERSION
from dashboards.macros import MacroError, expand
from modelmon import metrics
from modelmon.app.cli import cli
from modelmon.spec import load_specs

ROOT = Path(__file__).resolve().parent.parent
SPECS = load_specs(ROOT / "models")
DOCUMENTS = [d.to_json() for d in build_dashboards(SPECS)]
START, END = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, 1, tzinfo=UTC)


def _datasources(node: Any) -> list[Any]:
    """Every ``datasource`` value anywhere in a dashboard document."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                found.append(value)
            found.extend(_datasources(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_datasources(item))
    return found


def test_six_dashboards_with_unique_uids_and_titles() -> None:
    uids = [d["uid"] for d in DOCUMENTS]
    assert uids == [
        "modelmon-fleet",
        "modelmon-drift",
        "modelmon-performance",
        "modelmon-fidelity",
        "modelmon-alerts",
        "modelmon-versions",
    ]
    assert len({d["title"] for d in DOCUMENTS}) == 6
    assert all(len(uid) <= 40 for uid in uids), "Grafana limits uids to 40 characters"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: d["uid"])
def test_panels_ids_grid_and_schema(document: dict[str, Any]) -> None:
    assert document["schemaVersion"] == SCHEMA_VERSION
    panels = document["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids)
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r} at {(x, y)}"
                cells[(x, y)] = panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], f"{panel['title']} has no query"
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs))
            assert all(t["rawSql"].strip() and t["editorType"] == "sql" for t in panel["targets"])


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: d["uid"])
def test_every_datasource_reference_resolves_to_the_provisioned_one(document: dict[str, Any]) -> None:
    provisioned = export_files(SPECS)["provisioning/datasources/clickhouse.yaml"]
    assert f"uid: {DATASOURCE['uid']}" in provisioned and f"type: {DATASOURCE['type']}" in provisioned
    builtin = {"type": "grafana", "uid": "-- Grafana --"}
    references = _datasources(document)
    assert references
    for reference in references:
        assert reference in (DATASOURCE, builtin), reference


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: d["uid"])
def test_variables_used_by_panels_are_defined(document: dict[str, Any]) -> None:
    defined = {v["name"] for v in document["templating"]["list"]}
    text = json.dumps(document["panels"])
    for name in ("model", "version", "segment", "feature"):
        if "${" + name in text or f"${name}" in text:
            assert name in defined, f"{document['uid']} uses ${name} without defining it"


def test_checked_in_copies_equal_the_generator_output() -> None:
    """docker-compose mounts dashboards/json and dashboards/provisioning: they must be current."""
    files = export_files(SPECS)
    for relative, text in files.items():
        path = ROOT / "dashboards" / relative
        assert path.read_text(encoding="utf-8") == text, (
            f"{path} is stale: run `modelmon dashboards export dashboards`"
        )
    on_disk = {f"json/{p.name}" for p in (ROOT / "dashboards" / "json").glob("*.json")}
    assert on_disk == {name for name in files if name.startswith("json/")}, "unexpected dashboard files"


def test_export_command_writes_the_same_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELMON_MODELS_PATH", str(ROOT / "models"))
    result = CliRunner().invoke(cli, ["dashboards", "export", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for relative, text in export_files(SPECS).items():
        assert (tmp_path / relative).read_text(encoding="utf-8") == text
    assert len(result.output.splitlines()) == 8


def test_thresholds_come_from_the_specs() -> None:
    assert spec_thresholds(SPECS) == {("fraud-detector", "accuracy"): 0.8, ("house-prices", "mae"): 20000.0}
    performance = next(d for d in DOCUMENTS if d["uid"] == "modelmon-performance")
    sql = " ".join(t["rawSql"] for p in performance["panels"] for t in p["targets"])
    assert "('fraud-detector', 'accuracy', 0.8)" in sql and "('house-prices', 'mae', 20000.0)" in sql
    bare = next(d.to_json() for d in build_dashboards({}) if d.uid == "modelmon-performance")
    assert not [t for p in bare["panels"] for t in p["targets"] if t["refId"] == "T"]


def test_drift_metric_names_match_the_detector_registry() -> None:
    from detectors.drift.registry import methods

    assert set(metrics.DRIFT_METRICS) == set(methods())


# A metric named in a panel's SQL: `metric = 'x'`, or every literal of `metric IN ('x', 'y')`.
_METRIC_EQUALS = re.compile(r"metric\s*(?:=|!=)\s*'([^']*)'")
_METRIC_IN = re.compile(r"metric\s+(?:NOT\s+)?IN\s*\(([^)]*)\)")


def _queried_metrics(sql: str) -> set[str]:
    found = set(_METRIC_EQUALS.findall(sql))
    for listed in _METRIC_IN.findall(sql):
        found |= set(re.findall(r"'([^']*)'", listed))
    return found


def test_every_metric_the_dashboards_query_is_one_stage_2_publishes() -> None:
    queried = {
        name
        for document in DOCUMENTS
        for panel in document["panels"]
        for target in panel.get("targets", [])
        for name in _queried_metrics(target["rawSql"])
    }
    assert queried - metrics.MODEL_METRICS - metrics.FEATURE_METRICS == set()
    shown = {"events", "drift_share", "drifted", "accuracy", "log_loss", "mape", "r2", "lateness_p99_ms"}
    assert shown | set(metrics.DRIFT_METRICS) <= queried, "the pattern no longer finds the panels' metrics"


# ---------------------------------------------------------------------------------------------
# Expansion of macros and variables, against the plugin's documented output
# ---------------------------------------------------------------------------------------------
def test_backend_macros_expand_like_the_plugin() -> None:
    sql = "$__timeFilter(ts) $__fromTime $__toTime $__timeFilter_ms(t) $__timeInterval(ts) $__interval_s"
    assert expand(sql, START, END, 20) == (
        "ts >= toDateTime(1704067200) AND ts <= toDateTime(1704070800) toDateTime(1704067200) "
        "toDateTime(1704070800) t >= fromUnixTimestamp64Milli(1704067200000) AND "
        "t <= fromUnixTimestamp64Milli(1704070800000) "
        "toStartOfInterval(toDateTime(ts), INTERVAL 20 second) 20"
    )
    assert expand("$__dateFilter(d) $__interval_s", START, END, 0) == (
        "d >= toDate('2024-01-01') AND d <= toDate('2024-01-01') 1"
    )


def test_variables_and_conditional_all() -> None:
    sql = "m = '${model}' AND v IN (${version}) AND $__conditionalAll(f IN (${feature}), $feature)"
    sql += " AND [[model]]"
    some = expand(sql, START, END, 60, {"model": "a", "version": ["1", "2"], "feature": ["x"]})
    assert some == "m = 'a' AND v IN ('1','2') AND f IN ('x') AND a"
    every = expand(sql, START, END, 60, {"model": "a", "version": ["1"], "feature": "$__all"})
    assert every == "m = 'a' AND v IN ('1') AND 1=1 AND a"
    assert expand("${v:singlequote}", START, END, 1, {"v": ["it's"]}) == "'it\\'s'"


def test_unknown_macro_or_variable_is_an_error() -> None:
    with pytest.raises(MacroError, match="undefined macro"):
        expand("$__nope(x)", START, END, 1)
    with pytest.raises(MacroError, match="has no value"):
        expand("${missing}", START, END, 1)


# ---------------------------------------------------------------------------------------------
# Pictures that tell the truth (issue #14): the Grafana side of the report's fixes
# ---------------------------------------------------------------------------------------------
def _panel(uid: str, key_title: str) -> dict[str, Any]:
    document = next(d for d in DOCUMENTS if d["uid"] == uid)
    return next(p for p in document["panels"] if p["title"].startswith(key_title))


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: d["uid"])
def test_panel_titles_are_unique_within_a_dashboard(document: dict[str, Any]) -> None:
    titles = [p["title"] for p in document["panels"] if p["type"] != "row"]
    assert len(titles) == len(set(titles)), sorted(t for t in titles if titles.count(t) > 1)


def test_rate_panels_start_at_zero() -> None:
    rates = [
        (document["uid"], panel["title"])
        for document in DOCUMENTS
        for panel in document["panels"]
        if panel["type"] == "timeseries" and panel["fieldConfig"]["defaults"].get("unit") == "percentunit"
    ]
    assert len(rates) >= 8
    for document in DOCUMENTS:
        for panel in document["panels"]:
            if (document["uid"], panel["title"]) in rates:
                assert panel["fieldConfig"]["defaults"].get("min") == 0, panel["title"]


def test_drift_heatmap_is_score_over_threshold_on_a_fixed_scale() -> None:
    heatmap = _panel("modelmon-drift", "Drift per feature")
    defaults = heatmap["fieldConfig"]["defaults"]
    assert (defaults["min"], defaults["max"]) == (0, 2)
    steps = {step["value"]: step["color"] for step in defaults["thresholds"]["steps"]}
    # Below the line green or yellow, from the line (1 = score at its method's threshold) on red.
    assert steps[1.0] == "red"
    assert all(("red" in color) == (value is not None and value >= 1) for value, color in steps.items())
    sql = heatmap["targets"][0]["rawSql"]
    assert "JSONExtract(details, 'threshold'" in sql and "__prediction__" in sql
    assert "NOT IN ('', '__prediction__')" not in sql, "the model output has its row"


def test_lateness_is_in_milliseconds_that_grafana_scales_with_distinct_quantile_styles() -> None:
    for uid, title in (("modelmon-fidelity", "Lateness"), ("modelmon-performance", "Label delay")):
        panel = _panel(uid, title)
        assert panel["fieldConfig"]["defaults"]["unit"] == "ms"
        styles = {
            o["matcher"]["options"]: json.dumps(o["properties"]) for o in panel["fieldConfig"]["overrides"]
        }
        assert {".*_p95_.*", ".*_p99_.*", ".*_max_.*"} <= set(styles) and len(set(styles.values())) == 3


def test_alert_timeline_draws_no_resolved_bars() -> None:
    timeline = _panel("modelmon-alerts", "Alert timeline")
    options = timeline["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert options["0"]["text"] == "resolved" and options["0"]["color"] == "transparent"
    assert options["2"]["color"] == "red" and options["1"]["color"] == "yellow"
    assert "max(window_end) AS last_end" in timeline["targets"][0]["rawSql"]


def test_estimated_vs_realized_panels_draw_the_band_the_estimate_and_the_realized_value() -> None:
    """Issue #15: one panel per estimated metric, one per version, band as fill between its two ends."""
    performance = next(d for d in DOCUMENTS if d["uid"] == "modelmon-performance")
    panels = [p for p in performance["panels"] if p["title"].startswith("Estimated vs realized ")]
    assert [p["title"] for p in panels] == [
        f"Estimated vs realized {name} (v${{version}})"
        for name in ("accuracy", "precision", "recall", "F1", "ROC AUC")
    ]
    for panel, metric in zip(panels, metrics.ESTIMATED_METRICS, strict=True):
        assert panel["repeat"] == "version" and panel["fieldConfig"]["defaults"]["min"] == 0
        styles = {
            o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
            for o in panel["fieldConfig"]["overrides"]
            if o["matcher"]["id"] == "byName"
        }
        assert styles["band upper"]["custom.fillBelowTo"] == "band lower"
        assert styles["band upper"]["custom.fillOpacity"] > 0
        assert styles["band lower"]["custom.lineWidth"] == styles["band upper"]["custom.lineWidth"] == 0
        assert styles["realized"]["custom.showPoints"] == "always"
        assert styles["estimated"]["color"] != styles["realized"]["color"]
        assert styles["estimation error"]["custom.drawStyle"] == "bars"
        sql = panel["targets"][0]["rawSql"]
        family = {
            metric,
            metrics.estimated(metric),
            metrics.estimated_lower(metric),
            metrics.estimated_upper(metric),
            metrics.estimation_error(metric),
        }
        assert _queried_metrics(sql) == family
        assert "model_version = '${version}'" in sql and "segment = ''" in sql
    # The spec's accuracy rule is drawn on the accuracy panel (estimate and realized share its scale).
    assert "('fraud-detector', 'accuracy', 0.8)" in panels[0]["targets"][1]["rawSql"]
