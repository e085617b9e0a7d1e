"""The report's matplotlib figures: drift heatmap, line panels, alert timeline.

Each ``draw_*`` takes the rows of a panel's own query (``dashboards.sql``) and returns a
:class:`~matplotlib.figure.Figure`; ``dashboards.report`` saves them. What the pictures promise:

* the drift heatmap is coloured by score ÷ threshold of each point's own method
  (``sql.DRIFT_RATIO``) on one fixed scale, 0 to 2 with the drift line at 1, so a chi-square
  statistic of 11 that did not drift is not redder than a KS of 0.78 that did; drifted cells
  (ratio >= 1) carry a dot, and the model output (``__prediction__``) has its own row;
* durations are drawn in the unit that fits the data (ms, s, min, h or days, named on the axis);
* each series of a line panel has its own colour, line style and marker (hollow markers of
  decreasing size, so series lying on top of each other stay visible);
* a rate's axis starts at 0, with a top of at least 5 % when every value is 0;
* estimated vs realized: the estimate's 95 % band shaded, the estimate a dashed line, the realized
  value a solid line with filled markers; windows known only by their estimate (no labels yet) are
  hatched, so a missing realized point reads as "not yet", not as "no change";
* alert bars run from pending/fired to resolved (or to the model's last window end), a pending
  episode that cleared before firing is hatched, a resolution is a tick, not a bar;
* the x-axis spans the model's windows (``Span``), padded so one window is not a range of years.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import PercentFormatter

from modelmon.references import PREDICTION_FEATURE

RATIO_MAX = 2.0  # the heatmap's colour scale is 0 .. RATIO_MAX, the drift line at 1
RATIO_CMAP = "RdYlGn_r"  # diverging around the line: green below, yellow at, red past it
FIRING, PENDING = "#e02f44", "#f2cc0c"
ESTIMATE, REALIZED, UNLABELLED = "#1f60c4", "#37872d", "#b4b4b4"
RESOLVED = "#37872d"
# (unit, milliseconds per unit), smallest first; a duration is shown in the largest unit its
# biggest value reaches, so the axis reads 0..38 minutes rather than 0..2.3e6 ms.
TIME_UNITS = (("milliseconds", 1.0), ("seconds", 1e3), ("minutes", 6e4), ("hours", 3.6e6), ("days", 8.64e7))
LINE_STYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (8, 3)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


@dataclass(frozen=True)
class Span:
    """A model's windows in the time range: first start, last start, last end."""

    first_start: datetime
    last_start: datetime
    last_end: datetime

    @property
    def window(self) -> timedelta:
        return self.last_end - self.last_start

    def line_limits(self) -> tuple[datetime, datetime]:
        """From the first to the last window start (where points are drawn), padded by half a window."""
        pad = max(self.window / 2, (self.last_start - self.first_start) * 0.02, timedelta(seconds=1))
        return self.first_start - pad, self.last_start + pad


def time_unit(largest_ms: float) -> tuple[str, float]:
    """The unit to draw durations whose biggest value is ``largest_ms`` milliseconds in.

    >>> time_unit(2_300_000), time_unit(850), time_unit(90_000), time_unit(0)
    (('minutes', 60000.0), ('milliseconds', 1.0), ('minutes', 60000.0), ('milliseconds', 1.0))
    """
    chosen = TIME_UNITS[0]
    for unit in TIME_UNITS:
        if abs(largest_ms) >= unit[1]:
            chosen = unit
    return chosen


def _figure() -> tuple[Figure, Axes]:
    figure = Figure(figsize=(10, 3.6), dpi=100, layout="constrained")
    return figure, figure.add_subplot()


def _time_axis(axes: Axes, limits: tuple[datetime, datetime] | None) -> None:
    locator = AutoDateLocator(minticks=3, maxticks=9)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    if limits:
        axes.set_xlim(date2num(limits[0]), date2num(limits[1]))


def _records(result: Any) -> list[dict[str, Any]]:
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


