"""Standard deviations of the estimated metrics by the delta method on the per-bin binomials.

Per class row, the positives of each score bin are independent binomials: among the events predicted
the class, ``x_b ~ Binomial(predicted_b, r_b)`` (true positives), among the others
``Binomial(other_b, r_b)`` (false negatives). Sums of them (TP, FN, accuracy's correct events) get
their exact variance, ``Σ t r (1 - r)``; ratios (precision, recall, F1, ROC AUC) get the first-order
(delta method) variance ``Σ g_b² t_b r_b (1 - r_b)`` with ``g`` the metric's gradient at the
expected counts. O(bins) per class, no random draws. See ``estimate(band="normal")``.
"""

from __future__ import annotations

import warnings

import numpy as np


def _quotient(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den``, NaN where ``den`` is 0 (an undefined metric)."""
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den > 0)


def auc_gradient(pos: np.ndarray, total: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC and its gradient w.r.t. the positives per bin, over the last axis (bins, ascending).

    ``AUC = W / (P N)`` with ``W = Σ_b x_b negbelow_b + ½ Σ_b x_b neg_b``, ``neg_b = t_b - x_b``,
    ``P = Σ x_b``, ``N = T - P``. Raising ``x_b`` by one moves a negative of bin ``b`` to the
    positives: ``∂W/∂x_b = negbelow_b - posabove_b + ½ (neg_b - x_b)`` and ``∂(P N)/∂x_b = N - P``,
    so ``g_b = (∂W/∂x_b - AUC (N - P)) / (P N)``. NaN where ``P N`` is 0.

    >>> auc, g = auc_gradient(np.array([0.0, 1.0]), np.array([1.0, 1.0]))
    >>> float(auc), g.tolist()
    (1.0, [-0.5, 0.5])
    """
    neg = total - pos
    neg_below = np.cumsum(neg, axis=-1) - neg
    pos_above = pos.sum(axis=-1, keepdims=True) - np.cumsum(pos, axis=-1)
    p = pos.sum(axis=-1, keepdims=True)
    n = total.sum(axis=-1, keepdims=True) - p
    pairs = p * n
    wins = (pos * (neg_below + 0.5 * neg)).sum(axis=-1, keepdims=True)
    auc = _quotient(wins, pairs)
    d_wins = neg_below - pos_above + 0.5 * (neg - pos)
    grad = _quotient(d_wins - auc * (n - p), pairs)
    return auc[..., 0], grad


def row_sds(pred: np.ndarray, oth: np.ndarray, rates: np.ndarray) -> dict[str, np.ndarray]:
    """Per class row (axis 0): variances of TP and FN, and sds of precision, recall, F1, ROC AUC.

    ``pred``, ``oth`` and ``rates`` are ``(classes, bins)``; a metric undefined for a class is NaN.
    """
    pred, oth = pred.astype(np.float64), oth.astype(np.float64)
    spread = rates * (1.0 - rates)
    tp, fn = (pred * rates).sum(axis=-1), (oth * rates).sum(axis=-1)
    var_tp, var_fn = (pred * spread).sum(axis=-1), (oth * spread).sum(axis=-1)
    n_pred = pred.sum(axis=-1)
    actual = tp + fn
    f1_den = tp + n_pred + fn  # 2TP + FP + FN
    # recall = TP / (TP + FN): ∂/∂TP = FN / (TP + FN)², ∂/∂FN = -TP / (TP + FN)²
    recall_var = _quotient(fn**2 * var_tp + tp**2 * var_fn, actual**4)
    # F1 = 2TP / (TP + n_pred + FN): ∂/∂TP = 2 (n_pred + FN) / D², ∂/∂FN = -2TP / D²
    f1_var = _quotient(4.0 * ((n_pred + fn) ** 2 * var_tp + tp**2 * var_fn), f1_den**4)
    total = pred + oth
    _, grad = auc_gradient(total * rates, total)
    auc_var = (grad**2 * total * spread).sum(axis=-1)  # NaN where the AUC is undefined
    return {
        "var_tp": var_tp,
        "var_fn": var_fn,
        "precision": np.sqrt(_quotient(var_tp, n_pred**2)),
        "recall": np.sqrt(recall_var),
        "f1": np.sqrt(f1_var),
        "roc_auc": np.sqrt(auc_var),
    }


def binary_sds(pred: np.ndarray, oth: np.ndarray, rate: np.ndarray) -> dict[str, float]:
    """Sds of the positive class's metrics; accuracy's is exact: ``var = (var_TP + var_FN) / n²``."""
    row = row_sds(pred[None], oth[None], rate[None])
    n = float(pred.sum() + oth.sum())
    out = {name: float(row[name][0]) for name in ("precision", "recall", "f1", "roc_auc")}
    return {"accuracy": float(np.sqrt(row["var_tp"][0] + row["var_fn"][0])) / n, **out}


def multiclass_sds(pred: np.ndarray, oth: np.ndarray, rates: np.ndarray) -> dict[str, float]:
    """Accuracy's exact sd (``Σ_k var(TP_k) / n²``: its events are disjoint) and the macro sds.

    A macro metric is the mean of the ``K`` classes where it is defined; with the classes taken as
    independent its variance is ``Σ_k var_k / K²`` (an approximation: an event has one label).
    """
    rows = row_sds(pred, oth, rates)
    out = {"accuracy": float(np.sqrt(rows["var_tp"].sum())) / float(pred.sum())}
    for name in ("precision", "recall", "f1", "roc_auc"):
        sd = rows[name]
        defined = np.isfinite(sd)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out[name] = float(np.sqrt((sd[defined] ** 2).sum()) / defined.sum()) if defined.any() else np.nan
    return out
