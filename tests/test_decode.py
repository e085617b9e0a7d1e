"""The data plane's msgspec decoding agrees with the contract (pydantic) on every message.

Both must accept the same messages with the same values, and reject the same ones with the same
dead-letter type and reason (the fast path hands what it refuses to the contract, so reasons are the
contract's by construction; what needs checking is that it never accepts more, or other values).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelmon.events import GroundTruthEvent, PredictionEvent, epoch_ms
from streams.decode import decode_label, decode_prediction, times_ms
from streams.validation import EventLimits, InvalidEvent, parse_event

NOW_MS = 1_767_225_600_000
LIMITS = EventLimits(max_message_bytes=20_000, max_features=6, max_string_chars=64)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=70),
)
values = st.one_of(
    scalars, st.lists(scalars, max_size=2), st.dictionaries(st.text(max_size=3), scalars, max_size=2)
)
times = st.one_of(
    st.integers(min_value=-(10**15), max_value=10**15),
    st.floats(min_value=-1e14, max_value=1e14, allow_nan=False),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(lambda d: d.isoformat()),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)).map(
        lambda d: d.isoformat().replace("+00:00", "Z")
    ),
    st.sampled_from(["1700000000000", "2024-05-01T12:00:00+02:00", "yesterday", "", "9999-12-31T23:59:59Z"]),
    st.booleans(),
    st.none(),
)
features = st.dictionaries(st.text(max_size=66), scalars, max_size=8)
probability = st.one_of(
    st.floats(min_value=-0.5, max_value=1.5, allow_nan=False), st.integers(-1, 2), st.none()
)

predictions = st.fixed_dictionaries(
    {},
    optional={
        "model_id": st.one_of(st.sampled_from(["fraud", "m-1"]), st.text(max_size=66), scalars),
        "features": st.one_of(features, values),
        "prediction": st.one_of(scalars, st.floats(allow_nan=False)),
        "prediction_id": st.one_of(st.text(max_size=66), scalars),
        "model_version": st.one_of(st.sampled_from(["1", "2"]), st.text(max_size=3), scalars),
        "ts": times,
        "score": probability,
        "scores": st.one_of(st.none(), st.dictionaries(st.text(max_size=3), probability, max_size=3), values),
        "tags": st.one_of(st.dictionaries(st.text(max_size=66), st.text(max_size=66), max_size=2), values),
        "unexpected": scalars,
    },
)
labels = st.fixed_dictionaries(
    {},
    optional={
        "model_id": st.one_of(st.just("fraud"), st.text(max_size=66), scalars),
        "prediction_id": st.one_of(st.text(max_size=66), scalars),
        "label": st.one_of(scalars, st.floats()),
        "ts": times,
        "extra": scalars,
    },
)


def outcome(fn: Any, value: bytes) -> tuple[str, Any]:
    try:
        return "ok", fn(value)
    except InvalidEvent as error:
        return error.error_type, error.reason


def same_prediction(fast: Any, slow: PredictionEvent, raw: dict[str, Any]) -> None:
    assert (fast.model_id, fast.model_version, fast.tags) == (slow.model_id, slow.model_version, slow.tags)
    assert fast.features == slow.features
    assert [type(v) for v in fast.features.values()] == [type(v) for v in slow.features.values()]
    assert (fast.prediction, type(fast.prediction)) == (slow.prediction, type(slow.prediction))
    assert (fast.score, fast.scores) == (slow.score, slow.scores)
    if "prediction_id" in raw:
        assert fast.prediction_id == slow.prediction_id
    if "ts" in raw:
        assert int(times_ms([fast], NOW_MS)[0]) == epoch_ms(slow.ts)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(predictions)
def test_predictions_are_accepted_and_rejected_as_the_contract_does(raw: dict[str, Any]) -> None:
    value = json.dumps(raw).encode()
    fast = outcome(lambda v: decode_prediction(v, LIMITS), value)
    slow = outcome(lambda v: parse_event(v, PredictionEvent, LIMITS), value)
    assert fast[0] == slow[0], (raw, fast, slow)
    if fast[0] == "ok":
        same_prediction(fast[1], slow[1], raw)
    else:
        assert fast[1] == slow[1]


@settings(max_examples=400, deadline=None)
@given(labels)
def test_labels_are_accepted_and_rejected_as_the_contract_does(raw: dict[str, Any]) -> None:
    value = json.dumps(raw).encode()
    fast = outcome(lambda v: decode_label(v, LIMITS), value)
    slow = outcome(lambda v: parse_event(v, GroundTruthEvent, LIMITS), value)
    assert fast[0] == slow[0], (raw, fast, slow)
    if fast[0] == "ok":
        f, s = fast[1], slow[1]
        assert (f.prediction_id, f.model_id, f.label, type(f.label)) == (
            s.prediction_id,
            s.model_id,
            s.label,
            type(s.label),
        )
        if "ts" in raw:
            assert int(times_ms([f], NOW_MS)[0]) == epoch_ms(s.ts)


@pytest.mark.parametrize(
    "value",
    [
        b'{"model_id": "a", "model_id": "b", "features": {}, "prediction": 1}',  # duplicate key: the last
        b'{"model_id": "m", "features": {"x": 1e400}, "prediction": 1}',  # not a float64
        b'{"model_id": "m", "features": {"x": 123456789012345678901234567890}, "prediction": 1}',
        b'{"model_id": "m", "features": {}, "prediction": 1, "ts": "2024-05-01T12:00:00"}',  # naive: UTC
        b'{"model_id": "m", "features": {}, "prediction": 1, "ts": "1700000000000"}',
        b'{"model_id": "m", "features": {}, "prediction": 1, "ts": 1700000000000.5}',
        b"",
        b"[]",
        b'{"model_id": "m", "features": {}, "prediction": NaN}',
        b"\xff\xfe",
    ],
)
def test_edge_forms_decode_as_the_contract_decodes_them(value: bytes) -> None:
    fast = outcome(decode_prediction, value)
    slow = outcome(lambda v: parse_event(v, PredictionEvent), value)
    assert fast[0] == slow[0]
    if fast[0] == "ok":
        same_prediction(fast[1], slow[1], orjson.loads(value))
    else:
        assert fast[1] == slow[1]


def test_a_missing_time_is_now_and_an_integer_time_is_taken_as_milliseconds() -> None:
    missing = decode_prediction(b'{"model_id": "m", "features": {}, "prediction": 1}')
    given_ms = decode_prediction(b'{"model_id": "m", "features": {}, "prediction": 1, "ts": 1001}')
    text = decode_prediction(
        b'{"model_id": "m", "features": {}, "prediction": 1, "ts": "1970-01-01T00:00:01.0019Z"}'
    )
    assert times_ms([missing, given_ms, text], NOW_MS).tolist() == [NOW_MS, 1001, 1001]
