"""What moved: features ranked by drift weighted by importance, segments by contribution to a drop.

**Features.** Each compared feature's drift ratio (:func:`detectors.drift.severity.drift_ratio`:
``>= 1`` exactly when drifted) times its weight, ``importance ÷ mean importance`` over the compared
features, so equal importances give weight 1 and the weighted score keeps the ratio's scale. The
importance of a feature is the spec's ``importance`` when given, else the reference's (mutual
information of the feature with the label, :func:`mutual_information`, computed once when a
labelled reference file is loaded), else equal.

**Segments.** For a metric ``m`` whose model value is the event-weighted mean of its segments' values
(accuracy, error rates; approximately so for others), a segment ``s`` with share ``w_s`` of the
window's events contributes ``w_s * (m_s - m_baseline)``: the part of the gap between the window and
the baseline that the segment carries. The baseline is the model's own value in the same window, so
the contributions of one tag's segments sum to zero and the most negative one (for a higher-is-better
metric) is the segment that pulls the model down the most.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelmon import metrics as m

MAX_LINES = 20
"""Lines kept per list in a point's details (the JSON webhook carries them all; chat shows three)."""


@dataclass(frozen=True)
class FeatureMove:
    feature: str
    method: str
    score: float
    threshold: float
    ratio: float
    importance: float
    importance_source: str  # "spec", "reference" or "equal"
    weighted: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "method": self.method,
            "score": _round(self.score),
            "threshold": self.threshold,
            "ratio": _round(self.ratio),
            "importance": _round(self.importance),
            "importance_source": self.importance_source,
            "weighted": _round(self.weighted),
        }


@dataclass(frozen=True)
class SegmentMove:
    segment: str
    metric: str
    value: float
    baseline: float
    share: float
    contribution: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "segment": self.segment,
            "metric": self.metric,
            "value": _round(self.value),
            "baseline": _round(self.baseline),
            "share": _round(self.share),
            "contribution": _round(self.contribution),
        }


