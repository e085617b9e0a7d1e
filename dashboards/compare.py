"""``modelmon report --compare A B``: one model's version B (challenger) against version A (champion).

Reads the per-window accuracy counts of both versions with the Versions dashboard's own SQL
(``dashboards.versions.WINDOW_COUNTS``, the whole model, the windows both versions have labels in),
compares them with ``detectors.versions`` per window and summed over the time range; binary precision
and recall likewise, summed over the windows where both versions stored the denominator
(``RATE_COUNTS``; a verdict line each, or "not tested" with the reason). One picture:
accuracy of A and B per window on top; below, the difference B - A per window with its
95 % interval, and the accumulated difference with its interval as a band, the verdict in the title.
Below the verdict, when stage 2 compared the versions window by window (``PAIR_SUMMARY``): the share
of windows whose predictions drifted between the versions with the latest p-value, and the shadow
agreement on shared requests over the range (weighted by the requests matched per window).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from clickhouse_connect.driver.client import Client
from matplotlib.dates import date2num
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from dashboards.macros import expand
from dashboards.runner import TimeRange, resolve_variables, run_sql
from dashboards.versions import (
    LEVEL,
    PAIR_SUMMARY,
    RATE_COUNTS,
    RATE_DENOMINATORS,
    RATE_METRICS,
    WINDOW_COUNTS,
    versions_dashboard,
)
from detectors.versions import ProportionComparison, accumulate, compare_proportions, wilson
from modelmon.metrics import ACCURACY

CHAMPION, CHALLENGER, BAND = "#1f60c4", "#e0752d", "#8ab8ff"


@dataclass(frozen=True)
class VersionComparison:
    model: str
    a: str
    b: str
    windows: list[tuple[object, ProportionComparison]]  # (window start, that window's comparison)
    total: ProportionComparison | None  # None: no window with labels for both versions
    path: Path | None = None
    pairs: tuple[float, ...] = ()  # PAIR_SUMMARY's row: drift windows, drifted share, latest p, ...
    rates: tuple[tuple[str, ProportionComparison | str], ...] = ()  # precision, recall: test or why not

    def summary(self) -> str:
        if self.total is None:
            head = f"{self.model}: no window with labelled accuracy for both v{self.a} and v{self.b}"
        else:
            head = f"{self.model}: {self.total.verdict(ACCURACY, self.a, self.b)}"
        return "\n".join([head, *self.rate_lines(), *self.pair_lines()])

    def rate_lines(self) -> list[str]:
        """One line per tested proportion besides accuracy (binary precision, recall), or why not."""
        return [
            f"  {metric}: {result}"
            if isinstance(result, str)
            else f"  {result.verdict(metric, self.a, self.b)}"
            for metric, result in self.rates
        ]

    def pair_lines(self) -> list[str]:
        """The version-pair lines: prediction drift between the versions, shadow agreement."""
        if not self.pairs:
            return []
        drift_windows, drifted, latest, agreement_windows, matched, agreement = self.pairs
        lines = []
        if drift_windows:
            lines.append(
                f"  prediction drift v{self.b} vs v{self.a}: {drifted:.0%} of {drift_windows:.0f} windows "
                f"drifted (p < 0.05), latest p = {latest:.3g}"
            )
        if agreement_windows and matched:
            lower, upper = wilson(agreement * matched, matched, LEVEL)
            lines.append(
                f"  shadow agreement (same request_id): {agreement:.1%} of {matched:.0f} sampled requests "
                f"over {agreement_windows:.0f} windows ({LEVEL:.0%} CI {lower:.1%} to {upper:.1%})"
            )
        return lines


def compare_versions(client: Client, model: str, a: str, b: str, time_range: TimeRange) -> VersionComparison:
    """Accuracy of B against A per window and summed; ``LookupError`` for a version without data."""
    if a == b:
        raise ValueError(f"compare two different versions (got v{a} twice)")
    chosen = {"model": model, "champion": a, "challenger": b}
    variables = resolve_variables(client, versions_dashboard(), time_range, chosen)
    rows = run_sql(client, expand(WINDOW_COUNTS, time_range.start, time_range.end, 1, variables)).rows
    counts = [(float(sa), float(na), float(sb), float(nb)) for _, sa, na, sb, nb in rows]
    windows = [(row[0], compare_proportions(*c, level=LEVEL)) for row, c in zip(rows, counts, strict=True)]
    total = accumulate(counts, level=LEVEL) if counts else None
    summary = run_sql(client, expand(PAIR_SUMMARY, time_range.start, time_range.end, 1, variables)).rows
    row = summary[0] if summary else ()
    pairs = tuple(float(x) if x is not None and math.isfinite(float(x)) else 0.0 for x in row)
    return VersionComparison(
        model, a, b, windows, total, pairs=pairs, rates=_rates(client, time_range, variables)
    )


def _rates(
    client: Client, time_range: TimeRange, variables: Mapping[str, str | Sequence[str]]
) -> tuple[tuple[str, ProportionComparison | str], ...]:
    """Binary precision and recall of B against A summed over the windows with denominators; a metric
    whose points carry none says why it is not tested; a metric without points is left out."""

    def rows(sql: str) -> list[tuple[Any, ...]]:
        return run_sql(client, expand(sql, time_range.start, time_range.end, 1, variables)).rows

    counts = rows(RATE_COUNTS)
    stored = {
        str(metric): (float(without), float(macro)) for metric, _, without, macro in rows(RATE_DENOMINATORS)
    }
    out: list[tuple[str, ProportionComparison | str]] = []
    for metric in RATE_METRICS:
        windows = [
            (float(sa), float(na), float(sb), float(nb))
            for _, name, sa, na, sb, nb in counts
            if name == metric
        ]
        without, macro = stored.get(metric, (0.0, 0.0))
        if windows:
            out.append((metric, accumulate(windows, level=LEVEL)))
        elif without:
            out.append((metric, "not tested: no denominator stored"))
        elif macro:
            out.append((metric, "not tested: macro-averaged over classes, not one proportion"))
    return tuple(out)


def draw_comparison(comparison: VersionComparison) -> Figure:
    """Accuracy of both versions per window, and the difference with per-window and summed intervals."""
    figure = Figure(figsize=(10, 6.4), dpi=100, layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(1, 1.2))
    x = date2num([time for time, _ in comparison.windows])
    results = [c for _, c in comparison.windows]
    a, b = comparison.a, comparison.b
    top.plot(x, [c.p_a for c in results], "o-", color=CHAMPION, label=f"v{a} (A, champion)")
    top.plot(x, [c.p_b for c in results], "s--", color=CHALLENGER, markerfacecolor="none", label=f"v{b} (B)")
    top.set_ylabel("accuracy")
    top.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    top.set_title(f"{comparison.model}: accuracy per window, v{b} against v{a}", loc="left", fontsize=11)
    diff = np.array([c.difference for c in results])
    errors = np.array([[c.difference - c.lower for c in results], [c.upper - c.difference for c in results]])
    bottom.errorbar(x, diff, yerr=errors, fmt="o", color=CHALLENGER, capsize=3, label="B - A, one window")
    total = comparison.total
    if total is not None:
        bottom.axhspan(total.lower, total.upper, color=BAND, alpha=0.4, label=f"summed: {LEVEL:.0%} interval")
        bottom.axhline(total.difference, color=CHAMPION, linewidth=1.6, label="summed: B - A")
        lines = [*comparison.rate_lines(), *comparison.pair_lines()]
        told = [total.verdict(ACCURACY, a, b), *(line.strip() for line in lines)]
        bottom.set_title("\n".join(textwrap.fill(t, 105) for t in told), loc="left", fontsize=9)
    bottom.axhline(0, color="black", linewidth=0.8)
    bottom.set_ylabel("accuracy B - A (points)")
    bottom.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    for axes in (top, bottom):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    bottom.xaxis_date()
    return figure


def write_comparison(comparison: VersionComparison, out_dir: Path) -> VersionComparison:
    """Save the picture (none without shared windows); return the comparison with its path."""
    if comparison.total is None:
        return comparison
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in comparison.model)
    a, b = (
        "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in v) for v in (comparison.a, comparison.b)
    )
    path = out_dir / f"{safe}-compare-v{a}-v{b}.png"
    out_dir.mkdir(parents=True, exist_ok=True)
    draw_comparison(comparison).savefig(path)
    return replace(comparison, path=path)
