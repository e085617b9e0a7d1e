"""The event contract: timestamps, defaults, extras, ranges, exact feature types, JSON round trips."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from modelmon.events import (
    EVENT_TYPES,
    Alert,
    AlertState,
    DeadLetter,
    GroundTruthEvent,
    MetricPoint,
    PredictionEvent,
    RetrainRequested,
    Severity,
    model_to_json,
    parse_timestamp,
)

MAY_1_10H = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
MAY_1_10H_MS = int(MAY_1_10H.timestamp() * 1000)


def prediction(**fields: Any) -> PredictionEvent:
    return PredictionEvent.model_validate(
        {"model_id": "m", "features": {"x": 1.5}, "prediction": 1, **fields}
    )


# -- timestamps --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ts",
    [
        "2024-05-01T12:00:00+02:00",
        "2024-05-01T05:00:00-05:00",
        "2024-05-01T10:00:00Z",
        "2024-05-01T10:00:00+00:00",
        "2024-05-01T10:00:00",
        MAY_1_10H_MS,
        str(MAY_1_10H_MS),
        f"  {MAY_1_10H_MS} ",
        float(MAY_1_10H_MS),
        datetime(2024, 5, 1, 10, 0),
        datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))),
    ],
    ids=repr,
)
def test_timestamp_forms_mean_the_same_utc_instant(ts: Any) -> None:
    parsed = prediction(ts=ts).ts
    assert parsed == MAY_1_10H
    assert parsed.utcoffset() == timedelta(0)


def test_epoch_milliseconds_keep_sub_second_precision() -> None:
    assert parse_timestamp(MAY_1_10H_MS + 250) == MAY_1_10H + timedelta(milliseconds=250)


def test_negative_epoch_is_before_1970() -> None:
    assert parse_timestamp("-1000") == datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ts", "message"),
    [
        (True, "not a boolean"),
        (False, "not a boolean"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        ("nan", "isoformat"),
        ("yesterday", "isoformat"),
        ("", "isoformat"),
        ([2024, 5, 1], "got list"),
    ],
    ids=repr,
)
def test_bad_timestamps_are_validation_errors(ts: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        prediction(ts=ts)
    assert info.value.errors()[0]["loc"] == ("ts",)


@pytest.mark.parametrize(
    "ts", [10**20, str(10**20), -(10**20), "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"], ids=repr
)
def test_out_of_range_timestamps_are_validation_errors_not_crashes(ts: Any) -> None:
    # These raised OverflowError/OSError from datetime, which escaped pydantic (and the worker).
    with pytest.raises(ValidationError, match=r"out of the supported range|out of range") as info:
        prediction(ts=ts)
    assert info.value.errors()[0]["loc"] == ("ts",)


def test_missing_ts_defaults_to_now_in_utc() -> None:
    before = datetime.now(UTC)
    event = prediction()
    after = datetime.now(UTC)
    assert before <= event.ts <= after
    assert event.ts.tzinfo is not None


# -- defaults and forbidden fields ---------------------------------------------------------------


def test_prediction_defaults() -> None:
    first, second = prediction(), prediction()
    assert uuid.UUID(first.prediction_id).version == 4
    assert first.prediction_id != second.prediction_id
    assert first.model_version == "1"
    assert first.score is None
    assert first.scores is None
    assert first.tags == {}


def test_given_prediction_id_is_kept() -> None:
    assert prediction(prediction_id="req-42").prediction_id == "req-42"


@pytest.mark.parametrize("model", list(EVENT_TYPES.values()), ids=list(EVENT_TYPES))
def test_every_event_type_forbids_extra_fields(model: type[BaseModel]) -> None:
    valid = model_to_json(EXAMPLES[model.__name__])
    with pytest.raises(ValidationError) as info:
        model.model_validate_json(valid[:-1] + b',"surprise":1}')
    assert [(e["type"], e["loc"]) for e in info.value.errors()] == [("extra_forbidden", ("surprise",))]


@pytest.mark.parametrize("field", ["model_id", "features", "prediction"])
def test_prediction_required_fields(field: str) -> None:
    data: dict[str, Any] = {"model_id": "m", "features": {}, "prediction": 1}
    del data[field]
    with pytest.raises(ValidationError) as info:
        PredictionEvent.model_validate(data)
    assert [(e["type"], e["loc"]) for e in info.value.errors()] == [("missing", (field,))]


@pytest.mark.parametrize("field", ["model_id", "prediction_id", "model_version"])
def test_empty_ids_are_refused(field: str) -> None:
    with pytest.raises(ValidationError) as info:
        prediction(**{field: ""})
    assert info.value.errors()[0]["loc"] == (field,)


# -- score, scores, prediction -------------------------------------------------------------------


@pytest.mark.parametrize("score", [0.0, 0.5, 1.0])
def test_score_in_unit_interval_is_kept(score: float) -> None:
    assert prediction(score=score).score == score


@pytest.mark.parametrize("score", [-0.01, 1.01, 7])
def test_score_outside_unit_interval_is_refused(score: float) -> None:
    with pytest.raises(ValidationError) as info:
        prediction(score=score)
    assert info.value.errors()[0]["loc"] == ("score",)


def test_scores_in_range_are_kept() -> None:
    assert prediction(scores={"a": 0.2, "b": 0.8}).scores == {"a": 0.2, "b": 0.8}


def test_scores_out_of_range_name_the_bad_classes() -> None:
    with pytest.raises(ValidationError, match=r"out of range: \{'b': 1\.5\}") as info:
        prediction(scores={"a": 0.5, "b": 1.5})
    assert info.value.errors()[0]["loc"] == ("scores",)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_prediction_is_refused(value: float) -> None:
    with pytest.raises(ValidationError, match="finite"):
        prediction(prediction=value)


@pytest.mark.parametrize("value", [1, 2.5, "fraud"])
def test_prediction_keeps_its_type(value: Any) -> None:
    kept = prediction(prediction=value).prediction
    assert kept == value
    assert type(kept) is type(value)


# -- feature values keep their exact type --------------------------------------------------------


def test_feature_values_keep_their_exact_type() -> None:
    features = {"count": 3, "flag": True, "off": False, "amount": 3.0, "country": "DE", "gone": None}
    kept = prediction(features=features).features
    assert kept == features
    assert {name: type(value) for name, value in kept.items()} == {
        name: type(value) for name, value in features.items()
    }


def test_feature_value_types_survive_json() -> None:
    raw = b'{"model_id":"m","prediction":0,"features":{"i":1,"b":true,"f":1.0,"s":"1","n":null}}'
    kept = PredictionEvent.model_validate_json(raw).features
    assert [type(kept[name]) for name in "ibfsn"] == [int, bool, float, str, type(None)]


def test_feature_value_of_a_nested_type_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        prediction(features={"x": [1, 2]})
    assert {e["loc"][:2] for e in info.value.errors()} == {("features", "x")}


# -- JSON round trip of every event type ---------------------------------------------------------

POINT = MetricPoint(
    model_id="fraud",
    segment="country=DE",
    metric="psi",
    feature="amount",
    window_start=MAY_1_10H,
    window_end=MAY_1_10H + timedelta(minutes=1),
    value=0.31,
    source="drift/p0",
    revision=12,
    details={"threshold": 0.2, "bins": [1, 2]},
    emitted_at=MAY_1_10H,
)


EXAMPLES: dict[str, BaseModel] = {
    "PredictionEvent": PredictionEvent(
        prediction_id="p-1",
        model_id="fraud",
        model_version="7",
        ts=MAY_1_10H,
        features={"amount": 12.5, "n": 3, "new": True, "country": "DE", "missing": None},
        prediction=1,
        score=0.25,
        scores={"0": 0.75, "1": 0.25},
        tags={"country": "DE"},
    ),
    "GroundTruthEvent": GroundTruthEvent(prediction_id="p-1", model_id="fraud", label="yes", ts=MAY_1_10H),
    "MetricPoint": POINT,
    "Alert": Alert(
        dedup_key="fraud|feature-drift|amount|",
        model_id="fraud",
        rule="feature-drift",
        state=AlertState.FIRING,
        severity=Severity.CRITICAL,
        metric="psi",
        feature="amount",
        value=0.31,
        threshold=0.2,
        window_start=MAY_1_10H,
        window_end=MAY_1_10H + timedelta(minutes=1),
        message="psi 0.31 >= 0.2",
        ts=MAY_1_10H,
    ),
    "RetrainRequested": RetrainRequested(
        idempotency_key="fraud|accuracy-drop|2024-05-01",
        model_id="fraud",
        reason="accuracy below 0.8",
        evidence=[{"metric": "accuracy", "value": 0.7}],
        alert_ids=["a-1"],
        requested_at=MAY_1_10H,
    ),
    "DeadLetter": DeadLetter(
        topic="predictions",
        partition=2,
        offset=41,
        key="p-9",
        payload="{nope",
        reason="not valid JSON",
        error_type="invalid_json",
        ts=MAY_1_10H,
    ),
}


def test_every_event_type_has_a_round_trip_example() -> None:
    assert set(EXAMPLES) == set(EVENT_TYPES)


@pytest.mark.parametrize("name", list(EVENT_TYPES))
def test_json_round_trip(name: str) -> None:
    event = EXAMPLES[name]
    again = EVENT_TYPES[name].model_validate_json(model_to_json(event))
    assert again == event
    assert model_to_json(again) == model_to_json(event)


MINIMAL: dict[str, dict[str, Any]] = {
    "PredictionEvent": {"model_id": "m", "features": {}, "prediction": "a"},
    "GroundTruthEvent": {"prediction_id": "p", "model_id": "m", "label": 0},
    "MetricPoint": {
        "model_id": "m",
        "metric": "events",
        "window_start": 0,
        "window_end": 60_000,
        "value": 3,
    },
    "Alert": {
        "dedup_key": "k",
        "model_id": "m",
        "rule": "r",
        "state": "pending",
        "metric": "psi",
        "value": 0.3,
        "threshold": 0.2,
        "window_start": 0,
        "window_end": 60_000,
    },
    "RetrainRequested": {"idempotency_key": "k", "model_id": "m", "reason": "drift"},
    "DeadLetter": {"topic": "t", "payload": "", "reason": "r", "error_type": "invalid_json"},
}


@pytest.mark.parametrize("name", list(EVENT_TYPES))
def test_json_round_trip_of_generated_defaults(name: str) -> None:
    # Generated ids and "now" timestamps (with microseconds) must survive JSON too.
    event = EVENT_TYPES[name].model_validate(MINIMAL[name])
    assert EVENT_TYPES[name].model_validate_json(model_to_json(event)) == event


def test_json_writes_timestamps_as_utc_and_keeps_nulls() -> None:
    import orjson

    data = orjson.loads(model_to_json(prediction(ts="2024-05-01T12:00:00+02:00")))
    assert data["ts"] == "2024-05-01T10:00:00Z"
    assert data["score"] is None
    assert "scores" in data


# -- MetricPoint.dedup_key -----------------------------------------------------------------------


def test_dedup_key_ignores_revision_value_details_and_emission_time() -> None:
    replayed = POINT.model_copy(
        update={"revision": 99, "value": 5.0, "details": {}, "emitted_at": MAY_1_10H + timedelta(hours=1)}
    )
    assert replayed.dedup_key() == POINT.dedup_key()


@pytest.mark.parametrize(
    "update",
    [
        {"model_id": "other"},
        {"model_version": "8"},
        {"segment": "country=FR"},
        {"metric": "ks"},
        {"feature": "n"},
        {"window_start": MAY_1_10H + timedelta(minutes=1)},
        {"source": "drift/p1"},
    ],
    ids=lambda update: next(iter(update)),
)
def test_dedup_key_tells_apart_every_identity_field(update: dict[str, Any]) -> None:
    assert POINT.model_copy(update=update).dedup_key() != POINT.dedup_key()


def test_dedup_key_is_the_same_for_equal_instants_in_other_offsets() -> None:
    data = POINT.model_dump()
    data["window_start"] = "2024-05-01T12:00:00+02:00"
    assert MetricPoint.model_validate(data).dedup_key() == POINT.dedup_key()
