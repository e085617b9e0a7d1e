"""The calibration carried by references (files, records, automatic, offline) and alerts on estimates."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from detectors.estimation import Calibration
from detectors.profiles.files import load_reference_file
from detectors.profiles.records import (
    ReferenceRecord,
    assemble_reference,
    newest_complete,
    reference_records,
)
from modelmon.events import MetricPoint
from modelmon.offline import compare
from modelmon.references import CALIBRATION_RECORD, InvalidReferenceMessage
from modelmon.spec import parse_spec
from retrain_trigger.policy import RetrainPolicy
from retrain_trigger.rules import RuleEngine
from streams.auto_reference import WindowPart, build_reference
from tests.test_bundle import CLASSES, KEY, make_spec, reference_for
from tests.test_estimation_stream import bundle_of, calibrated_events, calibrated_reference

BASE = datetime(2026, 4, 1, tzinfo=UTC)


def calibrated_rows(n: int, seed: int, spread: float = 2.0) -> list[dict[str, Any]]:
    events, pairs = calibrated_events(n, seed, spread=spread)
    return [
        {"amount": e.features["amount"], "age": 30, "country": "DE", "is_new": "false",
         "prediction": e.prediction, "score": e.score, "label": p.label}
        for e, p in zip(events, pairs, strict=True)
    ]  # fmt: skip


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


# -- reference files ---------------------------------------------------------------------------


def test_a_file_with_labels_and_scores_is_calibrated(tmp_path: Path) -> None:
    rows = calibrated_rows(5000, seed=1)
    rows[0]["label"] = ""  # a row without a label is left out of the fit
    loaded = load_reference_file(write_csv(tmp_path / "ref.csv", rows), make_spec("binary"))
    calibration = loaded.profile.calibration
    assert calibration is not None and loaded.calibration_rows == 4999
    assert calibration.classes == ("0", "1")
    assert "label" not in loaded.ignored and "label" not in loaded.profile
    # Calibrated scores: the fitted rate of a score bin is close to the bin's score.
    assert calibration.rates[1][90] == pytest.approx(0.905, abs=0.08)
    assert calibration.rates[1][10] == pytest.approx(0.105, abs=0.08)


def test_a_file_without_labels_has_no_calibration(tmp_path: Path) -> None:
    rows = [{k: v for k, v in row.items() if k != "label"} for row in calibrated_rows(500, seed=2)]
    loaded = load_reference_file(write_csv(tmp_path / "ref.csv", rows), make_spec("binary"))
    assert loaded.profile.calibration is None and loaded.calibration_rows == 0


def test_a_multiclass_file_is_calibrated_from_its_score_columns(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    raw = rng.dirichlet(np.ones(3), 3000)
    rows = [
        {"amount": 1.0, "age": 30, "country": "DE", "is_new": "true",
         "prediction": CLASSES[int(np.argmax(p))],
         **{f"score_{c}": float(v) for c, v in zip(CLASSES, p, strict=True)},
         "label": CLASSES[int(rng.choice(3, p=p))]}
        for p in raw
    ]  # fmt: skip
    loaded = load_reference_file(write_csv(tmp_path / "ref.csv", rows), make_spec("multiclass"))
    assert loaded.profile.calibration is not None
    assert loaded.profile.calibration.classes == tuple(CLASSES) and loaded.calibration_rows == 3000


# -- records on the reference topic ------------------------------------------------------------


def test_records_carry_the_calibration_and_read_back() -> None:
    reference = calibrated_reference()
    records = reference_records("m", "1", reference, "file:ref.csv")
    calibration_records = [r for r in records if r.feature == CALIBRATION_RECORD]
    assert len(calibration_records) == 1 and calibration_records[0].kind == "calibration"
    assert all(CALIBRATION_RECORD in r.features for r in records)
    read = [ReferenceRecord.from_json(r.to_json()) for r in records]
    assembled = assemble_reference(read)
    assert assembled == reference and assembled is not None
    assert assembled.calibration is not None and list(assembled) == list(reference)
    assert assembled.calibration.to_dict() == reference.calibration.to_dict()  # type: ignore[union-attr]
    # Until the calibration record has arrived, the publication is incomplete.
    assert newest_complete(read[:-1]) is None


def test_records_without_a_calibration_read_as_before() -> None:
    plain = reference_for("binary")
    records = reference_records("m", "1", plain, "file:ref.csv")
    assert CALIBRATION_RECORD not in records[0].features
    assembled = assemble_reference([ReferenceRecord.from_json(r.to_json()) for r in records])
    assert assembled == plain and assembled is not None and assembled.calibration is None


def test_a_calibration_record_is_not_a_feature_and_vice_versa() -> None:
    records = reference_records("m", "1", calibrated_reference(), "first_n")
    calibration = next(r for r in records if r.feature == CALIBRATION_RECORD)
    with pytest.raises(InvalidReferenceMessage):
        calibration.feature_profile()
    with pytest.raises(InvalidReferenceMessage):
        records[0].calibration()
    posing = calibration.model_dump(mode="json") | {"feature": "amount", "features": ["amount"]}
    with pytest.raises(InvalidReferenceMessage):
        ReferenceRecord.from_json(ReferenceRecord.model_validate(posing).to_json())


# -- automatic references ----------------------------------------------------------------------


def test_an_automatic_reference_is_calibrated_from_its_labelled_windows() -> None:
    spec = make_spec("binary", reference={"source": "first_n", "n": 1000})
    parts = [WindowPart.of(bundle_of(*calibrated_events(3000, seed))) for seed in (4, 5)]
    profile = build_reference(spec, parts)
    assert profile.calibration is not None and profile.calibration.classes == ("0", "1")
    first, second = (part.labelled for part in parts)
    assert first is not None and second is not None
    direct = Calibration.from_score_histogram(first.merge(second), ("0", "1"))
    assert profile.calibration.to_dict() == direct.to_dict()
    unlabelled = [WindowPart.of(bundle_of(calibrated_events(500, 6)[0], []))]
    assert build_reference(spec, unlabelled).calibration is None


# -- offline -----------------------------------------------------------------------------------


def test_offline_compare_estimates_with_a_labelled_reference_frame() -> None:
    reference = pd.DataFrame(calibrated_rows(8000, seed=7))[["amount", "prediction", "score", "label"]]
    current = pd.DataFrame(calibrated_rows(3000, seed=8, spread=0.4))[
        ["amount", "prediction", "score", "label"]
    ]
    labelled = {p.metric: p.value for p in compare(reference, current).points if p.feature == ""}
    unlabelled = {
        p.metric: p.value for p in compare(reference, current.drop(columns="label")).points if p.feature == ""
    }
    assert "accuracy" not in unlabelled and "estimated_accuracy" in unlabelled
    assert labelled["estimated_accuracy"] == unlabelled["estimated_accuracy"]
    assert labelled["estimation_error_accuracy"] == pytest.approx(
        abs(labelled["estimated_accuracy"] - labelled["accuracy"])
    )
    assert labelled["estimation_error_accuracy"] < 0.05
    without = compare(reference.drop(columns="label"), current.drop(columns="label")).points
    assert not [p for p in without if p.metric.startswith("estimat")]


# -- alert rules and the retrain policy --------------------------------------------------------

ESTIMATE_RULE = {
    "name": "estimate-low",
    "metric": "estimated_accuracy",
    "feature": "",
    "op": "<",
    "threshold": 0.8,
}


def point(window: int, value: float, metric: str = "estimated_accuracy") -> MetricPoint:
    start = BASE + timedelta(minutes=window)
    return MetricPoint(
        model_id="m", metric=metric, window_start=start, window_end=start + timedelta(minutes=1), value=value,
        source="stage2", details={"estimated": True},
    )  # fmt: skip


def spec_with(**extra: Any) -> Any:
    return parse_spec({"model_id": "m", "task": "binary", "features": {"a": {"type": "numerical"}}, **extra})


def test_an_alert_rule_fires_on_the_estimated_accuracy() -> None:
    engine = RuleEngine(spec_with(alerts=[{**ESTIMATE_RULE, "for": 2}]))
    assert engine.observe(point(0, 0.9)) == []
    assert [a.state.value for a in engine.observe(point(1, 0.7))] == ["pending"]
    (fired,) = engine.observe(point(2, 0.65))
    assert (fired.state.value, fired.metric, fired.value) == ("firing", "estimated_accuracy", 0.65)
    assert engine.observe(point(3, 0.6, metric="accuracy")) == []  # the realized metric is another rule's


def test_retrain_evidence_marks_estimates() -> None:
    spec = spec_with(
        alerts=[ESTIMATE_RULE],
        retrain={
            "enabled": True,
            "performance_below": [{"metric": "estimated_accuracy", "threshold": 0.8, "for": 2}],
        },
    )
    policy = RetrainPolicy(spec)
    assert policy.observe([], [point(0, 0.7)]) is None
    request = policy.observe([], [point(1, 0.6)])
    assert request is not None
    (evidence,) = request.evidence
    assert evidence["estimated"] is True and evidence["metric"] == "estimated_accuracy"
    assert "estimated accuracy" in request.reason
    realized = RetrainPolicy(
        spec_with(
            retrain={
                "enabled": True,
                "performance_below": [{"metric": "accuracy", "threshold": 0.8, "for": 1}],
            }
        )
    ).observe([], [point(0, 0.5, metric="accuracy")])
    assert realized is not None and realized.evidence[0]["estimated"] is False
    assert "estimated" not in realized.reason


def test_window_key_used_by_the_points_is_the_bundles() -> None:
    reference = calibrated_reference()
    from streams.finalize import window_metrics

    points = window_metrics(bundle_of(*calibrated_events(300, 9)), make_spec("binary"), reference)
    estimated = [p for p in points if p.metric == "estimated_accuracy"]
    assert [(p.model_id, p.window_start.timestamp() * 1000) for p in estimated] == [
        ("m", KEY.window_start_ms)
    ]
