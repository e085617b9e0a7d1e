"""`modelmon status` as rich tables that fit 80 columns: one row per model, or one model in detail."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _number(value: float | None) -> str:
    """``0.912``, ``12.35``, ``53,000``; ``-`` for no value."""
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.4g}"


def _time(iso: str | None, *, today: str | None = None) -> str:
    """``HH:MM`` for a time of today (UTC), else ``MM-DD HH:MM``."""
    if not iso:
        return "-"
    moment = datetime.fromisoformat(iso).astimezone(UTC)
    today = today or datetime.now(UTC).date().isoformat()
    return f"{moment:%H:%M}" if moment.date().isoformat() == today else f"{moment:%m-%d %H:%M}"


def _quality(row: dict[str, Any]) -> str:
    """The realized key metric; without it, the accuracy estimated from the scores (``est``)."""
    metric = row["quality_metric"]
    value = row.get(metric)
    name = "acc" if metric == "accuracy" else "MAE"
    if value is None and metric == "accuracy" and row.get("estimated_accuracy") is not None:
        return f"est {_number(row['estimated_accuracy'])}"
    return "-" if value is None else f"{name} {_number(value)}"


def estimate_line(metric: str, found: dict[str, Any]) -> str:
    """``estimated accuracy 0.810 [0.780, 0.840] (realized 0.800, error 0.010)``."""
    band = ""
    if found["lower"] is not None and found["upper"] is not None:
        band = f" [{_number(found['lower'])}, {_number(found['upper'])}]"
    if found["realized"] is None:
        after = "no labels yet"
    else:
        after = f"realized {_number(found['realized'])}"
        after += "" if found["error"] is None else f", error {_number(found['error'])}"
    return f"estimated {metric} {_number(found['value'])}{band} ({after})"


def _reference(reference: dict[str, Any], *, brief: bool = False) -> str:
    text = reference["text"]
    if brief and reference["state"] == "waiting" and reference["source"] != "file":
        text = text.rsplit(" (", 1)[0]  # the source is in the spec (and in --model)
    return f"[yellow]{escape(text)}[/]" if reference["state"] == "waiting" else escape(text)


def print_status(status: dict[str, Any], console: Console) -> None:
    """The overview: one row per model (latest window), then dead letters and late events."""
    table = Table(
        title="Models: latest window of each (UTC)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    longest = max((len(row["model_id"]) for row in status["models"]), default=5)
    table.add_column("model", overflow="fold", min_width=min(longest, 14))
    table.add_column("v", overflow="fold")
    table.add_column("window", no_wrap=True)
    table.add_column("events", justify="right", no_wrap=True)
    table.add_column("acc/MAE", no_wrap=True)
    table.add_column("drift", justify="right", no_wrap=True)
    table.add_column("alerts", justify="right", no_wrap=True)
    table.add_column("reference")
    for row in status["models"]:
        drift = "-" if row["compared"] is None else f"{row['drifted']}/{row['compared']}"
        if row["drifted"]:
            drift = f"[red]{drift}[/]"
        alerts = row["alerts_firing"]
        table.add_row(
            escape(row["model_id"]),
            escape(row["model_version"] or "-"),
            _time(row["window_start"]),
            "-" if row["events"] is None else f"{row['events']:,}",
            _quality(row),
            drift,
            f"[red]{alerts}[/]" if alerts else "0",
            _reference(row["reference"], brief=True),
        )
    if not status["models"]:
        console.print(f"no model has metrics in {status['clickhouse']} and no spec was found")
    else:
        console.print(table)
        console.print("drift: drifted features / compared; alerts: firing now", style="dim")
        if any(_quality(row).startswith("est ") for row in status["models"]):
            console.print(
                "est: accuracy estimated from the scores, no labels yet (--model: band)", style="dim"
            )
    dead = status["dead_letters"]
    if dead:
        kinds = ", ".join(f"{kind} {n:,}" for kind, n in dead.items())
        console.print(f"dead letters: {sum(dead.values()):,} ({kinds})", highlight=False)
    else:
        console.print("dead letters: 0", highlight=False)
    for model, late in status["expired_events"].items():
        if late:
            console.print(f"[red]{model}: {late:,} events came too late and are not counted[/]")
    for note in status.get("notes", []):
        console.print(f"[dim]{escape(note)}[/]")


def print_detail(detail: dict[str, Any], console: Console) -> None:
    """One model's latest window: performance, per-feature drift, recent alerts, reference."""
    start, end = detail["window_start"], detail["window_end"]
    console.print(f"[bold]{escape(detail['model_id'])}[/] version {escape(detail['model_version'])}")
    console.print(
        f"latest window {start[:16].replace('T', ' ')} to {end[11:16]} UTC: {detail['events']:,} events, "
        f"{detail['labels']:,} labels",
        highlight=False,
    )
    performance = detail["performance"]
    if performance:
        shown = ", ".join(f"{name} {_number(value)}" for name, value in performance.items())
        console.print(f"performance: {shown}", highlight=False)
    else:
        console.print("performance: no labels in this window", highlight=False)
    for metric, found in detail.get("estimated", {}).items():
        console.print(estimate_line(metric, found), highlight=False)
    if detail["drift"]:
        drift = Table(title="Drift in the latest window", title_justify="left")
        for column, justify in (("feature", "left"), ("method", "left"), ("score", "right")):
            drift.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
        drift.add_column("threshold", justify="right")
        drift.add_column("drifted")
        for item in detail["drift"]:
            drift.add_row(
                escape(item["feature"]),
                item["method"],
                _number(item["score"]),
                _number(item["threshold"]),
                "[red]yes[/]" if item["drifted"] else "no",
            )
        console.print(drift)
    else:
        console.print("drift: none computed in this window", highlight=False)
    for feature, reason in detail["skipped"].items():
        console.print(f"  [dim]not compared: {escape(feature)} ({escape(str(reason))})[/]")
    reference = detail["reference"]
    stored = (
        f" (stored {reference['created_at'][:16].replace('T', ' ')} UTC)"
        if reference.get("created_at")
        else ""
    )
    console.print(f"reference: {_reference(reference)}{stored}", highlight=False)
    if detail["alerts"]:
        alerts = Table(title="Recent alert transitions", title_justify="left")
        alerts.add_column("time", no_wrap=True)
        alerts.add_column("rule", overflow="fold")
        alerts.add_column("state")
        alerts.add_column("message", ratio=1)
        for alert in detail["alerts"]:
            state = alert["state"]
            alerts.add_row(
                _time(alert["ts"]),
                escape(alert["rule"]),
                f"[red]{state}[/]" if state == "firing" else state,
                escape(alert["message"]),
            )
        console.print(alerts)
    else:
        console.print("alerts: none", highlight=False)
