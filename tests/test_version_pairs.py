"""Stage 2's version pairs: chi-square / KS of two versions' predictions and shadow agreement, per window."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from scipy.stats import chi2_contingency, ks_2samp

from modelmon import metrics
from modelmon.events import MetricPoint, PredictionEvent, parse_timestamp
from streams.bundle import BundleKey, WindowBundle
from streams.version_pairs import version_pair_points
from streams.window_state import WindowState, WindowStates
from tests.test_bundle import KEY, make_spec


def _events(version: str, predictions: list[Any], request_ids: list[str | None]) -> list[PredictionEvent]:
    return [
        PredictionEvent(
            prediction_id=f"{version}-{i}",
            model_id="m",
            model_version=version,
            ts=parse_timestamp(KEY.window_start_ms + i % KEY.window_ms),
            features={"amount": 1.0},
            prediction=p,
            tags={"request_id": r} if r else {},
        )
        for i, (p, r) in enumerate(zip(predictions, request_ids, strict=True))
    ]


def _held(windows: WindowStates, task: str, version: str, parts: list[list[PredictionEvent]]) -> BundleKey:
    """Hold ``version``'s window in ``windows``, folded from ``parts`` (one source each)."""
    spec = make_spec(
        task, {"amount": {"type": "numerical"}}, classes=["a", "b", "c"] if task != "binary" else None
    )
    key = replace(KEY, model_version=version)
    state = WindowState(key, "")
    for n, events in enumerate(parts):
        bundle = WindowBundle.empty(key, spec, None)
        bundle.add_predictions(events, np.full(len(events), KEY.window_start_ms), spec)
        state.add(f"p|{n}", 1, True, bundle, [])
    windows[(key, "")] = state
    return key


def _by_metric(points: list[MetricPoint]) -> dict[str, MetricPoint]:
    assert all(p.model_version == "10" and p.feature == "versus=9" for p in points), points
    return {p.metric: p for p in points}


def test_classifier_pair_is_the_chi_square_of_the_class_counts_and_the_agreement_of_shared_requests() -> None:
    windows = WindowStates()
    a = ["a"] * 40 + ["b"] * 35 + ["c"] * 25
    b = ["a"] * 20 + ["b"] * 30 + ["c"] * 50
    requests = [f"q{i}" for i in range(100)]
    _held(
        windows, "multiclass", "9", [_events("9", a[:60], requests[:60]), _events("9", a[60:], requests[60:])]
    )
    key = _held(windows, "multiclass", "10", [_events("10", b, requests[:90] + [None] * 10)])
    seen = [("m", "9"), ("m", "10"), ("other", "1")]
    points = _by_metric(version_pair_points(windows, seen, key))
    expected = chi2_contingency(np.array([[40, 35, 25], [20, 30, 50]]), correction=False)
    drift = points[metrics.VERSION_PREDICTION_DRIFT]
    assert drift.value == drift.details["p_value"]
    assert abs(drift.details["statistic"] - expected.statistic) < 1e-9
    assert abs(drift.value - expected.pvalue) < 1e-12 and drift.details["drifted"] is True
    assert (drift.details["n_a"], drift.details["n_b"], drift.details["method"]) == (100, 100, "chi_square")
    agreement = points[metrics.VERSION_AGREEMENT]
    agree = sum(x == y for x, y in zip(a[:90], b[:90], strict=True))
    assert agreement.details["matched"] == 90 and agreement.details["exact"] is True
    assert agreement.value == agree / 90 and agreement.details["lower"] < agreement.value
    # The same pair, seen from the emission of the earlier version: the same points.
    again = _by_metric(version_pair_points(windows, seen, replace(key, model_version="9")))
    assert {k: (p.value, p.details) for k, p in again.items()} == {
        k: (p.value, p.details) for k, p in points.items()
    }


def test_a_class_empty_in_both_versions_is_dropped() -> None:
    windows = WindowStates()
    _held(windows, "binary", "9", [_events("9", [0] * 30 + [1] * 70, [None] * 100)])
    key = _held(windows, "binary", "10", [_events("10", [0] * 50 + [1] * 50, [None] * 100)])
    points = _by_metric(version_pair_points(windows, [("m", "9"), ("m", "10")], key))
    expected = chi2_contingency(np.array([[30, 70], [50, 50]]), correction=False)
    assert abs(points[metrics.VERSION_PREDICTION_DRIFT].value - expected.pvalue) < 1e-12
    assert metrics.VERSION_AGREEMENT not in points  # no request ids: nothing matched, nothing emitted


def test_regression_pair_is_ks_on_the_prediction_samples() -> None:
    rng = np.random.default_rng(5)
    windows = WindowStates()
    a, b = rng.normal(100, 10, 150).tolist(), rng.normal(104, 10, 120).tolist()
    _held(windows, "regression", "9", [_events("9", a, [None] * 150)])
    key = _held(windows, "regression", "10", [_events("10", b, [None] * 120)])
    drift = _by_metric(version_pair_points(windows, [("m", "9"), ("m", "10")], key))[
        metrics.VERSION_PREDICTION_DRIFT
    ]
    expected = ks_2samp(a, b)  # the samples (256 rows) hold every prediction here
    assert drift.details["method"] == "ks" and abs(drift.details["statistic"] - expected.statistic) < 1e-12
    assert abs(drift.value - expected.pvalue) < 1e-12


def test_no_pair_without_the_other_version_held_or_for_a_segment() -> None:
    windows = WindowStates()
    key = _held(windows, "binary", "10", [_events("10", [0, 1], ["r1", "r2"])])
    assert version_pair_points(windows, [("m", "9"), ("m", "10")], key) == []
    _held(windows, "binary", "9", [_events("9", [0, 1], ["r1", "r2"])])
    assert version_pair_points(windows, [("m", "9"), ("m", "10")], replace(key, segment="region=eu")) == []
    other_window = replace(key, window_start_ms=key.window_start_ms + key.window_ms)
    assert version_pair_points(windows, [("m", "9"), ("m", "10")], other_window) == []
