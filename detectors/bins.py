"""Bin edges from reference deciles, histograms on them, category counts and zero-proportion handling."""

from __future__ import annotations

from collections import Counter

import numpy as np
import numpy.typing as npt

from detectors.features import FeatureValues, category_labels
from modelmon.kinds import FeatureKind

DECILES: npt.NDArray[np.float64] = np.arange(11) / 10
"""The quantile levels of the reference bin edges: 0, 0.1, ..., 1 (``i / 10`` is exactly ``.i``)."""

ZERO_PROPORTION = 1e-4
"""What a zero proportion becomes in PSI, KL and chi-square, so their logarithms stay finite."""


def reference_edges(reference: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Bin edges: the reference deciles, deduplicated, with the outer edges moved to -inf and +inf.

    Bins are right-open, ``[edges[i], edges[i + 1])``. When the deciles collapse to fewer than two
    bins (a constant or nearly constant feature), the bins are below, at and above the median.

    >>> reference_edges(np.arange(11.0)).tolist()
    [-inf, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, inf]
    >>> reference_edges([0.0] * 10 + [2.0]).tolist()
    [-inf, 0.0, 5e-324, inf]
    >>> reference_edges([5.0, 5.0]).tolist()
    [-inf, 5.0, 5.000000000000001, inf]
    """
    values = np.asarray(reference, dtype=np.float64)
    if values.size == 0:
        raise ValueError("bin edges need at least one reference value")
    edges = np.unique(np.quantile(values, DECILES))
    if edges.size >= 3:
        edges[0], edges[-1] = -np.inf, np.inf
        return edges
    median = float(np.median(values))
    return np.array([-np.inf, median, np.nextafter(median, np.inf), np.inf])


def check_edges(edges: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Validate full bin edges (outer edges -inf and +inf, strictly increasing) and return them."""
    array = np.array(edges, dtype=np.float64).reshape(-1)
    if array.size < 2 or array[0] != -np.inf or array[-1] != np.inf:
        raise ValueError("bin edges must start at -inf and end at +inf")
    if not np.all(np.diff(array) > 0):
        raise ValueError("bin edges must be strictly increasing")
    return array


def histogram(values: npt.NDArray[np.float64], edges: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Count ``values`` per right-open bin of ``edges`` (which run from -inf to +inf).

    >>> histogram(np.array([0.5, 1.0, 1.5, 7.0]), np.array([-np.inf, 1.0, 2.0, np.inf])).tolist()
    [1, 2, 1]
    """
    inner = edges[1:-1]
    if inner.size > 16:
        index = np.searchsorted(inner, values, side="right")
        return np.bincount(index, minlength=edges.size - 1).astype(np.int64, copy=False)
    # Few edges (reference deciles: at most 9): one branch-free pass per edge counting the values
    # below it is several times quicker than a binary search per value on fresh data. NaN is
    # below no edge, so it lands in the last bin, as searchsorted puts it.
    below = np.empty(edges.size, dtype=np.int64)
    below[0] = 0
    below[-1] = values.size
    for i, edge in enumerate(inner.tolist(), start=1):
        below[i] = np.count_nonzero(values < edge)
    return np.diff(below)


def category_counts(labels: npt.NDArray[np.str_]) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.int64]]:
    """Sorted distinct labels and how often each occurs.

    >>> names, counts = category_counts(np.array(["b", "a", "b"]))
    >>> names.tolist(), counts.tolist()
    (['a', 'b'], [1, 2])
    """
    names, counts = np.unique(labels, return_counts=True)
    return names, counts.astype(np.int64, copy=False)


def count_categories(
    values: FeatureValues, kind: FeatureKind = FeatureKind.CATEGORICAL
) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.int64], int]:
    """Sorted distinct labels of the present values, how often each occurs, and how many were missing.

    The same as :func:`~detectors.features.category_labels` followed by :func:`category_counts`.
    A categorical object array holding only Python strings (and ``None`` or NaN for missing
    values), the usual shape of decoded events, is counted by hashing instead: it skips the
    conversion to a numpy string array and the sort of every value, which cost several times more.

    >>> names, counts, missing = count_categories(np.array(["b", None, "a", "b"], dtype=object))
    >>> names.tolist(), counts.tolist(), missing
    (['a', 'b'], [1, 2], 1)
    """
    if kind == "categorical" and isinstance(values, np.ndarray) and values.dtype == object:
        counted = _count_texts(values.reshape(-1).tolist())
        if counted is not None:
            return counted
    labels, mask = category_labels(values, kind)
    missing = 0 if mask is None else int(mask.size - labels.size)
    names, counts = category_counts(labels)
    return names, counts, missing


_TEXT_OR_MISSING = frozenset({str, float, type(None)})


def _count_texts(items: list) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.int64], int] | None:
    """``count_categories`` of a list of ``str``, ``None`` and NaN; ``None`` for anything else."""
    # Exact types: a str subclass may print differently (an Enum mixin), and str(1.5) is a category.
    if not set(map(type, items)) <= _TEXT_OR_MISSING:
        return None
    counter = Counter(items)
    missing = 0
    for key in [key for key in counter if type(key) is not str]:
        if key is not None and key == key:  # a float that is a number: str(key) is its category
            return None
        missing += counter.pop(key)
    texts = sorted(counter)
    # numpy drops trailing NULs from its strings ("a\x00" is "a"); leave texts with NULs to numpy.
    if "\x00" in "".join(texts):
        return None
    names = np.array(texts, dtype=str)
    counts = np.fromiter(map(counter.__getitem__, texts), dtype=np.int64, count=len(texts))
    return names, counts, missing


def align_counts(
    categories: npt.NDArray[np.str_], names: npt.NDArray[np.str_], counts: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """The counts of ``names`` laid out on sorted ``categories`` (every name must be among them)."""
    out = np.zeros(categories.size, dtype=np.int64)
    if names.size:
        out[np.searchsorted(categories, names)] = counts
    return out


def proportions(counts: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Counts divided by their total."""
    array = np.asarray(counts, dtype=np.float64)
    total = array.sum()
    if total <= 0:
        raise ValueError("proportions need a positive total count")
    return array / total


def replace_zeros(shares: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Replace each zero proportion by :data:`ZERO_PROPORTION`; the others are left alone (no renormalising).

    >>> replace_zeros(np.array([0.0, 0.25, 0.75])).tolist()
    [0.0001, 0.25, 0.75]
    """
    return np.where(shares == 0.0, ZERO_PROPORTION, shares)
