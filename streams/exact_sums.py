"""Exact, batch-independent sums a window bundle keeps beside detectors' aggregates: moments and log loss."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from detectors.exact import exact_total
from detectors.labels import canonical_labels
from detectors.score_histogram import PROBABILITY_EPS, binary_log_loss_terms

_FLOAT_MAX = sys.float_info.max


def with_exact_moments(data: dict[str, Any], total: Fraction, squares: Fraction) -> dict[str, Any]:
    """A ``NumericAggregate.to_dict()`` whose mean and M2 come from exact Σx and Σx² (batch-independent)."""
    n = data["count"]
    if n:
        m2 = squares - total * total / n
        # Values beyond ~1e154 can have a sum of squared deviations past float64: keep the JSON finite.
        data = data | {"mean": float(total / n), "m2": float(m2) if m2 <= _FLOAT_MAX else _FLOAT_MAX}
    return data


def binary_log_loss_sum(truth: np.ndarray, score: np.ndarray, pos_label: str) -> Fraction:
    """Σ log loss over the rows ``ScoreHistogramAggregate`` (binary) counts: a label, a score in [0, 1]."""
    text, valid = canonical_labels(truth)
    valid &= np.isfinite(score) & (score >= 0.0) & (score <= 1.0)
    return exact_total(binary_log_loss_terms(text[valid] == pos_label, score[valid]))


def class_log_loss_sum(truth: np.ndarray, scores: np.ndarray, classes: Sequence[str]) -> Fraction:
    """Σ -log p(true class) over the rows ``ScoreHistogramAggregate`` (multiclass) counts.

    Each row is normalised by its sum, taken over the sorted row in sequence, so the value does not
    depend on which zero-score columns a batch happens to carry; a true class without a column has
    probability 0.
    """
    text, valid = canonical_labels(truth)
    valid &= (np.isfinite(scores) & (scores >= 0.0) & (scores <= 1.0)).all(axis=1)
    scores, text = scores[valid], text[valid]
    if text.size == 0:
        return Fraction(0)
    table = np.array(classes, dtype=str)
    position = np.minimum(np.searchsorted(table, text), table.size - 1)
    picked = np.where(table[position] == text, scores[np.arange(text.size), position], 0.0)
    row_sum = np.cumsum(np.sort(scores, axis=1), axis=1)[:, -1]
    p = np.divide(picked, row_sum, out=np.zeros_like(picked), where=row_sum > 0)
    return exact_total(-np.log(np.clip(p, PROBABILITY_EPS, 1.0 - PROBABILITY_EPS)))
