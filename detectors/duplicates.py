"""Duplicate prediction ids in a window: exact up to a capacity, then an unbiased hash-space sample.

Each id is hashed to 64 bits (:func:`detectors.hashing.stable_text_hash`, the same in every
process). The aggregate keeps every distinct hash with its count while there are at most
``capacity`` of them. Past that it keeps only hashes below ``2**(64 - level)``, raising ``level``
one step (halving the kept share) until at most ``capacity`` remain. All copies of an id share its
hash, so an id's duplicates are either all kept or all dropped: the duplicates among kept ids,
times ``2**level``, is an unbiased estimate of all duplicates. Memory is bounded by ``capacity``
(16 bytes per kept id). ``merge`` keeps what a single aggregate fed every id would keep (the
largest level any input reached, raised further if needed), so it is exactly associative and
commutative. Two different ids collide with probability about ``n**2 / 2**65``: nil in practice.
"""

from __future__ import annotations

import base64
from typing import Any, Self

import numpy as np

from detectors.base import Aggregate
from detectors.hashing import stable_text_hash
from detectors.metric import Metric

_MAX_LEVEL = 64


def _kept(hashes: np.ndarray, level: int) -> np.ndarray:
    """Mask of the hashes below ``2**(64 - level)``."""
    if level == 0:
        return np.ones(hashes.shape, dtype=bool)
    if level >= _MAX_LEVEL:
        return hashes == 0
    return (hashes >> np.uint64(64 - level)) == 0


def present_ids(ids: Any) -> tuple[np.ndarray, int]:
    """The non-missing ids (not None, NaN or empty) as text, and how many were missing."""
    array = np.asarray(ids)
    if array.ndim != 1:
        raise ValueError(f"ids must be a 1-D array, got shape {array.shape}")
    if array.dtype.kind == "O":
        present = ~(np.equal(array, None) | (array != array))  # type: ignore[call-overload]
        text = array[present].astype(str)
    elif array.dtype.kind == "f":
        present = ~np.isnan(array)
        text = array[present].astype(str)
    else:
        text = array.astype(str)
        present = np.ones(text.shape, dtype=bool)
    non_empty = text != ""
    return text[non_empty], int(array.size - np.count_nonzero(non_empty))


class DuplicateIdAggregate(Aggregate):
    """Counts ids seen more than once, exactly up to ``capacity`` distinct ids, estimated beyond.

    Parameters
    ----------
    capacity
        The most distinct id hashes kept (16 bytes each).

    Examples
    --------
    >>> agg = DuplicateIdAggregate()
    >>> agg.update_batch(np.array(["p1", "p2", "p1", None, "p3", "p1"], dtype=object))
    >>> agg.n_ids, agg.n_missing, agg.duplicates(), agg.exact
    (5, 1, 2.0, True)
    >>> agg.duplicate_rate()
    Metric(value=0.4, reason=None)
    """

    kind = "duplicate_ids"

    def __init__(self, capacity: int = 8192) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
        self.capacity = capacity
        self._hashes = np.zeros(0, dtype=np.uint64)
        self._counts = np.zeros(0, dtype=np.int64)
        self._level = 0
        self._n_ids = 0
        self._n_missing = 0

    @property
    def n_ids(self) -> int:
        """Ids counted (every occurrence)."""
        return self._n_ids

    @property
    def n_missing(self) -> int:
        """Missing (None, NaN or empty) ids, not counted."""
        return self._n_missing

    @property
    def level(self) -> int:
        """Sampling level: ids are kept with probability ``2**-level`` (0 = all, exact)."""
        return self._level

    @property
    def exact(self) -> bool:
        """Whether :meth:`duplicates` is an exact count rather than an estimate."""
        return self._level == 0

    def duplicates(self) -> float:
        """Occurrences beyond the first of each id: exact, or the unbiased estimate."""
        kept_duplicates = int(self._counts.sum()) - self._counts.size
        return float(kept_duplicates * 2**self._level)

    def duplicate_rate(self) -> Metric:
        """``duplicates / n_ids``."""
        return Metric.ratio(self.duplicates(), self._n_ids, "no prediction ids")

    def _absorb(self, hashes: np.ndarray, counts: np.ndarray, level: int) -> None:
        self._level = max(self._level, level)
        every = np.concatenate([self._hashes, hashes])
        weights = np.concatenate([self._counts, counts])
        keep = _kept(every, self._level)
        unique, inverse = np.unique(every[keep], return_inverse=True)
        self._hashes = unique
        self._counts = np.bincount(inverse, weights=weights[keep], minlength=unique.size).astype(np.int64)
        while self._hashes.size > self.capacity:
            self._level += 1
            keep = _kept(self._hashes, self._level)
            self._hashes, self._counts = self._hashes[keep], self._counts[keep]

    def update_batch(self, ids: Any) -> None:
        """Count a batch of ids (strings; None, NaN and empty strings count as missing)."""
        text, missing = present_ids(ids)
        self._n_missing += missing
        self._n_ids += int(text.size)
        hashes = stable_text_hash(text) if text.size else np.zeros(0, dtype=np.uint64)
        self._absorb(hashes, np.ones(hashes.size, dtype=np.int64), self._level)

    def merge(self, other: Self) -> Self:
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(self).__name__} with {type(other).__name__}")
        if self.capacity != other.capacity:
            raise ValueError(f"cannot merge capacities {self.capacity} and {other.capacity}")
        out = type(self)(self.capacity)
        out._hashes, out._counts, out._level = self._hashes.copy(), self._counts.copy(), self._level
        out._absorb(other._hashes, other._counts, other._level)
        out._n_ids = self._n_ids + other._n_ids
        out._n_missing = self._n_missing + other._n_missing
        return out

    def to_dict(self) -> dict[str, Any]:
        repeated = np.flatnonzero(self._counts > 1)
        return {
            "kind": self.kind,
            "capacity": self.capacity,
            "level": self._level,
            "n_ids": self._n_ids,
            "n_missing": self._n_missing,
            "hashes": base64.b64encode(self._hashes.astype("<u8").tobytes()).decode("ascii"),
            "repeated": [[int(i), int(self._counts[i])] for i in repeated],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        out = cls(int(data["capacity"]))
        out._hashes = np.frombuffer(base64.b64decode(data["hashes"]), dtype="<u8").astype(np.uint64)
        out._counts = np.ones(out._hashes.size, dtype=np.int64)
        for index, count in data["repeated"]:
            out._counts[index] = count
        out._level = int(data["level"])
        out._n_ids = int(data["n_ids"])
        out._n_missing = int(data["n_missing"])
        return out

    def __repr__(self) -> str:
        return f"DuplicateIdAggregate(capacity={self.capacity}, n_ids={self._n_ids}, level={self._level})"
