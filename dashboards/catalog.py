"""The five modelmon dashboards: fleet overview, model drift, model performance, data fidelity, alerts.

``build_dashboards(specs)`` returns them in a fixed order with fixed uids (``modelmon-*``), so an
upload replaces the previous version and the provisioned JSON files keep their names. The model
specs only contribute the alert thresholds drawn on the performance panels (``spec_thresholds``);
without specs the dashboards are the same minus those lines.
"""

from __future__ import annotations

from collections.abc import Mapping

from dashboards import sql
from dashboards.grafana import Annotation, Dashboard, Panel, Query, Variable, row
from modelmon.spec import ModelSpec

FRACTION = "percentunit"
# Gradient for scores where higher is worse; the first step has no lower bound.
BAD_HIGH = [(None, "green"), (0.1, "yellow"), (0.2, "red")]
STATE_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "resolved", "color": "green", "index": 0},
            "1": {"text": "pending", "color": "yellow", "index": 1},
            "2": {"text": "firing", "color": "red", "index": 2},
        },
    }
]
DRIFTED_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "ok", "color": "green", "index": 0},
            "1": {"text": "drifted", "color": "red", "index": 1},
        },
    }
]


def spec_thresholds(specs: Mapping[str, ModelSpec]) -> dict[tuple[str, str], float]:
    """(model, metric) → threshold of the model's alert rules on model-level metrics.

    Two rules on one metric: the first one in the spec wins (it is the one the docs list first).
    """
    thresholds: dict[tuple[str, str], float] = {}
    for model_id, spec in specs.items():
        for rule in spec.alerts:
            if rule.feature == "":
                thresholds.setdefault((model_id, rule.metric), float(rule.threshold))
    return thresholds


def _model_variables(*, feature: bool) -> list[Variable]:
    variables = [
        Variable("model", "Model", sql.VAR_MODEL),
        Variable("version", "Version", sql.VAR_VERSION, multi=True, include_all=True),
        Variable("segment", "Segment", sql.VAR_SEGMENT, multi=True, include_all=True),
    ]
    if feature:
        variables.append(Variable("feature", "Feature", sql.VAR_FEATURE, multi=True, include_all=True))
    return variables


# The threshold series of ``sql.threshold_lines`` are drawn dashed.
DASHED_THRESHOLDS = {
    "matcher": {"id": "byRegexp", "options": ".*alert threshold.*"},
    "properties": [
        {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
        {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}},
    ],
}


def _series(
    title: str,
    query: str,
    *,
    unit: str = "",
    extra: list[Query] | None = None,
    threshold_line: bool = False,
    **options: object,
) -> Panel:
    custom: dict[str, object] = {
        "drawStyle": "line",
        "lineWidth": 1,
        "pointSize": 4,
        "showPoints": "auto",
        "spanNulls": False,
    }
    if threshold_line:
        custom["thresholdsStyle"] = {"mode": "line"}
    return Panel(
        "timeseries",
        title,
        [Query(query), *(extra or [])],
        unit=unit,
        custom=custom,
        overrides=[DASHED_THRESHOLDS] if extra else [],
        options={"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull", "max"]}},
        **options,  # type: ignore[arg-type]
    )


def _stat(title: str, query: str, *, unit: str = "", width: int = 6, **options: object) -> Panel:
    return Panel(
        "stat",
        title,
        [Query(query, "table")],
        width=width,
        height=4,
        unit=unit,
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
        },
        **options,  # type: ignore[arg-type]
    )


def _table(title: str, query: str, *, width: int = 12, height: int = 8, **options: object) -> Panel:
    return Panel(
        "table",
        title,
        [Query(query, "table")],
        width=width,
        height=height,
        options={"showHeader": True, "cellHeight": "sm"},
        **options,  # type: ignore[arg-type]
    )


def _with_thresholds(thresholds: Mapping[tuple[str, str], float], metrics: tuple[str, ...]) -> list[Query]:
    line = sql.threshold_lines(thresholds, metrics)
    return [Query(line, ref_id="T")] if line else []


