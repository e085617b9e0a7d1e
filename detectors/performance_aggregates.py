"""Mergeable window aggregates for performance metrics: the confusion matrix and regression error sums."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any, Self

import numpy as np

from detectors.base import Aggregate
from detectors.exact import exact_total, fraction_from_json, fraction_to_json
from detectors.labels import canonical_label_set, canonical_labels


def _reindex(counts: np.ndarray, old: Sequence[str], new: Sequence[str]) -> np.ndarray:
    """A square count matrix over ``old`` labels placed into one over the superset ``new``."""
    out = np.zeros((len(new), len(new)), dtype=np.int64)
    if old:
        index = np.searchsorted(np.array(new, dtype=str), np.array(old, dtype=str))
        out[np.ix_(index, index)] = counts
    return out


def same_kind(left: Aggregate, right: Aggregate) -> None:
    if type(left) is not type(right):
        raise TypeError(f"cannot merge {type(left).__name__} with {type(right).__name__}")


class ConfusionMatrixAggregate(Aggregate):
    """Counts of (true label, predicted label) pairs; rows are true labels, columns predictions.

    Labels are compared in canonical text form (``1``, ``1.0``, ``True`` and ``"1"`` are one
    class). The label set grows as labels are seen or merged and is kept sorted, so equal
    contents give equal dicts whatever the merge order. Pairs with a missing label are counted in
    ``n_invalid`` and left out.

    Parameters
    ----------
    labels
        Labels to hold from the start (they only fix the order of empty rows; metrics use the
        labels that occur).

    Examples
    --------
    >>> cm = ConfusionMatrixAggregate()
    >>> cm.update_batch(np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1]))
    >>> cm.labels, cm.counts.tolist()
    (('0', '1'), [[1, 0], [1, 2]])
    >>> other = ConfusionMatrixAggregate()
    >>> other.update_batch(np.array(["2"]), np.array([1.0]))
    >>> merged = cm.merge(other)
    >>> merged.labels, merged.counts.tolist()
    (('0', '1', '2'), [[1, 0, 0], [1, 2, 0], [0, 1, 0]])
    """

    kind = "confusion_matrix"

    def __init__(self, labels: Iterable[Any] = ()) -> None:
        self._labels: list[str] = canonical_label_set(labels)
        self._counts = np.zeros((len(self._labels), len(self._labels)), dtype=np.int64)
        self._n_invalid = 0

    @property
    def labels(self) -> tuple[str, ...]:
        """The sorted canonical labels, one per row and column."""
        return tuple(self._labels)

    @property
    def counts(self) -> np.ndarray:
        """A copy of the count matrix: ``counts[i, j]`` = true ``labels[i]`` predicted ``labels[j]``."""
        return self._counts.copy()

    @property
    def total(self) -> int:
        """Number of (true, predicted) pairs counted."""
        return int(self._counts.sum())

    @property
    def n_invalid(self) -> int:
        """Pairs left out because a label was missing."""
        return self._n_invalid

    def update_batch(self, y_true: Any, y_pred: Any) -> None:
        """Count one batch of true and predicted labels (equal-length 1-D arrays)."""
        true_text, true_valid = canonical_labels(y_true)
        pred_text, pred_valid = canonical_labels(y_pred)
        if true_text.shape != pred_text.shape:
            raise ValueError(f"y_true and y_pred differ in length: {true_text.size} != {pred_text.size}")
        valid = true_valid & pred_valid
        self._n_invalid += int(valid.size - np.count_nonzero(valid))
        n = int(np.count_nonzero(valid))
        if n == 0:
            return
        pairs = np.concatenate([true_text[valid], pred_text[valid]])
        batch_labels, codes = np.unique(pairs, return_inverse=True)
        union = sorted(set(self._labels).union(batch_labels.tolist()))
        if len(union) != len(self._labels):
            self._counts = _reindex(self._counts, self._labels, union)
            self._labels = union
        k = len(self._labels)
        position = np.searchsorted(np.array(self._labels, dtype=str), batch_labels)
        cells = position[codes[:n]] * k + position[codes[n:]]
        self._counts += np.bincount(cells, minlength=k * k).reshape(k, k)

    def merge(self, other: Self) -> Self:
        same_kind(self, other)
        out = type(self)()
        out._labels = sorted(set(self._labels) | set(other._labels))
        out._counts = _reindex(self._counts, self._labels, out._labels) + _reindex(
            other._counts, other._labels, out._labels
        )
        out._n_invalid = self._n_invalid + other._n_invalid
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "labels": list(self._labels),
            "counts": self._counts.tolist(),
            "n_invalid": self._n_invalid,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        out = cls()
        out._labels = [str(label) for label in data["labels"]]
        k = len(out._labels)
        out._counts = np.array(data["counts"], dtype=np.int64).reshape(k, k)
        out._n_invalid = int(data.get("n_invalid", 0))
        return out

    def __repr__(self) -> str:
        return f"ConfusionMatrixAggregate(labels={self._labels}, total={self.total})"


class RegressionAggregate(Aggregate):
    """Exact error sums of a regressor over a window: count, Σ|e|, Σe², Σ|e|/|y|, Σy, Σy².

    ``e = y_pred - y_true``. Rows where ``y_true == 0`` are left out of the percentage sum and
    counted in ``n_mape_excluded``. Rows with a non-finite value are counted in ``n_invalid``.
    Each row's terms are float64; their sums are exact Fractions (:func:`~detectors.exact.exact_total`),
    the same however the rows are batched, merged or replayed.

    Examples
    --------
    >>> agg = RegressionAggregate()
    >>> agg.update_batch(np.array([1.0, 2.0, 0.0]), np.array([2.0, 2.0, 1.0]))
    >>> agg.count, agg.sum_abs_error, agg.n_mape_excluded
    (3, Fraction(2, 1), 1)
    """

    kind = "regression"
    _COUNTS = ("count", "n_pct", "n_mape_excluded", "n_invalid")
    _SUMS = ("sum_abs_error", "sum_sq_error", "sum_abs_pct_error", "sum_y", "sum_y2")

    def __init__(self) -> None:
        self._counts = dict.fromkeys(self._COUNTS, 0)
        self._sums = dict.fromkeys(self._SUMS, Fraction(0))

    @property
    def count(self) -> int:
        """Rows counted."""
        return self._counts["count"]

    @property
    def n_pct(self) -> int:
        """Rows in the percentage-error sum (``y_true != 0``)."""
        return self._counts["n_pct"]

    @property
    def n_mape_excluded(self) -> int:
        """Counted rows left out of MAPE because ``y_true == 0``."""
        return self._counts["n_mape_excluded"]

    @property
    def n_invalid(self) -> int:
        """Rows left out because a value (or its square) is not finite."""
        return self._counts["n_invalid"]

    @property
    def sum_abs_error(self) -> Fraction:
        """Σ|y_pred - y_true|."""
        return self._sums["sum_abs_error"]

    @property
    def sum_sq_error(self) -> Fraction:
        """Σ(y_pred - y_true)²."""
        return self._sums["sum_sq_error"]

    @property
    def sum_abs_pct_error(self) -> Fraction:
        """Σ|y_pred - y_true| / |y_true| over rows with ``y_true != 0``."""
        return self._sums["sum_abs_pct_error"]

    @property
    def sum_y(self) -> Fraction:
        """Σy_true."""
        return self._sums["sum_y"]

    @property
    def sum_y2(self) -> Fraction:
        """Σy_true²."""
        return self._sums["sum_y2"]

    def update_batch(self, y_true: Any, y_pred: Any) -> None:
        """Fold one batch of true and predicted values (equal-length 1-D numeric arrays)."""
        truth = np.asarray(y_true, dtype=np.float64)
        pred = np.asarray(y_pred, dtype=np.float64)
        if truth.ndim != 1 or truth.shape != pred.shape:
            raise ValueError(f"y_true and y_pred must be 1-D of equal length: {truth.shape}, {pred.shape}")
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            error = np.abs(pred - truth)
            squared, truth_squared = error * error, truth * truth
            valid = np.isfinite(squared) & np.isfinite(truth_squared)
            truth, error, squared, truth_squared = (a[valid] for a in (truth, error, squared, truth_squared))
            pct = error / np.abs(truth)
        pct_ok = np.isfinite(pct)
        counts, sums = self._counts, self._sums
        counts["count"] += int(truth.size)
        counts["n_invalid"] += int(valid.size - truth.size)
        counts["n_pct"] += int(np.count_nonzero(pct_ok))
        counts["n_mape_excluded"] += int(truth.size - np.count_nonzero(pct_ok))
        for name, values in zip(self._SUMS, (error, squared, pct[pct_ok], truth, truth_squared), strict=True):
            sums[name] += exact_total(values)

    def merge(self, other: Self) -> Self:
        same_kind(self, other)
        out = type(self)()
        out._counts = {name: self._counts[name] + other._counts[name] for name in self._COUNTS}
        out._sums = {name: self._sums[name] + other._sums[name] for name in self._SUMS}
        return out

    def to_dict(self) -> dict[str, Any]:
        sums = {name: fraction_to_json(value) for name, value in self._sums.items()}
        return {"kind": self.kind, **self._counts, **sums}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        out = cls()
        out._counts = {name: int(data[name]) for name in cls._COUNTS}
        out._sums = {name: fraction_from_json(data[name]) for name in cls._SUMS}
        return out

    def __repr__(self) -> str:
        return f"RegressionAggregate(count={self.count})"
