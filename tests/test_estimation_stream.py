"""Estimated performance in the stream: score bins folded per window, the points finalize publishes."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from detectors.estimation import Calibration, ScoreBins, binary_scores
from detectors.profiles import ReferenceProfile
from modelmon import metrics
from modelmon.events import MetricPoint, PredictionEvent, parse_timestamp
from streams.bundle import BundleKey, JoinedPair, WindowBundle
from streams.estimated import window_seed
from streams.finalize import window_metrics
from tests.test_bundle import CLASSES, KEY, build, make_events, make_spec, reference_for


def calibrated_events(
    n: int, seed: int, *, spread: float = 2.0, key: BundleKey = KEY
) -> tuple[list[PredictionEvent], list[JoinedPair]]:
    """A calibrated binary model: score = sigmoid(2x), label ~ Bernoulli(score); all rows labelled."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, spread, n)
    score = 1.0 / (1.0 + np.exp(-2.0 * x))
    label = (rng.random(n) < score).astype(int)
    events, pairs = [], []
    for i in range(n):
        ts = key.window_start_ms + int(rng.integers(0, key.window_ms))
        s, prediction = round(float(score[i]), 6), int(score[i] >= 0.5)
        event = PredictionEvent(
            prediction_id=f"c{seed}-{i}", model_id=key.model_id, model_version=key.model_version,
            ts=parse_timestamp(ts), features={"amount": float(x[i])}, prediction=prediction, score=s,
        )  # fmt: skip
        events.append(event)
        pairs.append(JoinedPair(prediction, s, None, int(label[i]), ts, ts + 1000))
    return events, pairs


def calibrated_reference(seed: int = 1, n: int = 20_000) -> ReferenceProfile:
    _, pairs = calibrated_events(n, seed)
    scores = np.array([p.score for p in pairs])
    calibration = Calibration.fit(("0", "1"), binary_scores(scores), np.array([p.label for p in pairs]))
    return reference_for("binary").with_calibration(calibration)


def bundle_of(events: list[PredictionEvent], pairs: list[JoinedPair], key: BundleKey = KEY) -> WindowBundle:
    spec = make_spec("binary")
    bundle = WindowBundle.empty(key, spec, None)
    bundle.add_predictions(events, [key.window_start_ms] * len(events), spec)
    bundle.add_labels(pairs, spec)
    return bundle


def named(points: list[MetricPoint]) -> dict[str, MetricPoint]:
    return {p.metric: p for p in points if p.feature == ""}


def published(points: list[MetricPoint]) -> list[tuple[Any, ...]]:
    """What a point says (not when it was made: ``emitted_at``)."""
    return [(p.metric, p.feature, p.segment, p.window_start, p.value, p.details) for p in points]


# -- the fold ----------------------------------------------------------------------------------


def test_binary_bins_hold_every_scored_prediction_labelled_or_not() -> None:
    events, ingest, pairs = make_events("binary", 2000, seed=3)
    bundle = build("binary", events, ingest, pairs, batch=170)
    scored = [e for e in events if e.score is not None]
    expected = ScoreBins.empty(("0", "1"))
    expected.add(
        binary_scores([e.score for e in scored]),
        np.array([int(str(e.prediction) in ("1", "True")) for e in scored]),
    )
    assert bundle.estimation is not None and bundle.labels < len(events)
    assert bundle.estimation.count == len(scored)  # all predictions, not just the ~70 % labelled
    assert bundle.estimation.to_dict() == expected.to_dict()


@pytest.mark.parametrize("declared", [True, False])
def test_multiclass_bins_use_the_score_dicts(declared: bool) -> None:
    events, ingest, _ = make_events("multiclass", 1500, seed=4)
    spec = make_spec("multiclass") if declared else make_spec("multiclass", classes=None)
    bundle = WindowBundle.empty(KEY, spec, None)
    for start in range(0, len(events), 200):
        bundle.add_predictions(events[start : start + 200], ingest[start : start + 200], spec)
    scored = [e for e in events if e.scores is not None]
    matrix = np.array([[e.scores.get(c, 0.0) for c in CLASSES] for e in scored])  # type: ignore[union-attr]
    expected = ScoreBins.empty(CLASSES)
    expected.add(matrix, np.array([CLASSES.index(str(e.prediction)) for e in scored]))
    assert bundle.estimation is not None
    assert bundle.estimation.classes == tuple(CLASSES)
    assert bundle.estimation.to_dict() == expected.to_dict()


