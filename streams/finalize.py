"""A merged window bundle turned into MetricPoints: counts, performance, data fidelity and drift."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from detectors.drift import DriftOptions, FeatureDrift, detect_many, get_method
from detectors.drift.registry import check_threshold
from detectors.drift.severity import drift_ratio
from detectors.metric import Metric
from detectors.performance import Average, classification_from, positive_counts, regression_from
from detectors.profiles import (
    CategoricalAggregate,
    CategoricalFeatureProfile,
    FeatureProfile,
    NumericAggregate,
    NumericalFeatureProfile,
    ReferenceProfile,
    WindowAggregate,
)
from modelmon import metrics as m
from modelmon.events import MetricPoint
from modelmon.references import PREDICTION_FEATURE
from modelmon.spec import ModelSpec, Task
from streams.attribution import attach as attach_attribution
from streams.bundle import BundleKey, WindowBundle
from streams.estimated import estimated_points
from streams.fairness_points import fairness_points

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WINDOW_FIDELITY = {
    "duplicate_count": m.DUPLICATE_IDS,
    "duplicate_rate": m.DUPLICATE_RATE,
    "required_missing_event_rate": m.REQUIRED_MISSING_EVENT_RATE,
    "unknown_feature_event_rate": m.UNKNOWN_FEATURE_RATE,
    **dict(zip([f"lateness_{stat}" for stat in m.DURATION_STATS], m.LATENESS_METRICS, strict=True)),
    **dict(zip([f"label_delay_{stat}" for stat in m.DURATION_STATS], m.LABEL_DELAY_METRICS, strict=True)),
}
"""Window-level fidelity metric → published name (the bundle's durations are in milliseconds)."""


def _utc(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _plain(value: Any) -> Any:
    """JSON-safe details: non-finite floats become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class _Points:
    """Collects the window's points; undefined values (NaN, ±inf) are left out, never emitted."""

    key: BundleKey
    source: str
    revision: int
    points: list[MetricPoint] = field(default_factory=list)

    def add(self, metric: str, feature: str, value: float | Metric, **details: Any) -> None:
        number = value.value if isinstance(value, Metric) else float(value)
        if not math.isfinite(number):
            reason = value.reason if isinstance(value, Metric) else "not finite"
            log.debug("%s: %s[%s] undefined (%s): not emitted", self.key, metric, feature, reason)
            return
        self.points.append(
            MetricPoint(
                model_id=self.key.model_id,
                model_version=self.key.model_version,
                segment=self.key.segment,
                metric=metric,
                feature=feature,
                window_start=_utc(self.key.window_start_ms),
                window_end=_utc(self.key.window_start_ms + self.key.window_ms),
                value=number,
                source=self.source,
                revision=self.revision,
                details={name: _plain(item) for name, item in details.items()},
            )
        )


def window_metrics(
    bundle: WindowBundle,
    spec: ModelSpec,
    reference: ReferenceProfile | None,
    *,
    source: str = "stage2",
    revision: int = 0,
    segments: Mapping[str, WindowBundle] | None = None,
) -> list[MetricPoint]:
    """Every metric of one closed window (see docs/metric-names.md); drift only with a ``reference``,
    estimated performance only with a calibrated one (:mod:`streams.estimated`). The model-level
    points carry ``details.attribution`` (:mod:`streams.attribution`); ``segments`` (segment →
    its bundle of the same window) adds the segments' contributions to the performance points."""
    points = _Points(bundle.key, source, revision)
    points.add(m.EVENTS, "", bundle.events)
    points.add(m.LABELS, "", bundle.labels)
    points.add(m.LATE_EVENTS, "", bundle.late_events)
    if bundle.label_missing:
        points.add(m.LABEL_MISSING, "", bundle.label_missing)
    points.add(m.LABEL_COVERAGE, "", Metric.ratio(bundle.labels, bundle.events, "no events"))
    realized = _performance(bundle, points)
    for metric, value, details in estimated_points(bundle, reference, realized):
        points.add(metric, "", value, **details)
    _fidelity(bundle, points)
    for metric, feature, value, details in fairness_points(bundle, spec):
        points.add(metric, feature, value, **details)
    if reference is not None:
        _feature_drift(bundle, spec, reference, points)
        _prediction_drift(bundle, spec, reference, points)
    if not bundle.key.segment:
        attach_attribution(points.points, spec, reference, segment_performance(segments or {}))
    return points.points


def segment_performance(segments: Mapping[str, WindowBundle]) -> dict[str, tuple[dict[str, float], int]]:
    """segment → (its realized performance values, its labelled events), for the attribution."""
    out: dict[str, tuple[dict[str, float], int]] = {}
    for name, bundle in segments.items():
        scratch = _Points(bundle.key, "attribution", 0)
        _performance(bundle, scratch)
        found = {point.metric: point.value for point in scratch.points}
        counted = next((int(p.details["n"]) for p in scratch.points if p.details.get("n")), bundle.labels)
        if found:
            out[name] = (found, counted)
    return out


def _performance(bundle: WindowBundle, points: _Points) -> dict[str, float]:
    """Add the realized performance points; return the defined classification values by name."""
    if bundle.labels == 0:
        return {}
    regression = bundle.regression
    if regression is not None:
        result = regression_from(regression)
        for name in m.REGRESSION_METRICS:
            points.add(name, "", result[name], n=regression.count, n_invalid=regression.n_invalid)
        return {}
    confusion, scores = bundle.confusion, bundle.scores
    if confusion is None:
        return {}
    scored = scores if scores is not None and scores.count else None
    average: Average = "binary" if bundle.task is Task.BINARY else "macro"
    result = classification_from(confusion, scored, pos_label=bundle.positive_class, average=average)
    denominators: dict[str, int] = {}
    if average == "binary":  # the stored proportions carry their denominators: docs/versions.md
        denominators[m.PRECISION], denominators[m.RECALL] = positive_counts(confusion, bundle.positive_class)
    for name in m.CLASSIFICATION_METRICS:
        if name not in result:
            continue
        details: dict[str, Any] = {"n": confusion.total, "average": average}
        if name in (m.LOG_LOSS, m.ROC_AUC):
            details["n"] = scored.count if scored is not None else 0
        if name == m.ROC_AUC:
            details["error_bound"] = result["roc_auc_error_bound"].value
        if average == "binary":
            details["positive_class"] = bundle.positive_class
        if name in denominators:
            details["denominator"] = denominators[name]
        points.add(name, "", result[name], **details)
    values = {name: result[name].value for name in m.ESTIMATED_METRICS if name in result}
    return {name: value for name, value in values.items() if math.isfinite(value)}


def _fidelity(bundle: WindowBundle, points: _Points) -> None:
    report = bundle.fidelity.finalise()
    for name, published in WINDOW_FIDELITY.items():
        details = {"exact": bundle.fidelity.duplicate_ids.exact} if published == m.DUPLICATE_IDS else {}
        points.add(published, "", report[""][name], **details)
    for feature in sorted(name for name in report if name):
        for name in m.FEATURE_FIDELITY_METRICS:
            if name in report[feature]:
                points.add(name, feature, report[feature][name])


# -- drift -----------------------------------------------------------------------------------------


def _comparable(profile: FeatureProfile, window: WindowAggregate) -> bool:
    """Same kind, and a numerical window binned on this reference's edges (binned drift is exact)."""
    if isinstance(profile, NumericalFeatureProfile):
        return isinstance(window, NumericAggregate) and np.array_equal(window.edges, profile.edges)
    return isinstance(window, CategoricalAggregate) and window.feature_kind == profile.kind


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    # A spec problem shows in every window of the model: say it once per process, not per window.
    if message not in _warned and len(_warned) < 1000:
        _warned.add(message)
        log.warning(message)


def _usable_method(name: str | None, kind: str, where: str) -> str | None:
    if name is None or name == "auto":
        return None
    try:
        method = get_method(name)
    except ValueError as error:
        _warn_once(f"{where}: {error}; using the next configured method")
        return None
    if kind not in method.kinds:
        _warn_once(f"{where}: drift method {name!r} does not apply to {kind} features; using the next one")
        return None
    return name


def _usable_threshold(threshold: float | None, method: str, where: str) -> float | None:
    if threshold is None:
        return None
    try:
        return check_threshold(threshold, is_p_value=get_method(method).is_p_value)
    except ValueError as error:
        _warn_once(f"{where}: drift threshold ignored for {method}: {error}")
        return None


def drift_options(
    spec: ModelSpec, profiles: Mapping[str, FeatureProfile], windows: Mapping[str, WindowAggregate]
) -> DriftOptions:
    """Each feature's method and threshold, resolved up front so a bad spec entry cannot fail the window.

    The spec maps onto :class:`DriftOptions`, whose precedence applies: the feature's
    ``drift_method`` (``per_feature``) > the model's ``drift.method`` unless ``auto`` (``per_kind``,
    for the kinds it applies to) > the chooser; the feature's ``drift_threshold``
    (``per_feature_threshold``) > the model's ``drift.threshold`` (``per_method_threshold`` of the
    model's method: only features judged by it) > the method's default. A method that does not apply
    to the feature's kind, or a threshold invalid for the method judging it (a p-value threshold
    outside (0, 1)), is skipped with a warning.
    """
    own_methods: dict[str, str] = {}
    model_methods: dict[str, str] = {}
    for name, profile in profiles.items():
        where = f"model {spec.model_id!r} feature {name!r}"
        feature = spec.features.get(name)
        own = _usable_method(feature.drift_method if feature else None, profile.kind, where)
        model = _usable_method(spec.drift.method, profile.kind, where)
        if own is not None:
            own_methods[name] = own
        if model is not None:
            model_methods[profile.kind] = model
    configured = DriftOptions(per_feature=own_methods, per_kind=model_methods)
    methods: dict[str, str] = {}
    own_thresholds: dict[str, float] = {}
    model_threshold: dict[str, float] = {}
    for name, profile in profiles.items():
        where = f"model {spec.model_id!r} feature {name!r}"
        feature = spec.features.get(name)
        method = methods[name] = configured.method_for(name, profile.kind, profile, windows[name])
        threshold = _usable_threshold(feature.drift_threshold if feature else None, method, where)
        if threshold is not None:
            own_thresholds[name] = threshold
        elif method == model_methods.get(profile.kind):
            threshold = _usable_threshold(spec.drift.threshold, method, where)
            if threshold is not None:
                model_threshold[method] = threshold
    return DriftOptions(
        per_feature=methods, per_feature_threshold=own_thresholds, per_method_threshold=model_threshold
    )


def _add_drift(points: _Points, feature: str, drift: FeatureDrift) -> None:
    result = drift.result
    details = {
        "method": result.method,
        "threshold": result.threshold,
        "p_value": result.p_value,
        "drifted": drift.drifted,
        "test_drifted": result.drifted,
        "adjusted_p_value": drift.adjusted_p_value,
        "effect_size": drift.effect_size,
        "min_effect": drift.min_effect,
    }
    details["ratio"] = drift_ratio(result.method, result.score, result.threshold, p_value=result.p_value,
                                   adjusted_p_value=drift.adjusted_p_value, effect_size=drift.effect_size,
                                   min_effect=drift.min_effect)  # fmt: skip
    points.add(result.method, feature, result.score, **details)
    points.add(m.DRIFTED, feature, float(drift.drifted), method=result.method)


def _feature_drift(
    bundle: WindowBundle, spec: ModelSpec, reference: ReferenceProfile, points: _Points
) -> None:
    windows = bundle.features
    profiles: dict[str, FeatureProfile] = {}
    skipped: dict[str, str] = {}
    for name, window in windows.items():
        profile = reference.get(name)
        if profile is None:
            skipped[name] = "not in the reference"
        elif not _comparable(profile, window):
            skipped[name] = "window built on another reference (kind or bin edges differ)"
        else:
            profiles[name] = profile
    options = drift_options(spec, profiles, windows)
    report = detect_many(profiles, {name: windows[name] for name in profiles}, options=options)
    for name, drift in report.features.items():
        _add_drift(points, name, drift)
    skipped |= report.skipped
    if not report.features:
        return
    drifted = report.drifted_features
    important = [name for name in drifted if name in spec.features and spec.features[name].important]
    points.add(
        m.DRIFT_SHARE, "", report.share_drifted, drifted_features=drifted, compared=len(report.features),
        skipped=skipped,
    )  # fmt: skip
    threshold = report.drift_share_threshold
    points.add(m.DATASET_DRIFTED, "", float(report.dataset_drifted), drift_share_threshold=threshold)
    points.add(m.DRIFTED_IMPORTANT_FEATURES, "", len(important), features=important)


def _prediction_drift(
    bundle: WindowBundle, spec: ModelSpec, reference: ReferenceProfile, points: _Points
) -> None:
    profile = reference.get(PREDICTION_FEATURE)
    if profile is None:
        return
    window: WindowAggregate | None
    if isinstance(profile, CategoricalFeatureProfile):
        window = bundle.prediction_classes
    else:
        window = bundle.prediction_values
    if window is None or not _comparable(profile, window):
        log.debug("%s: the reference's %s does not match the model output", bundle.key, PREDICTION_FEATURE)
        return
    profiles = {PREDICTION_FEATURE: profile}
    windows = {PREDICTION_FEATURE: window}
    report = detect_many(profiles, windows, options=drift_options(spec, profiles, windows))
    for name, drift in report.features.items():
        _add_drift(points, name, drift)
