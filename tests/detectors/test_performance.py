"""Performance metrics: hand-worked examples, numpy/scipy references to 1e-9, aggregates, edge cases."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from detectors.base import Aggregate, registered_aggregates
from detectors.metric import Metric
from detectors.performance import (
    ConfusionMatrixAggregate,
    RegressionAggregate,
    ScoreHistogramAggregate,
    classification,
    classification_from,
    regression,
    regression_from,
)

TOL = 1e-9


def values(result: dict[str, Metric]) -> dict[str, float]:
    return {name: metric.value for name, metric in result.items()}


# --- hand-worked examples ---------------------------------------------------------------------------


def test_binary_hand_worked_example() -> None:
    # TP = 3 (rows 0, 2, 6), FN = 1 (row 1), FP = 1 (row 4), TN = 3.
    y_true = [1, 1, 1, 0, 0, 0, 1, 0]
    y_pred = [1, 0, 1, 0, 1, 0, 1, 0]
    score = [0.9, 0.4, 0.8, 0.3, 0.6, 0.1, 0.7, 0.4]
    m = values(classification(y_true, y_pred, score))
    assert m["count"] == 8
    assert m["accuracy"] == 6 / 8
    assert m["precision"] == 3 / 4 and m["recall"] == 3 / 4 and m["f1"] == 3 / 4
    # Positive scores 0.9, 0.4, 0.8, 0.7 against negatives 0.3, 0.6, 0.1, 0.4: 14 wins, one tie.
    assert m["roc_auc"] == pytest.approx(14.5 / 16, abs=TOL)
    probability_of_truth = [0.9, 0.4, 0.8, 0.7, 0.4, 0.9, 0.7, 0.6]
    assert m["log_loss"] == pytest.approx(-sum(map(math.log, probability_of_truth)) / 8, abs=TOL)


def test_multiclass_hand_worked_example() -> None:
    # Confusion matrix (rows true a, b, c): [[1, 1, 0], [0, 2, 0], [1, 0, 1]].
    m = values(classification(list("aabbcc"), list("abbbca")))
    assert m["accuracy"] == pytest.approx(4 / 6, abs=TOL)
    assert m["precision"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3, abs=TOL)
    assert m["recall"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3, abs=TOL)
    assert m["f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3, abs=TOL)


def test_macro_counts_a_never_predicted_class_as_zero_precision() -> None:
    m = values(classification(["a", "b", "c"], ["a", "b", "b"]))
    assert m["precision"] == pytest.approx((1 + 1 / 2 + 0) / 3, abs=TOL)
    assert m["recall"] == pytest.approx((1 + 1 + 0) / 3, abs=TOL)


def test_regression_hand_worked_example() -> None:
    m = values(regression([3.0, -0.5, 2.0, 7.0], [2.5, 0.0, 2.0, 8.0]))
    assert m["mae"] == 0.5
    assert m["rmse"] == pytest.approx(math.sqrt(0.375), abs=TOL)
    assert m["mape"] == pytest.approx((0.5 / 3 + 0.5 / 0.5 + 0 + 1 / 7) / 4, abs=TOL)
    # mean 2.875; total sum of squares 29.1875; squared error 1.5
    assert m["r2"] == pytest.approx(1 - 1.5 / 29.1875, abs=TOL)


def test_labels_of_different_types_name_the_same_class() -> None:
    cm = ConfusionMatrixAggregate()
    cm.update_batch(np.array([1, 0, 1]), np.array(["1", "0", "0"]))
    cm.update_batch(np.array([1.0, True]), np.array([True, 1.0]))
    assert cm.labels == ("0", "1")
    assert cm.counts.tolist() == [[1, 0], [1, 3]]


# --- references on random data ------------------------------------------------------------------------


def _binary_data(seed: int, n: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = (rng.random(n) < 0.3).astype(int)
    score = np.clip(rng.beta(2, 5, n) + 0.3 * y_true, 0, 1)
    score[:20] = np.round(score[:20], 1)  # some ties
    return y_true, (score >= 0.5).astype(int), score


def _rank_auc_reference(score: np.ndarray, positive: np.ndarray) -> float:
    u = stats.mannwhitneyu(score[positive], score[~positive], alternative="two-sided").statistic
    return float(u) / (positive.sum() * (~positive).sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_metrics_match_the_formulas(seed: int) -> None:
    y_true, y_pred, score = _binary_data(seed)
    m = values(classification(y_true, y_pred, score))
    tp = np.sum((y_true == 1) & (y_pred == 1))
    fp = np.sum((y_true == 0) & (y_pred == 1))
    fn = np.sum((y_true == 1) & (y_pred == 0))
    assert m["accuracy"] == pytest.approx(np.mean(y_true == y_pred), abs=TOL)
    assert m["precision"] == pytest.approx(tp / (tp + fp), abs=TOL)
    assert m["recall"] == pytest.approx(tp / (tp + fn), abs=TOL)
    assert m["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=TOL)
    p = np.clip(score, 1e-15, 1 - 1e-15)
    assert m["log_loss"] == pytest.approx(
        -np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)), abs=TOL
    )
    assert m["roc_auc"] == pytest.approx(_rank_auc_reference(score, y_true == 1), abs=TOL)


def test_multiclass_metrics_match_the_formulas() -> None:
    rng = np.random.default_rng(7)
    classes = ["x", "y", "z", "w"]
    n = 3000
    truth_index = rng.integers(0, 4, n)
    logits = rng.normal(size=(n, 4)) + 1.5 * np.eye(4)[truth_index]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y_true = np.array(classes)[truth_index]
    y_pred = np.array(classes)[proba.argmax(axis=1)]
    m = values(classification(y_true, y_pred, proba, classes=classes))
    precisions, recalls, f1s, aucs = [], [], [], []
    for label in classes:
        tp = np.sum((y_true == label) & (y_pred == label))
        predicted, actual = np.sum(y_pred == label), np.sum(y_true == label)
        precisions.append(tp / predicted)
        recalls.append(tp / actual)
        f1s.append(2 * tp / (predicted + actual))
        aucs.append(_rank_auc_reference(proba[:, classes.index(label)], y_true == label))
    assert m["precision"] == pytest.approx(np.mean(precisions), abs=TOL)
    assert m["recall"] == pytest.approx(np.mean(recalls), abs=TOL)
    assert m["f1"] == pytest.approx(np.mean(f1s), abs=TOL)
    assert m["roc_auc"] == pytest.approx(np.mean(aucs), abs=TOL)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log(proba[np.arange(n), truth_index])), abs=TOL)


def test_regression_matches_the_formulas() -> None:
    rng = np.random.default_rng(3)
    y_true = rng.normal(50, 10, 5000)
    y_pred = y_true + rng.normal(0, 3, 5000)
    m = values(regression(y_true, y_pred))
    error = y_pred - y_true
    assert m["mae"] == pytest.approx(np.mean(np.abs(error)), abs=TOL)
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean(error**2)), abs=TOL)
    assert m["mape"] == pytest.approx(np.mean(np.abs(error) / np.abs(y_true)), abs=TOL)
    r2 = 1 - np.sum(error**2) / np.sum((y_true - y_true.mean()) ** 2)
    assert m["r2"] == pytest.approx(r2, abs=TOL)


# --- window aggregates ---------------------------------------------------------------------------------


def test_merged_aggregates_equal_the_batch_function() -> None:
    y_true, y_pred, score = _binary_data(4, n=3000)
    parts = []
    for idx in np.array_split(np.arange(y_true.size), 5):
        cm, hist = ConfusionMatrixAggregate(), ScoreHistogramAggregate()
        cm.update_batch(y_true[idx], y_pred[idx])
        hist.update_batch(y_true[idx], score[idx])
        parts.append((cm, hist))
    cm, hist = parts[0]
    for other_cm, other_hist in parts[1:]:
        cm, hist = cm.merge(other_cm), hist.merge(other_hist)
    merged = values(classification_from(cm, hist))
    batch = values(classification(y_true, y_pred, score))
    for name in ("count", "accuracy", "precision", "recall", "f1"):
        assert merged[name] == batch[name]
    assert merged["log_loss"] == pytest.approx(batch["log_loss"], abs=TOL)
    assert abs(merged["roc_auc"] - batch["roc_auc"]) <= merged["roc_auc_error_bound"]


def test_roc_auc_from_1000_bins_is_within_its_documented_tolerance() -> None:
    rng = np.random.default_rng(11)
    n = 20_000
    y_true = (rng.random(n) < 0.2).astype(int)
    score = np.where(y_true == 1, rng.beta(5, 2, n), rng.beta(2, 5, n))
    hist = ScoreHistogramAggregate(bins=1000)
    hist.update_batch(y_true, score)
    auc, bound = hist.roc_auc()
    exact = _rank_auc_reference(score, y_true == 1)
    assert abs(auc.value - exact) <= bound
    # The bound sum_b pos_b * neg_b / (2 * n_pos * n_neg) is about 1e-4 for smooth scores.
    assert bound < 5e-4
    assert abs(auc.value - exact) < 1e-4


def test_one_bin_makes_every_pair_a_tie() -> None:
    hist = ScoreHistogramAggregate(bins=1)
    hist.update_batch(np.array([1, 0, 1]), np.array([0.9, 0.1, 0.5]))
    assert hist.roc_auc() == (Metric(0.5), 0.5)


def test_multiclass_histograms_grow_classes_as_if_missing_scores_were_zero() -> None:
    rng = np.random.default_rng(5)
    first_truth = rng.choice(np.array(["a", "b", "c"]), 50)
    first = rng.dirichlet(np.ones(2), 50)
    second_truth = rng.choice(np.array(["a", "b", "c"]), 40)
    second = rng.dirichlet(np.ones(3), 40)
    grown = ScoreHistogramAggregate(bins=50, pos_label=None)
    grown.update_batch(first_truth, first, classes=["a", "b"])
    later = ScoreHistogramAggregate(bins=50, pos_label=None)
    later.update_batch(second_truth, second, classes=["c", "a", "b"])
    padded = ScoreHistogramAggregate(bins=50, pos_label=None)
    padded.update_batch(first_truth, np.column_stack([first, np.zeros(50)]), classes=["a", "b", "c"])
    padded.update_batch(second_truth, second[:, [1, 2, 0]], classes=["a", "b", "c"])
    assert grown.merge(later) == padded
    assert later.merge(grown) == padded
    grown.update_batch(second_truth, second, classes=["c", "a", "b"])
    assert grown == padded


def test_multiclass_aggregate_matches_the_batch_function() -> None:
    rng = np.random.default_rng(8)
    classes = ["a", "b", "c"]
    y_true = rng.choice(np.array(classes), 4000)
    proba = rng.dirichlet(np.ones(3), 4000)
    y_pred = np.array(classes)[proba.argmax(axis=1)]
    cm, hist = ConfusionMatrixAggregate(), ScoreHistogramAggregate(pos_label=None)
    cm.update_batch(y_true, y_pred)
    hist.update_batch(y_true, proba, classes=classes)
    merged = values(classification_from(cm, hist))
    batch = values(classification(y_true, y_pred, proba, classes=classes))
    assert merged["f1"] == batch["f1"]
    assert merged["log_loss"] == pytest.approx(batch["log_loss"], abs=TOL)
    assert abs(merged["roc_auc"] - batch["roc_auc"]) <= merged["roc_auc_error_bound"] + TOL


def test_regression_aggregate_merges_to_the_batch_values() -> None:
    rng = np.random.default_rng(9)
    y_true, y_pred = rng.normal(10, 2, 1000), rng.normal(10, 2, 1000)
    y_true[:5] = 0.0
    parts = [RegressionAggregate() for _ in range(4)]
    for part, idx in zip(parts, np.array_split(np.arange(1000), 4), strict=True):
        part.update_batch(y_true[idx], y_pred[idx])
    merged = parts[0].merge(parts[1]).merge(parts[2].merge(parts[3]))
    assert merged.n_mape_excluded == 5
    for name, value in regression(y_true, y_pred).items():
        assert regression_from(merged)[name].value == pytest.approx(value.value, abs=TOL)


# --- edge cases: NaN with a reason, never an exception ------------------------------------------------


def test_empty_window_gives_nan_with_reasons() -> None:
    result = classification([], [], [])
    assert result["count"] == Metric(0.0)
    for name in ("accuracy", "precision", "recall", "f1"):
        assert math.isnan(result[name].value) and result[name].reason == "empty window"
    assert result["roc_auc"].reason == "no scored rows"
    assert classification_from(ConfusionMatrixAggregate(), ScoreHistogramAggregate())["log_loss"].reason
    empty = regression_from(RegressionAggregate())
    assert all(m.reason == "empty window" for name, m in empty.items() if name != "count")


def test_single_class_and_zero_division() -> None:
    result = classification([0, 0, 0], [0, 0, 0], [0.1, 0.2, 0.3])
    assert result["accuracy"] == Metric(1.0)
    assert result["precision"].reason == "no positive predictions"
    assert result["recall"].reason == "no positive labels"
    assert result["f1"].reason == "no positive labels or predictions"
    assert result["roc_auc"].reason == "single class in y_true"
    assert not math.isnan(result["log_loss"].value)
    hist = ScoreHistogramAggregate()
    hist.update_batch(np.array([1, 1]), np.array([0.2, 0.9]))
    auc, bound = classification_from(ConfusionMatrixAggregate(), hist)["roc_auc"], hist.roc_auc()[1]
    assert auc.reason == "single class in y_true" and math.isnan(bound)


def test_regression_edge_cases() -> None:
    constant = regression([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])
    assert constant["r2"].reason == "y_true is constant"
    assert constant["mae"].value == pytest.approx(2 / 3)
    zeros = regression([0.0, 0.0], [1.0, -1.0])
    assert zeros["mape"].reason == "y_true is 0 in every row"
    agg = RegressionAggregate()
    agg.update_batch(np.array([1.0, np.nan, np.inf, 2.0]), np.array([1.0, 1.0, 1.0, np.nan]))
    assert (agg.count, agg.n_invalid) == (1, 3)
    tiny = regression(1e9 + np.array([0.0, 1e-3, 2e-3]), np.full(3, 1e9))
    assert tiny["r2"].reason is not None and "varies too little" in tiny["r2"].reason


def test_invalid_rows_are_left_out_and_counted() -> None:
    hist = ScoreHistogramAggregate()
    hist.update_batch(np.array([1, 0, None, 1], dtype=object), np.array([0.9, 1.5, 0.3, np.nan]))
    assert (hist.count, hist.n_invalid) == (1, 3)
    cm = ConfusionMatrixAggregate()
    cm.update_batch(np.array([1, None, 0], dtype=object), np.array([1.0, 1.0, np.nan]))
    assert (cm.total, cm.n_invalid) == (1, 2)


def test_settings_and_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="auto, binary, macro"):
        classification([1], [1], average="micro")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="differ in length"):
        classification([1, 0], [1])
    with pytest.raises(ValueError, match="bins must be a positive integer"):
        ScoreHistogramAggregate(bins=0)
    with pytest.raises(ValueError, match="classes"):
        ScoreHistogramAggregate(pos_label=None).update_batch(np.array(["a"]), np.array([[1.0]]))
    with pytest.raises(ValueError, match="different settings"):
        ScoreHistogramAggregate(bins=10).merge(ScoreHistogramAggregate(bins=20))
    with pytest.raises(ValueError, match="multiclass scores"):
        classification_from(ConfusionMatrixAggregate(["a", "b", "c"]), ScoreHistogramAggregate())


def test_performance_aggregates_are_registered() -> None:
    kinds = registered_aggregates()
    assert kinds["confusion_matrix"] is ConfusionMatrixAggregate
    assert kinds["score_histogram"] is ScoreHistogramAggregate
    assert kinds["regression"] is RegressionAggregate


# --- merge properties (hypothesis) ---------------------------------------------------------------------

labels = st.sampled_from([0, 1, 2, "1", "a", 1.0, True])
label_batches = st.lists(st.tuples(labels, labels), max_size=30)
score_batches = st.lists(st.tuples(st.integers(0, 1), st.floats(0, 1)), max_size=30)
number = st.floats(-1e6, 1e6, allow_nan=False)
regression_batches = st.lists(st.tuples(number | st.just(0.0), number), max_size=30)


def _cm(batch: list[tuple[object, object]]) -> ConfusionMatrixAggregate:
    agg = ConfusionMatrixAggregate()
    agg.update_batch(
        np.array([t for t, _ in batch], dtype=object), np.array([p for _, p in batch], dtype=object)
    )
    return agg


def _hist(batch: list[tuple[int, float]]) -> ScoreHistogramAggregate:
    agg = ScoreHistogramAggregate(bins=16)
    agg.update_batch(np.array([t for t, _ in batch], dtype=int), np.array([s for _, s in batch], dtype=float))
    return agg


def _multi(batch: list[tuple[int, float]]) -> ScoreHistogramAggregate:
    agg = ScoreHistogramAggregate(bins=8, pos_label=None)
    classes = ["a", "b", "c"][: 1 + len(batch) % 3]
    scores = np.array([[s] * len(classes) for _, s in batch]).reshape(len(batch), len(classes)) / len(classes)
    agg.update_batch(np.array(["abc"[t + len(batch) % 2] for t, _ in batch]), scores, classes=classes)
    return agg


def _reg(batch: list[tuple[float, float]]) -> RegressionAggregate:
    agg = RegressionAggregate()
    agg.update_batch(
        np.array([t for t, _ in batch], dtype=float), np.array([p for _, p in batch], dtype=float)
    )
    return agg


@pytest.mark.parametrize(
    ("build", "batches"),
    [(_cm, label_batches), (_hist, score_batches), (_multi, score_batches), (_reg, regression_batches)],
    ids=["confusion_matrix", "score_histogram", "score_histogram_multiclass", "regression"],
)
def test_merge_is_exactly_associative_and_commutative(
    build: Callable[[Any], Aggregate], batches: st.SearchStrategy[Any]
) -> None:
    @settings(max_examples=60, deadline=None)
    @given(batches, batches, batches)
    def check(a: Any, b: Any, c: Any) -> None:
        x, y, z = build(a), build(b), build(c)
        before = x.to_dict()
        assert x.merge(y).to_dict() == y.merge(x).to_dict()
        assert x.merge(y).merge(z).to_dict() == x.merge(y.merge(z)).to_dict()
        assert x.to_dict() == before
        data = json.loads(json.dumps(x.merge(y).to_dict(), allow_nan=False))
        assert type(x).from_dict(data) == x.merge(y)

    check()


def test_regression_sums_do_not_depend_on_batching() -> None:
    """A replay that batches the same rows differently rebuilds the identical aggregate."""
    rng = np.random.default_rng(11)
    y_true = np.concatenate([rng.normal(0, 1e6, 300), rng.normal(0, 1e-6, 300), [0.0, 1e150, np.nan]])
    y_pred = y_true + rng.normal(0, 1, y_true.size)
    whole = RegressionAggregate()
    whole.update_batch(y_true, y_pred)
    pieces = [RegressionAggregate() for _ in range(3)]
    for piece, idx in zip(pieces, np.array_split(rng.permutation(y_true.size), 3), strict=True):
        piece.update_batch(y_true[idx], y_pred[idx])
    assert pieces[2].merge(pieces[0]).merge(pieces[1]).to_dict() == whole.to_dict()
    assert whole.sum_y == sum((Fraction(v) for v in y_true[np.isfinite(y_true)]), Fraction(0))
