"""What `modelmon status` reads from ClickHouse: each model's latest closed window, in brief or in detail.

Besides the realized metrics, a window may carry performance estimated before its labels exist
(``estimated_<m>`` with its 95 % band and, once labels arrived, ``estimation_error_<m>``): the
model rows carry the estimated accuracy, the detail every estimated metric.

Every query reads the deduplicated tables (``FINAL``) and only stage 2's window totals
(``source = 'stage2'``) of the whole model (``segment = ''``). A model's row is the model version
with the most events in the model's latest window. Rendering is in :mod:`modelmon.app.status_view`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from modelmon import metrics as m
from modelmon.references import CALIBRATION_RECORD, PREDICTION_FEATURE
from modelmon.spec import ModelSpec, Task

STAGE2 = "source = 'stage2' AND segment = ''"
TABLES = ("metric_points", "alerts", "reference_profiles", "dead_letters")
QUALITY = {Task.REGRESSION: m.MAE}
"""The key performance metric of a task's row: MAE for regression, accuracy otherwise."""


class MissingTables(Exception):
    """The ClickHouse database has no modelmon tables (a wrong DSN, or nothing migrated yet)."""


def _rows(client: Any, sql: str, **parameters: Any) -> list[tuple[Any, ...]]:
    return list(client.query(sql, parameters=parameters).result_rows)