def fleet_overview() -> Dashboard:
    panels = [
        _stat("Models", sql.FLEET_MODELS, key="fleet_models"),
        _stat(
            "Firing alerts",
            sql.FLEET_FIRING_ALERTS,
            thresholds=[(None, "green"), (1, "red")],
            key="fleet_firing",
        ),
        _stat(
            "Dead-letter share",
            sql.FLEET_DEAD_LETTER_SHARE,
            unit=FRACTION,
            decimals=2,
            thresholds=[(None, "green"), (0.01, "yellow"), (0.05, "red")],
            key="fleet_dead_share",
            description="Dead letters / (dead letters + valid events) in the time range.",
        ),
        _table("Models", sql.FLEET_MODEL_TABLE, width=6, height=4, key="fleet_model_table"),
        _series(
            "Events per second",
            sql.FLEET_EVENTS_PER_SECOND,
            unit="reqps",
            key="fleet_events",
            min_interval="1m",
        ),
        _series(
            "Dead letters per second by error type",
            sql.FLEET_DEAD_LETTERS_PER_SECOND,
            unit="reqps",
            key="fleet_dead_letters",
            min_interval="1m",
        ),
        _series(
            "Invalid events (missing a required feature)",
            sql.FLEET_INVALID_RATE,
            unit=FRACTION,
            key="fleet_invalid",
            min=0,
        ),
        _series(
            "Label coverage",
            sql.FLEET_LABEL_COVERAGE,
            unit=FRACTION,
            key="fleet_label_coverage",
            min=0,
            max=1,
        ),
    ]
    return Dashboard(
        "modelmon-fleet",
        "modelmon / Fleet overview",
        "Every monitored model: traffic, dead letters, invalid events, firing alerts, label coverage.",
        panels,
    )


def model_drift() -> Dashboard:
    heat = {"fillOpacity": 80, "lineWidth": 0}
    panels = [
        Panel(
            "status-history",
            "Drift score per feature (heatmap)",
            [Query(sql.DRIFT_SCORE_HEATMAP)],
            width=24,
            height=10,
            decimals=3,
            thresholds=BAD_HIGH,
            custom=heat,
            options={"showValue": "never", "rowHeight": 0.9, "legend": {"showLegend": True}},
            description="One row per feature, one cell per window: the score of the method that judged "
            "the feature (psi, ks, ...; see the table for the method).",
            key="drift_heatmap",
        ),
        Panel(
            "status-history",
            "Drift verdict per feature",
            [Query(sql.DRIFT_VERDICT_HEATMAP)],
            width=24,
            height=8,
            custom=heat,
            mappings=DRIFTED_MAPPINGS,
            thresholds=[(None, "green"), (1, "red")],
            options={"showValue": "never", "rowHeight": 0.9},
            description="The final, noise-controlled verdict (metric 'drifted').",
            key="drift_verdict",
        ),
        _table("Top drifted features", sql.TOP_DRIFTED_FEATURES, key="drift_top"),
        _series(
            "Share of drifted features",
            sql.DRIFT_SHARE,
            unit=FRACTION,
            min=0,
            max=1,
            thresholds=[(None, "green"), (0.5, "red")],
            key="drift_share",
            threshold_line=True,
        ),
        _series("Prediction drift", sql.PREDICTION_DRIFT, decimals=3, key="drift_prediction"),
        row("Selected features: reference distribution and drift score"),
        Panel(
            "barchart",
            "Reference distribution: ${feature}",
            [Query(sql.REFERENCE_DISTRIBUTION, "table")],
            width=8,
            unit=FRACTION,
            repeat="feature",
            key="drift_reference",
            options={"xField": "bucket", "orientation": "horizontal", "showValue": "never"},
            description="Share of the reference in each bin (numerical) or category, newest reference "
            "of the selected versions.",
        ),
        _series(
            "Drift score: ${feature}",
            sql.SELECTED_FEATURE_DRIFT,
            decimals=3,
            repeat="feature",
            width=8,
            key="drift_selected",
        ),
    ]
    return Dashboard(
        "modelmon-drift",
        "modelmon / Model drift",
        "Per-feature and prediction drift of one model against its reference.",
        panels,
        variables=_model_variables(feature=True),
    )


def model_performance(thresholds: Mapping[tuple[str, str], float]) -> Dashboard:
    panels = [
        _series(
            "Classification: accuracy, precision, recall, F1, ROC AUC",
            sql.PERFORMANCE_CLASSIFICATION,
            unit=FRACTION,
            min=0,
            max=1,
            task="classification",
            key="perf_classification",
            extra=_with_thresholds(thresholds, sql.CLASSIFICATION_METRICS),
        ),
        _series(
            "Classification: log loss",
            sql.PERFORMANCE_LOG_LOSS,
            decimals=3,
            task="classification",
            key="perf_log_loss",
            extra=_with_thresholds(thresholds, ("log_loss",)),
        ),
        _series(
            "Regression: MAE, RMSE",
            sql.PERFORMANCE_REGRESSION,
            task="regression",
            key="perf_regression",
            extra=_with_thresholds(thresholds, sql.REGRESSION_METRICS),
        ),
        _series(
            "Regression: MAPE",
            sql.PERFORMANCE_MAPE,
            unit=FRACTION,
            task="regression",
            key="perf_mape",
            extra=_with_thresholds(thresholds, ("mape",)),
        ),
        _series("Regression: R²", sql.PERFORMANCE_R2, decimals=3, max=1, task="regression", key="perf_r2"),
        _series(
            "Label coverage (labels / events)",
            sql.LABEL_COVERAGE,
            unit=FRACTION,
            min=0,
            max=1,
            key="perf_label_coverage",
        ),
        _series("Label delay", sql.LABEL_DELAY, unit="ms", key="perf_label_delay"),
        _series("Events and labels per second", sql.EVENTS_AND_LABELS, unit="reqps", key="perf_events"),
    ]
    return Dashboard(
        "modelmon-performance",
        "modelmon / Model performance",
        "Realised performance per window, version and segment, from the ground truth joined so far; "
        "dashed lines are the alert thresholds of the model spec, markers the retrain requests.",
        panels,
        variables=_model_variables(feature=False),
        annotations=[Annotation("Retrain requests", sql.RETRAIN_ANNOTATIONS)],
    )