def test_regression_bundles_have_no_bins() -> None:
    events, ingest, pairs = make_events("regression", 200, seed=5)
    bundle = build("regression", events, ingest, pairs)
    assert bundle.estimation is None and bundle.to_dict()["estimation"] is None


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_bins_merge_exactly_and_survive_json(task: str) -> None:
    events, ingest, pairs = make_events(task, 1200, seed=6)
    whole = build(task, events, ingest, pairs)
    left = build(task, events[:500], ingest[:500], pairs[:300], batch=77)
    right = build(task, events[500:], ingest[500:], pairs[300:], batch=31)
    right = WindowBundle.from_dict(json.loads(json.dumps(right.to_dict())))
    for merged in (left.merge(right), right.merge(left)):
        assert merged.estimation is not None and whole.estimation is not None
        assert merged.estimation.to_dict() == whole.estimation.to_dict()


def test_partials_written_before_estimation_still_read_and_merge() -> None:
    events, ingest, pairs = make_events("binary", 600, seed=7)
    old = build("binary", events[:300], ingest[:300], pairs).to_dict()
    del old["estimation"]
    read = WindowBundle.from_dict(old)
    assert read.estimation is None
    new = build("binary", events[300:], ingest[300:], [])
    merged = read.merge(new)
    assert merged.estimation is not None and merged.estimation.count == new.estimation.count  # type: ignore[union-attr]


# -- the points at window close ---------------------------------------------------------------


def test_calibrated_window_publishes_estimates_bands_and_errors() -> None:
    reference = calibrated_reference()
    events, pairs = calibrated_events(4000, seed=8)
    unlabelled = named(window_metrics(bundle_of(events, []), make_spec("binary"), reference))
    for name, lower, upper in zip(
        metrics.ESTIMATES, metrics.ESTIMATE_LOWER, metrics.ESTIMATE_UPPER, strict=True
    ):
        point = unlabelled[name]
        assert unlabelled[lower].value <= point.value <= unlabelled[upper].value
        assert point.details["estimated"] is True and point.details["n"] == 4000
        assert (point.segment, point.feature) == ("", "")
    assert not set(metrics.ESTIMATION_ERRORS) & set(unlabelled)  # no labels, no error
    assert "accuracy" not in unlabelled
    # The same window once its labels joined: the realized values land beside the estimates.
    labelled = named(window_metrics(bundle_of(events, pairs), make_spec("binary"), reference))
    for name, estimated, error in zip(
        metrics.ESTIMATED_METRICS, metrics.ESTIMATES, metrics.ESTIMATION_ERRORS, strict=True
    ):
        assert labelled[estimated].value == unlabelled[estimated].value  # labels do not move the estimate
        gap = abs(labelled[estimated].value - labelled[name].value)
        assert labelled[error].value == pytest.approx(gap)
        assert labelled[error].details["labels"] == 4000 and labelled[error].details["events"] == 4000
    # A calibrated model: the estimate is close to the truth, and the truth inside the band.
    assert labelled["estimation_error_accuracy"].value < 0.02
    assert labelled["estimated_accuracy_lower"].value <= labelled["accuracy"].value
    assert labelled["accuracy"].value <= labelled["estimated_accuracy_upper"].value


def test_lower_confidence_scores_lower_the_estimate() -> None:
    reference = calibrated_reference()
    confident = named(window_metrics(bundle_of(*calibrated_events(3000, 9)), make_spec("binary"), reference))
    unsure = calibrated_events(3000, 9, spread=0.3)
    shifted = named(window_metrics(bundle_of(*unsure), make_spec("binary"), reference))
    assert shifted["estimated_accuracy"].value < confident["estimated_accuracy"].value - 0.15
    assert shifted["estimation_error_accuracy"].value < 0.04


