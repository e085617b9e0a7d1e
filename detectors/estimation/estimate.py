"""Expected classification metrics of a window, and their sampling band, from calibrated score bins."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from detectors.estimation.analytic import binary_sds, multiclass_sds
from detectors.estimation.bins import ScoreBins, binary_scores
from detectors.estimation.calibration import Calibration

ESTIMATED_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
TASKS = ("binary", "multiclass")
BANDS = ("normal", "draws")


@dataclass(frozen=True)
class Estimate:
    """An estimated metric and its sampling band (``lower <= value <= upper``)."""

    value: float
    lower: float
    upper: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "lower": self.lower, "upper": self.upper}


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den``, NaN where ``den`` is 0 (an undefined metric)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den > 0)


def _counts_metrics(tp: Any, fp: Any, fn: Any) -> dict[str, np.ndarray]:
    """Precision, recall and F1 of (expected or drawn) confusion counts; NaN where undefined."""
    return {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def _roc_auc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """ROC AUC over the last axis (score bins, ascending) from positives and negatives per bin.

    A positive beats every negative in a lower bin and ties (counts 1/2) with those in its own bin.
    """
    below = np.cumsum(neg, axis=-1) - neg
    wins = (pos * below).sum(axis=-1) + 0.5 * (pos * neg).sum(axis=-1)
    return _ratio(wins, pos.sum(axis=-1) * neg.sum(axis=-1))


def _draw(rng: np.random.Generator, counts: np.ndarray, rates: np.ndarray, draws: int) -> np.ndarray:
    """``draws`` samples of positives in every cell: shape ``(draws, *counts.shape)``.

    A cell's positives are binomial(count, rate); they are drawn from its normal approximation
    (same mean and variance, clipped to [0, count]), about 30 times faster than binomial draws. The
    metrics are sums over many cells, so their distribution is that of the exact draws to within
    the central limit theorem; ``tests/detectors/test_estimation.py`` checks the band's coverage.
    """
    counts = counts.astype(np.float64)
    mean = counts * rates
    spread = np.sqrt(mean * (1.0 - rates))
    noise = rng.standard_normal((draws, *counts.shape))
    return np.clip(mean + spread * noise, 0.0, counts)


def _binary(pred: np.ndarray, oth: np.ndarray, rate: np.ndarray, rng: np.random.Generator, draws: int):
    """Expected metrics and per-draw metrics of the positive class's row."""
    n = pred.sum() + oth.sum()
    total = (pred + oth).astype(np.float64)

    def metrics(tp_bins: np.ndarray, fn_bins: np.ndarray) -> dict[str, np.ndarray]:
        tp, fn = tp_bins.sum(axis=-1), fn_bins.sum(axis=-1)
        fp, tn = pred.sum() - tp, oth.sum() - fn
        pos = tp_bins + fn_bins
        return {
            "accuracy": _ratio(tp + tn, n),
            **_counts_metrics(tp, fp, fn),
            "roc_auc": _roc_auc(pos, total - pos),
        }

    expected = metrics(pred * rate, oth * rate)
    drawn = metrics(_draw(rng, pred, rate, draws), _draw(rng, oth, rate, draws)) if draws else None
    return expected, drawn


def _macro(per_class: np.ndarray) -> np.ndarray:
    """Mean over the class axis (-1) of the defined values; NaN if none is."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(per_class, axis=-1)


def _multiclass(pred: np.ndarray, oth: np.ndarray, rates: np.ndarray, rng: np.random.Generator, draws: int):
    """Accuracy and macro one-vs-rest metrics over all classes' rows."""
    n = pred.sum()
    total = (pred + oth).astype(np.float64)

    def metrics(tp_bins: np.ndarray, fn_bins: np.ndarray) -> dict[str, np.ndarray]:
        tp, fn = tp_bins.sum(axis=-1), fn_bins.sum(axis=-1)  # per class
        fp = pred.sum(axis=-1) - tp
        pos = tp_bins + fn_bins
        per_class = {**_counts_metrics(tp, fp, fn), "roc_auc": _roc_auc(pos, total - pos)}
        return {"accuracy": _ratio(tp.sum(axis=-1), n), **{k: _macro(v) for k, v in per_class.items()}}

    expected = metrics(pred * rates, oth * rates)
    drawn = metrics(_draw(rng, pred, rates, draws), _draw(rng, oth, rates, draws)) if draws else None
    return expected, drawn


