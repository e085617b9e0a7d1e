"""Performance metrics of classifiers and regressors: from one batch, or from merged window aggregates."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from scipy import stats

from detectors.labels import canonical_label, canonical_labels
from detectors.metric import Metric
from detectors.performance_aggregates import ConfusionMatrixAggregate, RegressionAggregate
from detectors.score_histogram import (
    PROBABILITY_EPS,
    ScoreHistogramAggregate,
    binary_log_loss_terms,
    multiclass_log_loss_terms,
)

__all__ = [
    "PROBABILITY_EPS",
    "Average",
    "ConfusionMatrixAggregate",
    "RegressionAggregate",
    "ScoreHistogramAggregate",
    "classification",
    "classification_from",
    "positive_counts",
    "regression",
    "regression_from",
]

Average = Literal["auto", "binary", "macro"]
_AVERAGES = ("auto", "binary", "macro")
# Below this share of Σy², Σy² - (Σy)²/n cancels too far to trust (each row's y² was rounded to float64).
_MIN_RELATIVE_SST = 1e-9


def _resolve_average(average: str, labels: Sequence[str], pos_label: str, multiclass_scores: bool) -> str:
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {', '.join(_AVERAGES)}; got {average!r}")
    if average != "auto":
        return average
    if multiclass_scores:
        return "macro"
    return "binary" if len(set(labels) | {pos_label}) <= 2 else "macro"


def _positive(pos_label: Any) -> str:
    label = canonical_label(pos_label)
    if label is None:
        raise ValueError("pos_label cannot be missing")
    return label


def _threshold_metrics(cm: ConfusionMatrixAggregate, average: str, pos_label: str) -> dict[str, Metric]:
    counts = cm.counts
    total = int(counts.sum())
    if total == 0:
        empty = Metric.undefined("empty window")
        return {"count": Metric(0.0), "accuracy": empty, "precision": empty, "recall": empty, "f1": empty}
    true_per_class, pred_per_class, hits = counts.sum(axis=1), counts.sum(axis=0), np.diag(counts)
    result = {"count": Metric(float(total)), "accuracy": Metric(float(hits.sum() / total))}
    if average == "binary":
        i = cm.labels.index(pos_label) if pos_label in cm.labels else None
        tp = int(hits[i]) if i is not None else 0
        predicted = int(pred_per_class[i]) if i is not None else 0
        actual = int(true_per_class[i]) if i is not None else 0
        result["precision"] = Metric.ratio(tp, predicted, "no positive predictions")
        result["recall"] = Metric.ratio(tp, actual, "no positive labels")
        result["f1"] = Metric.ratio(2 * tp, predicted + actual, "no positive labels or predictions")
        return result
    seen = (true_per_class + pred_per_class) > 0
    tp, predicted, actual = hits[seen].astype(float), pred_per_class[seen], true_per_class[seen]
    zeros = np.zeros_like(tp)
    # A class never predicted (or never true) scores 0 for that class, as sklearn's zero_division=0.
    precision = np.divide(tp, predicted, out=zeros.copy(), where=predicted > 0)
    recall = np.divide(tp, actual, out=zeros.copy(), where=actual > 0)
    f1 = 2 * tp / (predicted + actual)
    for name, per_class in (("precision", precision), ("recall", recall), ("f1", f1)):
        result[name] = Metric(float(per_class.mean()))
    return result


def positive_counts(cm: ConfusionMatrixAggregate, pos_label: Any = "1") -> tuple[int, int]:
    """Predicted positives (TP + FP) and actual positives (TP + FN): the denominators of binary
    precision and recall.

    >>> cm = ConfusionMatrixAggregate()
    >>> cm.update_batch(np.array([1, 0, 1, 1, 0]), np.array([1, 1, 0, 1, 0]))
    >>> positive_counts(cm)
    (3, 3)
    """
    pos = _positive(pos_label)
    if pos not in cm.labels:
        return 0, 0
    i = cm.labels.index(pos)
    return int(cm.counts[:, i].sum()), int(cm.counts[i, :].sum())


def _rank_auc(scores: np.ndarray, is_positive: np.ndarray) -> float | None:
    """Mann-Whitney AUC with ties counted one half; None when a class is absent."""
    n_pos = int(np.count_nonzero(is_positive))
    n_neg = is_positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = stats.rankdata(scores)
    u = float(ranks[is_positive].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def _exact_score_metrics(
    y_true: Any, y_score: Any, classes: Sequence[Any] | None, pos_label: str, average: str
) -> dict[str, Metric]:
    text, valid = canonical_labels(y_true)
    scores = np.asarray(y_score, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        in_range = np.isfinite(scores) & (scores >= 0.0) & (scores <= 1.0)
    if average == "binary":
        if scores.shape != text.shape:
            raise ValueError(f"binary metrics take one score, P(positive), per label; got {scores.shape}")
        valid &= in_range
        is_positive = text[valid] == pos_label
        terms = binary_log_loss_terms(is_positive, scores[valid])
        aucs = [_rank_auc(scores[valid], is_positive)]
    else:
        if classes is None or scores.ndim != 2 or scores.shape != (text.size, len(classes)):
            raise ValueError("macro score metrics take 2-D scores (rows x classes) and the classes argument")
        columns = [canonical_label(c) for c in classes]
        valid &= in_range.all(axis=1)
        matrix, truth = scores[valid], text[valid]
        true_index = np.full(truth.shape, -1, dtype=np.int64)
        for j, label in enumerate(columns):
            true_index[truth == label] = j
        terms = multiclass_log_loss_terms(true_index, matrix)
        aucs = [_rank_auc(matrix[:, j], true_index == j) for j in range(len(columns))]
    if terms.size == 0:
        return {"log_loss": Metric.undefined("no scored rows"), "roc_auc": Metric.undefined("no scored rows")}
    defined = [auc for auc in aucs if auc is not None]
    roc_auc = Metric(float(np.mean(defined))) if defined else Metric.undefined("single class in y_true")
    return {"log_loss": Metric(float(np.mean(terms))), "roc_auc": roc_auc}


def classification(
    y_true: Any,
    y_pred: Any,
    y_score: Any = None,
    *,
    classes: Sequence[Any] | None = None,
    pos_label: Any = "1",
    average: Average = "auto",
) -> dict[str, Metric]:
    """Classification metrics of one batch: count, accuracy, precision, recall, f1 (+ log_loss, roc_auc).

    Parameters
    ----------
    y_true, y_pred
        Labels (strings or numbers, compared in canonical text form: ``1 == 1.0 == "1"``).
    y_score
        Binary: P(``pos_label``) per row. Multiclass: rows x ``classes`` probabilities.
    classes
        The label of each score column (multiclass scores only).
    pos_label
        The positive class for binary metrics.
    average
        ``"binary"`` (positive class only), ``"macro"`` (unweighted mean over the classes that
        occur in ``y_true`` or ``y_pred``) or ``"auto"``: macro with 2-D scores or more than two
        labels, else binary.

    Log loss clips probabilities to ``[1e-15, 1 - 1e-15]``; ROC AUC is exact (ties count 1/2),
    one-vs-rest macro for multiclass over classes with both positive and negative rows.

    Examples
    --------
    >>> m = classification([1, 0, 1, 1], [1, 0, 0, 1], [0.9, 0.2, 0.4, 0.7])
    >>> {name: round(metric.value, 4) for name, metric in m.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'count': 4.0, 'accuracy': 0.75, 'precision': 1.0, 'recall': 0.6667, 'f1': 0.8,
     'log_loss': 0.4004, 'roc_auc': 1.0}
    >>> classification([0, 0], [0, 0])["recall"]
    Metric(value=nan, reason='no positive labels')
    """
    pos = _positive(pos_label)
    cm = ConfusionMatrixAggregate()
    cm.update_batch(np.asarray(y_true), np.asarray(y_pred))
    multiclass_scores = y_score is not None and np.ndim(y_score) == 2
    resolved = _resolve_average(average, cm.labels, pos, multiclass_scores)
    result = _threshold_metrics(cm, resolved, pos)
    if y_score is not None:
        result |= _exact_score_metrics(y_true, y_score, classes, pos, resolved)
    return result


def classification_from(
    cm: ConfusionMatrixAggregate,
    scores: ScoreHistogramAggregate | None = None,
    *,
    pos_label: Any = "1",
    average: Average = "auto",
) -> dict[str, Metric]:
    """The metrics of :func:`classification` from merged window aggregates.

    With ``scores``, adds ``log_loss`` (exact) and ``roc_auc`` from the histograms, plus
    ``roc_auc_error_bound``: the largest possible difference from the exact AUC.

    Examples
    --------
    >>> cm, scores = ConfusionMatrixAggregate(), ScoreHistogramAggregate()
    >>> cm.update_batch(np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1]))
    >>> scores.update_batch(np.array([1, 0, 1, 1]), np.array([0.9, 0.2, 0.4, 0.7]))
    >>> m = classification_from(cm, scores)
    >>> {name: round(metric.value, 4) for name, metric in m.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'count': 4.0, 'accuracy': 0.75, 'precision': 1.0, 'recall': 0.6667, 'f1': 0.8,
     'log_loss': 0.4004, 'roc_auc': 1.0, 'roc_auc_error_bound': 0.0}
    """
    pos = _positive(pos_label)
    multiclass_scores = scores is not None and not scores.binary
    resolved = _resolve_average(average, cm.labels, pos, multiclass_scores)
    result = _threshold_metrics(cm, resolved, pos)
    if scores is None:
        return result
    if (resolved == "binary") != scores.binary:
        wanted = "binary" if resolved == "binary" else "multiclass"
        raise ValueError(f"{resolved} metrics need {wanted} scores (ScoreHistogramAggregate pos_label)")
    if scores.binary and scores.pos_label != pos:
        raise ValueError(f"scores are for pos_label {scores.pos_label!r}, metrics for {pos!r}")
    auc, bound = scores.roc_auc()
    result |= {"log_loss": scores.log_loss(), "roc_auc": auc}
    result["roc_auc_error_bound"] = Metric(bound, auc.reason)
    return result


def regression_from(agg: RegressionAggregate) -> dict[str, Metric]:
    """count, mae, rmse, mape (a fraction, rows with ``y_true == 0`` left out) and r2 from an aggregate.

    Examples
    --------
    >>> agg = RegressionAggregate()
    >>> agg.update_batch(np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 3.0]))
    >>> {name: round(metric.value, 4) for name, metric in regression_from(agg).items()}
    {'count': 3.0, 'mae': 0.5, 'rmse': 0.6455, 'mape': 0.25, 'r2': 0.7321}
    """
    n = agg.count
    if n == 0:
        empty = Metric.undefined("empty window")
        return {"count": Metric(0.0), "mae": empty, "rmse": empty, "mape": empty, "r2": empty}
    result = {
        "count": Metric(float(n)),
        "mae": Metric(float(agg.sum_abs_error / n)),
        "rmse": Metric(math.sqrt(agg.sum_sq_error / n)),
        "mape": Metric.ratio(agg.sum_abs_pct_error, agg.n_pct, "y_true is 0 in every row"),
    }
    total_sq = agg.sum_y2 - agg.sum_y * agg.sum_y / n
    if total_sq <= 0:
        result["r2"] = Metric.undefined("y_true is constant")
    elif total_sq < _MIN_RELATIVE_SST * agg.sum_y2:
        result["r2"] = Metric.undefined("y_true varies too little around its mean for r2 from window sums")
    else:
        result["r2"] = Metric(1.0 - float(agg.sum_sq_error / total_sq))
    return result


def regression(y_true: Any, y_pred: Any) -> dict[str, Metric]:
    """Regression metrics of one batch; the same definitions as :func:`regression_from`.

    >>> regression([3.0, -0.5, 2.0, 7.0], [2.5, 0.0, 2.0, 8.0])["r2"]
    Metric(value=0.9486081370449679, reason=None)
    >>> regression([], [])["mae"]
    Metric(value=nan, reason='empty window')
    """
    agg = RegressionAggregate()
    agg.update_batch(np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64))
    return regression_from(agg)
