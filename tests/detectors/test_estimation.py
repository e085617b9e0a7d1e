"""Performance estimation without labels (detectors.estimation): hand-worked examples, merge, bands."""

from __future__ import annotations

import json
from fractions import Fraction
from statistics import NormalDist

import numpy as np
import pytest
from scipy.optimize import isotonic_regression

from detectors.estimation import (
    N_BINS,
    Calibration,
    Estimate,
    ScoreBins,
    binary_scores,
    estimate,
    estimate_from_arrays,
    pool_adjacent_violators,
)
from detectors.estimation.analytic import auc_gradient
from detectors.estimation.estimate import _roc_auc
from detectors.score_histogram import ScoreHistogramAggregate

TIGHT = 1e-12


def binary_calibration(low: tuple[int, int], high: tuple[int, int]) -> Calibration:
    """Reference: ``low`` = (positives, total) in bin 5 (s = 0.05), ``high`` the same in bin 95."""
    positives = np.zeros((2, N_BINS), np.int64)
    totals = np.zeros((2, N_BINS), np.int64)
    positives[1, 5], totals[1, 5] = low
    positives[1, 95], totals[1, 95] = high
    positives[0] = (totals[1] - positives[1])[::-1]  # the negative class's score is 1 - s
    totals[0] = totals[1][::-1]
    return Calibration.from_counts(("no", "yes"), positives, totals)


def hand_window() -> ScoreBins:
    """30 events scored 0.95 and predicted positive, 20 scored 0.05 and predicted negative."""
    bins = ScoreBins.empty(("no", "yes"))
    bins.add(
        binary_scores(np.r_[np.full(30, 0.95), np.full(20, 0.05)]), np.r_[np.ones(30, int), np.zeros(20, int)]
    )
    return bins


def test_perfectly_calibrated_score_gives_the_expected_metrics_by_hand() -> None:
    # Reference: 9 of 10 events in bin 95 positive (rate 0.9), 1 of 10 in bin 5 (rate 0.1).
    cal = binary_calibration(low=(1, 10), high=(9, 10))
    assert cal.rates[1, 95] == 0.9 and cal.rates[1, 5] == 0.1
    # Window: 30 predicted positive in bin 95, 20 predicted negative in bin 5.
    #   expected TP = 30 * 0.9 = 27, FP = 3; FN = 20 * 0.1 = 2, TN = 18
    #   accuracy = (27 + 18) / 50 = 0.9, precision = 27 / 30, recall = 27 / 29, F1 = 54 / 59
    # ROC AUC from expected counts: positives 2 (bin 5) and 27 (bin 95), negatives 18 and 3;
    #   wins = 27 * 18 + (2 * 18 + 27 * 3) / 2 = 544.5, pairs = 29 * 21 = 609
    est = estimate(hand_window(), cal, task="binary")
    assert est["accuracy"].value == pytest.approx(0.9, abs=TIGHT)
    assert est["precision"].value == pytest.approx(27 / 30, abs=TIGHT)
    assert est["recall"].value == pytest.approx(27 / 29, abs=TIGHT)
    assert est["f1"].value == pytest.approx(54 / 59, abs=TIGHT)
    assert est["roc_auc"].value == pytest.approx(544.5 / 609, abs=TIGHT)
    for e in est.values():
        assert e.lower <= e.value <= e.upper and e.lower < e.upper


def test_estimated_roc_auc_is_the_auc_of_a_window_realizing_the_expected_counts() -> None:
    # Labels realizing exactly the expected counts: 2 of the 20 at s = 0.05 and 27 of the 30 at 0.95.
    scores = np.r_[np.full(20, 0.05), np.full(30, 0.95)]
    labels = np.r_[np.ones(2), np.zeros(18), np.ones(27), np.zeros(3)].astype(int)
    realized = ScoreHistogramAggregate(bins=N_BINS)
    realized.update_batch(labels, scores)
    est = estimate(hand_window(), binary_calibration(low=(1, 10), high=(9, 10)), task="binary")
    assert est["roc_auc"].value == pytest.approx(realized.roc_auc()[0].value, abs=TIGHT)
    assert est["accuracy"].value == pytest.approx(np.mean((scores >= 0.5) == labels), abs=TIGHT)


