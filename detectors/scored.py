"""Scores, predictions and labels as the performance estimator (``detectors.estimation``) takes them.

One convention for the stream's fold (:mod:`streams.bundle`), reference files
(:mod:`detectors.profiles.files`), automatic references and offline frames:

- **Classes.** A binary model has classes ``(negative, positive)``: the positive class is the
  spec's ``positive_class``; every other label is the negative class, named after the spec's other
  class when ``classes`` lists two, else ``"0"`` (positive ``"1"``) or ``"not <positive>"``. A
  multiclass model has the spec's ``classes`` (canonical text, in spec order) or, without them,
  the classes its score dicts carry.
- **Scores.** A binary event's ``score`` = P(positive) becomes the row ``[1 - s, s]``; a multiclass
  event's ``scores`` dict one column per class (a class it lacks: 0, as the score histograms
  read it). Rows without a score are NaN, which :meth:`ScoreBins.add` leaves out.
- **Predicted class and label** as an index into the classes, -1 where missing or unknown.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import compress, repeat
from operator import is_not
from typing import Any, cast

import numpy as np

from detectors.estimation import Calibration, ScoreBins, binary_scores
from detectors.labels import canonical_label, canonical_labels
from detectors.score_histogram import ScoreHistogramAggregate
from modelmon.spec import ModelSpec, Task


def estimation_classes(spec: ModelSpec) -> tuple[str, ...] | None:
    """The classes of ``spec``'s scores: ``()`` for multiclass without ``classes``, None for regression.

    >>> from modelmon.spec import parse_spec
    >>> features = {"x": {"type": "numerical"}}
    >>> estimation_classes(parse_spec({"model_id": "m", "task": "binary", "features": features}))
    ('0', '1')
    >>> spec = {"model_id": "m", "task": "binary", "features": features, "positive_class": "fraud"}
    >>> named = {**spec, "classes": ["ok", "fraud"]}
    >>> estimation_classes(parse_spec(spec)), estimation_classes(parse_spec(named))
    (('not fraud', 'fraud'), ('ok', 'fraud'))
    """
    if spec.task is Task.REGRESSION:
        return None
    declared = [text for text in map(canonical_label, spec.classes or ()) if text is not None]
    if spec.task is Task.MULTICLASS:
        return tuple(dict.fromkeys(declared))
    positive = canonical_label(spec.positive_class) or spec.positive_class
    others = [text for text in declared if text != positive]
    if len(others) == 1:
        return (others[0], positive)
    return ("0" if positive == "1" else f"not {positive}", positive)


def class_index(values: Any, classes: Sequence[str], *, binary: bool) -> np.ndarray:
    """Each label's (or prediction's) index in ``classes``; -1 where missing or not a class.

    Binary: 1 for the positive class (``classes[1]``), 0 for any other present label.

    >>> class_index(["1", 0, None, 1.0], ("0", "1"), binary=True).tolist()
    [1, 0, -1, 1]
    >>> class_index(["b", "z", "a"], ("a", "b"), binary=False).tolist()
    [1, -1, 0]
    """
    return text_index(*canonical_labels(_typed(values)), classes, binary=binary)


def text_index(text: np.ndarray, valid: np.ndarray, classes: Sequence[str], *, binary: bool) -> np.ndarray:
    """:func:`class_index` of labels already in canonical text (``detectors.labels.canonical_labels``)."""
    if binary:
        return np.where(valid, (text == classes[1]).astype(np.int64), -1)
    index = np.full(text.shape, -1, dtype=np.int64)
    for position, label in enumerate(classes):
        index[valid & (text == label)] = position
    return index


def class_score_matrix(rows: Sequence[dict[str, float] | None], classes: Sequence[str]) -> np.ndarray:
    """``(n, k)`` scores from per-class dicts (a class a dict lacks: 0); NaN rows where there is no dict.

    >>> class_score_matrix([{"a": 0.7, "b": 0.3}, None, {"b": 1.0}], ("a", "b")).tolist()
    [[0.7, 0.3], [nan, nan], [0.0, 1.0]]
    """
    n = len(rows)
    matrix = np.full((n, len(classes)), np.nan)
    scored = np.fromiter(map(is_not, rows, repeat(None)), bool, n)
    present = cast(list[dict[str, float]], list(compress(rows, scored)))
    m = len(present)
    for column, label in enumerate(classes):
        # map() runs in C: one pass per class, no Python loop per event.
        matrix[scored, column] = np.fromiter(
            map(dict.get, present, repeat(label), repeat(0.0)), np.float64, m
        )
    return matrix


def score_classes(rows: Sequence[dict[str, float] | None]) -> tuple[str, ...]:
    """The sorted classes a batch's score dicts carry."""
    present = cast(list[dict[str, float]], list(compress(rows, map(is_not, rows, repeat(None)))))
    return tuple(sorted(set[str]().union(*present)))


