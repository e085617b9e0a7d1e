"""Turn a panel's SQL into the SQL that ClickHouse receives from Grafana, without Grafana.

Three steps, in the order Grafana and the ``grafana-clickhouse-datasource`` plugin (v4) apply them:

1. ``$__conditionalAll(condition, $var)`` (plugin frontend): ``1=1`` when ``var`` is "All" or empty.
2. Template variables (Grafana's template service with the plugin's formatter): ``$var``,
   ``${var}``, ``${var:format}`` and ``[[var]]``. A multi-value variable becomes ``'a','b'``
   (the plugin joins values without escaping); a single value is inserted as it is, unquoted.
3. Backend macros (plugin ``pkg/macros``): ``$__timeFilter(col)`` →
   ``col >= toDateTime(from) AND col <= toDateTime(to)``, ``$__fromTime``/``$__toTime`` →
   ``toDateTime(s)``, the ``_ms`` variants with ``fromUnixTimestamp64Milli(ms)``,
   ``$__dateFilter(col)``, ``$__dateTimeFilter(date, time)`` (alias ``$__dt``),
   ``$__timeInterval(col)`` → ``toStartOfInterval(toDateTime(col), INTERVAL n second)``,
   ``$__timeInterval_ms(col)`` and ``$__interval_s`` (the panel interval, at least 1 s).

An unknown ``$__macro`` raises :class:`MacroError` as the plugin's backend does, and so does a
variable without a value: a typo is an error here, not an empty panel.

>>> from datetime import datetime, UTC
>>> start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, 1, tzinfo=UTC)
>>> expand("WHERE $__timeFilter(ts) AND m = '${model}' AND v IN (${v})", start, end, 60,
...        {"model": "fraud", "v": ["1", "2"]})
"WHERE ts >= toDateTime(1704067200) AND ts <= toDateTime(1704070800) AND m = 'fraud' AND v IN ('1','2')"
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime

ALL = "$__all"
VariableValue = str | Sequence[str]

_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)(?::(\w+))?\]\]")
_MACRO = re.compile(r"\$__(\w+)")
# Grafana's own variables that the frontend fills in; everything else with $__ is a backend macro.
_GRAFANA_BUILTINS = ("__interval", "__interval_ms", "__range", "__range_s", "__range_ms", "__from", "__to")
# "Nice" intervals Grafana rounds a computed interval to (a subset of rangeutil's table), seconds.
_NICE_INTERVALS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200)


class MacroError(ValueError):
    """The SQL uses an unknown macro, bad macro arguments or a variable without a value."""


def panel_interval(start: datetime, end: datetime, *, max_points: int = 1000, min_interval_s: int = 1) -> int:
    """The interval Grafana gives a panel of ``max_points`` pixels: range / points, rounded to a nice step.

    >>> from datetime import datetime, UTC
    >>> start = datetime(2024, 1, 1, tzinfo=UTC)
    >>> panel_interval(start, datetime(2024, 1, 1, 6, tzinfo=UTC))
    30
    >>> panel_interval(start, datetime(2024, 1, 1, 1, tzinfo=UTC), min_interval_s=60)
    60
    """
    raw = max((end - start).total_seconds() / max_points, 1.0)
    nice = next((step for step in _NICE_INTERVALS if step >= raw), int(raw))
    return max(nice, min_interval_s, 1)


def _is_all(value: VariableValue) -> bool:
    values = [value] if isinstance(value, str) else list(value)
    return values == [] or values == [""] or ALL in values


def apply_conditional_all(sql: str, variables: Mapping[str, VariableValue]) -> str:
    """Replace each ``$__conditionalAll(condition, $var)`` by the condition or by ``1=1``."""
    marker = "$__conditionalAll("
    while (start := sql.rfind(marker)) != -1:
        args, end = _arguments(sql, start + len(marker) - 1)
        if len(args) != 2:
            raise MacroError(f"$__conditionalAll needs 2 arguments, got {len(args)} in {sql[start:end]!r}")
        name = re.search(r"\$\{?(\w+)", args[1])
        value = variables.get(name.group(1), "") if name else ""
        phrase = "1=1" if _is_all(value) else args[0]
        sql = sql[:start] + phrase + sql[end:]
    return sql


def _format(value: VariableValue, fmt: str | None) -> str:
    values = [value] if isinstance(value, str) else list(value)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    if fmt == "csv":
        return ",".join(values)
    if fmt in (None, "raw"):
        # The plugin's formatter: arrays joined as 'a','b' (unescaped), scalars as they are.
        return value if isinstance(value, str) else "'" + "','".join(values) + "'"
    raise MacroError(f"unsupported variable format {fmt!r}; use raw, singlequote, doublequote or csv")


def apply_variables(sql: str, variables: Mapping[str, VariableValue]) -> str:
    """Interpolate template variables as Grafana does with the ClickHouse plugin's formatter."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(5)
        if name.startswith("__"):
            if name in _GRAFANA_BUILTINS and name in variables:
                return _format(variables[name], fmt)
            return match.group(0)  # a backend macro, or a built-in Grafana leaves alone
        if name not in variables:
            raise MacroError(
                f"variable ${name} has no value (known: {', '.join(sorted(variables)) or 'none'})"
            )
        return _format(variables[name], fmt)

    return _VARIABLE.sub(replace, sql)


