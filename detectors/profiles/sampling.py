"""A mergeable uniform sample of a numerical stream: the values with the smallest random keys.

Every value gets a key uniform in [0, 1); the sample is the ``size`` values with the smallest
keys (ties broken by value). Because "the ``size`` smallest of a union" does not depend on how the
union was grouped or ordered, ``merge`` is exactly associative and commutative, and the sample of
a merged window is the same as if one worker had seen every event. It is a uniform sample without
replacement, so a KS or Cramér-von Mises test on it is a valid test of the window, with the
power of ``size`` rows: the KS statistic of a 1024-row sample is within about
``1.36 * sqrt(1 / 1024 + 1 / m)`` of the full window's (95%), ``m`` being the reference sample size.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from detectors.base import Aggregate
from detectors.features import FeatureValues, numeric_values


def _check_count(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _smallest_keys(
    keys: npt.NDArray[np.float64], values: npt.NDArray[np.float64], size: int, *, runs: bool = False
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The ``size`` (key, value) pairs with the smallest keys, sorted by key then value.

    Which pairs are kept and their order depend only on the multiset of pairs, so the result is
    that of a full ``np.lexsort((values, keys))[:size]`` however it is reached; the shortcuts below
    only narrow down the candidates first and skip the tie-breaking sort when no key is repeated.
    ``runs`` says ``keys`` is mostly made of sorted runs (a merge), where a stable sort is quickest.
    """
    if keys.size > size:
        candidates = _candidates(keys, size)
        if candidates is not None:
            keys, values = keys[candidates], values[candidates]
    # Sort by key alone (timsort merges sorted runs in one pass; quicksort is quicker on random
    # keys). Only equal keys (or NaN) among the first ``size + 1`` need the value to break ties;
    # then sort by (key, value) as the definition says.
    order = np.argsort(keys, kind="stable" if runs else "quicksort")
    head = keys[order[: size + 1]]
    if head.size > 1 and (bool(np.isnan(head[-1])) or bool((head[1:] == head[:-1]).any())):
        if head.size > size and np.isnan(head[size - 1]):
            # Fewer than ``size`` keys are numbers: a NaN cut-off keeps nothing (as it always has).
            return keys[:0], values[:0]
        order = np.lexsort((values, keys))
    order = order[:size]
    return keys[order], values[order]


def _candidates(keys: npt.NDArray[np.float64], size: int) -> npt.NDArray[np.intp] | None:
    """Indices of a subset of ``keys`` holding the ``size`` smallest and every key equal to the last
    of them, or ``None`` when that is (nearly) all of them."""
    n = keys.size
    if n <= 2 * size:
        return None
    # Keys are meant to be uniform in [0, 1): guess a cut-off a few standard deviations above the
    # size-th smallest, and check that it holds enough keys (any non-uniform keys just fall back).
    guess = (size + 4.0 * np.sqrt(size) + 16.0) / n
    if guess < 1.0:
        candidates = np.flatnonzero(keys <= guess)
        if size <= candidates.size <= 2 * size + 64:
            return candidates
    kth = keys[np.argpartition(keys, size - 1)[size - 1]]
    return np.flatnonzero(keys <= kth)


