"""What the demo reads back from ClickHouse (progress, alerts, retrain requests) and how to look again."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


@dataclass(frozen=True)
class Progress:
    """One look at ClickHouse while the demo runs."""

    events: int
    windows_closed: int
    dead_letters: int
    alerts_fired: int
    alerts_resolved: int
    retrain_requests: int
    rows: int
    """Rows in every table, replays included: changes whenever the sink writes anything."""

    @property
    def alerts_firing(self) -> int:
        return self.alerts_fired - self.alerts_resolved


def _scalar(client: Any, sql: str) -> int:
    rows = client.query(sql).result_rows
    return int(rows[0][0] or 0) if rows else 0


def read_progress(client: Any) -> Progress:
    """Counts for the live view (each a small query over the deduplicated tables)."""
    fired, resolved = alert_counts(client)
    return Progress(
        events=_scalar(
            client,
            "SELECT toInt64(sum(value)) FROM metric_points FINAL WHERE metric = 'events' AND segment = ''",
        ),
        windows_closed=_scalar(
            client,
            "SELECT uniqExact(model_id, window_start) FROM metric_points FINAL "
            "WHERE metric = 'events' AND segment = '' AND source = 'stage2'",
        ),
        dead_letters=_scalar(client, "SELECT count() FROM dead_letters FINAL"),
        alerts_fired=fired,
        alerts_resolved=resolved,
        retrain_requests=_scalar(client, "SELECT count() FROM retrain_requests FINAL"),
        rows=_scalar(
            client,
            "SELECT (SELECT count() FROM metric_points) + (SELECT count() FROM alerts) "
            "+ (SELECT count() FROM retrain_requests) + (SELECT count() FROM dead_letters)",
        ),
    )


def alert_counts(client: Any) -> tuple[int, int]:
    """(alert episodes that fired, of those the ones resolved since). Pending-only episodes don't count."""
    rows = client.query(
        "SELECT uniqExactIf(alert_id, state = 'firing'), "
        "uniqExactIf(alert_id, state = 'resolved' AND alert_id IN "
        "(SELECT alert_id FROM alerts FINAL WHERE state = 'firing')) FROM alerts FINAL"
    ).result_rows
    return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)


def alert_transitions(client: Any) -> list[dict[str, Any]]:
    """Every firing and resolved transition of an episode that fired, in event-time order."""
    result = client.query(
        "SELECT alert_id, model_id, rule, state, severity, metric, feature, segment, value, threshold, "
        "window_start, window_end, message FROM alerts FINAL "
        "WHERE state IN ('firing', 'resolved') AND alert_id IN "
        "(SELECT alert_id FROM alerts FINAL WHERE state = 'firing') ORDER BY ts, state"
    )
    names = result.column_names
    return [dict(zip(names, row, strict=True)) for row in result.result_rows]


def alert_episodes(client: Any) -> list[dict[str, Any]]:
    """One entry per alert that fired: when and why, and when it resolved (None: still firing)."""
    episodes: dict[str, dict[str, Any]] = {}
    for row in alert_transitions(client):
        if row["state"] == "firing":
            episodes[row["alert_id"]] = {
                "alert_id": row["alert_id"],
                "model_id": row["model_id"],
                "rule": row["rule"],
                "severity": row["severity"],
                "metric": row["metric"],
                "feature": row["feature"],
                "segment": row["segment"],
                "value": row["value"],
                "threshold": row["threshold"],
                "fired_window_start": row["window_start"].isoformat(),
                "message": row["message"],
                "resolved_window_start": None,
                "resolved_message": None,
            }
        elif row["alert_id"] in episodes:
            episodes[row["alert_id"]]["resolved_window_start"] = row["window_start"].isoformat()
            episodes[row["alert_id"]]["resolved_message"] = row["message"]
    return list(episodes.values())


def retrain_requests(client: Any) -> list[dict[str, Any]]:
    """Every retrain request with its evidence (parsed), oldest first."""
    result = client.query(
        "SELECT request_id, idempotency_key, model_id, model_version, reason, evidence, alert_ids, "
        "requested_at FROM retrain_requests FINAL ORDER BY requested_at, model_id"
    )
    out = []
    for row in result.result_rows:
        item = dict(zip(result.column_names, row, strict=True))
        item["evidence"] = json.loads(item["evidence"] or "[]")
        item["alert_ids"] = list(item["alert_ids"])
        item["requested_at"] = item["requested_at"].isoformat()
        out.append(item)
    return out


