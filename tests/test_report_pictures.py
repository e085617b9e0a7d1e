"""The report's pictures tell the truth: one test per defect of issue #14 (item 3).

Each test writes metric points / alerts through the real ``ClickHouseWriter`` into the session
chDB engine, renders with ``write_report`` and inspects the matplotlib figures the report saves
(captured at ``Figure.savefig``): colour values, axis labels and limits, bar extents.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.figure import Figure

from dashboards.report import write_report
from modelmon.events import Alert, AlertState, MetricPoint, Severity
from sinks.writer import ClickHouseWriter
from tests.dashboard_seed import CLASSIFIER, seed

pytestmark = pytest.mark.integration
MODEL = "pictures-model"
# Recent: metric_points has a TTL, older rows would be dropped at insert.
START = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0)
WINDOW = timedelta(minutes=1)


def _point(metric: str, value: float, w: int, feature: str = "", **details: object) -> MetricPoint:
    return MetricPoint(
        model_id=MODEL,
        model_version="1",
        segment="",
        metric=metric,
        feature=feature,
        window_start=START + w * WINDOW,
        window_end=START + (w + 1) * WINDOW,
        source="stage2",
        revision=1,
        value=value,
        details=details,
    )


def _report(client: Any, tmp_path: Path, windows: int, *, since: str = "2h") -> None:
    write_report(client, [MODEL], tmp_path, since, now=START + windows * WINDOW + timedelta(minutes=40))


def _cell(figure: Figure, feature: str, column: int) -> float:
    """The heatmap's normalised colour value (0 = coolest, 1 = hottest) of ``feature`` at ``column``."""
    axes = figure.axes[0]
    image = axes.images[0]
    rows = [label.get_text() for label in axes.get_yticklabels()]
    value = np.asarray(image.get_array())[rows.index(feature), column]
    return float(image.norm(value))


def test_heatmap_colours_drift_by_its_own_threshold(
    clickhouse: Any, tmp_path: Path, figures: dict[str, Figure]
) -> None:
    """The demo's numbers: country's chi-square of 11 did not drift (adjusted p 0.38 > 0.05), amount's
    KS of 0.78 did (p ~ 1e-9, effect 0.4 >= 0.1). A raw-score colour scale paints country hotter."""
    common = {"threshold": 0.05, "test_drifted": False}
    points = [
        _point("events", 500, 0),
        _point("chi_square", 11.1, 0, "country", method="chi_square", p_value=0.108,
               adjusted_p_value=0.377, effect_size=0.144, min_effect=0.05, drifted=False, **common),
        _point("drifted", 0, 0, "country", method="chi_square"),
        _point("ks", 0.78, 0, "amount", method="ks", p_value=1e-9, adjusted_p_value=3e-9,
               effect_size=0.4, min_effect=0.1, drifted=True, **common),
        _point("drifted", 1, 0, "amount", method="ks"),
        # A distance: score / threshold. 0.15 / 0.2 is below its line.
        _point("psi", 0.15, 0, "merchant_risk", method="psi", threshold=0.2, p_value=None, drifted=False),
        _point("drifted", 0, 0, "merchant_risk", method="psi"),
        _point("psi", 0.3, 0, "__prediction__", method="psi", threshold=0.2, p_value=None, drifted=True),
        _point("drifted", 1, 0, "__prediction__", method="psi"),
    ]  # fmt: skip
    ClickHouseWriter(clickhouse).write(points)  # type: ignore[arg-type]
    _report(clickhouse, tmp_path, 1)
    heatmap = figures[f"{MODEL}-drift-heatmap.png"]
    assert _cell(heatmap, "amount", 0) > _cell(heatmap, "country", 0)
    # On the fixed scale 0..2 the line (1.0) is the middle: drifted above it, the others below.
    assert _cell(heatmap, "amount", 0) > 0.5 > _cell(heatmap, "country", 0)
    assert _cell(heatmap, "merchant_risk", 0) == pytest.approx(0.75 / 2)
    prediction = [t.get_text() for t in heatmap.axes[0].get_yticklabels() if "__prediction__" in t.get_text()]
    assert len(prediction) == 1 and _cell(heatmap, prediction[0], 0) == pytest.approx(1.5 / 2)


def test_lateness_in_a_time_unit_and_series_distinguishable(
    clickhouse: Any, tmp_path: Path, figures: dict[str, Figure]
) -> None:
    """Events replayed 38 minutes late: p50 = p95 = p99 = max, about 2.3e6 ms."""
    points = [_point("events", 500, w) for w in range(5)]
    for w in range(5):
        for stat in ("p50", "p95", "p99", "max"):
            points.append(_point(f"lateness_{stat}_ms", 2_300_000 - 60_000 * w, w))
    ClickHouseWriter(clickhouse).write(points)  # type: ignore[arg-type]
    _report(clickhouse, tmp_path, 5)
    axes = figures[f"{MODEL}-fidelity-lateness.png"].axes[0]
    assert axes.get_ylabel() in ("seconds", "minutes", "hours")
    lines = [line for line in axes.get_lines() if len(line.get_xdata()) == 5]
    assert len(lines) == 4
    assert all(0 < max(line.get_ydata()) < 1000 for line in lines)
    assert max(lines[0].get_ydata()) == pytest.approx(2_300_000 / 60_000)
    styles = {(str(line.get_linestyle()), line.get_marker()) for line in lines}
    assert len(styles) == 4, "overlapping series need their own line style and marker"
    assert len({line.get_color() for line in lines}) == 4
    legend = axes.get_legend()
    assert legend is not None and len(legend.get_texts()) == 4


