"""The "Versions" dashboard (champion/challenger, issue #16) and its SQL.

Two single-value pickers choose the champion (A) and the challenger (B) of one model; every panel
reads the whole model (``segment = ''``) and only the windows where both versions have points.

Accuracy is compared as two proportions (``detectors.versions``): per window the counts are
``successes = round(accuracy * n)`` and ``n`` (the labelled events of the accuracy point, its
``details.n``). The SQL computes the same statistics as ``detectors.versions.compare_proportions``
(pooled two-proportion z-test, two-sided p-value, Newcombe hybrid score interval at 95 %), per
window and summed over the windows of the time range; the tests check both against each other.
Binary precision and recall are tested the same way with their own denominators (``details.denominator``:
predicted positives, actual positives; ``RATES_ACCUMULATED``). The other metrics are shown side by
side with their difference and no test: F1, ROC AUC, log loss, macro-averaged precision and recall
and the regression errors are not one proportion of one denominator.

Stage 2 also compares the two versions window by window (``streams.version_pairs``): the p-value of
"same prediction distribution" (``version_prediction_drift``) and the agreement on shared requests
(``version_agreement``). Those points are stored under the later version of the pair with
``feature = 'versus=<earlier>'``; ``_VERSUS`` selects them whichever of A and B sorts later.
"""

from __future__ import annotations

from scipy.stats import norm

from dashboards.grafana import Dashboard, Variable
from dashboards.panels import FRACTION, table_panel, timeseries_panel
from dashboards.sql import DRIFT_METRICS, POINTS, STAGE2, names
from modelmon import metrics as m
from modelmon.references import PREDICTION_FEATURE

LEVEL = 0.95
Z = float(norm.ppf(0.5 + LEVEL / 2))  # 1.959963984540054

VAR_CHAMPION = (
    f"SELECT DISTINCT model_version FROM {POINTS} WHERE {STAGE2} AND model_id = '${{model}}' "
    "ORDER BY model_version"
)
# Every other version; Grafana's default is the first option, so A = the lowest version, B = the next.
VAR_CHALLENGER = (
    f"SELECT DISTINCT model_version FROM {POINTS} WHERE {STAGE2} AND model_id = '${{model}}' "
    "AND model_version != '${champion}' ORDER BY model_version"
)

_PAIR = (
    f"{STAGE2} AND model_id = '${{model}}' AND model_version IN ('${{champion}}', '${{challenger}}') "
    "AND segment = '' AND feature = ''"
)


def _window_counts(metrics: tuple[str, ...], denominator: str) -> str:
    """Per window and metric where both versions have a denominator: successes and n of A and B."""
    n = f"JSONExtract(details, '{denominator}', 'Nullable(Float64)')"
    return (
        "SELECT window_start AS time, metric, "
        "sumIf(successes, model_version = '${champion}') AS sa, "
        "sumIf(n, model_version = '${champion}') AS na, "
        "sumIf(successes, model_version = '${challenger}') AS sb, "
        "sumIf(n, model_version = '${challenger}') AS nb "
        f"FROM (SELECT window_start, model_version, metric, {n} AS n, round(value * n) AS successes "
        f"FROM {POINTS} WHERE {_PAIR} AND metric IN ({names(metrics)}) AND n > 0) "
        "GROUP BY time, metric HAVING na > 0 AND nb > 0"
    )


WINDOW_COUNTS = f"SELECT time, sa, na, sb, nb FROM ({_window_counts((m.ACCURACY,), 'n')}) ORDER BY time"
"""Per window where both versions have labels: accuracy successes and n of A (champion) and B."""
RATE_METRICS = (m.PRECISION, m.RECALL)
RATE_COUNTS = f"SELECT * FROM ({_window_counts(RATE_METRICS, 'denominator')}) ORDER BY metric, time"
"""Per window and metric (binary precision, recall) where both versions stored the denominator."""