def check_tables(client: Any) -> None:
    """Raise :class:`MissingTables` naming what is missing, rather than a query error later."""
    present = {
        name for (name,) in _rows(client, "SELECT name FROM system.tables WHERE database = currentDatabase()")
    }
    missing = [name for name in TABLES if name not in present]
    if missing:
        raise MissingTables(", ".join(missing))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _details(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def latest_windows(client: Any, model_id: str | None = None) -> dict[str, tuple[str, datetime, datetime]]:
    """model → (version, window start, window end) of its latest window (the version with most events)."""
    rows = _rows(
        client,
        "SELECT model_id, model_version, window_start, window_end FROM metric_points FINAL "
        f"WHERE metric = 'events' AND feature = '' AND {STAGE2} "
        "AND ({model:Nullable(String)} IS NULL OR model_id = {model:Nullable(String)}) "
        "ORDER BY model_id, window_start DESC, value DESC, model_version DESC LIMIT 1 BY model_id",
        model=model_id,
    )
    return {str(model): (str(version), start, end) for model, version, start, end in rows}


def version_totals(client: Any) -> dict[tuple[str, str], tuple[int, int]]:
    """(model, version) → (events counted in every window, event-time span of those windows in ms)."""
    rows = _rows(
        client,
        "SELECT model_id, model_version, toInt64(sum(value)), "
        "dateDiff('millisecond', min(window_start), max(window_end)) FROM metric_points FINAL "
        f"WHERE metric = 'events' AND feature = '' AND {STAGE2} GROUP BY model_id, model_version",
    )
    return {(str(model), str(version)): (int(events), int(span)) for model, version, events, span in rows}


def window_points(
    client: Any, model_id: str, version: str, start: datetime
) -> list[tuple[str, str, float, str]]:
    """(metric, feature, value, details) of one whole-model window."""
    return [
        (str(metric), str(feature), float(value), str(details))
        for metric, feature, value, details in _rows(
            client,
            "SELECT metric, feature, value, details FROM metric_points FINAL "
            "WHERE model_id = {model:String} AND model_version = {version:String} "
            f"AND window_start = {{start:DateTime64(3, 'UTC')}} AND {STAGE2} ORDER BY metric, feature",
            model=model_id,
            version=version,
            start=start,
        )
    ]


def firing_alerts(client: Any) -> dict[str, int]:
    """model → alerts whose newest state is ``firing``."""
    rows = _rows(
        client,
        "SELECT model_id, count() FROM (SELECT dedup_key, argMax(model_id, ts) AS model_id, "
        "argMax(state, ts) AS state FROM alerts FINAL GROUP BY dedup_key) "
        "WHERE state = 'firing' GROUP BY model_id",
    )
    return {str(model): int(n) for model, n in rows}


def references(client: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """(model, version) → the stored reference's source, creation time and feature count."""
    rows = _rows(
        client,
        "SELECT model_id, model_version, argMax(JSONExtractString(profile, 'source'), created_at), "
        "max(created_at), countIf(feature != {calibration:String}) FROM reference_profiles FINAL "
        "GROUP BY model_id, model_version",
        calibration=CALIBRATION_RECORD,  # the score calibration is stored beside the features, not one
    )
    return {
        (str(model), str(version)): {"source": str(source), "created_at": _iso(created), "features": int(n)}
        for model, version, source, created, n in rows
    }


def reference_state(
    model_id: str,
    version: str,
    stored: Mapping[tuple[str, str], dict[str, Any]],
    totals: Mapping[tuple[str, str], tuple[int, int]],
    spec: ModelSpec | None,
) -> dict[str, Any]:
    """The reference of a model version: stored (its source), or what it waits for."""
    from streams.auto_reference import waiting_for_reference

    if (model_id, version) in stored:
        found = stored[(model_id, version)]
        return {"state": "loaded", **found, "text": found["source"]}
    if spec is None:
        return {"state": "none", "source": None, "text": "none (no spec found)"}
    events, span = totals.get((model_id, version), (0, 0))
    text = waiting_for_reference(spec, events, span)
    state: dict[str, Any] = {"state": "waiting", "source": spec.reference.source, "text": text}
    if spec.reference.source == "first_n":
        state |= {"events": events, "needed": spec.reference.n}
    elif spec.reference.source == "first_period":
        state |= {"covered_ms": span, "period": spec.reference.period}
    else:
        state |= {"path": spec.reference.path}
    return state


def _quality(spec: ModelSpec | None, values: Mapping[str, float]) -> str:
    if spec is not None:
        return QUALITY.get(spec.task, m.ACCURACY)
    return m.MAE if m.MAE in values and m.ACCURACY not in values else m.ACCURACY


def estimate(values: Mapping[str, float], metric: str) -> dict[str, float | None] | None:
    """The window's estimate of ``metric`` with its band, realized value and error (None: not estimated)."""
    if m.estimated(metric) not in values:
        return None
    return {
        "value": values[m.estimated(metric)],
        "lower": values.get(m.estimated_lower(metric)),
        "upper": values.get(m.estimated_upper(metric)),
        "realized": values.get(metric),
        "error": values.get(m.estimation_error(metric)),
    }


def _estimated_accuracy(values: Mapping[str, float]) -> dict[str, float | None]:
    """The flat ``estimated_accuracy*`` fields of a model row (None when not estimated)."""
    names = (m.estimated, m.estimated_lower, m.estimated_upper, m.estimation_error)
    return {name(m.ACCURACY): values.get(name(m.ACCURACY)) for name in names}


def _drift(points: list[tuple[str, str, float, str]]) -> list[dict[str, Any]]:
    """One entry per feature (and ``__prediction__``) judged in the window: method, score, threshold."""
    verdicts = {feature: value for metric, feature, value, _ in points if metric == m.DRIFTED}
    out = []
    for metric, feature, value, details in points:
        if metric in m.DRIFT_METRICS and feature:
            extra = _details(details)
            out.append(
                {
                    "feature": feature,
                    "method": metric,
                    "score": value,
                    "threshold": extra.get("threshold"),
                    "p_value": extra.get("p_value"),
                    "drifted": bool(verdicts.get(feature, extra.get("drifted", False))),
                }
            )
    return sorted(out, key=lambda d: (d["feature"] == PREDICTION_FEATURE, d["feature"]))


def model_rows(client: Any, specs: Mapping[str, ModelSpec]) -> list[dict[str, Any]]:
    """One JSON-able dict per model with data or a spec: its latest window's key metrics."""
    latest = latest_windows(client)
    totals, stored, firing = version_totals(client), references(client), firing_alerts(client)
    rows = []
    for model_id in sorted(set(latest) | set(specs)):
        spec = specs.get(model_id)
        row: dict[str, Any] = {"model_id": model_id, "model_version": None, "window_start": None}
        row |= {"window_end": None, "events": None, "quality_metric": _quality(spec, {})}
        row |= {"accuracy": None, "mae": None, **_estimated_accuracy({}), "drifted": None, "compared": None}
        row["alerts_firing"] = firing.get(model_id, 0)
        if model_id in latest:
            version, start, end = latest[model_id]
            points = window_points(client, model_id, version, start)
            values = {metric: value for metric, feature, value, _ in points if not feature}
            judged = [d for d in _drift(points) if d["feature"] != PREDICTION_FEATURE]
            row |= {"model_version": version, "window_start": _iso(start), "window_end": _iso(end)}
            row |= {"events": int(values.get(m.EVENTS, 0)), "quality_metric": _quality(spec, values)}
            row |= {
                "accuracy": values.get(m.ACCURACY),
                "mae": values.get(m.MAE),
                **_estimated_accuracy(values),
            }
            if judged:
                row |= {"drifted": sum(d["drifted"] for d in judged), "compared": len(judged)}
        else:  # a spec without data yet: version "1" (the SDK's default) unless a reference says otherwise
            version = max((v for (mid, v) in stored if mid == model_id), default="1")
        row["reference"] = reference_state(model_id, version, stored, totals, spec)
        rows.append(row)
    return rows


def model_detail(
    client: Any, model_id: str, spec: ModelSpec | None, recent: int = 10
) -> dict[str, Any] | None:
    """The latest window of one model in full (``None`` if it has no data): performance, drift, alerts."""
    latest = latest_windows(client, model_id)
    if model_id not in latest:
        return None
    version, start, end = latest[model_id]
    points = window_points(client, model_id, version, start)
    values = {metric: value for metric, feature, value, _ in points if not feature}
    performance = [*m.CLASSIFICATION_METRICS, *m.REGRESSION_METRICS, m.LABEL_COVERAGE]
    share = next((_details(d) for metric, f, _, d in points if metric == m.DRIFT_SHARE and not f), {})
    alerts = _rows(
        client,
        "SELECT ts, rule, state, severity, metric, feature, value, threshold, message FROM alerts FINAL "
        "WHERE model_id = {model:String} ORDER BY ts DESC, state LIMIT {n:UInt32}",
        model=model_id,
        n=recent,
    )
    names = ("ts", "rule", "state", "severity", "metric", "feature", "value", "threshold", "message")
    stored = references(client)
    return {
        "model_id": model_id,
        "model_version": version,
        "window_start": _iso(start),
        "window_end": _iso(end),
        "events": int(values.get(m.EVENTS, 0)),
        "labels": int(values.get(m.LABELS, 0)),
        "performance": {name: values[name] for name in performance if name in values},
        "estimated": {
            metric: found for metric in m.ESTIMATED_METRICS if (found := estimate(values, metric)) is not None
        },
        "drift": _drift(points),
        "drift_share": values.get(m.DRIFT_SHARE),
        "skipped": share.get("skipped", {}),
        "alerts": [{**dict(zip(names, row, strict=True)), "ts": _iso(row[0])} for row in alerts],
        "reference": reference_state(model_id, version, stored, version_totals(client), spec),
    }


def collect_status(client: Any, specs: Mapping[str, ModelSpec], clickhouse: str) -> dict[str, Any]:
    """The overview as one JSON-able dict: models, dead letters by type, late events per model."""
    from sinks.queries import dead_letters_by_type, events_per_model

    check_tables(client)
    return {
        "clickhouse": clickhouse,
        "models": model_rows(client, specs),
        "dead_letters": dead_letters_by_type(client),
        "expired_events": events_per_model(client, m.EXPIRED_EVENTS),
    }