def estimate(
    bins: ScoreBins,
    calibration: Calibration,
    *,
    task: str,
    positive: str | None = None,
    band: str = "normal",
    draws: int = 400,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Estimate]:
    """Estimated metrics of a window without labels, each with a sampling band.

    ``value`` is the metric of the expected confusion counts under the calibrated probabilities:
    per bin, expected true positives = events predicted ``k`` * rate, false negatives = events not
    predicted ``k`` * rate (accuracy, a mean, is then exactly its expectation; precision, recall
    and F1 are ratios of expectations). ROC AUC uses expected positives and negatives per bin,
    scores within a bin counted as tied (1/2), as ``ScoreHistogramAggregate`` does.

    The band is the sampling error of the realized metric if the calibration holds: the positives
    of each bin are independent binomials (count, rate). ``band="normal"`` (default, O(bins), no
    random draws): ``value ± z·sd`` with ``z`` the normal quantile of ``level``, clipped to [0, 1];
    the sd is exact for accuracy (a sum of the binomials) and the delta method's (first order, at
    the expected counts) for precision, recall, F1 and ROC AUC (see ``detectors.estimation.analytic``).
    ``band="draws"``: ``draws`` samples of the positives per bin (drawn from each binomial's normal
    approximation with ``numpy.random.Generator(seed)``), each metric computed per sample, and its
    ``(1 - level) / 2`` and ``1 - (1 - level) / 2`` quantiles; ``seed`` and ``draws`` only matter
    there. Either band is widened to contain ``value``. It leaves out the calibration's own error
    (finite reference) and any concept drift. Deterministic.

    ``task="binary"``: ``calibration.classes`` are (negative, positive), or ``positive`` names the
    positive class; metrics are the positive class's. ``task="multiclass"``: accuracy, and the
    macro mean over classes (one-vs-rest) of precision, recall, F1 and ROC AUC, over the classes
    where each is defined. Classes are taken as independent, so macro bands ignore that an event
    has one label (accuracy's is exact: its events are disjoint). A metric undefined for the window
    (e.g. precision with no predicted positive) is left out; an empty window gives ``{}``. Counts
    for a class the calibration does not know raise ``ValueError``.

    Examples
    --------
    Ten events predicted positive in a bin whose calibrated rate is 0.9, ten predicted negative in a
    bin with rate 0.1: 9 true positives and 9 true negatives expected, so accuracy 18 / 20.

    >>> rates = np.tile(np.linspace(0.005, 0.995, 100), (2, 1))
    >>> rates[1, 90], rates[1, 10] = 0.9, 0.1
    >>> cal = Calibration(("0", "1"), rates)
    >>> bins = ScoreBins.empty(["0", "1"])
    >>> scores = binary_scores(np.r_[np.full(10, 0.905), np.full(10, 0.105)])
    >>> bins.add(scores, np.r_[np.ones(10, int), np.zeros(10, int)])
    >>> est = estimate(bins, cal, task="binary")
    >>> round(est["accuracy"].value, 12), round(est["precision"].value, 12), round(est["recall"].value, 12)
    (0.9, 0.9, 0.9)
    >>> est["accuracy"].lower < 0.9 < est["accuracy"].upper
    True
    >>> estimate(ScoreBins.empty(["0", "1"]), cal, task="binary")
    {}
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if band not in BANDS:
        raise ValueError(f"band must be one of {BANDS}, got {band!r}")
    if draws < 0:
        raise ValueError(f"draws must be >= 0, got {draws!r}")
    aligned = bins.aligned(calibration.classes)
    if aligned.count == 0:
        return {}
    rng = np.random.Generator(np.random.PCG64(seed))
    draws = draws if band == "draws" else 0
    if task == "binary":
        classes = calibration.classes
        if len(classes) != 2:
            raise ValueError(f"a binary estimate needs 2 classes, got {list(classes)!r}")
        label = classes[1] if positive is None else str(positive)
        if label not in classes:
            raise ValueError(f"positive class {label!r} is not one of {list(classes)!r}")
        p = classes.index(label)
        rows = (aligned.predicted[p], aligned.other[p], calibration.rates[p])
        expected, drawn = _binary(*rows, rng, draws)
        sds = binary_sds(*rows) if band == "normal" else {}
    else:
        rows = (aligned.predicted, aligned.other, calibration.rates)
        expected, drawn = _multiclass(*rows, rng, draws)
        sds = multiclass_sds(*rows) if band == "normal" else {}
    tail = (1.0 - level) / 2.0
    z = NormalDist().inv_cdf(1.0 - tail)
    out: dict[str, Estimate] = {}
    for name in ESTIMATED_METRICS:
        value = float(expected[name])
        if not np.isfinite(value):
            continue
        if band == "normal":
            spread = z * sds[name] if np.isfinite(sds[name]) else 0.0
            lower, upper = max(value - spread, 0.0), min(value + spread, 1.0)
        else:
            samples = drawn[name] if drawn is not None else np.array([])
            samples = samples[np.isfinite(samples)]
            lower, upper = np.quantile(samples, [tail, 1.0 - tail]) if samples.size else (value, value)
        out[name] = Estimate(value, min(float(lower), value), max(float(upper), value))
    return out


def _as_index(values: Any, classes: tuple[str, ...]) -> np.ndarray:
    """Class indices from indices, booleans (binary: True is index 1) or class names (unknown: -1)."""
    array = np.asarray(values).reshape(-1)
    if array.dtype == bool or np.issubdtype(array.dtype, np.integer):
        return array.astype(np.int64)
    position = {label: i for i, label in enumerate(classes)}
    return np.array([position.get(str(v), -1) for v in array.tolist()], dtype=np.int64)


def _as_matrix(scores: Any, classes: tuple[str, ...]) -> np.ndarray:
    array = np.asarray(scores, dtype=np.float64)
    return binary_scores(array) if array.ndim == 1 and len(classes) == 2 else array


def estimate_from_arrays(
    reference_scores: Any,
    reference_labels: Any,
    current_scores: Any,
    current_predicted: Any,
    classes: Sequence[str],
    *,
    task: str,
    positive: str | None = None,
    **options: Any,
) -> dict[str, Estimate]:
    """Calibrate on the labelled reference and estimate the current window, from arrays.

    Scores are ``(n, k)`` aligned with ``classes``, or for two classes a 1-D P(``classes[1]``)
    (see :func:`binary_scores`); labels and predictions are class indices or class names.
    ``options`` (band, draws, seed, level) go to :func:`estimate`.

    >>> rng = np.random.default_rng(1)
    >>> ref = rng.uniform(size=5000)
    >>> cur = rng.uniform(0.5, 1.0, size=2000)  # all confident-ish positives
    >>> labels = rng.uniform(size=5000) < ref  # scores calibrated by construction
    >>> est = estimate_from_arrays(ref, labels, cur, (cur >= 0.5).astype(int), ["0", "1"], task="binary")
    >>> abs(est["accuracy"].value - 0.75) < 0.02  # mean of P(positive) over U(0.5, 1)
    True
    """
    classes = tuple(str(c) for c in classes)
    calibration = Calibration.fit(
        classes, _as_matrix(reference_scores, classes), _as_index(reference_labels, classes)
    )
    bins = ScoreBins.empty(classes)
    bins.add(_as_matrix(current_scores, classes), _as_index(current_predicted, classes))
    return estimate(bins, calibration, task=task, positive=positive, **options)
