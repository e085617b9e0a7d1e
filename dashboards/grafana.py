"""Typed builders for the parts of Grafana's dashboard JSON model that modelmon uses.

Plain dicts, not ``grafana-foundation-sdk``: the SDK has no query type for the ClickHouse
datasource plugin (every target would be a hand-written dict anyway), its versions carry an epoch
and follow Grafana's schema releases, and five dashboards of five panel kinds do not need it. The
JSON written here is what Grafana 12 stores (``SCHEMA_VERSION``); ``docs/dashboards.md`` says more.

Guarantees: every panel and variable query names the one provisioned ClickHouse datasource
(``DATASOURCE``); panel ids are unique within a dashboard and ``Layout`` never overlaps panels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

DATASOURCE_UID = "modelmon-clickhouse"
DATASOURCE_TYPE = "grafana-clickhouse-datasource"
DATASOURCE: dict[str, str] = {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
SCHEMA_VERSION = 41  # Grafana 12.x
GRID_WIDTH = 24

QueryFormat = Literal["time_series", "table"]
# The plugin's editor types and query types (src/types/sql.ts) and sqlutil's format option numbers.
_QUERY_TYPE = {"time_series": "timeSeries", "table": "table"}
_FORMAT = {"time_series": 0, "table": 1}

Json = dict[str, Any]


@dataclass(frozen=True)
class Query:
    """One SQL target of a panel: ``sql`` may use the plugin's macros and ``${var}`` variables."""

    sql: str
    format: QueryFormat = "time_series"
    ref_id: str = "A"

    def target(self) -> Json:
        return {
            "refId": self.ref_id,
            "datasource": dict(DATASOURCE),
            "editorType": "sql",
            "queryType": _QUERY_TYPE[self.format],
            "format": _FORMAT[self.format],
            "rawSql": self.sql,
        }


@dataclass
class Panel:
    """A panel before layout: kind (Grafana panel type), title, queries and display options."""

    kind: str
    title: str
    queries: list[Query]
    width: int = 12
    height: int = 8
    description: str = ""
    unit: str = ""
    decimals: int | None = None
    thresholds: list[tuple[float | None, str]] = field(default_factory=list)
    min: float | None = None
    max: float | None = None
    options: Json = field(default_factory=dict)
    custom: Json = field(default_factory=dict)
    mappings: list[Json] = field(default_factory=list)
    overrides: list[Json] = field(default_factory=list)
    repeat: str | None = None
    min_interval: str | None = None
    # Which model task the panel is about ("classification", "regression"), for tests and the report.
    task: str | None = None
    key: str = ""  # stable name used by the report and the tests

    def to_json(self, panel_id: int, x: int, y: int) -> Json:
        defaults: Json = {"custom": dict(self.custom)}
        if self.unit:
            defaults["unit"] = self.unit
        if self.decimals is not None:
            defaults["decimals"] = self.decimals
        if self.min is not None:
            defaults["min"] = self.min
        if self.max is not None:
            defaults["max"] = self.max
        if self.mappings:
            defaults["mappings"] = self.mappings
        steps = self.thresholds or [(None, "green")]
        defaults["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": color, "value": value} for value, color in steps],
        }
        panel: Json = {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": dict(DATASOURCE),
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "targets": [query.target() for query in self.queries],
            "fieldConfig": {"defaults": defaults, "overrides": list(self.overrides)},
            "options": dict(self.options),
        }
        if self.repeat:
            panel.update(repeat=self.repeat, repeatDirection="h", maxPerRow=3)
        if self.min_interval:
            panel["interval"] = self.min_interval
        return panel


def row(title: str) -> Panel:
    """A full-width row header (no queries)."""
    return Panel("row", title, [], width=GRID_WIDTH, height=1)


@dataclass(frozen=True)
class Variable:
    """A query variable whose options come from ClickHouse.

    The query returns one column (value = text) or two (value, then the text shown), as the
    plugin's ``metricFindQuery`` reads them.
    """

    name: str
    label: str
    sql: str
    multi: bool = False
    include_all: bool = False

    def to_json(self) -> Json:
        return {
            "name": self.name,
            "label": self.label,
            "type": "query",
            "datasource": dict(DATASOURCE),
            "query": {"editorType": "sql", "rawSql": self.sql, "refId": f"variable-{self.name}"},
            "definition": self.sql,
            "refresh": 2,  # on time range change
            "multi": self.multi,
            "includeAll": self.include_all,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if self.include_all else {},
            "options": [],
            "sort": 1,
            "hide": 0,
        }


@dataclass(frozen=True)
class Annotation:
    """An annotation query (time, text, tags columns) drawn on every time series panel."""

    name: str
    sql: str
    color: str = "purple"

    def to_json(self) -> Json:
        return {
            "name": self.name,
            "enable": True,
            "iconColor": self.color,
            "datasource": dict(DATASOURCE),
            "target": Query(self.sql, "table", ref_id="Anno").target(),
        }


@dataclass
class Dashboard:
    """A dashboard: panels in reading order (laid out left to right, top to bottom)."""

    uid: str
    title: str
    description: str
    panels: list[Panel]
    variables: list[Variable] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    tags: tuple[str, ...] = ("modelmon",)
    time_from: str = "now-6h"
    refresh: str = "1m"

    def laid_out(self) -> list[tuple[Panel, Json]]:
        """(panel, its JSON) with ids from 1 and grid positions that never overlap."""
        x = y = line_height = 0
        result = []
        for panel_id, panel in enumerate(self.panels, start=1):
            if panel.kind == "row" or x + panel.width > GRID_WIDTH:
                x, y, line_height = 0, y + line_height, 0
            result.append((panel, panel.to_json(panel_id, x, y)))
            x += panel.width
            line_height = max(line_height, panel.height)
            if panel.kind == "row":
                x, y, line_height = 0, y + panel.height, 0
        return result

    def to_json(self) -> Json:
        builtin = {
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True,
            "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        }
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": list(self.tags),
            "timezone": "utc",
            "editable": False,
            "graphTooltip": 1,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "refresh": self.refresh,
            "time": {"from": self.time_from, "to": "now"},
            "annotations": {"list": [builtin, *(a.to_json() for a in self.annotations)]},
            "templating": {"list": [v.to_json() for v in self.variables]},
            "links": [
                {
                    "type": "dashboards",
                    "title": "modelmon",
                    "tags": ["modelmon"],
                    "asDropdown": True,
                    "includeVars": True,
                    "keepTime": True,
                }
            ],
            "panels": [json for _panel, json in self.laid_out()],
        }
