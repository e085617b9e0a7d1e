"""Exact, batch-independent sums of the float terms a window bundle keeps: moments, errors, log loss."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.labels import canonical_labels
from detectors.score_histogram import PROBABILITY_EPS, binary_log_loss_terms

# Why not detectors._exact.exact_sum: it keeps the Fraction of each *batch's float sum*, so merges
# are exact but the same events fed in other batches (a replay) differ in the last bits. Here every
# finite float64 is m·2**e with an integer |m| < 2**53; mantissas are split into limbs, summed per
# exponent with bincount (exact while each float64 partial sum stays below 2**53) and combined as
# Python ints. No Python loop runs per value.
_ROWS = 1 << 16  # rows per bincount: sums of up to 2**16 weights below 2**37 stay below 2**53
_LOW26, _LIMB18 = (1 << 26) - 1, (1 << 18) - 1
_FLOAT_MAX = sys.float_info.max


def _total(parts: Sequence[tuple[int, np.ndarray]], exponents: np.ndarray) -> Fraction:
    """Σ_i Σ_(shift, w) w[i]·2**(shift + exponents[i]), exactly, for integer weights below 2**37."""
    if exponents.size == 0:
        return Fraction(0)
    offset = int(exponents.min())
    bins = exponents - offset
    total = 0
    for shift, weights in parts:
        for start in range(0, bins.size, _ROWS):
            chunk = slice(start, start + _ROWS)
            sums = np.bincount(bins[chunk], weights=weights[chunk].astype(np.float64))
            nonzero = np.flatnonzero(sums)
            pairs = zip(nonzero.tolist(), sums[nonzero].tolist(), strict=True)
            total += sum(int(s) << (b + shift) for b, s in pairs)
    return Fraction(total) * Fraction(2) ** offset


def _mantissas(values: npt.NDArray[np.float64]) -> tuple[np.ndarray, np.ndarray]:
    mantissa, exponent = np.frexp(np.asarray(values, dtype=np.float64).reshape(-1))
    return (mantissa * 2.0**53).astype(np.int64), exponent.astype(np.int64) - 53


def exact_total(values: npt.NDArray[np.float64]) -> Fraction:
    """The exact sum of finite values: the same however they are batched and merged.

    >>> exact_total(np.array([0.1, 0.2])) == Fraction(0.1) + Fraction(0.2)
    True
    >>> float(exact_total(np.array([1e16, 1.0, -1e16])))
    1.0
    """
    m, e = _mantissas(values)
    return _total([(26, m >> 26), (0, m & _LOW26)], e)


def exact_square_total(values: npt.NDArray[np.float64]) -> Fraction:
    """The exact sum of the squares of finite values (the squares are not rounded either).

    >>> exact_square_total(np.array([0.1, 3.0])) == Fraction(0.1) ** 2 + 9
    True
    """
    m, e = _mantissas(values)
    m = np.abs(m)
    high, mid, low = m >> 36, (m >> 18) & _LIMB18, m & _LIMB18
    parts = [(72, high * high), (54, 2 * high * mid), (36, 2 * high * low + mid * mid)]
    return _total([*parts, (18, 2 * mid * low), (0, low * low)], 2 * e)


# -- the float sums a window bundle keeps, computed per row as detectors does, summed exactly --------

REGRESSION_SUMS = ("sum_abs_error", "sum_sq_error", "sum_abs_pct_error", "sum_y", "sum_y2")
"""The float sums of ``RegressionAggregate`` (its ``to_dict`` keys)."""


def with_exact_moments(data: dict[str, Any], total: Fraction, squares: Fraction) -> dict[str, Any]:
    """A ``NumericAggregate.to_dict()`` whose mean and M2 come from exact Σx and Σx² (batch-independent)."""
    n = data["count"]
    if n:
        m2 = squares - total * total / n
        # Values beyond ~1e154 can have a sum of squared deviations past float64: keep the JSON finite.
        data = data | {"mean": float(total / n), "m2": float(m2) if m2 <= _FLOAT_MAX else _FLOAT_MAX}
    return data


def regression_sums(truth: np.ndarray, predicted: np.ndarray) -> dict[str, Fraction]:
    """The terms of ``RegressionAggregate.update_batch`` (same rows, same float ops), summed exactly."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        error = np.abs(predicted - truth)
        squared, truth_squared = error * error, truth * truth
        valid = np.isfinite(squared) & np.isfinite(truth_squared)
        truth, error, squared, truth_squared = (a[valid] for a in (truth, error, squared, truth_squared))
        pct = error / np.abs(truth)
    terms = (error, squared, pct[np.isfinite(pct)], truth, truth_squared)
    return {name: exact_total(values) for name, values in zip(REGRESSION_SUMS, terms, strict=True)}


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
