"""Seeded synthetic traffic for a model spec: predictions, true labels, injected drift and malformed messages.

The generator stands for a model that was fitted well: its predictions come from a fixed linear
signal of the standardised numerical and boolean features, and while nothing is injected the true
labels follow the same signal (a binary classifier is right about 91 % of the time, a regressor's
error is noise of 8 000). Two knobs change the world the model sees:

- ``drift`` (feature → strength) is **covariate drift**: a numerical feature moves by that many
  standard deviations, a categorical one sends ``min(0.3 * strength, 0.9)`` of its values to its
  last allowed category. The relation between features and labels is unchanged.
- ``concept_degrees`` is **concept drift**: the true labels follow a signal rotated by that angle
  away from the model's (90° = unrelated to the model), so accuracy falls (about 0.66 at 60°) and
  a regressor's error grows, while the feature distributions stay the same.
- ``concept_segment`` (tag, value, degrees) turns the labels of one segment's predictions by
  ``degrees`` instead (the rest keep ``concept_degrees``): a drop concentrated in one segment.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from modelmon.kinds import FeatureKind
from modelmon.spec import ModelSpec, Task

SHARPNESS = 6.0
"""Binary scores are sigmoid(SHARPNESS * signal): calibrated, right about 91 % of the time."""
PRICE_BASE, PRICE_SCALE, PRICE_NOISE = 100_000.0, 40_000.0, 8_000.0
"""Regression: truth = BASE + SCALE * signal; prediction = BASE + SCALE * model signal + N(0, NOISE)."""
BOOLEAN_RATE = 0.3


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


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(x, 500.0), -500.0)))


class SyntheticModel:
    """Generates plausible traffic for one model spec, reproducibly for a seed.

    The model's weights depend on its ``model_id`` only, so generators with different seeds are
    samples of one model (a reference file and the live traffic, say).

    ``drift`` and ``concept_degrees`` may be changed between calls (see the module docstring).

    >>> from modelmon.spec import parse_spec
    >>> spec = parse_spec({"model_id": "m", "task": "binary",
    ...                    "features": {"x": {"type": "numerical"}, "y": {"type": "numerical"}}})
    >>> model = SyntheticModel(spec, seed=1)
    >>> def accuracy(n):
    ...     return round(sum(p.prediction == p.label for p in model.predictions(n)) / n, 2)
    >>> accuracy(4000)
    0.91
    >>> model.concept_degrees = 60
    >>> accuracy(4000)
    0.65
    >>> model.concept_degrees, model.drift = 0, {"x": 2.0}
    >>> round(sum(p.features["x"] for p in model.predictions(4000)) / 4000, 1), accuracy(4000)
    (2.0, 0.99)
    """

    def __init__(self, spec: ModelSpec, seed: int = 0) -> None:
        self.spec = spec
        self.rng = np.random.default_rng(seed)
        self.drift: dict[str, float] = {}
        self.concept_degrees = 0.0
        self.concept_segment: tuple[str, str, float] | None = None
        self._signal_features = [
            name
            for name, feature in spec.features.items()
            if feature.type in (FeatureKind.NUMERICAL, FeatureKind.BOOLEAN)
        ]
        # The model itself (its weights) depends on the model id only; the seed picks the traffic.
        shape = np.random.default_rng(zlib.crc32(spec.model_id.encode()))
        weights = shape.normal(0, 1, len(self._signal_features))
        self.weights = weights / (np.linalg.norm(weights) or 1.0)
        # The direction the true labels turn towards under concept drift: orthogonal to the model's.
        other = shape.normal(0, 1, len(self._signal_features))
        other -= other.dot(self.weights) * self.weights
        norm = np.linalg.norm(other)
        self.orthogonal = other / norm if norm > 1e-9 else np.zeros_like(other)
        self._independent = self.orthogonal.size == 0 or norm <= 1e-9

    def _features(self) -> tuple[dict[str, Any], np.ndarray]:
        """The features, and the standardised values of the signal features (before clipping)."""
        values: dict[str, Any] = {}
        standard: dict[str, float] = {}
        for name, feature in self.spec.features.items():
            strength = self.drift.get(name, 0.0)
            if feature.type is FeatureKind.NUMERICAL:
                mean, std = _numeric_params(feature.min, feature.max)
                z = float(self.rng.normal(strength, 1.0))
                value = mean + z * std
                if feature.min is not None:
                    value = max(value, feature.min)
                if feature.max is not None:
                    value = min(value, feature.max)
                values[name] = round(value, 4)
                standard[name] = z
            elif feature.type is FeatureKind.CATEGORICAL:
                choices = feature.allowed or ["a", "b", "c"]
                if strength > 0 and self.rng.random() < min(0.3 * strength, 0.9):
                    values[name] = str(choices[-1])
                else:
                    values[name] = str(choices[int(self.rng.integers(len(choices)))])
            else:
                rate = min(BOOLEAN_RATE + 0.2 * strength, 0.95)
                values[name] = bool(self.rng.random() < rate)
                spread = math.sqrt(BOOLEAN_RATE * (1 - BOOLEAN_RATE))
                standard[name] = ((1.0 if values[name] else 0.0) - BOOLEAN_RATE) / spread
        z_values = np.array([standard[name] for name in self._signal_features])
        return values, z_values

    def _signals(self, z: np.ndarray, degrees: float) -> tuple[float, float]:
        """(the model's signal, the signal the true labels follow)."""
        model = float(self.weights.dot(z)) if z.size else 0.0
        angle = math.radians(degrees)
        if angle == 0.0:
            return model, model
        side = float(self.rng.normal()) if self._independent else float(self.orthogonal.dot(z))
        return model, math.cos(angle) * model + math.sin(angle) * side

    def _tags(self, features: dict[str, Any]) -> dict[str, str]:
        tags = {segment: f"{segment}-{int(self.rng.integers(3))}" for segment in self.spec.segments}
        for segment in self.spec.segments:
            if segment in features and isinstance(features[segment], str):
                tags[segment] = features[segment]
        return tags

    def prediction(self) -> SyntheticPrediction:
        features, z = self._features()
        tags = self._tags(features)
        degrees = self.concept_degrees
        if self.concept_segment is not None and tags.get(self.concept_segment[0]) == self.concept_segment[1]:
            degrees = self.concept_segment[2]
        model, truth = self._signals(z, degrees)
        model_id = self.spec.model_id
        if self.spec.task is Task.REGRESSION:
            true_value = PRICE_BASE + PRICE_SCALE * truth
            predicted = PRICE_BASE + PRICE_SCALE * model + float(self.rng.normal(0, PRICE_NOISE))
            return SyntheticPrediction(
                model_id, features, round(predicted, 2), None, round(true_value, 2), tags
            )
        score = _sigmoid(SHARPNESS * model)
        label = int(self.rng.random() < _sigmoid(SHARPNESS * truth))
        if self.spec.task is Task.MULTICLASS:
            classes = self.spec.classes or ["a", "b", "c"]
            index = min(int(score * len(classes)), len(classes) - 1)
            true_index = min(int(_sigmoid(SHARPNESS * truth) * len(classes)), len(classes) - 1)
            return SyntheticPrediction(model_id, features, classes[index], None, classes[true_index], tags)
        return SyntheticPrediction(model_id, features, int(score >= 0.5), round(score, 6), label, tags)

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