def draw_lines(
    result: Any,
    thresholds: Any | None,
    title: str,
    unit: str,
    *,
    span: Span | None = None,
    y_min: float | None = None,
    y_max: float | None = None,
) -> Figure:
    """One line per label of ``result`` (time, label, value); ``thresholds`` rows as dashed lines.

    ``unit`` is the panel's Grafana unit: ``ms`` is converted to the fitting time unit,
    ``percentunit`` shown in percent from 0.
    """
    figure, axes = _figure()
    label_column = next(c for c in result.columns if c not in ("time", "value"))
    series: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for record in _records(result):
        value = math.nan if record["value"] is None else float(record["value"])
        series[str(record[label_column])].append((record["time"], value))
    values = [v for points in series.values() for _, v in points if math.isfinite(v)]
    scale, label = 1.0, unit
    if unit == "ms":
        label, scale = time_unit(max((abs(v) for v in values), default=0.0))
    for index, (name, points) in enumerate(sorted(series.items())):
        axes.plot(
            date2num([t for t, _ in points]),
            [v / scale for _, v in points],
            linestyle=LINE_STYLES[index % len(LINE_STYLES)],
            marker=MARKERS[index % len(MARKERS)],
            markersize=max(3.0, 9.0 - 1.5 * index),
            markerfacecolor="none",
            linewidth=1.4,
            label=name,
        )
    lines = _records(thresholds) if thresholds else []
    for record in lines:
        axes.axhline(float(record["value"]) / scale, color=FIRING, linestyle="--", linewidth=1)
    if lines:
        names = sorted({str(record["series"]) for record in lines})
        axes.plot([], [], color=FIRING, linestyle="--", label=", ".join(names))
    if unit == "percentunit" or y_min is not None:
        top = max((v / scale for v in values), default=0.0)
        empty_top = 0.05 if unit == "percentunit" else 1.0
        upper = y_max if y_max is not None else (top * 1.1 if top > 0 else empty_top)
        axes.set_ylim(0.0 if y_min is None else y_min, upper)
    if unit == "percentunit":
        axes.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        label = "percent"
    axes.set_ylabel(label)
    axes.set_title(title, loc="left", fontsize=11)
    axes.grid(alpha=0.3)
    _time_axis(axes, span.line_limits() if span else None)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return figure


def ratio_grid(result: Any) -> tuple[list[datetime], list[str], np.ndarray]:
    """Window starts, feature rows (``__prediction__`` last) and the score ÷ threshold grid (NaN: none)."""
    times = sorted({row[0] for row in result.rows})
    features = sorted({str(row[1]) for row in result.rows}, key=lambda f: (f == PREDICTION_FEATURE, f))
    grid = np.full((len(features), len(times)), np.nan)
    for time, feature, value in result.rows:
        if value is not None:
            grid[features.index(str(feature)), times.index(time)] = float(value)
    return times, features, grid


def draw_heatmap(result: Any, title: str) -> Figure:
    """Features by windows, coloured by score ÷ threshold clipped to 0..2; a dot where it is >= 1."""
    figure, axes = _figure()
    times, features, grid = ratio_grid(result)
    image = axes.imshow(
        np.clip(grid, 0.0, RATIO_MAX),
        aspect="auto",
        cmap=RATIO_CMAP,
        interpolation="nearest",
        vmin=0.0,
        vmax=RATIO_MAX,
    )
    rows, columns = np.nonzero(np.nan_to_num(grid, nan=0.0) >= 1.0)
    axes.scatter(columns, rows, s=10, color="black", marker="o", label="drifted (≥ 1)")
    labels = [f"{f} (model output)" if f == PREDICTION_FEATURE else f for f in features]
    axes.set_yticks(range(len(features)), labels, fontsize=8)
    if PREDICTION_FEATURE in features and len(features) > 1:
        axes.axhline(len(features) - 1.5, color="white", linewidth=2)
    step = max(1, len(times) // 8)
    axes.set_xticks(
        range(0, len(times), step), [times[i].strftime("%H:%M") for i in range(0, len(times), step)]
    )
    axes.set_xlabel("window start (UTC)")
    axes.set_title(title, loc="left", fontsize=11)
    bar = figure.colorbar(image, ax=axes, extend="max", ticks=[0, 0.5, 1, 1.5, 2])
    bar.set_label("score ÷ threshold (1 = drift line)")
    bar.ax.axhline(1.0, color="black", linewidth=1.5)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.12), frameon=False)
    return figure


