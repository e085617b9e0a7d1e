"""Run dashboard queries against ClickHouse the way Grafana would: variables first, then panels.

Variables are resolved in dashboard order (a later variable's query may use an earlier one, as
``version`` uses ``model``); "All" stands for every option the variable's own query returns, as in
Grafana. Used by ``modelmon report`` and by the tests that run every panel on the real engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from dashboards.grafana import Dashboard, Panel, Query
from dashboards.macros import ALL, VariableValue, expand, panel_interval


@dataclass(frozen=True)
class QueryResult:
    """Column names and rows of one executed panel query, with the SQL that produced them."""

    sql: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime
    max_points: int = 1000

    def interval_for(self, panel: Panel) -> int:
        minimum = 1
        if panel.min_interval:
            unit = {"s": 1, "m": 60, "h": 3600}[panel.min_interval[-1]]
            minimum = int(panel.min_interval[:-1]) * unit
        return panel_interval(self.start, self.end, max_points=self.max_points, min_interval_s=minimum)


def run_sql(client: Client, sql: str) -> QueryResult:
    result = client.query(sql)
    return QueryResult(sql, tuple(result.column_names), [tuple(row) for row in result.result_rows])


def resolve_variables(
    client: Client,
    dashboard: Dashboard,
    time_range: TimeRange,
    chosen: Mapping[str, VariableValue] | None = None,
) -> dict[str, VariableValue]:
    """Values of every variable: the chosen one, else "All" (multi) or the first option (single).

    "All" and ``$__all`` expand to the full option list. Raises ``LookupError`` when a chosen
    single value is not among the options (e.g. a model without data in the range).
    """
    chosen = dict(chosen or {})
    values: dict[str, VariableValue] = {}
    for variable in dashboard.variables:
        sql = expand(variable.sql, time_range.start, time_range.end, 1, values)
        options = [str(row[0]) for row in run_sql(client, sql).rows]
        wanted = chosen.get(variable.name)
        if variable.multi:
            if wanted is None or wanted == ALL or (not isinstance(wanted, str) and ALL in wanted):
                values[variable.name] = options
            else:
                values[variable.name] = [wanted] if isinstance(wanted, str) else list(wanted)
        else:
            if wanted is None:
                if not options:
                    raise LookupError(f"variable {variable.name!r}: no options in the time range")
                values[variable.name] = options[0]
            else:
                if not isinstance(wanted, str):
                    raise ValueError(f"variable {variable.name!r} takes one value, got {wanted!r}")
                if wanted not in options:
                    known = ", ".join(options) or "none"
                    raise LookupError(
                        f"{variable.name} {wanted!r} has no data in the time range (have: {known})"
                    )
                values[variable.name] = wanted
    return values


def repeat_values(panel: Panel, variables: Mapping[str, VariableValue]) -> list[dict[str, VariableValue]]:
    """The variable scopes of a panel: one per value of its ``repeat`` variable, else one."""
    if not panel.repeat:
        return [dict(variables)]
    value = variables.get(panel.repeat, [])
    options: Sequence[str] = [value] if isinstance(value, str) else value
    return [{**variables, panel.repeat: option} for option in options]


def run_query(
    client: Client, query: Query, panel: Panel, time_range: TimeRange, variables: Mapping[str, VariableValue]
) -> QueryResult:
    sql = expand(query.sql, time_range.start, time_range.end, time_range.interval_for(panel), variables)
    return run_sql(client, sql)