def fold_scores(
    bins: ScoreBins,
    predicted: tuple[np.ndarray, np.ndarray],
    *,
    binary: bool,
    score: np.ndarray | None = None,
    class_scores: Sequence[dict[str, float] | None] | None = None,
) -> ScoreBins:
    """``bins`` with a batch of predictions folded in (one vectorised :meth:`ScoreBins.add`).

    ``predicted``: the predictions' canonical text and mask (``canonical_labels``). Binary:
    ``score`` per row (NaN = no score). Multiclass: ``class_scores``, one dict or None per row;
    with no classes fixed up front, the batch's own classes are used and merged in. Rows without
    a score are skipped; a score outside [0, 1] or an unknown predicted class counts in
    ``n_invalid``.
    """
    if binary:
        if score is not None:
            scored = ~np.isnan(score)  # a prediction without a score is not counted, nor invalid
            index = text_index(*predicted, bins.classes, binary=True)
            bins.add(binary_scores(score[scored]), index[scored])
        return bins
    classes = bins.classes or (score_classes(class_scores) if class_scores is not None else ())
    if class_scores is None or not classes:
        return bins
    target = bins if classes == bins.classes else ScoreBins.empty(classes)
    matrix = class_score_matrix(class_scores, classes)
    scored = ~np.isnan(matrix[:, 0])  # NaN rows: no score dict
    target.add(matrix[scored], text_index(*predicted, classes, binary=False)[scored])
    return bins if target is bins else bins.merge(target)


def fit_calibration(
    classes: Sequence[str], labels: Any, scores: np.ndarray, *, binary: bool
) -> tuple[Calibration | None, int]:
    """The calibration fitted on labelled, scored rows, and how many rows it used (None when none)."""
    truth = class_index(labels, classes, binary=binary)
    with np.errstate(invalid="ignore"):
        usable = (truth >= 0) & (np.isfinite(scores) & (scores >= 0.0) & (scores <= 1.0)).all(axis=1)
    rows = int(np.count_nonzero(usable))
    if rows == 0:
        return None, 0
    return Calibration.fit(tuple(classes), scores[usable], truth[usable]), rows


def calibration_from_histograms(
    spec: ModelSpec, histograms: Sequence[ScoreHistogramAggregate]
) -> tuple[Calibration | None, int]:
    """The calibration of labelled score histograms (an automatic reference's windows), and their rows.

    Merged, then re-binned by :meth:`Calibration.from_score_histogram`; a multiclass spec without
    ``classes`` takes the histograms' classes.
    """
    classes = estimation_classes(spec)
    used = [h for h in histograms if h.count]
    if classes is None or not used:
        return None, 0
    merged = used[0]
    for other in used[1:]:
        merged = merged.merge(other)
    return Calibration.from_score_histogram(merged, classes or merged.classes), merged.count


def _typed(values: Any) -> np.ndarray:
    """Labels as a typed array when they share one type (their canonical text is then vectorised)."""
    if isinstance(values, np.ndarray):
        return values
    items = list(values)
    if set(map(type, items)) <= {int} or set(map(type, items)) <= {str}:
        try:
            return np.asarray(items)
        except OverflowError:  # an int beyond int64
            pass
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array
