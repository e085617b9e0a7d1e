"""Attribution: features ranked by drift ratio x importance, segments by contribution, mutual information."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from detectors.attribution import (
    contingency,
    headline,
    mutual_information,
    rank_features,
    rank_segments,
    top_lines,
    weights,
)
from detectors.drift import detect_many
from detectors.drift.severity import drift_ratio
from detectors.profiles import NumericalFeatureProfile, ReferenceProfile
from detectors.profiles.files import load_reference_file
from detectors.profiles.importance import reference_importances
from detectors.profiles.records import assemble_reference, reference_records
from modelmon import metrics
from modelmon.events import MetricPoint
from modelmon.spec import parse_spec
from retrain_trigger.policy import RetrainPolicy
from retrain_trigger.rules import RuleEngine
from streams.finalize import window_metrics
from tests.test_bundle import build, make_events, make_spec, reference_for


def test_features_rank_by_ratio_times_importance_over_the_mean_importance() -> None:
    # Mean importance 0.2: weights a 0.5, b 2.0, c 0.5 -> weighted a 1.5, b 1.6, c 0.1.
    drifts = {
        "a": ("psi", 0.6, 0.2, 3.0),
        "b": ("ks", 0.1, 0.05, 0.8),
        "c": ("psi", 0.04, 0.2, 0.2),
    }
    importances = weights(["a", "b", "c"], {"a": 0.1, "c": None}, {"b": 0.4, "c": 0.1})
    assert importances == {"a": (0.1, "spec"), "b": (0.4, "reference"), "c": (0.1, "reference")}
    moves = rank_features(drifts, importances)
    assert [m.feature for m in moves] == ["b", "a", "c"]
    assert [m.weighted for m in moves] == pytest.approx([1.6, 1.5, 0.1])
    # Without any importance every weight is 1: the ranking is the ratio's.
    equal = rank_features(drifts, weights(list(drifts), {}, {}))
    assert [(m.feature, m.weighted, m.importance_source) for m in equal] == [
        ("a", 3.0, "equal"), ("b", 0.8, "equal"), ("c", 0.2, "equal"),
    ]  # fmt: skip


def test_segments_rank_by_share_times_change_and_sum_to_the_gap() -> None:
    # Model accuracy 0.81 over 1000 labelled events: eu 100 of 200 right, us 450 of 500, asia 260 of 300.
    segments = {"eu": (0.5, 200), "us": (0.9, 500), "asia": (0.26 / 0.3, 300)}
    moves = rank_segments("accuracy", segments, 0.81, 1000)
    assert [m.segment for m in moves] == ["eu", "asia", "us"]
    assert [m.contribution for m in moves] == pytest.approx([0.2 * -0.31, 0.3 * (0.26 / 0.3 - 0.81), 0.045])
    assert sum(m.contribution for m in moves) == pytest.approx(0.0)
    # Lower is better (an error): the segment that raises it most comes first.
    errors = rank_segments("mae", {"eu": (9.0, 100), "us": (2.0, 900)}, 2.7, 1000, higher_is_better=False)
    assert errors[0].segment == "eu" and errors[0].contribution == pytest.approx(0.1 * 6.3)


def test_mutual_information_of_a_small_table_by_hand() -> None:
    table = np.array([[30, 10], [10, 30]])
    # p(x, y): 0.375 on the diagonal, 0.125 off it; every marginal 0.5.
    by_hand = 2 * 0.375 * math.log(0.375 / 0.25) + 2 * 0.125 * math.log(0.125 / 0.25)
    assert mutual_information(table) == pytest.approx(by_hand, abs=1e-15)
    assert mutual_information(np.array([[10, 20], [5, 10]])) == pytest.approx(0.0, abs=1e-15)
    codes, labels = np.array([0, 0, 1, 1, 1]), np.array(["y", "n", "y", "y", "n"])
    assert contingency(codes, labels).tolist() == [[1, 1], [1, 2]]


def test_numerical_importance_is_computed_on_the_reference_bins() -> None:
    rng = np.random.default_rng(3)
    x, noise = rng.normal(size=4000), rng.normal(size=4000)
    labels = np.where(x > np.median(x), "1", "0").astype(object)
    profiles = {
        "x": NumericalFeatureProfile.from_values(x, sample_size=64),
        "noise": NumericalFeatureProfile.from_values(noise, sample_size=64),
    }
    found = reference_importances(profiles, {"x": x, "noise": noise}, labels)
    # By hand on the reference's decile bins: each bin of x is pure, so I(x; label) = H(label) = log 2.
    bins = np.searchsorted(profiles["x"].edges, x, side="right") - 1
    assert found["x"] == pytest.approx(mutual_information(contingency(bins, labels)))
    assert found["x"] == pytest.approx(math.log(2), abs=1e-3)
    assert found["noise"] < 0.01


def test_a_labelled_reference_file_carries_importances_through_its_records(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    rows = ["x,noise,label"]
    for _ in range(2000):
        x = rng.normal()
        rows.append(f"{x},{rng.normal()},{int(x > 0)}")
    file = tmp_path / "ref.csv"
    file.write_text("\n".join(rows) + "\n")
    spec = parse_spec({"model_id": "m", "task": "binary",
                       "features": {"x": {"type": "numerical"}, "noise": {"type": "numerical"}}})  # fmt: skip
    profile = load_reference_file(file, spec).profile
    assert profile.importances["x"] > 0.5 > 0.01 > profile.importances["noise"]
    records = reference_records("m", "1", profile, "file:ref.csv")
    assert assemble_reference(records).importances == profile.importances
    assert ReferenceProfile.from_json(profile.to_json()).importances == profile.importances
    # Records written before importances existed load, with none.
    old = [r.model_copy(update={"profile": {k: v for k, v in r.profile.items() if k != "importance"}})
           for r in records]  # fmt: skip
    assert assemble_reference(old).importances == {}


def test_the_stored_ratio_is_at_least_one_exactly_when_drifted() -> None:
    rng = np.random.default_rng(5)
    reference = ReferenceProfile.from_data({f"f{i}": rng.normal(size=3000) for i in range(8)},
                                           {f"f{i}": "numerical" for i in range(8)})  # fmt: skip
    windows = reference.window_aggregates()
    for i, window in enumerate(windows.values()):
        window.update_batch(rng.normal(0.05 * i, 1, size=2000))
    report = detect_many(dict(reference), windows)
    for drift in report.features.values():
        r = drift.result
        ratio = drift_ratio(r.method, r.score, r.threshold, p_value=r.p_value,
                            adjusted_p_value=drift.adjusted_p_value, effect_size=drift.effect_size,
                            min_effect=drift.min_effect)  # fmt: skip
        assert (ratio >= 1) == drift.drifted, drift


def test_window_close_ranks_the_shifted_features_and_the_dropped_segment_first() -> None:
    reference = reference_for("binary")
    events, ingest, pairs = make_events("binary", 3000, seed=6, shift={"amount": 1.5, "age": 1.5})
    half = len(pairs) // 2
    flipped = [dataclasses.replace(p, label=_flip(p.label)) for p in pairs[: half // 2]]
    eu_pairs, us_pairs = flipped + pairs[len(flipped) : half], pairs[half:]
    whole = build("binary", events, ingest, eu_pairs + us_pairs, reference=reference)
    segments = {
        "region=eu": build("binary", events[: len(events) // 2], ingest[: len(events) // 2], eu_pairs,
                           reference=reference),
        "region=us": build("binary", events[len(events) // 2 :], ingest[len(events) // 2 :], us_pairs,
                           reference=reference),
    }  # fmt: skip
    spec = make_spec("binary")
    points = {(p.metric, p.feature): p for p in window_metrics(whole, spec, reference, segments=segments)}
    moved = points[(metrics.DRIFT_SHARE, "")].details["attribution"]["features"]
    assert {line["feature"] for line in moved[:2]} == {"amount", "age"}
    assert all(line["ratio"] >= 1 for line in moved[:2])
    assert points[(metrics.DRIFTED, "amount")].details["attribution"] == {"features": moved}
    accuracy = points[(metrics.ACCURACY, "")].details["attribution"]
    assert accuracy["features"] == moved
    assert accuracy["segments"][0]["segment"] == "region=eu"
    assert accuracy["segments"][0]["contribution"] < 0 < accuracy["segments"][1]["contribution"]
    for name, point in points.items():
        if name[0] in metrics.DRIFT_METRICS:
            assert (point.details["ratio"] >= 1) == point.details["drifted"]


def _flip(label: object) -> object:
    if isinstance(label, bool):
        return not label
    if isinstance(label, int):
        return 1 - label
    return {"1": "0", "0": "1"}.get(str(label), label)


ATTRIBUTION = {
    "features": [
        {
            "feature": f"f{i}",
            "method": "psi",
            "score": 0.1 * (6 - i),
            "threshold": 0.2,
            "ratio": 0.5 * (6 - i),
            "importance": 0.1,
            "importance_source": "equal",
            "weighted": 0.5 * (6 - i),
        }
        for i in range(5)
    ],
    "segments": [
        {
            "segment": "region=eu",
            "metric": "accuracy",
            "value": 0.5,
            "baseline": 0.8,
            "share": 0.3,
            "contribution": -0.09,
        },
        {
            "segment": "region=us",
            "metric": "accuracy",
            "value": 0.93,
            "baseline": 0.8,
            "share": 0.7,
            "contribution": 0.09,
        },
    ],
    "segment_baseline": "window",
}
START = datetime(2026, 1, 1, tzinfo=UTC)


def _accuracy(minute: int, value: float) -> MetricPoint:
    start = START + timedelta(minutes=minute)
    return MetricPoint(model_id="m", metric="accuracy", value=value, window_start=start,
                       window_end=start + timedelta(minutes=1), source="stage2",
                       details={"attribution": ATTRIBUTION})  # fmt: skip


def test_alerts_and_retrain_requests_carry_the_attribution_and_name_it_in_the_message() -> None:
    spec = parse_spec({
        "model_id": "m", "task": "binary", "features": {"x": {"type": "numerical"}},
        "alerts": [{"name": "acc", "metric": "accuracy", "feature": "", "op": "<", "threshold": 0.8}],
        "retrain": {"enabled": True, "on_rules": ["acc"]},
    })  # fmt: skip
    engine, policy = RuleEngine(spec), RetrainPolicy(spec)
    points = [_accuracy(0, 0.7)]
    (firing,) = engine.observe_all(points)
    assert firing.details["attribution"] == ATTRIBUTION
    assert "moved: f0 (3x), f1 (2.5x); worst segment region=eu (-0.09)" in firing.message
    request = policy.observe([firing], points)
    assert request is not None and request.evidence[0]["attribution"] == ATTRIBUTION


def test_top_lines_and_headline() -> None:
    lines = top_lines(ATTRIBUTION)
    assert len(lines) == 5 and lines[0].startswith("feature f0: psi 3x its line")
    assert lines[3].startswith("segment region=eu: accuracy 0.5 vs 0.8 in the window, 30% of events")
    assert headline({}) == "" and top_lines(None) == []


def test_a_streak_alert_ranks_segments_over_its_windows_not_only_the_deciding_one() -> None:
    """Three windows below 0.8: DE is the worst in two, FR by chance in the third (the deciding one)."""
    spec = parse_spec({
        "model_id": "m", "task": "binary", "features": {"x": {"type": "numerical"}},
        "alerts": [{"name": "acc", "metric": "accuracy", "feature": "", "op": "<", "threshold": 0.8,
                    "for": 3}],
    })  # fmt: skip

    def window(minute: int, de: float, fr: float) -> MetricPoint:
        ranked = sorted((("c=DE", de), ("c=FR", fr)), key=lambda x: x[1])
        lines = [{"segment": s, "metric": "accuracy", "value": 0.5 + c, "baseline": 0.5, "share": 0.2,
                  "contribution": c} for s, c in ranked]  # fmt: skip
        start = START + timedelta(minutes=minute)
        return MetricPoint(model_id="m", metric="accuracy", value=0.5, window_start=start,
                           window_end=start + timedelta(minutes=1), source="stage2",
                           details={"attribution": {"features": [], "segments": lines}})  # fmt: skip

    engine = RuleEngine(spec)
    windows = [window(0, -0.09, 0.02), window(1, -0.07, 0.01), window(2, -0.02, -0.05)]
    transitions = engine.observe_all(windows)
    firing = transitions[-1]
    assert firing.state.value == "firing"
    segments = firing.details["attribution"]["segments"]
    assert [(s["segment"], s["contribution"], s["windows"]) for s in segments] == [
        ("c=DE", -0.06, 3), ("c=FR", pytest.approx(-0.00667, abs=1e-5), 3)
    ]  # fmt: skip
    assert "worst segment c=DE (-0.06)" in firing.message
    assert "over 3 windows (means)" in top_lines(firing.details["attribution"])[0]
    # The state survives a restart with the windows' segments (the changelog snapshot).
    again = RuleEngine(spec, engine.snapshot())
    assert again.snapshot() == engine.snapshot()
