"""The building blocks of the modelmon dashboards: panel kinds, colour steps, value mappings, variables.

:mod:`dashboards.catalog` assembles the five dashboards out of these, so every time series,
stat and table panel is drawn the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

from dashboards import sql
from dashboards.grafana import Panel, Query, Variable
from modelmon import metrics as m

FRACTION = "percentunit"
# Drift score ÷ its method's threshold (dashboards.sql.DRIFT_RATIO), one fixed scale for every
# method: green well below the line, yellow approaching it, red at or past it (drifted).
DRIFT_RATIO_STEPS = [(None, "green"), (0.75, "yellow"), (1.0, "red"), (2.0, "dark-red")]
STATE_MAPPINGS = [
    {
        "type": "value",
        "options": {
            # A resolved alert is not drawn: its bar ends where it resolved.
            "0": {"text": "resolved", "color": "transparent", "index": 0},
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


def model_variables(*, feature: bool) -> list[Variable]:
    """The model, version and segment pickers (and the feature picker when ``feature``)."""
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


def _styled(pattern: str, dash: list[int], width: int) -> dict[str, object]:
    return {
        "matcher": {"id": "byRegexp", "options": pattern},
        "properties": [
            {"id": "custom.lineStyle", "value": {"fill": "dash" if dash[0] > 1 else "dot", "dash": dash}},
            {"id": "custom.lineWidth", "value": width},
        ],
    }


# Quantile series often lie on top of each other (p50 = p99 when all events are equally late):
# besides their colours, p95, p99 and max differ in line style and width.
QUANTILE_STYLES = [
    _styled(".*_p95_.*", [10, 6], 2),
    _styled(".*_p99_.*", [1, 5], 3),
    _styled(".*_max_.*", [16, 4, 2, 4], 1),
]


def timeseries_panel(
    title: str,
    query: str,
    *,
    unit: str = "",
    extra: list[Query] | None = None,
    threshold_line: bool = False,
    styles: list[dict[str, object]] | None = None,
    **options: object,
) -> Panel:
    """A time series with a right-hand legend; ``extra`` queries (threshold lines) are drawn dashed.

    ``styles`` are field overrides (e.g. ``QUANTILE_STYLES``); a fraction's axis starts at 0.
    """
    custom: dict[str, object] = {
        "drawStyle": "line",
        "lineWidth": 1,
        "pointSize": 4,
        "showPoints": "auto",
        "spanNulls": False,
    }
    if threshold_line:
        custom["thresholdsStyle"] = {"mode": "line"}
    if unit == FRACTION:
        options.setdefault("min", 0)  # a rate's axis starts at 0, even when every value is 0
    return Panel(
        "timeseries",
        title,
        [Query(query), *(extra or [])],
        unit=unit,
        custom=custom,
        overrides=[*(styles or []), *([DASHED_THRESHOLDS] if extra else [])],
        options={"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull", "max"]}},
        **options,  # type: ignore[arg-type]
    )


def stat_panel(title: str, query: str, *, unit: str = "", width: int = 6, **options: object) -> Panel:
    """A 4-high stat panel showing the last value of a table query."""
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


def table_panel(title: str, query: str, *, width: int = 12, height: int = 8, **options: object) -> Panel:
    """A table panel of a table query."""
    return Panel(
        "table",
        title,
        [Query(query, "table")],
        width=width,
        height=height,
        options={"showHeader": True, "cellHeight": "sm"},
        **options,  # type: ignore[arg-type]
    )


def threshold_queries(thresholds: Mapping[tuple[str, str], float], metrics: tuple[str, ...]) -> list[Query]:
    """The alert-threshold line query for ``metrics`` (none when no threshold applies)."""
    line = sql.threshold_lines(thresholds, metrics)
    return [Query(line, ref_id="T")] if line else []


def _series(name: str, color: str, **custom: object) -> dict[str, object]:
    properties: list[dict[str, object]] = [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}]
    properties += [{"id": f"custom.{key}", "value": value} for key, value in custom.items()]
    return {"matcher": {"id": "byName", "options": name}, "properties": properties}


# The series of ``sql.estimate_series``: the band is the area between its two ends (fillBelowTo),
# the estimate a blue line, the realized value green with points, the estimation error orange bars.
ESTIMATE_STYLES = [
    _series("band upper", "blue", fillBelowTo="band lower", fillOpacity=18, lineWidth=0),
    _series("band lower", "blue", fillOpacity=0, lineWidth=0),
    _series("estimated", "blue", lineWidth=2, lineStyle={"fill": "dash", "dash": [8, 4]}),
    _series("realized", "green", lineWidth=2, showPoints="always", pointSize=7),
    _series("estimation error", "orange", drawStyle="bars", fillOpacity=60, lineWidth=1),
]
ESTIMATE_TITLES = {"precision": "precision", "recall": "recall", "f1": "F1", "roc_auc": "ROC AUC"}


def estimate_panel(metric: str, thresholds: Mapping[tuple[str, str], float]) -> Panel:
    """Estimated vs realized ``metric`` for one version (repeated per version), with the 95 % band."""
    name = ESTIMATE_TITLES.get(metric, metric)
    return timeseries_panel(
        f"Estimated vs realized {name} (v${{version}})",
        sql.ESTIMATED[metric],
        unit=FRACTION,
        min=0,
        max=1,
        width=24,
        height=7,
        repeat="version",
        task="classification",
        key=f"perf_estimated_{metric}",
        styles=ESTIMATE_STYLES,
        extra=threshold_queries(thresholds, (metric, m.estimated(metric))),
        description=f"Whole model. Blue dashed: {name} estimated from the calibrated scores, before "
        "labels exist, in its shaded 95 % sampling band; green with points: the realized value, "
        "once the window's labels arrived (a window with blue and no green has no labels yet); "
        "orange bars: |estimated - realized|. Dashed red: alert thresholds of the spec.",
    )