def test_multiclass_accuracy_and_macro_metrics_by_hand() -> None:
    classes = ("a", "b", "c")
    rates = np.empty((3, N_BINS))
    for k, (below, above) in enumerate([(0.1, 0.9), (0.2, 0.7), (0.25, 0.6)]):
        rates[k] = np.where(np.arange(N_BINS) < 50, below, above)
    cal = Calibration(classes, rates)
    bins = ScoreBins.empty(classes)
    rows = [[0.9, 0.05, 0.05]] * 10 + [[0.15, 0.7, 0.15]] * 5 + [[0.2, 0.2, 0.6]] * 5
    bins.add(np.array(rows), np.r_[np.zeros(10, int), np.ones(5, int), np.full(5, 2)])
    # a: TP 10 * 0.9 = 9, FP 1, FN (5 + 5) * 0.1 = 1   -> precision 0.9, recall 0.9, F1 18 / 20
    # b: TP 5 * 0.7 = 3.5, FP 1.5, FN 15 * 0.2 = 3     -> 0.7, 3.5 / 6.5, 7 / 11.5
    # c: TP 5 * 0.6 = 3, FP 2, FN 15 * 0.25 = 3.75     -> 0.6, 3 / 6.75, 6 / 11.75
    # accuracy = (9 + 3.5 + 3) / 20
    est = estimate(bins, cal, task="multiclass")
    assert est["accuracy"].value == pytest.approx(15.5 / 20, abs=TIGHT)
    assert est["precision"].value == pytest.approx((0.9 + 0.7 + 0.6) / 3, abs=TIGHT)
    assert est["recall"].value == pytest.approx((0.9 + 3.5 / 6.5 + 3 / 6.75) / 3, abs=TIGHT)
    assert est["f1"].value == pytest.approx((0.9 + 7 / 11.5 + 6 / 11.75) / 3, abs=TIGHT)
    # ROC AUC one-vs-rest from expected (positives, negatives) per score bin, ties in a bin count 1/2:
    # a: bin 15 (0.5, 4.5), bin 20 (0.5, 4.5), bin 90 (9, 1)
    #    wins = 0.5*0.5*4.5 + (0.5*4.5 + 0.5*0.5*4.5) + (9*9 + 0.5*9*1) = 90 of 10 * 10 pairs
    # b: bin 5 (2, 8), bin 20 (1, 4), bin 70 (3.5, 1.5)
    #    wins = 0.5*2*8 + (1*8 + 0.5*1*4) + (3.5*12 + 0.5*3.5*1.5) = 62.625 of 6.5 * 13.5
    # c: bin 5 (2.5, 7.5), bin 15 (1.25, 3.75), bin 60 (3, 2)
    #    wins = 0.5*2.5*7.5 + (1.25*7.5 + 0.5*1.25*3.75) + (3*11.25 + 0.5*3*2) = 57.84375 of 6.75 * 13.25
    macro_auc = (90 / 100 + 62.625 / (6.5 * 13.5) + 57.84375 / (6.75 * 13.25)) / 3
    assert est["roc_auc"].value == pytest.approx(macro_auc, abs=TIGHT)


