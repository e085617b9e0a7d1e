"""Data for bench/bench_estimation.py: a known, perfectly calibrated logistic model, and its windows.

The model: features ``x ~ N(mu, sigma^2 I)`` in ``DIM`` dimensions, ``P(y = 1 | x) = sigmoid(w . x + b)``,
and the classifier's score IS that probability, so it is perfectly calibrated wherever ``x`` comes
from, as long as ``w`` and ``b`` stay (no concept drift). Predictions are ``score >= 0.5``.

* reference: ``x ~ N(0, I)``, labels drawn from the model;
* ``covariate``: windows whose ``x`` distribution moves (mean along or across ``w``, spread),
  labels still from the same model: a calibrated estimator should follow the realized metrics;
* ``concept``: ``x ~ N(0, I)`` throughout but the labels come from a model turning away from ``w``
  (``P(y | x)`` changes): the scores stay calibrated to the old concept, so every
  confidence-based estimator must miss the drop.

Files (one directory per seed and size): ``reference_scores.npy``, ``reference_labels.npy``,
``{scenario}_scores.npy`` and ``{scenario}_labels.npy`` (the labels are read only for the
realized values, never by an estimator), ``meta.json`` (last: its presence marks a complete set).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
DIM = 5
W = np.array([1.5, -1.0, 0.8, 0.5, -0.6])
B = 0.2
ACROSS = np.array([1.0, 1.5, 0.0, 0.0, 0.0])  # orthogonal to W: moves x, not the score


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def covariate_windows(count: int) -> list[dict]:
    """Per window: mean shift along W (in score units) and across it, and the spread of x."""
    plans = [{"along": 0.0, "across": 0.0, "sigma": 1.0}] * min(count, 4)
    shifts = [
        {"along": 0.0, "across": 1.0, "sigma": 1.0},
        {"along": 0.5, "across": 0.0, "sigma": 1.0},
        {"along": 1.0, "across": 0.0, "sigma": 1.0},
        {"along": -1.0, "across": 0.0, "sigma": 1.0},
        {"along": 0.0, "across": 0.0, "sigma": 0.7},
        {"along": 0.0, "across": 0.0, "sigma": 0.5},
        {"along": 0.0, "across": 0.0, "sigma": 0.35},
        {"along": 0.0, "across": 0.0, "sigma": 1.5},
        {"along": 0.4, "across": 1.0, "sigma": 0.6},
        {"along": -0.3, "across": -1.0, "sigma": 0.45},
        {"along": 2.0, "across": 0.0, "sigma": 1.0},
        {"along": -0.1, "across": 0.5, "sigma": 0.3},
    ]
    while len(plans) < count:
        plans.append(shifts[(len(plans) - 4) % len(shifts)])
    return plans[:count]


def concept_windows(count: int) -> list[dict]:
    """Per window: how far the labelling model has turned from W (0 = not at all, 1 = fully)."""
    return [{"turn": float(t)} for t in np.linspace(0.0, 1.0, count)]


def _features(rng: np.random.Generator, rows: int, along: float, across: float, sigma: float) -> np.ndarray:
    unit_w = W / np.linalg.norm(W)
    unit_across = ACROSS / np.linalg.norm(ACROSS)
    mean = along / np.linalg.norm(W) * unit_w + across * unit_across
    return mean + sigma * rng.standard_normal((rows, DIM))


def generate(out_dir: Path, *, seed: int, reference_rows: int, chunk_rows: int, windows: int) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    x = _features(rng, reference_rows, 0.0, 0.0, 1.0)
    score = sigmoid(x @ W + B)
    np.save(out_dir / "reference_scores.npy", score)
    np.save(out_dir / "reference_labels.npy", (rng.uniform(size=score.size) < score).astype(np.int8))
    plans = {"covariate": covariate_windows(windows), "concept": concept_windows(max(windows // 2, 2))}
    turned = np.array([-1.5, -1.0, 0.8, -0.5, 0.6])  # the new concept: two weights flip sign
    for name, plan in plans.items():
        scores, labels = [], []
        for window in plan:
            if name == "covariate":
                x = _features(rng, chunk_rows, window["along"], window["across"], window["sigma"])
                truth = sigmoid(x @ W + B)
            else:
                x = _features(rng, chunk_rows, 0.0, 0.0, 1.0)
                t = window["turn"]
                truth = sigmoid(x @ ((1 - t) * W + t * turned) + B)
            scores.append(sigmoid(x @ W + B))
            labels.append((rng.uniform(size=chunk_rows) < truth).astype(np.int8))
        np.save(out_dir / f"{name}_scores.npy", np.concatenate(scores))
        np.save(out_dir / f"{name}_labels.npy", np.concatenate(labels))
    meta = {
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "reference_rows": reference_rows,
        "chunk_rows": chunk_rows,
        "scenarios": list(plans),
        "windows": plans,
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def ensure(root: Path, *, seed: int, reference_rows: int, chunk_rows: int, windows: int) -> Path:
    out_dir = root / f"estimation-v{FORMAT_VERSION}-s{seed}-ref{reference_rows}-chunk{chunk_rows}-w{windows}"
    if not (out_dir / "meta.json").exists():
        generate(out_dir, seed=seed, reference_rows=reference_rows, chunk_rows=chunk_rows, windows=windows)
    return out_dir


def realized_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean((scores >= 0.5) == (labels == 1)))


def realized_roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Exact ROC AUC on the raw scores (Mann-Whitney U, ties averaged)."""
    from scipy.stats import rankdata

    positive = labels == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