def draw_attribution(result: Any, title: str, *, top: int = 10) -> Figure:
    """What moved in the latest window: the ``top`` features by weighted drift, highest on top.

    Bars: score ÷ threshold x importance weight (the ranking); dots: score ÷ threshold alone. The
    line at 1 is the drift line of a feature of average importance.
    """
    figure, axes = _figure()
    rows = _records(result)[:top][::-1]
    names = [str(row["feature"]) for row in rows]
    weighted = [float(row["weighted"] or 0.0) for row in rows]
    ratios = [float(row["score_over_threshold"] or 0.0) for row in rows]
    places = np.arange(len(rows))
    axes.barh(places, weighted, color=["#d62728" if r >= 1 else "#1f77b4" for r in ratios],
              label="score ÷ threshold x importance weight")  # fmt: skip
    axes.scatter(ratios, places, color="black", s=14, zorder=3, label="score ÷ threshold")
    axes.axvline(1.0, color="black", linewidth=1, linestyle="--")
    axes.set_yticks(places, names, fontsize=8)
    axes.set_xlabel("weighted drift (red: drifted, score ÷ threshold ≥ 1)")
    axes.set_title(title, loc="left", fontsize=11)
    axes.legend(fontsize=7, loc="lower right")
    return figure


@dataclass(frozen=True)
class Bar:
    """One drawn stretch of an alert: ``kind`` is firing, pending or cleared (pending, never fired)."""

    alert: str
    kind: str
    start: datetime
    stop: datetime


STATE = {0: "resolved", 1: "pending", 2: "firing"}


def alert_bars(result: Any, end: datetime) -> tuple[list[Bar], list[tuple[str, datetime]]]:
    """The bars and resolution ticks of ``sql.ALERT_TIMELINE`` rows (time, alert, value).

    A state lasts until the alert's next row (a NULL row is the model's last window end) or ``end``.
    Resolved is not a bar; a pending stretch followed by resolved is ``cleared``.
    """
    changes: dict[str, list[tuple[datetime, str | None]]] = defaultdict(list)
    for time, alert, value in result.rows:
        changes[str(alert)].append((time, None if value is None else STATE.get(int(value), "resolved")))
    bars, resolutions = [], []
    for alert, rows in changes.items():
        rows.sort(key=lambda row: row[0])
        for (start, state), (stop, following) in zip(rows, [*rows[1:], (end, None)], strict=True):
            if state == "resolved":
                resolutions.append((alert, start))
            elif state is not None:
                kind = "cleared" if state == "pending" and following == "resolved" else state
                bars.append(Bar(alert, kind, start, max(start, stop)))
    return bars, resolutions


def draw_timeline(result: Any, span: Span | None, end: datetime, title: str, *, prefix: str = "") -> Figure:
    """Alert bars (``alert_bars``) on an x-axis from the first window (or change) to the last window end."""
    figure, axes = _figure()
    stop = span.last_end if span else end
    bars, resolutions = alert_bars(result, stop)
    names = sorted({str(row[1]) for row in result.rows})
    begin = min([row[0] for row in result.rows] + ([span.first_start] if span else []))
    width = max(stop - begin, timedelta(seconds=1))
    for bar in bars:
        row = names.index(bar.alert)
        length = max(bar.stop - bar.start, width / 200)  # an alert that fired at the very end shows
        if bar.kind == "cleared":
            axes.barh(
                row,
                days(length),
                left=date2num(bar.start),
                height=0.5,
                color="none",
                edgecolor=PENDING,
                hatch="///",
            )
        else:
            color = FIRING if bar.kind == "firing" else PENDING
            height = 0.6 if bar.kind == "firing" else 0.4
            axes.barh(row, days(length), left=date2num(bar.start), height=height, color=color)
    for alert, time in resolutions:
        axes.plot(date2num([time]), [names.index(alert)], marker="|", markersize=14, color=RESOLVED, mew=2.5)
    labels = [name.removeprefix(prefix) for name in names]
    axes.set_yticks(range(len(names)), labels, fontsize=8)
    axes.set_ylim(-0.7, len(names) - 0.3)
    handles: Sequence[Any] = [
        Patch(color=FIRING, label="firing"),
        Patch(color=PENDING, label="pending"),
        Patch(facecolor="none", edgecolor=PENDING, hatch="///", label="pending, cleared\nbefore firing"),
        Line2D([], [], marker="|", markersize=12, mew=2.5, color=RESOLVED, linestyle="", label="resolved"),
    ]
    axes.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    axes.set_title(title, loc="left", fontsize=11)
    axes.grid(alpha=0.3, axis="x")
    _time_axis(axes, (begin - width * 0.01, stop + width * 0.01))
    return figure