def _arguments(sql: str, open_paren: int) -> tuple[list[str], int]:
    """Arguments of the call whose '(' is at ``open_paren`` (split at top-level commas), and the end."""
    depth = 0
    args: list[str] = []
    current: list[str] = []
    for index in range(open_paren, len(sql)):
        char = sql[index]
        if char == "(":
            depth += 1
            if depth == 1:
                continue
        elif char == ")":
            depth -= 1
            if depth == 0:
                args.append("".join(current).strip())
                return [a for a in args if a] if args != [""] else [], index + 1
        elif char == "," and depth == 1:
            args.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    raise MacroError(f"unbalanced parentheses after {sql[max(open_paren - 20, 0) : open_paren + 1]!r}")


def apply_macros(sql: str, start: datetime, end: datetime, interval_s: int) -> str:
    """Expand the plugin's backend macros for the time range [start, end] and panel interval."""
    seconds = max(int(interval_s), 1)
    from_s, to_s = int(start.timestamp()), int(end.timestamp())
    from_ms, to_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    dates = (start.strftime("%Y-%m-%d"), end.strftime("%Y-%m-%d"))

    def one_column(name: str, args: list[str]) -> str:
        if len(args) != 1:
            raise MacroError(f"$__{name} expects 1 argument, received {len(args)}")
        return args[0]

    def expand_one(name: str, args: list[str]) -> str:
        if name == "fromTime":
            return f"toDateTime({from_s})"
        if name == "toTime":
            return f"toDateTime({to_s})"
        if name == "fromTime_ms":
            return f"fromUnixTimestamp64Milli({from_ms})"
        if name == "toTime_ms":
            return f"fromUnixTimestamp64Milli({to_ms})"
        if name == "interval_s":
            return str(seconds)
        if name == "timeFilter":
            col = one_column(name, args)
            return f"{col} >= toDateTime({from_s}) AND {col} <= toDateTime({to_s})"
        if name == "timeFilter_ms":
            col = one_column(name, args)
            return (
                f"{col} >= fromUnixTimestamp64Milli({from_ms}) AND {col} <= fromUnixTimestamp64Milli({to_ms})"
            )
        if name == "dateFilter":
            col = one_column(name, args)
            return f"{col} >= toDate('{dates[0]}') AND {col} <= toDate('{dates[1]}')"
        if name in ("dateTimeFilter", "dt"):
            if len(args) != 2:
                raise MacroError(f"$__{name} expects 2 arguments, received {len(args)}")
            date_col, time_col = args
            return (
                f"({date_col} >= toDate('{dates[0]}') AND {date_col} <= toDate('{dates[1]}')) AND "
                f"({time_col} >= toDateTime({from_s}) AND {time_col} <= toDateTime({to_s}))"
            )
        if name == "timeInterval":
            return f"toStartOfInterval(toDateTime({one_column(name, args)}), INTERVAL {seconds} second)"
        if name == "timeInterval_ms":
            col = one_column(name, args)
            return f"toStartOfInterval(toDateTime64({col}, 3), INTERVAL {seconds * 1000} millisecond)"
        raise MacroError(f"undefined macro $__{name}")

    takes_args = {
        "timeFilter",
        "timeFilter_ms",
        "dateFilter",
        "dateTimeFilter",
        "dt",
        "timeInterval",
        "timeInterval_ms",
    }
    out, position = [], 0
    for match in _MACRO.finditer(sql):
        if match.start() < position:
            continue
        name = match.group(1)
        out.append(sql[position : match.start()])
        if name in takes_args or (match.end() < len(sql) and sql[match.end()] == "("):
            if match.end() >= len(sql) or sql[match.end()] != "(":
                raise MacroError(f"$__{name} needs arguments in parentheses")
            args, position = _arguments(sql, match.end())
        else:
            args, position = [], match.end()
        out.append(expand_one(name, args))
    out.append(sql[position:])
    return "".join(out)


def expand(
    sql: str,
    start: datetime,
    end: datetime,
    interval_s: int,
    variables: Mapping[str, VariableValue] | None = None,
) -> str:
    """All three steps: the SQL ClickHouse would run for this panel."""
    values = dict(variables or {})
    return apply_macros(apply_variables(apply_conditional_all(sql, values), values), start, end, interval_s)
