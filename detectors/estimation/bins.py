"""Per-window score histograms for performance estimation: mergeable, exact, no labels needed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

N_BINS = 100
"""Equal-width score bins on [0, 1]; the bin of ``s`` is ``min(int(s * N_BINS), N_BINS - 1)``."""


def bin_index(scores: np.ndarray) -> np.ndarray:
    """Bin of each score in [0, 1] (1.0 falls in the last bin).

    >>> bin_index(np.array([0.0, 0.005, 0.01, 0.5, 0.999, 1.0])).tolist()
    [0, 0, 1, 50, 99, 99]
    """
    return np.minimum((np.asarray(scores, dtype=np.float64) * N_BINS).astype(np.int64), N_BINS - 1)


def binary_scores(score: Any) -> np.ndarray:
    """The ``(n, 2)`` score matrix of a binary model from its single ``score`` = P(positive).

    Columns are ``[1 - s, s]``, aligned with classes ``(negative, positive)``: this is how the
    stream turns a binary event's ``score`` into the rows :meth:`ScoreBins.add` and
    :meth:`Calibration.fit` take. The estimate of a binary model only reads the positive column.

    >>> binary_scores([0.9, 0.25]).tolist()
    [[0.09999999999999998, 0.9], [0.75, 0.25]]
    """
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    return np.column_stack([1.0 - s, s])


def _sparse(rows: np.ndarray) -> list[list[int]]:
    """Each row as a flat ``[bin, count, bin, count, ...]`` list of its non-zero bins."""
    out = []
    for row in rows:
        nonzero = np.flatnonzero(row)
        out.append(np.column_stack([nonzero, row[nonzero]]).reshape(-1).tolist())
    return out


def _dense(rows: Sequence[Sequence[int]], n_classes: int) -> np.ndarray:
    matrix = np.zeros((n_classes, N_BINS), dtype=np.int64)
    if len(rows) != n_classes:
        raise ValueError(f"expected {n_classes} histogram rows, got {len(rows)}")
    for r, flat in enumerate(rows):
        pairs = np.asarray(flat, dtype=np.int64).reshape(-1, 2)
        matrix[r, pairs[:, 0]] = pairs[:, 1]
    return matrix


def _aligned(counts: np.ndarray, classes: tuple[str, ...], target: tuple[str, ...]) -> np.ndarray:
    """``counts`` (rows = ``classes``) laid out on ``target``; a class it lacks gets zero counts."""
    if classes == target:
        return counts
    out = np.zeros((len(target), N_BINS), dtype=np.int64)
    where = {label: row for row, label in enumerate(classes)}
    for row, label in enumerate(target):
        if label in where:
            out[row] = counts[where[label]]
    return out


@dataclass
class ScoreBins:
    """Histograms of each class's score over ALL predictions of a window, split by predicted class.

    ``predicted[k]`` counts the bins of ``score_k`` over events predicted ``k``; ``other[k]`` over
    events not predicted ``k``. That is all the estimator needs: with the calibrated
    P(y = k | score_k bin) it gives expected true/false positives per bin. Merging adds counts,
    so it is exact, commutative and associative.

    Examples
    --------
    >>> a = ScoreBins.empty(["no", "yes"])
    >>> a.add(binary_scores([0.95, 0.91, 0.2, float("nan")]), np.array([1, 1, 0, 1]))
    >>> a.count, a.n_invalid
    (3, 1)
    >>> np.flatnonzero(a.predicted[1]).tolist(), np.flatnonzero(a.other[1]).tolist()
    ([91, 95], [20])
    >>> b = ScoreBins.from_dict(a.to_dict())
    >>> bool((b.predicted == a.predicted).all() and (b.other == a.other).all()), b.classes == a.classes
    (True, True)
    >>> a.merge(b).count
    6
    """

    classes: tuple[str, ...]
    predicted: np.ndarray
    other: np.ndarray
    n_invalid: int = 0

    def __post_init__(self) -> None:
        self.classes = tuple(str(c) for c in self.classes)
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be distinct, got {list(self.classes)!r}")
        shape = (len(self.classes), N_BINS)
        self.predicted = np.asarray(self.predicted, dtype=np.int64).reshape(shape)
        self.other = np.asarray(self.other, dtype=np.int64).reshape(shape)

    @classmethod
    def empty(cls, classes: Sequence[str]) -> ScoreBins:
        k = len(classes)
        return cls(tuple(classes), np.zeros((k, N_BINS), np.int64), np.zeros((k, N_BINS), np.int64))

    def add(self, scores: np.ndarray, predicted: np.ndarray) -> None:
        """Fold ``scores`` (n, k) in [0, 1], columns aligned with ``classes``, and ``predicted`` (n,) indices.

        Rows with a NaN or out-of-range score, or a predicted index outside ``0..k-1``, are left
        out and counted in ``n_invalid``.
        """
        k = len(self.classes)
        scores = np.asarray(scores, dtype=np.float64)
        predicted = np.asarray(predicted).reshape(-1)
        if scores.ndim != 2 or scores.shape != (predicted.size, k):
            raise ValueError(f"scores must have shape {(predicted.size, k)}, got {scores.shape}")
        if predicted.size and not np.issubdtype(predicted.dtype, np.integer):
            raise ValueError(f"predicted must be integer class indices, got dtype {predicted.dtype}")
        if not predicted.size:
            return
        # min/max are NaN if any score is: the fast check then fails and the rows are filtered
        all_valid = k > 0 and scores.min() >= 0.0 and scores.max() <= 1.0
        if not (all_valid and predicted.min() >= 0 and predicted.max() < k):
            with np.errstate(invalid="ignore"):
                valid = ((scores >= 0.0) & (scores <= 1.0)).all(axis=1)  # NaN compares False
            valid &= (predicted >= 0) & (predicted < k)
            self.n_invalid += int(valid.size - np.count_nonzero(valid))
            scores, predicted = scores[valid], predicted[valid]
            if not predicted.size:
                return
        # One bincount over cells (m, k) = [predicted or not, class row, score bin], flattened.
        size = k * N_BINS
        cells = bin_index(scores)
        for row in range(1, k):
            cells[:, row] += row * N_BINS
        flat = cells.reshape(-1)
        flat[np.arange(predicted.size) * k + predicted] += size
        counts = np.bincount(flat, minlength=2 * size).reshape(2, k, N_BINS)
        self.other += counts[0]
        self.predicted += counts[1]

    def merge(self, other: ScoreBins) -> ScoreBins:
        """Sum of both windows. Same classes keep their order; otherwise the sorted union."""
        classes = (
            self.classes if self.classes == other.classes else tuple(sorted({*self.classes, *other.classes}))
        )
        return ScoreBins(
            classes,
            _aligned(self.predicted, self.classes, classes)
            + _aligned(other.predicted, other.classes, classes),
            _aligned(self.other, self.classes, classes) + _aligned(other.other, other.classes, classes),
            self.n_invalid + other.n_invalid,
        )

    def aligned(self, classes: Sequence[str]) -> ScoreBins:
        """The same counts on ``classes``; classes with counts must all be in it."""
        target = tuple(str(c) for c in classes)
        used = {
            c for c, p, o in zip(self.classes, self.predicted, self.other, strict=True) if p.any() or o.any()
        }
        if missing := sorted(used - set(target)):
            raise ValueError(f"score bins have counts for classes {missing} that are not in {list(target)}")
        return ScoreBins(
            target,
            _aligned(self.predicted, self.classes, target),
            _aligned(self.other, self.classes, target),
            self.n_invalid,
        )

    @property
    def count(self) -> int:
        """Valid rows folded (each is predicted exactly one class)."""
        return int(self.predicted.sum())

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: each histogram row as a flat ``[bin, count, ...]`` list of its non-zero bins."""
        return {
            "kind": "score_bins",
            "n_bins": N_BINS,
            "classes": list(self.classes),
            "predicted": _sparse(self.predicted),
            "other": _sparse(self.other),
            "n_invalid": self.n_invalid,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoreBins:
        if int(data.get("n_bins", N_BINS)) != N_BINS:
            raise ValueError(f"score bins stored with {data['n_bins']} bins, this version uses {N_BINS}")
        classes = tuple(str(c) for c in data["classes"])
        return cls(
            classes,
            _dense(data["predicted"], len(classes)),
            _dense(data["other"], len(classes)),
            int(data.get("n_invalid", 0)),
        )
