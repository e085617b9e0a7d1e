"""The window aggregate of a categorical or boolean feature: counts per category with a capped "other".

The reference's categories are always counted exactly. New categories are counted exactly too,
up to ``max_new_categories`` of them; beyond the cap, the kept ones are those with the smallest
stable hash (seeded), and every other new category is folded into one ``other`` count. "The
``max_new_categories`` smallest hashes among every new category seen" does not depend on how
partials were grouped or ordered, and a category folded once can never be kept later (at least
``max_new_categories`` smaller hashes have been seen), so ``merge`` stays exactly associative and
commutative and the result is the same as one worker seeing every event.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from detectors.base import Aggregate
from detectors.bins import count_categories
from detectors.features import FeatureValues
from detectors.hashing import stable_text_hash
from modelmon.kinds import FeatureKind, check_kind

_CATEGORY_KINDS = ("boolean", "categorical")


def _union_capped(
    names: npt.NDArray[np.str_], counts: npt.NDArray[np.int64], cap: int, seed: int
) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.int64], int]:
    """Sum the counts of equal names; keep the ``cap`` names of smallest hash; return the folded total."""
    unique, inverse = np.unique(names, return_inverse=True)
    summed = np.zeros(unique.size, dtype=np.int64)
    np.add.at(summed, inverse.reshape(-1), counts)
    if unique.size <= cap:
        return unique, summed, 0
    order = np.lexsort((unique, stable_text_hash(unique, seed)))
    keep = np.sort(order[:cap])
    folded = int(summed.sum() - summed[keep].sum())
    return unique[keep], summed[keep], folded


def _sorted_distinct(categories: Iterable[str]) -> npt.NDArray[np.str_]:
    """``np.unique`` of the categories as text; skips the sort when they already are sorted and distinct."""
    if isinstance(categories, np.ndarray) and categories.dtype.kind == "U":
        array = np.array(categories).reshape(-1)  # a copy: the caller keeps theirs
    else:
        array = np.asarray(list(categories), dtype=str)
    if array.size > 1 and not bool((array[1:] > array[:-1]).all()):
        array = np.unique(array)
    array.flags.writeable = False  # shared by the aggregates merged from this one
    return array


class CategoricalAggregate(Aggregate):
    """A categorical (or boolean) feature over one window and partition, mergeable across both.

    Parameters
    ----------
    categories
        The reference's categories: always counted exactly, never folded into ``other``.
    max_new_categories
        How many categories outside ``categories`` are counted one by one; the rest go to ``other``.
    feature_kind
        ``"categorical"`` (values as ``str(value)``) or ``"boolean"`` (values as ``"True"``/``"False"``).
    seed
        Salts the hash that picks which new categories are kept beyond the cap.

    Examples
    --------
    >>> window = CategoricalAggregate(["a", "b"], max_new_categories=1)
    >>> window.update_batch(np.array(["a", "a", "c", None], dtype=object))
    >>> other = CategoricalAggregate(["a", "b"], max_new_categories=1)
    >>> other.update_batch(["b", "d", "d"])
    >>> merged = window.merge(other)
    >>> merged.counts()
    {'a': 2, 'b': 1, 'd': 2}
    >>> merged.other, merged.missing, merged.count, merged.unseen_count
    (1, 1, 6, 3)
    """

    kind = "categorical"

    def __init__(
        self,
        categories: Iterable[str] = (),
        *,
        max_new_categories: int = 100,
        feature_kind: str = "categorical",
        seed: int = 0,
    ) -> None:
        if feature_kind not in _CATEGORY_KINDS:
            raise ValueError(
                f"feature_kind must be one of {', '.join(_CATEGORY_KINDS)}, got {feature_kind!r}"
            )
        if isinstance(max_new_categories, bool) or not isinstance(max_new_categories, int):
            raise ValueError(f"max_new_categories must be an integer >= 0, got {max_new_categories!r}")
        if max_new_categories < 0:
            raise ValueError(f"max_new_categories must be an integer >= 0, got {max_new_categories!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        pinned = _sorted_distinct(categories)
        self.categories: tuple[str, ...] = tuple(pinned.tolist())
        self.max_new_categories = max_new_categories
        self.feature_kind: FeatureKind = check_kind(feature_kind)
        self.seed = seed
        self._pinned = pinned
        self._reset()

    def _empty_like(self) -> Self:
        """An empty aggregate with these settings, sharing the (read-only) reference categories."""
        twin = object.__new__(type(self))
        twin.categories = self.categories
        twin.max_new_categories = self.max_new_categories
        twin.feature_kind = self.feature_kind
        twin.seed = self.seed
        twin._pinned = self._pinned
        twin._reset()
        return twin

    def _reset(self) -> None:
        self._pinned_counts = np.zeros(self._pinned.size, dtype=np.int64)
        self._new_names = np.empty(0, dtype=str)
        self._new_counts = np.empty(0, dtype=np.int64)
        self._other = 0
        self._missing = 0

    @property
    def missing(self) -> int:
        """How many values were missing (``None`` or NaN)."""
        return self._missing

    @property
    def other(self) -> int:
        """Values of new categories beyond the cap, counted together."""
        return self._other

    @property
    def count(self) -> int:
        """How many present values were seen."""
        return int(self._pinned_counts.sum() + self._new_counts.sum()) + self._other

    @property
    def unseen_count(self) -> int:
        """Present values outside the reference's categories (kept new ones plus ``other``)."""
        return int(self._new_counts.sum()) + self._other

    def category_counts(self) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.int64]]:
        """Every counted category (reference and kept new ones), sorted, with its count."""
        names = np.concatenate([self._pinned, self._new_names])
        counts = np.concatenate([self._pinned_counts, self._new_counts])
        order = np.argsort(names, kind="stable")
        return names[order], counts[order]

    def counts(self) -> dict[str, int]:
        """Count per category that occurred at least once (``other`` not included)."""
        names, counts = self.category_counts()
        seen = counts > 0
        return dict(zip(names[seen].tolist(), counts[seen].tolist(), strict=True))

    def update_batch(self, values: FeatureValues) -> None:
        """Fold a 1-D batch of values in."""
        names, counts, missing = count_categories(values, self.feature_kind)
        self._missing += missing
        if names.size:
            self._add(names, counts)

    def _add(self, names: npt.NDArray[np.str_], counts: npt.NDArray[np.int64]) -> None:
        if self._pinned.size:
            index = np.minimum(np.searchsorted(self._pinned, names), self._pinned.size - 1)
            known = self._pinned[index] == names
            # names are distinct, so each pinned slot is hit at most once.
            self._pinned_counts[index[known]] += counts[known]
            names, counts = names[~known], counts[~known]
        if names.size:
            self._new_names, self._new_counts, folded = _union_capped(
                np.concatenate([self._new_names, names]),
                np.concatenate([self._new_counts, counts]),
                self.max_new_categories,
                self.seed,
            )
            self._other += folded

    def _settings(self) -> tuple[tuple[str, ...], int, str, int]:
        return (self.categories, self.max_new_categories, self.feature_kind, self.seed)

    def merge(self, other: Self) -> Self:
        if not isinstance(other, CategoricalAggregate):
            raise TypeError(f"cannot merge a CategoricalAggregate with {type(other).__name__}")
        if self._settings() != other._settings():
            raise ValueError(
                "cannot merge categorical aggregates with different categories, max_new_categories, "
                "feature_kind or seed"
            )
        merged = self._empty_like()
        merged._pinned_counts = self._pinned_counts + other._pinned_counts
        folded = 0
        if self._new_names.size or other._new_names.size:
            merged._new_names, merged._new_counts, folded = _union_capped(
                np.concatenate([self._new_names, other._new_names]),
                np.concatenate([self._new_counts, other._new_counts]),
                self.max_new_categories,
                self.seed,
            )
        merged._other = self._other + other._other + folded
        merged._missing = self._missing + other._missing
        return merged

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "categories": list(self.categories),
            "max_new_categories": self.max_new_categories,
            "feature_kind": self.feature_kind,
            "seed": self.seed,
            "category_counts": self._pinned_counts.tolist(),
            "new_categories": self._new_names.tolist(),
            "new_counts": self._new_counts.tolist(),
            "other": self._other,
            "missing": self._missing,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        window = cls(
            data["categories"],
            max_new_categories=data["max_new_categories"],
            feature_kind=data["feature_kind"],
            seed=data["seed"],
        )
        window._pinned_counts = np.asarray(data["category_counts"], dtype=np.int64).reshape(-1)
        window._new_names = np.asarray(data["new_categories"], dtype=str).reshape(-1)
        window._new_counts = np.asarray(data["new_counts"], dtype=np.int64).reshape(-1)
        if (
            window._pinned_counts.size != window._pinned.size
            or window._new_names.size != window._new_counts.size
        ):
            raise ValueError("category counts do not match their categories")
        window._other = int(data["other"])
        window._missing = int(data["missing"])
        return window

    def __repr__(self) -> str:
        return (
            f"CategoricalAggregate(categories={len(self.categories)}, new={self._new_names.size}, "
            f"other={self._other}, missing={self._missing})"
        )
