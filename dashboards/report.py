"""The key dashboard panels as pictures, without Grafana: PNG files and one self-contained HTML page.

``write_report(client, models, out_dir, since)`` runs the panels' own SQL (``dashboards.sql``,
expanded as Grafana would by ``dashboards.runner``) over the last ``since`` and draws, per model,
the drift heatmap (score ÷ threshold), what moved in the latest window (features by weighted
drift, when the points carry an attribution), performance over time (with the spec's alert
thresholds), the estimated vs realized accuracy (only for a model with estimated points), data
fidelity (missing values, lateness), the alert timeline and the fairness gaps (only for a model
with fairness points), with matplotlib. The HTML embeds every PNG as a
``data:`` URI, so the page can be mailed or archived alone. Nothing is written to ClickHouse.
"""

from __future__ import annotations

import base64
import html
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client

from dashboards import sql
from dashboards.catalog import build_dashboards
from dashboards.grafana import Dashboard, Panel
from dashboards.macros import expand
from dashboards.pictures import (
    Span,
    draw_attribution,
    draw_estimate,
    draw_heatmap,
    draw_lines,
    draw_timeline,
)
from dashboards.runner import QueryResult, TimeRange, repeat_values, resolve_variables, run_query, run_sql
from modelmon.spec import ModelSpec, parse_duration

logger = logging.getLogger(__name__)

# (dashboard uid, panel key, picture kind, file suffix) per picture, in page order. Performance has
# two panels: the one matching the model's task has rows, the other is skipped. The estimate is drawn
# only for a model with estimated points (no "no data" line otherwise: most models have none).
PICTURES = (
    ("modelmon-drift", "drift_heatmap", "heatmap", "drift-heatmap"),
    ("modelmon-drift", "drift_what_moved", "attribution", "what-moved"),
    ("modelmon-performance", "perf_classification", "lines", "performance"),
    ("modelmon-performance", "perf_regression", "lines", "performance"),
    ("modelmon-performance", "perf_estimated_accuracy", "estimate", "estimated-accuracy"),
    ("modelmon-fidelity", "fidelity_missing_rate", "lines", "fidelity-missing"),
    ("modelmon-fidelity", "fidelity_lateness", "lines", "fidelity-lateness"),
    ("modelmon-alerts", "alerts_timeline", "timeline", "alerts"),
    ("modelmon-performance", "fairness_gaps", "lines", "fairness"),  # only with fairness points
)


@dataclass(frozen=True)
class Picture:
    model: str
    title: str
    path: Path | None  # None: the panel had no rows for this model
    rows: int
    caption: str = ""  # shown under the picture as is (the verdict lines of --compare)


def window_span(client: Client, model: str, time_range: TimeRange) -> Span | None:
    """The first and last window of ``model`` in ``time_range`` (None: no windows)."""
    sql_text = expand(sql.MODEL_WINDOW_SPAN, time_range.start, time_range.end, 1, {"model": model})
    row = run_sql(client, sql_text).rows[0]
    if row[0] is None or row[2] is None or row[2] <= datetime(1971, 1, 1, tzinfo=UTC):
        return None  # max() of no rows is the epoch
    return Span(*row)


def _panel(dashboards: Mapping[str, Dashboard], uid: str, key: str) -> Panel:
    return next(panel for panel in dashboards[uid].panels if panel.key == key)


def newest_version(
    client: Client, panel: Panel, time_range: TimeRange, variables: Mapping[str, Any]
) -> tuple[dict[str, Any], list[QueryResult]]:
    """The version scope of an estimate panel (repeated per version) whose estimates reach the latest window.

    Returns that scope and its query results (none when no version has an estimate: realized values
    alone do not make an estimate picture).
    """
    best: tuple[tuple[Any, int], dict[str, Any], list[QueryResult]] | None = None
    for scope in repeat_values(panel, variables):
        results = [run_query(client, query, panel, time_range, scope) for query in panel.queries]
        estimated = [row[0] for row in results[0].rows if row[1] == sql.ESTIMATE_SERIES[0]]
        if estimated:
            key = (max(estimated), len(estimated))
            if best is None or key > best[0]:
                best = (key, scope, results)
    return (best[1], best[2]) if best else (dict(variables), [])


