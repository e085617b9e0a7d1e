"""The modelmon dashboards: fleet overview, model drift, model performance, data fidelity, alerts, versions.

``build_dashboards(specs)`` returns them in a fixed order with fixed uids (``modelmon-*``), so an
upload replaces the previous version and the provisioned JSON files keep their names. The model
specs only contribute the alert thresholds drawn on the performance panels (``spec_thresholds``);
without specs the dashboards are the same minus those lines.
"""

from __future__ import annotations

from collections.abc import Mapping

from dashboards import sql
from dashboards.fairness import fairness_panels, fairness_thresholds
from dashboards.grafana import Annotation, Dashboard, Panel, Query, Variable, row
from dashboards.panels import (
    DRIFT_RATIO_STEPS,
    DRIFTED_MAPPINGS,
    FRACTION,
    QUANTILE_STYLES,
    STATE_MAPPINGS,
    estimate_panel,
    model_variables,
    stat_panel,
    table_panel,
    threshold_queries,
    timeseries_panel,
)
from dashboards.versions import versions_dashboard
from modelmon import metrics as m
from modelmon.spec import ModelSpec


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


def fleet_overview() -> Dashboard:
    panels = [
        stat_panel("Models monitored", sql.FLEET_MODELS, key="fleet_models"),
        stat_panel(
            "Firing alerts",
            sql.FLEET_FIRING_ALERTS,
            thresholds=[(None, "green"), (1, "red")],
            key="fleet_firing",
        ),
        stat_panel(
            "Dead-letter share",
            sql.FLEET_DEAD_LETTER_SHARE,
            unit=FRACTION,
            decimals=2,
            thresholds=[(None, "green"), (0.01, "yellow"), (0.05, "red")],
            key="fleet_dead_share",
            description="Dead letters / (dead letters + valid events) in the time range.",
        ),
        table_panel("Model summary", sql.FLEET_MODEL_TABLE, width=6, height=4, key="fleet_model_table"),
        timeseries_panel(
            "Events per second",
            sql.FLEET_EVENTS_PER_SECOND,
            unit="reqps",
            key="fleet_events",
            min_interval="1m",
        ),
        timeseries_panel(
            "Dead letters per second by error type",
            sql.FLEET_DEAD_LETTERS_PER_SECOND,
            unit="reqps",
            key="fleet_dead_letters",
            min_interval="1m",
        ),
        timeseries_panel(
            "Invalid events (missing a required feature)",
            sql.FLEET_INVALID_RATE,
            unit=FRACTION,
            key="fleet_invalid",
            min=0,
        ),
        timeseries_panel(
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
            "Drift per feature: score ÷ threshold (1 = drift line)",
            [Query(sql.DRIFT_RATIO_HEATMAP)],
            width=24,
            height=10,
            decimals=2,
            min=0,
            max=2,
            thresholds=DRIFT_RATIO_STEPS,
            custom=heat,
            options={"showValue": "never", "rowHeight": 0.9, "legend": {"showLegend": True}},
            description="One row per feature (and __prediction__, the model output), one cell per window: "
            "how far the feature is from its own method's drift line. Distances (psi, wasserstein, ...): "
            "score / threshold; p-value tests (chi_square, ks, ...): log(p) / log(threshold), capped by "
            "effect size / minimum effect (noise control). 1 or more (red) is exactly the stored verdict "
            "'drifted'; the same colours for every method.",
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
        table_panel("Top drifted features", sql.TOP_DRIFTED_FEATURES, key="drift_top"),
        table_panel(
            "What moved (latest window): features",
            sql.WHAT_MOVED_FEATURES,
            key="drift_what_moved",
            description="The attribution alerts carry: features ranked by score ÷ threshold x importance "
            "weight (importance ÷ the mean importance; from the spec, else mutual information with the "
            "label on the reference, else equal). docs/alerts.md#attribution",
        ),
        timeseries_panel(
            "Share of drifted features",
            sql.DRIFT_SHARE,
            unit=FRACTION,
            min=0,
            max=1,
            thresholds=[(None, "green"), (0.5, "red")],
            key="drift_share",
            threshold_line=True,
        ),
        timeseries_panel("Prediction drift", sql.PREDICTION_DRIFT, decimals=3, key="drift_prediction"),
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
        timeseries_panel(
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
        variables=model_variables(feature=True),
    )


def model_performance(thresholds: Mapping[tuple[str, str], float]) -> Dashboard:
    panels = [
        timeseries_panel(
            "Classification: accuracy, precision, recall, F1, ROC AUC",
            sql.PERFORMANCE_CLASSIFICATION,
            unit=FRACTION,
            min=0,
            max=1,
            task="classification",
            key="perf_classification",
            extra=threshold_queries(thresholds, sql.CLASSIFICATION_METRICS),
        ),
        timeseries_panel(
            "Classification: log loss",
            sql.PERFORMANCE_LOG_LOSS,
            decimals=3,
            task="classification",
            key="perf_log_loss",
            extra=threshold_queries(thresholds, ("log_loss",)),
        ),
        timeseries_panel(
            "Regression: MAE, RMSE",
            sql.PERFORMANCE_REGRESSION,
            task="regression",
            key="perf_regression",
            extra=threshold_queries(thresholds, sql.REGRESSION_METRICS),
        ),
        timeseries_panel(
            "Regression: MAPE",
            sql.PERFORMANCE_MAPE,
            unit=FRACTION,
            task="regression",
            key="perf_mape",
            extra=threshold_queries(thresholds, ("mape",)),
        ),
        timeseries_panel(
            "Regression: R²", sql.PERFORMANCE_R2, decimals=3, max=1, task="regression", key="perf_r2"
        ),
        timeseries_panel(
            "Label coverage (labels / events)",
            sql.LABEL_COVERAGE,
            unit=FRACTION,
            min=0,
            max=1,
            key="perf_label_coverage",
        ),
        timeseries_panel(
            "Label delay", sql.LABEL_DELAY, unit="ms", styles=QUANTILE_STYLES, key="perf_label_delay"
        ),
        timeseries_panel(
            "Events and labels per second", sql.EVENTS_AND_LABELS, unit="reqps", key="perf_events"
        ),
        table_panel(
            "What moved (latest window): segments",
            sql.WHAT_MOVED_SEGMENTS,
            key="perf_what_moved",
            description="Segments ranked by their contribution to the model's accuracy (MAE for "
            "regression): share of labelled events x (segment value - model value in the window), "
            "the worst first. docs/alerts.md#attribution",
        ),
        row("Estimated vs realized: performance before the labels arrive (classification)"),
        *(estimate_panel(metric, thresholds) for metric in m.ESTIMATED_METRICS),
        *fairness_panels(thresholds),
    ]
    return Dashboard(
        "modelmon-performance",
        "modelmon / Model performance",
        "Realised performance per window, version and segment, from the ground truth joined so far, "
        "and the performance estimated from the scores before labels exist (with its band); "
        "dashed lines are the alert thresholds of the model spec, markers the retrain requests.",
        panels,
        variables=model_variables(feature=False),
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
        timeseries_panel(titles[metric], query, unit=FRACTION, min=0, key=f"fidelity_{metric}")
        for metric, query in sql.FIDELITY_FEATURE.items()
    ]
    panels += [
        timeseries_panel(
            "Schema: events missing a required feature, unknown features, duplicate ids",
            sql.FIDELITY_SCHEMA,
            unit=FRACTION,
            min=0,
            key="fidelity_schema",
        ),
        timeseries_panel(
            "Lateness (ingest time - event time)",
            sql.FIDELITY_LATENESS,
            unit="ms",  # Grafana scales milliseconds to s, min, h for the axis
            styles=QUANTILE_STYLES,
            key="fidelity_lateness",
        ),
        timeseries_panel(
            "Too late: folded late, and expired (not counted)", sql.FIDELITY_TOO_LATE, key="fidelity_too_late"
        ),
        table_panel("Worst features", sql.FIDELITY_WORST_FEATURES, key="fidelity_worst"),
        table_panel(
            "Dead letters by error type (all models)", sql.DEAD_LETTERS_BY_REASON, key="fidelity_dead"
        ),
    ]
    return Dashboard(
        "modelmon-fidelity",
        "modelmon / Data fidelity",
        "Data quality of the logged predictions: missing, out-of-range and wrongly typed values, unseen "
        "categories, schema violations, lateness and dead letters.",
        panels,
        variables=model_variables(feature=True),
    )


def alerts_and_retraining() -> Dashboard:
    panels = [
        stat_panel(
            "Firing now",
            sql.FLEET_FIRING_ALERTS,
            thresholds=[(None, "green"), (1, "red")],
            width=12,
            key="alerts_firing_count",
        ),
        stat_panel("Retrain requests in range", sql.RETRAIN_COUNT, width=12, key="retrain_count"),
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
            description="Each alert (model, rule, feature, segment) over time: yellow while pending, red "
            "while firing, nothing once resolved; an open alert is drawn up to its model's last window.",
            key="alerts_timeline",
        ),
        table_panel("Firing alerts", sql.ALERTS_FIRING_NOW, width=24, height=6, key="alerts_firing"),
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
        table_panel("Alert history", sql.ALERTS_TABLE, width=24, height=10, key="alerts_table"),
        table_panel("Retrain requests", sql.RETRAIN_TABLE, width=24, height=8, key="retrain_table"),
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
    thresholds = spec_thresholds(specs or {}) | fairness_thresholds(specs or {})
    return [
        fleet_overview(),
        model_drift(),
        model_performance(thresholds),
        data_fidelity(),
        alerts_and_retraining(),
        versions_dashboard(),  # issue #16: champion/challenger (dashboards.versions)
    ]