def _wilson(p: str, n: str, bound: str) -> str:
    centre = f"({p} + {Z * Z / 2!r} / {n}) / (1 + {Z * Z!r} / {n})"
    half = f"{Z!r} * sqrt({p} * (1 - {p}) / {n} + {Z * Z / 4!r} / ({n} * {n})) / (1 + {Z * Z!r} / {n})"
    return f"greatest(0, {centre} - {half})" if bound == "lower" else f"least(1, {centre} + {half})"


# The comparison columns over columns sa, na, sb, nb (as compare_proportions computes them).
COMPARISON = (
    "sa / na AS pa, sb / nb AS pb, pb - pa AS difference, "
    "(sa + sb) / (na + nb) AS pooled, sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb)) AS se, "
    "if(se > 0, difference / se, 0) AS z, erfc(abs(z) / sqrt(2)) AS p_value, "
    f"difference - sqrt(pow(pb - {_wilson('pb', 'nb', 'lower')}, 2) "
    f"+ pow({_wilson('pa', 'na', 'upper')} - pa, 2)) AS lower, "
    f"difference + sqrt(pow({_wilson('pb', 'nb', 'upper')} - pb, 2) "
    f"+ pow(pa - {_wilson('pa', 'na', 'lower')}, 2)) AS upper"
)

ACCURACY_BY_VERSION = (
    "SELECT window_start AS time, concat('v', model_version, "
    "if(model_version = '${champion}', ' (A, champion)', ' (B, challenger)')) AS series, "
    f"avg(value) AS value FROM {POINTS} WHERE {_PAIR} AND metric = '{m.ACCURACY}' "
    f"AND window_start IN (SELECT time FROM ({WINDOW_COUNTS})) GROUP BY time, series ORDER BY time"
)
DIFFERENCE_PER_WINDOW = (
    "SELECT time, series, value FROM ("
    f"SELECT time, {COMPARISON} FROM ({WINDOW_COUNTS})) "
    "ARRAY JOIN ['B - A', 'interval lower', 'interval upper'] AS series, "
    "[difference, lower, upper] AS value ORDER BY time"
)
P_VALUE_PER_WINDOW = (
    f"SELECT time, 'p-value (one window)' AS series, p_value AS value FROM ("
    f"SELECT time, {COMPARISON} FROM ({WINDOW_COUNTS})) ORDER BY time"
)
_VERDICT = (
    f"if(p_value < {1 - LEVEL!r}, if(difference > 0, 'B better', 'B worse'), 'no significant difference') "
    "AS verdict"
)
_SUMS = "count() AS windows, sum(sa) AS sa, sum(na) AS na, sum(sb) AS sb, sum(nb) AS nb"
ACCUMULATED = (
    "SELECT windows, na AS n_a, nb AS n_b, pa AS accuracy_a, pb AS accuracy_b, difference, lower, upper, "
    f"z, p_value, {_VERDICT} FROM (SELECT windows, sa, na, sb, nb, {COMPARISON} FROM ("
    f"SELECT {_SUMS} FROM ({WINDOW_COUNTS})))"
)
"""The counts of every window of the time range summed, then compared: the verdict."""
RATES_ACCUMULATED = (
    "SELECT metric, windows, na AS n_a, nb AS n_b, pa AS A_champion, pb AS B_challenger, difference, "
    f"lower, upper, z, p_value, {_VERDICT} FROM (SELECT metric, windows, sa, na, sb, nb, {COMPARISON} "
    f"FROM (SELECT metric, {_SUMS} FROM ({RATE_COUNTS}) GROUP BY metric)) ORDER BY metric"
)
"""As ``ACCUMULATED``, one row per metric: binary precision and recall, of their own denominators."""
RATE_DENOMINATORS = (
    "SELECT metric, countIf(has_denominator) AS with_denominator, "
    "countIf(average != 'macro' AND NOT has_denominator) AS without_denominator, "
    "countIf(average = 'macro') AS macro FROM (SELECT metric, JSONHas(details, 'denominator') "
    "AS has_denominator, JSONExtractString(details, 'average') AS average "
    f"FROM {POINTS} WHERE {_PAIR} AND metric IN ({names(RATE_METRICS)})) GROUP BY metric"
)
"""Precision and recall points of A and B with and without a stored denominator, and macro ones."""

