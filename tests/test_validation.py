"""Validation of raw messages: valid events pass, every other message becomes a dead letter saying why."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from modelmon.events import DeadLetter, GroundTruthEvent, PredictionEvent
from modelmon.spec import ModelSpec, parse_spec
from streams.validation import (
    MAX_PAYLOAD_CHARS,
    EventLimits,
    InvalidEvent,
    RawMessage,
    check_against_spec,
    check_event_time,
    dead_letter,
    parse_event,
    processing_error,
    validate_predictions,
)

SPECS: dict[str, ModelSpec] = {
    "fraud": parse_spec(
        {
            "model_id": "fraud",
            "task": "binary",
            "features": {
                "amount": {"type": "numerical", "min": 0, "required": True},
                "country": {"type": "categorical", "allowed": ["DE", "FR"], "required": True},
                "new_device": {"type": "boolean"},
            },
        }
    ),
    "houses": parse_spec(
        {"model_id": "houses", "task": "regression", "features": {"area": {"type": "numerical"}}}
    ),
}


def body(**fields: Any) -> bytes:
    return orjson.dumps(
        {"model_id": "fraud", "features": {"amount": 10.0, "country": "DE"}, "prediction": 1, **fields}
    )


def raw(value: bytes | None, offset: int = 0, key: bytes | None = None) -> RawMessage:
    return RawMessage(value=value, topic="t.predictions", partition=3, offset=offset, key=key)


def invalid(value: bytes | None, model: type = PredictionEvent) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        parse_event(value, model)
    return info.value


# -- parse_event: each error type ---------------------------------------------------------------


def test_valid_prediction_parses() -> None:
    event = parse_event(body(prediction_id="p-1", score=0.3), PredictionEvent)
    assert (event.prediction_id, event.model_id, event.score) == ("p-1", "fraud", 0.3)
    assert event.features == {"amount": 10.0, "country": "DE"}


def test_valid_ground_truth_parses() -> None:
    event = parse_event(b'{"prediction_id": "p-1", "model_id": "fraud", "label": "yes"}', GroundTruthEvent)
    assert isinstance(event, GroundTruthEvent)
    assert event.label == "yes"


@pytest.mark.parametrize("value", [b"{nope", b"", b'{"model_id": "fraud"', b"\xff\xfe", b"NaN"], ids=repr)
def test_invalid_json(value: bytes) -> None:
    error = invalid(value)
    assert error.error_type == "invalid_json"
    assert error.reason.startswith("not valid JSON: ")


@pytest.mark.parametrize(
    ("value", "kind"), [(b"[1, 2, 3]", "list"), (b'"text"', "str"), (b"42", "int"), (b"null", "NoneType")]
)
def test_not_an_object(value: bytes, kind: str) -> None:
    error = invalid(value)
    assert error.error_type == "not_an_object"
    assert error.reason == f"expected a JSON object, got {kind}"


def test_empty_message() -> None:
    error = invalid(None)
    assert error.error_type == "empty_message"
    assert "tombstone" in error.reason


@pytest.mark.parametrize(
    "value",
    [
        b'{"features": {"amount": 1}, "prediction": 1}',
        b'{"model_id": null, "features": {"amount": 1}, "prediction": 1}',
        b'{"model_id": "", "features": {"amount": 1}, "prediction": 1}',
    ],
    ids=["absent", "null", "empty"],
)
def test_missing_model_id(value: bytes) -> None:
    error = invalid(value)
    assert error.error_type == "missing_model_id"
    assert error.reason.startswith("model_id: ")


def test_missing_model_id_of_ground_truth() -> None:
    error = invalid(b'{"prediction_id": "p", "label": 1}', GroundTruthEvent)
    assert error.error_type == "missing_model_id"


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (body(score=2.0), "score"),
        (body(features="oops"), "features"),
        (body(prediction=[1]), "prediction"),
        (body(ts="last tuesday"), "ts"),
        (body(ts=1e20), "ts"),
        (body(colour="red"), "colour"),
    ],
    ids=["score", "features", "prediction", "ts", "ts-overflow", "extra"],
)
def test_contract_violation_names_the_field(value: bytes, field: str) -> None:
    error = invalid(value)
    assert error.error_type == "contract_violation"
    assert error.reason.startswith(f"{field}")


def test_contract_violation_reason_lists_five_errors_then_counts_the_rest() -> None:
    fields = {f"extra{i}": i for i in range(8)}
    error = invalid(body(**fields))
    assert error.error_type == "contract_violation"
    assert error.reason.count("Extra inputs are not permitted") == 5
    assert error.reason.endswith("; and 3 more")


# -- check_against_spec ---------------------------------------------------------------------------


def event(**fields: Any) -> PredictionEvent:
    return PredictionEvent.model_validate(orjson.loads(body(**fields)))


def test_known_model_with_its_required_features_passes() -> None:
    assert check_against_spec(event(), SPECS) is SPECS["fraud"]


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(InvalidEvent) as info:
        check_against_spec(event(model_id="spam"), SPECS)
    assert info.value.error_type == "unknown_model"
    assert info.value.reason == "model_id 'spam' has no model spec (known: fraud, houses)"


def test_unknown_model_without_any_specs() -> None:
    with pytest.raises(InvalidEvent, match=r"\(known: none\)"):
        check_against_spec(event(), {})


@pytest.mark.parametrize(
    ("features", "missing"),
    [
        ({"country": "DE"}, ["amount"]),
        ({"amount": None, "country": "DE"}, ["amount"]),
        ({"new_device": True}, ["amount", "country"]),
    ],
    ids=["absent", "null", "both"],
)
def test_missing_required_feature(features: dict[str, Any], missing: list[str]) -> None:
    with pytest.raises(InvalidEvent) as info:
        check_against_spec(event(features=features), SPECS)
    assert info.value.error_type == "missing_required_feature"
    assert info.value.reason == f"required feature(s) missing or null: {missing}"


def test_soft_problems_are_not_errors() -> None:
    # Wrong type, out of range and unseen category are fidelity metrics, not dead letters.
    features = {"amount": "lots", "country": "XX", "new_device": 3, "undeclared": 1}
    assert check_against_spec(event(features=features), SPECS) is SPECS["fraud"]
    assert check_against_spec(event(features={"amount": -5.0, "country": "DE"}), SPECS) is SPECS["fraud"]


def test_regression_prediction_must_be_a_number() -> None:
    houses = {"model_id": "houses", "features": {"area": 80.0}}
    with pytest.raises(InvalidEvent) as info:
        check_against_spec(event(**houses, prediction="expensive"), SPECS)
    assert info.value.error_type == "prediction_type"
    assert info.value.reason == "a regression model's prediction must be a number"
    assert check_against_spec(event(**houses, prediction=250_000.0), SPECS) is SPECS["houses"]
    assert check_against_spec(event(**houses, prediction=250_000), SPECS) is SPECS["houses"]


def test_classifier_prediction_may_be_a_label() -> None:
    assert check_against_spec(event(prediction="fraud"), SPECS) is SPECS["fraud"]


# -- dead letters ---------------------------------------------------------------------------------


def test_dead_letter_keeps_where_the_message_came_from() -> None:
    message = RawMessage(value=b"{nope", topic="acme.predictions", partition=5, offset=1234, key=b"p-7")
    letter = dead_letter(message, InvalidEvent("invalid_json", "not valid JSON: x"))
    assert isinstance(letter, DeadLetter)
    assert (letter.topic, letter.partition, letter.offset, letter.key) == ("acme.predictions", 5, 1234, "p-7")
    assert (letter.payload, letter.reason, letter.error_type) == (
        "{nope",
        "not valid JSON: x",
        "invalid_json",
    )
    assert letter.dedup_key() == "acme.predictions|5|1234|invalid_json"


def test_dead_letter_of_a_tombstone_without_key() -> None:
    letter = dead_letter(raw(None), InvalidEvent("empty_message", "no value"))
    assert (letter.payload, letter.key) == ("", None)


def test_dead_letter_replaces_invalid_utf8() -> None:
    letter = dead_letter(raw(b"ok \xff\xfe end", key=b"k\xff"), InvalidEvent("invalid_json", "r"))
    assert letter.payload == "ok \ufffd\ufffd end"
    assert letter.key == "k\ufffd"


def test_dead_letter_truncates_a_huge_payload() -> None:
    huge = b'{"model_id": "' + b"x" * (MAX_PAYLOAD_CHARS * 2) + b'"'
    letter = dead_letter(raw(huge), InvalidEvent("invalid_json", "r"))
    assert len(letter.payload) == MAX_PAYLOAD_CHARS
    assert letter.payload == huge.decode()[:MAX_PAYLOAD_CHARS]


def test_dead_letter_keeps_a_payload_of_exactly_the_limit() -> None:
    exact = b"y" * MAX_PAYLOAD_CHARS
    assert dead_letter(raw(exact), InvalidEvent("invalid_json", "r")).payload == exact.decode()


# -- validate_predictions -------------------------------------------------------------------------


def test_batch_is_split_into_valid_events_and_dead_letters_in_order() -> None:
    batch = [
        raw(body(prediction_id="a"), offset=10),
        raw(b"{nope", offset=11),
        raw(None, offset=12),
        raw(b"[1]", offset=13),
        raw(body(model_id="spam"), offset=14),
        raw(body(features={"country": "DE"}), offset=15),
        raw(body(model_id="houses", features={"area": 1.0}, prediction="big"), offset=16),
        raw(body(score=-1), offset=17),
        raw(b'{"features": {}, "prediction": 1}', offset=18),
        raw(body(prediction_id="b"), offset=19),
    ]
    valid, dead = validate_predictions(batch, SPECS)

    assert [(m.offset, e.prediction_id) for m, e in valid] == [(10, "a"), (19, "b")]
    assert [(d.offset, d.error_type) for d in dead] == [
        (11, "invalid_json"),
        (12, "empty_message"),
        (13, "not_an_object"),
        (14, "unknown_model"),
        (15, "missing_required_feature"),
        (16, "prediction_type"),
        (17, "contract_violation"),
        (18, "missing_model_id"),
    ]
    assert all(d.topic == "t.predictions" and d.partition == 3 for d in dead)
    assert all(d.reason for d in dead)


def test_empty_batch() -> None:
    assert validate_predictions([], SPECS) == ([], [])


# -- limits: too_large and ts_out_of_range --------------------------------------------------------

LIMITS = EventLimits(max_message_bytes=2000, max_features=3, max_string_chars=50)
NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00Z
HOUR_MS = 3_600_000


def too_large(value: bytes) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        parse_event(value, PredictionEvent, LIMITS)
    assert info.value.error_type == "too_large"
    return info.value


def test_a_message_over_the_byte_limit_is_too_large_before_it_is_decoded() -> None:
    error = too_large(b"{" + b" " * 2000 + b"}")  # not even JSON: the size is checked first
    assert "2002 bytes; at most 2000 (MODELMON_MAX_MESSAGE_BYTES)" in error.reason


def test_more_features_than_the_limit_are_too_large() -> None:
    error = too_large(body(features={f"f{i}": i for i in range(4)}))
    assert error.reason == "4 features; at most 3 (MODELMON_MAX_FEATURES)"


@pytest.mark.parametrize(
    "fields",
    [
        {"features": {"amount": 1.0, "country": "x" * 51}},
        {"features": {"y" * 51: 1.0}},
        {"tags": {"region": "z" * 51}},
        {"prediction": "p" * 51},
        {"prediction_id": "i" * 51},
    ],
)
def test_a_string_over_the_limit_anywhere_in_the_event_is_too_large(fields: dict[str, Any]) -> None:
    error = too_large(body(**fields))
    assert error.reason == "a string of 51 characters; at most 50 (MODELMON_MAX_STRING_CHARS)"


def test_limits_at_exactly_the_bound_pass() -> None:
    event = parse_event(
        body(features={"amount": 1.0, "country": "x" * 50, "n": None}), PredictionEvent, LIMITS
    )
    assert event.features["country"] == "x" * 50


@pytest.mark.parametrize(
    ("ts_ms", "words"),
    [
        (
            NOW_MS - 7 * 24 * HOUR_MS - 1,
            "168.0 h older than the worker's clock (at most 168 h: MODELMON_MAX_EVENT_AGE",
        ),
        (0, "older than the worker's clock"),
        (
            NOW_MS + 15 * 60_000 + 1,
            "0.25 h ahead of the worker's clock (at most 15 min: MODELMON_MAX_FUTURE_SKEW)",
        ),
        (253_402_300_740_000, "9999-12-31T23:59:00+00:00 is"),
    ],
)
def test_event_times_too_far_from_the_clock_are_out_of_range(ts_ms: int, words: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        check_event_time(ts_ms, NOW_MS, EventLimits())
    assert info.value.error_type == "ts_out_of_range"
    assert words in info.value.reason


def test_event_times_inside_the_range_pass() -> None:
    for ts_ms in (NOW_MS - 7 * 24 * HOUR_MS, NOW_MS, NOW_MS + 15 * 60_000):
        check_event_time(ts_ms, NOW_MS, EventLimits())


def test_a_model_spec_may_accept_older_events_for_a_backfill() -> None:
    spec = parse_spec({**SPECS["fraud"].model_dump(), "max_event_age": "400d"})
    eleven_months = NOW_MS - 330 * 24 * HOUR_MS
    check_event_time(eleven_months, NOW_MS, EventLimits(), spec)
    with pytest.raises(InvalidEvent, match="the model's max_event_age"):
        check_event_time(NOW_MS - 401 * 24 * HOUR_MS, NOW_MS, EventLimits(), spec)
    with pytest.raises(InvalidEvent, match="MODELMON_MAX_EVENT_AGE"):
        check_event_time(eleven_months, NOW_MS, EventLimits(), SPECS["fraud"])


def test_processing_errors_name_the_exception() -> None:
    error = processing_error(OverflowError("date value out of range"))
    assert (error.error_type, error.reason) == (
        "processing_error",
        "processing this event raised OverflowError: date value out of range",
    )
