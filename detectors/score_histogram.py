"""ROC AUC and log loss of a window from mergeable per-class score histograms."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any, Self

import numpy as np

from detectors.base import Aggregate
from detectors.exact import exact_sum, fraction_from_json, fraction_to_json
from detectors.labels import canonical_label, canonical_labels
from detectors.metric import Metric
from detectors.performance_aggregates import same_kind

PROBABILITY_EPS = 1e-15
"""Probabilities are clipped to ``[eps, 1 - eps]`` before the log in log loss."""


def _index_of(text: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Position of each label in the sorted ``classes``, or -1 where it is not one of them."""
    if not classes:
        return np.full(text.shape, -1, dtype=np.int64)
    table = np.array(classes, dtype=str)
    position = np.minimum(np.searchsorted(table, text), len(table) - 1)
    return np.where(table[position] == text, position, -1)


def binary_log_loss_terms(is_positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Per-row ``-(y log p + (1 - y) log(1 - p))`` with ``p`` clipped to ``[eps, 1 - eps]``."""
    p = np.clip(score, PROBABILITY_EPS, 1.0 - PROBABILITY_EPS)
    return -np.where(is_positive, np.log(p), np.log1p(-p))


def multiclass_log_loss_terms(true_index: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-row ``-log p(true class)``: each row normalised to sum 1, then clipped.

    A true label that is not a score column (``true_index`` -1) has probability 0.
    """
    rows = np.arange(scores.shape[0])
    picked = np.where(true_index >= 0, scores[rows, np.maximum(true_index, 0)], 0.0)
    row_sum = scores.sum(axis=1)
    p = np.divide(picked, row_sum, out=np.zeros_like(picked), where=row_sum > 0)
    return -np.log(np.clip(p, PROBABILITY_EPS, 1.0 - PROBABILITY_EPS))


class ScoreHistogramAggregate(Aggregate):
    """Positive and negative score histograms on ``bins`` equal bins of [0, 1], plus the exact log-loss sum.

    Binary (``pos_label`` set): ``update_batch(y_true, score)`` with ``score`` = P(positive).
    Multiclass (``pos_label=None``): ``update_batch(y_true, scores, classes)`` with one column
    per class; one-vs-rest histograms are kept per class. A class missing from a batch's columns
    has score 0 there, so classes may be added by later batches or merges and stay exact. Rows
    with a missing label or a score outside [0, 1] are counted in ``n_invalid`` and left out.

    ROC AUC from the histograms treats scores in one bin as tied; its error is at most
    ``roc_auc()[1]`` = ``sum_b pos_b * neg_b / (2 * n_pos * n_neg)``.

    Examples
    --------
    >>> agg = ScoreHistogramAggregate(bins=10)
    >>> agg.update_batch(np.array([1, 1, 0, 0]), np.array([0.9, 0.32, 0.35, 0.1]))
    >>> agg.roc_auc()  # the exact AUC is 0.75: 0.32 and 0.35 share bin 3 and count as a tie
    (Metric(value=0.875, reason=None), 0.125)
    >>> round(agg.log_loss().value, 6)
    0.445235
    """

    kind = "score_histogram"

    def __init__(self, bins: int = 1000, pos_label: Any = "1") -> None:
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
            raise ValueError(f"bins must be a positive integer, got {bins!r}")
        self.bins = bins
        self.pos_label: str | None = None if pos_label is None else canonical_label(pos_label)
        self._classes: list[str] = [] if self.pos_label is None else [self.pos_label]
        self._positives = np.zeros((len(self._classes), bins), dtype=np.int64)
        self._negatives = np.zeros((len(self._classes), bins), dtype=np.int64)
        self._true_counts: dict[str, int] = {}
        self._n = 0
        self._log_loss_sum = Fraction(0)
        self._n_invalid = 0

    @property
    def binary(self) -> bool:
        """True for P(positive) scores, False for per-class scores."""
        return self.pos_label is not None

    @property
    def classes(self) -> tuple[str, ...]:
        """Classes with a histogram pair (binary: just the positive class)."""
        return tuple(self._classes)

    @property
    def count(self) -> int:
        """Rows counted."""
        return self._n

    @property
    def n_invalid(self) -> int:
        """Rows left out (missing label, score missing or outside [0, 1])."""
        return self._n_invalid

    def _bin(self, scores: np.ndarray) -> np.ndarray:
        return np.minimum((scores * self.bins).astype(np.int64), self.bins - 1)

    def _expanded(self, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Histograms over a superset of classes; an added class has all its rows at score 0."""
        if classes == self._classes:
            return self._positives, self._negatives
        positives = np.zeros((len(classes), self.bins), dtype=np.int64)
        negatives = np.zeros((len(classes), self.bins), dtype=np.int64)
        for row, label in enumerate(classes):
            if label in self._classes:
                positives[row] = self._positives[self._classes.index(label)]
                negatives[row] = self._negatives[self._classes.index(label)]
            else:
                positives[row, 0] = self._true_counts.get(label, 0)
                negatives[row, 0] = self._n - positives[row, 0]
        return positives, negatives

    def update_batch(self, y_true: Any, y_score: Any, classes: Sequence[Any] | None = None) -> None:
        """Fold one batch: labels, and scores (1-D binary, or 2-D rows x ``classes``)."""
        text, valid = canonical_labels(y_true)
        scores = np.asarray(y_score, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            in_range = np.isfinite(scores) & (scores >= 0.0) & (scores <= 1.0)
        if self.pos_label is not None:
            if classes is not None or scores.shape != text.shape:
                raise ValueError("a binary score histogram takes a 1-D score per label and no classes")
            valid &= in_range
            is_positive = text[valid] == self.pos_label
            binned = self._bin(scores[valid])
            self._positives[0] += np.bincount(binned[is_positive], minlength=self.bins)
            self._negatives[0] += np.bincount(binned[~is_positive], minlength=self.bins)
            self._log_loss_sum += exact_sum(binary_log_loss_terms(is_positive, scores[valid]))
        else:
            self._update_multiclass(text, valid, scores, in_range, classes)
        self._n += int(np.count_nonzero(valid))
        self._n_invalid += int(valid.size - np.count_nonzero(valid))

    def _update_multiclass(
        self, text: np.ndarray, valid: np.ndarray, scores: np.ndarray, in_range: np.ndarray, classes: Any
    ) -> None:
        if classes is None:
            raise ValueError("multiclass scores need classes: one label per score column")
        batch_classes = [canonical_label(c) for c in classes]
        if None in batch_classes or len(set(batch_classes)) != len(batch_classes):
            raise ValueError(f"classes must be distinct, non-missing labels, got {list(classes)!r}")
        if scores.ndim != 2 or scores.shape != (text.size, len(batch_classes)):
            expected = (text.size, len(batch_classes))
            raise ValueError(f"scores must have shape {expected}, got {scores.shape}")
        valid &= in_range.all(axis=1)
        union = sorted(set(self._classes).union(str(c) for c in batch_classes))
        self._positives, self._negatives = self._expanded(union)
        self._classes = union
        k = len(union)
        full = np.zeros((int(np.count_nonzero(valid)), k))
        full[:, _index_of(np.array(batch_classes, dtype=str), union)] = scores[valid]
        true_index = _index_of(text[valid], union)
        cells = np.arange(k) * self.bins + self._bin(full)
        is_positive = true_index[:, None] == np.arange(k)
        self._positives += np.bincount(cells[is_positive], minlength=k * self.bins).reshape(k, self.bins)
        self._negatives += np.bincount(cells[~is_positive], minlength=k * self.bins).reshape(k, self.bins)
        self._log_loss_sum += exact_sum(multiclass_log_loss_terms(true_index, full))
        for label, count in zip(*np.unique(text[valid], return_counts=True), strict=True):
            self._true_counts[str(label)] = self._true_counts.get(str(label), 0) + int(count)

    def merge(self, other: Self) -> Self:
        same_kind(self, other)
        if (self.bins, self.pos_label) != (other.bins, other.pos_label):
            raise ValueError(
                f"cannot merge score histograms with different settings: bins {self.bins} vs {other.bins}, "
                f"pos_label {self.pos_label!r} vs {other.pos_label!r}"
            )
        out = type(self)(bins=self.bins, pos_label=self.pos_label)
        out._classes = sorted(set(self._classes) | set(other._classes))
        mine, theirs = self._expanded(out._classes), other._expanded(out._classes)
        out._positives = mine[0] + theirs[0]
        out._negatives = mine[1] + theirs[1]
        for label in sorted(set(self._true_counts) | set(other._true_counts)):
            out._true_counts[label] = self._true_counts.get(label, 0) + other._true_counts.get(label, 0)
        out._n = self._n + other._n
        out._log_loss_sum = self._log_loss_sum + other._log_loss_sum
        out._n_invalid = self._n_invalid + other._n_invalid
        return out

    def log_loss(self) -> Metric:
        """Mean log loss over the counted rows (exact, not binned)."""
        if self._n == 0:
            return Metric.undefined("no scored rows")
        return Metric(float(self._log_loss_sum / self._n))

    def roc_auc(self) -> tuple[Metric, float]:
        """ROC AUC (binary, or macro one-vs-rest) from the histograms, and the bound on its error."""
        values, bounds = [], []
        for positives, negatives in zip(self._positives, self._negatives, strict=True):
            n_pos, n_neg = float(positives.sum()), float(negatives.sum())
            if n_pos == 0 or n_neg == 0:
                continue
            pos, neg = positives.astype(np.float64), negatives.astype(np.float64)
            below = np.cumsum(neg) - neg
            tied = float(pos @ neg)
            values.append((float(pos @ below) + 0.5 * tied) / (n_pos * n_neg))
            bounds.append(0.5 * tied / (n_pos * n_neg))
        if not values:
            reason = "no scored rows" if self._n == 0 else "single class in y_true"
            return Metric.undefined(reason), float("nan")
        return Metric(float(np.mean(values))), float(np.mean(bounds))

    def to_dict(self) -> dict[str, Any]:
        def sparse(rows: np.ndarray) -> list[list[list[int]]]:
            return [[[int(i), int(row[i])] for i in np.flatnonzero(row)] for row in rows]

        return {
            "kind": self.kind,
            "bins": self.bins,
            "pos_label": self.pos_label,
            "classes": list(self._classes),
            "positives": sparse(self._positives),
            "negatives": sparse(self._negatives),
            "true_counts": dict(sorted(self._true_counts.items())),
            "n": self._n,
            "log_loss_sum": fraction_to_json(self._log_loss_sum),
            "n_invalid": self._n_invalid,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        out = cls(bins=int(data["bins"]), pos_label=data["pos_label"])
        out._classes = [str(label) for label in data["classes"]]

        def dense(rows: list[list[list[int]]]) -> np.ndarray:
            matrix = np.zeros((len(out._classes), out.bins), dtype=np.int64)
            for r, row in enumerate(rows):
                for index, count in row:
                    matrix[r, index] = count
            return matrix

        out._positives, out._negatives = dense(data["positives"]), dense(data["negatives"])
        out._true_counts = {str(k): int(v) for k, v in data["true_counts"].items()}
        out._n = int(data["n"])
        out._log_loss_sum = fraction_from_json(data["log_loss_sum"])
        out._n_invalid = int(data.get("n_invalid", 0))
        return out

    def __repr__(self) -> str:
        return f"ScoreHistogramAggregate(bins={self.bins}, pos_label={self.pos_label!r}, n={self._n})"
