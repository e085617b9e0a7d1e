"""Every drift method against scipy or a hand-worked example, on raw arrays and on summaries."""

from __future__ import annotations

import doctest
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

from detectors.drift import (
    DriftInput,
    DriftOptions,
    NoDataError,
    choose_method,
    compute,
    detect_many,
    get_method,
    methods,
)
from detectors.profiles import (
    CategoricalFeatureProfile,
    NumericAggregate,
    NumericalFeatureProfile,
    ReferenceProfile,
)
from modelmon.kinds import FeatureKind

TOL = 1e-9
BINNED = ("psi", "kl_divergence", "jensen_shannon", "hellinger")


def _spec_proportions(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The numerical binning written out independently: deciles, dedup, ±inf, count by comparison."""
    edges = np.unique(np.quantile(reference, [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]))
    inner = edges[1:-1]
    n_bins = inner.size + 1

    def shares(values: np.ndarray) -> np.ndarray:
        index = (values[:, None] >= inner[None, :]).sum(axis=1)
        return np.array([(index == i).sum() for i in range(n_bins)]) / values.size

    return shares(reference), shares(current)


def _replace(shares: np.ndarray) -> np.ndarray:
    return np.where(shares == 0, 1e-4, shares)


@pytest.fixture(scope="module")
def normal_pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    return rng.normal(0.0, 1.0, 3000), rng.normal(0.3, 1.2, 2000)


# --- exact values: numerical ----------------------------------------------------------------------


def test_binned_methods_on_numerical_values_match_the_formulas(normal_pair: tuple) -> None:
    reference, current = normal_pair
    p, q = _spec_proportions(reference, current)
    pr, qr = _replace(p), _replace(q)
    expected = {
        "psi": float(np.sum((qr - pr) * np.log(qr / pr))),
        "kl_divergence": float(np.sum(qr * np.log(qr / pr))),
        "jensen_shannon": float(distance.jensenshannon(p, q, base=2)),
        "hellinger": float(np.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)) / np.sqrt(2)),
    }
    for name, value in expected.items():
        result = compute(name, reference, current)
        assert result.score == pytest.approx(value, abs=TOL), name
        assert result.p_value is None
        assert result.threshold == get_method(name).default_threshold


def test_psi_on_a_hand_worked_numerical_example() -> None:
    reference = np.arange(10.0)  # edges -inf, .9, 1.8, ..., 8.1, inf: one value per bin
    current = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 9.0, 9.0, 9.0, 9.0, 9.0])
    # bins 0 and 9 hold half the current each; the other 8 bins are empty -> 1e-4
    expected = 2 * (0.5 - 0.1) * math.log(0.5 / 0.1) + 8 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert compute("psi", reference, current).score == pytest.approx(expected, abs=TOL)
    assert compute("psi", reference, current).drifted


def test_sample_methods_match_scipy(normal_pair: tuple) -> None:
    reference, current = normal_pair
    ks = stats.ks_2samp(reference, current)
    result = compute("ks", reference, current)
    assert (result.score, result.p_value) == pytest.approx((ks.statistic, ks.pvalue), abs=TOL)
    assert result.drifted == (ks.pvalue < 0.05)
    cvm = stats.cramervonmises_2samp(reference, current)
    result = compute("cramer_von_mises", reference, current)
    assert (result.score, result.p_value) == pytest.approx((cvm.statistic, cvm.pvalue), abs=TOL)
    expected = stats.wasserstein_distance(reference, current) / np.std(reference)
    result = compute("wasserstein", reference, current)
    assert result.score == pytest.approx(expected, abs=TOL) and result.p_value is None


def test_wasserstein_on_a_hand_worked_example() -> None:
    # reference std is 1; every value moves by 0.5
    result = compute("wasserstein", [-1.0, 1.0], [-0.5, 1.5])
    assert result.score == pytest.approx(0.5, abs=TOL) and result.drifted


# --- exact values: categorical and boolean ----------------------------------------------------


CAT_REFERENCE = ["a"] * 6 + ["b"] * 4
CAT_CURRENT = ["a"] * 3 + ["b"] * 5 + ["c"] * 2


def test_binned_methods_on_categories_by_hand() -> None:
    p = np.array([0.6, 0.4, 0.0])
    q = np.array([0.3, 0.5, 0.2])
    psi = (0.3 - 0.6) * math.log(0.3 / 0.6) + (0.5 - 0.4) * math.log(0.5 / 0.4)
    psi += (0.2 - 1e-4) * math.log(0.2 / 1e-4)
    kl = 0.3 * math.log(0.3 / 0.6) + 0.5 * math.log(0.5 / 0.4) + 0.2 * math.log(0.2 / 1e-4)
    hellinger = math.sqrt(
        (math.sqrt(0.6) - math.sqrt(0.3)) ** 2 + (math.sqrt(0.4) - math.sqrt(0.5)) ** 2 + 0.2
    )
    hellinger /= math.sqrt(2)
    expected = {
        "psi": psi,
        "kl_divergence": kl,
        "jensen_shannon": float(distance.jensenshannon(p, q, base=2)),
        "hellinger": hellinger,
    }
    for name, value in expected.items():
        score = compute(name, CAT_REFERENCE, CAT_CURRENT, kind="categorical").score
        assert score == pytest.approx(value, abs=TOL), name


def test_chi_square_matches_scipy_with_the_zero_replacement() -> None:
    expected_counts = np.array([0.6, 0.4, 1e-4]) * 10
    expected_counts *= 10 / expected_counts.sum()
    reference_result = stats.chisquare([3, 5, 2], expected_counts)
    result = compute("chi_square", CAT_REFERENCE, CAT_CURRENT, kind="categorical")
    assert result.score == pytest.approx(reference_result.statistic, abs=TOL)
    assert result.p_value == pytest.approx(reference_result.pvalue, abs=TOL)
    assert result.drifted


def test_z_proportion_by_hand() -> None:
    reference = [True] * 30 + [False] * 70
    current = [True] * 45 + [False] * 55
    pooled = 75 / 200
    z = (0.45 - 0.30) / math.sqrt(pooled * (1 - pooled) * (1 / 100 + 1 / 100))
    result = compute("z_proportion", reference, current, kind="boolean")
    assert result.score == pytest.approx(z, abs=TOL)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(z), abs=TOL)
    assert result.drifted == (2 * stats.norm.sf(z) < 0.05)
    same = compute("z_proportion", [True, True], [True], kind="boolean")
    assert (same.score, same.p_value, same.drifted) == (0.0, 1.0, False)
    with pytest.raises(ValueError, match="two categories"):
        compute("z_proportion", CAT_REFERENCE, CAT_CURRENT, kind="categorical")


# --- missing values, errors, thresholds ----------------------------------------------------------


@pytest.mark.parametrize("name", ["psi", "ks", "wasserstein", "cramer_von_mises", "hellinger"])
def test_missing_values_are_left_out(name: str, normal_pair: tuple) -> None:
    reference, current = normal_pair
    dirty = np.concatenate([reference, [np.nan, np.inf]]).astype(object)
    dirty[-1] = None
    assert compute(name, dirty, np.append(current, np.nan)) == compute(name, reference, current)


def test_missing_categories_are_left_out() -> None:
    dirty = np.array([*CAT_CURRENT, None, np.nan], dtype=object)
    for name in ("chi_square", "psi"):
        assert compute(name, CAT_REFERENCE, dirty, kind="categorical") == compute(
            name, CAT_REFERENCE, CAT_CURRENT, kind="categorical"
        )


def test_unknown_method_and_wrong_kind_list_the_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown drift method 'nope'; valid: chi_square, cramer_von_mises"):
        compute("nope", [1.0], [1.0])
    with pytest.raises(ValueError, match="for categorical: chi_square, hellinger, jensen_shannon"):
        compute("ks", CAT_REFERENCE, CAT_CURRENT, kind="categorical")
    with pytest.raises(ValueError, match="valid: boolean, categorical, numerical"):
        compute("psi", [1.0], [1.0], kind="text")


def test_thresholds_apply_and_are_validated(normal_pair: tuple) -> None:
    reference, current = normal_pair
    loose = compute("psi", reference, current, threshold=10.0)
    assert loose.threshold == 10.0 and not loose.drifted
    strict = compute("ks", reference, current, threshold=1e-300)
    assert strict.threshold == 1e-300
    with pytest.raises(ValueError, match="p-value threshold must be in"):
        compute("ks", reference, current, threshold=1.5)
    with pytest.raises(ValueError, match="distance threshold must be finite"):
        compute("psi", reference, current, threshold=-1.0)


def test_an_empty_side_raises_no_data_error() -> None:
    with pytest.raises(NoDataError, match="current data has no present values"):
        compute("psi", [1.0, 2.0], [np.nan])
    with pytest.raises(NoDataError, match="reference has no present values"):
        compute("ks", [None], [1.0])


# --- summaries: profiles and window aggregates ---------------------------------------------------


@pytest.mark.parametrize("name", BINNED)
def test_binned_methods_on_summaries_equal_raw_arrays(name: str, normal_pair: tuple) -> None:
    reference, current = normal_pair
    feature = NumericalFeatureProfile.from_values(reference, sample_size=64)
    window = feature.window_aggregate(sample_size=64)
    for batch in np.array_split(current, 5):
        window.update_batch(batch)
    assert compute(name, feature, window).score == compute(name, reference, current).score
    assert compute(name, reference, window).score == compute(name, reference, current).score
    assert compute(name, feature, current).score == compute(name, reference, current).score


@pytest.mark.parametrize("name", [*BINNED, "chi_square"])
def test_categorical_methods_on_summaries_equal_raw_arrays(name: str) -> None:
    feature = CategoricalFeatureProfile.from_values(CAT_REFERENCE)
    window = feature.window_aggregate()
    window.update_batch(np.array(CAT_CURRENT[:4]))
    window.update_batch(np.array(CAT_CURRENT[4:]))
    raw = compute(name, CAT_REFERENCE, CAT_CURRENT, kind="categorical")
    assert compute(name, feature, window) == raw


@pytest.mark.parametrize("name", ["ks", "cramer_von_mises", "wasserstein"])
def test_sample_methods_on_summaries_use_the_samples(name: str, normal_pair: tuple) -> None:
    reference, current = normal_pair
    # Samples big enough to hold everything give exactly the raw result.
    feature = NumericalFeatureProfile.from_values(reference, sample_size=reference.size)
    window = NumericAggregate(feature.edges, sample_size=current.size)
    window.update_batch(current)
    full = compute(name, feature, window)
    assert full.score == pytest.approx(compute(name, reference, current).score, abs=TOL)
    # Small samples: the test runs on the samples, scaled by the whole reference's std.
    small_feature = NumericalFeatureProfile.from_values(reference, sample_size=500, seed=1)
    small_window = NumericAggregate(feature.edges, sample_size=300, seed=2)
    small_window.update_batch(current)
    on_samples = compute(name, small_feature, small_window)
    if name == "wasserstein":
        expected = stats.wasserstein_distance(small_feature.sample, small_window.sample) / np.std(reference)
    elif name == "ks":
        expected = stats.ks_2samp(small_feature.sample, small_window.sample).statistic
    else:
        expected = stats.cramervonmises_2samp(small_feature.sample, small_window.sample).statistic
    assert on_samples.score == pytest.approx(expected, abs=TOL)


def test_capped_categories_compare_reference_categories_plus_other() -> None:
    feature = CategoricalFeatureProfile.from_values(["a"] * 5 + ["b"] * 5)
    window = feature.window_aggregate(max_new_categories=1)
    window.update_batch(np.array(["a", "x", "y", "z", "b"]))
    assert window.other == 2
    # bins: a, b, other -> reference 5, 5, 0 and current 1, 1, 3
    p, q = np.array([0.5, 0.5, 1e-4]), np.array([0.2, 0.2, 0.6])
    assert compute("psi", feature, window).score == pytest.approx(
        float(np.sum((q - p) * np.log(q / p))), abs=TOL
    )


def test_kind_comes_from_the_summaries_and_must_agree() -> None:
    feature = CategoricalFeatureProfile.from_values(CAT_REFERENCE)
    assert compute("psi", feature, CAT_CURRENT).method == "psi"
    with pytest.raises(ValueError, match="does not match"):
        compute("psi", feature, CAT_CURRENT, kind="numerical")
    other_edges = NumericAggregate([-np.inf, 0.5, np.inf])
    other_edges.update_batch([1.0])
    with pytest.raises(ValueError, match="other edges"):
        compute("psi", [0.0, 1.0, 2.0, 3.0], other_edges)


def test_a_window_can_be_the_reference_of_the_next_one(normal_pair: tuple) -> None:
    reference, current = normal_pair
    edges = NumericalFeatureProfile.from_values(reference).edges
    previous, latest = NumericAggregate(edges), NumericAggregate(edges)
    previous.update_batch(reference)
    latest.update_batch(current)
    assert compute("psi", previous, latest).score == compute("psi", reference, current).score


# --- the chooser -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "n_reference", "n_unique", "expected"),
    [
        ("numerical", 1000, 6, "ks"),
        ("numerical", 1001, 6, "wasserstein"),
        ("numerical", 500, 5, "jensen_shannon"),
        ("numerical", 50_000, 3, "jensen_shannon"),
        ("categorical", 1000, 3, "chi_square"),
        ("categorical", 1000, 2, "z_proportion"),
        ("categorical", 1001, 3, "jensen_shannon"),
        ("boolean", 100, 2, "z_proportion"),
        ("boolean", 5000, 2, "jensen_shannon"),
    ],
)
def test_choose_method(kind: str, n_reference: int, n_unique: int, expected: str) -> None:
    assert choose_method(kind, n_reference, n_unique) == expected
    assert kind in get_method(expected).kinds


def test_choose_method_avoids_distances_between_bounded_samples() -> None:
    assert choose_method("numerical", 50_000, 900, sampled=True) == "jensen_shannon"
    assert choose_method("numerical", 900, 900, sampled=True) == "ks"  # a test on samples stays valid


# --- noise control -----------------------------------------------------------------------------


def test_a_tiny_shift_on_a_million_rows_is_not_an_alarm() -> None:
    rng = np.random.default_rng(7)
    n = 1_000_000
    reference = {"tiny": rng.normal(0, 1, n), "real": rng.normal(0, 1, n)}
    current = {"tiny": rng.normal(0.02, 1, n), "real": rng.normal(0.5, 1, n)}
    raw = compute("ks", reference["tiny"], current["tiny"])
    assert raw.drifted and raw.p_value is not None and raw.p_value < 1e-20
    report = detect_many(reference, current, options=DriftOptions(method="ks"))
    tiny, real = report.features["tiny"], report.features["real"]
    assert tiny.result.drifted and not tiny.drifted
    assert tiny.effect_size is not None and tiny.effect_size < 0.05
    assert real.drifted and real.effect_size is not None and real.effect_size > 0.4
    assert report.drifted_features == ["real"] and report.share_drifted == 0.5


def test_benjamini_hochberg_removes_chance_alarms_over_many_features() -> None:
    rng = np.random.default_rng(3)
    reference = {f"f{i:02d}": rng.normal(0, 1, 400) for i in range(60)}
    current = {f"f{i:02d}": rng.normal(0, 1, 400) for i in range(60)}
    current["f00"] = rng.normal(1.0, 1, 400)
    options = DriftOptions(method="ks", min_effect={"ks": 0.0})
    raw = detect_many(reference, current, options=DriftOptions(method="ks", noise_control=False))
    controlled = detect_many(reference, current, options=options)
    assert len(raw.drifted_features) > 1  # chance alarms among 59 unchanged features
    assert controlled.drifted_features == ["f00"]
    adjusted = controlled.features["f00"].adjusted_p_value
    p_values = [controlled.features[name].result.p_value for name in sorted(reference)]
    assert adjusted == pytest.approx(stats.false_discovery_control(p_values)[0], abs=TOL)


def test_detect_many_on_a_profile_and_window_aggregates() -> None:
    rng = np.random.default_rng(4)
    columns = {
        "age": rng.normal(40, 10, 5000),
        "plan": rng.choice(["free", "pro", "team"], 5000),
        "churned": rng.random(5000) < 0.2,
    }
    profile = ReferenceProfile.from_data(
        columns, {"age": "numerical", "plan": "categorical", "churned": "boolean"}
    )
    windows = profile.window_aggregates()
    windows["age"].update_batch(rng.normal(55, 10, 3000))
    windows["plan"].update_batch(rng.choice(["free", "pro", "team"], 3000))
    windows["churned"].update_batch(rng.random(3000) < 0.2)
    report = detect_many(profile, windows)
    methods_used = {name: feature.result.method for name, feature in report.features.items()}
    # the reservoirs hold part of the data, so the large numerical reference gets binned JS
    assert methods_used == {"age": "jensen_shannon", "plan": "jensen_shannon", "churned": "jensen_shannon"}
    assert report.drifted_features == ["age"] and not report.dataset_drifted
    assert report.to_dict()["features"]["age"]["drifted"] is True


def test_detect_many_precedence_and_skips() -> None:
    rng = np.random.default_rng(6)
    reference: dict[str, DriftInput] = {
        "a": rng.normal(size=300),
        "b": rng.normal(size=300),
        "c": [np.nan],
        "d": rng.normal(size=9),
    }
    current: dict[str, DriftInput] = {"a": rng.normal(size=300), "b": rng.normal(size=300), "c": [1.0]}
    options = DriftOptions(
        method="psi",
        per_feature={"a": "hellinger"},
        per_method_threshold={"psi": 0.5},
        per_feature_threshold={"a": 0.9},
    )
    report = detect_many(reference, current, options=options)
    assert report.features["a"].result.method == "hellinger" and report.features["a"].result.threshold == 0.9
    assert report.features["b"].result.method == "psi" and report.features["b"].result.threshold == 0.5
    assert report.skipped == {"c": "the reference has no present values", "d": "no current data"}
    per_kind = detect_many(reference, current, options=DriftOptions(per_kind={"numerical": "kl_divergence"}))
    assert {f.result.method for f in per_kind.features.values()} == {"kl_divergence"}
    with pytest.raises(ValueError, match="unknown drift method 'psy'"):
        DriftOptions(method="psy")


def test_method_precedence_is_feature_then_kind_then_model_then_chooser() -> None:
    rng = np.random.default_rng(7)
    reference, current = rng.normal(size=300), rng.normal(size=300)
    by_kind = {"categorical": "chi_square"}
    options = DriftOptions(method="psi", per_kind=by_kind, per_feature={"a": "hellinger"})
    assert options.method_for("a", FeatureKind.NUMERICAL, reference, current) == "hellinger"
    assert options.method_for("b", FeatureKind.CATEGORICAL, reference, current) == "chi_square"
    assert options.method_for("b", FeatureKind.NUMERICAL, reference, current) == "psi"
    chosen = DriftOptions().method_for("b", FeatureKind.NUMERICAL, reference, current)
    assert chosen == choose_method("numerical", 300, 300) == "ks"


def test_the_dataset_drifts_at_the_drift_share_threshold() -> None:
    rng = np.random.default_rng(8)
    reference = {f"x{i}": rng.normal(0, 1, 800) for i in range(4)}
    current = {f"x{i}": rng.normal(1.0 if i == 0 else 0.0, 1, 800) for i in range(4)}
    default = detect_many(reference, current)
    assert default.share_drifted == 0.25 and not default.dataset_drifted
    low = detect_many(reference, current, options=DriftOptions(drift_share_threshold=0.25))
    assert low.drift_share_threshold == 0.25 and low.dataset_drifted
    with pytest.raises(ValueError, match="drift_share_threshold must be in"):
        DriftOptions(drift_share_threshold=0.0)


def test_every_method_has_a_docstring_formula() -> None:
    for name, record in methods().items():
        assert record.name == name and record.display_name
        assert record.statistic.__module__ == f"detectors.drift.{name}"


def test_the_example_in_the_docs_runs() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "detectors.md"
    result = doctest.testfile(str(docs), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
