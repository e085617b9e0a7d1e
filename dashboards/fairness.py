"""The performance dashboard's Fairness row (docs/fairness.md) and the spec thresholds drawn on it."""

from __future__ import annotations

from collections.abc import Mapping

from dashboards.grafana import Panel, row
from dashboards.panels import FRACTION, table_panel, threshold_queries, timeseries_panel
from dashboards.sql import MODEL, POINTS, names
from modelmon import metrics as m
from modelmon.spec import ModelSpec

# Gaps per attribute (feature = attribute) over time, one series per gap/attribute/version/segment.
FAIRNESS_GAP_SERIES = (
    "SELECT window_start AS time, concat(metric, ' ', feature, ' v', model_version, "
    "if(segment = '', '', concat(' ', segment))) AS series, max(value) AS value "
    f"FROM {POINTS} WHERE {MODEL} AND metric IN ({names(m.FAIRNESS_GAPS)}) "
    "GROUP BY time, series ORDER BY time"
)
# Per group (feature = attribute=group) of the latest window with fairness points: size and rates
# (NULL when the group is too few or the rate undefined).
FAIRNESS_LATEST_GROUPS = (
    "SELECT splitByChar('=', feature, 2)[1] AS attribute, "
    "substring(feature, length(attribute) + 2) AS group, model_version AS version, segment, "
    f"maxIf(value, metric = '{m.FAIRNESS_GROUP_SIZE}') AS size, "
    f"maxIfOrNull(value, metric = '{m.FAIRNESS_SELECTION_RATE}') AS selection_rate, "
    f"maxIfOrNull(value, metric = '{m.FAIRNESS_TPR}') AS tpr, "
    f"maxIfOrNull(value, metric = '{m.FAIRNESS_FPR}') AS fpr, "
    "if(isNull(selection_rate), 'too few', '') AS note "
    f"FROM {POINTS} WHERE {MODEL} AND metric IN ({names(m.FAIRNESS_GROUP_METRICS)}) "
    f"AND window_start = (SELECT max(window_start) FROM {POINTS} WHERE {MODEL} "
    f"AND metric = '{m.FAIRNESS_GROUP_SIZE}') "
    "GROUP BY attribute, group, version, segment ORDER BY attribute, segment, version, group"
)


def fairness_thresholds(specs: Mapping[str, ModelSpec]) -> dict[tuple[str, str], float]:
    """(model, gap) → threshold of the model's first alert rule on that fairness gap (any attribute)."""
    thresholds: dict[tuple[str, str], float] = {}
    for model_id, spec in specs.items():
        for rule in spec.alerts:
            if rule.metric in m.FAIRNESS_GAPS:
                thresholds.setdefault((model_id, rule.metric), float(rule.threshold))
    return thresholds


def fairness_panels(thresholds: Mapping[tuple[str, str], float]) -> list[Panel]:
    """The performance dashboard's Fairness row: gaps over time, per-group rates of the latest window."""
    return [
        row("Fairness: gaps between groups per sensitive attribute (binary classifiers, spec fairness)"),
        timeseries_panel(
            "Fairness gaps: demographic parity, equal opportunity, equalized odds",
            FAIRNESS_GAP_SERIES,
            unit=FRACTION,
            max=1,
            task="classification",
            key="fairness_gaps",
            extra=threshold_queries(thresholds, m.FAIRNESS_GAPS),
            description="Per attribute: max - min selection rate (demographic parity difference), "
            "min / max (ratio), max - min TPR (equal opportunity), max of the TPR and FPR differences "
            "(equalized odds), over the groups with at least min_group_size predictions. 0 (ratio 1) "
            "is parity; dashed lines are the spec's alert thresholds.",
        ),
        table_panel(
            "Fairness: per-group rates of the latest window",
            FAIRNESS_LATEST_GROUPS,
            task="classification",
            key="fairness_groups",
            description="Group size, selection rate, TPR and FPR per attribute and group; 'too few': "
            "fewer than min_group_size predictions, left out of the gaps.",
        ),
    ]
