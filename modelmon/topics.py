"""Kafka topic names, with the configurable prefix."""

from __future__ import annotations

from dataclasses import dataclass

PREDICTIONS = "predictions"
GROUND_TRUTH = "ground-truth"
MONITOR_METRICS = "monitor-metrics"
ALERTS = "alerts"
RETRAIN_REQUESTS = "retrain-requests"
DEAD_LETTER = "dead-letter"
REFERENCE_PROFILES = "reference-profiles"

BASE_NAMES = (
    PREDICTIONS,
    GROUND_TRUTH,
    MONITOR_METRICS,
    ALERTS,
    RETRAIN_REQUESTS,
    DEAD_LETTER,
    REFERENCE_PROFILES,
)
COMPACTED = (REFERENCE_PROFILES,)
"""Topics that keep the latest message per key (``cleanup.policy=compact``)."""


@dataclass(frozen=True)
class Topics:
    """The topic names of one deployment.

    >>> Topics("acme.").predictions
    'acme.predictions'
    >>> Topics().dead_letter
    'dead-letter'
    """

    prefix: str = ""

    def name(self, base: str) -> str:
        if base not in BASE_NAMES:
            raise ValueError(f"unknown topic {base!r}; valid: {', '.join(BASE_NAMES)}")
        return f"{self.prefix}{base}"

    @property
    def predictions(self) -> str:
        return self.name(PREDICTIONS)

    @property
    def ground_truth(self) -> str:
        return self.name(GROUND_TRUTH)

    @property
    def monitor_metrics(self) -> str:
        return self.name(MONITOR_METRICS)

    @property
    def alerts(self) -> str:
        return self.name(ALERTS)

    @property
    def retrain_requests(self) -> str:
        return self.name(RETRAIN_REQUESTS)

    @property
    def dead_letter(self) -> str:
        return self.name(DEAD_LETTER)

    @property
    def reference_profiles(self) -> str:
        return self.name(REFERENCE_PROFILES)

    def all(self) -> list[str]:
        return [self.name(base) for base in BASE_NAMES]

    def compacted(self) -> list[str]:
        return [self.name(base) for base in COMPACTED]
