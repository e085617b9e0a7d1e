"""Turning raw Kafka messages into valid events, or dead letters that say why not."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from modelmon.events import DeadLetter, PredictionEvent
from modelmon.settings import Settings
from modelmon.spec import ModelSpec, Task, parse_duration

E = TypeVar("E", bound=BaseModel)

MAX_PAYLOAD_CHARS = 64_000
"""Dead letters keep at most this much of the original message, so one huge message cannot clog the topic."""


class MessageLike(Protocol):
    """A consumed Kafka message as faust, confluent-kafka wrappers and :class:`RawMessage` expose it."""

    @property
    def value(self) -> bytes | None: ...
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One consumed Kafka message, as the validators see it."""

    value: bytes | None
    topic: str
    partition: int
    offset: int
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class EventLimits:
    """What one input message may be at most, and how far its event time may be from the worker's clock.

    Beyond these an event goes to dead-letter (``too_large``, ``ts_out_of_range``) instead of making
    partials the broker refuses, or moving watermarks by decades. Defaults are the settings' defaults.
    """

    max_message_bytes: int = 1_000_000
    max_features: int = 1000
    max_string_chars: int = 4096
    max_event_age_ms: int = 7 * 86_400_000
    max_future_skew_ms: int = 15 * 60_000

    @classmethod
    def from_settings(cls, settings: Settings) -> EventLimits:
        return cls(
            max_message_bytes=settings.max_message_bytes,
            max_features=settings.max_features,
            max_string_chars=settings.max_string_chars,
            max_event_age_ms=settings.max_event_age_ms,
            max_future_skew_ms=settings.max_future_skew_ms,
        )

    def max_age_ms(self, spec: ModelSpec | None) -> int:
        """The model's ``max_event_age`` if its spec sets one (backfill), else the worker's."""
        if spec is not None and spec.max_event_age is not None:
            return int(parse_duration(spec.max_event_age).total_seconds() * 1000)
        return self.max_event_age_ms


NO_LIMITS = EventLimits(
    max_message_bytes=2**62, max_features=2**62, max_string_chars=2**62,
    max_event_age_ms=2**62, max_future_skew_ms=2**62,
)  # fmt: skip
"""For tools that parse events outside the worker (tests, benchmarks, the CLI's checks)."""


class InvalidEvent(Exception):
    """An event that breaks the contract or its model spec; ``error_type`` is machine-readable."""

    def __init__(self, error_type: str, reason: str) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.reason = reason


def _summarise(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        location = ".".join(str(p) for p in item["loc"]) or "(event)"
        parts.append(f"{location}: {item['msg']}")
    more = error.error_count() - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _longest_string(data: dict[str, Any]) -> int:
    """The longest text among an event's values, feature and tag names and values, and class scores."""
    longest = 0
    for name, value in data.items():
        if isinstance(value, str):
            longest = max(longest, len(value))
        elif isinstance(value, dict) and name in ("features", "tags", "scores"):
            for key, item in value.items():
                longest = max(longest, len(key), len(item) if isinstance(item, str) else 0)
    return longest


def check_size(data: dict[str, Any], limits: EventLimits) -> None:
    """Raise ``too_large`` for more features or longer strings than the limits allow."""
    features = data.get("features")
    if isinstance(features, dict) and len(features) > limits.max_features:
        raise InvalidEvent(
            "too_large", f"{len(features)} features; at most {limits.max_features} (MODELMON_MAX_FEATURES)"
        )
    longest = _longest_string(data)
    if longest > limits.max_string_chars:
        raise InvalidEvent(
            "too_large",
            f"a string of {longest} characters; at most {limits.max_string_chars} "
            "(MODELMON_MAX_STRING_CHARS)",
        )


def _utc_text(ms: int) -> str:
    try:
        return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).isoformat()
    except OverflowError:
        return f"{ms} ms since the epoch"


