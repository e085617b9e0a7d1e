"""The SQL of every panel: ClickHouse queries over ``metric_points``, ``alerts``, ``retrain_requests``,
``dead_letters`` and ``reference_profiles``, written with the Grafana ClickHouse plugin's macros.

One place for the queries, so the dashboards (``dashboards.catalog``) and the report without
Grafana (``dashboards.report``) read exactly the same rows. Conventions:

* ``metric_points`` is read with ``FINAL`` (ReplacingMergeTree: a replayed window counts once) and
  only its ``source = 'stage2'`` points (the window totals of stage 2).
* Time series queries return ``time``, optional string label columns and a ``value`` column (long
  format); the plugin turns them into one series per label combination.
* Variables: ``'${model}'`` is a single model; ``${version}``, ``${segment}``, ``${feature}`` are
  multi-value lists the plugin formats as ``'a','b'``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from detectors.drift import methods
from modelmon import metrics as m
from modelmon.references import PREDICTION_FEATURE


def _stats(published: Sequence[str], *stats: str) -> tuple[str, ...]:
    """The published duration metrics of ``stats`` (``"p50"``, ``"max"``, ...).

    >>> _stats(m.LABEL_DELAY_METRICS, "p95", "max")
    ('label_delay_p95_ms', 'label_delay_max_ms')
    """
    by_stat = dict(zip(m.DURATION_STATS, published, strict=True))
    return tuple(by_stat[stat] for stat in stats)


# The panels' selections of the published metric names (modelmon.metrics, docs/metric-names.md).
DRIFT_METRICS = m.DRIFT_METRICS
# Fractions on one panel; log loss, MAPE and R² have panels of their own (other scales).
CLASSIFICATION_METRICS = tuple(name for name in m.CLASSIFICATION_METRICS if name != m.LOG_LOSS)
REGRESSION_METRICS = (m.MAE, m.RMSE)
# Per spec feature; a feature outside the spec shows in the model-level unknown_feature_rate.
FEATURE_RATES = tuple(name for name in m.FEATURE_FIDELITY_METRICS if name != m.UNKNOWN_FEATURE_RATE)
SCHEMA_RATES = (m.REQUIRED_MISSING_EVENT_RATE, m.UNKNOWN_FEATURE_RATE, m.DUPLICATE_RATE)
LATENESS = _stats(m.LATENESS_METRICS, "p50", "p95", "p99", "max")
LABEL_DELAY_METRICS = _stats(m.LABEL_DELAY_METRICS, "p50", "p95", "max")

POINTS = "metric_points FINAL"
STAGE2 = "source = 'stage2' AND $__timeFilter(window_start)"
MODEL = (
    f"{STAGE2} AND model_id = '${{model}}' AND model_version IN (${{version}}) AND segment IN (${{segment}})"
)
FEATURE_FILTER = "$__conditionalAll(feature IN (${feature}), $feature)"
# Series label of a model-level metric: metric, version and segment.
SERIES = "concat(metric, ' v', model_version, if(segment = '', '', concat(' ', segment)))"
# Seconds per window, for rates.
WINDOW_SECONDS = "greatest(dateDiff('millisecond', window_start, window_end) / 1000, 0.001)"


def names(values: Iterable[str]) -> str:
    """A SQL list of string literals.

    >>> names(["psi", "ks"])
    "'psi', 'ks'"
    """
    return ", ".join("'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'" for value in values)


# ----------------------------------------------------------------------------------------------
# Template variables
# ----------------------------------------------------------------------------------------------
VAR_MODEL = f"SELECT DISTINCT model_id FROM {POINTS} WHERE {STAGE2} ORDER BY model_id"
VAR_VERSION = (
    f"SELECT DISTINCT model_version FROM {POINTS} WHERE {STAGE2} AND model_id = '${{model}}' "
    "ORDER BY model_version"
)
VAR_SEGMENT = (
    f"SELECT DISTINCT segment AS value, if(segment = '', '(whole model)', segment) AS text FROM {POINTS} "
    f"WHERE {STAGE2} AND model_id = '${{model}}' ORDER BY segment"
)
VAR_FEATURE = (
    f"SELECT DISTINCT feature FROM {POINTS} WHERE {STAGE2} AND model_id = '${{model}}' "
    f"AND feature NOT IN ('', '{PREDICTION_FEATURE}') "
    f"AND metric NOT IN ({names((*m.FAIRNESS_METRICS, *m.VERSION_METRICS))}) "
    "ORDER BY feature"
)


# ----------------------------------------------------------------------------------------------
# Generic shapes
# ----------------------------------------------------------------------------------------------
def model_series(metrics: Sequence[str]) -> str:
    """Model-level metrics of the selected model over time, one series per metric/version/segment."""
    return (
        f"SELECT window_start AS time, {SERIES} AS series, avg(value) AS value FROM {POINTS} "
        f"WHERE {MODEL} AND feature = '' AND metric IN ({names(metrics)}) "
        "GROUP BY time, series ORDER BY time"
    )


def feature_series(metric: str | Sequence[str], *, where: str = "") -> str:
    """Per-feature metrics of the selected model over time, one series per feature (worst segment)."""
    metrics = [metric] if isinstance(metric, str) else list(metric)
    extra = f" AND {where}" if where else ""
    return (
        f"SELECT window_start AS time, feature, max(value) AS value FROM {POINTS} "
        f"WHERE {MODEL} AND feature NOT IN ('', '{PREDICTION_FEATURE}') AND {FEATURE_FILTER} "
        f"AND metric IN ({names(metrics)}){extra} GROUP BY time, feature ORDER BY time"
    )


def threshold_lines(rules: Mapping[tuple[str, str], float], metrics: Sequence[str]) -> str | None:
    """Horizontal lines at the spec's alert thresholds of ``metrics`` for the selected model.

    ``rules`` maps (model, metric) to a threshold (``dashboards.catalog.spec_thresholds``). ``None``
    when no model has a rule on these metrics.
    """
    rows = [(model, metric, value) for (model, metric), value in sorted(rules.items()) if metric in metrics]
    if not rows:
        return None
    literal = ", ".join(f"({names([m])}, {names([k])}, {float(v)!r})" for m, k, v in rows)
    return (
        "SELECT t AS time, concat(rule.2, ' alert threshold') AS series, rule.3 AS value "
        f"FROM (SELECT arrayJoin([{literal}]) AS rule) "
        "ARRAY JOIN [$__fromTime, $__toTime] AS t "
        "WHERE rule.1 = '${model}' ORDER BY series, time"
    )


# The span of one model's windows (the report's x-axis: from the first window to the last one's end).
MODEL_WINDOW_SPAN = (
    "SELECT min(window_start) AS first_start, max(window_start) AS last_start, max(window_end) AS last_end "
    f"FROM {POINTS} WHERE {STAGE2} AND model_id = '${{model}}'"
)


# ----------------------------------------------------------------------------------------------
# Fleet overview
# ----------------------------------------------------------------------------------------------
FLEET_MODELS = f"SELECT uniqExact(model_id) AS models FROM {POINTS} WHERE {STAGE2} AND metric = '{m.EVENTS}'"
FLEET_EVENTS_PER_SECOND = (
    f"SELECT $__timeInterval(window_start) AS time, model_id, sum(value) / $__interval_s AS value "
    f"FROM {POINTS} WHERE {STAGE2} AND metric = '{m.EVENTS}' AND segment = '' "
    "GROUP BY time, model_id ORDER BY time"
)
FLEET_DEAD_LETTERS_PER_SECOND = (
    "SELECT $__timeInterval(ts) AS time, error_type, count() / $__interval_s AS value "
    "FROM dead_letters FINAL WHERE $__timeFilter(ts) GROUP BY time, error_type ORDER BY time"
)
FLEET_DEAD_LETTER_SHARE = (
    "SELECT dead / greatest(dead + valid, 1) AS dead_letter_share FROM "
    "(SELECT count() AS dead FROM dead_letters FINAL WHERE $__timeFilter(ts)) AS d CROSS JOIN "
    f"(SELECT sum(value) AS valid FROM {POINTS} WHERE {STAGE2} AND metric = '{m.EVENTS}' "
    "AND segment = '') AS v"
)
# The newest state of each alert (by dedup key) is what is firing now.
_LATEST_ALERTS = (
    "SELECT dedup_key, argMax(model_id, ts) AS model_id, argMax(model_version, ts) AS model_version, "
    "argMax(rule, ts) AS rule, argMax(severity, ts) AS severity, argMax(metric, ts) AS metric, "
    "argMax(feature, ts) AS feature, argMax(segment, ts) AS segment, argMax(value, ts) AS value, "
    "argMax(threshold, ts) AS threshold, argMax(state, ts) AS state, max(ts) AS since "
    "FROM alerts FINAL WHERE ts <= $__toTime GROUP BY dedup_key"
)
FLEET_FIRING_ALERTS = f"SELECT count() AS firing FROM ({_LATEST_ALERTS}) WHERE state = 'firing'"
FLEET_INVALID_RATE = (
    "SELECT window_start AS time, model_id, avg(value) AS value "
    f"FROM {POINTS} WHERE {STAGE2} AND segment = '' AND feature = '' "
    f"AND metric = '{m.REQUIRED_MISSING_EVENT_RATE}' GROUP BY time, model_id ORDER BY time"
)
FLEET_LABEL_COVERAGE = (
    "SELECT window_start AS time, model_id, avg(value) AS value "
    f"FROM {POINTS} WHERE {STAGE2} AND segment = '' AND metric = '{m.LABEL_COVERAGE}' "
    "GROUP BY time, model_id ORDER BY time"
)
FLEET_MODEL_TABLE = (
    "SELECT model_id AS model, groupUniqArray(model_version) AS versions, "
    f"toInt64(sumIf(value, metric = '{m.EVENTS}' AND segment = '')) AS events, "
    f"avgIf(value, metric = '{m.LABEL_COVERAGE}' AND segment = '') AS label_coverage, "
    f"argMaxIf(value, window_start, metric = '{m.DRIFT_SHARE}' AND segment = '') AS drift_share, "
    "max(window_end) AS last_window_end "
    f"FROM {POINTS} WHERE {STAGE2} GROUP BY model_id ORDER BY model_id"
)

# ----------------------------------------------------------------------------------------------
# Model drift
# ----------------------------------------------------------------------------------------------
# Drift on one scale, whatever the method: DRIFT_RATIO >= 1 where the point is past its own
# method's line. A distance (psi, wasserstein, ...) drifts when score >= threshold: score / threshold.
# A p-value test (chi_square, ks, ...) drifts when p < threshold, and under noise control only when
# the BH-adjusted p < threshold and effect_size >= min_effect (detectors.drift.report): the smaller
# of log(p) / log(threshold) (0 at p = 1, 1 at p = threshold, higher for smaller p) and
# effect_size / min_effect. So the ratio is >= 1 exactly when the stored verdict is drift, and a
# large chi-square statistic on a huge window with a tiny effect stays below 1. The threshold is
# the one applied (details.threshold), else the method's default. The mapping's home is
# detectors.drift.severity.drift_ratio: stage 2 stores it as details.ratio, read first here.
P_VALUE_METHODS = tuple(name for name, method in methods().items() if method.is_p_value)
_DEFAULT_THRESHOLDS = {name: method.default_threshold for name, method in methods().items()}


def _detail(key: str) -> str:
    return f"JSONExtract(details, {names([key])}, 'Nullable(Float64)')"


_THRESHOLD = (
    f"coalesce({_detail('threshold')}, transform(metric, [{names(_DEFAULT_THRESHOLDS)}], "
    f"[{', '.join(repr(v) for v in _DEFAULT_THRESHOLDS.values())}], nan))"
)
_P_VALUE = f"coalesce({_detail('adjusted_p_value')}, {_detail('p_value')})"
_P_RATIO = f"log(greatest({_P_VALUE}, 1e-300)) / log({_THRESHOLD})"
_EFFECT_RATIO = f"coalesce({_detail('effect_size')} / nullIf({_detail('min_effect')}, 0), inf)"
DRIFT_RATIO = (
    f"coalesce({_detail('ratio')}, "
    f"if(metric IN ({names(P_VALUE_METHODS)}), least({_P_RATIO}, {_EFFECT_RATIO}), "
    f"value / nullIf({_THRESHOLD}, 0)))"
)
# One row per feature and window (worst segment), the model output (__prediction__) included.
DRIFT_RATIO_HEATMAP = (
    f"SELECT window_start AS time, feature, max({DRIFT_RATIO}) AS value FROM {POINTS} "
    f"WHERE {MODEL} AND feature != '' AND (feature = '{PREDICTION_FEATURE}' OR {FEATURE_FILTER}) "
    f"AND metric IN ({names(DRIFT_METRICS)}) GROUP BY time, feature ORDER BY time"
)
DRIFT_VERDICT_HEATMAP = feature_series(m.DRIFTED)
DRIFT_SHARE = model_series([m.DRIFT_SHARE])
PREDICTION_DRIFT = (
    f"SELECT window_start AS time, concat(metric, ' v', model_version) AS series, max(value) AS value "
    f"FROM {POINTS} WHERE {MODEL} AND feature = '{PREDICTION_FEATURE}' "
    f"AND metric IN ({names(DRIFT_METRICS)}) GROUP BY time, series ORDER BY time"
)
TOP_DRIFTED_FEATURES = (
    f"SELECT feature, countIf(metric = '{m.DRIFTED}' AND value > 0) AS drifted_windows, "
    f"countIf(metric = '{m.DRIFTED}') AS windows, drifted_windows / greatest(windows, 1) AS drifted_share, "
    f"argMaxIf(metric, window_start, metric IN ({names(DRIFT_METRICS)})) AS method, "
    f"argMaxIf(value, window_start, metric IN ({names(DRIFT_METRICS)})) AS last_score "
    f"FROM {POINTS} WHERE {MODEL} AND feature != '' AND {FEATURE_FILTER} "
    "GROUP BY feature HAVING windows > 0 ORDER BY drifted_share DESC, last_score DESC, feature LIMIT 20"
)
# What moved in the latest window (streams.attribution: details.attribution of the model-level
# points): the features ranked by drift ratio x importance weight (from drift_share), and the
# segments ranked by contribution to the primary performance metric (accuracy, or mae).
_LATEST_MODEL_POINT = (
    f"FROM {POINTS} WHERE {STAGE2} AND model_id = '${{model}}' AND model_version IN (${{version}}) "
    "AND segment = '' AND feature = '' AND metric IN (METRICS) "
    "ORDER BY window_start DESC, model_version DESC LIMIT 1"
)
_LINE = "JSONExtract(line, '{key}', 'Nullable(Float64)') AS {name}"
WHAT_MOVED_FEATURES = (
    "SELECT rank, JSONExtractString(line, 'feature') AS feature, "
    "JSONExtractString(line, 'method') AS method, "
    + ", ".join(_LINE.format(key=k, name=n) for k, n in
                (("ratio", "score_over_threshold"), ("importance", "importance"), ("weighted", "weighted")))
    + ", JSONExtractString(line, 'importance_source') AS importance_from "
    "FROM (SELECT JSONExtractArrayRaw(details, 'attribution', 'features') AS lines "
    + _LATEST_MODEL_POINT.replace("METRICS", names([m.DRIFT_SHARE]))
    + ") ARRAY JOIN lines AS line, arrayEnumerate(lines) AS rank ORDER BY rank"
)  # fmt: skip
WHAT_MOVED_SEGMENTS = (
    "SELECT rank, JSONExtractString(line, 'segment') AS segment, "
    "JSONExtractString(line, 'metric') AS metric, "
    + ", ".join(_LINE.format(key=k, name=k) for k in ("value", "baseline", "share", "contribution"))
    + " FROM (SELECT JSONExtractArrayRaw(details, 'attribution', 'segments') AS lines "
    + _LATEST_MODEL_POINT.replace("METRICS", names([m.ACCURACY, m.MAE]))
    + ") ARRAY JOIN lines AS line, arrayEnumerate(lines) AS rank ORDER BY rank"
)  # fmt: skip
# The newest stored reference of the selected versions, as (bucket, share) rows: bins of a
# numerical feature labelled by their edges, categories of a categorical one.
REFERENCE_DISTRIBUTION = (
    "WITH latest AS (SELECT profile FROM reference_profiles FINAL WHERE model_id = '${model}' "
    "AND model_version IN (${version}) AND feature = '${feature}' ORDER BY created_at DESC LIMIT 1), "
    "JSONExtractString(profile, 'profile', 'kind') AS kind, "
    "JSONExtract(profile, 'profile', 'inner_edges', 'Array(Float64)') AS edges, "
    "JSONExtract(profile, 'profile', 'bin_counts', 'Array(Float64)') AS bins, "
    "JSONExtract(profile, 'profile', 'categories', 'Array(String)') AS categories, "
    "JSONExtract(profile, 'profile', 'category_counts', 'Array(Float64)') AS category_counts, "
    "if(kind = 'numerical', arrayMap(i -> multiIf(i = 1, concat('< ', toString(round(edges[1], 3))), "
    "i = length(bins), concat('>= ', toString(round(edges[i - 1], 3))), "
    "concat('[', toString(round(edges[i - 1], 3)), ', ', toString(round(edges[i], 3)), ')')), "
    "arrayEnumerate(bins)), "
    "categories) AS labels, if(kind = 'numerical', bins, category_counts) AS counts "
    "SELECT pair.1 AS bucket, pair.2 / greatest(arraySum(counts), 1) AS reference_share "
    "FROM latest ARRAY JOIN arrayZip(labels, counts) AS pair"
)
SELECTED_FEATURE_DRIFT = (
    f"SELECT window_start AS time, concat(metric, ' v', model_version) AS series, max(value) AS value "
    f"FROM {POINTS} WHERE {MODEL} AND feature = '${{feature}}' AND metric IN ({names(DRIFT_METRICS)}) "
    "GROUP BY time, series ORDER BY time"
)

# ----------------------------------------------------------------------------------------------
# Model performance
# ----------------------------------------------------------------------------------------------
PERFORMANCE_CLASSIFICATION = model_series(CLASSIFICATION_METRICS)
PERFORMANCE_LOG_LOSS = model_series([m.LOG_LOSS])
PERFORMANCE_REGRESSION = model_series(REGRESSION_METRICS)
PERFORMANCE_MAPE = model_series([m.MAPE])
PERFORMANCE_R2 = model_series([m.R2])
LABEL_COVERAGE = model_series([m.LABEL_COVERAGE])
LABEL_DELAY = model_series(LABEL_DELAY_METRICS)
# Estimated vs realized (issue #15): per estimated metric, the estimate, its 95 % band, the realized
# value and |estimated - realized|, for one version (the panel repeats per version) of the whole
# model. The series have fixed names, so the panel's band override (fillBelowTo) can name them.
ESTIMATE_SERIES = ("estimated", "band lower", "band upper", "realized", "estimation error")


def estimate_series(metric: str) -> str:
    """The estimated-vs-realized rows of ``metric`` (time, series of ``ESTIMATE_SERIES``, value)."""
    family = [m.estimated(metric), m.estimated_lower(metric), m.estimated_upper(metric), metric]
    family.append(m.estimation_error(metric))
    return (
        f"SELECT window_start AS time, transform(metric, [{names(family)}], [{names(ESTIMATE_SERIES)}], '') "
        f"AS series, avg(value) AS value FROM {POINTS} WHERE {STAGE2} AND model_id = '${{model}}' "
        f"AND model_version = '${{version}}' AND segment = '' AND feature = '' "
        f"AND metric IN ({names(family)}) GROUP BY time, series ORDER BY time"
    )


ESTIMATED = {metric: estimate_series(metric) for metric in m.ESTIMATED_METRICS}
EVENTS_AND_LABELS = (
    f"SELECT window_start AS time, {SERIES} AS series, sum(value) / any({WINDOW_SECONDS}) AS value "
    f"FROM {POINTS} WHERE {MODEL} AND feature = '' AND metric IN ({names([m.EVENTS, m.LABELS])}) "
    "GROUP BY time, series ORDER BY time"
)
RETRAIN_ANNOTATIONS = (
    "SELECT requested_at AS time, concat('retrain requested: ', reason) AS text, "
    "[model_id, model_version] AS tags FROM retrain_requests FINAL "
    "WHERE model_id = '${model}' AND $__timeFilter(requested_at) ORDER BY time"
)

# ----------------------------------------------------------------------------------------------
# Data fidelity
# ----------------------------------------------------------------------------------------------
FIDELITY_FEATURE = {metric: feature_series(metric) for metric in FEATURE_RATES}
FIDELITY_SCHEMA = model_series(SCHEMA_RATES)
FIDELITY_LATENESS = model_series(LATENESS)
# Events stage 2 could not apply (window older than the retention when they came: never silent),
# summed over the chunks that reported them, beside the predictions folded in late (still counted).
FIDELITY_TOO_LATE = (
    "SELECT window_start AS time, concat(metric, ' v', model_version) AS series, sum(value) AS value "
    f"FROM {POINTS} WHERE $__timeFilter(window_start) AND model_id = '${{model}}' "
    "AND model_version IN (${version}) AND segment = '' AND ((source LIKE 'expired|%' AND metric IN "
    f"({names([m.EXPIRED_EVENTS, m.EXPIRED_LABELS])})) "
    f"OR (source = 'stage2' AND metric = '{m.LATE_EVENTS}')) "
    "GROUP BY time, series ORDER BY time"
)
FIDELITY_WORST_FEATURES = (
    "SELECT feature, metric, max(value) AS worst, avg(value) AS mean FROM "
    f"{POINTS} WHERE {MODEL} AND feature NOT IN ('', '{PREDICTION_FEATURE}') AND {FEATURE_FILTER} "
    f"AND metric IN ({names(FEATURE_RATES)}) GROUP BY feature, metric HAVING worst > 0 "
    "ORDER BY worst DESC, feature, metric LIMIT 30"
)
DEAD_LETTERS_BY_REASON = (
    "SELECT error_type, topic, count() AS letters, any(reason) AS example_reason, max(ts) AS last_seen "
    "FROM dead_letters FINAL WHERE $__timeFilter(ts) GROUP BY error_type, topic ORDER BY letters DESC"
)

# ----------------------------------------------------------------------------------------------
# Alerts and retrain events (columns of sinks/migrations/0001_initial_tables.sql)
# ----------------------------------------------------------------------------------------------
ALERT_STATE_VALUE = "multiIf(state = 'firing', 2, state = 'pending', 1, 0)"
# Each alert's state changes (ts is the event time of the deciding window's end), then one empty
# (NULL) point at its model's last window end when that is later than the alert's last change: an
# alert still pending or firing is drawn up to the end of the data, not to "now".
ALERT_TIMELINE = (
    "WITH changes AS (SELECT ts AS time, model_id, concat(model_id, ' ', rule, "
    "if(feature = '', '', concat(' ', feature)), if(segment = '', '', concat(' ', segment))) AS alert, "
    f"toNullable({ALERT_STATE_VALUE}) AS value "
    "FROM alerts FINAL WHERE $__timeFilter(ts) AND model_id IN (${model})) "
    "SELECT time, alert, value FROM (SELECT time, alert, value FROM changes UNION ALL "
    "SELECT ends.last_end AS time, c.alert AS alert, NULL AS value FROM "
    "(SELECT model_id, alert, max(time) AS last_change FROM changes GROUP BY model_id, alert) AS c "
    f"INNER JOIN (SELECT model_id, max(window_end) AS last_end FROM {POINTS} WHERE {STAGE2} "
    "AND model_id IN (${model}) GROUP BY model_id) AS ends ON c.model_id = ends.model_id "
    "WHERE ends.last_end > c.last_change) ORDER BY time, alert"
)
ALERTS_FIRING_NOW = (
    "SELECT since, model_id, model_version, rule, severity, metric, feature, segment, value, threshold "
    f"FROM ({_LATEST_ALERTS}) WHERE state = 'firing' AND model_id IN (${{model}}) ORDER BY since DESC"
)
ALERTS_TABLE = (
    "SELECT ts, model_id, model_version, rule, state, severity, metric, feature, segment, value, threshold, "
    "message FROM alerts FINAL WHERE $__timeFilter(ts) AND model_id IN (${model}) ORDER BY ts DESC LIMIT 500"
)
ALERT_TRANSITIONS = (
    "SELECT $__timeInterval(ts) AS time, state, count() AS value FROM alerts FINAL "
    "WHERE $__timeFilter(ts) AND model_id IN (${model}) GROUP BY time, state ORDER BY time"
)
RETRAIN_TABLE = (
    "SELECT requested_at, model_id, model_version, reason, length(alert_ids) AS alerts, idempotency_key, "
    "request_id FROM retrain_requests FINAL WHERE $__timeFilter(requested_at) AND model_id IN (${model}) "
    "ORDER BY requested_at DESC LIMIT 500"
)
RETRAIN_COUNT = (
    "SELECT count() AS retrain_requests FROM retrain_requests FINAL "
    "WHERE $__timeFilter(requested_at) AND model_id IN (${model})"
)
VAR_ALERT_MODEL = (
    "SELECT DISTINCT model_id FROM (SELECT model_id FROM alerts FINAL WHERE $__timeFilter(ts) "
    "UNION ALL SELECT model_id FROM retrain_requests FINAL WHERE $__timeFilter(requested_at) "
    f"UNION ALL SELECT model_id FROM {POINTS} WHERE {STAGE2}) ORDER BY model_id"
)
