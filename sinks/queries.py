"""Read-side queries over the ClickHouse tables, shared by `modelmon status`, the demo and tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from clickhouse_connect.driver.client import Client

from modelmon.events import Alert, DeadLetter, MetricPoint, RetrainRequested
from sinks.writer import TABLES, to_utc_millis

E = TypeVar("E", MetricPoint, Alert, RetrainRequested, DeadLetter)


def events_per_model(client: Client, metric: str = "events") -> dict[str, int]:
    """Valid events counted per model (deduplicated, summed over windows and partitions).

    ``metric="expired_events"``: events that came too late to be applied (their window was older than
    the retention), per model.
    """
    rows = client.query(
        "SELECT model_id, toInt64(sum(value)) FROM metric_points FINAL "
        "WHERE metric = {metric:String} AND segment = '' GROUP BY model_id ORDER BY model_id",
        parameters={"metric": metric},
    ).result_rows
    return {str(model): int(total) for model, total in rows}


def dead_letters_by_type(client: Client) -> dict[str, int]:
    """Dead letters per error type (deduplicated)."""
    rows = client.query(
        "SELECT error_type, count() FROM dead_letters FINAL GROUP BY error_type ORDER BY error_type"
    ).result_rows
    return {str(kind): int(n) for kind, n in rows}


def dead_letter_samples(client: Client, limit: int = 5) -> list[dict[str, Any]]:
    """A few dead letters with their reasons, newest first."""
    result = client.query(
        "SELECT topic, error_type, reason, substring(payload, 1, 120) FROM dead_letters FINAL "
        f"ORDER BY ts DESC LIMIT {int(limit)}"
    )
    names = ("topic", "error_type", "reason", "payload")
    return [dict(zip(names, row, strict=True)) for row in result.result_rows]


def events_per_window(client: Client, model_id: str) -> list[tuple[datetime, int]]:
    """(window_start, events) for one model, oldest first."""
    return [(total.window_start, int(total.value)) for total in metric_totals(client, "events", model_id)]


class MetricTotal(NamedTuple):
    """A metric of one model in one window, summed over sources and model versions."""

    model_id: str
    window_start: datetime
    window_end: datetime
    value: float


def metric_totals(
    client: Client, metric: str, model_id: str | None = None, *, segment: str = "", feature: str = ""
) -> list[MetricTotal]:
    """Per-window totals of an additive metric (e.g. ``events``), deduplicated, oldest first."""
    result = client.query(
        "SELECT model_id, window_start, window_end, sum(value) FROM metric_points FINAL "
        "WHERE metric = {metric:String} AND segment = {segment:String} AND feature = {feature:String} "
        "AND ({model_id:Nullable(String)} IS NULL OR model_id = {model_id:Nullable(String)}) "
        "GROUP BY model_id, window_start, window_end ORDER BY window_start, model_id",
        parameters={"metric": metric, "segment": segment, "feature": feature, "model_id": model_id},
    )
    return [
        MetricTotal(model_id, to_utc_millis(start), to_utc_millis(end), float(value))
        for model_id, start, end, value in result.result_rows
    ]


def dead_letter_count(client: Client, *, topic: str | None = None, error_type: str | None = None) -> int:
    """Distinct dead letters stored (replays counted once), optionally of one topic / error type."""
    result = client.query(
        "SELECT count() FROM dead_letters FINAL "
        "WHERE ({topic:Nullable(String)} IS NULL OR topic = {topic:Nullable(String)}) "
        "AND ({error_type:Nullable(String)} IS NULL OR error_type = {error_type:Nullable(String)})",
        parameters={"topic": topic, "error_type": error_type},
    )
    return int(result.result_rows[0][0])


def read_events(client: Client, event_type: type[E], *, model_id: str | None = None) -> list[E]:
    """The stored events of one type (deduplicated with FINAL), as contract models, in key order."""
    spec = TABLES[event_type]
    where = ""
    parameters: dict[str, Any] = {}
    if model_id is not None:
        if "model_id" not in spec.columns:
            raise ValueError(f"{event_type.__name__} has no model_id")
        where, parameters = " WHERE model_id = {model_id:String}", {"model_id": model_id}
    columns = ", ".join(f"`{name}`" for name in spec.columns)
    order_by = ", ".join(spec.order_by)
    result = client.query(f"SELECT {columns} FROM {spec.table} FINAL{where} ORDER BY {order_by}", parameters)
    events = []
    for row in result.named_results():
        fields = {k: to_utc_millis(v) if isinstance(v, datetime) else v for k, v in row.items()}
        events.append(spec.from_row(fields))
    return events  # type: ignore[return-value]
