"""Reference profiles and the numeric / categorical window aggregates: values, merging, serialising."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.base import same_state
from detectors.bins import DECILES, ZERO_PROPORTION, histogram, reference_edges
from detectors.features import category_labels, numeric_values
from detectors.hashing import row_keys_from_ids, stable_text_hash
from detectors.profiles import (
    BottomKSample,
    CategoricalAggregate,
    CategoricalFeatureProfile,
    NumericAggregate,
    NumericalFeatureProfile,
    ReferenceProfile,
)
from modelmon.kinds import check_kind

EDGES = np.array([-np.inf, -1.0, 0.0, 0.5, 2.0, np.inf])


# --- cleaning and binning -------------------------------------------------------------------------


def test_numeric_values_drop_none_nan_and_infinities() -> None:
    present, mask = numeric_values(np.array([1.0, np.nan, np.inf, -2.0, -np.inf]))
    assert present.tolist() == [1.0, -2.0]
    assert mask is not None and mask.tolist() == [True, False, False, True, False]
    present, mask = numeric_values(np.array([1, None, 3], dtype=object))
    assert present.tolist() == [1.0, 3.0] and mask is not None


def test_category_labels_make_text_and_drop_missing() -> None:
    labels, mask = category_labels(np.array(["x", None, 2, np.nan, True], dtype=object))
    assert labels.tolist() == ["x", "2", "True"]
    assert mask is not None and mask.tolist() == [True, False, True, False, True]
    labels, mask = category_labels(np.array(["a", "b"]))
    assert labels.tolist() == ["a", "b"] and mask is None


def test_boolean_labels_accept_common_spellings_and_reject_others() -> None:
    labels, _ = category_labels(["yes", "No", "1", "false", True, 0.0], kind="boolean")
    assert labels.tolist() == ["True", "False", "True", "False", "True", "False"]
    assert category_labels(np.array([1, 0, 2]), kind="boolean")[0].tolist() == ["True", "False", "True"]
    with pytest.raises(ValueError, match="not a boolean value: 'maybe'"):
        category_labels(["maybe", "yes"], kind="boolean")


def test_check_kind_names_the_valid_kinds() -> None:
    with pytest.raises(ValueError, match="valid: boolean, categorical, numerical"):
        check_kind("ordinal")


def test_reference_edges_follow_the_definition() -> None:
    rng = np.random.default_rng(5)
    reference = rng.gamma(2.0, 3.0, 2000)
    expected = np.unique(np.quantile(reference, [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]))
    expected[0], expected[-1] = -np.inf, np.inf
    np.testing.assert_array_equal(reference_edges(reference), expected)
    assert DECILES.tolist() == [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]


def test_histogram_bins_are_right_open() -> None:
    values = np.array([-5.0, -1.0, -0.5, 0.0, 0.5, 1.9, 2.0, 100.0])
    assert histogram(values, EDGES).tolist() == [1, 2, 1, 2, 2]


def test_stable_text_hash_ignores_array_width_and_depends_on_seed() -> None:
    narrow = stable_text_hash(np.array(["ab", "c"]))
    wide = stable_text_hash(np.array(["ab", "c", "a much longer text"]))[:2]
    np.testing.assert_array_equal(narrow, wide)
    assert not np.array_equal(stable_text_hash(["ab"], seed=1), stable_text_hash(["ab"], seed=2))
    keys = row_keys_from_ids([f"id-{i}" for i in range(10_000)])
    assert keys.min() >= 0.0 and keys.max() < 1.0 and abs(keys.mean() - 0.5) < 0.02


# --- the reference profile ---------------------------------------------------------------------


def _columns(rows: int = 3000, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3.0, 1.0, rows)
    amount[::50] = np.nan
    plan = rng.choice(np.array(["free", "pro", "team"], dtype=object), rows, p=[0.6, 0.3, 0.1])
    plan[::97] = None
    churned = rng.random(rows) < 0.2
    return {"amount": amount, "plan": plan, "churned": churned, "unused": np.zeros(rows)}


SPEC = {"amount": "numerical", "plan": "categorical", "churned": "boolean"}


def _numerical(profile: ReferenceProfile, name: str) -> NumericalFeatureProfile:
    feature = profile[name]
    assert isinstance(feature, NumericalFeatureProfile)
    return feature


def test_numerical_feature_profile_summarises_the_column() -> None:
    columns = _columns()
    profile = ReferenceProfile.from_data(columns, SPEC, sample_size=500, seed=3)
    amount = profile["amount"]
    assert isinstance(amount, NumericalFeatureProfile)
    present = columns["amount"][~np.isnan(columns["amount"])]
    assert (amount.count, amount.missing) == (present.size, 60)
    assert amount.mean == pytest.approx(np.mean(present), rel=1e-12)
    assert amount.std == pytest.approx(np.std(present), rel=1e-12)
    assert (amount.min, amount.max) == (present.min(), present.max())
    np.testing.assert_array_equal(amount.edges, reference_edges(present))
    assert amount.bin_counts.tolist() == histogram(present, amount.edges).tolist()
    assert amount.bin_counts.sum() == present.size
    assert amount.sample.size == 500 and np.isin(amount.sample, present).all()
    assert np.unique(amount.sample).size == 500


def test_categorical_and_boolean_feature_profiles_count_categories() -> None:
    columns = _columns()
    profile = ReferenceProfile.from_data(columns, SPEC)
    plan = profile["plan"]
    assert isinstance(plan, CategoricalFeatureProfile)
    values = [v for v in columns["plan"] if v is not None]
    assert plan.counts() == {k: values.count(k) for k in ("free", "pro", "team")}
    assert (plan.missing, plan.other, plan.n_unique) == (31, 0, 3)
    churned = profile["churned"]
    assert isinstance(churned, CategoricalFeatureProfile) and churned.kind == "boolean"
    assert churned.counts() == {
        "False": int((~columns["churned"]).sum()),
        "True": int(columns["churned"].sum()),
    }
    assert profile.spec == SPEC and "unused" not in profile


def test_categorical_profile_keeps_the_most_frequent_categories() -> None:
    values = ["a"] * 5 + ["b"] * 3 + ["c"] * 3 + ["d"]
    profile = CategoricalFeatureProfile.from_values(values, max_categories=2)
    assert profile.counts() == {"a": 5, "b": 3}  # b and c tie: the name decides
    assert (profile.other, profile.count, profile.n_unique) == (4, 12, 4)


def test_profile_json_round_trip_and_strict_json() -> None:
    profile = ReferenceProfile.from_data(_columns(), SPEC, sample_size=100)
    text = profile.to_json()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
    again = ReferenceProfile.from_json(text)
    assert again == profile
    np.testing.assert_array_equal(_numerical(again, "amount").edges, _numerical(profile, "amount").edges)
    assert ReferenceProfile.from_dict(profile.to_dict()) == profile


def test_profile_sample_is_deterministic_with_a_seed() -> None:
    columns = _columns()
    first = ReferenceProfile.from_data(columns, SPEC, sample_size=200, seed=11)
    second = ReferenceProfile.from_data(columns, SPEC, sample_size=200, seed=11)
    other = ReferenceProfile.from_data(columns, SPEC, sample_size=200, seed=12)
    assert first == second
    assert not np.array_equal(_numerical(first, "amount").sample, _numerical(other, "amount").sample)


def test_profile_spec_errors_name_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="spec names features with no column: age"):
        ReferenceProfile.from_data(_columns(), {"age": "numerical"})
    with pytest.raises(ValueError, match="valid: boolean, categorical, numerical"):
        ReferenceProfile.from_data(_columns(), {"amount": "float"})
    with pytest.raises(ValueError, match="at least one present value"):
        ReferenceProfile.from_data({"x": [None, np.nan]}, {"x": "numerical"})


def test_window_aggregates_are_binned_on_and_pinned_to_the_reference() -> None:
    profile = ReferenceProfile.from_data(_columns(), SPEC)
    windows = profile.window_aggregates(sample_size=64, max_new_categories=5, seed=1)
    amount, plan = windows["amount"], windows["plan"]
    assert isinstance(amount, NumericAggregate) and isinstance(plan, CategoricalAggregate)
    np.testing.assert_array_equal(amount.edges, _numerical(profile, "amount").edges)
    churned = windows["churned"]
    assert isinstance(churned, CategoricalAggregate) and churned.feature_kind == "boolean"
    assert plan.categories == ("free", "pro", "team")


# --- NumericAggregate ------------------------------------------------------------------------------


def test_numeric_aggregate_matches_numpy_on_the_whole_window() -> None:
    rng = np.random.default_rng(2)
    values = rng.normal(0.3, 1.5, 20_000)
    values[rng.random(values.size) < 0.01] = np.nan
    window = NumericAggregate(EDGES, sample_size=256, seed=4)
    for batch in np.array_split(values, 7):
        window.update_batch(batch)
    present = values[~np.isnan(values)]
    assert window.bin_counts.tolist() == histogram(present, EDGES).tolist()
    assert (window.count, window.missing) == (present.size, values.size - present.size)
    assert window.mean == pytest.approx(present.mean(), rel=1e-12)
    assert window.std == pytest.approx(present.std(), rel=1e-12)
    assert (window.min, window.max) == (present.min(), present.max())
    assert window.sample.size == 256 and np.isin(window.sample, present).all()


def test_merged_partitions_equal_one_worker_when_rows_carry_keys() -> None:
    rng = np.random.default_rng(8)
    values = rng.exponential(2.0, 9000)
    keys = row_keys_from_ids(np.array([f"p-{i}" for i in range(values.size)]))
    whole = NumericAggregate(EDGES, sample_size=100)
    whole.update_batch(values, row_keys=keys)
    partition = rng.integers(0, 3, values.size)
    parts = []
    for p in range(3):
        part = NumericAggregate(EDGES, sample_size=100)
        for chunk in np.array_split(np.flatnonzero(partition == p), 4):
            part.update_batch(values[chunk], row_keys=keys[chunk])
        parts.append(part)
    merged = parts[0].merge(parts[1]).merge(parts[2])
    np.testing.assert_array_equal(merged.sample, whole.sample)
    assert merged.bin_counts.tolist() == whole.bin_counts.tolist()
    assert same_state(merged.to_dict(), whole.to_dict(), rel_tol=1e-12)


def test_numeric_aggregate_rejects_bad_settings_and_mismatched_merges() -> None:
    with pytest.raises(ValueError, match="start at -inf"):
        NumericAggregate([0.0, 1.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        NumericAggregate([-np.inf, 1.0, 1.0, np.inf])
    with pytest.raises(ValueError, match="size must be an integer >= 1"):
        NumericAggregate(EDGES, sample_size=0)
    with pytest.raises(ValueError, match="different bin edges"):
        NumericAggregate(EDGES).merge(NumericAggregate([-np.inf, 0.0, np.inf]))
    with pytest.raises(ValueError, match="size/seed"):
        NumericAggregate(EDGES, seed=1).merge(NumericAggregate(EDGES, seed=2))
    with pytest.raises(ValueError, match="row_keys has 1 entries for 2 values"):
        NumericAggregate(EDGES).update_batch([1.0, 2.0], row_keys=[0.5])


def test_empty_numeric_aggregate_serialises_without_infinities() -> None:
    window = NumericAggregate(EDGES)
    window.update_batch([None, np.nan])
    data = window.to_dict()
    assert data["min"] is None and data["missing"] == 2
    json.dumps(data, allow_nan=False)
    assert NumericAggregate.from_dict(data) == window
    assert np.isnan(window.mean) and np.isnan(window.std)


# --- CategoricalAggregate ----------------------------------------------------------------------


def test_categorical_aggregate_counts_pinned_and_new_categories() -> None:
    window = CategoricalAggregate(["a", "b"], max_new_categories=10)
    window.update_batch(np.array(["a", "c", "a", None, "d", "c"], dtype=object))
    assert window.counts() == {"a": 2, "c": 2, "d": 1}
    assert (window.missing, window.other, window.count, window.unseen_count) == (1, 0, 5, 3)
    names, counts = window.category_counts()
    assert names.tolist() == ["a", "b", "c", "d"] and counts.tolist() == [2, 0, 2, 1]


def test_the_cap_keeps_the_smallest_hashes_whatever_the_batching() -> None:
    names = np.array([f"n{i}" for i in range(40)])
    rng = np.random.default_rng(0)
    values = rng.choice(names, 2000)
    whole = CategoricalAggregate(["n0"], max_new_categories=5, seed=9)
    whole.update_batch(values)
    hashes = stable_text_hash(names[1:], seed=9)
    expected_kept = sorted(names[1:][np.argsort(hashes)[:5]].tolist())
    kept = [name for name in whole.counts() if name != "n0"]
    assert kept == expected_kept
    assert whole.count == 2000 and whole.other == 2000 - sum(whole.counts().values())
    pieces = []
    for chunk in np.array_split(values, 9):
        piece = CategoricalAggregate(["n0"], max_new_categories=5, seed=9)
        piece.update_batch(chunk)
        pieces.append(piece)
    merged = pieces[0]
    for piece in pieces[1:]:
        merged = piece.merge(merged)
    assert merged == whole


def test_categorical_merge_needs_the_same_settings() -> None:
    with pytest.raises(ValueError, match="different categories"):
        CategoricalAggregate(["a"]).merge(CategoricalAggregate(["b"]))
    with pytest.raises(ValueError, match="feature_kind must be one of boolean, categorical"):
        CategoricalAggregate(feature_kind="numerical")


def test_boolean_window_counts_true_and_false() -> None:
    window = CategoricalAggregate(["False", "True"], feature_kind="boolean")
    window.update_batch(np.array([True, False, True, None], dtype=object))
    assert window.counts() == {"False": 1, "True": 2} and window.missing == 1


# --- property tests: merge is associative and commutative ---------------------------------------

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
numeric_batch = st.lists(st.one_of(finite, st.just(float("nan")), st.none()), max_size=40)
category_batch = st.lists(st.one_of(st.sampled_from("abcdefghij"), st.none()), max_size=40)


def _numeric(batch: list[float | None]) -> NumericAggregate:
    window = NumericAggregate(EDGES, sample_size=8, seed=5)
    window.update_batch(np.array(batch, dtype=object))
    return window


def _categorical(batch: list[str | None]) -> CategoricalAggregate:
    window = CategoricalAggregate(["a", "b"], max_new_categories=3, seed=2)
    window.update_batch(np.array(batch, dtype=object))
    return window


def _close(left: object, right: object) -> bool:
    assert hasattr(left, "to_dict") and hasattr(right, "to_dict")
    return same_state(left.to_dict(), right.to_dict(), rel_tol=1e-9, abs_tol=1e-6)


@settings(max_examples=60, deadline=None)
@given(numeric_batch, numeric_batch, numeric_batch)
def test_numeric_merge_is_associative_and_commutative(
    a: list[float | None], b: list[float | None], c: list[float | None]
) -> None:
    x, y, z = _numeric(a), _numeric(b), _numeric(c)
    assert x.merge(y) == y.merge(x)  # bit for bit: the merge formulas are symmetric
    assert _close(x.merge(y).merge(z), x.merge(y.merge(z)))
    left, right = x.merge(y).merge(z), x.merge(y.merge(z))
    assert left.bin_counts.tolist() == right.bin_counts.tolist()
    np.testing.assert_array_equal(left.sample, right.sample)


@settings(max_examples=60, deadline=None)
@given(category_batch, category_batch, category_batch)
def test_categorical_merge_is_exactly_associative_and_commutative(
    a: list[str | None], b: list[str | None], c: list[str | None]
) -> None:
    x, y, z = _categorical(a), _categorical(b), _categorical(c)
    assert x.merge(y) == y.merge(x)
    assert x.merge(y).merge(z) == x.merge(y.merge(z))
    whole = _categorical(a + b + c)
    assert x.merge(y).merge(z) == whole


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, max_size=30), st.lists(finite, max_size=30), st.lists(finite, max_size=30))
def test_bottom_k_sample_merge_is_exact(a: list[float], b: list[float], c: list[float]) -> None:
    samples = []
    for batch in (a, b, c):
        sample = BottomKSample(size=5, seed=1)
        sample.update_batch(np.array(batch, dtype=np.float64))
        samples.append(sample)
    x, y, z = samples
    assert x.merge(y) == y.merge(x)
    assert x.merge(y).merge(z) == x.merge(y.merge(z))
    assert x.merge(y).merge(z).rows_seen == len(a) + len(b) + len(c)


def test_zero_proportion_constant() -> None:
    assert ZERO_PROPORTION == 1e-4