def collect_summary(client: Any) -> dict[str, Any]:
    """What landed in ClickHouse, as a JSON-able dict."""
    from sinks.queries import dead_letter_samples, dead_letters_by_type, events_per_model

    per_model = events_per_model(client)
    expired = events_per_model(client, "expired_events")
    dead = dead_letters_by_type(client)
    episodes = alert_episodes(client)
    return {
        "events": sum(per_model.values()),
        "events_per_model": per_model,
        "expired_events_per_model": expired,
        "dead_letter": sum(dead.values()),
        "dead_letter_by_type": dead,
        "dead_letter_samples": dead_letter_samples(client),
        "alerts": {
            "fired": len(episodes),
            "resolved": sum(1 for e in episodes if e["resolved_window_start"]),
            "episodes": episodes,
        },
        "retrain_requests": retrain_requests(client),
    }


def _evidence_line(evidence: dict[str, Any]) -> str:
    what = evidence.get("metric", "")
    if evidence.get("feature"):
        what += f"[{evidence['feature']}]"
    if evidence.get("features"):
        what += f" ({', '.join(map(str, evidence['features']))})"
    value = evidence.get("value")
    shown = f"{value:.4g}" if isinstance(value, int | float) else str(value)
    windows = evidence.get("windows") or []
    span = f", {len(windows)} windows" if windows else ""
    return (
        f"{evidence.get('kind')}: {what} = {shown} {evidence.get('op', '')} {evidence.get('threshold')}"
        f" (window {str(evidence.get('window_start', ''))[11:16]}{span})"
    )


def print_summary(summary: dict[str, Any], console: Console) -> None:
    """The summary as rich tables: events, dead letters, alerts, retrain requests."""
    table = Table(title="Valid events counted in ClickHouse (metric_points, metric='events')")
    table.add_column("model")
    table.add_column("events", justify="right")
    table.add_column("too late, not counted", justify="right")
    expired = summary.get("expired_events_per_model", {})
    for model in sorted(set(summary["events_per_model"]) | set(expired)):
        late = expired.get(model, 0)
        table.add_row(
            model, str(summary["events_per_model"].get(model, 0)), f"[red]{late}[/]" if late else "0"
        )
    console.print(table)
    dead = Table(title="Dead letters (topic dead-letter → ClickHouse dead_letters)")
    dead.add_column("error type")
    dead.add_column("count", justify="right")
    for kind, n in summary["dead_letter_by_type"].items():
        dead.add_row(kind, str(n))
    console.print(dead)
    for sample in summary.get("dead_letter_samples", [])[:3]:
        console.print(f"  [dim]{sample['error_type']}[/]: {escape(sample['reason'])}", highlight=False)
    alerts = summary.get("alerts")
    if alerts is not None:
        table = Table(
            title=f"Alerts: {alerts['fired']} fired, {alerts['resolved']} resolved (ClickHouse alerts)"
        )
        for column in ("model", "rule", "severity", "fired at", "why", "resolved at"):
            table.add_column(column)
        for e in alerts["episodes"]:
            resolved = e["resolved_window_start"]
            table.add_row(
                e["model_id"],
                e["rule"],
                e["severity"],
                e["fired_window_start"][11:16],
                escape(e["message"]),
                resolved[11:16] if resolved else "[red]still firing[/]",
            )
        console.print(table)
    for request in summary.get("retrain_requests", []):
        console.print(
            f"[bold]retrain requested[/] for {request['model_id']} v{request['model_version']} "
            f"(idempotency key {request['idempotency_key']}):",
            highlight=False,
        )
        for evidence in request["evidence"]:
            console.print(f"  evidence  {_evidence_line(evidence)}", highlight=False, markup=False)


def follow_up_commands(
    workdir: Path, models_path: Path, since: timedelta, cwd: Path | None = None
) -> list[str]:
    """The `status` and `report` commands that read the demo's data (its own embedded ClickHouse).

    >>> follow_up_commands(Path("/srv/.modelmon/demo"), Path("models"), timedelta(minutes=44), Path("/srv"))
    ['MODELMON_CLICKHOUSE_DSN=chdb://./.modelmon/demo/clickhouse modelmon status', \
'MODELMON_CLICKHOUSE_DSN=chdb://./.modelmon/demo/clickhouse modelmon report --since 2h']
    """
    cwd = cwd or Path.cwd()

    def shown(path: Path) -> str:
        path = path if path.is_absolute() else cwd / path
        return f"./{path.relative_to(cwd)}" if path.is_relative_to(cwd) else str(path)

    env = f"MODELMON_CLICKHOUSE_DSN=chdb://{shown(workdir / 'clickhouse')}"
    if (models_path if models_path.is_absolute() else cwd / models_path) != cwd / "models":
        env += f" MODELMON_MODELS_PATH={shown(models_path)}"  # status reads the specs' reference settings
    hours = math.ceil(since / timedelta(hours=1)) + 1  # room for looking again a little later
    return [f"{env} modelmon status", f"{env} modelmon report --since {hours}h"]