SIDE_BY_SIDE_METRICS = (m.EVENTS, m.LABELS, *m.CLASSIFICATION_METRICS, *m.REGRESSION_METRICS)
SIDE_BY_SIDE = (
    "SELECT metric, avgIf(value, model_version = '${champion}') AS A_champion, "
    "avgIf(value, model_version = '${challenger}') AS B_challenger, B_challenger - A_champion AS difference "
    f"FROM {POINTS} WHERE {_PAIR} AND metric IN ({names(SIDE_BY_SIDE_METRICS)}) "
    f"AND window_start IN (SELECT window_start FROM {POINTS} WHERE {_PAIR} "
    "AND model_version = '${challenger}') AND window_start IN (SELECT window_start FROM "
    f"{POINTS} WHERE {_PAIR} AND model_version = '${{champion}}') "
    f"GROUP BY metric ORDER BY indexOf([{names(SIDE_BY_SIDE_METRICS)}], metric)"
)
"""Mean per window of each model-level metric over the windows both versions share."""

PREDICTION_DRIFT_BY_VERSION = (
    "SELECT window_start AS time, concat(metric, ' v', model_version) AS series, max(value) AS value "
    f"FROM {POINTS} WHERE {STAGE2} AND model_id = '${{model}}' "
    "AND model_version IN ('${champion}', '${challenger}') AND segment = '' "
    f"AND feature = '{PREDICTION_FEATURE}' AND metric IN ({names(DRIFT_METRICS)}) "
    "GROUP BY time, series ORDER BY time"
)


_VERSUS = (
    f"{STAGE2} AND model_id = '${{model}}' AND segment = '' AND ("
    f"(model_version = '${{challenger}}' AND feature = '{m.VERSUS_PREFIX}${{champion}}') OR "
    f"(model_version = '${{champion}}' AND feature = '{m.VERSUS_PREFIX}${{challenger}}'))"
)
PAIR_DRIFT = (
    "SELECT window_start AS time, 'p-value: same prediction distribution' AS series, max(value) AS value "
    f"FROM {POINTS} WHERE {_VERSUS} AND metric = '{m.VERSION_PREDICTION_DRIFT}' GROUP BY time ORDER BY time"
)
AGREEMENT = (
    "SELECT time, series, value FROM (SELECT window_start AS time, max(value) AS share, "
    "max(JSONExtract(details, 'lower', 'Nullable(Float64)')) AS lower, "
    "max(JSONExtract(details, 'upper', 'Nullable(Float64)')) AS upper "
    f"FROM {POINTS} WHERE {_VERSUS} AND metric = '{m.VERSION_AGREEMENT}' GROUP BY time) "
    "ARRAY JOIN ['agreement', 'interval lower', 'interval upper'] AS series, [share, lower, upper] AS value "
    "ORDER BY time"
)
_DRIFT, _AGREE = f"metric = '{m.VERSION_PREDICTION_DRIFT}'", f"metric = '{m.VERSION_AGREEMENT}'"
PAIR_SUMMARY = (
    f"SELECT countIf({_DRIFT}) AS drift_windows, countIf({_DRIFT} AND is_drifted) / drift_windows "
    f"AS drifted_share, argMaxIf(value, window_start, {_DRIFT}) AS latest_p_value, "
    f"countIf({_AGREE}) AS agreement_windows, sumIf(pairs, {_AGREE}) AS matched, "
    f"sumIf(same, {_AGREE}) / matched AS agreement "
    "FROM (SELECT window_start, metric, value, JSONExtractBool(details, 'drifted') AS is_drifted, "
    "JSONExtract(details, 'matched', 'Float64') AS pairs, JSONExtract(details, 'agreed', 'Float64') AS same "
    f"FROM {POINTS} WHERE {_VERSUS} AND ({_DRIFT} OR {_AGREE}))"
)
"""Over the time range: windows compared, share drifted, latest p-value; agreement weighted by matched."""


