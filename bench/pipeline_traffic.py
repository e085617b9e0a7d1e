"""The bench model (20 features, binary), its reference file and its traffic through the SDK."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

N_NUMERICAL = 16
N_CATEGORICAL = 4
CATEGORY_COUNTS = (3, 5, 12, 40)
POOL_SIZE = 4096
REFERENCE_ROWS = 20_000
REFERENCE_FILE = "reference.csv"


def feature_names() -> tuple[list[str], list[str]]:
    return [f"num_{i:02d}" for i in range(N_NUMERICAL)], [f"cat_{i}" for i in range(N_CATEGORICAL)]


def write_spec(directory: Path, model_id: str) -> Path:
    """A binary model with 16 numerical and 4 categorical features whose reference is a file.

    The reference is ``reference.csv`` beside the spec (:func:`write_reference_csv`); the bench
    publishes its profile before a worker starts, as ``modelmon reference load`` does, so drift is
    computed at every window close from the first window on.
    """
    numerical, categorical = feature_names()
    features: dict[str, Any] = {name: {"type": "numerical"} for name in numerical}
    features["num_00"] = {"type": "numerical", "min": 0, "required": True}
    for name, n in zip(categorical, CATEGORY_COUNTS, strict=True):
        features[name] = {"type": "categorical", "allowed": [f"{name}_v{j}" for j in range(n)]}
    spec = {
        "model_id": model_id,
        "task": "binary",
        "positive_class": "1",
        "features": features,
        "reference": {"source": "file", "path": str(directory / REFERENCE_FILE)},
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{model_id}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@dataclass(frozen=True)
class Traffic:
    """A pool of pre-generated feature rows, predictions, scores and labels, cycled through by index.

    Generated up front so that the SDK figures measure the SDK, not the random number generator.
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

    def labels_in(self, first: int, n: int) -> int:
        return sum(1 for i in range(first, first + n) if self.labelled(i))


def write_reference_csv(directory: Path, seed: int) -> Path:
    """The model's reference data: rows drawn like the traffic (another seed), with the score."""
    traffic = Traffic.generate(seed + 1000, 0.0, REFERENCE_ROWS)
    numerical, categorical = feature_names()
    path = directory / REFERENCE_FILE
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*numerical, *categorical, "score"])
        for row, score in zip(traffic.features, traffic.scores, strict=True):
            writer.writerow([*(row[name] for name in numerical), *(row[name] for name in categorical), score])
    return path


def publish_reference_file(settings: Any, spec_path: Path) -> int:
    """What ``modelmon reference load`` does: profile the spec's reference file and publish it."""
    from detectors.profiles.files import load_reference_file
    from modelmon.spec import load_specs
    from streams.references import publish_reference

    (spec,) = load_specs(spec_path).values()
    assert spec.reference.path is not None
    loaded = load_reference_file(spec.reference.path, spec)
    return publish_reference(settings, spec.model_id, "1", loaded.profile, loaded.source)


Progress = Callable[[int, int], None]


def fill_backlog(
    client: Any,
    traffic: Traffic,
    model_id: str,
    first: int,
    n: int,
    start_ms: int,
    span_ms: int,
    progress: Progress | None = None,
) -> tuple[int, float]:
    """Log predictions ``first`` .. ``first + n - 1`` and their labels, then flush.

    Event times spread evenly over ``[start_ms, start_ms + span_ms)``, a label with its prediction's
    time. Returns (labels logged, seconds including the flush).
    """
    features, predictions, scores, labels = (
        traffic.features,
        traffic.predictions,
        traffic.scores,
        traffic.labels,
    )
    log_prediction, log_ground_truth, labelled = (
        client.log_prediction,
        client.log_ground_truth,
        traffic.labelled,
    )
    n_labels = 0
    started = time.perf_counter()
    for i in range(first, first + n):
        k = i % POOL_SIZE
        ts = start_ms + (i - first) * span_ms // n
        pid = log_prediction(model_id, features[k], predictions[k], score=scores[k], ts=ts)
        if labelled(i):
            log_ground_truth(model_id, pid, labels[k], ts=ts)
            n_labels += 1
        if progress is not None and (i - first) % 100_000 == 99_999:
            progress(i - first + 1, n)
    if client.flush(300):
        raise RuntimeError("SDK: messages still undelivered 300 s after the backlog was logged")
    return n_labels, time.perf_counter() - started


def sdk_rate(client: Any, traffic: Traffic, model_id: str, n: int) -> float:
    """``log_prediction`` ``n`` times as fast as possible (event time: now) and flush; seconds."""
    features, predictions, scores = traffic.features, traffic.predictions, traffic.scores
    log_prediction = client.log_prediction
    started = time.perf_counter()
    for i in range(n):
        k = i % POOL_SIZE
        log_prediction(model_id, features[k], predictions[k], score=scores[k])
    if client.flush(120):
        raise RuntimeError("SDK: messages still undelivered 120 s after the rate run")
    return time.perf_counter() - started


def sdk_call_times(client: Any, traffic: Traffic, model_id: str, n: int) -> np.ndarray:
    """Nanoseconds of each of ``n`` ``log_prediction`` calls (``time.perf_counter_ns`` around each)."""
    features, predictions, scores = traffic.features, traffic.predictions, traffic.scores
    log_prediction, clock = client.log_prediction, time.perf_counter_ns
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        k = i % POOL_SIZE
        t = clock()
        log_prediction(model_id, features[k], predictions[k], score=scores[k])
        out[i] = clock() - t
    if client.flush(120):
        raise RuntimeError("SDK: messages still undelivered 120 s after the timed calls")
    return out
