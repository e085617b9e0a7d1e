"""Turning raw Kafka messages into valid events, or dead letters that say why not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from modelmon.events import DeadLetter, PredictionEvent
from modelmon.spec import ModelSpec, Task

E = TypeVar("E", bound=BaseModel)

MAX_PAYLOAD_CHARS = 64_000
"""Dead letters keep at most this much of the original message, so one huge message cannot clog the topic."""


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One consumed Kafka message, as the validators see it."""

    value: bytes | None
    topic: str
    partition: int
    offset: int
    key: bytes | None = None


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


def parse_event(value: bytes | None, model: type[E]) -> E:
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
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as error:
        raise InvalidEvent("invalid_json", f"not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise InvalidEvent("not_an_object", f"expected a JSON object, got {type(data).__name__}")
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


def dead_letter(message: RawMessage, error: InvalidEvent) -> DeadLetter:
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
