"""Seeded synthetic traffic for a model spec: predictions, labels and malformed messages."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from modelmon.spec import FeatureType, ModelSpec, Task


@dataclass(frozen=True)
class SyntheticPrediction:
    """One generated prediction and its true label."""

    model_id: str
    features: dict[str, Any]
    prediction: float | int | str
    score: float | None
    label: float | int | str
    tags: dict[str, str]


def _numeric_params(low: float | None, high: float | None) -> tuple[float, float]:
    if low is not None and high is not None:
        return (low + high) / 2.0, max((high - low) / 8.0, 1e-6)
    if low is not None:
        return low + 10.0, 5.0
    if high is not None:
        return high - 10.0, 5.0
    return 0.0, 1.0


class SyntheticModel:
    """Generates plausible traffic for one model spec, reproducibly for a seed.

    ``shift`` moves numerical features by that many standard deviations (covariate drift).

    >>> from modelmon.spec import parse_spec
    >>> spec = parse_spec({"model_id": "m", "task": "binary", "features": {"x": {"type": "numerical"}}})
    >>> [p.prediction for p in SyntheticModel(spec, seed=1).predictions(5)]
    [1, 0, 1, 1, 1]
    """

    def __init__(self, spec: ModelSpec, seed: int = 0) -> None:
        self.spec = spec
        self.rng = np.random.default_rng(seed)
        self.shift = 0.0
        self.weights = {
            name: float(w)
            for name, w in zip(spec.features, self.rng.normal(0, 1, len(spec.features)), strict=True)
        }

    def _features(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, feature in self.spec.features.items():
            if feature.type is FeatureType.NUMERICAL:
                mean, std = _numeric_params(feature.min, feature.max)
                value = float(self.rng.normal(mean + self.shift * std, std))
                if feature.min is not None:
                    value = max(value, feature.min)
                if feature.max is not None:
                    value = min(value, feature.max)
                values[name] = round(value, 4)
            elif feature.type is FeatureType.CATEGORICAL:
                choices = feature.allowed or ["a", "b", "c"]
                values[name] = str(choices[int(self.rng.integers(len(choices)))])
            else:
                values[name] = bool(self.rng.random() < 0.3)
        return values

    def _signal(self, features: dict[str, Any]) -> float:
        total = 0.0
        for name, feature in self.spec.features.items():
            value = features[name]
            if feature.type is FeatureType.NUMERICAL:
                mean, std = _numeric_params(feature.min, feature.max)
                total += self.weights[name] * (value - mean) / std
            elif feature.type is FeatureType.BOOLEAN:
                total += self.weights[name] * (1.0 if value else 0.0)
        return total / math.sqrt(len(self.spec.features))

    def prediction(self) -> SyntheticPrediction:
        features = self._features()
        signal = self._signal(features)
        tags = {segment: f"{segment}-{int(self.rng.integers(3))}" for segment in self.spec.segments}
        for segment in self.spec.segments:
            if segment in features and isinstance(features[segment], str):
                tags[segment] = features[segment]
        if self.spec.task is Task.REGRESSION:
            truth = 100_000.0 + 40_000.0 * signal
            predicted = truth + float(self.rng.normal(0, 10_000.0))
            return SyntheticPrediction(
                self.spec.model_id, features, round(predicted, 2), None, round(truth, 2), tags
            )
        score = 1.0 / (1.0 + math.exp(-3.0 * signal))
        label: int | str = int(self.rng.random() < score)
        if self.spec.task is Task.MULTICLASS:
            classes = self.spec.classes or ["a", "b", "c"]
            index = min(int(score * len(classes)), len(classes) - 1)
            return SyntheticPrediction(
                self.spec.model_id, features, classes[index], None, classes[index], tags
            )
        return SyntheticPrediction(
            self.spec.model_id, features, int(score >= 0.5), round(score, 6), label, tags
        )

    def predictions(self, n: int) -> Iterator[SyntheticPrediction]:
        for _ in range(n):
            yield self.prediction()


MALFORMED_KINDS = ("invalid_json", "missing_model_id", "unknown_model", "wrong_types", "not_an_object")


def malformed_messages(n: int, model_id: str, now: datetime, seed: int = 0) -> list[tuple[str, bytes]]:
    """``n`` bad messages cycling through :data:`MALFORMED_KINDS`, as (kind, bytes)."""
    rng = np.random.default_rng(seed)
    ts = now.isoformat()
    out = []
    for i in range(n):
        kind = MALFORMED_KINDS[i % len(MALFORMED_KINDS)]
        token = int(rng.integers(1_000_000))
        if kind == "invalid_json":
            body = b'{"model_id": "' + model_id.encode() + b'", "features": {'
        elif kind == "missing_model_id":
            fields = f'"prediction_id": "bad-{token}", "ts": "{ts}", "features": {{}}, "prediction": 1'
            body = f"{{{fields}}}".encode()
        elif kind == "unknown_model":
            unknown = f"no-such-model-{token % 7}"
            fields = f'"model_id": "{unknown}", "ts": "{ts}", "features": {{"x": 1}}, "prediction": 1'
            body = f"{{{fields}}}".encode()
        elif kind == "wrong_types":
            body = (
                f'{{"model_id": "{model_id}", "ts": "{ts}", "features": "oops", "prediction": [1]}}'.encode()
            )
        else:
            body = b"[1, 2, 3]"
        out.append((kind, body))
    return out
