"""Read-side queries over the ClickHouse tables, shared by `modelmon status`, the demo and tests."""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.client import Client


def events_per_model(client: Client) -> dict[str, int]:
    """Valid events counted per model (deduplicated, summed over windows and partitions)."""
    rows = client.query(
        "SELECT model_id, toInt64(sum(value)) FROM metric_points FINAL "
        "WHERE metric = 'events' AND segment = '' GROUP BY model_id ORDER BY model_id"
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


def events_per_window(client: Client, model_id: str) -> list[tuple[Any, int]]:
    """(window_start, events) for one model, oldest first."""
    rows = client.query(
        "SELECT window_start, toInt64(sum(value)) FROM metric_points FINAL "
        "WHERE metric = 'events' AND segment = '' AND model_id = {model:String} "
        "GROUP BY window_start ORDER BY window_start",
        parameters={"model": model_id},
    ).result_rows
    return [(start, int(n)) for start, n in rows]
