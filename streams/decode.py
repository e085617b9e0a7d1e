"""Typed decoding of input messages on the data plane: msgspec in C, the contract's pydantic as the judge.

Each message is decoded with a msgspec ``Struct`` that mirrors the contract (``modelmon.events``):
types, ranges, required fields and unknown fields are checked in C while decoding, about as fast as
``orjson.loads`` alone and four times faster than pydantic (bench/README.md, "Decoding"). A message
the fast decoder refuses is handed to the contract's own validation (:func:`streams.validation.
parse_event`): it either passes there (a form the fast path does not take, e.g. a naive ISO time or
epoch milliseconds as text) or gets the contract's error message for its dead letter, so readers
see exactly the same reasons as before. ``tests/test_decode.py`` checks that both paths accept and
reject the same messages and agree on the values.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
import numpy as np
import numpy.typing as npt
from msgspec import UNSET, UnsetType

from modelmon.events import GroundTruthEvent, PredictionEvent, epoch_ms, parse_timestamp
from streams.validation import NO_LIMITS, EventLimits, InvalidEvent, parse_event

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]
# orjson (the contract's parser) reads integers outside int64/uint64 as floats: leave those to it.
Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Prediction(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A ``PredictionEvent`` as the data plane reads it (``ts`` still raw: see :func:`times_ms`)."""

    model_id: NonEmpty
    features: dict[str, float | Int | str | bool | None]
    prediction: float | Int | str
    # UNSET, not None: the contract refuses an explicit null where it has a default.
    prediction_id: NonEmpty | UnsetType = UNSET
    model_version: NonEmpty = "1"
    ts: AwareTime | int | UnsetType = UNSET
    score: Probability | None = None
    scores: dict[str, Probability] | None = None
    tags: dict[str, str] = {}


class Label(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A ``GroundTruthEvent`` as the data plane reads it."""

    prediction_id: NonEmpty
    model_id: NonEmpty
    label: float | Int | str
    ts: AwareTime | int | UnsetType = UNSET


_PREDICTIONS = msgspec.json.Decoder(Prediction)
_LABELS = msgspec.json.Decoder(Label)


def _from_contract(event: PredictionEvent | GroundTruthEvent) -> Prediction | Label:
    ts = epoch_ms(event.ts)
    if isinstance(event, PredictionEvent):
        return Prediction(
            model_id=event.model_id, features=dict(event.features), prediction=event.prediction,
            prediction_id=event.prediction_id, model_version=event.model_version, ts=ts,
            score=event.score, scores=event.scores, tags=dict(event.tags),
        )  # fmt: skip
    return Label(prediction_id=event.prediction_id, model_id=event.model_id, label=event.label, ts=ts)


def decode_prediction(value: bytes | None, limits: EventLimits = NO_LIMITS) -> Prediction:
    """One prediction message, or :class:`InvalidEvent` with the contract's reason."""
    return _decode(value, _PREDICTIONS, PredictionEvent, limits)  # type: ignore[return-value]


def decode_label(value: bytes | None, limits: EventLimits = NO_LIMITS) -> Label:
    """One ground-truth message, or :class:`InvalidEvent` with the contract's reason."""
    return _decode(value, _LABELS, GroundTruthEvent, limits)  # type: ignore[return-value]


def _decode(
    value: bytes | None, decoder: msgspec.json.Decoder[Any], model: type[Any], limits: EventLimits
) -> Prediction | Label:
    if value is not None and len(value) <= limits.max_message_bytes:
        try:
            event = decoder.decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass
        else:
            # A message shorter than the string limit cannot hold a longer string, nor one of fewer
            # bytes than 6 per feature ("a":1,) more features than the limit.
            short = len(value) <= min(limits.max_string_chars, 6 * limits.max_features)
            if _acceptable(event) and (short or _within(event, limits)):
                return event
    # The contract's own validation: a form the fast path does not take, or the reason it fails.
    return _from_contract(parse_event(value, model, limits))


# Epoch milliseconds the contract turns into the same millisecond (years 1 to 9999, well inside).
_MIN_TS_MS, _MAX_TS_MS = -62_000_000_000_000, 250_000_000_000_000


def _acceptable(event: Prediction | Label) -> bool:
    """What the contract checks beyond the types: a finite float prediction (or label), a time in range."""
    value = event.prediction if isinstance(event, Prediction) else event.label
    if isinstance(value, float) and not math.isfinite(value):
        return False
    ts = event.ts
    return type(ts) is not int or _MIN_TS_MS <= ts <= _MAX_TS_MS


def _within(event: Prediction | Label, limits: EventLimits) -> bool:
    if not isinstance(event, Prediction):
        longest = max(len(event.prediction_id), len(event.model_id), _text_len(event.label))
        return longest <= limits.max_string_chars
    features = event.features
    if len(features) > limits.max_features:
        return False
    cap = limits.max_string_chars
    if (
        len(event.model_id) > cap
        or len(event.model_version) > cap
        or (type(event.prediction_id) is str and len(event.prediction_id) > cap)
        or _text_len(event.prediction) > cap
    ):
        return False
    # Names and values in C: the longest key, and the longest of the string values.
    if features and max(map(len, features)) > cap:
        return False
    texts = [v for v in features.values() if type(v) is str]
    if texts and max(map(len, texts)) > cap:
        return False
    tags = event.tags
    if tags and (max(map(len, tags)) > cap or max(map(len, tags.values())) > cap):
        return False
    return not event.scores or max(map(len, event.scores)) <= cap


def _text_len(value: Any) -> int:
    return len(value) if isinstance(value, str) else 0


def times_ms(events: Sequence[Prediction | Label], now_ms: int) -> npt.NDArray[np.int64]:
    """Event times in exact epoch milliseconds (``ts`` missing: ``now_ms``, as the contract's default).

    Integer ``ts`` are already milliseconds; datetimes are floored to the millisecond, as
    :func:`modelmon.events.epoch_ms` does.
    """
    out = np.empty(len(events), dtype=np.int64)
    for i, event in enumerate(events):
        ts = event.ts
        if type(ts) is int:
            out[i] = ts
        elif ts is UNSET:
            out[i] = now_ms
        else:
            out[i] = _datetime_ms(ts)
    return out


def _datetime_ms(ts: Any) -> int:
    if isinstance(ts, datetime):
        return (ts - _EPOCH) // timedelta(milliseconds=1)
    return epoch_ms(parse_timestamp(ts))


def fill_prediction_ids(events: Sequence[Prediction]) -> None:
    """Give predictions without an id a new UUID4, as the contract's default does."""
    for event in events:
        if event.prediction_id is UNSET:
            event.prediction_id = str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class Decoded:
    """One message decoded: the event, or the reason it is invalid."""

    event: Prediction | Label | None
    error: InvalidEvent | None


def decode(value: bytes | None, *, label: bool, limits: EventLimits) -> Decoded:
    try:
        event = decode_label(value, limits) if label else decode_prediction(value, limits)
    except InvalidEvent as error:
        return Decoded(None, error)
    return Decoded(event, None)
