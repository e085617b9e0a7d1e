"""One feature's reference profile: numerical (bin edges, counts, moments, a sample) or categorical.

:class:`~detectors.profiles.reference.ReferenceProfile` holds one of these per feature; each is
built from a column of values or from the window aggregates that saw them, and read from and
written to the JSON of a reference profile (``to_dict`` / ``from_dict``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from detectors.base import same_state
from detectors.bins import count_categories, reference_edges
from detectors.features import FeatureValues, numeric_values
from detectors.profiles.categorical import CategoricalAggregate
from detectors.profiles.numeric import NumericAggregate
from detectors.profiles.sampling import BottomKSample, union_sample
from modelmon.kinds import FeatureKind, check_kind


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _scaled_counts(counts: npt.NDArray[np.int64], total: int) -> npt.NDArray[np.int64]:
    """``counts`` scaled to sum to ``total``: floors, then one more for the largest remainders.

    >>> _scaled_counts(np.array([1, 1, 1]), 10).tolist()
    [4, 3, 3]
    """
    shares = counts * (total / counts.sum())
    scaled = np.floor(shares).astype(np.int64)
    extra = total - int(scaled.sum())
    if extra > 0:
        scaled[np.argsort(scaled - shares, kind="stable")[:extra]] += 1
    return scaled


@dataclass(frozen=True, eq=False)
class NumericalFeatureProfile:
    """The reference of one numerical feature; ``std`` is the population one (``np.std``)."""

    edges: npt.NDArray[np.float64]
    bin_counts: npt.NDArray[np.int64]
    count: int
    missing: int
    mean: float
    std: float
    min: float
    max: float
    n_unique: int
    sample: npt.NDArray[np.float64] = field(repr=False)
    kind: ClassVar[FeatureKind] = FeatureKind.NUMERICAL

    @classmethod
    def from_values(cls, values: FeatureValues, *, sample_size: int = 4096, seed: int = 0) -> Self:
        """Profile one column; ``None``, NaN and ±inf count as missing."""
        present, mask = numeric_values(values)
        if present.size == 0:
            raise ValueError("a numerical reference needs at least one present value")
        # One sort gives the deciles (the same order statistics np.quantile picks), the bin counts
        # (values below each edge), the extremes and the distinct values. The mean, the std and
        # the sample's keys read the values in their own order, as before.
        ordered = np.sort(present)
        edges = reference_edges(ordered)
        sampler = BottomKSample(sample_size, seed)
        sampler.add_present(present)
        return cls(
            edges=_readonly(edges),
            bin_counts=_readonly(np.diff(np.searchsorted(ordered, edges, side="left")).astype(np.int64)),
            count=int(present.size),
            missing=0 if mask is None else int(mask.size - present.size),
            mean=float(np.mean(present)),
            std=float(np.std(present)),
            min=float(ordered[0]),
            max=float(ordered[-1]),
            n_unique=int(np.count_nonzero(ordered[1:] != ordered[:-1])) + 1,
            sample=_readonly(sampler.values.copy()),
        )

    @classmethod
    def from_aggregates(cls, windows: Sequence[NumericAggregate], *, sample_size: int = 4096) -> Self:
        """Profile one feature from the window aggregates that together saw its values.

        Counts, ``missing``, ``min`` and ``max`` are exact; ``mean`` and ``std`` are exact up to
        floating-point rounding (Chan's merge of the windows' moments). The rest comes from
        :func:`union_sample` of the windows' samples. When it is *complete* (every window's
        sample still holds all its values) edges, ``bin_counts`` and ``n_unique`` equal those of
        :meth:`from_values` on the same values, and so does the sample when there are at most
        ``sample_size`` values (in another order; beyond that it is another uniform sample).
        Otherwise the edges are the deciles of the union sample, ``bin_counts`` its bin shares
        scaled to ``count`` (largest remainders, so they sum to ``count``) and ``n_unique`` the
        distinct values in it (a lower bound); see docs/references.md for the accuracy.
        """
        if not windows:
            raise ValueError("a numerical reference needs at least one window aggregate")
        total = windows[0]
        for window in windows[1:]:
            total = total.merge(window)
        if total.count == 0:
            raise ValueError("a numerical reference needs at least one present value")
        keys, values, complete = union_sample(window.sampler for window in windows)
        ordered = np.sort(values)
        edges = reference_edges(ordered)
        below = np.diff(np.searchsorted(ordered, edges, side="left")).astype(np.int64)
        bin_counts = below if complete else _scaled_counts(below, total.count)
        kept = np.argsort(keys[:sample_size], kind="stable")  # the smallest keys: still uniform
        return cls(
            edges=_readonly(edges),
            bin_counts=_readonly(bin_counts),
            count=total.count,
            missing=total.missing,
            mean=float(total.mean),
            std=float(total.std),
            min=float(total.min),
            max=float(total.max),
            n_unique=int(np.count_nonzero(ordered[1:] != ordered[:-1])) + 1,
            sample=_readonly(values[:sample_size][kept].copy()),
        )

    @cached_property
    def sorted_sample(self) -> npt.NDArray[np.float64]:
        """``sample`` sorted ascending (read-only), computed once: what KS and friends sort anyway."""
        return _readonly(np.sort(self.sample))

    def window_aggregate(
        self, *, sample_size: int = 1024, max_new_categories: int = 100, seed: int = 0
    ) -> NumericAggregate:
        """An empty window aggregate binned on this reference's edges (``max_new_categories`` unused)."""
        return NumericAggregate(self.edges, sample_size=sample_size, seed=seed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "inner_edges": self.edges[1:-1].tolist(),
            "bin_counts": self.bin_counts.tolist(),
            "count": self.count,
            "missing": self.missing,
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
            "n_unique": self.n_unique,
            "sample": self.sample.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        inner = np.asarray(data["inner_edges"], dtype=np.float64)
        return cls(
            edges=_readonly(np.concatenate([[-np.inf], inner, [np.inf]])),
            bin_counts=_readonly(np.asarray(data["bin_counts"], dtype=np.int64)),
            count=int(data["count"]),
            missing=int(data["missing"]),
            mean=float(data["mean"]),
            std=float(data["std"]),
            min=float(data["min"]),
            max=float(data["max"]),
            n_unique=int(data["n_unique"]),
            sample=_readonly(np.asarray(data["sample"], dtype=np.float64)),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NumericalFeatureProfile) and same_state(self.to_dict(), other.to_dict())

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class CategoricalFeatureProfile:
    """The reference of one categorical or boolean feature: the ``max_categories`` most frequent
    categories (ties by name) counted one by one, the rest counted together as ``other``."""

    kind: FeatureKind
    categories: npt.NDArray[np.str_]
    category_counts: npt.NDArray[np.int64]
    other: int
    count: int
    missing: int
    n_unique: int

    @classmethod
    def from_values(
        cls, values: FeatureValues, *, kind: FeatureKind = FeatureKind.CATEGORICAL, max_categories: int = 200
    ) -> Self:
        """Profile one column; ``None`` and NaN count as missing."""
        if kind not in ("categorical", "boolean"):
            raise ValueError(f"kind must be categorical or boolean, got {kind!r}")
        names, counts, missing = count_categories(values, kind)
        if names.size == 0:
            raise ValueError(f"a {kind} reference needs at least one present value")
        kept = np.sort(np.lexsort((names, -counts))[:max_categories])
        return cls(
            kind=kind,
            categories=_readonly(names[kept]),
            category_counts=_readonly(counts[kept]),
            other=int(counts.sum() - counts[kept].sum()),
            count=int(counts.sum()),
            missing=missing,
            n_unique=int(names.size),
        )

    @classmethod
    def from_aggregates(cls, windows: Sequence[CategoricalAggregate], *, max_categories: int = 200) -> Self:
        """Profile one feature from the window aggregates that together saw its values.

        Equal to :meth:`from_values` on the same values whenever the merged aggregate folded no
        category into its ``other`` count. Otherwise the folded values are counted in ``other``
        (they cannot be named) and ``n_unique`` is a lower bound (the named categories plus one).
        """
        if not windows:
            raise ValueError("a categorical reference needs at least one window aggregate")
        total = windows[0]
        for window in windows[1:]:
            total = total.merge(window)
        names, counts = total.category_counts()
        seen = counts > 0
        names, counts = names[seen], counts[seen]
        if total.count == 0:
            raise ValueError(f"a {total.feature_kind} reference needs at least one present value")
        kept = np.sort(np.lexsort((names, -counts))[:max_categories])
        return cls(
            kind=check_kind(total.feature_kind),
            categories=_readonly(names[kept]),
            category_counts=_readonly(counts[kept]),
            other=int(total.count - counts[kept].sum()),
            count=total.count,
            missing=total.missing,
            n_unique=int(names.size) + (1 if total.other else 0),
        )

    def counts(self) -> dict[str, int]:
        """Count per kept category."""
        return dict(zip(self.categories.tolist(), self.category_counts.tolist(), strict=True))

    def window_aggregate(
        self, *, sample_size: int = 1024, max_new_categories: int = 100, seed: int = 0
    ) -> CategoricalAggregate:
        """An empty window aggregate counting this reference's categories exactly (``sample_size`` unused)."""
        return CategoricalAggregate(
            self.categories, max_new_categories=max_new_categories, feature_kind=self.kind, seed=seed
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "categories": self.categories.tolist(),
            "category_counts": self.category_counts.tolist(),
            "other": self.other,
            "count": self.count,
            "missing": self.missing,
            "n_unique": self.n_unique,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            kind=check_kind(data["kind"]),
            categories=_readonly(np.asarray(data["categories"], dtype=str).reshape(-1)),
            category_counts=_readonly(np.asarray(data["category_counts"], dtype=np.int64).reshape(-1)),
            other=int(data["other"]),
            count=int(data["count"]),
            missing=int(data["missing"]),
            n_unique=int(data["n_unique"]),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CategoricalFeatureProfile) and same_state(self.to_dict(), other.to_dict())

    __hash__ = None  # type: ignore[assignment]


FeatureProfile = NumericalFeatureProfile | CategoricalFeatureProfile
