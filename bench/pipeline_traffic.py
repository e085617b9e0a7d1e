"""The bench model (20 features, binary) and its traffic: spec, pre-generated rows, the SDK loop."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

N_NUMERICAL = 16
N_CATEGORICAL = 4
CATEGORY_COUNTS = (3, 5, 12, 40)
POOL_SIZE = 4096
THROUGHPUT_MODEL = "bench-20f"
LATENCY_MODEL = "bench-20f-latency"
WARMUP_MODEL = "bench-20f-warmup"
WARMUP_EVENTS = 300
WINDOW_MS = 60_000  # the worker's default window (MODELMON_WINDOW_SECONDS=60)


def feature_names() -> tuple[list[str], list[str]]:
    return [f"num_{i:02d}" for i in range(N_NUMERICAL)], [f"cat_{i}" for i in range(N_CATEGORICAL)]


def write_spec(directory: Path, model_id: str) -> None:
    """A binary model with 16 numerical and 4 categorical features, no segments.

    No ``reference`` section: the default applies (``first_n``, 5,000 events), so as in production the
    worker builds a reference from the first events and computes drift for the windows after it.
    """
    numerical, categorical = feature_names()
    features: dict[str, Any] = {name: {"type": "numerical"} for name in numerical}
    features["num_00"] = {"type": "numerical", "min": 0, "required": True}
    for name, n in zip(categorical, CATEGORY_COUNTS, strict=True):
        features[name] = {"type": "categorical", "allowed": [f"{name}_v{j}" for j in range(n)]}
    spec = {"model_id": model_id, "task": "binary", "positive_class": "1", "features": features}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{model_id}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


@dataclass(frozen=True)
class Traffic:
    """A pool of pre-generated feature rows, predictions and scores, cycled through by index.

    Generated up front so that the SDK figure measures the SDK, not the random number generator.
    """

    features: list[dict[str, Any]]
    predictions: list[int]
    scores: list[float]
    labels: list[int]
    label_fraction: float

    @classmethod
    def generate(cls, seed: int, label_fraction: float, size: int = POOL_SIZE) -> Traffic:
        rng = np.random.default_rng(seed)
        numerical, categorical = feature_names()
        values = np.round(rng.lognormal(0.0, 1.0, (size, N_NUMERICAL)), 4)
        choices = [rng.integers(0, n, size) for n in CATEGORY_COUNTS]
        rows = []
        for i in range(size):
            row: dict[str, Any] = {name: float(values[i, j]) for j, name in enumerate(numerical)}
            for name, picked in zip(categorical, choices, strict=True):
                row[name] = f"{name}_v{int(picked[i])}"
            rows.append(row)
        scores = np.round(rng.random(size), 6)
        labels = (rng.random(size) < scores).astype(int)
        return cls(rows, [int(s >= 0.5) for s in scores], scores.tolist(), labels.tolist(), label_fraction)

    def labelled(self, i: int) -> bool:
        """Deterministically spread: event i gets a label iff i is in the first fraction of its 1000."""
        return (i * 7919) % 1000 < self.label_fraction * 1000


def log_event(client: Any, traffic: Traffic, model_id: str, i: int, ts: int | None = None) -> int:
    """Log prediction ``i`` (and its label, if it gets one); returns the number of messages sent."""
    k = i % POOL_SIZE
    pid = client.log_prediction(
        model_id, traffic.features[k], traffic.predictions[k], score=traffic.scores[k], ts=ts
    )
    if traffic.labelled(i):
        client.log_ground_truth(model_id, pid, traffic.labels[k], ts=ts)
        return 2
    return 1


def produce(client: Any, traffic: Traffic, model_id: str, n: int) -> tuple[int, float]:
    """Log ``n`` events as fast as the SDK goes and flush; returns (messages, seconds)."""
    messages = 0
    started = time.perf_counter()
    for i in range(n):
        messages += log_event(client, traffic, model_id, i)
    if client.flush(120):
        raise RuntimeError("SDK: messages still undelivered after 120 s")
    return messages, time.perf_counter() - started