def render_model(
    client: Client, model: str, dashboards: Mapping[str, Dashboard], time_range: TimeRange, out_dir: Path
) -> list[Picture]:
    """The PNG files of one model (one per panel with rows)."""
    pictures: list[Picture] = []
    done: set[str] = set()
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in model)
    span = window_span(client, model, time_range)
    for uid, key, kind, suffix in PICTURES:
        if suffix in done:
            continue
        dashboard, panel = dashboards[uid], _panel(dashboards, uid, key)
        # The whole model (segment ''), every version; the alert dashboard's model is multi-value.
        multi = any(v.name == "model" and v.multi for v in dashboard.variables)
        chosen: dict[str, Any] = {"model": [model] if multi else model, "segment": [""]}
        try:
            variables = resolve_variables(client, dashboard, time_range, chosen)
        except LookupError as error:
            logger.info("%s: %s", model, error)
            variables = {}
        if kind == "estimate" and variables:
            variables, results = newest_version(client, panel, time_range, variables)
        else:
            results = [run_query(client, q, panel, time_range, variables) for q in panel.queries if variables]
        if not variables or not results or not results[0].rows:
            if suffix not in ("performance", "estimated-accuracy", "fairness", "what-moved"):
                pictures.append(Picture(model, panel.title, None, 0))
            continue
        shown = panel.title.replace("${version}", str(variables.get("version", "")))
        title = f"{model}: {shown}"
        if kind == "estimate":
            thresholds = results[1] if len(results) > 1 else None
            figure = draw_estimate(results[0], thresholds, title, "accuracy", span=span)
        elif kind == "heatmap":
            figure = draw_heatmap(results[0], title)
        elif kind == "attribution":
            figure = draw_attribution(results[0], title)
        elif kind == "timeline":
            figure = draw_timeline(results[0], span, time_range.end, title, prefix=f"{model} ")
        else:
            thresholds = results[1] if len(results) > 1 else None
            figure = draw_lines(
                results[0], thresholds, title, panel.unit, span=span, y_min=panel.min, y_max=panel.max
            )
        path = out_dir / f"{safe}-{suffix}.png"
        figure.savefig(path)
        done.add(suffix)
        pictures.append(Picture(model, shown, path, len(results[0].rows)))
    return pictures


def _html(pictures: Sequence[Picture], models: Sequence[str], time_range: TimeRange) -> str:
    span = f"{time_range.start:%Y-%m-%d %H:%M} to {time_range.end:%Y-%m-%d %H:%M} UTC"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>modelmon report</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}img{max-width:100%}"
        "h2{border-bottom:1px solid #ccc}.empty{color:#888}</style></head><body>",
        f"<h1>modelmon report</h1><p>{html.escape(span)}. Models: "
        f"{html.escape(', '.join(models)) or 'none'}.</p>",
    ]
    for model in models:
        parts.append(f"<h2 id='{html.escape(model)}'>{html.escape(model)}</h2>")
        for picture in (p for p in pictures if p.model == model):
            if picture.path is None:
                parts.append(
                    f"<p class='empty'>{html.escape(picture.title)}: no data in this time range.</p>"
                )
                continue
            data = base64.b64encode(picture.path.read_bytes()).decode("ascii")
            parts.append(
                f"<figure><img alt='{html.escape(model)}: {html.escape(picture.title)}' "
                f"src='data:image/png;base64,{data}'>{_caption(picture.caption)}</figure>"
            )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _caption(text: str) -> str:
    return f"<figcaption><pre>{html.escape(text)}</pre></figcaption>" if text else ""


def models_with_data(
    client: Client, since: str | timedelta = "1h", *, now: datetime | None = None
) -> list[str]:
    """Models with stage-2 metrics in the last ``since`` (the report's default model list)."""
    end = now or datetime.now(UTC)
    rows = client.query(
        "SELECT DISTINCT model_id FROM metric_points FINAL WHERE source = 'stage2' "
        "AND window_start >= {start:DateTime64(3)} ORDER BY model_id",
        parameters={"start": end - parse_duration(since)},
    ).result_rows
    return [str(row[0]) for row in rows]


def write_report(
    client: Client,
    models: Sequence[str],
    out_dir: Path,
    since: str | timedelta = "1h",
    *,
    now: datetime | None = None,
    specs: Mapping[str, ModelSpec] | None = None,
    extra: Sequence[Picture] = (),
) -> Path:
    """Render the key panels of ``models`` over the last ``since`` into ``out_dir``; return the HTML path.

    ``specs`` (model id → spec) adds the alert thresholds to the performance pictures; ``extra``
    pictures (the version comparison of ``--compare``) are placed after their model's panels.
    """
    end = now or datetime.now(UTC)
    time_range = TimeRange(end - parse_duration(since), end, max_points=200)
    out_dir.mkdir(parents=True, exist_ok=True)
    dashboards = {dashboard.uid: dashboard for dashboard in build_dashboards(specs)}
    pictures = [p for model in models for p in render_model(client, model, dashboards, time_range, out_dir)]
    pictures += list(extra)
    page = out_dir / "index.html"
    page.write_text(_html(pictures, list(models), time_range), encoding="utf-8")
    return page