def _round(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None


def weights(
    features: Sequence[str], spec: Mapping[str, float | None], reference: Mapping[str, float]
) -> dict[str, tuple[float, str]]:
    """feature → (importance, source); spec > reference > equal, per feature."""
    out: dict[str, tuple[float, str]] = {}
    for name in features:
        given = spec.get(name)
        if given is not None:
            out[name] = (float(given), "spec")
        elif name in reference:
            out[name] = (float(reference[name]), "reference")
        else:
            out[name] = (1.0, "equal")
    return out


def rank_features(
    drifts: Mapping[str, tuple[str, float, float, float]],
    importances: Mapping[str, tuple[float, str]],
) -> list[FeatureMove]:
    """Features by ``ratio * importance ÷ mean importance``, highest first (ties: ratio, then name).

    ``drifts``: feature → (method, score, threshold, ratio). ``importances``: see :func:`weights`.

    >>> moves = rank_features({"a": ("psi", 0.4, 0.2, 2.0), "b": ("psi", 0.3, 0.2, 1.5),
    ...                        "c": ("psi", 0.1, 0.2, 0.5)},
    ...                       {"a": (0.1, "spec"), "b": (0.4, "spec"), "c": (0.4, "spec")})
    >>> [(m.feature, round(m.weighted, 3)) for m in moves]
    [('b', 2.0), ('a', 0.667), ('c', 0.667)]
    """
    mean = float(np.mean([importances[name][0] for name in drifts])) if drifts else 0.0
    moves = []
    for name, (method, score, threshold, ratio) in drifts.items():
        importance, source = importances[name]
        weight = importance / mean if mean > 0 else 1.0
        weighted = ratio * weight if math.isfinite(ratio) else -math.inf
        moves.append(FeatureMove(name, method, score, threshold, ratio, importance, source, weighted))
    return sorted(moves, key=lambda m: (-m.weighted, -_finite(m.ratio), m.feature))


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


def rank_segments(
    metric: str,
    segments: Mapping[str, tuple[float, int]],
    baseline: float,
    total: int,
    *,
    higher_is_better: bool = True,
) -> list[SegmentMove]:
    """Segments by contribution ``share * (value - baseline)``, the worst first.

    ``segments``: segment → (the metric's value there, its events); ``total``: the model's events.

    >>> moves = rank_segments("accuracy", {"r=eu": (0.6, 300), "r=us": (0.9, 700)}, 0.81, 1000)
    >>> [(m.segment, round(m.contribution, 3)) for m in moves]
    [('r=eu', -0.063), ('r=us', 0.063)]
    """
    moves = []
    for segment, (value, events) in segments.items():
        share = events / total if total > 0 else 0.0
        moves.append(SegmentMove(segment, metric, value, baseline, share, share * (value - baseline)))
    sign = 1.0 if higher_is_better else -1.0
    return sorted(moves, key=lambda m: (sign * m.contribution, m.segment))


def mutual_information(table: np.ndarray) -> float:
    """Mutual information (nats) of the two variables of a contingency table of counts.

    ``I = Σ p(x,y) log(p(x,y) ÷ (p(x) p(y)))`` over the cells with counts; 0 for an empty table.

    >>> round(mutual_information(np.array([[10, 0], [0, 10]])), 6) == round(math.log(2), 6)
    True
    >>> mutual_information(np.array([[5, 5], [5, 5]]))
    0.0
    """
    counts = np.asarray(table, dtype=float)
    total = counts.sum()
    if total <= 0:
        return 0.0
    joint = counts / total
    rows = joint.sum(axis=1, keepdims=True)
    cols = joint.sum(axis=0, keepdims=True)
    mask = joint > 0
    value = float(np.sum(joint[mask] * np.log(joint[mask] / (rows @ cols)[mask])))
    return max(value, 0.0)


def contingency(codes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Counts of (feature code, label) pairs: rows are the feature's codes, columns the labels'."""
    _, rows = np.unique(codes, return_inverse=True)
    _, cols = np.unique(labels, return_inverse=True)
    table = np.zeros((int(rows.max(initial=-1)) + 1, int(cols.max(initial=-1)) + 1))
    np.add.at(table, (rows, cols), 1)
    return table


def _short(value: float, sign: str = "") -> str:
    """Three significant digits, or whole numbers from 1000 on (errors in currency, ...).

    >>> _short(0.04712), _short(44809.3), _short(554.2, "+")
    ('0.0471', '44809', '+554')
    """
    return f"{value:{sign}.0f}" if abs(value) >= 1000 else f"{value:{sign}.3g}"


def feature_line(line: Mapping[str, Any]) -> str:
    """``"f3: psi 0.41 / 0.2 = 2.05x its line, importance 0.3"`` (one line of a chat message)."""
    ratio = line.get("ratio")
    verdict = f"{ratio:.3g}x its line" if isinstance(ratio, int | float) else "no ratio"
    return f"{line['feature']}: {line['method']} {verdict}, importance {line.get('importance', 0):.3g}"


def segment_line(line: Mapping[str, Any]) -> str:
    """``"region=eu: accuracy 0.55 vs 0.8 in the window, 30% of events, contribution -0.075"``."""
    windows = int(line.get("windows", 1))
    where = "in the window" if windows == 1 else f"over {windows} windows (means)"
    return (
        f"{line['segment']}: {line['metric']} {_short(line['value'])} vs {_short(line['baseline'])} {where}, "
        f"{line['share']:.0%} of events, contribution {_short(line['contribution'], '+')}"
    )


def combine_segments(windows: Sequence[Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """The segment lines of several windows (an alert's streak) as one ranking, the worst first.

    Per segment: the mean contribution and share over the windows (0 where it is absent: no events),
    and its mean value and baseline over the windows it is in. A segment of a few labelled events
    is noisy in one window; the windows that made a rule fire together say where the drop is.

    >>> w1 = [{"segment": "c=DE", "metric": "accuracy", "value": 0.3, "baseline": 0.65, "share": 0.2,
    ...        "contribution": -0.07},
    ...       {"segment": "c=FR", "metric": "accuracy", "value": 0.8, "baseline": 0.65, "share": 0.2,
    ...        "contribution": 0.03}]
    >>> w2 = [{"segment": "c=FR", "metric": "accuracy", "value": 0.4, "baseline": 0.7, "share": 0.2,
    ...        "contribution": -0.06},
    ...       {"segment": "c=DE", "metric": "accuracy", "value": 0.55, "baseline": 0.7, "share": 0.2,
    ...        "contribution": -0.03}]
    >>> [(line["segment"], line["contribution"], line["value"]) for line in combine_segments([w1, w2])]
    [('c=DE', -0.05, 0.425), ('c=FR', -0.015, 0.6)]
    """
    found: dict[str, list[Mapping[str, Any]]] = {}
    for lines in windows:
        for line in lines:
            found.setdefault(str(line["segment"]), []).append(line)
    if not found:
        return []
    count = len(windows)

    def mean(lines: list[Mapping[str, Any]], name: str, over: int) -> float:
        return sum(float(line.get(name) or 0.0) for line in lines) / over

    metric = str(next(iter(found.values()))[0]["metric"])
    moves = []
    for segment, lines in found.items():
        value, baseline = mean(lines, "value", len(lines)), mean(lines, "baseline", len(lines))
        share, contribution = mean(lines, "share", count), mean(lines, "contribution", count)
        moves.append(SegmentMove(segment, metric, value, baseline, share, contribution))
    sign = -1.0 if metric in m.LOWER_IS_BETTER else 1.0
    moves.sort(key=lambda move: (sign * move.contribution, move.segment))
    return [{**move.to_dict(), "windows": count} for move in moves[:MAX_LINES]]


def top_lines(attribution: Mapping[str, Any] | None, count: int = 3) -> list[str]:
    """The first ``count`` features and segments of an attribution, as text lines (chat formats)."""
    if not attribution:
        return []
    features = [f"feature {feature_line(line)}" for line in attribution.get("features", [])[:count]]
    segments = [f"segment {segment_line(line)}" for line in attribution.get("segments", [])[:count]]
    return features + segments


def headline(attribution: Mapping[str, Any] | None) -> str:
    """A short clause for an alert's message: the top drifted features and the worst segment.

    >>> headline({"features": [{"feature": "a", "ratio": 2.5}, {"feature": "b", "ratio": 1.2},
    ...                        {"feature": "c", "ratio": 0.4}],
    ...           "segments": [{"segment": "r=eu", "contribution": -0.06}]})
    'moved: a (2.5x), b (1.2x); worst segment r=eu (-0.06)'
    >>> headline({"features": [{"feature": "a", "ratio": 0.4}]})
    'no feature drifted'
    """
    if not attribution:
        return ""
    features = attribution.get("features", [])
    drifted = [line for line in features if (line.get("ratio") or 0) >= 1][:2]
    parts = []
    if drifted:
        parts.append("moved: " + ", ".join(f"{line['feature']} ({line['ratio']:.3g}x)" for line in drifted))
    elif features:
        parts.append("no feature drifted")
    segments = attribution.get("segments", [])
    if segments:
        worst = segments[0]
        parts.append(f"worst segment {worst['segment']} ({_short(worst.get('contribution') or 0.0, '+')})")
    return "; ".join(parts)
