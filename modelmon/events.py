"""The contract: pydantic models of every message modelmon reads from or writes to Kafka."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator
from pydantic.functional_validators import BeforeValidator

FeatureValue = float | int | str | bool | None
"""A feature value: number, string, boolean or null (missing)."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def parse_timestamp(value: Any) -> datetime:
    """Turn an ISO-8601 string, epoch milliseconds or a datetime into an aware UTC datetime.

    A naive datetime or ISO string without an offset is taken as UTC.

    >>> parse_timestamp(1700000000000).isoformat()
    '2023-11-14T22:13:20+00:00'
    >>> parse_timestamp("2024-05-01T12:00:00+02:00").isoformat()
    '2024-05-01T10:00:00+00:00'
    >>> parse_timestamp("2024-05-01T12:00:00").isoformat()
    '2024-05-01T12:00:00+00:00'
    """
    try:
        if isinstance(value, datetime):
            parsed = value
        elif isinstance(value, bool):
            raise ValueError("a timestamp is ISO-8601 text or epoch milliseconds, not a boolean")
        elif isinstance(value, int):
            parsed = _EPOCH + timedelta(milliseconds=value)  # exact: no float on the way
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError("epoch milliseconds must be finite")
            parsed = datetime.fromtimestamp(value / 1000.0, tz=UTC)
        elif isinstance(value, str):
            text = value.strip()
            if text.lstrip("-").isdigit():
                parsed = _EPOCH + timedelta(milliseconds=int(text))
            else:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        else:
            kind = type(value).__name__
            raise ValueError(f"a timestamp is ISO-8601 text or epoch milliseconds, got {kind}")
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (OverflowError, OSError) as error:
        # Out-of-range epochs and dates raise these, which pydantic does not turn into a
        # ValidationError: one bad message would crash the worker instead of being dead-lettered.
        raise ValueError(f"timestamp {value!r} is out of the supported range (years 1-9999)") from error


def epoch_ms(moment: datetime) -> int:
    """Exact integer milliseconds since the epoch (float ``timestamp() * 1000`` can be 1 ms short).

    >>> epoch_ms(parse_timestamp(1001))
    1001
    """
    return (moment - _EPOCH) // timedelta(milliseconds=1)


Timestamp = Annotated[
    datetime,
    BeforeValidator(parse_timestamp),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "integer", "description": "epoch milliseconds"},
            ]
        }
    ),
    Field(description="Event time: ISO-8601 text or epoch milliseconds; stored as UTC. Default: now."),
]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, populate_by_name=True)


