"""The window aggregate of a numerical feature: histogram on reference edges, moments, extremes, sample."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from detectors.base import Aggregate
from detectors.bins import check_edges, histogram
from detectors.features import FeatureValues, numeric_values
from detectors.profiles.sampling import BottomKSample


@lru_cache(maxsize=256)
def _checked_edges(raw: bytes) -> npt.NDArray[np.float64]:
    # Every aggregate on the same edges (all windows of a feature, and each one rebuilt from a
    # dict) shares one validated, read-only array: no re-validation, and merges compare identity.
    edges = check_edges(np.frombuffer(raw, dtype=np.float64))
    edges.flags.writeable = False
    return edges


def clear_cache() -> None:
    """Forget the validated bin edges kept so far (benchmarks call it to time cold runs)."""
    _checked_edges.cache_clear()


def combine_moments(
    left: tuple[int, float, float], right: tuple[int, float, float]
) -> tuple[int, float, float]:
    """Chan et al.'s pairwise merge of (count, mean, sum of squared deviations).

    Written symmetrically, so swapping the arguments gives bit-identical results; grouping them
    differently changes only the last bits.

    >>> combine_moments((2, 1.0, 2.0), (2, 3.0, 2.0))
    (4, 2.0, 8.0)
    """
    n_left, mean_left, m2_left = left
    n_right, mean_right, m2_right = right
    if n_left == 0:
        return right
    if n_right == 0:
        return left
    count = n_left + n_right
    mean = (n_left * mean_left + n_right * mean_right) / count
    delta = mean_right - mean_left
    m2 = (m2_left + m2_right) + delta * delta * (n_left * n_right / count)
    return count, mean, m2


class NumericAggregate(Aggregate):
    """A numerical feature over one window and partition, mergeable across both.

    Holds the counts per reference bin, count / mean / M2 (Chan's mergeable form of the variance),
    min, max, the number of missing values (``None``, NaN, ±inf) and a :class:`BottomKSample`.

    Parameters
    ----------
    edges
        Full bin edges from the reference, -inf to +inf (``ReferenceProfile`` supplies them).
    sample_size
        The most values kept for sample-based tests (KS, Cramér-von Mises, Wasserstein).
    seed
        Seeds the sample's keys when ``update_batch`` gets no ``row_keys``.

    Examples
    --------
    >>> window = NumericAggregate([-np.inf, 0.0, 1.0, np.inf], sample_size=4, seed=3)
    >>> window.update_batch(np.array([-0.5, 0.5, 0.75, np.nan]))
    >>> other = NumericAggregate([-np.inf, 0.0, 1.0, np.inf], sample_size=4, seed=3)
    >>> other.update_batch(np.array([2.0, 1.0]))
    >>> merged = window.merge(other)
    >>> merged.bin_counts.tolist(), merged.count, merged.missing
    ([1, 2, 2], 5, 1)
    >>> round(merged.mean, 12), round(merged.std, 12), merged.min, merged.max
    (0.75, 0.80622577483, -0.5, 2.0)
    >>> sorted(merged.sample.tolist())
    [0.5, 0.75, 1.0, 2.0]
    """

    kind = "numeric"

    def __init__(self, edges: npt.ArrayLike, *, sample_size: int = 1024, seed: int = 0) -> None:
        self.edges = _checked_edges(np.asarray(edges, dtype=np.float64).reshape(-1).tobytes())
        self.sample_size = sample_size
        self.seed = seed
        self._reset()

    def _empty_like(self) -> Self:
        """An empty aggregate with these settings, sharing the (read-only, validated) edges."""
        twin = object.__new__(type(self))
        twin.edges = self.edges
        twin.sample_size = self.sample_size
        twin.seed = self.seed
        twin._reset()
        return twin

    def _reset(self) -> None:
        self._bin_counts = np.zeros(self.edges.size - 1, dtype=np.int64)
        self._count = 0
        self._mean = 0.0
        self._m2 = 0.0
        self._min = math.inf
        self._max = -math.inf
        self._missing = 0
        self._sample = BottomKSample(self.sample_size, self.seed)

    @property
    def bin_counts(self) -> npt.NDArray[np.int64]:
        """Present values per bin of ``edges`` (a copy)."""
        return self._bin_counts.copy()

    @property
    def count(self) -> int:
        """How many present values were seen."""
        return self._count

    @property
    def missing(self) -> int:
        """How many values were missing: ``None``, NaN or ±inf."""
        return self._missing

    @property
    def mean(self) -> float:
        """Mean of the present values (NaN when there are none)."""
        return self._mean if self._count else math.nan

    @property
    def variance(self) -> float:
        """Population variance (``ddof=0``, as ``np.var``) of the present values."""
        return self._m2 / self._count if self._count else math.nan

    @property
    def std(self) -> float:
        """Population standard deviation (``ddof=0``, as ``np.std``)."""
        return math.sqrt(max(self.variance, 0.0)) if self._count else math.nan

    @property
    def min(self) -> float:
        """Smallest present value (NaN when there are none)."""
        return self._min if self._count else math.nan

    @property
    def max(self) -> float:
        """Largest present value (NaN when there are none)."""
        return self._max if self._count else math.nan

    @property
    def sample(self) -> npt.NDArray[np.float64]:
        """The bounded uniform sample of present values (read-only)."""
        return self._sample.values

    @property
    def sampler(self) -> BottomKSample:
        """The sample with its keys, for merging or inspection."""
        return self._sample

    def update_batch(self, values: FeatureValues, row_keys: npt.ArrayLike | None = None) -> None:
        """Fold a 1-D batch in; ``row_keys`` (one per value, in [0, 1)) pick the sampled rows."""
        present, mask = numeric_values(values)
        n_rows = present.size if mask is None else mask.size
        keys = None
        if row_keys is not None:
            keys = np.asarray(row_keys, dtype=np.float64).reshape(-1)
            if keys.size != n_rows:
                raise ValueError(f"row_keys has {keys.size} entries for {n_rows} values")
            if mask is not None:
                keys = keys[mask]
        self._missing += n_rows - int(present.size)
        if present.size == 0:
            return
        self._bin_counts += histogram(present, self.edges)
        batch_mean = float(present.mean())
        deviations = present - batch_mean
        # einsum, not a BLAS dot: BLAS threads add milliseconds of jitter on small vectors.
        batch = (int(present.size), batch_mean, float(np.einsum("i,i->", deviations, deviations)))
        self._count, self._mean, self._m2 = combine_moments((self._count, self._mean, self._m2), batch)
        self._min = min(self._min, float(present.min()))
        self._max = max(self._max, float(present.max()))
        self._sample.add_present(present, keys)

    def merge(self, other: Self) -> Self:
        if not isinstance(other, NumericAggregate):
            raise TypeError(f"cannot merge a NumericAggregate with {type(other).__name__}")
        if self.edges is not other.edges and not np.array_equal(self.edges, other.edges):
            raise ValueError("cannot merge numeric aggregates built on different bin edges")
        merged = self._empty_like()
        merged._bin_counts = self._bin_counts + other._bin_counts
        merged._count, merged._mean, merged._m2 = combine_moments(
            (self._count, self._mean, self._m2), (other._count, other._mean, other._m2)
        )
        merged._min = min(self._min, other._min)
        merged._max = max(self._max, other._max)
        merged._missing = self._missing + other._missing
        merged._sample = self._sample.merge(other._sample)
        return merged

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "inner_edges": self.edges[1:-1].tolist(),
            "sample_size": self.sample_size,
            "seed": self.seed,
            "bin_counts": self._bin_counts.tolist(),
            "count": self._count,
            "mean": self._mean,
            "m2": self._m2,
            "min": self._min if self._count else None,
            "max": self._max if self._count else None,
            "missing": self._missing,
            "sample": self._sample.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        edges = np.concatenate([[-np.inf], np.asarray(data["inner_edges"], dtype=np.float64), [np.inf]])
        window = cls(edges, sample_size=data["sample_size"], seed=data["seed"])
        window._bin_counts = np.asarray(data["bin_counts"], dtype=np.int64)
        if window._bin_counts.shape != (edges.size - 1,):
            raise ValueError("bin_counts does not match the bin edges")
        window._count = int(data["count"])
        window._mean = float(data["mean"])
        window._m2 = float(data["m2"])
        window._min = math.inf if data["min"] is None else float(data["min"])
        window._max = -math.inf if data["max"] is None else float(data["max"])
        window._missing = int(data["missing"])
        window._sample = BottomKSample.from_dict(data["sample"])
        return window

    def __repr__(self) -> str:
        return f"NumericAggregate(bins={self.edges.size - 1}, count={self._count}, missing={self._missing})"
