"""Bin edges from reference deciles, histograms on them, category counts and zero-proportion handling."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

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
    index = np.searchsorted(edges[1:-1], values, side="right")
    return np.bincount(index, minlength=edges.size - 1).astype(np.int64, copy=False)


def category_counts(labels: npt.NDArray[np.str_]) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.int64]]:
    """Sorted distinct labels and how often each occurs.

    >>> names, counts = category_counts(np.array(["b", "a", "b"]))
    >>> names.tolist(), counts.tolist()
    (['a', 'b'], [1, 2])
    """
    names, counts = np.unique(labels, return_counts=True)
    return names, counts.astype(np.int64, copy=False)


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