def test_no_estimate_without_a_calibration() -> None:
    events, pairs = calibrated_events(1000, seed=10)
    for reference in (None, reference_for("binary")):
        emitted = named(window_metrics(bundle_of(events, pairs), make_spec("binary"), reference))
        assert not [name for name in emitted if metrics.is_estimate(name) or name.startswith("estimation_")]
        assert "accuracy" in emitted


def test_the_calibration_does_not_change_drift() -> None:
    events, ingest, pairs = make_events("binary", 1500, seed=11)
    plain = reference_for("binary")
    bundle = build("binary", events, ingest, pairs, reference=plain)
    calibrated = plain.with_calibration(calibrated_reference().calibration)
    assert list(calibrated) == list(plain)  # the calibration is not a feature
    without = [p for p in window_metrics(bundle, make_spec("binary"), plain)]
    with_it = [
        p for p in window_metrics(bundle, make_spec("binary"), calibrated) if not _estimation(p.metric)
    ]
    assert published(with_it) == published(without)


def _estimation(name: str) -> bool:
    return metrics.is_estimate(name) or name.startswith("estimation_error_")


def test_replays_publish_the_same_band_and_windows_get_their_own_seed() -> None:
    reference = calibrated_reference()
    events, _ = calibrated_events(800, seed=12)
    bundle = bundle_of(events, [])
    first = window_metrics(bundle, make_spec("binary"), reference)
    again = window_metrics(WindowBundle.from_dict(bundle.to_dict()), make_spec("binary"), reference)
    assert published(first) == published(again)
    later = BundleKey(KEY.model_id, KEY.model_version, "", KEY.window_start_ms + KEY.window_ms, KEY.window_ms)
    assert window_seed(later) != window_seed(KEY)


def test_multiclass_estimates_are_macro_averages_with_a_calibration() -> None:
    rng = np.random.default_rng(13)

    def scored(n: int) -> tuple[list[PredictionEvent], list[JoinedPair], np.ndarray, np.ndarray]:
        raw = rng.dirichlet(np.ones(3) * 0.6, n)
        truth = np.array([rng.choice(3, p=row) for row in raw])  # calibrated by construction
        events, pairs = [], []
        for i, row in enumerate(raw):
            ts = KEY.window_start_ms + i
            scores = {c: float(p) for c, p in zip(CLASSES, row, strict=True)}
            prediction = CLASSES[int(np.argmax(row))]
            events.append(PredictionEvent(prediction_id=f"mc{i}", model_id="m", ts=parse_timestamp(ts),
                                          features={}, prediction=prediction, scores=scores))  # fmt: skip
            pairs.append(JoinedPair(prediction, None, scores, CLASSES[truth[i]], ts, ts + 1))
        return events, pairs, raw, truth

    _, _, raw, truth = scored(20_000)
    reference = reference_for("multiclass").with_calibration(Calibration.fit(CLASSES, raw, truth))
    events, pairs, _, _ = scored(4000)
    spec = make_spec("multiclass")
    bundle = WindowBundle.empty(KEY, spec, None)
    bundle.add_predictions(events, [KEY.window_start_ms] * len(events), spec)
    bundle.add_labels(pairs, spec)
    points = named(window_metrics(bundle, spec, reference))
    assert points["accuracy"].details["average"] == "macro"
    for name in ("accuracy", "f1", "roc_auc"):
        assert points[f"estimation_error_{name}"].value < 0.03
        assert math.isfinite(points[f"estimated_{name}_upper"].value)


def test_every_estimated_name_is_declared_once() -> None:
    from detectors.estimation import ESTIMATED_METRICS

    assert tuple(ESTIMATED_METRICS) == metrics.ESTIMATED_METRICS
    names = [*metrics.ESTIMATES, *metrics.ESTIMATE_LOWER, *metrics.ESTIMATE_UPPER, *metrics.ESTIMATION_ERRORS]
    assert len(set(names)) == 20 and set(names) <= metrics.MODEL_METRICS
    assert all(metrics.is_published(name) for name in names)