class PredictionEvent(_Event):
    """One prediction made by a model, logged by the model server."""

    prediction_id: str = Field(
        default_factory=lambda: str(uuid.uuid4()),
        min_length=1,
        description="Unique id (default: a new UUID4); the ground truth refers to it. Also the Kafka key.",
    )
    model_id: str = Field(min_length=1, description="Id of the model, as in its model spec.")
    model_version: str = Field(default="1", min_length=1, description="Version of the model.")
    ts: Timestamp = Field(default_factory=_now)
    features: dict[str, FeatureValue] = Field(description="Model inputs by feature name; null = missing.")
    prediction: float | int | str = Field(description="The model output: class label or number.")
    score: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Probability of the positive class (binary models)."
    )
    scores: dict[str, float] | None = Field(
        default=None, description="Probability per class (multiclass models)."
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="Free-form tags; those named in the model spec are segments."
    )

    @field_validator("prediction")
    @classmethod
    def _finite_prediction(cls, value: float | int | str) -> float | int | str:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("prediction must be a finite number or a string")
        return value

    @field_validator("scores")
    @classmethod
    def _probabilities(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None:
            bad = {k: v for k, v in value.items() if not 0.0 <= v <= 1.0}
            if bad:
                raise ValueError(f"scores must be probabilities in [0, 1]; out of range: {bad}")
        return value


class GroundTruthEvent(_Event):
    """The true outcome for an earlier prediction; may arrive hours later, or before it."""

    prediction_id: str = Field(min_length=1, description="Id of the prediction this label belongs to.")
    model_id: str = Field(min_length=1)
    label: float | int | str = Field(description="The true class or value.")
    ts: Timestamp = Field(default_factory=_now)

    @field_validator("label")
    @classmethod
    def _finite_label(cls, value: float | int | str) -> float | int | str:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("label must be a finite number or a string")
        return value


class MetricPoint(_Event):
    """One statistic of one model over one event-time window.

    Stored in long format. ``source`` and ``revision`` make writes idempotent: the row for a given
    (model, version, segment, metric, feature, window, source) is replaced by one of a higher
    revision, so a replayed emission never double counts.
    """

    model_id: str
    model_version: str = "1"
    segment: str = Field(default="", description="Segment as 'tag=value', or '' for the whole model.")
    metric: str = Field(min_length=1, description="Metric name, e.g. 'events', 'psi', 'accuracy'.")
    feature: str = Field(default="", description="Feature the metric is about, or '' for model-level.")
    window_start: Timestamp
    window_end: Timestamp
    value: float
    source: str = Field(
        default="", description="Emitter of this point (e.g. the input partition); part of the dedup key."
    )
    revision: int = Field(default=0, ge=0, description="Higher revision replaces lower for the same key.")
    details: dict[str, Any] = Field(default_factory=dict, description="Extra context (thresholds, counts).")
    emitted_at: Timestamp = Field(default_factory=_now)

    def dedup_key(self) -> str:
        """The key under which a replayed point replaces its earlier copy."""
        return "|".join(
            (
                self.model_id,
                self.model_version,
                self.segment,
                self.metric,
                self.feature,
                self.window_start.isoformat(),
                self.source,
            )
        )


class AlertState(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Alert(_Event):
    """A transition of an alert rule for one model (pending → firing → resolved)."""

    alert_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    dedup_key: str = Field(description="model|rule|feature|segment: one open alert per key.")
    model_id: str
    model_version: str = "1"
    rule: str
    state: AlertState
    severity: Severity = Severity.WARNING
    metric: str
    feature: str = ""
    segment: str = ""
    value: float
    threshold: float
    window_start: Timestamp = Field(description="Start of the window that caused this transition.")
    window_end: Timestamp
    message: str = ""
    ts: Timestamp = Field(
        default_factory=_now,
        description="Time of the transition. The rule engine uses event time (window_end), so a replay "
        "of the same metric points gives the same row.",
    )
    details: dict[str, Any] = Field(
        default_factory=dict,
        description="Rule context: op, for, fire/resolve thresholds, the windows and values it was decided "
        "on, notify (whether webhooks get it), group_key (transitions notified together).",
    )


class RetrainRequested(_Event):
    """A request to retrain a model, with the evidence that led to it."""

    request_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    idempotency_key: str = Field(description="Same key = same request; consumers must act on it once.")
    model_id: str
    model_version: str = "1"
    reason: str
    evidence: list[dict[str, Any]] = Field(
        default_factory=list, description="Metric values, windows, thresholds and alert ids behind it."
    )
    alert_ids: list[str] = Field(default_factory=list)
    requested_at: Timestamp = Field(default_factory=_now)


class DeadLetter(_Event):
    """A message that could not be processed, with the reason; nothing is silently dropped."""

    topic: str = Field(description="Topic the original message came from.")
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    payload: str = Field(description="The original bytes as text (UTF-8, invalid bytes replaced).")
    reason: str = Field(description="Human-readable reason, e.g. the validation error.")
    error_type: str = Field(description="Machine-readable class, e.g. 'invalid_json', 'unknown_model'.")
    ts: Timestamp = Field(default_factory=_now)

    def dedup_key(self) -> str:
        return f"{self.topic}|{self.partition}|{self.offset}|{self.error_type}"


EVENT_TYPES: dict[str, type[BaseModel]] = {
    cls.__name__: cls
    for cls in (PredictionEvent, GroundTruthEvent, MetricPoint, Alert, RetrainRequested, DeadLetter)
}

EventName = Literal[
    "PredictionEvent", "GroundTruthEvent", "MetricPoint", "Alert", "RetrainRequested", "DeadLetter"
]


def model_to_json(event: BaseModel) -> bytes:
    """Serialise an event to compact UTF-8 JSON (timestamps as ISO-8601 UTC)."""
    return event.model_dump_json(exclude_none=False).encode()