class BottomKSample(Aggregate):
    """A bounded, mergeable uniform sample: the ``size`` values with the smallest random keys.

    Parameters
    ----------
    size
        The most values kept.
    seed
        Seeds the keys drawn when ``update_batch`` gets no ``row_keys``; the draw also depends on
        the rows seen so far and the batch's bytes, so two partitions sharing a seed still draw
        different keys. Passing ``row_keys`` (see :func:`detectors.hashing.row_keys_from_ids`) is
        better on streams: the same event always gets the same key.

    Examples
    --------
    >>> left, right = BottomKSample(size=3, seed=1), BottomKSample(size=3, seed=1)
    >>> left.update_batch(np.arange(10.0))
    >>> right.update_batch(np.arange(10.0, 20.0))
    >>> merged = left.merge(right)
    >>> merged.rows_seen, merged.values.size
    (20, 3)
    >>> merged == right.merge(left)
    True
    >>> keyed = BottomKSample(size=2)
    >>> keyed.update_batch([5.0, 6.0, None, 8.0], row_keys=[0.9, 0.1, 0.0, 0.5])
    >>> keyed.values.tolist()
    [6.0, 8.0]
    """

    kind = "bottom_k_sample"

    def __init__(self, size: int = 1024, seed: int = 0) -> None:
        self.size = _check_count("size", size, 1)
        self.seed = _check_count("seed", seed, 0)
        self._reset()

    def _reset(self) -> None:
        self._keys = np.empty(0, dtype=np.float64)
        self._values = np.empty(0, dtype=np.float64)
        self._rows_seen = 0

    @property
    def values(self) -> npt.NDArray[np.float64]:
        """The sampled values, ordered by key (a read-only view)."""
        view = self._values.view()
        view.flags.writeable = False
        return view

    @property
    def keys(self) -> npt.NDArray[np.float64]:
        """The keys of the sampled values, ascending (a read-only view)."""
        view = self._keys.view()
        view.flags.writeable = False
        return view

    @property
    def rows_seen(self) -> int:
        """How many present values were offered to the sample."""
        return self._rows_seen

    def update_batch(self, values: FeatureValues, row_keys: npt.ArrayLike | None = None) -> None:
        """Offer a batch of values; missing ones (and their keys) are skipped."""
        present, mask = numeric_values(values)
        keys = None
        if row_keys is not None:
            keys = np.asarray(row_keys, dtype=np.float64).reshape(-1)
            expected = present.size if mask is None else mask.size
            if keys.size != expected:
                raise ValueError(f"row_keys has {keys.size} entries for {expected} values")
            if mask is not None:
                keys = keys[mask]
        self.add_present(present, keys)

    def add_present(
        self, present: npt.NDArray[np.float64], keys: npt.NDArray[np.float64] | None = None
    ) -> None:
        """Offer values already cleaned of missing ones, with their keys or ``None`` to draw them."""
        if present.size == 0:
            return
        if keys is None:
            fingerprint = zlib.crc32(np.ascontiguousarray(present).data)
            rng = np.random.default_rng([self.seed, self._rows_seen, fingerprint])
            keys = rng.random(present.size)
        self._rows_seen += int(present.size)
        if self._keys.size >= self.size and not np.isnan(self._keys[-1]):
            # Full: a new key above the largest kept one can never be among the smallest.
            fits = keys <= self._keys[-1]
            if not fits.all():
                keys, present = keys[fits], present[fits]
            if keys.size == 0:
                return
        runs = self._keys.size >= keys.size  # mostly the kept (sorted) keys: a merge
        if self._keys.size:
            keys, present = np.concatenate([self._keys, keys]), np.concatenate([self._values, present])
        self._keys, self._values = _smallest_keys(keys, present, self.size, runs=runs)

    def _check_compatible(self, other: BottomKSample) -> None:
        if not isinstance(other, BottomKSample):
            raise TypeError(f"cannot merge a BottomKSample with {type(other).__name__}")
        if (other.size, other.seed) != (self.size, self.seed):
            raise ValueError(
                f"cannot merge samples of size/seed {self.size}/{self.seed} and {other.size}/{other.seed}"
            )

    def merge(self, other: Self) -> Self:
        self._check_compatible(other)
        merged = type(self)(self.size, self.seed)
        merged._rows_seen = self._rows_seen + other._rows_seen
        merged._keys, merged._values = _smallest_keys(
            np.concatenate([self._keys, other._keys]),
            np.concatenate([self._values, other._values]),
            self.size,
            runs=True,
        )
        return merged

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "size": self.size,
            "seed": self.seed,
            "rows_seen": self._rows_seen,
            "keys": self._keys.tolist(),
            "values": self._values.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        sample = cls(size=data["size"], seed=data["seed"])
        sample._rows_seen = int(data["rows_seen"])
        sample._keys = np.asarray(data["keys"], dtype=np.float64).reshape(-1)
        sample._values = np.asarray(data["values"], dtype=np.float64).reshape(-1)
        if sample._keys.size != sample._values.size or sample._keys.size > sample.size:
            raise ValueError("a sample needs as many keys as values, and at most `size` of them")
        return sample

    def __repr__(self) -> str:
        return f"BottomKSample(size={self.size}, seed={self.seed}, rows_seen={self._rows_seen})"


def union_sample(
    samples: Iterable[BottomKSample],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], bool]:
    """Every value of the union of ``samples`` whose key is at most each of their thresholds.

    A sample that dropped values (``rows_seen`` above what it holds) holds every value whose key
    is below its largest kept key; a sample that dropped nothing holds everything. So the values
    whose key is at most the smallest such threshold are *all* the values of the union with a key
    that small: a uniform sample of the union (the union rule of a theta sketch), usually far
    larger than one sample alone. Returns the (keys, values) ordered by key then value, and
    whether no value of the union is missing from them.

    >>> left, right = BottomKSample(size=2), BottomKSample(size=4)
    >>> left.update_batch([1.0, 2.0, 3.0], row_keys=[0.1, 0.5, 0.9])
    >>> right.update_batch([4.0, 5.0], row_keys=[0.2, 0.6])
    >>> keys, values, complete = union_sample([left, right])
    >>> values.tolist(), complete
    ([1.0, 4.0, 2.0], False)
    """
    parts = list(samples)
    threshold = math.inf
    for sample in parts:
        if sample.rows_seen > sample.keys.size:
            threshold = min(threshold, float(sample.keys[-1]) if sample.keys.size else 0.0)
    keys = np.concatenate([np.empty(0), *(sample.keys for sample in parts)])
    values = np.concatenate([np.empty(0), *(sample.values for sample in parts)])
    if math.isfinite(threshold):
        # Keys come from hashes of event ids: only a duplicated event can tie another sample's
        # threshold, so "at most the threshold" is as uniform as "below" and never empty.
        below = keys <= threshold
        keys, values = keys[below], values[below]
    order = np.lexsort((values, keys))
    return keys[order], values[order], math.isinf(threshold)