def days(span: timedelta) -> float:
    """A duration in matplotlib's date units (days), for bar widths on a date axis.

    >>> days(timedelta(hours=6))
    0.25
    """
    return span / timedelta(days=1)


def estimate_arrays(result: Any) -> tuple[list[datetime], dict[str, np.ndarray]]:
    """Window starts and one array per series of ``sql.estimate_series`` rows (NaN: no point)."""
    times = sorted({row[0] for row in result.rows})
    arrays: dict[str, np.ndarray] = defaultdict(lambda: np.full(len(times), np.nan))
    for time, series, value in result.rows:
        if value is not None:
            arrays[str(series)][times.index(time)] = float(value)
    names = ("estimated", "band lower", "band upper", "realized", "estimation error")
    return times, {name: arrays[name] for name in names}


def draw_estimate(
    result: Any, thresholds: Any | None, title: str, metric: str, *, span: Span | None = None
) -> Figure:
    """The estimate in its shaded band, the realized value, and the windows that have no labels yet."""
    figure, axes = _figure()
    times, series = estimate_arrays(result)
    x = date2num(times)
    estimate, realized = series["estimated"], series["realized"]
    band = (series["band lower"], series["band upper"])
    axes.fill_between(x, *band, color=ESTIMATE, alpha=0.18, linewidth=0, label="95 % band of the estimate")
    half = days(span.window) / 2 if span else (float(np.min(np.diff(x))) / 2 if len(x) > 1 else 0.0005)
    unlabelled = np.flatnonzero(np.isfinite(estimate) & ~np.isfinite(realized))
    for order, index in enumerate(unlabelled):
        label = "no labels yet:\nestimate only" if order == 0 else None
        axes.axvspan(
            x[index] - half,
            x[index] + half,
            fc="none",
            ec=UNLABELLED,
            hatch="//",
            lw=0,
            zorder=0,
            label=label,
        )
    axes.plot(
        x, estimate, color=ESTIMATE, linestyle="--", marker="o", markersize=4, markerfacecolor="white",
        linewidth=1.6, label=f"estimated {metric} (from scores)",
    )  # fmt: skip
    axes.plot(
        x, realized, color=REALIZED, marker="o", markersize=6, linewidth=1.8, label=f"realized {metric}"
    )
    errors = series["estimation error"][np.isfinite(series["estimation error"])]
    if errors.size:
        text = f"mean |estimated - realized|\n{errors.mean():.3f} over {errors.size} windows"
        axes.plot([], [], " ", label=text)
    lines = _records(thresholds) if thresholds else []
    for record in lines:
        axes.axhline(float(record["value"]), color=FIRING, linestyle="--", linewidth=1)
    if lines:
        names = sorted({str(record["series"]) for record in lines})
        axes.plot([], [], color=FIRING, linestyle="--", label=", ".join(names))
    axes.set_ylim(0.0, 1.0)
    axes.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    axes.set_ylabel("percent")
    axes.set_title(title, loc="left", fontsize=11)
    axes.grid(alpha=0.3)
    _time_axis(axes, span.line_limits() if span else None)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return figure