def test_rates_start_at_zero_with_a_top_when_all_are_zero(
    clickhouse: Any, tmp_path: Path, figures: dict[str, Figure]
) -> None:
    points = [_point("events", 500, w) for w in range(4)]
    points += [_point("missing_rate", 0.0, w, feature) for w in range(4) for feature in ("a", "b")]
    ClickHouseWriter(clickhouse).write(points)  # type: ignore[arg-type]
    _report(clickhouse, tmp_path, 4)
    bottom, top = figures[f"{MODEL}-fidelity-missing.png"].axes[0].get_ylim()
    assert bottom == 0 and 0 < top <= 1


def test_alert_bars_end_at_the_last_window_and_pending_only_is_not_resolved(
    clickhouse: Any, tmp_path: Path, figures: dict[str, Figure]
) -> None:
    def alert(rule: str, state: AlertState, w: int) -> Alert:
        window = {"window_start": START + w * WINDOW, "window_end": START + (w + 1) * WINDOW}
        return Alert(dedup_key=f"{MODEL}|{rule}||", model_id=MODEL, rule=rule, state=state,
                     severity=Severity.WARNING, metric="accuracy", value=0.5, threshold=0.8,
                     ts=START + (w + 1) * WINDOW, **window)  # fmt: skip

    points = [_point("events", 500, w) for w in range(10)]
    alerts = [
        alert("accuracy-drop", AlertState.PENDING, 2),
        alert("accuracy-drop", AlertState.FIRING, 3),  # still firing at the end
        alert("blip", AlertState.PENDING, 1),
        alert("blip", AlertState.RESOLVED, 2),  # cleared before firing
    ]
    ClickHouseWriter(clickhouse).write([*points, *alerts])  # type: ignore[arg-type]
    _report(clickhouse, tmp_path, 10)  # "now" is 40 minutes after the last window
    axes = figures[f"{MODEL}-alerts.png"].axes[0]
    last_end = START + 10 * WINDOW
    right = axes.get_xlim()[1]
    assert abs(right - _days(last_end)) < 1 / 24 / 60 * 0.5, "the x-axis ends at the last window end"
    rows = [label.get_text() for label in axes.get_yticklabels()]
    bars = {(rows[round(bar.get_y() + bar.get_height() / 2)], _state(bar)): bar for bar in axes.patches}
    assert set(bars) == {("accuracy-drop", "pending"), ("accuracy-drop", "firing"), ("blip", "cleared")}
    assert _days(START + 4 * WINDOW) == pytest.approx(bars[("accuracy-drop", "firing")].get_x())
    assert _days(last_end) == pytest.approx(
        bars[("accuracy-drop", "firing")].get_x() + _width(bars, "firing")
    )
    cleared = bars[("blip", "cleared")]
    assert cleared.get_x() + cleared.get_width() == pytest.approx(_days(START + 3 * WINDOW))
    assert all(bar.get_x() + bar.get_width() <= _days(last_end) + 1e-9 for bar in axes.patches)


def _days(time: datetime) -> float:
    from matplotlib.dates import date2num

    return float(date2num(time))


def _state(bar: Any) -> str:
    from matplotlib.colors import to_hex

    from dashboards.pictures import FIRING, PENDING

    if bar.get_hatch():
        return "cleared"
    return {FIRING: "firing", PENDING: "pending"}[to_hex(bar.get_facecolor())]


def _width(bars: dict[tuple[str, str], Any], state: str) -> float:
    return float(bars[("accuracy-drop", state)].get_width())


def test_one_window_gives_an_x_range_within_a_day(
    clickhouse: Any, tmp_path: Path, figures: dict[str, Figure]
) -> None:
    points = [_point("events", 500, 0), _point("missing_rate", 0.01, 0, "a")]
    points += [_point(f"lateness_{stat}_ms", 900, 0) for stat in ("p50", "p95", "p99", "max")]
    ClickHouseWriter(clickhouse).write(points)  # type: ignore[arg-type]
    _report(clickhouse, tmp_path, 1)
    for name in (f"{MODEL}-fidelity-missing.png", f"{MODEL}-fidelity-lateness.png"):
        left, right = figures[name].axes[0].get_xlim()
        assert 0 < right - left < 1, f"{name}: x-axis of {right - left:.1f} days for one window"
        assert left < _days(START) < right


def test_seeded_report_heatmap_shows_prediction_row(
    clickhouse: Any, tmp_path: Path, figures: dict[str, Figure]
) -> None:
    data = seed(clickhouse)
    write_report(clickhouse, [CLASSIFIER], tmp_path, "1h", now=data.end + timedelta(minutes=1))
    labels = [t.get_text() for t in figures[f"{CLASSIFIER}-drift-heatmap.png"].axes[0].get_yticklabels()]
    assert labels[:2] == ["amount", "country"] and "__prediction__" in labels[-1]
