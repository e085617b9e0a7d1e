"""detectors.fairness against fairlearn 0.15 on seeded data, the merge property and the min-group rule."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest

from detectors.fairness import FairnessAggregate, fairness_report

fm = pytest.importorskip("fairlearn.metrics", reason="fairlearn is a dev dependency (pyproject [dev])")

TOL = 1e-9


def _data(seed: int, sizes: tuple[int, ...] = (40, 400, 1500)) -> tuple[np.ndarray, ...]:
    """Groups of unequal sizes, each with its own selection and base rate."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"g{i}" for i in range(len(sizes))], sizes).astype(object)
    rng.shuffle(groups)
    index = np.array([int(g[1:]) for g in groups])
    base = rng.uniform(0.2, 0.7, len(sizes))[index]
    y_true = (rng.random(groups.size) < base).astype(int)
    favour = rng.uniform(-0.2, 0.2, len(sizes))[index]
    y_pred = (rng.random(groups.size) < np.clip(0.3 + 0.5 * y_true + favour, 0, 1)).astype(int)
    return groups, y_true, y_pred


def _aggregate(groups: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray) -> FairnessAggregate:
    agg = FairnessAggregate(["g"])
    agg.update_predictions("g", groups, y_pred == 1)
    agg.update_labels("g", groups, y_pred == 1, y_true == 1)
    return agg


def _frame(groups: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray) -> object:
    metrics = {"sr": fm.selection_rate, "tpr": fm.true_positive_rate, "fpr": fm.false_positive_rate}
    return fm.MetricFrame(metrics=metrics, y_true=y_true, y_pred=y_pred, sensitive_features=groups)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_equal_to_fairlearn_on_seeded_data(seed: int) -> None:
    groups, y_true, y_pred = _data(seed)
    report = fairness_report(_aggregate(groups, y_true, y_pred), min_group_size=30)["g"]
    by_group = _frame(groups, y_true, y_pred).by_group  # type: ignore[attr-defined]
    kw = {"sensitive_features": groups}
    expected = {
        "demographic_parity_difference": fm.demographic_parity_difference(y_true, y_pred, **kw),
        "demographic_parity_ratio": fm.demographic_parity_ratio(y_true, y_pred, **kw),
        "equal_opportunity_difference": fm.equal_opportunity_difference(y_true, y_pred, **kw),
        "equalized_odds_difference": fm.equalized_odds_difference(y_true, y_pred, **kw),
    }
    diffs = [abs(getattr(report, name) - value) for name, value in expected.items()]
    for group in by_group.index:
        diffs.append(abs(report.selection_rate[group] - by_group.loc[group, "sr"]))
        diffs.append(abs(report.tpr[group] - by_group.loc[group, "tpr"]))
        diffs.append(abs(report.fpr[group] - by_group.loc[group, "fpr"]))
    assert len(diffs) == 4 + 3 * 3
    assert max(diffs) <= TOL, diffs


def test_merged_partials_equal_all_events() -> None:
    groups, y_true, y_pred = _data(7)
    whole = _aggregate(groups, y_true, y_pred)
    cuts = [0, 5, 700, 701, 1200, groups.size]
    parts = [_aggregate(groups[a:b], y_true[a:b], y_pred[a:b]) for a, b in itertools.pairwise(cuts)]
    merged = parts[0]
    for part in parts[1:]:
        merged = merged.merge(part)
    assert merged.to_dict() == whole.to_dict()
    reversed_ = parts[-1]
    for part in reversed(parts[:-1]):
        reversed_ = part.merge(reversed_)
    assert reversed_.to_dict() == whole.to_dict()
    assert FairnessAggregate.from_dict(whole.to_dict()) == whole


def test_small_groups_are_too_few_not_a_gap() -> None:
    groups, y_true, y_pred = _data(3, sizes=(12, 400, 500))
    report = fairness_report(_aggregate(groups, y_true, y_pred), min_group_size=30)["g"]
    assert report.too_few == ["g0"]
    assert set(report.selection_rate) == {"g1", "g2"} and "g0" not in report.tpr
    big = np.isin(groups, ["g1", "g2"])
    expected = fm.demographic_parity_difference(y_true[big], y_pred[big], sensitive_features=groups[big])
    assert abs(report.demographic_parity_difference - expected) <= TOL
    # With the rule off, the small group counts again.
    assert fairness_report(_aggregate(groups, y_true, y_pred), min_group_size=0)["g"].too_few == []


def test_a_group_without_positives_has_no_tpr_where_fairlearn_reports_zero() -> None:
    groups, y_true, y_pred = _data(5, sizes=(200, 300))
    y_true = np.where(groups == "g0", 0, y_true)
    report = fairness_report(_aggregate(groups, y_true, y_pred), min_group_size=30)["g"]
    assert "g0" not in report.tpr and math.isnan(report.equal_opportunity_difference)
    assert math.isnan(report.equalized_odds_difference)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_group = _frame(groups, y_true, y_pred).by_group  # type: ignore[attr-defined]
        theirs = fm.equal_opportunity_difference(y_true, y_pred, sensitive_features=groups)
    assert by_group.loc["g0", "tpr"] == 0.0  # fairlearn: 0 / 0 counted as a TPR of 0 ...
    assert abs(theirs - by_group.loc["g1", "tpr"]) <= TOL  # ... so its gap is g1's whole TPR
    # Rates that are defined still agree; the FPR gap is unaffected.
    assert abs(report.fpr["g0"] - by_group.loc["g0", "fpr"]) <= TOL
    assert abs(report.selection_rate["g0"] - by_group.loc["g0", "sr"]) <= TOL


def test_missing_group_values_are_left_out_and_unlabelled_predictions_count_in_selection() -> None:
    agg = FairnessAggregate(["g"])
    groups = np.array(["a", None, "b", "a"], dtype=object)
    agg.update_predictions("g", groups, np.array([True, True, False, False]))
    counts = agg.counts("g")
    assert {g: (c["n"], c["selected"], c["labelled"]) for g, c in counts.items()} == {
        "a": (2, 1, 0),
        "b": (1, 0, 0),
    }
    report = fairness_report(agg, min_group_size=1)["g"]
    assert report.selection_rate == {"a": 0.5, "b": 0.0} and report.demographic_parity_ratio == 0.0
    assert report.tpr == {} and math.isnan(report.equalized_odds_difference)


def test_max_abs_difference_to_fairlearn_over_seeds() -> None:
    """The figure reported in docs/fairness.md: max |ours - fairlearn| over 20 seeds."""
    worst = 0.0
    for seed in range(20):
        groups, y_true, y_pred = _data(seed, sizes=(35, 90, 600, 1000))
        report = fairness_report(_aggregate(groups, y_true, y_pred), min_group_size=30)["g"]
        kw = {"sensitive_features": groups}
        pairs = [
            (report.demographic_parity_difference, fm.demographic_parity_difference(y_true, y_pred, **kw)),
            (report.demographic_parity_ratio, fm.demographic_parity_ratio(y_true, y_pred, **kw)),
            (report.equalized_odds_difference, fm.equalized_odds_difference(y_true, y_pred, **kw)),
        ]
        worst = max(worst, *(abs(ours - theirs) for ours, theirs in pairs))
    print(f"max abs difference to fairlearn over 20 seeds: {worst:.3g}")
    assert worst <= TOL
