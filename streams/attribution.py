"""The attribution of a closed window: what moved, as ``details.attribution`` on model-level points.

At window close (:func:`streams.finalize.window_metrics`) the model-level summary points that alert
rules watch get ``details.attribution``:

- ``features``: the compared features ranked by drift ratio * importance weight
  (:func:`detectors.attribution.rank_features`), on the drift summary points (``drift_share``,
  ``dataset_drifted``, ``drifted_important_features``), on the realized performance points and on
  the per-feature ``drifted`` points of drifted features (what a ``feature: any`` drift rule sees);
- ``segments`` (performance points only, when the spec has ``segments:``): the segments of the same
  window ranked by contribution ``share * (segment value - model value)``, the worst first
  (:func:`detectors.attribution.rank_segments`); the baseline is the model's value in the same
  window (``segment_baseline: "window"``).

The rule engine copies it into the alert's details, the retrain policy into the request's evidence.
Everything is computed from the window's own aggregates: a replay computes the same lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detectors.attribution import MAX_LINES, rank_features, rank_segments, weights
from detectors.profiles import ReferenceProfile
from modelmon import metrics as m
from modelmon.events import MetricPoint
from modelmon.references import PREDICTION_FEATURE
from modelmon.spec import ModelSpec

DRIFT_SUMMARIES = frozenset({m.DRIFT_SHARE, m.DATASET_DRIFTED, m.DRIFTED_IMPORTANT_FEATURES})
PERFORMANCE = frozenset({*m.CLASSIFICATION_METRICS, *m.REGRESSION_METRICS})
SEGMENT_BASELINE = "window"
"""What a segment is compared to: the model's value of the metric in the same window."""


def feature_lines(
    points: list[MetricPoint], spec: ModelSpec, reference: ReferenceProfile | None
) -> list[dict[str, Any]]:
    """The window's drifted-or-not features, ranked (the model output is not a feature)."""
    drifts: dict[str, tuple[str, float, float, float]] = {}
    for point in points:
        if point.metric in m.DRIFT_METRICS and point.segment == "" and point.feature != PREDICTION_FEATURE:
            ratio = point.details.get("ratio")
            threshold = point.details.get("threshold")
            if ratio is not None and threshold is not None:
                drifts[point.feature] = (point.metric, point.value, float(threshold), float(ratio))
    given = {name: feature.importance for name, feature in spec.features.items()}
    estimated = reference.importances if reference is not None else {}
    moves = rank_features(drifts, weights(list(drifts), given, estimated))
    return [move.to_dict() for move in moves[:MAX_LINES]]


def segment_lines(
    metric: str, value: float, segments: Mapping[str, tuple[dict[str, float], int]], total: int
) -> list[dict[str, Any]]:
    """Segments of the window ranked by their contribution to ``metric``'s model ``value``."""
    values = {name: (found[metric], n) for name, (found, n) in segments.items() if metric in found}
    moves = rank_segments(metric, values, value, total, higher_is_better=metric not in m.LOWER_IS_BETTER)
    return [move.to_dict() for move in moves[:MAX_LINES]]


def attach(
    points: list[MetricPoint],
    spec: ModelSpec,
    reference: ReferenceProfile | None,
    segments: Mapping[str, tuple[dict[str, float], int]],
) -> None:
    """Set ``details.attribution`` on the window's model-level summary and performance points.

    ``segments``: segment → (its performance metric values, its labelled events) in this window.
    """
    features = feature_lines(points, spec, reference)
    for point in points:
        if point.metric == m.DRIFTED and point.value >= 1 and features and not point.segment:
            point.details["attribution"] = {"features": features}  # a drift alert names the others too
            continue
        if point.segment or point.feature:
            continue
        attribution: dict[str, Any] = {}
        if features and (point.metric in DRIFT_SUMMARIES or point.metric in PERFORMANCE):
            attribution["features"] = features
        if segments and point.metric in PERFORMANCE:
            counted = point.details.get("n")  # the model's labelled events (a share's denominator)
            total = int(counted) if counted else sum(n for f, n in segments.values() if point.metric in f)
            lines = segment_lines(point.metric, point.value, segments, total)
            if lines:
                attribution["segments"] = lines
                attribution["segment_baseline"] = SEGMENT_BASELINE
        if attribution:
            point.details["attribution"] = attribution
