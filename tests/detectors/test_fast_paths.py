"""The fast paths in detectors give exactly what their plain definitions give, bit for bit.

Each shortcut (candidate cut-offs and key-only sorts in the bottom-k sample, counting by hashing
for categories, one sort for a numerical profile, branch-free histograms, the merged-CDF KS
statistic, the row-wise text hash) is compared here with the straightforward computation it
replaces, on random inputs with ties, NaN, signed zeros, NULs and mixed types.
"""

from __future__ import annotations

import enum
import warnings

import numpy as np
import pytest
from scipy import stats

from detectors.bins import DECILES, category_counts, count_categories, histogram, reference_edges
from detectors.drift.ks import ks_test, ks_test_sorted
from detectors.features import category_labels
from detectors.hashing import stable_text_hash
from detectors.profiles import BottomKSample, CategoricalAggregate, NumericalFeatureProfile
from detectors.profiles.sampling import _smallest_keys


def _smallest_by_definition(keys: np.ndarray, values: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    # The original selection: the size-th smallest key by argpartition, then a lexsort.
    if keys.size > size:
        kth = keys[np.argpartition(keys, size - 1)[size - 1]]
        candidates = np.flatnonzero(keys <= kth)
        keys, values = keys[candidates], values[candidates]
    order = np.lexsort((values, keys))[:size]
    return keys[order], values[order]


def _same(left: np.ndarray, right: np.ndarray) -> bool:
    return (
        left.shape == right.shape
        and np.array_equal(left, right, equal_nan=True)
        and np.array_equal(np.signbit(left), np.signbit(right))
    )


def _keys(rng: np.random.Generator, n: int, mode: int) -> np.ndarray:
    if mode == 0:
        return rng.random(n)
    if mode == 1:  # many ties
        return rng.integers(0, 20, n) / 20.0
    if mode == 2:  # not uniform on [0, 1): the cut-off guess fails
        return rng.random(n) * 0.01
    if mode == 3:
        keys = rng.random(n)
        keys[rng.random(n) < 0.1] = np.nan
        return keys
    if mode == 4:
        return rng.choice([0.0, -0.0, 0.5, 0.25], n)
    return np.sort(rng.random(n))


def test_smallest_keys_equal_the_lexsort_definition() -> None:
    rng = np.random.default_rng(1)
    for trial in range(3000):
        n, size = int(rng.integers(0, 3000)), int(rng.integers(1, 600))
        keys = _keys(rng, n, trial % 6)
        values = rng.integers(0, 5, n).astype(float)
        for runs in (False, True):
            got = _smallest_keys(keys, values, size, runs=runs)
            expected = _smallest_by_definition(keys, values, size)
            assert _same(got[0], expected[0]) and _same(got[1], expected[1]), (trial, n, size)


def test_bottom_k_sample_updates_equal_the_definition() -> None:
    rng = np.random.default_rng(2)
    for trial in range(600):
        size = int(rng.integers(1, 300))
        sample = BottomKSample(size, seed=3)
        kept_keys, kept_values = np.empty(0), np.empty(0)
        for _ in range(int(rng.integers(1, 6))):
            n = int(rng.integers(0, 800))
            values = rng.integers(0, 4, n).astype(float)
            keys = _keys(rng, n, trial % 4)
            sample.update_batch(values, row_keys=keys)
            if n:
                kept_keys, kept_values = _smallest_by_definition(
                    np.concatenate([kept_keys, keys]), np.concatenate([kept_values, values]), size
                )
            assert _same(sample.keys, kept_keys) and _same(sample.values, kept_values), trial
        other = BottomKSample(size, seed=3)
        other.update_batch(rng.normal(size=int(rng.integers(0, 700))))
        merged = sample.merge(other)
        keys, values = _smallest_by_definition(
            np.concatenate([sample.keys, other.keys]), np.concatenate([sample.values, other.values]), size
        )
        assert _same(merged.keys, keys) and _same(merged.values, values), trial


def test_histogram_equals_searchsorted_on_every_edge_count() -> None:
    rng = np.random.default_rng(3)
    for trial in range(2000):
        k = int(rng.integers(1, 25))
        inner = np.unique(rng.integers(-5, 5, k).astype(float) + rng.choice([0.0, 0.5], k))
        edges = np.concatenate([[-np.inf], inner, [np.inf]])
        values = rng.integers(-7, 7, int(rng.integers(0, 200))).astype(float) * rng.choice([0.5, 1.0])
        if trial % 3 == 0:
            values[::5] = np.nan
        if trial % 7 == 0:
            values[::3] = -0.0
        if trial % 11 == 0:
            values[::4], values[1::9] = np.inf, -np.inf
        expected = np.bincount(np.searchsorted(inner, values, side="right"), minlength=edges.size - 1)
        got = histogram(values, edges)
        assert got.dtype == np.int64 and got.tolist() == expected.tolist(), trial


class _Colour(str, enum.Enum):  # noqa: UP042 (a StrEnum prints its value; this prints "_Colour.RED")
    RED = "red"


@pytest.mark.parametrize(
    "values",
    [
        ["b", "a", "b", None, float("nan"), "", "é", "a"],
        ["x"] * 5,
        [None, float("nan")],
        [],
        ["red", _Colour.RED, "red"],  # a str subclass printing otherwise: left to numpy
        ["a", "a\x00", "b"],  # numpy drops trailing NULs: left to numpy
        ["a\x00b", "a", "a\x00b"],
        ["1", 1, 1.0, True, "True", None],  # other types: left to numpy
        ["1.5", 1.5, np.nan],
        [np.str_("q"), "q", "r"],
    ],
)
def test_count_categories_equals_labels_then_counts(values: list) -> None:
    array = np.array(values, dtype=object)
    names, counts, missing = count_categories(array)
    labels, mask = category_labels(array)
    expected_names, expected_counts = category_counts(labels)
    assert names.tolist() == expected_names.tolist()
    assert counts.dtype == np.int64 and counts.tolist() == expected_counts.tolist()
    assert missing == (0 if mask is None else int(mask.size - labels.size))


def test_count_categories_on_many_random_batches() -> None:
    rng = np.random.default_rng(4)
    texts = np.array([f"c{i}" for i in range(300)] + ["", "ü", "日本"], dtype=object)
    for _ in range(200):
        array = rng.choice(texts, int(rng.integers(0, 500)))
        array[rng.random(array.size) < 0.05] = None
        array[rng.random(array.size) < 0.05] = float("nan")
        names, counts, missing = count_categories(array)
        labels, mask = category_labels(array)
        expected_names, expected_counts = category_counts(labels)
        assert names.tolist() == expected_names.tolist() and counts.tolist() == expected_counts.tolist()
        assert missing == (0 if mask is None else int(mask.size - labels.size))


def test_numerical_profile_fields_follow_their_definitions() -> None:
    rng = np.random.default_rng(5)
    columns = [
        rng.normal(size=5000),
        rng.poisson(3, 5000).astype(float),
        np.where(rng.random(3000) < 0.7, 0.0, rng.exponential(size=3000)),
        np.array([0.0, -0.0, 1.0, 1.0, -0.0, 2.0]),
        np.array([7.0]),
    ]
    for values in columns:
        profile = NumericalFeatureProfile.from_values(values, sample_size=500)
        edges = reference_edges(values)
        assert profile.edges.tolist() == edges.tolist()
        assert profile.edges.tolist() == reference_edges(np.sort(values)).tolist()
        assert (
            profile.bin_counts.tolist()
            == np.bincount(
                np.searchsorted(edges[1:-1], values, side="right"), minlength=edges.size - 1
            ).tolist()
        )
        assert profile.n_unique == np.unique(values).size
        assert (profile.min, profile.max) == (values.min(), values.max())
        assert profile.sorted_sample.tolist() == sorted(profile.sample.tolist())
        if values.size > 10:
            quantiles = np.quantile(values, DECILES)
            assert profile.edges[1:-1].tolist() == np.unique(quantiles)[1:-1].tolist()


def test_categorical_aggregate_takes_categories_in_any_order() -> None:
    for categories in (["b", "a", "b"], np.array(["a", "b"]), ("a", "b"), np.array(["b", "a", "a"])):
        window = CategoricalAggregate(categories)
        assert window.categories == ("a", "b")
    kept = np.array(["a", "b"])
    CategoricalAggregate(kept).update_batch(["a"])
    assert kept.flags.writeable  # the caller's array is copied, not frozen


def test_ks_is_scipy_ks_2samp_to_the_last_bit() -> None:
    rng = np.random.default_rng(6)
    for trial in range(600):
        n1, n2 = int(rng.integers(1, 300)), int(rng.integers(1, 300))
        if trial % 50 == 0:
            n1, n2 = 4096, 1024
        if trial % 97 == 0:
            n1, n2 = 12_000, 300  # beyond the exact method: ks_2samp's asymptotic path
        mode = trial % 4
        if mode == 0:
            reference, current = rng.normal(size=n1), rng.normal(rng.uniform(0, 1), size=n2)
        elif mode == 1:
            reference, current = rng.integers(0, 5, n1).astype(float), rng.integers(0, 6, n2).astype(float)
        elif mode == 2:
            reference, current = rng.normal(size=n1), rng.normal(size=n2) + 3
        else:
            reference, current = rng.poisson(3, n1).astype(float), rng.poisson(3.5, n2).astype(float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.ks_2samp(reference, current)
            expected = (float(result.statistic), float(result.pvalue))
            assert ks_test(reference, current) == expected, trial
            assert ks_test_sorted(np.sort(reference), np.sort(current)) == expected, trial


def test_ks_leaves_other_inputs_to_scipy() -> None:
    with_nan = np.array([1.0, np.nan, 3.0])
    result = stats.ks_2samp(with_nan, [1.0, 2.0])
    got = ks_test(with_nan, [1.0, 2.0])
    assert np.isnan(got[0]) == np.isnan(result.statistic) and np.isnan(got[1]) == np.isnan(result.pvalue)
    assert ks_test([1, 2, 3], [2, 3, 4]) == ks_test([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    masked = np.ma.masked_array([1.0, 2.0, 100.0], mask=[False, False, True])
    expected = stats.ks_2samp(masked, [1.0, 2.0])
    assert ks_test(masked, [1.0, 2.0]) == (float(expected.statistic), float(expected.pvalue))


def _fnv_splitmix(text: str, seed: int) -> int:
    # The documented hash, one text at a time in Python integers.
    mask = (1 << 64) - 1

    def splitmix(z: int) -> int:
        z = (z + 0x9E3779B97F4A7C15) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    value = splitmix(seed) ^ 0xCBF29CE484222325
    for char in text:
        if char != "\x00":
            value = ((value ^ ord(char)) * 0x100000001B3) & mask
    return splitmix(value)


def test_stable_text_hash_is_fnv1a_then_splitmix64() -> None:
    rng = np.random.default_rng(7)
    alphabet = ["a", "b", "\x00", "é", "日", "😀", "Z", "0", "-"]
    for _ in range(300):
        texts = [
            "".join(rng.choice(alphabet, int(rng.integers(0, 12)))) for _ in range(int(rng.integers(1, 40)))
        ]
        seed = int(rng.integers(0, 2**63))
        expected = [_fnv_splitmix(text, seed) for text in texts]
        assert stable_text_hash(texts, seed).tolist() == expected
        assert stable_text_hash(np.array(texts, dtype=object), seed).tolist() == expected