def check_event_time(ts_ms: int, now_ms: int, limits: EventLimits, spec: ModelSpec | None = None) -> None:
    """Raise ``ts_out_of_range`` for an event time too far behind or ahead of the worker's clock.

    >>> check_event_time(0, 10 * 86_400_000, EventLimits())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streams.validation.InvalidEvent: ts 1970-01-01T00:00:00+00:00 is 240.0 h older than the worker's clock...
    """
    max_age = limits.max_age_ms(spec)
    if ts_ms < now_ms - max_age:
        where = (
            "the model's max_event_age"
            if spec is not None and spec.max_event_age
            else "MODELMON_MAX_EVENT_AGE"
        )
        raise InvalidEvent(
            "ts_out_of_range",
            f"ts {_utc_text(ts_ms)} is {(now_ms - ts_ms) / 3_600_000:.1f} h older than the worker's clock "
            f"(at most {max_age / 3_600_000:g} h: {where}; to backfill history see "
            "docs/operations.md#backfill)",
        )
    if ts_ms > now_ms + limits.max_future_skew_ms:
        raise InvalidEvent(
            "ts_out_of_range",
            f"ts {_utc_text(ts_ms)} is {(ts_ms - now_ms) / 3_600_000:.2f} h ahead of the worker's clock "
            f"(at most {limits.max_future_skew_ms / 60_000:g} min: MODELMON_MAX_FUTURE_SKEW)",
        )


def parse_event(value: bytes | None, model: type[E], limits: EventLimits = NO_LIMITS) -> E:
    """Decode one JSON message into ``model`` or raise :class:`InvalidEvent`.

    >>> from modelmon.events import GroundTruthEvent
    >>> parse_event(b'{"prediction_id": "p1", "model_id": "m", "label": 1, "ts": 0}', GroundTruthEvent).label
    1
    >>> parse_event(b'{nope', GroundTruthEvent)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streams.validation.InvalidEvent: not valid JSON: unexpected character...
    """
    if value is None:
        raise InvalidEvent("empty_message", "message has no value (tombstone)")
    if len(value) > limits.max_message_bytes:
        raise InvalidEvent(
            "too_large",
            f"message of {len(value)} bytes; at most {limits.max_message_bytes} (MODELMON_MAX_MESSAGE_BYTES)",
        )
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as error:
        raise InvalidEvent("invalid_json", f"not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise InvalidEvent("not_an_object", f"expected a JSON object, got {type(data).__name__}")
    check_size(data, limits)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        missing_model = any(e["loc"] == ("model_id",) for e in error.errors())
        error_type = "missing_model_id" if missing_model else "contract_violation"
        raise InvalidEvent(error_type, _summarise(error)) from None


def check_against_spec(event: PredictionEvent, specs: dict[str, ModelSpec]) -> ModelSpec:
    """Check what makes an event unusable for its model; softer problems are fidelity metrics.

    Unknown model, missing required features and a prediction of the wrong kind for the task are
    errors. Wrong types, out-of-range values and unseen categories of single features are not: the
    event is kept and those are counted by the fidelity checks.
    """
    spec = specs.get(event.model_id)
    if spec is None:
        known = ", ".join(sorted(specs)) or "none"
        raise InvalidEvent("unknown_model", f"model_id {event.model_id!r} has no model spec (known: {known})")
    missing = [name for name in spec.required_features() if event.features.get(name) is None]
    if missing:
        raise InvalidEvent("missing_required_feature", f"required feature(s) missing or null: {missing}")
    if spec.task is Task.REGRESSION and isinstance(event.prediction, str):
        raise InvalidEvent("prediction_type", "a regression model's prediction must be a number")
    return spec


def processing_error(error: BaseException) -> InvalidEvent:
    """The dead-letter reason of an event whose processing raised unexpectedly (a bug, or a value no
    check foresaw): the event is set aside with the exception text and the worker goes on."""
    text = f"{type(error).__name__}: {error}".splitlines()[0][:500] if str(error) else type(error).__name__
    return InvalidEvent("processing_error", f"processing this event raised {text}")


def dead_letter(message: MessageLike, error: InvalidEvent) -> DeadLetter:
    """Build the dead letter for a message that failed validation."""
    payload = (message.value or b"").decode("utf-8", errors="replace")
    return DeadLetter(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key.decode("utf-8", errors="replace") if message.key is not None else None,
        payload=payload[:MAX_PAYLOAD_CHARS],
        reason=error.reason,
        error_type=error.error_type,
    )


def validate_predictions(
    messages: list[RawMessage], specs: dict[str, ModelSpec]
) -> tuple[list[tuple[RawMessage, PredictionEvent]], list[DeadLetter]]:
    """Split a batch into valid prediction events (with their message) and dead letters."""
    valid: list[tuple[RawMessage, PredictionEvent]] = []
    dead: list[DeadLetter] = []
    for message in messages:
        try:
            event = parse_event(message.value, PredictionEvent)
            check_against_spec(event, specs)
        except InvalidEvent as error:
            dead.append(dead_letter(message, error))
        else:
            valid.append((message, event))
    return valid, dead