def random_window(
    rng: np.random.Generator, rows: int, classes: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    scores = rng.dirichlet(np.ones(len(classes)), size=rows)
    return scores, scores.argmax(axis=1)


def test_merge_of_windows_equals_the_window_of_concatenated_events_exactly() -> None:
    rng = np.random.default_rng(3)
    classes = ("a", "b", "c")
    cal = Calibration.fit(classes, *random_window(rng, 3000, classes))
    parts = [random_window(rng, n, classes) for n in (700, 1, 1300)]
    windows = []
    for scores, predicted in parts:
        w = ScoreBins.empty(classes)
        w.add(scores, predicted)
        windows.append(w)
    whole = ScoreBins.empty(classes)
    whole.add(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    a, b, c = windows
    for merged in (a.merge(b).merge(c), a.merge(b.merge(c)), c.merge(a).merge(b)):
        assert merged.classes == classes and merged.count == whole.count == 2001
        assert (merged.predicted == whole.predicted).all() and (merged.other == whole.other).all()
        assert estimate(merged, cal, task="multiclass") == estimate(whole, cal, task="multiclass")


def test_merge_takes_the_class_union_commutatively() -> None:
    left, right = ScoreBins.empty(("y", "x")), ScoreBins.empty(("z", "x"))
    left.add(np.array([[0.3, 0.7]]), np.array([1]))
    right.add(np.array([[0.9, 0.1]]), np.array([0]))
    for merged in (left.merge(right), right.merge(left)):
        assert merged.classes == ("x", "y", "z") and merged.count == 2
        assert merged.predicted[0, 70] == 1 and merged.predicted[2, 90] == 1 and merged.other[1, 30] == 1
        assert merged.other[2].sum() == 0  # z is missing on the left: zero counts, as documented


def test_round_trips_through_json() -> None:
    rng = np.random.default_rng(5)
    classes = ("a", "b", "c")
    bins = ScoreBins.empty(classes)
    bins.add(*random_window(rng, 500, classes))
    bins.add(np.array([[np.nan, 0.5, 0.5]]), np.array([0]))
    back = ScoreBins.from_dict(json.loads(json.dumps(bins.to_dict())))
    assert back.classes == classes and back.n_invalid == 1
    assert (back.predicted == bins.predicted).all() and (back.other == bins.other).all()
    cal = Calibration.fit(classes, *random_window(rng, 2000, classes))
    cal_back = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert cal_back.classes == classes and cal_back.n_reference == 2000
    assert (cal_back.rates == cal.rates).all()
    assert estimate(back, cal_back, task="multiclass") == estimate(bins, cal, task="multiclass")


def brute_force_isotonic(values: list[float], weights: list[float]) -> list[Fraction]:
    """The min-max formula: fit_i = max over j <= i of min over k >= i of the weighted mean of j..k."""
    y = [Fraction(v) for v in values]
    w = [Fraction(v) for v in weights]

    def mean(j: int, k: int) -> Fraction:
        return sum(wi * yi for wi, yi in zip(w[j : k + 1], y[j : k + 1], strict=True)) / sum(w[j : k + 1])

    n = len(y)
    return [max(min(mean(j, k) for k in range(i, n)) for j in range(i + 1)) for i in range(n)]


def test_pool_adjacent_violators_against_brute_force_and_scipy() -> None:
    values, weights = [0.5, 0.25, 0.75, 0.125, 1.0, 0.875, 0.0], [2, 1, 3, 1, 1, 4, 1]
    fitted = pool_adjacent_violators(np.array(values), np.array(weights, dtype=float))
    assert fitted.tolist() == pytest.approx(
        [float(f) for f in brute_force_isotonic(values, weights)], abs=TIGHT
    )
    rng = np.random.default_rng(11)
    for _ in range(20):
        y, w = rng.uniform(size=40), rng.integers(1, 50, size=40).astype(float)
        expected = isotonic_regression(y, weights=w).x
        assert pool_adjacent_violators(y, w) == pytest.approx(expected, abs=1e-12)


def test_calibration_is_isotonic_and_fills_empty_bins_from_the_step_function() -> None:
    positives = np.zeros((2, N_BINS), np.int64)
    totals = np.zeros((2, N_BINS), np.int64)
    positives[1, [10, 40, 60]], totals[1, [10, 40, 60]] = [3, 1, 8], [10, 10, 10]  # 0.3, 0.1, 0.8
    cal = Calibration.from_counts(("no", "yes"), positives, totals)
    assert (np.diff(cal.rates[1]) >= 0).all()
    assert cal.rates[1, 0] == cal.rates[1, 10] == cal.rates[1, 39] == pytest.approx(0.2)  # 10 and 40 pooled
    assert cal.rates[1, 59] == pytest.approx(0.2) and cal.rates[1, 60] == cal.rates[1, 99] == 0.8
    assert cal.rates[0].tolist() == pytest.approx(((np.arange(N_BINS) + 0.5) / N_BINS).tolist())  # no data


def test_calibration_from_a_score_histogram_matches_the_fit_on_the_same_rows() -> None:
    rng = np.random.default_rng(2)
    s = rng.uniform(size=4000)
    labels = (rng.uniform(size=s.size) < s).astype(int)
    agg = ScoreHistogramAggregate(bins=1000, pos_label="1")
    agg.update_batch(labels.astype(str), s)
    from_hist = Calibration.from_score_histogram(agg, ("0", "1"))
    assert (
        from_hist.rates[1].tolist() == Calibration.fit(("0", "1"), binary_scores(s), labels).rates[1].tolist()
    )
    classes = ("a", "b", "c")
    scores, _ = random_window(rng, 3000, classes)
    true = np.array([rng.choice(3, p=p) for p in scores])
    multi = ScoreHistogramAggregate(bins=1000, pos_label=None)
    multi.update_batch(np.array(classes)[true], scores, classes)
    assert (
        Calibration.from_score_histogram(multi, classes).rates == Calibration.fit(classes, scores, true).rates
    ).all()
    with pytest.raises(ValueError, match="re-binned"):
        Calibration.from_score_histogram(ScoreHistogramAggregate(bins=150), ("0", "1"))


@pytest.mark.parametrize("band", ["normal", "draws"])
def test_band_covers_the_realized_metric_on_calibrated_windows(band: str) -> None:
    rng = np.random.default_rng(8)
    ref = rng.uniform(size=50_000)
    cal = Calibration.fit(("0", "1"), binary_scores(ref), rng.uniform(size=ref.size) < ref)
    hits = {"accuracy": 0, "roc_auc": 0, "precision": 0, "recall": 0}
    windows = 150
    for i in range(windows):
        s = rng.beta(2.0, 2.5, size=1000)  # covariate shift from the uniform reference
        y = rng.uniform(size=s.size) < s
        bins = ScoreBins.empty(("0", "1"))
        bins.add(binary_scores(s), (s >= 0.5).astype(int))
        est = estimate(bins, cal, task="binary", band=band, seed=i)
        tp, fp, fn = np.sum(y & (s >= 0.5)), np.sum(~y & (s >= 0.5)), np.sum(y & (s < 0.5))
        agg = ScoreHistogramAggregate(bins=N_BINS)
        agg.update_batch(y.astype(int), s)
        truth = {
            "accuracy": np.mean(y == (s >= 0.5)),
            "roc_auc": agg.roc_auc()[0].value,
            "precision": tp / (tp + fp),
            "recall": tp / (tp + fn),
        }
        for name, value in truth.items():
            hits[name] += est[name].lower <= value <= est[name].upper
    for name, count in hits.items():
        assert count / windows >= 0.9, (name, count / windows)


def test_analytic_accuracy_band_is_the_exact_binomial_sd_by_hand() -> None:
    cal = binary_calibration(low=(1, 10), high=(9, 10))
    # 30 events with rate 0.9 and 20 with rate 0.1: var(correct) = 30 * 0.9 * 0.1 + 20 * 0.1 * 0.9 = 4.5
    sd = np.sqrt(4.5) / 50
    for level in (0.9, 0.95):
        z = NormalDist().inv_cdf(0.5 + level / 2)
        acc = estimate(hand_window(), cal, task="binary", level=level)["accuracy"]
        assert (acc.lower, acc.upper) == pytest.approx((0.9 - z * sd, 0.9 + z * sd), abs=TIGHT)
    # precision = TP / 30 with var(TP) = 30 * 0.09; its upper end is clipped at 1
    prec = estimate(hand_window(), cal, task="binary")["precision"]
    assert prec.value - prec.lower == pytest.approx(
        NormalDist().inv_cdf(0.975) * np.sqrt(2.7) / 30, abs=TIGHT
    )
    assert prec.upper == 1.0


def test_analytic_multiclass_accuracy_band_sums_the_classes_variances() -> None:
    classes = ("a", "b", "c")
    rates = np.empty((3, N_BINS))
    for k, (below, above) in enumerate([(0.1, 0.9), (0.2, 0.7), (0.25, 0.6)]):
        rates[k] = np.where(np.arange(N_BINS) < 50, below, above)
    bins = ScoreBins.empty(classes)
    rows = [[0.9, 0.05, 0.05]] * 10 + [[0.15, 0.7, 0.15]] * 5 + [[0.2, 0.2, 0.6]] * 5
    bins.add(np.array(rows), np.r_[np.zeros(10, int), np.ones(5, int), np.full(5, 2)])
    acc = estimate(bins, Calibration(classes, rates), task="multiclass")["accuracy"]
    sd = np.sqrt(10 * 0.9 * 0.1 + 5 * 0.7 * 0.3 + 5 * 0.6 * 0.4) / 20
    assert acc.upper - acc.value == pytest.approx(NormalDist().inv_cdf(0.975) * sd, abs=TIGHT)


def test_roc_auc_gradient_matches_finite_differences() -> None:
    total = np.array([5.0, 8.0, 0.0, 6.0, 4.0])
    pos = np.array([0.5, 2.0, 0.0, 3.5, 3.2])
    auc, grad = auc_gradient(pos, total)
    assert float(auc) == pytest.approx(float(_roc_auc(pos, total - pos)), abs=TIGHT)
    step = 1e-6
    for b in range(total.size):
        up, down = pos.copy(), pos.copy()
        up[b] += step
        down[b] -= step
        numeric = (_roc_auc(up, total - up) - _roc_auc(down, total - down)) / (2 * step)
        assert grad[b] == pytest.approx(float(numeric), abs=1e-7), b


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_analytic_band_agrees_with_the_draws_band(task: str) -> None:
    rng = np.random.default_rng(12)
    if task == "binary":
        classes = ("0", "1")
        ref = rng.uniform(size=50_000)
        cal = Calibration.fit(classes, binary_scores(ref), rng.uniform(size=ref.size) < ref)
        s = rng.beta(2.0, 2.5, size=2000)
        scores, predicted = binary_scores(s), (s >= 0.5).astype(int)
    else:
        classes = ("a", "b", "c")
        ref_scores, _ = random_window(rng, 30_000, classes)
        labels = (rng.uniform(size=(ref_scores.shape[0], 1)) > ref_scores.cumsum(axis=1)).sum(axis=1)
        cal = Calibration.fit(classes, ref_scores, labels)
        scores, predicted = random_window(rng, 2000, classes)
    bins = ScoreBins.empty(classes)
    bins.add(scores, predicted)
    normal = estimate(bins, cal, task=task)
    drawn = estimate(bins, cal, task=task, band="draws", draws=4000)
    assert sorted(normal) == sorted(drawn) == sorted(["accuracy", "precision", "recall", "f1", "roc_auc"])
    for name, e in normal.items():
        assert e.value == drawn[name].value
        assert abs(e.lower - drawn[name].lower) < 0.01 and abs(e.upper - drawn[name].upper) < 0.01, name
        assert e.lower < e.value < e.upper


def test_bands_are_deterministic_for_a_seed() -> None:
    cal = binary_calibration(low=(1, 10), high=(9, 10))
    assert estimate(hand_window(), cal, task="binary", seed=4) == estimate(
        hand_window(), cal, task="binary", seed=4
    )
    narrow = estimate(hand_window(), cal, task="binary", level=0.5)["accuracy"]
    wide = estimate(hand_window(), cal, task="binary", level=0.99)["accuracy"]
    assert wide.lower <= narrow.lower <= narrow.upper <= wide.upper


def test_invalid_rows_are_counted_and_left_out() -> None:
    bins = ScoreBins.empty(("a", "b", "c"))
    scores = np.array(
        [[0.2, 0.3, 0.5], [np.nan, 0.5, 0.5], [1.2, 0.0, 0.0], [0.2, 0.3, 0.5], [0.2, 0.3, 0.5]]
    )
    bins.add(scores, np.array([2, 0, 0, -1, 3]))
    assert bins.count == 1 and bins.n_invalid == 4
    assert bins.predicted[2, 50] == 1 and bins.other[0, 20] == 1 and bins.other[1, 30] == 1


def test_no_estimate_for_an_empty_window_and_undefined_metrics_left_out() -> None:
    cal = binary_calibration(low=(1, 10), high=(9, 10))
    assert estimate(ScoreBins.empty(("no", "yes")), cal, task="binary") == {}
    negatives_only = ScoreBins.empty(("no", "yes"))
    negatives_only.add(binary_scores(np.full(5, 0.05)), np.zeros(5, int))
    est = estimate(negatives_only, cal, task="binary")
    assert "precision" not in est  # nothing predicted positive
    assert est["accuracy"].value == pytest.approx(0.9, abs=TIGHT) and est["f1"].value == 0.0


def test_the_positive_class_can_be_named_and_unknown_classes_are_refused() -> None:
    cal = binary_calibration(low=(1, 10), high=(9, 10))
    flipped = estimate(hand_window(), cal, task="binary", positive="no")
    # "no" is predicted for the 20 events at s = 0.05, where it holds with rate 1 - 0.1 (mirrored)
    assert flipped["accuracy"].value == pytest.approx(0.9, abs=TIGHT)
    assert flipped["precision"].value == pytest.approx(0.9, abs=TIGHT)
    stranger = ScoreBins.empty(("no", "maybe"))
    stranger.add(np.array([[0.5, 0.5]]), np.array([1]))
    with pytest.raises(ValueError, match="maybe"):
        estimate(stranger, cal, task="binary")
    with pytest.raises(ValueError, match="task"):
        estimate(hand_window(), cal, task="regression")
    with pytest.raises(ValueError, match="band"):
        estimate(hand_window(), cal, task="binary", band="bootstrap")


def test_estimate_from_arrays_takes_names_and_binary_scores() -> None:
    rng = np.random.default_rng(9)
    ref = rng.uniform(size=20_000)
    labels = np.where(rng.uniform(size=ref.size) < ref, "fraud", "ok")
    cur = rng.beta(5, 2, size=3000)
    predicted = np.where(cur >= 0.5, "fraud", "ok")
    est = estimate_from_arrays(
        ref, labels, cur, predicted, ("ok", "fraud"), task="binary", band="draws", draws=50
    )
    expected = np.mean(np.where(cur >= 0.5, cur, 1 - cur))  # P(correct) of a calibrated score
    assert est["accuracy"].value == pytest.approx(expected, abs=0.01)
    assert isinstance(est["roc_auc"], Estimate) and sorted(est) == sorted(
        ["accuracy", "precision", "recall", "f1", "roc_auc"]
    )