def data_fidelity() -> Dashboard:
    titles = {
        "missing_rate": "Missing values per feature",
        "type_violation_rate": "Type violations per feature",
        "range_violation_rate": "Range violations per feature",
        "unseen_category_rate": "Unseen categories per feature",
    }
    panels = [
        _series(titles[metric], query, unit=FRACTION, min=0, key=f"fidelity_{metric}")
        for metric, query in sql.FIDELITY_FEATURE.items()
    ]
    panels += [
        _series(
            "Schema: events missing a required feature, unknown features, duplicate ids",
            sql.FIDELITY_SCHEMA,
            unit=FRACTION,
            min=0,
            key="fidelity_schema",
        ),
        _series(
            "Lateness (ingest time - event time)", sql.FIDELITY_LATENESS, unit="ms", key="fidelity_lateness"
        ),
        _series(
            "Too late: folded late, and expired (not counted)", sql.FIDELITY_TOO_LATE, key="fidelity_too_late"
        ),
        _table("Worst features", sql.FIDELITY_WORST_FEATURES, key="fidelity_worst"),
        _table("Dead letters by error type (all models)", sql.DEAD_LETTERS_BY_REASON, key="fidelity_dead"),
    ]
    return Dashboard(
        "modelmon-fidelity",
        "modelmon / Data fidelity",
        "Data quality of the logged predictions: missing, out-of-range and wrongly typed values, unseen "
        "categories, schema violations, lateness and dead letters.",
        panels,
        variables=_model_variables(feature=True),
    )


def alerts_and_retraining() -> Dashboard:
    panels = [
        _stat(
            "Firing now",
            sql.FLEET_FIRING_ALERTS,
            thresholds=[(None, "green"), (1, "red")],
            width=12,
            key="alerts_firing_count",
        ),
        _stat("Retrain requests in range", sql.RETRAIN_COUNT, width=12, key="retrain_count"),
        Panel(
            "state-timeline",
            "Alert timeline",
            [Query(sql.ALERT_TIMELINE)],
            width=24,
            height=9,
            mappings=STATE_MAPPINGS,
            custom={"fillOpacity": 80, "lineWidth": 0},
            thresholds=[(None, "green"), (1, "yellow"), (2, "red")],
            options={"showValue": "never", "mergeValues": True, "rowHeight": 0.8},
            description="Each alert (model, rule, feature, segment) over time: pending, firing, resolved.",
            key="alerts_timeline",
        ),
        _table("Firing alerts", sql.ALERTS_FIRING_NOW, width=24, height=6, key="alerts_firing"),
        Panel(
            "timeseries",
            "Alert transitions",
            [Query(sql.ALERT_TRANSITIONS)],
            width=24,
            height=6,
            custom={"drawStyle": "bars", "fillOpacity": 60, "stacking": {"mode": "normal"}},
            key="alerts_transitions",
            min_interval="1m",
        ),
        _table("Alert history", sql.ALERTS_TABLE, width=24, height=10, key="alerts_table"),
        _table("Retrain requests", sql.RETRAIN_TABLE, width=24, height=8, key="retrain_table"),
    ]
    return Dashboard(
        "modelmon-alerts",
        "modelmon / Alerts and retraining",
        "Alert lifecycle (pending, firing, resolved) and the retrain requests it caused.",
        panels,
        variables=[Variable("model", "Model", sql.VAR_ALERT_MODEL, multi=True, include_all=True)],
    )


def build_dashboards(specs: Mapping[str, ModelSpec] | None = None) -> list[Dashboard]:
    """All dashboards, in menu order; alert thresholds from ``specs`` (model id → spec)."""
    thresholds = spec_thresholds(specs or {})
    return [
        fleet_overview(),
        model_drift(),
        model_performance(thresholds),
        data_fidelity(),
        alerts_and_retraining(),
    ]
