"""Calibration map of a classifier's scores, fitted on a labelled reference: binned isotonic regression."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors.estimation.bins import N_BINS, bin_index


def pool_adjacent_violators(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-decreasing fit of ``values`` (pool-adjacent-violators).

    Adjacent values that break the order are pooled into their weighted mean until none does.

    >>> pool_adjacent_violators(np.array([0.1, 0.5, 0.3, 0.9]), np.array([1, 1, 3, 1])).tolist()
    [0.1, 0.35, 0.35, 0.9]
    """
    means: list[float] = []
    sizes: list[float] = []
    lengths: list[int] = []
    for value, weight in zip(values.tolist(), weights.tolist(), strict=True):
        means.append(float(value))
        sizes.append(float(weight))
        lengths.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            mean, size, length = means.pop(), sizes.pop(), lengths.pop()
            total = sizes[-1] + size
            means[-1] = (means[-1] * sizes[-1] + mean * size) / total
            sizes[-1] = total
            lengths[-1] += length
    return np.repeat(np.array(means, dtype=np.float64), lengths)


def _fit_row(positives: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """One class's calibrated rate per bin (see :class:`Calibration` for empty bins)."""
    seen = np.flatnonzero(totals)
    if seen.size == 0:
        return (np.arange(N_BINS) + 0.5) / N_BINS
    fitted = pool_adjacent_violators(positives[seen] / totals[seen], totals[seen].astype(np.float64))
    # Each bin takes the fit of the nearest bin with data at or below it (the first one's below it).
    owner = np.maximum(np.searchsorted(seen, np.arange(N_BINS), side="right") - 1, 0)
    return fitted[owner]


@dataclass(frozen=True)
class Calibration:
    """Calibrated P(y = k | score_k in bin b), per class ``k`` and score bin ``b``.

    Fitted per class (one-vs-rest) by isotonic regression on the binned reference: the share of
    label ``k`` among reference events whose ``score_k`` falls in bin ``b``, made non-decreasing in
    ``b`` by pool-adjacent-violators weighted by the bin counts. Binning first keeps the fit
    mergeable (it needs only the counts, as automatic references collect them) and tiny (100 rates
    a class); isotonic rather than plain histogram binning stops sparse bins from reversing the
    score order. A bin with no reference data takes the fitted value of the nearest bin with data
    below it (the fit is a step function, constant until the next bin with data), or of the first
    bin with data if there is none below; a class with no reference data at all keeps its scores
    as they are (the bin midpoint).

    Examples
    --------
    >>> scores = np.array([[0.8, 0.2], [0.7, 0.3], [0.4, 0.6], [0.1, 0.9], [0.35, 0.65]])
    >>> cal = Calibration.fit(["a", "b"], scores, np.array([0, 1, 1, 1, 0]))
    >>> cal.rates[1, [20, 30, 60, 65, 90, 99]].tolist()  # bins 30, 60, 65 pool: (1 + 1 + 0) / 3
    [0.0, 0.6666666666666666, 0.6666666666666666, 0.6666666666666666, 1.0, 1.0]
    """

    classes: tuple[str, ...]
    rates: np.ndarray
    n_reference: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        rates = np.asarray(self.rates, dtype=np.float64)
        if rates.shape != (len(self.classes), N_BINS):
            raise ValueError(f"rates must have shape {(len(self.classes), N_BINS)}, got {rates.shape}")
        if not (np.isfinite(rates).all() and (rates >= 0).all() and (rates <= 1).all()):
            raise ValueError("rates must be probabilities in [0, 1]")
        rates.setflags(write=False)
        object.__setattr__(self, "rates", rates)

    @classmethod
    def fit(cls, classes: Sequence[str], scores: np.ndarray, labels: np.ndarray) -> Calibration:
        """Fit on reference ``scores`` (n, k) aligned with ``classes`` and ``labels`` (n,) class indices.

        Rows with an invalid score or a label outside ``0..k-1`` are left out.
        """
        k = len(classes)
        scores = np.asarray(scores, dtype=np.float64)
        labels = np.asarray(labels).reshape(-1)
        if scores.ndim != 2 or scores.shape != (labels.size, k):
            raise ValueError(f"scores must have shape {(labels.size, k)}, got {scores.shape}")
        with np.errstate(invalid="ignore"):
            valid = (np.isfinite(scores) & (scores >= 0.0) & (scores <= 1.0)).all(axis=1)
        valid &= (labels >= 0) & (labels < k)
        cells = np.arange(k) * N_BINS + bin_index(scores[valid])
        is_label = labels[valid, None] == np.arange(k)
        totals = np.bincount(cells.reshape(-1), minlength=k * N_BINS).reshape(k, N_BINS)
        positives = np.bincount(cells[is_label], minlength=k * N_BINS).reshape(k, N_BINS)
        return cls.from_counts(classes, positives, totals)

    @classmethod
    def from_counts(cls, classes: Sequence[str], positives: np.ndarray, totals: np.ndarray) -> Calibration:
        """Fit from per-bin counts (k, N_BINS): labelled events with y == k, and all labelled events."""
        shape = (len(classes), N_BINS)
        positives = np.asarray(positives, dtype=np.int64)
        totals = np.asarray(totals, dtype=np.int64)
        if positives.shape != shape or totals.shape != shape:
            raise ValueError(
                f"positives and totals must have shape {shape}, got {positives.shape}, {totals.shape}"
            )
        if (positives < 0).any() or (positives > totals).any():
            raise ValueError("need 0 <= positives <= totals in every bin")
        rates = np.array([_fit_row(p, t) for p, t in zip(positives, totals, strict=True)]).reshape(shape)
        n_reference = int(totals[0].sum()) if len(classes) else 0
        return cls(tuple(classes), rates, n_reference)

    @classmethod
    def from_score_histogram(cls, agg: Any, classes: Sequence[str]) -> Calibration:
        """Fit from a labelled window's ``detectors.score_histogram.ScoreHistogramAggregate``.

        Its bins must be a multiple of ``N_BINS`` (the default 1000 is): groups of adjacent bins
        are summed, which re-bins exactly. Multiclass: each of ``classes`` takes its one-vs-rest
        histograms (none: no data). Binary (``classes`` = (negative, positive), positive = the
        aggregate's ``pos_label``): the positive class's histograms are the aggregate's; the
        negative class's are their mirror image, since its score is ``1 - s`` (exact but for scores
        lying on a bin edge; the binary estimate reads only the positive class).
        """
        data = agg.to_dict()
        bins = int(data["bins"])
        if bins % N_BINS:
            raise ValueError(f"a score histogram with {bins} bins cannot be re-binned exactly to {N_BINS}")
        group = bins // N_BINS

        def dense(rows: list[list[list[int]]]) -> np.ndarray:
            matrix = np.zeros((len(rows), bins), dtype=np.int64)
            for r, row in enumerate(rows):
                for index, count in row:
                    matrix[r, index] = count
            return matrix.reshape(len(rows), N_BINS, group).sum(axis=2)

        hist_classes = [str(c) for c in data["classes"]]
        pos, neg = dense(data["positives"]), dense(data["negatives"])
        classes = tuple(str(c) for c in classes)
        positives = np.zeros((len(classes), N_BINS), dtype=np.int64)
        totals = np.zeros((len(classes), N_BINS), dtype=np.int64)
        if data["pos_label"] is not None:
            label = str(data["pos_label"])
            if len(classes) != 2 or label not in classes:
                raise ValueError(
                    f"a binary histogram (positive {label!r}) needs classes (negative, positive)"
                )
            p, n = classes.index(label), 1 - classes.index(label)
            positives[p], totals[p] = pos[0], pos[0] + neg[0]
            positives[n], totals[n] = neg[0, ::-1], (pos[0] + neg[0])[::-1]
        else:
            for row, label in enumerate(classes):
                if label in hist_classes:
                    h = hist_classes.index(label)
                    positives[row], totals[row] = pos[h], pos[h] + neg[h]
        return cls.from_counts(classes, positives, totals)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "calibration",
            "method": "binned_isotonic",
            "n_bins": N_BINS,
            "classes": list(self.classes),
            "rates": self.rates.tolist(),
            "n_reference": self.n_reference,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        if int(data.get("n_bins", N_BINS)) != N_BINS:
            raise ValueError(f"calibration stored with {data['n_bins']} bins, this version uses {N_BINS}")
        return cls(
            tuple(data["classes"]),
            np.asarray(data["rates"], dtype=np.float64),
            int(data.get("n_reference", 0)),
        )
