"""`modelmon report` draws estimated vs realized accuracy (issue #15), only for models with estimates.

The scenario the picture is for: a covariate shift from window 6 on lowers the estimate at once,
while the labels of the shifted windows have not arrived, so those windows are known by their
estimate only; later the labels of windows 6 to 8 land and their realized accuracy confirms the drop.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from dashboards.report import write_report
from modelmon import metrics as m
from modelmon.events import MetricPoint
from sinks.writer import ClickHouseWriter

pytestmark = pytest.mark.integration
ESTIMATED, REALIZED_ONLY = "estimated-model", "realized-only-model"
START = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0)
WINDOW = timedelta(minutes=1)
WINDOWS, LABELLED_FIRST, LABELLED = 12, 6, 9  # labels for windows 0..5, later up to 8; 9..11 not yet


def estimate_at(w: int) -> float:
    return 0.9 if w < 6 else 0.68


def realized_at(w: int) -> float:
    return 0.9 + (0.01 if w % 2 else -0.01) if w < 6 else 0.66


def point(model: str, metric: str, value: float, w: int, version: str = "1") -> MetricPoint:
    return MetricPoint(
        model_id=model, model_version=version, metric=metric, value=value, source="stage2",
        window_start=START + w * WINDOW, window_end=START + (w + 1) * WINDOW,
    )  # fmt: skip


def labels_of(w: int) -> list[MetricPoint]:
    """The realized accuracy and the estimation error of window ``w``, published once its labels arrived."""
    error = abs(estimate_at(w) - realized_at(w))
    return [
        point(ESTIMATED, m.ACCURACY, realized_at(w), w),
        point(ESTIMATED, m.estimation_error(m.ACCURACY), error, w),
    ]


def scenario_points() -> list[MetricPoint]:

    points = []
    for w in range(WINDOWS):
        points += [point(model, m.EVENTS, 500, w) for model in (ESTIMATED, REALIZED_ONLY)]
        points.append(point(REALIZED_ONLY, m.ACCURACY, 0.9, w))
        estimate = estimate_at(w)
        points += [
            point(ESTIMATED, m.estimated(m.ACCURACY), estimate, w),
            point(ESTIMATED, m.estimated_lower(m.ACCURACY), estimate - 0.04, w),
            point(ESTIMATED, m.estimated_upper(m.ACCURACY), estimate + 0.04, w),
        ]
        if w < LABELLED_FIRST:
            points += labels_of(w)
    # An older version, estimated only in the first windows: the picture shows the newest estimates.
    points += [point(ESTIMATED, m.estimated(m.ACCURACY), 0.5, w, version="0") for w in range(3)]
    return points


def _lines(figure: Figure) -> tuple[np.ndarray, np.ndarray, int]:
    """The estimate's and the realized values drawn, and the number of hatched (estimate-only) windows."""
    axes = figure.axes[0]
    lines = {line.get_label(): line for line in axes.get_lines()}
    estimate = np.asarray(lines["estimated accuracy (from scores)"].get_ydata(), dtype=float)
    realized = np.asarray(lines["realized accuracy"].get_ydata(), dtype=float)
    return estimate, realized, len([p for p in axes.patches if p.get_hatch()])


def test_estimate_picture_only_for_models_with_estimates(
    clickhouse: Any, tmp_path: Path, figures: dict[str, Figure]
) -> None:
    writer = ClickHouseWriter(clickhouse)
    writer.write(scenario_points())  # type: ignore[arg-type]
    now = START + WINDOWS * WINDOW + timedelta(minutes=10)
    name = f"{ESTIMATED}-estimated-accuracy.png"

    # Before the shifted windows' labels: the estimate has dropped, nothing realized confirms it yet.
    write_report(clickhouse, [ESTIMATED], tmp_path / "before", "4h", now=now)
    estimate, realized, hatched = _lines(figures[name])
    assert estimate.tolist() == pytest.approx([estimate_at(w) for w in range(WINDOWS)])
    assert np.isnan(realized[LABELLED_FIRST:]).all() and hatched == WINDOWS - LABELLED_FIRST

    writer.write([p for w in range(LABELLED_FIRST, LABELLED) for p in labels_of(w)])  # type: ignore[arg-type]
    page = write_report(clickhouse, [ESTIMATED, REALIZED_ONLY], tmp_path, "4h", now=now)

    assert (tmp_path / name).stat().st_size > 10_000
    assert not (tmp_path / f"{REALIZED_ONLY}-estimated-accuracy.png").exists()
    assert (tmp_path / f"{REALIZED_ONLY}-performance.png").exists()
    text = page.read_text(encoding="utf-8")
    assert f"alt='{ESTIMATED}: Estimated vs realized accuracy (v1)'" in text
    assert "Estimated vs realized" not in text.split(f"<h2 id='{REALIZED_ONLY}'>")[1]

    axes = figures[name].axes[0]
    assert axes.get_title(loc="left") == f"{ESTIMATED}: Estimated vs realized accuracy (v1)"
    estimate, realized, hatched = _lines(figures[name])
    # Version 1 (the newest estimates), every window; the realized values filled in up to window 8.
    assert estimate.tolist() == pytest.approx([estimate_at(w) for w in range(WINDOWS)])
    assert realized[:LABELLED].tolist() == pytest.approx([realized_at(w) for w in range(LABELLED)])
    assert np.isnan(realized[LABELLED:]).all()
    assert hatched == WINDOWS - LABELLED, "one hatched span per window with an estimate only"
    band = next(c for c in axes.collections if isinstance(c, PolyCollection))
    assert band.get_label() == "95 % band of the estimate"
    vertices = band.get_paths()[0].vertices[:, 1]
    assert (vertices.min(), vertices.max()) == pytest.approx((0.64, 0.94))
    legend = [t.get_text() for t in axes.get_legend().get_texts()]
    assert "no labels yet:\nestimate only" in legend
    assert any(t.startswith("mean |estimated - realized|") and "over 9 windows" in t for t in legend)
    assert axes.get_ylim() == (0.0, 1.0) and axes.get_ylabel() == "percent"