def versions_dashboard() -> Dashboard:
    panels = [
        table_panel(
            "Accuracy, B against A over the time range (pooled z-test, Newcombe 95 % interval)",
            ACCUMULATED,
            width=24,
            height=4,
            task="classification",
            key="versions_accumulated",
            description="Correct predictions and labelled events of every window both versions share, "
            "summed, then compared as two proportions: difference B - A, its 95 % interval (Newcombe), "
            "z and two-sided p-value of the pooled two-proportion z-test. Assumes independent events.",
        ),
        table_panel(
            "Precision and recall (binary), B against A over the time range (pooled z-test, Newcombe 95 %)",
            RATES_ACCUMULATED,
            width=24,
            height=4,
            task="classification",
            key="versions_rates_accumulated",
            description="As the accuracy table, for binary precision (of the predicted positives) and "
            "recall (of the actual positives). Points stored without their denominator (before it was "
            "recorded) and macro-averaged multiclass ones are not tested.",
        ),
        timeseries_panel(
            "Accuracy per window: A and B",
            ACCURACY_BY_VERSION,
            unit=FRACTION,
            max=1,
            task="classification",
            key="versions_accuracy",
        ),
        timeseries_panel(
            "Accuracy difference B - A per window, with its 95 % interval",
            DIFFERENCE_PER_WINDOW,
            unit=FRACTION,
            task="classification",
            key="versions_difference",
        ),
        timeseries_panel(
            "p-value of one window (pooled z-test)",
            P_VALUE_PER_WINDOW,
            decimals=3,
            min=0,
            max=1,
            thresholds=[(None, "red"), (1 - LEVEL, "green")],
            task="classification",
            key="versions_p_value",
            description="One window alone rarely has the labels to show a few points; read the "
            "accumulated table above.",
        ),
        table_panel(
            "Metrics side by side (mean per shared window)",
            SIDE_BY_SIDE,
            key="versions_side_by_side",
        ),
        timeseries_panel(
            "Prediction drift of each version against its own reference",
            PREDICTION_DRIFT_BY_VERSION,
            decimals=3,
            key="versions_prediction_drift",
            description="Each version against its own reference; the drift between the versions "
            "is the panel below.",
        ),
        table_panel(
            "Versions compared on the same windows: prediction drift and shadow agreement",
            PAIR_SUMMARY,
            width=24,
            height=4,
            key="versions_pair_summary",
            description="Windows whose predictions of A and B were tested (chi-square of predicted "
            "classes, KS of regression predictions), the share with p < 0.05, the latest p-value; "
            "agreement on requests both served (same request_id tag), summed over the windows.",
        ),
        timeseries_panel(
            "Prediction drift between A and B per window (p-value)",
            PAIR_DRIFT,
            decimals=3,
            min=0,
            max=1,
            thresholds=[(None, "red"), (0.05, "green")],
            key="versions_pair_drift",
            description="Under 0.05: the two versions' predictions do not have one distribution.",
        ),
        timeseries_panel(
            "Shadow agreement of A and B per window (same request_id), 95 % interval",
            AGREEMENT,
            unit=FRACTION,
            max=1,
            key="versions_agreement",
            description="Share of sampled requests served by both versions on which they predict the "
            "same (docs/versions.md).",
        ),
    ]
    return Dashboard(
        "modelmon-versions",
        "modelmon / Versions",
        "Champion (A) against challenger (B) of one model on the same windows: accuracy (and binary "
        "precision and recall) as two proportions with a significance test, the other metrics side by "
        "side (docs/versions.md).",
        panels,
        variables=[
            Variable(
                "model", "Model", f"SELECT DISTINCT model_id FROM {POINTS} WHERE {STAGE2} ORDER BY model_id"
            ),
            Variable("champion", "A (champion)", VAR_CHAMPION),
            Variable("challenger", "B (challenger)", VAR_CHALLENGER),
        ],
    )
